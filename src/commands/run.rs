//! `snapward run -f POLICY [--dry-run]`: the Job's entry point. Builds the
//! real backends (Kubernetes discovery, Secret key store, Lease and Events
//! when the policy or the environment asks for them), takes the run lock,
//! executes the DAG, writes the report and maps the outcome to an exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backends::kube::{self as k8s, KubeError, LeaseGuard};
use crate::cli::{OutputFormat, PolicySource};
use crate::exec::actions::Actions;
use crate::exec::dry_run::DryRun;
use crate::exec::events::Announcing;
use crate::exec::report::RunReport;
use crate::exec::{self, RunState, Runner, Status};
use crate::exit::Exit;
use crate::plan;
use crate::plan::guard::Branch;
use crate::policy::{self, ValidPolicy};
use crate::wiring::Writers;

/// Options of `run` and `restore`.
pub struct RunOptions {
    pub source: PolicySource,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    pub format: OutputFormat,
    pub explicit_restore: bool,
    /// `restore --snapshot NAME`: restore this one, not the newest.
    pub only_snapshot: Option<String>,
}

/// How long the run Lease lasts without renewal (renewed every third of
/// it): a crashed run blocks the next one for at most this long.
const LEASE_DURATION: Duration = Duration::from_secs(60);

use crate::wiring::{Kube, build_targets, cluster, env, wants_kube};

fn kube_exit(e: &KubeError) -> Exit {
    match e {
        KubeError::Config { .. } => Exit::Usage,
        _ => Exit::Retry,
    }
}

async fn load(source: &PolicySource) -> Result<(ValidPolicy, Option<::kube::Client>), Exit> {
    if let Some(reference) = &source.policy_configmap {
        let client = k8s::client(source.kubeconfig.as_deref())
            .await
            .map_err(|e| {
                crate::ewriteln!("error: {e}");
                kube_exit(&e)
            })?;
        let (origin, text) = k8s::read_policy_configmap(&client, reference)
            .await
            .map_err(|e| {
                crate::ewriteln!("error: {e}");
                match e {
                    KubeError::Invalid { .. } | KubeError::NotFound { .. } => Exit::Usage,
                    other => kube_exit(&other),
                }
            })?;
        return policy::load_policy_text(&origin, &text)
            .map(|p| (p, Some(client)))
            .map_err(|e| {
                crate::ewriteln!("{:?}", miette::Report::new(e));
                Exit::Invalid
            });
    }
    let Some(path) = &source.policy else {
        crate::ewriteln!(
            "error: no policy: pass -f FILE or --policy-configmap NAMESPACE/NAME[:KEY]"
        );
        return Err(Exit::Usage);
    };
    policy::load_policy(path).map(|p| (p, None)).map_err(|e| {
        let exit = if matches!(e, policy::PolicyError::Io { .. }) {
            Exit::Usage
        } else {
            Exit::Invalid
        };
        crate::ewriteln!("{:?}", miette::Report::new(e));
        exit
    })
}

/// Gives the run Lease back (the next run need not wait for its expiry).
async fn release(lease: Option<LeaseGuard>) {
    if let Some(l) = lease
        && let Err(e) = l.release().await
    {
        tracing::warn!(error = %e, "cannot release the run Lease (it expires by itself)");
    }
}

