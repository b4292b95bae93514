//! Side effects behind narrow traits: one per external system (OpenBao,
//! snapshot targets). The executor and planner never name reqwest or
//! aws-sdk-s3 types. Dry-run wraps these traits (`dry_run.rs`: reads pass,
//! writes become typed "would ..." answers).
//!
//! Stage: execute. I/O lives here and in the implementations only.
//!
//! This file holds the traits ([`Target`], [`OpenBao`], [`Ceremony`],
//! [`Notifier`]) and the data they exchange; `error.rs` their errors; one
//! folder per implementation (`openbao/`, `s3/`, `filesystem/`, `kube/`,
//! `keys/`, `local/`, `metrics/`).
//!
//! Must never: know the plan or the DAG (backends are called, they do not
//! decide), read policy beyond `policy::model` (configuration data), or let
//! a secret reach an error, a log line or a report.

pub mod azure;
pub mod cloud;
pub mod dry_run;
mod error;
pub mod filesystem;
pub mod gcs;
pub mod keys;
pub mod kube;
pub mod local;
pub mod metrics;
pub mod notify;
pub mod openbao;
pub mod s3;
pub mod tail;
pub mod throwaway;
pub mod verify_cache;

use std::path::Path;

use async_trait::async_trait;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::snapshot::Identity;

pub use error::{BaoError, Cause, TargetError, chain};

/// A snapshot as a target holds it. Identity fields come from the object's
/// metadata written at upload; `None` when the object was not written by
/// snapward (then it is never counted as a valid snapshot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteSnapshot {
    /// File name (`openbao-20261128-021500.snap`), without the target prefix.
    pub name: String,
    pub size: u64,
    pub sha256: Option<String>,
    pub index: Option<u64>,
    pub term: Option<u64>,
    /// From the name (UTC).
    pub time: jiff::Timestamp,
    /// The cluster the snapshot was taken from, as recorded at upload
    /// (`snapward-cluster-id`; object metadata of the S3, Azure and GCS targets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The object tag written at upload (`snapward-tag`, hex; object metadata of
    /// the S3, Azure and GCS targets): see
    /// [`crate::snapshot::auth::tag`].
    #[serde(skip)]
    pub tag: Option<String>,
    /// A target that reads each file in full on `list` (filesystem) hands
    /// over its sealed sums, so the content itself can be authenticated.
    #[serde(skip)]
    pub sums: Option<crate::snapshot::SealedSums>,
    /// Set by the executor once it checked the claims against the stored
    /// keys; targets list everything as [`Trust::Unchecked`].
    pub trust: Trust,
}

/// Whether a stored snapshot's claims (name, size, SHA-256, raft index and
/// term, cluster id) were authenticated with the stored keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "reason")]
pub enum Trust {
    /// Not checked: the policy names no key store, or its keys cannot be
    /// used this run.
    #[default]
    Unchecked,
    /// Its tag (S3) or its sealed sums (a file read in full) verify under
    /// the stored keys.
    Authentic,
    /// A file read in full whose sealed sums the stored keys do not open
    /// (or that differ from its `SHA256SUMS`): another cluster's, one from
    /// before a rekey, or a forgery. Its identity is its own content, so a
    /// restore may still try it — and refuses it as unauthenticated unless
    /// a human accepts it (invariant 11); retention never counts it.
    OtherKeys(String),
    /// Claims (metadata) that do not authenticate: no tag, or a tag that
    /// does not verify. Never counted, never deleted, never restored unless
    /// a human names it.
    Foreign(String),
}

impl Trust {
    /// Claims a bucket writer could have made: not a restore candidate.
    pub fn is_foreign(&self) -> bool {
        matches!(self, Trust::Foreign(_))
    }

    /// May retention and mirroring count it? Only if authenticated — or not
    /// checkable at all (no key store: metadata is trusted, as before).
    pub fn counts(&self) -> bool {
        matches!(self, Trust::Authentic | Trust::Unchecked)
    }

    /// Why it does not count, if it does not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Trust::OtherKeys(r) | Trust::Foreign(r) => Some(r),
            Trust::Authentic | Trust::Unchecked => None,
        }
    }
}

/// What an upload records beside the identity so that a HEAD can
/// authenticate the object later (S3 metadata `snapward-cluster-id`,
/// `snapward-tag`). Targets that authenticate by content ignore it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadTag {
    /// `sys/seal-status` `cluster_id` of the cluster the snapshot came
    /// from; empty when not known.
    pub cluster_id: String,
    /// [`crate::snapshot::auth::tag::ObjectKey::tag`] over the claims;
    /// `None` when no key was available (the object will be foreign).
    pub tag: Option<String>,
}

/// An upload that was read back: size and SHA-256 as the target reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Confirmed {
    pub size: u64,
    pub sha256: String,
}

