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
struct Rehearsal {
    bin: PathBuf,
    from: StoreId,
    timeout: Duration,
    seal: Option<String>,
    work: PathBuf,
}

fn resolve(p: &ValidPolicy, o: &TestRestoreOptions) -> Result<Rehearsal, String> {
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
    Ok(Rehearsal {
        bin,
        from,
        timeout,
        seal,
        work,
    })
}

/// The policy the rehearsal runs: the real one, pointed at the throwaway
/// server and at the store under test only.
fn rehearsal_policy(
    p: &ValidPolicy,
    r: &Rehearsal,
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
    for line in clean_leftovers(&r.work) {
        tracing::warn!("restore test: {line}");
    }
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let budget = {
        let cancel = cancel.clone();
        let timeout = r.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            tracing::error!(
                "restore test: the time budget ({}s) ran out: stopping",
                timeout.as_secs()
            );
            cancel.cancel();
        })
    };
    let started = std::time::Instant::now();
    let server = tokio::select! {
        s = Throwaway::start(&r.bin, &r.work, r.seal.as_deref(), Duration::from_secs(60)) => s,
        _ = cancel.cancelled() => {
            crate::ewriteln!("error: restore test: stopped before the throwaway server answered");
            return Exit::Retry;
        }
    };
    let server = match server {
        Ok(s) => s,
        Err(e) => {
            crate::ewriteln!("error: {e}");
            budget.abort();
            return Exit::Retry;
        }
    };
    let scratch = server.dir().join("local");
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        crate::ewriteln!(
            "error: restore test: cannot create {}: {e}",
            scratch.display()
        );
        return Exit::Retry;
    }
    let q = rehearsal_policy(&p, &r, &server, &scratch);
    let opts = RunOptions {
        source: o.source,
        dry_run: false,
        report: o.report,
        format: o.format,
        explicit_restore: true,
        only_snapshot: o.snapshot,
        allow_unauthenticated: false,
    };
    let (exit, report) = run_loaded(&q, client, &opts, cancel.clone()).await;
    budget.abort();
    let proved = report.as_ref().and_then(|rep| {
        rep.actions
            .iter()
            .find(|a| a.id == "verify-cluster" && a.status == crate::exec::Status::Succeeded)
            .map(|a| a.reason.clone())
    });
    match (exit, proved) {
        (Exit::Success, Some(_)) => {
            crate::ewriteln!(
                "restore test passed in {:.1}s: the copy in `{}` restored on a throwaway OpenBao, was unsealed (stored keys, or its seal) and answered",
                started.elapsed().as_secs_f64(),
                r.from
            );
            Exit::Success
        }
        (Exit::Success, None) => {
            crate::ewriteln!("restore test FAILED: the rehearsal ended without a verified cluster");
            Exit::Retry
        }
        (exit, _) => {
            crate::ewriteln!(
                "restore test FAILED (exit {}): the copy in `{}` did not restore; the throwaway server's log ends:\n{}",
                exit.code(),
                r.from,
                server.log_tail(15)
            );
            exit
        }
    }
}