/// The run Lease `snapward-<policy>` (single flight across pods).
/// `Ok(None)`: another run holds it.
async fn lease(p: &ValidPolicy, kube: &Kube) -> Result<Option<LeaseGuard>, KubeError> {
    let holder = k8s::holder_identity(env);
    k8s::LeaseLock::acquire(
        &kube.client,
        &kube.namespace,
        &format!("snapward-{}", p.name()),
        &holder,
        LEASE_DURATION,
    )
    .await
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
    let (p, client) = match load(&opts.source).await {
        Ok(x) => x,
        Err(exit) => return exit,
    };
    if let Some(name) = &opts.only_snapshot
        && crate::backends::snapshot_time(&p.doc.spec.local.prefix, name).is_none()
    {
        crate::ewriteln!(
            "error: `{name}` is not a snapshot name: --snapshot takes a file name like {}YYYYMMDD-HHMMSS.snap; `snapward list -f {}` shows every store's snapshots",
            p.doc.spec.local.prefix,
            opts.source
                .policy
                .as_deref()
                .map_or_else(|| "POLICY".into(), |f| f.display().to_string())
        );
        return Exit::Usage;
    }
    let started_at = jiff::Timestamp::now();
    let dag = match plan::compile(&p) {
        Ok(d) => d,
        Err(e) => {
            crate::ewriteln!("{:?}", miette::Report::new(e));
            return Exit::Invalid;
        }
    };
    let (needed, in_cluster) = wants_kube(&p, &opts.source);
    let client = match client {
        Some(c) => Some(c),
        None if needed || in_cluster => {
            match k8s::client(opts.source.kubeconfig.as_deref()).await {
                Ok(c) => Some(c),
                Err(e) if needed => {
                    crate::ewriteln!("error: {e}");
                    return kube_exit(&e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no Kubernetes API: running without the Lease and Events");
                    None
                }
            }
        }
        None => None,
    };
    let kube = client.map(|client| Kube {
        namespace: p
            .doc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        client,
    });
    // One run at a time. Dry runs write nothing, so they take no lock.
    let _lock = if opts.dry_run {
        None
    } else {
        match lock(&p) {
            Ok(Some(f)) => Some(f),
            Ok(None) => {
                crate::ewriteln!(
                    "busy: another run of policy `{}` holds the lock; nothing was touched",
                    p.name()
                );
                return Exit::Busy;
            }
            Err(e) => {
                crate::ewriteln!(
                    "error: cannot take the run lock in {} (spec.local.path): {e}; it must be a directory this user can create files in; nothing was touched",
                    p.doc.spec.local.path
                );
                return Exit::Retry;
            }
        }
    };
    let lease = match &kube {
        Some(k) if !opts.dry_run => match lease(&p, k).await {
            Ok(Some(g)) => Some(g),
            Ok(None) => {
                crate::ewriteln!(
                    "busy: another run of policy `{}` holds the Lease {}/snapward-{}; nothing was touched",
                    p.name(),
                    k.namespace,
                    p.name()
                );
                return Exit::Busy;
            }
            Err(e) => {
                crate::ewriteln!("error: cannot take the run Lease: {e}");
                return Exit::Retry;
            }
        },
        _ => None,
    };
    // Discovery (read-only) only once this run holds the lock and Lease.
    let (bao, ceremony) = match cluster(&p, kube.as_ref()).await {
        Ok(b) => b,
        Err((exit, e)) => {
            crate::ewriteln!("error: {e}");
            release(lease).await;
            return exit;
        }
    };
    let scratch = match tempfile::Builder::new()
        .prefix("snapward-dry-run")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            crate::ewriteln!("error: cannot create a temp dir: {e}");
            release(lease).await;
            return Exit::Retry;
        }
    };
    let guard = plan::guard_policy(&p, opts.explicit_restore);
    let key_kube = kube.as_ref().map(|k| (&k.client, k.namespace.as_str()));
    let mut writers = Writers {
        targets: build_targets(&p).await,
        local: Arc::new(crate::wiring::local_store(&p)),
        key_store: crate::wiring::key_store(&p, key_kube),
        ceremony,
    };
    if opts.dry_run {
        writers = writers.dry_run(scratch.path(), bao.node_names());
    }
    let actions: Arc<dyn Runner> = Arc::new(Actions {
        targets: writers.targets,
        local: writers.local,
        key_store: writers.key_store,
        ceremony: writers.ceremony,
        bao,
        scratch: scratch.path().to_path_buf(),
        guard,
        only_snapshot: opts.only_snapshot.clone(),
        policy: p.clone(),
    });
    // A dry run never runs the steps that change the cluster: it says what
    // they would do.
    let real: Arc<dyn Runner> = if opts.dry_run {
        Arc::new(DryRun {
            inner: actions,
            policy: p.clone(),
        })
    } else {
        actions
    };
    let events = match &kube {
        Some(k) if !opts.dry_run => {
            let cm = opts
                .source
                .policy_configmap
                .as_deref()
                .and_then(|r| r.parse::<k8s::ConfigMapRef>().ok());
            k8s::event_target(
                env,
                cm.as_ref().map(|c| (c.namespace.as_str(), c.name.as_str())),
            )
            .map(|target| k8s::EventSink::new(k.client.clone(), target, env("POD_NAME")))
        }
        _ => None,
    };
    let runner: Arc<dyn Runner> = match events {
        Some(sink) => Arc::new(Announcing {
            inner: real,
            notifier: Arc::new(sink),
        }),
        None => real,
    };
    let state = Arc::new(Mutex::new(RunState::default()));
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let lease_lost = lease.as_ref().map(|l| l.lost_token());
    if let Some(lost) = lease_lost.clone() {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            lost.cancelled().await;
            tracing::error!("the run Lease was lost: stopping (another run may have taken over)");
            cancel.cancel();
        });
    }
    let actions = exec::execute(&dag, runner, state.clone(), cancel.clone(), 4).await;
    release(lease).await;
    let decision = state.lock().await.decision.clone();
    // A precondition that refuses like a guard (guards.maxRestoreAge).
    let refusal = state.lock().await.refusal.clone();
    let failed = actions.iter().any(|a| a.status == Status::Failed);
    let exit = match decision.as_ref().map(|d| d.branch) {
        _ if cancel.is_cancelled() => Exit::Retry,
        Some(Branch::Refuse) => Exit::Refused,
        _ if refusal.is_some() => Exit::Refused,
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
        _ if lease_lost.as_ref().is_some_and(|l| l.is_cancelled()) => {
            "stopped — retry: the run Lease was lost (another run may have taken over)".to_string()
        }
        (Some(d), Exit::Refused) => format!(
            "refused by a guard — a human must act: {}",
            refusal.as_deref().unwrap_or(&d.explanation)
        ),
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
        let facts = report.metrics_facts(snapshot, st.kept.clone());
        drop(st);
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
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
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
