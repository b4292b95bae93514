//! Google Cloud Storage target, through the JSON API (reqwest): Google
//! itself, or an emulator (fake-gcs-server) at `endpoint`. Stage: execute
//! (backend). The executor only sees [`Target`]; no reqwest or gcp_auth
//! type leaves this module.
//!
//! What it guarantees (the S3 target's contract, in GCS terms):
//!
//! - **Create-only.** `put` first reads the object's metadata and returns
//!   [`TargetError::AlreadyExists`] if it exists; the resumable session is
//!   opened with `ifGenerationMatch=0`, so a racing writer makes the final
//!   chunk fail with 412 instead of overwriting. A 412 counts as success
//!   only when the object holds exactly this upload (size and SHA-256).
//! - **Streamed, bounded memory.** One resumable upload session, chunks of
//!   [`DEFAULT_CHUNK_SIZE`] (a multiple of 256 KiB) read from the file one
//!   at a time: memory is one chunk. A chunk that fails (connection, 5xx,
//!   429, timeout) is resumed from the offset the session reports as
//!   persisted, [`MAX_ATTEMPTS`] times at most.
//! - **SHA-256.** The bytes sent are hashed as they go; the final chunk (the
//!   one that creates the object) is only sent when the hash of the whole
//!   file equals the snapshot's identity, else the session is cancelled.
//!   The SHA-256, raft index/term, cluster id and tag are object metadata
//!   (`snapward-sha256`, `snapward-raft-index`, `-term`, `snapward-cluster-id`,
//!   `snapward-tag`: the names S3 uses).
//! - **Confirmed by read-back.** After the final chunk the object's
//!   metadata is read again: size and `snapward-sha256` must be ours.
//! - **Nothing left behind.** An object only exists once the final chunk
//!   arrived; every error or cancellation cancels the session (`DELETE`
//!   on the session URI; a dropped `put` future spawns it). A process killed
//!   mid-upload leaves a session that holds no object and expires on its own
//!   (a week on Google): `cleanup` has nothing to remove. No staging object.
//! - **Immutability.** A delete refused because of a bucket retention
//!   policy, an object retention or a hold is [`DeleteOutcome::RetainedByLock`].
//! - **Credentials.** A service-account JSON file, or the standard chain
//!   (workload identity / metadata server, `GOOGLE_APPLICATION_CREDENTIALS`,
//!   gcloud ADC). With `endpoint` set and no credentials: no Authorization
//!   header (an emulator). Tokens and the private key are never formatted;
//!   the session URI (a bearer capability) goes only to the configured
//!   endpoint and is never logged.
//!
//! Must never: overwrite an object, delete anything but the named
//! snapshot, or log/format a token, a key or a session URI.
//!
//! # Files
//!
//! - `auth.rs`: credentials and access tokens;
//! - `http.rs`: requests, retries, errors, the object resource;
//! - `upload.rs`: the create-only resumable upload and its read-back;
//! - `ops.rs`: list, fetch, delete.

mod auth;
mod http;
mod ops;
mod upload;

use std::fmt;
use std::path::Path;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{
    Cleanup, DeleteOutcome, PutOutcome, RemoteSnapshot, Target, TargetError, UploadTag,
    snapshot_time,
};
use crate::policy::valid::GcsSettings;
use crate::snapshot::Identity;

/// Resumable upload chunk (a multiple of 256 KiB, Google's unit).
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// Google's chunk granularity.
const CHUNK_UNIT: usize = 256 * 1024;
/// Attempts per request (first try included) for transient failures.
pub const MAX_ATTEMPTS: u32 = 5;
/// Google's own endpoint.
const GOOGLE: &str = "https://storage.googleapis.com";

const META_SHA256: &str = "snapward-sha256";
const META_INDEX: &str = "snapward-raft-index";
const META_TERM: &str = "snapward-raft-term";
const META_CLUSTER_ID: &str = "snapward-cluster-id";
const META_TAG: &str = "snapward-tag";

/// One GCS bucket + prefix as a snapshot target.
pub struct GcsTarget {
    target: String,
    http: http::Client,
    bucket: String,
    /// Object name prefix of the target (`cluster-a/`), may be empty.
    prefix: String,
    /// File-name prefix of snapshots (`openbao-`).
    snapshot_prefix: String,
    chunk_size: usize,
}

impl fmt::Debug for GcsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsTarget")
            .field("name", &self.target)
            .field("endpoint", &self.http.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("credentials", &self.http.auth.describe())
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

impl GcsTarget {
    /// Builds the target. The service-account file is read and checked now
    /// (absent or empty ⇒ [`TargetError::CredentialsAbsent`], malformed ⇒
    /// [`TargetError::Refused`] naming the file, never its content); without
    /// one and without an endpoint the standard chain must find credentials
    /// (else `CredentialsAbsent`).
    pub async fn new(
        name: &str,
        cfg: &GcsSettings,
        snapshot_prefix: &str,
    ) -> Result<Self, TargetError> {
        let auth = auth::Auth::new(name, cfg).await?;
        let endpoint = cfg.endpoint.as_deref().unwrap_or(GOOGLE);
        let http = http::Client::new(name, endpoint, auth, cfg.timeouts)?;
        Ok(Self {
            target: name.to_owned(),
            http,
            bucket: cfg.bucket.clone(),
            prefix: cfg.prefix.clone(),
            snapshot_prefix: snapshot_prefix.to_owned(),
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    }

    /// Uploads in chunks of `bytes` (rounded up to a multiple of 256 KiB).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.div_ceil(CHUNK_UNIT).max(1) * CHUNK_UNIT;
        self
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The snapshot name of an object under the prefix, if it is one.
    fn snapshot_of<'k>(&self, key: &'k str) -> Option<(&'k str, jiff::Timestamp)> {
        let name = key.strip_prefix(&self.prefix)?;
        if name.contains('/') {
            return None;
        }
        snapshot_time(&self.snapshot_prefix, name).map(|t| (name, t))
    }

    fn check_name(&self, name: &str) -> Result<(), TargetError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(TargetError::failed(
                &self.target,
                format!("`{name}` is not a snapshot file name"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl Target for GcsTarget {
    fn name(&self) -> &str {
        &self.target
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

    /// Nothing to clean: see the module documentation (an interrupted
    /// resumable session holds no object; no staging objects are used).
    async fn cleanup(&self) -> Result<Cleanup, TargetError> {
        Ok(Cleanup::default())
    }
}
