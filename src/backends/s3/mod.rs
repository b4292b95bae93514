//! S3-compatible target (aws-sdk-s3): AWS, Cloudflare R2, MinIO, Ceph, moto,
//! s3s-fs. Stage: execute (backend). The executor only sees
//! [`Target`]; no aws-sdk type leaves this module.
//!
//! What it guarantees:
//!
//! - **Create-only.** `put` first HEADs the key and returns
//!   [`TargetError::AlreadyExists`] if it exists; PutObject and
//!   CompleteMultipartUpload carry `If-None-Match: *`, so a racing writer
//!   gets HTTP 412 instead of overwriting. A 412 is only accepted as success
//!   when the object holds exactly this upload (an SDK retry of a request
//!   whose first answer was lost); so is a failed CompleteMultipartUpload
//!   retry (the upload is gone: NoSuchUpload, or AccessDenied on s3s-fs)
//!   when the object is there with this size and SHA-256.
//! - **SHA-256 on every request body.** Each body (the whole file, or one
//!   part) is hashed just before it is streamed from the file, and sent with
//!   that `x-amz-checksum-sha256` (computed here, so the SDK never needs
//!   aws-chunked trailers, which some stores reject); a store that checks it
//!   (AWS, s3s-fs) refuses bytes that changed in between (400 BadDigest).
//!   The running hash of the whole file must equal the snapshot's identity
//!   or the upload is aborted. (A streamed upload's in-memory parts carry
//!   CRC32 instead, and its whole-stream SHA-256 must equal the verified
//!   identity before anything is published: `stream.rs`.) The full-object SHA-256 also goes into user
//!   metadata (`snapward-sha256`, with `snapward-raft-index`/`-term`),
//!   because a multipart object only has a composite checksum.
//! - **Confirmed by read-back.** After the upload a HEAD must report the
//!   local size and `snapward-sha256`, and — where the store returns one —
//!   the SHA-256 checksum it computed from what it received (full, or the
//!   composite `<b64>-<parts>` of the parts; moto omits the `-<parts>`).
//! - **Bounded memory.** Up to [`DEFAULT_MULTIPART_THRESHOLD`] one
//!   PutObject; above it, parts of [`DEFAULT_PART_SIZE`], at most
//!   [`DEFAULT_PARTS_IN_FLIGHT`] uploading at once. Bodies stream from the
//!   file through [`BODY_BUF`]-sized reads, so memory is ≈ parts in flight
//!   × `BODY_BUF` + one 1 MiB hashing buffer, whatever the part size (the
//!   cost: each byte is read twice, the second time from the page cache).
//!   Any error or cancellation aborts the multipart upload before `put`
//!   returns (and a dropped `put` future still spawns the abort).
//! - **Retries** are the SDK's standard strategy (exponential backoff with
//!   jitter, [`MAX_ATTEMPTS`] attempts per request) on connection errors,
//!   timeouts, 5xx and throttling (`SlowDown`), for every request — each one
//!   here is safe to repeat (file bodies are reopened for a retry, writes are
//!   create-only).
//!   A second retry layer (backon) would multiply the attempts, so there is
//!   none. 403/SignatureDoesNotMatch/NoSuchBucket are never retried and
//!   become [`TargetError::Refused`] with what to check.
//! - **Timeouts** (`S3Settings::timeouts`, the target's `timeouts` as the policy
//!   parsed them): `connect`, and `request` for
//!   one attempt of one request, its body included; an attempt that runs
//!   out of time is retried like a 5xx, so a stalled store fails the upload
//!   after at most [`MAX_ATTEMPTS`] × `request` plus backoff.
//! - **Secrets** (secret key, session token) are read from their files into
//!   [`SecretString`](secrecy::SecretString), handed to the SDK's `Credentials` (whose `Debug`
//!   redacts), and never formatted: `Debug` of [`S3Target`] omits them and
//!   server messages are scrubbed of them before they reach an error.
//!
//! Must never: overwrite an object, delete anything but the named snapshot,
//! bypass Object Lock governance, or log/format a secret.
//!
//! # Files
//!
//! - `client.rs`: credentials and the SDK client of one target;
//! - `list.rs`: listing snapshots and their identity (HEAD metadata, of
//!   the identity object for a streamed one);
//! - `put.rs`: create-only upload, one PutObject, and the read-back;
//! - `multipart.rs`: multipart upload, its abort guard, crashed uploads;
//! - `fetch.rs`: download to a new file, checked against the metadata;
//! - `delete.rs`: deleting every version, Object Lock's refusals;
//! - `stream.rs`: parts sent while the snapshot streams, the identity
//!   object, the create-only commit;
//! - `cleanup.rs`: aborting stale incomplete multipart uploads, orphaned
//!   identity objects;
//! - `error.rs`: SDK failures → [`TargetError`], scrubbed of credentials.

