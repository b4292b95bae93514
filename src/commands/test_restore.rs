//! `snapward test-restore -f POLICY [--snapshot NAME] [--from STORE]`:
//! rehearse a restore on a throwaway OpenBao (DESIGN.md §9, issue 13).
//!
//! The rehearsal is the restore branch itself, run on a policy derived
//! from the real one: the cluster is one throwaway `bao server` on
//! 127.0.0.1 (`backends::throwaway`), the only restore source is the store
//! under test (a remote copy is downloaded fresh, not the local file), the
//! key store is the real one (read; a restore never writes it), init is
//! off, restore is automatic. So what is proved is exactly what a disaster
//! would need: the stored copy fetches, verifies, authenticates with the
//! stored keys, restores, unseals with the stored keys and answers the
//! canary. The production cluster is never contacted.
//!
//! Exit: 0 when the rehearsal restored and verified; otherwise the run's
//! exit (3: refused, e.g. the keys do not authenticate the copy; 4: failed,
//! e.g. the copy is corrupt or the server did not come up).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::run::{RunOptions, cancel_on_signals, load, run_loaded};
use crate::backends::throwaway::{Throwaway, clean_leftovers};
use crate::cli::{OutputFormat, PolicySource};
use crate::exec::actions::restore_test::{Rehearsal as Outcome, Rehearse};
use crate::exit::Exit;
use crate::policy::model::{self, RestoreMode};
use crate::policy::{ListedNode, Nodes, StoreId, ValidPolicy};

/// Options of `test-restore`.
pub struct TestRestoreOptions {
    pub source: PolicySource,
    pub snapshot: Option<String>,
    /// Overrides `spec.restoreTest.from`.
    pub from: Option<String>,
    /// Overrides `spec.restoreTest.baoBinary`.
    pub bao: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub format: OutputFormat,
}

/// What the rehearsal needs, resolved from the policy and the flags.
#[derive(Debug)]
struct Settings {
    bin: PathBuf,
    from: StoreId,
    timeout: Duration,
    seal: Option<String>,
    work: PathBuf,
}

