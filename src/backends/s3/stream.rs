//! S3 target, streaming (DESIGN.md §10). S3 fixes an object's metadata
//! (`snapward-sha256`, raft identity, `snapward-tag`) at
//! CreateMultipartUpload, before the stream's hash is known. So the parts
//! go, while the snapshot streams, to a *staging* key
//! `<prefix>.<name>.partial-<random>` (never a snapshot name: not listed,
//! never counted); `commit` completes the staging upload, then copies it
//! server-side, create-only, to the final key with the metadata
//! (CreateMultipartUpload + UploadPartCopy ranges of ≤ 5 GiB +
//! CompleteMultipartUpload with `If-None-Match: *`), deletes the staging
//! object and confirms the final object by HEAD as an upload does. A
//! store without UploadPartCopy (NotImplemented) makes the commit fail:
//! the upload then sends the local file (logged).
//!
//! Memory: one part being filled plus at most [`IN_FLIGHT`] parts sent.
//! Leftovers of a crashed run (an incomplete staging upload, a completed
//! staging object) are removed by the next stream to the target and by
//! `cleanup` (older than a day): see [`S3Target::remove_crashed_staging`].

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::S3Target;
use super::error::{check_name, failure};
use super::multipart::abort_upload;
use super::put::{Sent, b64};
use crate::backends::{PutOutcome, StreamingPut, TargetError, UploadTag};
use crate::snapshot::Identity;

/// Parts sent at once while streaming (each `part_size` in memory).
const IN_FLIGHT: usize = 2;
/// The most one UploadPartCopy may copy.
const COPY_RANGE: u64 = 5 << 30;
/// What marks a staging key (`<prefix>.<name>.partial-<random>`).
const STAGING: &str = ".partial-";

type PartTask = Result<CompletedPart, TargetError>;

pub(super) struct S3Stream {
    t: S3Target,
    name: String,
    staging: String,
    upload_id: String,
    buf: Vec<u8>,
    hash: Sha256,
    len: u64,
    next_part: i32,
    sending: JoinSet<PartTask>,
    sent: Vec<CompletedPart>,
}

impl S3Target {
    /// Whether `key` is a staging key of this target's snapshots.
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
    ) -> Result<Option<Box<dyn StreamingPut>>, TargetError> {
        check_name(&self.ctx.target, name)?;
        let key = self.key(name);
        if self.head(&key).await?.is_some() {
            return Err(self.already_exists(&key));
        }
        self.remove_crashed_staging().await;
        let nonce = jiff::Timestamp::now().as_nanosecond() ^ i128::from(std::process::id());
        let staging = format!("{}.{name}{STAGING}{:x}", self.prefix, nonce.unsigned_abs());
        let (sse, kms) = self.sse();
        // No Object Lock on staging: it is deleted after the copy.
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.ctx.bucket)
            .key(&staging)
            .content_type("application/gzip")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .send()
            .await
            .map_err(|e| {
                self.ctx
                    .error("CreateMultipartUpload", &staging, &failure(&e))
            })?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(self.ctx.failed(format!(
                "CreateMultipartUpload `{staging}` returned no upload id"
            )));
        };
        crate::crash::crash_point!("s3.multipart.after-create");
        Ok(Some(Box::new(S3Stream {
            t: self.clone(),
            name: name.to_owned(),
            staging,
            upload_id,
            buf: Vec::new(),
            hash: Sha256::new(),
            len: 0,
            next_part: 1,
            sending: JoinSet::new(),
            sent: Vec::new(),
        })))
    }

    /// Aborts incomplete staging uploads and deletes staging objects under
    /// the prefix, whatever their age: the policy's run lock excludes a
    /// live stream. Best effort (the age-based cleanup is the fallback).
    pub(super) async fn remove_crashed_staging(&self) {
        let prefix = format!("{}.{}", self.prefix, self.snapshot_prefix);
        if let Ok(page) = self
            .client
            .list_multipart_uploads()
            .bucket(&self.ctx.bucket)
            .prefix(&prefix)
            .send()
            .await
        {
            for u in page.uploads() {
                if let (Some(k), Some(id)) = (u.key(), u.upload_id())
                    && self.is_staging(k)
                {
                    tracing::info!(target_name = %self.ctx.target, key = k, "aborting a crashed run's staging upload");
                    abort_upload(&self.client, &self.ctx.bucket, k, id).await;
                }
            }
        }
        if let Ok(page) = self
            .client
            .list_objects_v2()
            .bucket(&self.ctx.bucket)
            .prefix(&prefix)
            .send()
            .await
        {
            for o in page.contents() {
                if let Some(k) = o.key()
                    && self.is_staging(k)
                {
                    tracing::info!(target_name = %self.ctx.target, key = k, "deleting a crashed run's staging object");
                    self.delete_staging(k).await;
                }
            }
        }
    }

    pub(super) async fn delete_staging(&self, key: &str) {
        if let Err(e) = self
            .client
            .delete_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .send()
            .await
        {
            let f = failure(&e);
            tracing::warn!(target_name = %self.ctx.target, key, code = f.code.as_deref().unwrap_or("-"), "could not delete the staging object; a later run will");
        }
    }
}

