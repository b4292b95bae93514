//! S3 target, streaming (DESIGN.md §10, README "S3 streaming"). S3 fixes
//! an object's metadata at CreateMultipartUpload, before the stream's hash
//! is known, and a server-side copy to add it makes the store write every
//! byte twice. So a streamed snapshot carries its identity in a separate,
//! empty **identity object** `<prefix>.<name>.identity` (never a snapshot
//! name: not listed as one) whose user metadata is exactly what an
//! uploaded object carries (`snapward-sha256`, raft index/term, cluster
//! id, `snapward-tag`, plus `snapward-size`).
//!
//! The parts go straight to the final key while the snapshot streams (the
//! multipart upload is invisible until completed). `commit`, called only
//! after verification passed and the local file is durable: checks the
//! streamed bytes hash to the verified identity, sends the last part,
//! writes the identity object create-only (`If-None-Match: *`), then
//! completes the upload create-only (`If-None-Match: *`) and confirms both
//! by HEAD. Any failure aborts the upload (and removes this stream's
//! identity object): no snapshot object is left.
//!
//! Order matters for crashes: the identity object is written *before* the
//! snapshot object exists, so a snapshot object never lacks its identity.
//! A crash in between leaves an identity object without its snapshot (not
//! listed, removed by `cleanup` after a day) and an incomplete upload
//! (aborted by the stale-upload cleanup). Prune deletes the snapshot
//! first, then its identity object.
//!
//! The parts are read back from the local temp file while it is being
//! written ([`crate::backends::tail`]): the stream waits until a whole
//! part is in the file, then sends it as a retryable file body, up to the
//! target's `partsInFlight` at once. So S3 never holds the local copy up
//! (nothing is queued in memory for it: memory stays flat whatever the
//! part size) and falls behind at most by what the file holds.
//!
//! Each part carries its CRC32 (`x-amz-checksum-crc32`, checked by the
//! store), read back from the file before the part is sent. At `commit`,
//! the parts' CRC32s combined must equal the CRC32 the local writer kept
//! of every byte it wrote — the bytes the verifier hashed — and the length
//! the verified identity's: what was sent is what was verified, without
//! one more SHA-256 pass. A later fetch checks the full SHA-256 against the
//! identity object.
//!
//! The size is unknown in advance: a stream that would need more than
//! `MAX_PARTS` parts fails and the upload sends the local file instead.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::error::{check_name, failure};
use super::multipart::abort_upload;
use super::put::b64;
use super::{MAX_PARTS, META_SHA256, META_SIZE, META_STREAM, S3Target};
use crate::backends::tail::{Ended, Tail};
use crate::backends::{Confirmed, PutOutcome, StreamingPut, TargetError, UploadTag};
use crate::snapshot::Identity;

/// What marks an identity object (`<prefix>.<name>.identity`).
pub(super) const IDENTITY: &str = ".identity";
/// What marked a staging key of earlier versions' streamed uploads
/// (`<prefix>.<name>.partial-<random>`); `cleanup` still removes them.
const STAGING: &str = ".partial-";

/// A sent part: what CompleteMultipartUpload lists, its CRC32 and length.
type SentPart = (CompletedPart, u32, u64);

/// What the follower sent: every part, in order, and the stream's end.
struct Sent {
    parts: Vec<SentPart>,
    end: Ended,
}

pub(super) struct S3Stream {
    t: S3Target,
    name: String,
    key: String,
    upload_id: String,
    /// Marks this stream's object (`snapward-stream`), so a retried
    /// CompleteMultipartUpload can tell its own object from a racer's.
    nonce: String,
    /// Sends the parts while the file grows; `None` once joined.
    follower: Option<JoinHandle<Result<Sent, TargetError>>>,
    /// The stream's length, once the follower ended.
    len: u64,
    /// CRC32 and length of each part (the composite checksum).
    part_sums: Vec<(u32, u64)>,
}

impl S3Target {
    /// The identity object's key of snapshot `name`.
    pub(super) fn identity_key(&self, name: &str) -> String {
        format!("{}.{name}{IDENTITY}", self.prefix)
    }

