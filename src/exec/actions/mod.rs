//! The actions, one file each, and the one dispatch table
//! ([`Actions::run`]): the scheduler hands a node's action here and gets
//! an outcome back. Actions talk to the outside world only through the
//! backend traits, so a dry run is the same code over dry-run backends
//! (the decorators in `backends`) — no action knows whether it is one.
//!
//! Stage: execute.

mod fanout;
mod fetch;
mod followers;
mod guard_check;
mod init;
mod init_unseal;
mod observe;
mod prune;
mod restore;
mod restore_auto;
pub mod restore_test;
mod restore_unseal;
mod snapshot;
mod store_keys;
mod unseal;
pub(crate) use unseal::sealed_nodes;
mod unsealing;
mod upload;
mod verify;
mod verify_cluster;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::state::{RestoreSource, RunState, TakenSnapshot};
use super::trust::{self, Keys};
use super::{Outcome, Runner};
use crate::backends::keys::{KeyStore, StoredKeys};
use crate::backends::local::{LocalSnapshot, SnapshotStore};
use crate::backends::{Ceremony, OpenBao, Target, TargetError};
use crate::plan::Action;
use crate::plan::guard::GuardPolicy;
use crate::policy::{StoreId, ValidPolicy};
use crate::retention::Rules;

/// A configured target: usable, or why not (credentials absent, ...).
pub struct TargetSlot {
    pub name: String,
    pub optional: bool,
    pub rules: Rules,
    pub target: Result<Arc<dyn Target>, TargetError>,
}

/// What every action may use: the policy and the backends.
pub struct Actions {
    pub policy: ValidPolicy,
    pub bao: Arc<dyn OpenBao>,
    pub ceremony: Arc<dyn Ceremony>,
    pub targets: Vec<TargetSlot>,
    pub local: Arc<dyn SnapshotStore>,
    /// `None`: the policy names no key store.
    pub key_store: Option<Arc<dyn KeyStore>>,
    /// Fetched snapshots are downloaded here (removed after the run).
    pub scratch: PathBuf,
    pub guard: GuardPolicy,
    /// Restore exactly this snapshot (by file name), if set.
    pub only_snapshot: Option<String>,
    /// A human accepts a snapshot the stored keys do not authenticate.
    pub allow_unauthenticated: bool,
    /// The keys stored snapshots are authenticated with, once read.
    pub trust_keys: tokio::sync::OnceCell<Arc<Keys>>,
    /// Rehearses restores on a throwaway server (`restore-test`); `None`
    /// where the command provides none.
    pub rehearse: Option<Arc<dyn restore_test::Rehearse>>,
    /// The seal kind observe saw every node agree on (set once, by observe).
    pub seal: std::sync::OnceLock<crate::cluster::SealKind>,
}

#[async_trait]
impl Runner for Actions {
    async fn run(
        &self,
        action: &Action,
        state: &Mutex<RunState>,
        cancel: &CancellationToken,
    ) -> Outcome {
        match action {
            Action::Observe => observe::run(self, state).await,
            Action::GuardCheck => guard_check::run(self, state).await,
            Action::Unseal => unseal::run(self, state, cancel).await,
            Action::Snapshot => snapshot::run(self, state, cancel).await,
            Action::Verify => verify::run(self, state).await,
            Action::Upload { target } => upload::run(self, target, state, cancel).await,
            Action::Prune { store } if StoreId::from_name(store).is_local() => {
                prune::local(self, state).await
            }
            Action::Prune { store } => prune::target(self, store, state).await,
            Action::Init => init::run(self, state).await,
            Action::StoreKeys => store_keys::run(self, state).await,
            Action::InitUnseal => init_unseal::run(self, state, cancel).await,
            Action::Fetch => fetch::run(self, state, cancel).await,
            Action::Restore => restore::run(self, state, cancel).await,
            Action::RestoreUnseal => {
                let seal = state.lock().await.seal_kind();
                restore_unseal::run(self, seal, cancel).await
            }
            Action::VerifyCluster => verify_cluster::run(self, state, cancel).await,
            Action::RestoreTest { store } => restore_test::run(self, store, state, cancel).await,
        }
    }
}

impl Actions {
    fn slot(&self, name: &str) -> Option<&TargetSlot> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The local store's files, verified and judged with the stored keys
    /// (see [`Actions::trust_keys`]).
    async fn local_inventory(&self) -> Result<Vec<LocalSnapshot>, Outcome> {
        let local = self.local.clone();
        let mut inv = tokio::task::spawn_blocking(move || local.inventory())
            .await
            .map_err(|e| Outcome::failed(e.to_string()))?
            .map_err(|e| {
                Outcome::failed(format!(
                    "cannot read the local store {}: {e}",
                    self.local.dir().display()
                ))
            })?;
        let keys = self.trust_keys().await.ok().flatten();
        trust::judge_inventory(&mut inv, keys.as_deref());
        Ok(inv)
    }