impl S3Stream {
    /// Sends `self.buf` as the next part (waiting while `IN_FLIGHT` are).
    async fn send_part(&mut self) -> Result<(), TargetError> {
        while self.sending.len() >= IN_FLIGHT {
            self.join_one().await?;
        }
        let body = std::mem::take(&mut self.buf);
        let number = self.next_part;
        self.next_part += 1;
        let checksum = b64(&Sha256::digest(&body));
        let request = self
            .t
            .client
            .upload_part()
            .bucket(&self.t.ctx.bucket)
            .key(&self.staging)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(body));
        let ctx = std::sync::Arc::clone(&self.t.ctx);
        let key = self.staging.clone();
        self.sending.spawn(async move {
            let out = request.send().await.map_err(|e| {
                ctx.error("UploadPart", &format!("{key} part {number}"), &failure(&e))
            })?;
            crate::crash::crash_point!("s3.multipart.after-part");
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .checksum_sha256(checksum)
                .build())
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), TargetError> {
        if let Some(joined) = self.sending.join_next().await {
            let part =
                joined.map_err(|e| self.t.ctx.failed("part upload task".into()).caused_by(e))??;
            self.sent.push(part);
        }
        Ok(())
    }

    /// Everything sent and the staging upload completed: its parts.
    async fn complete_staging(&mut self) -> Result<(), TargetError> {
        if !self.buf.is_empty() || self.next_part == 1 {
            self.send_part().await?;
        }
        while !self.sending.is_empty() {
            self.join_one().await?;
        }
        let mut parts = std::mem::take(&mut self.sent);
        parts.sort_by_key(|p| p.part_number());
        self.t
            .client
            .complete_multipart_upload()
            .bucket(&self.t.ctx.bucket)
            .key(&self.staging)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.t
                    .ctx
                    .error("CompleteMultipartUpload", &self.staging, &failure(&e))
            })?;
        Ok(())
    }

    /// The create-only server-side copy of the staging object to `key`.
    async fn copy_to(
        &self,
        key: &str,
        meta: HashMap<String, String>,
        cancel: &CancellationToken,
    ) -> Result<(), TargetError> {
        let t = &self.t;
        let (sse, kms) = t.sse();
        let (lock_mode, lock_until) = t.lock();
        t.abort_crashed_uploads_of(key).await;
        let created = t
            .client
            .create_multipart_upload()
            .bucket(&t.ctx.bucket)
            .key(key)
            .content_type("application/gzip")
            .set_metadata(Some(meta))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until)
            .send()
            .await
            .map_err(|e| t.ctx.error("CreateMultipartUpload", key, &failure(&e)))?;
        let Some(id) = created.upload_id().map(str::to_owned) else {
            return Err(t.ctx.failed(format!(
                "CreateMultipartUpload `{key}` returned no upload id"
            )));
        };
        let copied = self.copy_parts(key, &id, cancel).await;
        let parts = match copied {
            Ok(p) => p,
            Err(e) => {
                abort_upload(&t.client, &t.ctx.bucket, key, &id).await;
                return Err(e);
            }
        };
        let done = t
            .client
            .complete_multipart_upload()
            .bucket(&t.ctx.bucket)
            .key(key)
            .upload_id(&id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = failure(&e);
                abort_upload(&t.client, &t.ctx.bucket, key, &id).await;
                if f.precondition_failed() {
                    Err(t.already_exists(key))
                } else {
                    Err(t.ctx.error("CompleteMultipartUpload", key, &f))
                }
            }
        }
    }

    async fn copy_parts(
        &self,
        key: &str,
        id: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<CompletedPart>, TargetError> {
        let t = &self.t;
        let source = format!("{}/{}", t.ctx.bucket, self.staging);
        let mut parts = Vec::new();
        let mut at = 0u64;
        let mut number = 1;
        while at < self.len {
            if cancel.is_cancelled() {
                return Err(TargetError::Cancelled);
            }
            let end = (at + COPY_RANGE).min(self.len) - 1;
            let out = t
                .client
                .upload_part_copy()
                .bucket(&t.ctx.bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .copy_source(&source)
                .copy_source_range(format!("bytes={at}-{end}"))
                .send()
                .await
                .map_err(|e| {
                    let f = failure(&e);
                    if f.not_implemented() {
                        tracing::warn!(target_name = %t.ctx.target, "the store does not implement UploadPartCopy: the snapshot is uploaded from the local file instead");
                    }
                    t.ctx.error("UploadPartCopy", key, &f)
                })?;
            let etag = out
                .copy_part_result()
                .and_then(|r| r.e_tag())
                .map(str::to_owned);
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(etag)
                    .build(),
            );
            at = end + 1;
            number += 1;
        }
        Ok(parts)
    }

    async fn discard(&mut self) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        abort_upload(
            &self.t.client,
            &self.t.ctx.bucket,
            &self.staging,
            &self.upload_id,
        )
        .await;
    }
}

