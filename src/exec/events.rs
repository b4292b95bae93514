//! Announces what a run did (Kubernetes Events, through a [`Notifier`]):
//! a [`Runner`] decorator that looks at each action's outcome and the run
//! state, so the runner itself knows nothing about Events.
//!
//! Stage: execute. Notes are the outcomes' own texts (which never carry
//! secrets: the report is grepped for them in tests). A notifier never
//! fails the run.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Outcome, RunState, Runner, Status};
pub use crate::backends::{Notifier, Severity};
use crate::plan::guard::Branch;
use crate::plan::{Action, Precondition};

/// Runs `inner` and announces: snapshot taken, uploaded, pruned, target
/// skipped, guard refused (or waiting), init, keys stored, restore
/// started/finished/failed, and failures of each.
pub struct Announcing {
    pub inner: Arc<dyn Runner>,
    pub notifier: Arc<dyn Notifier>,
}

/// The Event for one finished action: `(severity, reason, note)`.
fn event_for(action: &Action, o: &Outcome, state: &RunState) -> Option<(Severity, String, String)> {
    use Severity::{Normal, Warning};
    let note = |what: &str| {
        if o.items.is_empty() {
            format!("{what}: {}", o.detail)
        } else {
            format!(
                "{what}: {} ({})",
                o.detail,
                o.items
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    };
    let failed = o.status == Status::Failed;
    let (sev, reason, what) = match (action, o.status) {
        (Action::GuardCheck, _) => {
            let d = state.decision.as_ref()?;
            return match d.branch {
                Branch::Refuse => Some((Warning, "GuardRefused".into(), d.explanation.clone())),
                Branch::Retry => Some((Warning, "GuardWaiting".into(), d.explanation.clone())),
                _ => None,
            };
        }
        (Action::Snapshot, Status::Succeeded) => (Normal, "SnapshotTaken", "snapshot".into()),
        (Action::Verify, Status::Succeeded)
            if state.snapshot_authentic.is_some_and(|a| !a.is_authentic()) =>
        {
            (Warning, "SnapshotNotAuthentic", "snapshot".into())
        }
        (Action::Snapshot, _) if failed => (Warning, "SnapshotFailed", "snapshot".into()),
        (Action::Upload { target }, Status::Succeeded) => {
            (Normal, "Uploaded", format!("target {target}"))
        }
        (Action::Upload { target }, Status::Skipped) => {
            (Warning, "TargetSkipped", format!("target {target}"))
        }
        (Action::Upload { target }, _) if failed => {
            (Warning, "UploadFailed", format!("target {target}"))
        }
        (Action::Prune { store }, Status::Succeeded) if !o.items.is_empty() => {
            (Normal, "Pruned", format!("store {store}"))
        }
        (Action::Prune { store }, _) if failed => {
            (Warning, "PruneFailed", format!("store {store}"))
        }
        (Action::Init, Status::Succeeded) => (Normal, "Initialized", "init".into()),
        (Action::StoreKeys, Status::Succeeded) => (Normal, "KeysStored", "keys".into()),
        (Action::Init | Action::StoreKeys | Action::InitUnseal, _) if failed => {
            (Warning, "InitFailed", "init".into())
        }
        (Action::VerifyCluster, Status::Succeeded) => (Normal, "RestoreFinished", "restore".into()),
        (Action::Fetch | Action::Restore | Action::RestoreUnseal | Action::VerifyCluster, _)
            if failed =>
        {
            (Warning, "RestoreFailed", "restore".into())
        }
        (Action::RestoreTest { store }, Status::Succeeded) => (
            Normal,
            "RestoreTestPassed",
            format!("restore test from {store}"),
        ),
        (Action::RestoreTest { store }, _) if failed => (
            Warning,
            "RestoreTestFailed",
            format!("restore test from {store}"),
        ),
        _ => return None,
    };
    Some((sev, reason.into(), note(&what)))
}

#[async_trait]
impl Runner for Announcing {
    async fn skipped(&self, action: &Action, failed: Option<&Precondition>, reason: &str) {
        self.inner.skipped(action, failed, reason).await;
        let event = match (action, failed) {
            (Action::Upload { target }, Some(Precondition::CredentialsPresent { .. })) => Some((
                Severity::Warning,
                "TargetSkipped",
                format!("target {target}: {reason}"),
            )),
            (Action::Restore, Some(p)) if crate::exec::check::refuses(p) => {
                Some((Severity::Warning, "GuardRefused", reason.to_string()))
            }
            _ => None,
        };
        if let Some((sev, why, note)) = event {
            self.notifier.notify(sev, why, &note).await;
        }
    }

    async fn run(
        &self,
        action: &Action,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        if *action == Action::Restore {
            let from = state
                .lock()
                .await
                .restore_from
                .as_ref()
                .map(|s| format!("{} from {}", s.name, s.store))
                .unwrap_or_else(|| "the chosen snapshot".into());
            self.notifier
                .notify(
                    Severity::Normal,
                    "RestoreStarted",
                    &format!("restoring {from} onto node 0"),
                )
                .await;
        }
        let o = self.inner.run(action, state, cancel).await;
        let event = event_for(action, &o, &*state.lock().await);
        if let Some((sev, reason, note)) = event {
            self.notifier.notify(sev, &reason, &note).await;
        }
        o
    }
}