mod cleanup;
mod client;
mod delete;
mod error;
mod fetch;
mod list;
mod multipart;
mod put;
mod stream;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use tokio_util::sync::CancellationToken;

use super::{
    Cleanup, DeleteOutcome, PutOutcome, RemoteSnapshot, Target, TargetError, UploadTag,
    snapshot_time,
};
use crate::policy::model;
use crate::snapshot::Identity;
use client::CredentialSource;
use error::Context;
pub use error::RequestFailure;

/// Files up to this size go up in one PutObject.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Multipart part size (grown for huge files to stay under 10 000 parts).
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploading at once. Bodies stream from the file, so memory does not
/// grow with the part size: ≈ this × [`BODY_BUF`] plus one hashing buffer.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// Read buffer of each streaming request body.
pub const BODY_BUF: usize = 256 * 1024;
/// Attempts per request (first try included) for transient failures.
pub const MAX_ATTEMPTS: u32 = 5;
/// How old an incomplete multipart upload must be before `cleanup` aborts it.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// S3's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part count; we stay well below it.
const MAX_PARTS: u64 = 9_000;
/// HEADs run concurrently while listing.
const LIST_HEADS_IN_FLIGHT: usize = 8;

const META_SHA256: &str = "snapward-sha256";
const META_INDEX: &str = "snapward-raft-index";
const META_TERM: &str = "snapward-raft-term";
const META_CLUSTER_ID: &str = "snapward-cluster-id";
const META_TAG: &str = "snapward-tag";
/// On an identity object: the size of the snapshot it describes.
const META_SIZE: &str = "snapward-size";
/// On a streamed snapshot and its identity object: the stream's nonce.
const META_STREAM: &str = "snapward-stream";

/// Called with the cumulative number of bytes the store has accepted during
/// a `put` (after each part, or once for a single PutObject). For progress
/// display; it must not block.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// One S3 bucket + prefix as a snapshot target.
#[derive(Clone)]
pub struct S3Target {
    ctx: Arc<Context>,
    client: Client,
    /// Key prefix of the target (`cluster-a/`), may be empty.
    prefix: String,
    /// File-name prefix of snapshots (`openbao-`).
    snapshot_prefix: String,
    sse: Option<model::ServerSideEncryption>,
    object_lock: Option<model::ObjectLock>,
    multipart_threshold: u64,
    part_size: u64,
    parts_in_flight: usize,
    progress: Option<Progress>,
    /// Whether `begin_stream` streams (see `stream.rs`): the policy's
    /// `stream` (default on); off unless [`Self::with_streaming`].
    streaming: bool,
}

impl fmt::Debug for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = match self.ctx.credentials {
            CredentialSource::Files { .. } => "files [redacted]",
            CredentialSource::Chain => "standard AWS chain",
        };
        f.debug_struct("S3Target")
            .field("name", &self.ctx.target)
            .field("endpoint", &self.ctx.endpoint)
            .field("bucket", &self.ctx.bucket)
            .field("prefix", &self.prefix)
            .field("snapshot_prefix", &self.snapshot_prefix)
            .field("credentials", &credentials)
            .field("sse", &self.sse.as_ref().map(|s| s.mode))
            .field("object_lock", &self.object_lock)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("parts_in_flight", &self.parts_in_flight)
            .finish_non_exhaustive()
    }
}

impl S3Target {
    /// Tunes multipart uploads: files above `threshold` bytes go in parts of
    /// `part_size` (at least 5 MiB, S3's minimum), `parts_in_flight` at a
    /// time (at least 1).
    pub fn with_multipart(
        mut self,
        threshold: u64,
        part_size: u64,
        parts_in_flight: usize,
    ) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self.multipart_threshold = threshold.max(self.part_size);
        self.parts_in_flight = parts_in_flight.max(1);
        self
    }

    /// Send the parts while the snapshot streams (`stream.rs`: straight to
    /// the final key, the identity in an identity object).
    pub fn with_streaming(mut self, on: bool) -> Self {
        self.streaming = on;
        self
    }

    /// Reports upload progress (see [`Progress`]).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The snapshot name of a key under the prefix, if it is one.
    fn snapshot_of<'k>(&self, key: &'k str) -> Option<(&'k str, jiff::Timestamp)> {
        let name = key.strip_prefix(&self.prefix)?;
        if name.contains('/') {
            return None;
        }
        snapshot_time(&self.snapshot_prefix, name).map(|t| (name, t))
    }

    fn report_progress(&self, bytes: u64) {
        if let Some(p) = &self.progress {
            p(bytes);
        }
    }
}

#[async_trait]
impl Target for S3Target {
    fn name(&self) -> &str {
        &self.ctx.target
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

    async fn begin_stream(
        &self,
        name: &str,
        tail: &super::tail::Tail,
    ) -> Result<Option<Box<dyn super::StreamingPut>>, TargetError> {
        if !self.streaming || tail.path().is_none() {
            return Ok(None);
        }
        self.begin_streaming(name, tail).await
    }
}