#[async_trait]
impl StreamingPut for S3Stream {
    async fn write(&mut self, bytes: bytes::Bytes) -> Result<(), TargetError> {
        self.hash.update(&bytes);
        self.len += bytes.len() as u64;
        let part = self.t.part_size as usize;
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let room = part.saturating_sub(self.buf.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(part);
            }
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() >= part {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        identity: &Identity,
        tag: &UploadTag,
        _cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError> {
        let cancel = _cancel;
        let want = identity.sha256.to_ascii_lowercase();
        let got = hex::encode(std::mem::take(&mut self.hash).finalize());
        if self.len != identity.file_size || got != want {
            self.discard().await;
            return Err(self.t.ctx.failed(format!(
                "the streamed copy of {} does not match its verified identity: not published",
                self.name
            )));
        }
        if let Err(e) = self.complete_staging().await {
            self.discard().await;
            return Err(e);
        }
        let key = self.t.key(&self.name);
        let meta = self.t.metadata(identity, &want, tag);
        let shown = crate::progress::start(format!("upload {}", self.t.ctx.target), Some(self.len));
        let copied = self.copy_to(&key, meta, cancel).await;
        self.t.delete_staging(&self.staging).await;
        copied?;
        shown.set(self.len);
        shown.finish();
        crate::crash::crash_point!("s3.after-complete");
        let sent = Sent {
            size: self.len,
            checksums: Vec::new(),
        };
        let confirmed = self.t.confirm(&key, &self.name, &want, &sent).await?;
        tracing::info!(target_name = %self.t.ctx.target, key, size = self.len, "streamed upload confirmed");
        Ok(PutOutcome::Confirmed(confirmed))
    }

    async fn abort(mut self: Box<Self>) {
        self.discard().await;
    }
}
