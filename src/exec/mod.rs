//! The executor: runs a compiled DAG. A node starts when every `Requires`
//! dependency succeeded, every `After` dependency finished, and its
//! preconditions hold against the outcomes so far; a failed or skipped node
//! skips its dependents with the reason. Independent nodes (uploads to
//! several targets) run concurrently. Cancellation (SIGTERM) stops new work,
//! lets running actions clean up, and the report still says what finished.
//!
//! Stage: execute. No backend types here: actions are run by a `Runner`.

pub mod ceremony;
pub mod events;
pub mod report;
pub mod runner;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::FutureExt;
use petgraph::graph::NodeIndex;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::plan::{Action, Dag, EdgeKind, Precondition};
pub use report::{ActionReport, Status};
pub use state::RunState;

/// What running one action produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    pub bytes: u64,
    /// Per-item records ("uploaded x", "would delete y", "retained by lock z").
    pub items: Vec<String>,
}

impl Outcome {
    pub fn ok(detail: impl Into<String>) -> Self {
        Self {
            status: Status::Succeeded,
            detail: detail.into(),
            bytes: 0,
            items: Vec::new(),
        }
    }
    pub fn noop(detail: impl Into<String>) -> Self {
        Self {
            status: Status::NothingToDo,
            ..Self::ok(detail)
        }
    }
    pub fn skipped(detail: impl Into<String>) -> Self {
        Self {
            status: Status::Skipped,
            ..Self::ok(detail)
        }
    }
    pub fn failed(detail: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            ..Self::ok(detail)
        }
    }
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = bytes;
        self
    }
    pub fn with_items(mut self, items: Vec<String>) -> Self {
        self.items = items;
        self
    }
}

/// Runs actions against the real (or dry-run) backends.
#[async_trait]
pub trait Runner: Send + Sync {
    async fn run(
        &self,
        action: &Action,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome;
}

/// Does `pre` hold now? `None` = holds; `Some(reason)` = does not.
pub fn check(pre: &Precondition, s: &RunState) -> Option<String> {
    use Precondition as P;
    let fail = |ok: bool, why: String| if ok { None } else { Some(why) };
    match pre {
        P::BranchChosen { branch } => {
            let Some(d) = &s.decision else {
                return Some("the guard has not decided".into());
            };
            let ok = d.branch == *branch
                || (*branch == crate::plan::guard::Branch::Backup && d.backup_allowed);
            fail(
                ok,
                format!(
                    "branch `{}` not taken (guard: {})",
                    branch.name(),
                    d.branch.name()
                ),
            )
        }
        P::AllNodesKnown => fail(
            s.nodes
                .iter()
                .all(|n| n.init != crate::cluster::InitState::Unknown)
                && !s.nodes.is_empty(),
            "a node's state is unknown".into(),
        ),
        P::AllNodesUninitialized => fail(
            s.nodes
                .iter()
                .all(|n| n.init == crate::cluster::InitState::Uninitialized),
            "not every node is uninitialised".into(),
        ),
        P::ActiveNodeUnsealed => fail(s.active_node().is_some(), "no active, unsealed node".into()),
        P::KeysPresent => fail(
            s.keys_present == Some(true),
            "no unseal keys in the key store".into(),
        ),
        P::KeyStoreEmpty => fail(
            s.keys_present == Some(false),
            "the key store already holds keys".into(),
        ),
        P::SnapshotVerified => fail(
            s.snapshot.is_some(),
            "no verified snapshot from this run".into(),
        ),
        P::UploadConfirmed { store } => fail(
            s.confirmed.contains_key(store),
            format!("this run's snapshot was not confirmed on `{store}`"),
        ),
        P::InitAllowed => fail(s.init_allowed, "init is not allowed by the policy".into()),
        P::RestoreAuthorized => fail(
            s.restore_authorized,
            "restore mode is not auto and no human asked".into(),
        ),
        P::RestoreSnapshotVerified => fail(
            s.restore_from.is_some(),
            "no snapshot to restore was fetched and verified".into(),
        ),
        P::RestoreApplied => fail(s.restore_applied, "the restore was not applied".into()),
        // Checked by the action itself, item by item or at run time.
        P::CredentialsPresent { .. } | P::MirroredElsewhere | P::SnapshotFreshEnough => None,
    }
}

/// Run the DAG to completion (or cancellation). Returns one report per node
/// in plan order.
pub async fn execute(
    dag: &Dag,
    runner: Arc<dyn Runner>,
    state: Arc<Mutex<RunState>>,
    cancel: CancellationToken,
    concurrency: usize,
) -> Vec<ActionReport> {
    let order = dag.order().unwrap_or_default();
    let mut reports: BTreeMap<NodeIndex, ActionReport> = BTreeMap::new();
    let mut running: JoinSet<(NodeIndex, ActionReport)> = JoinSet::new();
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut started: std::collections::BTreeSet<NodeIndex> = Default::default();

    loop {
        // Start (or skip) every node whose dependencies are all finished.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for &ix in &order {
                if started.contains(&ix) {
                    continue;
                }
                let deps = dag.dependencies(ix);
                if deps.iter().any(|(d, _)| !reports.contains_key(d)) {
                    continue;
                }
                started.insert(ix);
                progressed = true;
                let step = dag.step(ix);
                // A required dependency that did not succeed skips this node.
                let blocked = deps.iter().find_map(|(d, kind)| {
                    let r = &reports[d];
                    (*kind == EdgeKind::Requires && !r.status.is_success())
                        .then(|| format!("`{}` {}", r.id, r.status.word()))
                });
                let reason = if cancel.is_cancelled() {
                    Some("cancelled before it started".to_string())
                } else if let Some(b) = blocked {
                    Some(b)
                } else {
                    let s = state.lock().await;
                    step.preconditions.iter().find_map(|p| check(p, &s))
                };
                if let Some(reason) = reason {
                    tracing::info!(action = %step.id, %reason, "skipped");
                    reports.insert(ix, ActionReport::skipped(step, reason));
                    continue;
                }
                let runner = runner.clone();
                let state = state.clone();
                let cancel = cancel.clone();
                let sem = sem.clone();
                let step = step.clone();
                running.spawn(async move {
                    let _permit = sem.acquire_owned().await;
                    let span =
                        tracing::info_span!("action", id = %step.id, kind = step.action.label());
                    let t0 = Instant::now();
                    let started_at = jiff::Timestamp::now();
                    crate::crash::crash_point!(&format!("action.before.{}", step.id));
                    let fut = runner
                        .run(&step.action, &state, &cancel)
                        .instrument(span.clone());
                    // A panicking action is a failed action, never a lost report.
                    let out = std::panic::AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Outcome::failed("internal error: the action panicked"));
                    crate::crash::crash_point!(&format!("action.after.{}", step.id));
                    span.in_scope(|| match out.status {
                        Status::Failed => tracing::warn!(detail = %out.detail, "failed"),
                        _ => {
                            tracing::info!(status = out.status.word(), detail = %out.detail, "done")
                        }
                    });
                    (
                        ix,
                        ActionReport::from_outcome(&step, out, started_at, t0.elapsed()),
                    )
                });
            }
        }
        match running.join_next().await {
            Some(Ok((ix, report))) => {
                reports.insert(ix, report);
            }
            Some(Err(e)) => tracing::error!(error = %e, "an action task was lost"),
            None => break,
        }
    }
    order
        .into_iter()
        .filter_map(|ix| reports.remove(&ix))
        .collect()
}
