//! The end of a run: the exit code and the one-line summary from the
//! guard's decision and the actions' outcomes, the JSON report, the
//! metrics, and the human (or JSON) output on stdout.

use std::path::Path;

use super::RunOptions;
use crate::cli::OutputFormat;
use crate::exec::report::RunReport;
use crate::exec::{ActionReport, RunState, Status};
use crate::exit::Exit;
use crate::plan::guard::{Branch, Decision};
use crate::policy::ValidPolicy;

/// How the run ended, and the words for it.
pub(super) fn outcome(
    decision: Option<&Decision>,
    refusal: Option<&str>,
    actions: &[ActionReport],
    cancelled: bool,
    lease_lost: bool,
    dry_run: bool,
) -> (Exit, String) {
    // A failed restore test does not undo the backup: its own exit code.
    let is_test = |a: &&ActionReport| a.kind == "restore-test";
    // The backup branch without a snapshot (no active, unsealed node by
    // the time it ran) did not do its job: a retry, never "done".
    let no_snapshot = decision.is_some_and(|d| d.branch == Branch::Backup)
        && actions
            .iter()
            .any(|a| a.id == "snapshot" && a.status == Status::Skipped);
    let failed = no_snapshot
        || actions
            .iter()
            .filter(|a| !is_test(a))
            .any(|a| a.status == Status::Failed);
    let test_failed = actions
        .iter()
        .filter(is_test)
        .any(|a| a.status == Status::Failed);
    let exit = match decision.map(|d| d.branch) {
        _ if cancelled => Exit::Retry,
        Some(Branch::Refuse) => Exit::Refused,
        // A precondition that refuses like a guard (guards.maxRestoreAge).
        _ if refusal.is_some() => Exit::Refused,
        Some(Branch::Retry) => Exit::Retry,
        _ if failed => Exit::Retry,
        None => Exit::Retry,
        Some(_) if test_failed => Exit::RestoreTestFailed,
        Some(_) => Exit::Success,
    };
    let summary = match (decision, exit) {
        (_, Exit::Success) => format!(
            "done{}",
            if dry_run {
                " (dry run: nothing was written)"
            } else {
                ""
            }
        ),
        _ if lease_lost => {
            "stopped — retry: the run Lease was lost (another run may have taken over)".to_string()
        }
        (Some(d), Exit::Refused) => format!(
            "refused by a guard — a human must act: {}",
            refusal.unwrap_or(&d.explanation)
        ),
        (Some(d), _) if d.branch == Branch::Retry => format!("not done — retry: {}", d.explanation),
        (_, Exit::RestoreTestFailed) => {
            "backed up, but the restore test FAILED: the stored copy did not restore (see restore-test)".to_string()
        }
        _ => {
            let f: Vec<&str> = actions
                .iter()
                .filter(|a| {
                    a.status == Status::Failed
                        || (no_snapshot && a.id == "snapshot" && a.status == Status::Skipped)
                })
                .map(|a| a.id.as_str())
                .collect();
            format!("failed — retry: {}", f.join(", "))
        }
    };
    (exit, summary)
}

/// Textfile and/or Pushgateway (never in a dry run). Never fails the run.
pub(super) async fn metrics(p: &ValidPolicy, report: &RunReport, state: &RunState) {
    let Some(m) = &p.doc.spec.metrics else {
        return;
    };
    if report.dry_run {
        return;
    }
    let snapshot = state
        .snapshot
        .as_ref()
        .map(|t| (t.identity.file_size, t.identity.index));
    let authentic = state.snapshot_authentic.map(|a| a.is_authentic());
    let mut facts = report.metrics_facts(snapshot, authentic, state.kept.clone());
    facts.restore_test = state
        .restore_test
        .map(|(passed, took)| (passed, took.as_secs_f64()));
    if let Some(path) = &m.textfile {
        let previous = std::fs::read_to_string(path).ok();
        let text = crate::backends::metrics::render(&facts, previous.as_deref());
        if let Err(e) = crate::backends::metrics::write_textfile(Path::new(path), &text) {
            tracing::warn!(path = %path, error = %e, "cannot write the metrics textfile");
        }
    }
    if let Some(url) = &m.pushgateway {
        let text = crate::backends::metrics::render(&facts, None);
        if let Err(e) = crate::backends::metrics::push(url, p.name(), &text).await {
            tracing::warn!(error = %e, "cannot push metrics");
        }
    }
}

/// The report file (`--report`) and stdout (human or JSON).
pub(super) fn output(opts: &RunOptions, report: &RunReport) {
    let json = serde_json::to_string_pretty(report).unwrap_or_default();
    if let Some(path) = &opts.report
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        crate::ewriteln!("error: cannot write the report to {}: {e}", path.display());
    }
    let mut out = String::new();
    match opts.format {
        OutputFormat::Json => out = format!("{json}\n"),
        OutputFormat::Human => {
            for a in &report.actions {
                out.push_str(&format!(
                    "{:<16} {:<17} {}\n",
                    a.id,
                    a.status.word(),
                    a.reason
                ));
                for item in &a.items {
                    out.push_str(&format!("{:<16}   {}\n", "", item.text));
                }
            }
            out.push_str(&format!("{}\n", report.summary));
        }
    }
    // The run's outcome stands even if nobody reads its summary.
    if let Err(e) = crate::commands::print_stdout(&out) {
        crate::commands::print_stderr(&format!(
            "error: cannot write to stdout: {e}; the run itself ended: {}",
            report.summary
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: &str, status: Status) -> ActionReport {
        ActionReport {
            id: id.into(),
            kind: if id.starts_with("restore-test") {
                "restore-test"
            } else {
                "other"
            },
            status,
            reason: String::new(),
            started_at: None,
            duration_ms: None,
            bytes: 0,
            items: Vec::new(),
        }
    }

    fn backup() -> Decision {
        Decision {
            branch: Branch::Backup,
            rule: "initialised, keys present",
            observed: String::new(),
            explanation: String::new(),
            backup_allowed: true,
        }
    }

    #[test]
    fn a_backup_branch_without_a_snapshot_is_a_retry_never_done() {
        let d = backup();
        let skipped = [
            action("snapshot", Status::Skipped),
            action("verify", Status::Skipped),
        ];
        let (exit, summary) = outcome(Some(&d), None, &skipped, false, false, false);
        assert_eq!(exit, Exit::Retry);
        assert!(summary.contains("snapshot"), "{summary}");
        let taken = [action("snapshot", Status::Succeeded)];
        assert_eq!(
            outcome(Some(&d), None, &taken, false, false, false).0,
            Exit::Success
        );
    }

    #[test]
    fn a_failed_restore_test_keeps_the_backup_and_has_its_own_exit() {
        let d = backup();
        let acts = [
            action("snapshot", Status::Succeeded),
            action("restore-test:s3", Status::Failed),
        ];
        let (exit, summary) = outcome(Some(&d), None, &acts, false, false, false);
        assert_eq!(exit, Exit::RestoreTestFailed);
        assert!(summary.contains("restore test FAILED"), "{summary}");
        // Another failure wins: the run is a retry.
        let acts = [
            action("snapshot", Status::Succeeded),
            action("upload:s3", Status::Failed),
            action("restore-test:s3", Status::Failed),
        ];
        assert_eq!(
            outcome(Some(&d), None, &acts, false, false, false).0,
            Exit::Retry
        );
    }
}