/// What `Target::put` did. Real targets only ever answer `Confirmed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PutOutcome {
    /// Uploaded and read back.
    Confirmed(Confirmed),
    /// A dry run: nothing was sent (see `backends::dry_run`).
    WouldUpload { size: u64, sha256: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeleteOutcome {
    Deleted,
    /// Object Lock (or a WORM mount) refused: reported, not a failure.
    RetainedByLock,
    /// A dry run: nothing was deleted (see `backends::dry_run`).
    WouldDelete,
}

/// What a cleanup of a crashed run's leftovers did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cleanup {
    /// Incomplete multipart uploads aborted / temp files removed.
    pub removed: Vec<String>,
}

/// An off-cluster copy (S3 or a mounted filesystem).
///
/// Implementations must be create-only (`put` never overwrites), confirm
/// every upload by reading back size and SHA-256, and never delete anything
/// but the names `delete` is given.
#[async_trait]
pub trait Target: Send + Sync {
    fn name(&self) -> &str;

    /// Every object under the target's prefix whose name looks like a
    /// snapshot (`<prefix>YYYYMMDD-HHMMSS.snap`), with identity metadata.
    async fn list(&self) -> Result<Vec<RemoteSnapshot>, TargetError>;

    /// Upload `file` as `name`, create-only, with the identity as metadata;
    /// returns only after a read-back confirmed size and SHA-256
    /// (`PutOutcome::Confirmed`).
    async fn put(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError>;

    /// Delete one snapshot by name.
    async fn delete(&self, name: &str) -> Result<DeleteOutcome, TargetError>;

    /// Download `name` to `dest` (which must not exist). Returns bytes written.
    async fn fetch(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError>;

    /// Remove leftovers of crashed runs: incomplete multipart uploads older
    /// than a day (S3), stale temp files (filesystem). Never a snapshot.
    async fn cleanup(&self) -> Result<Cleanup, TargetError>;

    /// Start receiving snapshot `name` while it streams from the active
    /// node (DESIGN.md §10). `Ok(None)`: this target does not stream; its
    /// upload reads the local file afterwards. Nothing becomes visible
    /// under `name` before [`StreamingPut::commit`].
    async fn begin_stream(
        &self,
        _name: &str,
        _tail: &tail::Tail,
    ) -> Result<Option<Box<dyn StreamingPut>>, TargetError> {
        Ok(None)
    }
}

/// One target's copy of a snapshot being streamed ([`Target::begin_stream`]).
///
/// The bytes go to a temp name of the target (never a snapshot name);
/// `commit` is called only after the snapshot was verified and the local
/// file fsynced, and publishes create-only, then reads back like
/// [`Target::put`]. `abort` (or a crash: the next run's stream or cleanup
/// removes the leftover) leaves nothing under the snapshot's name.
#[async_trait]
pub trait StreamingPut: Send + Sync {
    /// The next bytes of the snapshot, in order (never called on a stream
    /// that [`StreamingPut::follows_file`]).
    async fn write(&mut self, bytes: bytes::Bytes) -> Result<(), TargetError>;

    /// Whether this stream reads the local temp file itself, through the
    /// [`tail::Tail`] it was begun with, instead of being written to.
    fn follows_file(&self) -> bool {
        false
    }

    /// Everything was written and verified as `identity`: publish it
    /// create-only and confirm it by read-back.
    async fn commit(
        self: Box<Self>,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError>;

    /// Discard what was written (temp removed). Never fails: a leftover is
    /// removed by the next run.
    async fn abort(self: Box<Self>);
}

pub use crate::cluster::{NodeStatus, SealKind};

/// The OpenBao cluster. Implementations address each node directly.
#[async_trait]
pub trait OpenBao: Send + Sync {
    /// Node names in policy order (node 0 first).
    fn node_names(&self) -> Vec<String>;

    /// Read every node's state (no token needed: `sys/seal-status`,
    /// `sys/leader`). Unreachable, timeout, 5xx or contradictory answers
    /// give `InitState::Unknown`, never `Uninitialized`.
    async fn observe(&self) -> Vec<NodeStatus>;

    /// Stream a raft snapshot from node `node` into `out`. The caller picks
    /// the active node; the implementation still refuses to stream from a
    /// node that is not the active one at request time, follows a 307 if
    /// one comes, and aborts a stream idle for longer than the policy's
    /// `streamIdle`. Returns bytes written.
    async fn snapshot(
        &self,
        node: usize,
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        cancel: &CancellationToken,
    ) -> Result<u64, BaoError>;
}

/// `sys/seal-status` as the restore ceremony reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SealState {
    pub initialized: bool,
    pub sealed: bool,
    /// Threshold (`t`) and shares (`n`) of the barrier.
    pub threshold: u32,
    pub shares: u32,
    pub progress: u32,
    pub cluster_id: Option<String>,
}

/// `sys/leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderState {
    pub is_self: bool,
    pub leader_address: Option<String>,
    pub raft_committed_index: Option<u64>,
    /// What this node's state machine applied (`raft_applied_index`): on a
    /// standby, which serves reads itself, how far its data has come.
    pub raft_applied_index: Option<u64>,
}

/// Which restore endpoint a restore uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreEndpoint {
    /// `sys/storage/raft/snapshot-force`.
    Force,
    /// `sys/storage/raft/snapshot` (the server verifies the snapshot).
    Verified,
}

