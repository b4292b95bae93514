//! Actions are plain data: what to do, on which branch, and the
//! preconditions (as data) that must hold against the outcomes so far.
//!
//! Stage: plan. Pure.

use serde::Serialize;

use crate::plan::guard::Branch;

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Read-only: node states, key presence, snapshot inventory.
    Observe,
    /// Apply the guard table to what `observe` saw; choose the branch.
    GuardCheck,
    /// Unseal sealed, initialised nodes with the stored keys (followers once joined).
    Unseal,
    /// Stream a snapshot from the active node to a temp file.
    Snapshot,
    /// Verify the temp file, then fsync + rename it into the local store.
    Verify,
    /// Copy valid local snapshots missing on a target; confirm by read-back.
    Upload { target: String },
    /// Delete what the store's retention does not keep.
    Prune { store: String },
    /// Initialise node 0 (fresh cluster only); keys held in memory.
    Init,
    /// Write the new keys to the key store, create-only.
    StoreKeys,
    /// Unseal the freshly initialised cluster.
    InitUnseal,
    /// Download the chosen snapshot to a temp file and verify it.
    Fetch,
    /// Temp-init node 0 with the stored key shape, force-restore, wait for seal.
    Restore,
    /// Unseal every node with the stored keys after the restore.
    RestoreUnseal,
    /// Check every node reports the restored cluster (+ optional canary read).
    VerifyCluster,
    /// Rehearse a restore of this run's snapshot, as stored in `store`, on
    /// a throwaway OpenBao (`spec.restoreTest`); never touches the cluster.
    RestoreTest { store: String },
}

impl Action {
    /// Stable id (`upload:offsite`).
    pub fn id(&self) -> String {
        match self {
            Action::Upload { target } => format!("upload:{target}"),
            Action::Prune { store } => format!("prune:{store}"),
            Action::RestoreTest { store } => format!("restore-test:{store}"),
            other => other.label().to_string(),
        }
    }

    /// Stable kind label.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Observe => "observe",
            Action::GuardCheck => "guard-check",
            Action::Unseal => "unseal",
            Action::Snapshot => "snapshot",
            Action::Verify => "verify",
            Action::Upload { .. } => "upload",
            Action::Prune { .. } => "prune",
            Action::Init => "init",
            Action::StoreKeys => "store-keys",
            Action::InitUnseal => "init-unseal",
            Action::Fetch => "fetch",
            Action::Restore => "restore",
            Action::RestoreUnseal => "restore-unseal",
            Action::VerifyCluster => "verify-cluster",
            Action::RestoreTest { .. } => "restore-test",
        }
    }

    /// The branch this action belongs to; `None` for the always-run steps.
    pub fn branch(&self) -> Option<Branch> {
        match self {
            Action::Observe | Action::GuardCheck => None,
            Action::Unseal
            | Action::Snapshot
            | Action::Verify
            | Action::Upload { .. }
            | Action::Prune { .. }
            | Action::RestoreTest { .. } => Some(Branch::Backup),
            Action::Init | Action::StoreKeys | Action::InitUnseal => Some(Branch::Init),
            Action::Fetch | Action::Restore | Action::RestoreUnseal | Action::VerifyCluster => {
                Some(Branch::Restore)
            }
        }
    }

    /// Does this action change anything outside snapward's temp files?
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Action::Init | Action::StoreKeys | Action::Restore | Action::Prune { .. }
        )
    }

    /// Writes to the unseal-key store.
    pub fn writes_key_store(&self) -> bool {
        matches!(self, Action::StoreKeys)
    }
}

/// A condition checked against the outcomes so far, right before an action
/// starts. Data, so plans can show it and tests can reason about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
pub enum Precondition {
    /// The guard chose this branch.
    BranchChosen { branch: Branch },
    /// Every node's state is known (no unknown node).
    AllNodesKnown,
    /// Every node is uninitialised.
    AllNodesUninitialized,
    /// An active node was found and it is unsealed.
    ActiveNodeUnsealed,
    /// The key store holds unseal keys.
    KeysPresent,
    /// The key store holds no keys (create-only write).
    KeyStoreEmpty,
    /// This run's snapshot passed verification and is in the local store.
    SnapshotVerified,
    /// This run's snapshot was uploaded to the store and confirmed by a
    /// read-back of size and SHA-256.
    UploadConfirmed { store: String },
    /// The target's credentials are present (optional targets are skipped).
    CredentialsPresent { target: String },
    /// A local snapshot is deleted only if an enabled target holds it too.
    MirroredElsewhere,
    /// The snapshot to restore was fetched and verified.
    RestoreSnapshotVerified,
    /// Restore mode is `auto`, or a human ran `snapward restore`.
    RestoreAuthorized,
    /// The restored snapshot is no older than `guards.maxRestoreAge`.
    SnapshotFreshEnough,
    /// The stored keys authenticate the snapshot to restore: its
    /// `SHA256SUMS.sealed` opens under them and matches `SHA256SUMS`.
    SnapshotAuthenticated,
    /// Node 0 applied the snapshot and sealed itself.
    RestoreApplied,
    /// Init is allowed by the policy.
    InitAllowed,
    /// No restore test passed within `spec.restoreTest.every`.
    RestoreTestDue,
}

impl Precondition {
    pub fn describe(&self) -> String {
        match self {
            Precondition::BranchChosen { branch } => {
                format!("guard chose `{}`", branch.name())
            }
            Precondition::AllNodesKnown => "every node's state is known".into(),
            Precondition::AllNodesUninitialized => "every node is uninitialised".into(),
            Precondition::ActiveNodeUnsealed => "active node found and unsealed".into(),
            Precondition::KeysPresent => "unseal keys present in the key store".into(),
            Precondition::KeyStoreEmpty => "key store holds no keys (create-only)".into(),
            Precondition::SnapshotVerified => "this run's snapshot verified".into(),
            Precondition::UploadConfirmed { store } => {
                format!("this run's snapshot confirmed on `{store}` (size + SHA-256 read back)")
            }
            Precondition::CredentialsPresent { target } => {
                format!("credentials for `{target}` present")
            }
            Precondition::MirroredElsewhere => {
                "each deleted local snapshot exists on an enabled target".into()
            }
            Precondition::RestoreSnapshotVerified => {
                "snapshot to restore fetched and verified".into()
            }
            Precondition::RestoreAuthorized => {
                "restore mode auto, or `snapward restore` run by a human".into()
            }
            Precondition::SnapshotFreshEnough => "snapshot within guards.maxRestoreAge".into(),
            Precondition::SnapshotAuthenticated => {
                "the stored keys authenticate the snapshot (SHA256SUMS.sealed)".into()
            }
            Precondition::RestoreApplied => "restore applied and node 0 sealed".into(),
            Precondition::InitAllowed => "spec.init.allowed is true".into(),
            Precondition::RestoreTestDue => {
                "no restore test passed within spec.restoreTest.every".into()
            }
        }
    }
}
