//! What a run has learned so far: the executor checks preconditions against
//! it, actions read and extend it. Holds no secrets except `new_keys` (the
//! keys a fresh init made, in memory until stored and used, zeroised on
//! drop).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::backends::{NodeStatus, PutOutcome, RemoteSnapshot};
use crate::cluster::{InitState, SealKind};
use crate::plan::guard::Decision;
use crate::snapshot::Identity;
use crate::snapshot::auth::Authenticity;

/// This run's snapshot, once verified and in the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenSnapshot {
    pub name: String,
    pub path: PathBuf,
    pub identity: Identity,
    /// From the file name (UTC).
    pub time: jiff::Timestamp,
}

/// The snapshot a restore will use, fetched and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSource {
    pub store: String,
    pub name: String,
    pub path: PathBuf,
    pub identity: Identity,
    pub time: jiff::Timestamp,
    /// A fetched copy in the scratch dir (removed after the restore).
    pub temp: bool,
    /// Its sealed sums under the stored keys (`None`: not checkable).
    pub authenticity: Option<Authenticity>,
    /// Why it could not be checked, when `authenticity` is `None`.
    pub unchecked: Option<String>,
}

/// A target's copy of this run's snapshot, streamed and verified, not yet
/// committed.
pub struct OpenStream(pub Box<dyn crate::backends::StreamingPut>);

impl std::fmt::Debug for OpenStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenStream")
    }
}

impl RunState {
    /// Aborts every stream not yet committed (this run's snapshot will not
    /// be published from them).
    pub async fn abort_streams(&mut self) {
        for (_, s) in std::mem::take(&mut self.streams) {
            s.0.abort().await;
        }
    }
}

#[derive(Debug, Default)]
pub struct RunState {
    pub nodes: Vec<NodeStatus>,
    /// What the key store holds. `None`: it could not be read.
    pub keys: Option<crate::backends::keys::Presence>,
    /// The seal kind every node reported (`None`: none did, or they
    /// disagree — the guard then refuses every destructive step).
    pub seal: Option<SealKind>,
    pub decision: Option<Decision>,
    /// The first restore source holding a valid snapshot.
    pub newest_snapshot_in: Option<String>,
    pub init_allowed: bool,
    pub restore_authorized: bool,
    /// Streamed, not yet committed: (temp path, final name, the verdict of
    /// the verification that ran while it streamed).
    pub partial: Option<(
        PathBuf,
        String,
        Result<crate::snapshot::SealedSums, crate::snapshot::VerifyError>,
    )>,
    /// Targets that received this run's snapshot while it streamed, not
    /// yet committed (DESIGN.md §10); their upload commits it.
    pub streams: BTreeMap<String, OpenStream>,
    /// This run's snapshot under the stored keys (`None`: not checkable).
    pub snapshot_authentic: Option<Authenticity>,
    /// `snapward restore --allow-unauthenticated`: a human accepts a
    /// snapshot the stored keys do not authenticate.
    pub allow_unauthenticated: bool,
    pub snapshot: Option<TakenSnapshot>,
    /// Targets where this run's snapshot was confirmed (size + SHA-256
    /// read back), or — in a dry run only — would have been uploaded.
    pub confirmed: BTreeMap<String, PutOutcome>,
    /// Optional targets skipped because their credentials are absent.
    pub skipped_targets: BTreeSet<String>,
    /// Optional targets that cannot be used, with the reason
    /// (`CredentialsPresent` fails for them).
    pub unavailable: BTreeMap<String, String>,
    /// Enabled targets whose listing could not be read.
    pub unlisted: BTreeSet<String>,
    /// `guards.maxRestoreAge` (`SnapshotFreshEnough`).
    pub max_restore_age: Option<jiff::SignedDuration>,
    /// `snapward restore` was run by a human.
    pub explicit_restore: bool,
    /// A precondition refused like a guard (a human must act): why.
    pub refusal: Option<String>,
    /// Each target's listing, refreshed after its upload.
    pub remote: BTreeMap<String, Vec<RemoteSnapshot>>,
    pub restore_from: Option<RestoreSource>,
    /// Snapshots retention kept, per store (set by the prune actions).
    pub kept: BTreeMap<String, usize>,
    pub restore_applied: bool,
    /// The marker of a restore that stopped after node 0 was
    /// temp-initialised (what it restored), if one is left.
    pub interrupted_restore: Option<String>,
    /// When a restore test last passed (its stamp in the local store).
    pub restore_test_passed_at: Option<jiff::Timestamp>,
    /// `spec.restoreTest.every`: a passed test holds the next one back.
    pub restore_test_every: Option<std::time::Duration>,
    /// This run's restore test: passed, how long it took.
    pub restore_test: Option<(bool, std::time::Duration)>,
    /// Keys from init, in memory until stored and used (zeroised on drop).
    pub new_keys: Option<crate::backends::keys::StoredKeys>,
}

impl RunState {
    /// The cluster's seal kind, Shamir unless the nodes said otherwise.
    pub fn seal_kind(&self) -> SealKind {
        self.seal.unwrap_or(SealKind::Shamir)
    }

    /// The key store holds the shares this cluster's seal hands out.
    /// `None`: it could not be read.
    pub fn keys_present(&self) -> Option<bool> {
        self.keys.map(|p| p.shares_for(self.seal_kind()))
    }

    /// Index of the active, unsealed node.
    pub fn active_node(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.active && n.init == InitState::Initialized && n.sealed == Some(false))
    }
}