    /// The snapshot name an identity object's key belongs to, if it is one.
    pub(super) fn identity_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let name = key
            .strip_prefix(&self.prefix)?
            .strip_prefix('.')?
            .strip_suffix(IDENTITY)?;
        self.snapshot_of(&format!("{}{name}", self.prefix))
            .map(|_| name)
    }

    /// Whether `key` is a staging key of an earlier version's stream.
    pub(super) fn is_staging(&self, key: &str) -> bool {
        key.strip_prefix(&self.prefix)
            .and_then(|k| k.strip_prefix('.'))
            .and_then(|k| k.split_once(STAGING))
            .is_some_and(|(name, _)| {
                self.snapshot_of(&format!("{}{name}", self.prefix))
                    .is_some()
            })
    }

    pub(super) async fn begin_streaming(
        &self,
        name: &str,
        tail: &Tail,
    ) -> Result<Option<Box<dyn StreamingPut>>, TargetError> {
        check_name(&self.ctx.target, name)?;
        let key = self.key(name);
        if self.head(&key).await?.is_some() {
            return Err(self.already_exists(&key));
        }
        self.abort_crashed_uploads_of(&key).await;
        let nonce = jiff::Timestamp::now().as_nanosecond() ^ i128::from(std::process::id());
        let nonce = format!("{:x}", nonce.unsigned_abs());
        let (sse, kms) = self.sse();
        let (lock_mode, lock_until) = self.lock();
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.ctx.bucket)
            .key(&key)
            .content_type("application/gzip")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .metadata(META_STREAM, &nonce)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until)
            .send()
            .await
            .map_err(|e| self.ctx.error("CreateMultipartUpload", &key, &failure(&e)))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(self.ctx.failed(format!(
                "CreateMultipartUpload `{key}` returned no upload id"
            )));
        };
        crate::crash::crash_point!("s3.multipart.after-create");
        let follower = tokio::spawn(follow(
            self.clone(),
            key.clone(),
            upload_id.clone(),
            tail.clone(),
        ));
        Ok(Some(Box::new(S3Stream {
            t: self.clone(),
            name: name.to_owned(),
            key,
            upload_id,
            nonce,
            follower: Some(follower),
            len: 0,
            part_sums: Vec::new(),
        })))
    }

    /// Writes the identity object of a streamed snapshot, create-only.
    async fn put_identity(
        &self,
        name: &str,
        meta: HashMap<String, String>,
    ) -> Result<(), TargetError> {
        let key = self.identity_key(name);
        let (sse, kms) = self.sse();
        let (lock_mode, lock_until) = self.lock();
        let res = self
            .client
            .put_object()
            .bucket(&self.ctx.bucket)
            .key(&key)
            .body(ByteStream::from_static(b""))
            .content_length(0)
            .content_type("application/octet-stream")
            .if_none_match("*")
            .set_metadata(Some(meta.clone()))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = failure(&e);
                // A 412 is ours only if an SDK retry's first attempt landed.
                if f.precondition_failed() && self.identity_is(&key, &meta).await {
                    return Ok(());
                }
                if f.precondition_failed() {
                    return Err(self.ctx.failed(format!(
                        "the identity object `{key}` already exists without its snapshot: not published (a crashed run's; `cleanup` removes it after a day)"
                    )));
                }
                Err(self.ctx.error("PutObject", &key, &f))
            }
        }
    }

    /// Does the identity object at `key` carry exactly `meta`?
    async fn identity_is(&self, key: &str, meta: &HashMap<String, String>) -> bool {
        matches!(self.head(key).await, Ok(Some(h)) if h.metadata().is_some_and(|m| {
            meta.iter().all(|(k, v)| m.get(k) == Some(v))
        }))
    }
}

/// Follows the local file: sends each part once it is whole in the file
/// (the last one at the end of the stream), at most `parts_in_flight` at
/// once. Returns every part sent, in order, and the stream's end.
async fn follow(
    t: S3Target,
    key: String,
    upload_id: String,
    mut tail: Tail,
) -> Result<Sent, TargetError> {
    let Some(path) = tail.path().map(std::path::Path::to_path_buf) else {
        return Err(t.ctx.failed("the local file cannot be followed".into()));
    };
    let part_size = t.part_size;
    let slots = Arc::new(Semaphore::new(t.parts_in_flight));
    let mut sending: JoinSet<Result<SentPart, TargetError>> = JoinSet::new();
    let mut parts = Vec::new();
    let mut offset = 0u64;
    let end = loop {
        let (written, end) = tail
            .wait(offset.saturating_add(part_size))
            .await
            .map_err(|e| t.ctx.failed(e.to_string()))?;
        let len = (written - offset).min(part_size);
        if len == 0 && offset > 0 {
            // The stream ended on a part boundary.
            if let Some(end) = end {
                break end;
            }
        }
        let number = parts.len() as u64 + sending.len() as u64 + 1;
        if number > MAX_PARTS {
            return Err(t.ctx.failed(format!(
                "the snapshot needs more than {MAX_PARTS} parts of {} MiB: too large to stream",
                part_size >> 20
            )));
        }
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| t.ctx.failed("part scheduling".into()).caused_by(e))?;
        while let Some(joined) = sending.try_join_next() {
            parts.push(joined_part(&t, joined)?);
        }
        let crc = tail
            .crc32_of(offset, len)
            .await
            .map_err(|e| t.ctx.failed("reading the local file".into()).caused_by(e))?;
        let body = t.file_body(&path, offset, len).await?;
        let number = number as i32;
        let checksum = b64(&crc.to_be_bytes());
        let request = t
            .client
            .upload_part()
            .bucket(&t.ctx.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number)
            .content_length(len as i64)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .checksum_crc32(&checksum)
            .body(body);
        let ctx = Arc::clone(&t.ctx);
        let key = key.clone();
        sending.spawn(async move {
            let _slot = permit;
            let out = request.send().await.map_err(|e| {
                ctx.error("UploadPart", &format!("{key} part {number}"), &failure(&e))
            })?;
            crate::crash::crash_point!("s3.multipart.after-part");
            let part = CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .checksum_crc32(checksum)
                .build();
            Ok((part, crc, len))
        });
        offset += len;
        if let Some(end) = end
            && offset == end.len
        {
            break end;
        }
    };
    while let Some(joined) = sending.join_next().await {
        parts.push(joined_part(&t, joined)?);
    }
    parts.sort_by_key(|(p, _, _)| p.part_number());
    Ok(Sent { parts, end })
}

