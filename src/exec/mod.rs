//! The executor: runs a compiled DAG. A node starts when every `Requires`
//! dependency succeeded, every `After` dependency finished, and its
//! preconditions hold against the outcomes so far; a failed or skipped node
//! skips its dependents with the reason. Independent nodes (uploads to
//! several targets) run concurrently. Cancellation (SIGTERM) stops new work,
//! lets running actions clean up, and the report still says what finished.
//!
//! Stage: execute. The scheduler knows only "run a node, get an
//! outcome": the actions (one file each, `actions/`) run behind a
//! [`Runner`]; decorators add Events (`events`) and dry-run (`dry_run`).
//! Backend types appear only in the actions, through the backend traits.

pub mod actions;
pub mod check;
pub mod dry_run;
pub mod events;
pub mod item;
pub mod report;
pub mod select;
pub mod state;
pub mod trust;

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

pub use check::check;
pub use item::{Item, ReportItem, Unsealing};

use crate::plan::{Action, Dag, EdgeKind, Precondition};
pub use report::{ActionReport, Status};
pub use state::RunState;

/// What running one action produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub detail: String,
    pub bytes: u64,
    /// Per-item records (uploaded x, would delete y, retained by lock z).
    pub items: Vec<Item>,
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
    pub fn with_items(mut self, items: Vec<Item>) -> Self {
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

    /// The executor skipped `action` (a failed dependency, or the
    /// precondition `failed`, with `reason`). For decorators that announce.
    async fn skipped(&self, _action: &Action, _failed: Option<&Precondition>, _reason: &str) {}
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
                    let r = reports.get(d)?;
                    (*kind == EdgeKind::Requires && !r.status.is_success())
                        .then(|| format!("`{}` {}", r.id, r.status.word()))
                });
                let (reason, failed) = if cancel.is_cancelled() {
                    (Some("cancelled before it started".to_string()), None)
                } else if let Some(b) = blocked {
                    (Some(b), None)
                } else {
                    let mut s = state.lock().await;
                    match step
                        .preconditions
                        .iter()
                        .find_map(|p| check(p, &s).map(|why| (p, why)))
                    {
                        Some((p, why)) => {
                            if check::refuses(p) && s.refusal.is_none() {
                                s.refusal = Some(why.clone());
                            }
                            (Some(why), Some(p))
                        }
                        None => (None, None),
                    }
                };
                if let Some(reason) = reason {
                    tracing::info!(action = %step.id, %reason, "skipped");
                    runner.skipped(&step.action, failed, &reason).await;
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