impl RestoreEndpoint {
    pub fn path(self) -> &'static str {
        match self {
            RestoreEndpoint::Force => "sys/storage/raft/snapshot-force",
            RestoreEndpoint::Verified => "sys/storage/raft/snapshot",
        }
    }
}

/// A fresh barrier's credentials, in memory only (zeroised on drop).
#[derive(Debug, Clone)]
pub struct InitResult {
    pub keys: Vec<crate::secret::Secret>,
    pub root_token: crate::secret::Secret,
}

/// The init / unseal / restore calls (docs/openbao.md). Kept apart from
/// `OpenBao` so read-only callers never see them.
#[async_trait]
pub trait Ceremony: Send + Sync {
    /// `PUT /v1/sys/init` on node `node`: `secret_shares`/`secret_threshold`
    /// for a Shamir seal, `recovery_shares`/`recovery_threshold` for an
    /// auto-unseal one (the keys that come back are then recovery keys and
    /// the server unseals itself).
    async fn init(
        &self,
        node: usize,
        shares: u32,
        threshold: u32,
        seal: SealKind,
    ) -> Result<InitResult, BaoError>;
    /// `PUT /v1/sys/unseal` with one key share. An "invalid key size"
    /// answer comes back as [`BaoError::InvalidKeySize`].
    async fn unseal(&self, node: usize, key: &crate::secret::Secret)
    -> Result<SealState, BaoError>;
    async fn seal_status(&self, node: usize) -> Result<SealState, BaoError>;
    async fn leader(&self, node: usize) -> Result<LeaderState, BaoError>;
    /// Restore the file to node `node` (the caller makes sure it is the
    /// active node): `POST /v1/sys/storage/raft/snapshot-force` (Shamir:
    /// the temporary barrier's keys cannot verify the snapshot) or the
    /// verified `POST /v1/sys/storage/raft/snapshot` (auto-unseal: the seal
    /// checks it; a snapshot under another seal key is
    /// [`BaoError::SealMismatch`] and changes nothing).
    async fn restore(
        &self,
        node: usize,
        token: &crate::secret::Secret,
        file: &Path,
        how: RestoreEndpoint,
    ) -> Result<(), BaoError>;
    /// `GET /v1/<path>` with `token` (the canary read).
    async fn read(
        &self,
        node: usize,
        token: &crate::secret::Secret,
        path: &str,
    ) -> Result<serde_json::Value, BaoError>;
    /// `POST /v1/auth/token/revoke-self` with `token`: the token (the init
    /// root token, when the policy does not store it) stops working.
    async fn revoke_self(&self, node: usize, token: &crate::secret::Secret)
    -> Result<(), BaoError>;
    /// Restart node `node`'s server process and wait until it runs again
    /// (Kubernetes: delete the pod; its StatefulSet recreates it). Needed
    /// when a restored node rejects the stored keys ("invalid key size",
    /// docs/openbao.md). `Ok(false)`: this backend cannot restart nodes.
    async fn restart(&self, _node: usize) -> Result<bool, BaoError> {
        Ok(false)
    }
}

/// `Normal` (as planned) or `Warning` (a human should look).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Where a run's announcements go (Kubernetes Events). Must not fail or
/// block the run for long.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn notify(&self, severity: Severity, reason: &str, note: &str);
}

/// Parse the UTC time out of `<prefix>YYYYMMDD-HHMMSS.snap`.
pub fn snapshot_time(prefix: &str, name: &str) -> Option<jiff::Timestamp> {
    let stamp = name.strip_prefix(prefix)?.strip_suffix(".snap")?;
    if stamp.len() != 15 || stamp.as_bytes().get(8) != Some(&b'-') {
        return None;
    }
    let dt = jiff::civil::DateTime::strptime("%Y%m%d-%H%M%S", stamp).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// `<prefix>YYYYMMDD-HHMMSS.snap` for a UTC time.
pub fn snapshot_name(prefix: &str, time: jiff::Timestamp) -> String {
    format!("{prefix}{}.snap", time.strftime("%Y%m%d-%H%M%S"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let t: jiff::Timestamp = "2026-11-28T02:15:07Z".parse().unwrap();
        let n = snapshot_name("openbao-", t);
        assert_eq!(n, "openbao-20261128-021507.snap");
        assert_eq!(snapshot_time("openbao-", &n), Some(t));
        assert_eq!(snapshot_time("openbao-", "openbao-2026.snap"), None);
        assert_eq!(
            snapshot_time("openbao-", ".openbao-20261128-021507.snap.partial"),
            None
        );
        assert_eq!(snapshot_time("other-", &n), None);
    }
}