fn joined_part(
    t: &S3Target,
    joined: Result<Result<SentPart, TargetError>, tokio::task::JoinError>,
) -> Result<SentPart, TargetError> {
    joined.map_err(|e| t.ctx.failed("part upload task".into()).caused_by(e))?
}

impl S3Stream {
    /// Waits for the follower: every part sent, in order.
    async fn finish_parts(&mut self) -> Result<Vec<CompletedPart>, TargetError> {
        let Some(follower) = self.follower.take() else {
            return Err(self.t.ctx.failed("the stream was already finished".into()));
        };
        let sent = follower
            .await
            .map_err(|e| self.t.ctx.failed("the part uploader".into()).caused_by(e))??;
        self.len = sent.end.len;
        self.part_sums = sent.parts.iter().map(|(_, c, l)| (*c, *l)).collect();
        let mut whole = crc32fast::Hasher::new();
        for (crc, len) in &self.part_sums {
            whole.combine(&crc32fast::Hasher::new_with_initial_len(*crc, *len));
        }
        let sent_len: u64 = self.part_sums.iter().map(|(_, l)| l).sum();
        let sent_crc = whole.finalize();
        if sent_crc != sent.end.crc32 || sent_len != sent.end.len {
            return Err(self.t.ctx.failed(format!(
                "the parts sent of {} ({sent_len} bytes, CRC32 {sent_crc:08x}) are not the bytes written to the local file ({} bytes, CRC32 {:08x}): not published",
                self.name, sent.end.len, sent.end.crc32
            )));
        }
        Ok(sent.parts.into_iter().map(|(p, _, _)| p).collect())
    }

    /// The CRC32 checksums the store may report for the object: the
    /// composite (CRC32 of the parts' CRC32s) and the full object's.
    fn checksums(&self) -> [String; 2] {
        let mut composite = crc32fast::Hasher::new();
        let mut full = crc32fast::Hasher::new();
        for (crc, len) in &self.part_sums {
            composite.update(&crc.to_be_bytes());
            full.combine(&crc32fast::Hasher::new_with_initial_len(*crc, *len));
        }
        [
            b64(&composite.finalize().to_be_bytes()),
            b64(&full.finalize().to_be_bytes()),
        ]
    }

