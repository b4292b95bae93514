//! Prometheus metrics of a run: rendered in the text exposition format,
//! written to a node-exporter textfile (atomically) and/or pushed to a
//! Pushgateway. Timestamps of the last success and last upload survive a
//! failed run: they are carried over from the previous textfile (and the
//! Pushgateway keeps them because a failed run does not send them).
//!
//! Stage: report. Holds no secrets: names, sizes, indexes, times only.
//!
//! Must never: fail a run (callers log a failed write or push), or show a
//! Pushgateway URL with its password.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// How a target's upload ended, as the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetResult {
    Succeeded,
    NothingToDo,
    Skipped,
    Failed,
}

impl TargetResult {
    fn is_success(self) -> bool {
        matches!(self, TargetResult::Succeeded | TargetResult::NothingToDo)
    }
}

/// What a run contributes to the metrics.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub policy: String,
    pub exit_code: u8,
    pub success: bool,
    pub refused: bool,
    pub finished_at: i64,
    pub duration_seconds: f64,
    /// (size in bytes, raft index) of this run's snapshot.
    pub snapshot: Option<(u64, u64)>,
    /// Whether the stored keys authenticate this run's snapshot (`None`:
    /// not checked — no keys, or no snapshot).
    pub authentic: Option<bool>,
    /// Per target: how its upload ended.
    pub targets: BTreeMap<String, TargetResult>,
    /// Per store: snapshots retention kept.
    pub kept: BTreeMap<String, usize>,
    /// This run's restore test, if one ran: (passed, seconds).
    pub restore_test: Option<(bool, f64)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The value of `name{labels}` in a previous exposition, if present.
fn previous_value(previous: &str, series: &str) -> Option<String> {
    previous.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().to_string())
    })
}

/// Render the exposition. `previous`: the last textfile, for carry-over.
pub fn render(f: &RunFacts, previous: Option<&str>) -> String {
    let p = escape(&f.policy);
    let mut s = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, rows: Vec<(String, String)>| {
        if rows.is_empty() {
            return;
        }
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(s, "{name}{{{labels}}} {value}");
        }
    };
    let base = format!("policy=\"{p}\"");
    let carried = |series: &str| previous.and_then(|prev| previous_value(prev, series));

    let last_success = if f.success {
        Some(f.finished_at.to_string())
    } else {
        carried(&format!(
            "snapward_last_success_timestamp_seconds{{{base}}}"
        ))
    };
    metric(
        "snapward_last_success_timestamp_seconds",
        "Unix time of the last run that ended with exit 0.",
        "gauge",
        last_success
            .map(|v| vec![(base.clone(), v)])
            .unwrap_or_default(),
    );
    metric(
        "snapward_last_run_timestamp_seconds",
        "Unix time the last run finished.",
        "gauge",
        vec![(base.clone(), f.finished_at.to_string())],
    );
    metric(
        "snapward_last_exit_code",
        "Exit code of the last run (0 done, 3 refused, 4 retry, 5 busy, 6 restore test failed).",
        "gauge",
        vec![(base.clone(), f.exit_code.to_string())],
    );
    metric(
        "snapward_run_duration_seconds",
        "Wall time of the last run.",
        "gauge",
        vec![(base.clone(), format!("{:.3}", f.duration_seconds))],
    );
    metric(
        "snapward_guard_refused",
        "1 if a guard refused the last run (a human must act).",
        "gauge",
        vec![(base.clone(), u8::from(f.refused).to_string())],
    );
    if let Some((size, index)) = f.snapshot {
        metric(
            "snapward_last_snapshot_size_bytes",
            "Size of the last snapshot taken.",
            "gauge",
            vec![(base.clone(), size.to_string())],
        );
        metric(
            "snapward_last_snapshot_raft_index",
            "Raft index of the last snapshot taken.",
            "gauge",
            vec![(base.clone(), index.to_string())],
        );
    }
    if let Some(authentic) = f.authentic {
        metric(
            "snapward_snapshot_authentic",
            "1 if the stored unseal keys authenticate the last snapshot (they would unseal a restore of it), 0 if not.",
            "gauge",
            vec![(base.clone(), u8::from(authentic).to_string())],
        );
    }
    let mut results = Vec::new();
    let mut uploads = Vec::new();
    for (t, status) in &f.targets {
        let tl = format!("{base},target=\"{}\"", escape(t));
        for (word, st) in [
            ("succeeded", TargetResult::Succeeded),
            ("nothing-to-do", TargetResult::NothingToDo),
            ("skipped", TargetResult::Skipped),
            ("failed", TargetResult::Failed),
        ] {
            results.push((
                format!("{tl},result=\"{word}\""),
                u8::from(*status == st).to_string(),
            ));
        }
        let last = if status.is_success() {
            Some(f.finished_at.to_string())
        } else {
            carried(&format!(
                "snapward_target_last_upload_timestamp_seconds{{{tl}}}"
            ))
        };
        if let Some(v) = last {
            uploads.push((tl, v));
        }
    }
    metric(
        "snapward_target_result",
        "Result of the last run's upload to each target.",
        "gauge",
        results,
    );
    metric(
        "snapward_target_last_upload_timestamp_seconds",
        "Unix time of the last run whose upload to the target succeeded.",
        "gauge",
        uploads,
    );
    if let Some((passed, seconds)) = f.restore_test {
        metric(
            "snapward_restore_test_result",
            "1 if the last run's restore test (spec.restoreTest) restored the stored copy on a throwaway server, 0 if not.",
            "gauge",
            vec![(base.clone(), u8::from(passed).to_string())],
        );
        metric(
            "snapward_restore_test_duration_seconds",
            "Wall time of the last restore test.",
            "gauge",
            vec![(base.clone(), format!("{seconds:.3}"))],
        );
    }
    let last_test = match f.restore_test {
        Some((true, _)) => Some(f.finished_at.to_string()),
        _ => carried(&format!(
            "snapward_restore_test_last_success_timestamp_seconds{{{base}}}"
        )),
    };
    metric(
        "snapward_restore_test_last_success_timestamp_seconds",
        "Unix time of the last run whose restore test passed.",
        "gauge",
        last_test
            .map(|v| vec![(base.clone(), v)])
            .unwrap_or_default(),
    );
    metric(
        "snapward_snapshots_kept",
        "Snapshots retention kept in each store in the last run.",
        "gauge",
        f.kept
            .iter()
            .map(|(store, n)| (format!("{base},store=\"{}\"", escape(store)), n.to_string()))
            .collect(),
    );
    s
}