fn resolve(p: &ValidPolicy, o: &TestRestoreOptions) -> Result<Settings, String> {
    let t = p.doc.spec.restore_test.as_ref();
    let bin = match (&o.bao, t) {
        (Some(b), _) => b.clone(),
        (None, Some(t)) => PathBuf::from(&t.bao_binary),
        (None, None) => {
            return Err(
                "no bao binary for the throwaway server: set spec.restoreTest.baoBinary in the policy or pass --bao PATH".into(),
            );
        }
    };
    if !bin.is_file() {
        return Err(format!(
            "the bao binary {} is not a file (spec.restoreTest.baoBinary or --bao): the throwaway server runs it",
            bin.display()
        ));
    }
    let from = match o.from.as_deref().or(t.and_then(|t| t.from.as_deref())) {
        Some(name) => {
            let id = StoreId::from_name(name);
            if !p.sources.contains(&id) && !id.is_local() {
                return Err(format!(
                    "--from / spec.restoreTest.from `{name}` is not a store of this policy; the stores are: {}",
                    p.sources
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            id
        }
        // The farthest copy: the last restore source.
        None => p.sources.last().cloned().unwrap_or(StoreId::Local),
    };
    let timeout = match t {
        Some(t) => humantime::parse_duration(t.timeout.trim()).map_err(|e| {
            format!(
                "spec.restoreTest.timeout `{}` is not a duration like `10m`: {e}",
                t.timeout
            )
        })?,
        None => Duration::from_secs(600),
    };
    let seal = match t.and_then(|t| t.seal_config_file.as_deref()) {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("spec.restoreTest.sealConfigFile {f} cannot be read: {e}"))?,
        ),
        None => None,
    };
    let work = t
        .and_then(|t| t.work_dir.as_deref())
        .map(PathBuf::from)
        .unwrap_or_else(|| p.local.dir.join(".snapward-restore-test"));
    Ok(Settings {
        bin,
        from,
        timeout,
        seal,
        work,
    })
}

/// What the rehearsal reads on the restored copy (see
/// `model::RestoreTest::canary`).
fn rehearsal_canary(p: &ValidPolicy) -> Option<model::Canary> {
    if let Some(c) = p
        .doc
        .spec
        .restore_test
        .as_ref()
        .and_then(|t| t.canary.clone())
    {
        return Some(c);
    }
    if let Some(c) = &p.restore.canary {
        return Some(c.clone());
    }
    let keys = p.unseal_keys.as_ref()?;
    let crate::policy::KeyLocation::Files { directory } = &keys.location else {
        return None;
    };
    let token = directory.join(&keys.root_token_key);
    token.is_file().then(|| model::Canary {
        path: "sys/mounts".into(),
        token_file: token.display().to_string(),
    })
}

/// The policy the rehearsal runs: the real one, pointed at the throwaway
/// server and at the store under test only.
fn rehearsal_policy(
    p: &ValidPolicy,
    r: &Settings,
    server: &Throwaway,
    scratch: &Path,
) -> ValidPolicy {
    let mut q = p.clone();
    q.doc.metadata.name = format!("{}-restore-test", p.name());
    let node = ListedNode {
        name: "restore-test".into(),
        address: server.address.clone(),
    };
    q.cluster.nodes = Nodes::Listed(vec![node]);
    q.cluster.auth = None;
    let c = &mut q.doc.spec.cluster;
    c.nodes = Some(vec![model::Node {
        name: Some("restore-test".into()),
        address: server.address.to_string(),
    }]);
    c.discovery = None;
    c.tls = None;
    c.auth = None;
    // The throwaway's seal is observed like any node's.
    c.seal = None;
    q.doc.spec.init.allowed = false;
    q.doc.spec.metrics = None;
    q.doc.spec.schedule = None;
    q.restore.mode = RestoreMode::Auto;
    q.doc.spec.restore.mode = RestoreMode::Auto;
    q.restore.restart_pod = false;
    q.doc.spec.restore.restart_pod = false;
    q.guards.max_restore_age = None;
    q.restore.canary = rehearsal_canary(p);
    q.doc.spec.restore.canary = q.restore.canary.clone();
    q.sources = vec![r.from.clone()];
    q.targets.retain(|t| t.id() == r.from);
    q.doc
        .spec
        .targets
        .retain(|t| StoreId::Target(t.name.clone()) == r.from);
    if !r.from.is_local() {
        // Fetched fresh from the target into an empty local store: the
        // local copy proves nothing about the off-cluster one.
        q.local.dir = scratch.to_path_buf();
        q.doc.spec.local.path = scratch.display().to_string();
    }
    q
}

/// One rehearsal's outcome: the run's exit, how long it took, and what it
/// proved or (on failure) why, with the end of the throwaway server's log.
struct Rehearsed {
    exit: Exit,
    seconds: f64,
    /// The verify-cluster detail when it passed; why not otherwise.
    detail: String,
}

/// Start a throwaway server, run the restore branch on the derived policy
/// against it, stop and remove it. `cancel` stops it early (SIGTERM, the
/// time budget, a cancelled run).
async fn rehearse(
    p: &ValidPolicy,
    client: Option<::kube::Client>,
    r: &Settings,
    opts: RunOptions,
    cancel: CancellationToken,
) -> Rehearsed {
    for line in clean_leftovers(&r.work) {
        tracing::warn!("restore test: {line}");
    }
    let started = std::time::Instant::now();
    let failed = |exit, detail: String| Rehearsed {
        exit,
        seconds: started.elapsed().as_secs_f64(),
        detail,
    };
    // The time budget: a child token, so that it stops this rehearsal only.
    let cancel = cancel.child_token();
    let timer = {
        let (stop, timeout) = (cancel.clone(), r.timeout);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::error!(
                "restore test: the time budget ({}s, spec.restoreTest.timeout) ran out: stopping",
                timeout.as_secs()
            );
            stop.cancel();
        })
    };
    let server = tokio::select! {
        s = Throwaway::start(&r.bin, &r.work, r.seal.as_deref(), Duration::from_secs(60)) => s,
        _ = cancel.cancelled() => {
            timer.abort();
            return failed(Exit::Retry, "stopped before the throwaway server answered".into());
        }
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            timer.abort();
            return failed(Exit::Retry, e.to_string());
        }
    };
    let scratch = server.dir().join("local");
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        timer.abort();
        return failed(
            Exit::Retry,
            format!("cannot create {}: {e}", scratch.display()),
        );
    }
    let q = rehearsal_policy(p, r, &server, &scratch);
    let (exit, report) = run_loaded(&q, client, &opts, cancel.clone()).await;
    timer.abort();
    let seconds = started.elapsed().as_secs_f64();
    let proved = report.as_ref().and_then(|rep| {
        let ok = |id: &str| {
            rep.actions
                .iter()
                .find(|a| a.id == id && a.status == crate::exec::Status::Succeeded)
        };
        let verified = ok("verify-cluster")?;
        // What it proved: the snapshot chosen, the cluster and index it
        // came back as, the canary read.
        let texts: Vec<String> = [ok("fetch"), Some(verified)]
            .into_iter()
            .flatten()
            .flat_map(|a| a.items.iter().map(|i| i.text.clone()))
            .collect();
        Some(if texts.is_empty() {
            verified.reason.clone()
        } else {
            texts.join("; ")
        })
    });
    let (exit, detail) = match (exit, proved) {
        (Exit::Success, Some(p)) => (Exit::Success, p),
        (Exit::Success, None) => (
            Exit::Retry,
            "the rehearsal ended without a verified cluster".to_string(),
        ),
        (exit, _) => {
            let why = report
                .as_ref()
                .map(|rep| {
                    rep.actions
                        .iter()
                        .filter(|a| a.status == crate::exec::Status::Failed)
                        .map(|a| format!("{}: {}", a.id, a.reason))
                        .chain(std::iter::once(rep.summary.clone()))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| "the rehearsal did not start".into());
            (
                exit,
                format!(
                    "{why}. The throwaway server's log ends:\n{}",
                    server.log_tail(15)
                ),
            )
        }
    };
    Rehearsed {
        exit,
        seconds,
        detail,
    }
}

