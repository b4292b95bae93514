//! `snapward run -f POLICY [--dry-run]` (and `restore`): the Job's entry
//! point. Loads the policy, takes the single-flight lock and Lease,
//! discovers the cluster, builds the runner (`runner`), executes the DAG,
//! and ends with the exit code, report, metrics and summary (`finish`).

mod finish;
mod notify;
mod runner;
mod single_flight;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backends::kube::{self as k8s, KubeError};
use crate::cli::{OutputFormat, PolicySource};
use crate::exec::report::RunReport;
use crate::exec::{self, RunState};
use crate::exit::Exit;
use crate::plan;
use crate::policy::{self, ValidPolicy};
use crate::wiring::{Kube, cluster, wants_kube};

/// Options of `run` and `restore`.
pub struct RunOptions {
    pub source: PolicySource,
    pub dry_run: bool,
    pub report: Option<PathBuf>,
    pub format: OutputFormat,
    pub explicit_restore: bool,
    /// `restore --snapshot NAME`: restore this one, not the newest.
    pub only_snapshot: Option<String>,
    /// `restore --allow-unauthenticated`.
    pub allow_unauthenticated: bool,
    /// A rehearsal on a throwaway server (`test-restore`, `restore-test`):
    /// no Lease, no Events, no nested rehearsal.
    pub rehearsal: bool,
    /// Print nothing (a rehearsal inside a run: its outcome is the action's).
    pub quiet: bool,
}

fn kube_exit(e: &KubeError) -> Exit {
    match e {
        KubeError::Config { .. } => Exit::Usage,
        _ => Exit::Retry,
    }
}