    /// CompleteMultipartUpload create-only. A 412 or a vanished upload is
    /// accepted only when the object is this stream's (its `snapward-stream`
    /// nonce and size): an SDK retry whose first attempt succeeded.
    async fn complete(&self, parts: Vec<CompletedPart>) -> Result<(), TargetError> {
        let t = &self.t;
        let done = t
            .client
            .complete_multipart_upload()
            .bucket(&t.ctx.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        let Err(e) = done else { return Ok(()) };
        let f = failure(&e);
        if (f.precondition_failed() || f.is("NoSuchUpload") || f.access_denied())
            && self.is_ours().await
        {
            return Ok(());
        }
        if f.precondition_failed() {
            Err(t.already_exists(&self.key))
        } else {
            Err(t.ctx.error("CompleteMultipartUpload", &self.key, &f))
        }
    }

    /// Is the object at the key this stream's?
    async fn is_ours(&self) -> bool {
        matches!(self.t.head(&self.key).await, Ok(Some(h))
            if h.content_length() == Some(self.len as i64)
                && h.metadata().and_then(|m| m.get(META_STREAM)) == Some(&self.nonce))
    }

    /// HEADs after the commit: the object (size, this stream's nonce, the
    /// store's checksum where it reports one) and its identity object.
    async fn confirm(&self, want_sha: &str) -> Result<Confirmed, TargetError> {
        let t = &self.t;
        let not_confirmed = |got: String| TargetError::NotConfirmed {
            target: t.ctx.target.clone(),
            name: self.name.clone(),
            expected: format!("{} bytes, sha256 {want_sha}", self.len),
            got,
        };
        let Some(head) = t.head(&self.key).await? else {
            return Err(not_confirmed("no such object".to_owned()));
        };
        let size = head.content_length().map(|l| l.max(0) as u64);
        let nonce = head.metadata().and_then(|m| m.get(META_STREAM));
        if size != Some(self.len) || nonce != Some(&self.nonce) {
            return Err(not_confirmed(format!(
                "{} bytes, {}",
                size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                if nonce == Some(&self.nonce) {
                    "this stream's object"
                } else {
                    "another writer's object"
                }
            )));
        }
        if let Some(cs) = head.checksum_crc32() {
            let value = cs.split_once('-').map_or(cs, |(v, _)| v);
            // The composite of the parts (AWS: `<b64>-<n>`, moto drops the
            // `-<n>`) or a full-object checksum: either must be ours.
            if !self.checksums().iter().any(|c| c == value) {
                return Err(not_confirmed(format!("checksum-crc32 {cs}")));
            }
        }
        let id_key = t.identity_key(&self.name);
        let sha = t.head(&id_key).await?.and_then(|h| {
            h.metadata()
                .and_then(|m| m.get(META_SHA256))
                .map(|s| s.to_ascii_lowercase())
        });
        if sha.as_deref() != Some(want_sha) {
            return Err(not_confirmed(format!(
                "identity object sha256 {}",
                sha.as_deref().unwrap_or("absent")
            )));
        }
        Ok(Confirmed {
            size: self.len,
            sha256: want_sha.to_owned(),
        })
    }

    async fn discard(&mut self) {
        if let Some(follower) = self.follower.take() {
            // Aborting the follower drops its part tasks (aborted too).
            follower.abort();
            let _ = follower.await;
        }
        abort_upload(
            &self.t.client,
            &self.t.ctx.bucket,
            &self.key,
            &self.upload_id,
        )
        .await;
    }

    async fn publish(
        &mut self,
        parts: Vec<CompletedPart>,
        identity: &Identity,
        tag: &UploadTag,
    ) -> Result<(), TargetError> {
        let want = identity.sha256.to_ascii_lowercase();
        let mut meta = self.t.metadata(identity, &want, tag);
        meta.insert(META_SIZE.to_owned(), self.len.to_string());
        meta.insert(META_STREAM.to_owned(), self.nonce.clone());
        self.t.put_identity(&self.name, meta).await?;
        crate::crash::crash_point!("s3.stream.after-identity");
        if let Err(e) = self.complete(parts).await {
            // Not published: this stream's identity object must not stay
            // (it describes no object of ours).
            self.t
                .delete_quietly(&self.t.identity_key(&self.name))
                .await;
            return Err(e);
        }
        Ok(())
    }
}

#[async_trait]
impl StreamingPut for S3Stream {
    async fn write(&mut self, _bytes: bytes::Bytes) -> Result<(), TargetError> {
        Err(self
            .t
            .ctx
            .failed("an S3 stream reads the local file; it is not written to".into()))
    }

    fn follows_file(&self) -> bool {
        true
    }

    async fn commit(
        mut self: Box<Self>,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError> {
        let want = identity.sha256.to_ascii_lowercase();
        if cancel.is_cancelled() {
            self.discard().await;
            return Err(TargetError::Cancelled);
        }
        let shown = crate::progress::start(
            format!("upload {}", self.t.ctx.target),
            Some(identity.file_size),
        );
        let parts = match self.finish_parts().await {
            Ok(p) if self.len == identity.file_size => p,
            Ok(_) => {
                self.discard().await;
                return Err(self.t.ctx.failed(format!(
                    "the streamed copy of {} is {} bytes, the verified snapshot {}: not published",
                    self.name, self.len, identity.file_size
                )));
            }
            Err(e) => {
                self.discard().await;
                return Err(e);
            }
        };
        if let Err(e) = self.publish(parts, identity, tag).await {
            self.discard().await;
            return Err(e);
        }
        shown.set(self.len);
        shown.finish();
        crate::crash::crash_point!("s3.after-complete");
        let confirmed = self.confirm(&want).await?;
        tracing::info!(target_name = %self.t.ctx.target, key = self.key, size = self.len, "streamed upload confirmed");
        Ok(PutOutcome::Confirmed(confirmed))
    }

    async fn abort(mut self: Box<Self>) {
        self.discard().await;
    }
}