/// How a rehearsal runs the restore branch: an explicit restore (of
/// `snapshot`, else the newest valid one), for real, never of a snapshot
/// the keys do not authenticate; no Lease, no Events (`rehearsal`).
fn rehearsal_options(
    source: PolicySource,
    snapshot: Option<String>,
    report: Option<PathBuf>,
    format: OutputFormat,
    quiet: bool,
) -> RunOptions {
    RunOptions {
        source,
        dry_run: false,
        report,
        format,
        explicit_restore: true,
        only_snapshot: snapshot,
        allow_unauthenticated: false,
        rehearsal: true,
        quiet,
    }
}

/// The source a nested run is given: the policy is already loaded.
fn no_source() -> PolicySource {
    PolicySource {
        policy: None,
        policy_configmap: None,
        kubeconfig: None,
    }
}

/// `restore-test` inside a scheduled run: a rehearsal of this run's
/// snapshot, quiet (its outcome is the action's).
pub struct ThrowawayRehearsal {
    policy: ValidPolicy,
    client: Option<::kube::Client>,
}

impl ThrowawayRehearsal {
    /// `None` when the policy asks for no restore test.
    pub fn for_policy(p: &ValidPolicy, kube: Option<&crate::wiring::Kube>) -> Option<Self> {
        p.doc.spec.restore_test.as_ref()?;
        Some(Self {
            policy: p.clone(),
            client: kube.map(|k| k.client.clone()),
        })
    }
}

#[async_trait::async_trait]
impl Rehearse for ThrowawayRehearsal {
    async fn rehearse(&self, store: &str, snapshot: &str, cancel: &CancellationToken) -> Outcome {
        let o = TestRestoreOptions {
            source: no_source(),
            snapshot: Some(snapshot.to_string()),
            from: Some(store.to_string()),
            bao: None,
            report: None,
            format: OutputFormat::Human,
        };
        let r = match resolve(&self.policy, &o) {
            Ok(r) => r,
            Err(why) => {
                return Outcome {
                    passed: false,
                    detail: why,
                };
            }
        };
        let opts = rehearsal_options(
            no_source(),
            Some(snapshot.to_string()),
            None,
            OutputFormat::Human,
            true,
        );
        let done = rehearse(&self.policy, self.client.clone(), &r, opts, cancel.clone()).await;
        Outcome {
            passed: done.exit == Exit::Success,
            detail: done.detail,
        }
    }
}

pub async fn run(o: TestRestoreOptions) -> Exit {
    let (p, client) = match load(&o.source).await {
        Ok(x) => x,
        Err(exit) => return exit,
    };
    let r = match resolve(&p, &o) {
        Ok(r) => r,
        Err(why) => {
            crate::ewriteln!("error: {why}");
            return Exit::Usage;
        }
    };
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let opts = rehearsal_options(o.source, o.snapshot, o.report, o.format, false);
    let done = rehearse(&p, client, &r, opts, cancel).await;
    if done.exit == Exit::Success {
        crate::ewriteln!(
            "restore test passed in {:.1}s: the copy in `{}` restored on a throwaway OpenBao, was unsealed (stored keys, or its seal) and answered: {}",
            done.seconds,
            r.from,
            done.detail
        );
    } else {
        crate::ewriteln!(
            "restore test FAILED (exit {}): the copy in `{}` did not restore: {}",
            done.exit.code(),
            r.from,
            done.detail
        );
    }
    done.exit
}
