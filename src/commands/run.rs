//! `snapward run -f POLICY [--dry-run]`: the Job's entry point. Builds the
//! real backends, takes the run lock, executes the DAG, writes the report
//! and maps the outcome to an exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backends::filesystem::FsTarget;
use crate::backends::openbao::{HttpOpenBao, Timeouts};
use crate::backends::s3::S3Target;
use crate::backends::{Target, TargetError};
use crate::cli::OutputFormat;
use crate::exec::report::RunReport;
use crate::exec::runner::{RealRunner, TargetSlot};
use crate::exec::{self, RunState, Status};
use crate::exit::Exit;
use crate::guard::Branch;
use crate::plan;
use crate::policy::{self, ValidPolicy};
use crate::store::LocalStore;

/// Options of `run` (and, later, `restore`).
pub struct RunOptions {
    pub policy: PathBuf,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    pub format: OutputFormat,
    pub explicit_restore: bool,
    /// `restore --snapshot NAME`: restore this one, not the newest.
    pub only_snapshot: Option<String>,
}

/// Node addresses from the policy (Kubernetes discovery comes later).
fn nodes(p: &ValidPolicy) -> Result<Vec<(String, url::Url)>, String> {
    let Some(nodes) = &p.doc.spec.cluster.nodes else {
        return Err("Kubernetes node discovery is not available in this version: list the nodes in spec.cluster.nodes".into());
    };
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let url = url::Url::parse(&n.address).map_err(|e| format!("node {i}: {e}"))?;
            Ok((n.name.clone().unwrap_or_else(|| format!("node-{i}")), url))
        })
        .collect()
}

pub async fn build_targets(p: &ValidPolicy) -> Vec<TargetSlot> {
    let mut out = Vec::new();
    for (t, rules) in p.doc.spec.targets.iter().zip(&p.target_rules) {
        let target: Result<Arc<dyn Target>, TargetError> = if let Some(s3) = &t.s3 {
            S3Target::new(&t.name, s3, &p.doc.spec.local.prefix)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Target>)
        } else if let Some(fs) = &t.filesystem {
            Ok(Arc::new(FsTarget::new(
                &t.name,
                fs,
                &p.doc.spec.local.prefix,
                p.file_mode,
            )) as Arc<dyn Target>)
        } else {
            Err(TargetError::Refused {
                target: t.name.clone(),
                detail: "no kind".into(),
            })
        };
        out.push(TargetSlot {
            name: t.name.clone(),
            optional: t.optional,
            rules: rules.clone(),
            target,
        });
    }
    out
}

/// The lock file that keeps runs of one policy apart (filesystem shape).
fn lock(p: &ValidPolicy) -> Result<Option<std::fs::File>, std::io::Error> {
    let dir = Path::new(&p.doc.spec.local.path);
    if dir.exists() && !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "it exists but is not a directory",
        ));
    }
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!(".snapward-{}.lock", p.name())))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn cancel_on_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::warn!("SIGTERM: stopping cleanly"),
                _ = int.recv() => tracing::warn!("SIGINT: stopping cleanly"),
            }
            cancel.cancel();
        }
    });
}