pub(crate) async fn load(
    source: &PolicySource,
) -> Result<(ValidPolicy, Option<::kube::Client>), Exit> {
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

pub(crate) fn cancel_on_signals(cancel: CancellationToken) {
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
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    run_loaded(&p, client, &opts, cancel).await.0
}

/// The policy, loaded: `run`'s work, also what `test-restore` runs on its
/// rehearsal policy. The report is returned too (`None` when the run did
/// not start).
pub(crate) async fn run_loaded(
    p: &ValidPolicy,
    client: Option<::kube::Client>,
    opts: &RunOptions,
    cancel: CancellationToken,
) -> (Exit, Option<RunReport>) {
    let p = p.clone();
    let r = run_policy(p, client, opts, cancel).await;
    match r {
        Ok((exit, report)) => (exit, Some(report)),
        Err(exit) => (exit, None),
    }
}

/// The run with its notifications (`spec.notify`): a run that stopped
/// before it had a report still ends its ping with the exit code, except
/// when another run holds the lock (that one notifies).
async fn run_policy(
    p: ValidPolicy,
    client: Option<::kube::Client>,
    opts: &RunOptions,
    cancel: CancellationToken,
) -> Result<(Exit, RunReport), Exit> {
    let notifier = notify::notifier(&p, opts);
    let started_at = jiff::Timestamp::now();
    let r = run_notified(&p, client, opts, cancel, notifier.as_ref()).await;
    if let (Some(n), Err(exit)) = (&notifier, &r)
        && *exit != Exit::Busy
    {
        notify::not_started(n, &p, started_at, *exit).await;
    }
    r
}

async fn run_notified(
    p: &ValidPolicy,
    client: Option<::kube::Client>,
    opts: &RunOptions,
    cancel: CancellationToken,
    notifier: Option<&crate::backends::notify::Notifier>,
) -> Result<(Exit, RunReport), Exit> {
    let p = p.clone();
    if let Some(name) = &opts.only_snapshot
        && crate::backends::snapshot_time(&p.local.prefix, name).is_none()
    {
        crate::ewriteln!(
            "error: `{name}` is not a snapshot name: --snapshot takes a file name like {}YYYYMMDD-HHMMSS.snap; `snapward list -f {}` shows every store's snapshots",
            p.local.prefix,
            opts.source
                .policy
                .as_deref()
                .map_or_else(|| "POLICY".into(), |f| f.display().to_string())
        );
        return Err(Exit::Usage);
    }
    let started_at = jiff::Timestamp::now();
    let dag = match plan::compile(&p) {
        Ok(d) => d,
        Err(e) => {
            crate::ewriteln!("{:?}", miette::Report::new(e));
            return Err(Exit::Invalid);
        }
    };
    let kube = match kube(&p, &opts.source, client).await {
        Ok(k) => k,
        Err(exit) => return Err(exit),
    };
    // One run at a time. Dry runs write nothing, so they take no lock.
    // A rehearsal holds its own lock (its policy has its own name) but no
    // Lease: it touches nothing of the cluster.
    let lease_kube = kube.as_ref().filter(|_| !opts.rehearsal);
    let held = match single_flight::take(&p, lease_kube, opts.dry_run).await {
        Ok(h) => h,
        Err(exit) => return Err(exit),
    };
    let mut notifications = match notifier {
        Some(n) => n.start().await,
        None => Vec::new(),
    };
    // Discovery (read-only) only once this run holds the lock and Lease.
    let (bao, ceremony) = match cluster(&p, kube.as_ref()).await {
        Ok(b) => b,
        Err((exit, e)) => {
            crate::ewriteln!("error: {e}");
            single_flight::release(held.lease).await;
            return Err(exit);
        }
    };
    let scratch = match tempfile::Builder::new()
        .prefix("snapward-dry-run")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            crate::ewriteln!("error: cannot create a temp dir: {e}");
            single_flight::release(held.lease).await;
            return Err(Exit::Retry);
        }
    };
    let runner = runner::build(&p, opts, kube.as_ref(), bao, ceremony, scratch.path()).await;
    let state = Arc::new(Mutex::new(RunState::default()));
    let lease_lost = held.lease.as_ref().map(|l| l.lost_token());
    if let Some(lost) = lease_lost.clone() {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            lost.cancelled().await;
            tracing::error!("the run Lease was lost: stopping (another run may have taken over)");
            cancel.cancel();
        });
    }
    let actions = exec::execute(&dag, runner, state.clone(), cancel.clone(), 4).await;
    single_flight::release(held.lease).await;
    let st = state.lock().await;
    let (exit, summary) = finish::outcome(
        st.decision.as_ref(),
        st.refusal.as_deref(),
        &actions,
        cancel.is_cancelled(),
        lease_lost.as_ref().is_some_and(|l| l.is_cancelled()),
        opts.dry_run,
    );
    let mut report = RunReport {
        policy: p.name().to_string(),
        dry_run: opts.dry_run,
        started_at,
        finished_at: jiff::Timestamp::now(),
        exit,
        exit_code: exit.code(),
        summary,
        decision: st.decision.clone(),
        cancelled: cancel.is_cancelled(),
        actions,
        notifications: Vec::new(),
    };
    finish::metrics(&p, &report, &st).await;
    drop(st);
    if let Some(n) = notifier {
        let ended = n
            .end(report.exit_code, &report.summary, &notify::body(&report))
            .await;
        notifications.extend(ended);
        report.notifications = notifications;
    }
    if !opts.quiet {
        finish::output(opts, &report);
    }
    Ok((exit, report))
}

/// The Kubernetes API, when the policy needs it (discovery, a Secret key
/// store, a policy ConfigMap) or the run is in a pod (Lease and Events).
async fn kube(
    p: &ValidPolicy,
    source: &PolicySource,
    client: Option<::kube::Client>,
) -> Result<Option<Kube>, Exit> {
    let (needed, in_cluster) = wants_kube(p, source);
    let client = match client {
        Some(c) => Some(c),
        None if needed || in_cluster => match k8s::client(source.kubeconfig.as_deref()).await {
            Ok(c) => Some(c),
            Err(e) if needed => {
                crate::ewriteln!("error: {e}");
                return Err(kube_exit(&e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "no Kubernetes API: running without the Lease and Events");
                None
            }
        },
        None => None,
    };
    Ok(client.map(|client| Kube {
        namespace: p
            .doc
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        client,
    }))
}