    /// A target's listing, judged with the stored keys.
    async fn listing(
        &self,
        t: &dyn Target,
    ) -> Result<Vec<crate::backends::RemoteSnapshot>, TargetError> {
        let mut list = t.list().await?;
        let keys = self.trust_keys().await.ok().flatten();
        trust::judge_listing(&mut list, keys.as_deref());
        Ok(list)
    }

    /// The keys stored snapshots are authenticated and tagged with: the
    /// unseal key the stored shares combine to. `Ok(None)`: the policy names
    /// no key store (listings stay unchecked, as before tags existed).
    /// `Err(why)`: a key store is named but its keys cannot be used now —
    /// nothing is authenticated, so nothing may be deleted. Read once per
    /// run, on first use (after an init has stored its keys, if any).
    async fn trust_keys(&self) -> Result<Option<Arc<Keys>>, String> {
        let Some(ks) = &self.key_store else {
            return Ok(None);
        };
        if let Some(k) = self.trust_keys.get() {
            return Ok(Some(k.clone()));
        }
        let stored = ks.read().await.map_err(|e| e.to_string())?;
        let key = crate::snapshot::auth::key_from_shares(&stored.keys)
            .map_err(|e| format!("the stored keys cannot be combined: {e}"))?;
        // Recovery keys (recorded so, or on a cluster observed auto-unseal)
        // tag objects but cannot open sealed sums.
        let seal = stored
            .shape
            .and_then(|s| s.seal)
            .or(self.seal.get().copied());
        let k = Arc::new(match seal {
            Some(crate::cluster::SealKind::Auto) => Keys::recovery(key),
            _ => Keys::new(key),
        });
        let _ = self.trust_keys.set(k.clone());
        Ok(Some(k))
    }

    /// Local valid snapshots, plus this run's (a dry run keeps it outside
    /// the store), as taken snapshots.
    async fn local_valid(&self, state: &Mutex<RunState>) -> Result<Vec<TakenSnapshot>, Outcome> {
        let mut out: Vec<TakenSnapshot> = self
            .local_inventory()
            .await?
            .into_iter()
            // A local file the keys do not authenticate is never mirrored:
            // its upload would carry snapward's tag.
            .filter(|s| s.trust.counts())
            .filter_map(|s| {
                s.identity.map(|identity| TakenSnapshot {
                    path: self.local.path_of(&s.name),
                    name: s.name,
                    identity,
                    time: s.time,
                })
            })
            .collect();
        if let Some(t) = &state.lock().await.snapshot
            && !out.iter().any(|s| s.name == t.name)
        {
            out.push(t.clone());
        }
        Ok(out)
    }

    fn key_store(&self) -> Result<&dyn KeyStore, Outcome> {
        self.key_store.as_deref().ok_or_else(|| {
            Outcome::failed("the policy names no unseal-key store (spec.unsealKeys)")
        })
    }

    /// The stored unseal keys (read-only: a restore never writes them).
    async fn read_stored_keys(&self) -> Result<StoredKeys, Outcome> {
        self.key_store()?
            .read()
            .await
            .map_err(|e| Outcome::failed(e.to_string()))
    }

    /// Before node 0 is temp-initialised: record the restore in progress,
    /// so that a run after a crash in the ceremony refuses instead of
    /// retrying forever (see `guard::interrupted_restore`). `Err` is the
    /// failed outcome when it cannot be recorded (nothing was changed).
    fn mark_restore_started(&self, src: &RestoreSource) -> Result<(), Outcome> {
        let what = format!("snapshot {}/{}", src.store, src.name);
        self.local
            .write_restore_marker(self.policy.name(), &what)
            .map_err(|e| {
                Outcome::failed(format!(
                    "cannot record the restore in progress in {}: {e}; nothing was changed",
                    self.local.dir().display()
                ))
            })
    }

    /// The server accepted the snapshot: once it has applied it, the
    /// stored keys open node 0, so the marker is no longer needed.
    fn mark_restore_handed_over(&self) {
        if let Err(e) = self.local.remove_restore_marker(self.policy.name()) {
            tracing::warn!(error = %e, "cannot remove the restore marker; the next run will refuse until it is removed");
        }
    }
}

/// `Ok(v)` or the failed outcome, for `?` inside an action.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(o) => return o,
        }
    };
}
pub(crate) use tri;