/// Replace the textfile atomically (temp file + rename in the same dir).
pub fn write_textfile(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("snapward.prom")
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Why a push to the Pushgateway failed. `url` is shown without its
/// password ([`crate::secret::redact_url`]); the reqwest error is kept
/// without its URL for the same reason.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot build the HTTP client: {}", crate::backends::chain(.0))]
    Client(#[source] reqwest::Error),
    /// The message renders the cause chain (network, TLS, timeout).
    #[error("push to {url} failed: {}", crate::backends::chain(.source))]
    Send {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("push to {url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
}

/// POST to the Pushgateway (replaces only the metrics sent).
pub async fn push(base: &str, policy: &str, text: &str) -> Result<(), PushError> {
    let url = format!(
        "{}/metrics/job/snapward/policy/{}",
        base.trim_end_matches('/'),
        policy
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(PushError::Client)?;
    let resp = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(text.to_string())
        .send()
        .await
        // reqwest's error quotes the URL: keep it without, show it redacted.
        .map_err(|e| PushError::Send {
            url: crate::secret::redact_url(&url),
            source: e.without_url(),
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(PushError::Status {
            url: crate::secret::redact_url(&url),
            status: resp.status(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(success: bool) -> RunFacts {
        RunFacts {
            policy: "prod".into(),
            exit_code: if success { 0 } else { 4 },
            success,
            refused: false,
            finished_at: if success { 1000 } else { 2000 },
            duration_seconds: 1.5,
            snapshot: success.then_some((20505, 36)),
            targets: [(
                "r2".to_string(),
                if success {
                    TargetResult::Succeeded
                } else {
                    TargetResult::Failed
                },
            )]
            .into(),
            kept: [("local".to_string(), 3)].into(),
            restore_test: None,
            authentic: success.then_some(false),
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_upload_times() {
        let first = render(&facts(true), None);
        assert!(first.contains("snapward_last_success_timestamp_seconds{policy=\"prod\"} 1000"));
        assert!(first.contains(
            "snapward_target_last_upload_timestamp_seconds{policy=\"prod\",target=\"r2\"} 1000"
        ));
        assert!(first.contains("snapward_last_snapshot_raft_index{policy=\"prod\"} 36"));
        assert!(first.contains("snapward_snapshot_authentic{policy=\"prod\"} 0"));
        let second = render(&facts(false), Some(&first));
        assert!(
            second.contains("snapward_last_success_timestamp_seconds{policy=\"prod\"} 1000"),
            "{second}"
        );
        assert!(second.contains(
            "snapward_target_last_upload_timestamp_seconds{policy=\"prod\",target=\"r2\"} 1000"
        ));
        assert!(second.contains("snapward_last_run_timestamp_seconds{policy=\"prod\"} 2000"));
        assert!(
            second.contains(
                "snapward_target_result{policy=\"prod\",target=\"r2\",result=\"failed\"} 1"
            )
        );
        assert!(second.contains("snapward_last_exit_code{policy=\"prod\"} 4"));
    }

    #[test]
    fn every_series_has_help_and_type() {
        let text = render(&facts(true), None);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split('{').next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
        }
    }

    #[test]
    fn a_failed_restore_test_keeps_the_last_passed_ones_timestamp() {
        let mut passed = facts(true);
        passed.restore_test = Some((true, 3.25));
        let first = render(&passed, None);
        assert!(
            first.contains("snapward_restore_test_result{policy=\"prod\"} 1"),
            "{first}"
        );
        assert!(first.contains("snapward_restore_test_duration_seconds{policy=\"prod\"} 3.250"));
        let stamp = format!(
            "snapward_restore_test_last_success_timestamp_seconds{{policy=\"prod\"}} {}",
            passed.finished_at
        );
        assert!(first.contains(&stamp), "{first}");
        let mut failed = facts(false);
        failed.finished_at += 3600;
        failed.restore_test = Some((false, 9.0));
        let second = render(&failed, Some(&first));
        assert!(
            second.contains("snapward_restore_test_result{policy=\"prod\"} 0"),
            "{second}"
        );
        assert!(second.contains(&stamp), "carried over: {second}");
        // No test this run: no result series, the stamp still carried.
        let third = render(&facts(true), Some(&second));
        assert!(!third.contains("snapward_restore_test_result"), "{third}");
        assert!(third.contains(&stamp), "{third}");
    }
}
