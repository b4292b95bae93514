//! The object-store contract shared by the cloud targets that speak through
//! Apache Arrow's `object_store` (Azure Blob; GCS beside it): the same
//! guarantees as the S3 target, on the generic API. Stage: execute
//! (backend). No `object_store` type leaves `backends`.
//!
//! What it guarantees:
//!
//! - **Create-only.** `put` refuses a name that exists (HEAD first); files
//!   up to [`SINGLE_PUT_LIMIT`] go up in one `PutMode::Create` request
//!   (Azure: `If-None-Match: *`), larger ones as a multipart (block) upload
//!   to a staging name `<prefix>.<name>.partial-<random>` (never a
//!   snapshot name, so `list` ignores it) that is then copied with
//!   `copy_if_not_exists` (Azure: Copy Blob with `If-None-Match: *`) to the
//!   final name and deleted. A conflict is success only when the blob there
//!   holds exactly this upload (size and stored SHA-256: a retried request
//!   whose first answer was lost).
//! - **The identity in metadata**: SHA-256, raft index and term, cluster id
//!   and tag, under the store's own names ([`MetaNames`]), read back by
//!   `list` (one HEAD per snapshot) into the same [`RemoteSnapshot`] the S3
//!   target gives.
//! - **Confirmed by read-back.** After the upload the final blob is read in
//!   full: its size and SHA-256 must equal the local file's, and its stored
//!   SHA-256 the identity's; only then does the upload count.
//! - **Bounded memory.** A single put holds at most [`SINGLE_PUT_LIMIT`];
//!   a multipart upload at most `parts_in_flight` × `part_size`.
//! - **Immutability.** A delete the store refuses because of an
//!   immutability policy or a legal hold is [`DeleteOutcome::RetainedByLock`].
//! - **Secrets** (account key, SAS token) never reach a message: every
//!   store error is rendered to text and scrubbed ([`error`]) before it
//!   becomes a [`TargetError`].
//!
//! Must never: overwrite a blob, delete anything but the named snapshot or
//! a stale staging blob of ours, or format a secret.
//!
//! # Files
//!
//! - `put.rs`: create-only upload, staging + copy, the read-back;
//! - `ops.rs`: list, fetch, delete, cleanup;
//! - `error.rs`: store errors → [`TargetError`], scrubbed.

mod error;
mod ops;
mod put;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::{
    Cleanup, DeleteOutcome, PutOutcome, RemoteSnapshot, Target, TargetError, UploadTag,
    snapshot_time,
};
use crate::snapshot::Identity;
pub use error::Scrubber;

/// Files up to this size go up in one create-only put (held in memory).
pub const SINGLE_PUT_LIMIT: u64 = 8 * 1024 * 1024;
/// Part (block) size of a multipart upload.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once: memory ≈ this × [`PART_SIZE`].
pub const PARTS_IN_FLIGHT: usize = 4;
/// How old a staging blob must be before `cleanup` removes it.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// HEADs running at once while listing.
const LIST_HEADS_IN_FLIGHT: usize = 8;
/// Marks a staging blob: `<prefix>.<name>.partial-<random>`.
const STAGING_MARK: &str = ".partial-";

/// The metadata names a store keeps the identity under.
#[derive(Debug, Clone, Copy)]
pub struct MetaNames {
    pub sha256: &'static str,
    pub index: &'static str,
    pub term: &'static str,
    pub cluster_id: &'static str,
    pub tag: &'static str,
}

/// One container/bucket + prefix of an `object_store` store as a target.
pub struct CloudTarget {
    name: String,
    /// "Azure Blob", for messages.
    kind: &'static str,
    /// What to check when the store refuses (403/401).
    refused_hint: &'static str,
    store: Arc<dyn ObjectStore>,
    /// Blob-name prefix of the target (`cluster-a/`), may be empty.
    prefix: String,
    /// File-name prefix of snapshots (`openbao-`).
    snapshot_prefix: String,
    meta: MetaNames,
    scrub: Scrubber,
    /// Where the store lives (account/container), for Debug and logs.
    location: String,
    part_size: usize,
    parts_in_flight: usize,
    one_delete: Option<Arc<dyn OneDelete>>,
}

/// A store-specific single-blob delete, used instead of object_store's
/// (Azure: a blob batch, which a SAS may not authorise). Answers the HTTP
/// status and body, or a transport error (without credentials).
#[async_trait]
pub trait OneDelete: Send + Sync {
    async fn delete_one(&self, key: &str) -> Result<(u16, String), String>;
}

impl fmt::Debug for CloudTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudTarget")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("location", &self.location)
            .field("prefix", &self.prefix)
            .field("snapshot_prefix", &self.snapshot_prefix)
            .field("credentials", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// What a store-specific builder hands over.
pub struct CloudParts {
    pub name: String,
    pub kind: &'static str,
    pub refused_hint: &'static str,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
    pub snapshot_prefix: String,
    pub meta: MetaNames,
    pub scrub: Scrubber,
    pub location: String,
    pub one_delete: Option<Arc<dyn OneDelete>>,
}

impl CloudTarget {
    pub fn new(p: CloudParts) -> Self {
        Self {
            name: p.name,
            kind: p.kind,
            refused_hint: p.refused_hint,
            store: p.store,
            prefix: p.prefix,
            snapshot_prefix: p.snapshot_prefix,
            meta: p.meta,
            scrub: p.scrub,
            location: p.location,
            one_delete: p.one_delete,
            part_size: PART_SIZE,
            parts_in_flight: PARTS_IN_FLIGHT,
        }
    }

    /// Multipart tuning (tests, benches): parts of `part_size` bytes (at
    /// least 1 MiB), `parts_in_flight` at once (at least 1).
    pub fn with_parts(mut self, part_size: usize, parts_in_flight: usize) -> Self {
        self.part_size = part_size.max(1024 * 1024);
        self.parts_in_flight = parts_in_flight.max(1);
        self
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The directory the prefix lives in (`a/b/` for `a/b/x-`), for a
    /// one-level listing; `None` at the container's root.
    fn list_dir(&self) -> Option<object_store::path::Path> {
        let dir = match self.prefix.rfind('/') {
            Some(i) => &self.prefix[..i],
            None => "",
        };
        (!dir.is_empty()).then(|| object_store::path::Path::from(dir))
    }

    /// The snapshot name of a key under the prefix, if it is one.
    fn snapshot_of<'k>(&self, key: &'k str) -> Option<(&'k str, jiff::Timestamp)> {
        let name = key.strip_prefix(&self.prefix)?;
        if name.contains('/') {
            return None;
        }
        snapshot_time(&self.snapshot_prefix, name).map(|t| (name, t))
    }
}

#[async_trait]
impl Target for CloudTarget {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        self.list_snapshots().await
    }

    async fn put(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError> {
        self.put_confirmed(file, name, identity, tag, cancel)
            .await
            .map(PutOutcome::Confirmed)
    }

    async fn delete(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        self.delete_snapshot(name).await
    }

    async fn fetch(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        self.fetch_into(name, dest, cancel).await
    }

    async fn cleanup(&self) -> Result<Cleanup, TargetError> {
        self.cleanup_older_than(STALE_UPLOAD_AGE).await
    }
}