pub async fn run(opts: RunOptions) -> Exit {
    let p = match policy::load_policy(&opts.policy) {
        Ok(p) => p,
        Err(e) => {
            let exit = if matches!(e, policy::PolicyError::Io { .. }) {
                Exit::Usage
            } else {
                Exit::Invalid
            };
            eprintln!("{:?}", miette::Report::new(e));
            return exit;
        }
    };
    if let Some(name) = &opts.only_snapshot
        && crate::backends::snapshot_time(&p.doc.spec.local.prefix, name).is_none()
    {
        eprintln!(
            "error: `{name}` is not a snapshot name: --snapshot takes a file name like {}YYYYMMDD-HHMMSS.snap; `snapward list -f {}` shows every store's snapshots",
            p.doc.spec.local.prefix,
            opts.policy.display()
        );
        return Exit::Usage;
    }
    let started_at = jiff::Timestamp::now();
    let dag = match plan::compile(&p) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return Exit::Invalid;
        }
    };
    let node_list = match nodes(&p) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let timeouts = Timeouts {
        connect: p.connect_timeout,
        request: p.request_timeout,
        stream_idle: p.stream_idle_timeout,
    };
    let bao = match HttpOpenBao::new(node_list, &p.doc.spec.cluster, timeouts) {
        Ok(b) => Arc::new(b),
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Retry;
        }
    };
    // One run at a time. Dry runs write nothing, so they take no lock.
    let _lock = if opts.dry_run {
        None
    } else {
        match lock(&p) {
            Ok(Some(f)) => Some(f),
            Ok(None) => {
                eprintln!(
                    "busy: another run of policy `{}` holds the lock; nothing was touched",
                    p.name()
                );
                return Exit::Busy;
            }
            Err(e) => {
                eprintln!(
                    "error: cannot take the run lock in {} (spec.local.path): {e}; it must be a directory this user can create files in; nothing was touched",
                    p.doc.spec.local.path
                );
                return Exit::Retry;
            }
        }
    };
    let scratch = match tempfile::Builder::new()
        .prefix("snapward-dry-run")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a temp dir: {e}");
            return Exit::Retry;
        }
    };
    let guard = plan::guard_policy(&p, opts.explicit_restore);
    let runner = Arc::new(RealRunner {
        targets: build_targets(&p).await,
        local: LocalStore::new(
            &p.doc.spec.local.path,
            &p.doc.spec.local.prefix,
            p.file_mode,
        ),
        key_store: crate::keys::from_policy(&p),
        ceremony: bao.clone(),
        bao,
        dry_run: opts.dry_run,
        scratch: scratch.path().to_path_buf(),
        guard,
        only_snapshot: opts.only_snapshot.clone(),
        policy: p.clone(),
    });
    let state = Arc::new(Mutex::new(RunState::default()));
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let actions = exec::execute(&dag, runner, state.clone(), cancel.clone(), 4).await;
    let decision = state.lock().await.decision.clone();
    let failed = actions.iter().any(|a| a.status == Status::Failed);
    let exit = match decision.as_ref().map(|d| d.branch) {
        _ if cancel.is_cancelled() => Exit::Retry,
        Some(Branch::Refuse) => Exit::Refused,
        Some(Branch::Retry) => Exit::Retry,
        _ if failed => Exit::Retry,
        None => Exit::Retry,
        Some(_) => Exit::Success,
    };
    let summary = match (&decision, exit) {
        (_, Exit::Success) => format!(
            "done{}",
            if opts.dry_run {
                " (dry run: nothing was written)"
            } else {
                ""
            }
        ),
        (Some(d), Exit::Refused) => {
            format!("refused by a guard — a human must act: {}", d.explanation)
        }
        (Some(d), _) if d.branch == Branch::Retry => format!("not done — retry: {}", d.explanation),
        _ => {
            let f: Vec<&str> = actions
                .iter()
                .filter(|a| a.status == Status::Failed)
                .map(|a| a.id.as_str())
                .collect();
            format!("failed — retry: {}", f.join(", "))
        }
    };
    let report = RunReport {
        policy: p.name().to_string(),
        dry_run: opts.dry_run,
        started_at,
        finished_at: jiff::Timestamp::now(),
        exit,
        exit_code: exit.code(),
        summary: summary.clone(),
        decision,
        cancelled: cancel.is_cancelled(),
        actions,
    };
    if !opts.dry_run
        && let Some(m) = &p.doc.spec.metrics
    {
        let st = state.lock().await;
        let snapshot = st
            .snapshot
            .as_ref()
            .map(|t| (t.identity.file_size, t.identity.index));
        let facts = crate::metrics::RunFacts::from_report(&report, snapshot, st.kept.clone());
        drop(st);
        if let Some(path) = &m.textfile {
            let previous = std::fs::read_to_string(path).ok();
            let text = crate::metrics::render(&facts, previous.as_deref());
            if let Err(e) = crate::metrics::write_textfile(Path::new(path), &text) {
                tracing::warn!(path = %path, error = %e, "cannot write the metrics textfile");
            }
        }
        if let Some(url) = &m.pushgateway {
            let text = crate::metrics::render(&facts, None);
            if let Err(e) = crate::metrics::push(url, p.name(), &text).await {
                tracing::warn!(error = %e, "cannot push metrics");
            }
        }
    }
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Some(path) = &opts.report
        && let Err(e) = std::fs::write(path, format!("{json}\n"))
    {
        eprintln!("error: cannot write the report to {}: {e}", path.display());
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
                    out.push_str(&format!("{:<16}   {item}\n", ""));
                }
            }
            out.push_str(&format!("{summary}\n"));
        }
    }
    // The run's outcome stands even if nobody reads its summary.
    if let Err(e) = super::print_stdout(&out) {
        super::print_stderr(&format!(
            "error: cannot write to stdout: {e}; the run itself ended: {summary}"
        ));
    }
    exit
}
