//! Dry run of the steps that change the cluster: a [`Runner`] decorator
//! that answers unseal, init, store-keys, init-unseal, restore,
//! restore-unseal and verify-cluster with what they *would* do, from the
//! run state and the policy, without running them. Every other action
//! runs for real over dry-run backends (`backends::dry_run`), which write
//! nothing; so no action handler has a dry-run branch.
//!
//! Stage: execute.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::actions::sealed_nodes;
use super::{Item, Outcome, RunState, Runner};
use crate::plan::{Action, Precondition};
use crate::policy::ValidPolicy;

pub struct DryRun {
    pub inner: Arc<dyn Runner>,
    pub policy: ValidPolicy,
}

impl DryRun {
    /// The "would" outcome of a cluster-changing action, `None` for the
    /// actions that run for real.
    fn would(&self, action: &Action, s: &RunState) -> Option<Outcome> {
        let init = &self.policy.doc.spec.init;
        Some(match action {
            Action::Unseal => {
                let sealed = sealed_nodes(s);
                if sealed.is_empty() {
                    return Some(Outcome::noop("no sealed node"));
                }
                Outcome::ok("dry run").with_items(
                    sealed
                        .into_iter()
                        .map(|(_, node)| Item::WouldUnseal { node })
                        .collect(),
                )
            }
            Action::Init => Outcome::ok(format!(
                "would initialise node 0 with {} shares, threshold {}",
                init.shares, init.threshold
            )),
            Action::StoreKeys => Outcome::ok("would store the keys (create-only)"),
            Action::InitUnseal => Outcome::ok("would unseal every node with the new keys"),
            Action::Restore => match &s.restore_from {
                None => Outcome::failed("no snapshot chosen"),
                Some(src) => Outcome::ok(format!(
                    "would temp-initialise node 0 ({} shares, threshold {}) and force-restore {} from {}",
                    init.shares, init.threshold, src.name, src.store
                )),
            },
            Action::RestoreUnseal => Outcome::ok("would unseal every node with the stored keys"),
            Action::VerifyCluster => Outcome::ok("would verify every node"),
            Action::RestoreTest { store } => Outcome::ok(format!(
                "would rehearse the restore of this run's snapshot from `{store}` on a throwaway OpenBao"
            )),
            Action::Observe
            | Action::GuardCheck
            | Action::Snapshot
            | Action::Verify
            | Action::Upload { .. }
            | Action::Prune { .. }
            | Action::Fetch => return None,
        })
    }
}

#[async_trait]
impl Runner for DryRun {
    async fn run(
        &self,
        action: &Action,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let would = self.would(action, &*state.lock().await);
        match would {
            Some(o) => o,
            None => self.inner.run(action, state, cancel).await,
        }
    }

    async fn skipped(&self, action: &Action, failed: Option<&Precondition>, reason: &str) {
        self.inner.skipped(action, failed, reason).await
    }
}
