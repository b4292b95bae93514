//! Multipart upload: parts hashed in order and uploaded a few at a time,
//! each with its SHA-256; `CompleteMultipartUpload` with
//! `If-None-Match: *`; an [`UploadGuard`] that aborts the upload on every
//! path that does not complete it (also when the `put` future is dropped);
//! and the abort of a crashed run's upload of the same key.
//!
//! Must never: leave an incomplete upload behind on error or cancellation
//! (a later `cleanup` is the fallback), or complete an upload whose bytes
//! do not hash to the snapshot's identity.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::{changed, failure, unless_cancelled};
use super::put::{Sent, b64, hex_to_bytes};
use super::{MAX_PARTS, S3Target};
use crate::backends::TargetError;

/// Aborts a multipart upload if `put` leaves it unfinished: awaited on the
/// error/cancel paths, spawned from `Drop` if the `put` future is dropped.
struct UploadGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl UploadGuard {
    async fn abort(mut self) {
        self.armed = false;
        abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let (bucket, key, id) = (
                self.bucket.clone(),
                self.key.clone(),
                self.upload_id.clone(),
            );
            handle.spawn(async move { abort_upload(&client, &bucket, &key, &id).await });
        }
    }
}

pub(super) async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let res = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    match res {
        Ok(_) => tracing::debug!(key, "aborted multipart upload"),
        Err(e) => {
            let f = failure(&e);
            if f.not_found() || f.is("NoSuchUpload") {
                return;
            }
            // Not fatal: `cleanup` aborts it in a later run.
            tracing::warn!(
                key,
                code = f.code.as_deref().unwrap_or("-"),
                status = f.status.unwrap_or(0),
                "could not abort multipart upload; a later run's cleanup will"
            );
        }
    }
}

impl S3Target {
    /// Multipart upload; the upload is aborted on every path that does not
    /// complete it.
    #[expect(
        clippy::too_many_arguments,
        reason = "the progress line is one more borrowed handle"
    )]
    pub(super) async fn put_multipart(
        &self,
        file: &Path,
        key: &str,
        size: u64,
        meta: std::collections::HashMap<String, String>,
        want_sha: &str,
        cancel: &CancellationToken,
        shown: &crate::progress::Counter,
    ) -> Result<Sent, TargetError> {
        let (sse, kms) = self.sse();
        let (lock_mode, lock_until) = self.lock();
        self.abort_crashed_uploads_of(key).await;
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&self.ctx.bucket)
            .key(key)
            .content_type("application/gzip")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_metadata(Some(meta))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until);
        let created = unless_cancelled(cancel, create.send()).await?;
        let created =
            created.map_err(|e| self.ctx.error("CreateMultipartUpload", key, &failure(&e)))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(self.ctx.failed(format!(
                "CreateMultipartUpload `{key}` returned no upload id"
            )));
        };
        let guard = UploadGuard {
            client: self.client.clone(),
            bucket: self.ctx.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        crate::crash::crash_point!("s3.multipart.after-create");
        tracing::debug!(
            key,
            size,
            part_size = self.part_size,
            "multipart upload started"
        );

        let parts = match self
            .upload_parts(file, key, &upload_id, size, want_sha, cancel, shown)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        };
        if cancel.is_cancelled() {
            guard.abort().await;
            return Err(TargetError::Cancelled);
        }
        let mut concat = Vec::with_capacity(parts.len() * 32);
        let mut completed = Vec::with_capacity(parts.len());
        for (part, digest) in parts {
            concat.extend_from_slice(&digest);
            completed.push(part);
        }
        let complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.ctx.bucket)
            .key(key)
            .upload_id(&upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            );
        let res = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                guard.abort().await;
                return Err(TargetError::Cancelled);
            }
            r = complete.send() => r,
        };
        let sent = Sent {
            size,
            checksums: vec![b64(&Sha256::digest(&concat)), b64(&hex_to_bytes(want_sha))],
        };
        match res {
            Ok(_) => {
                let mut guard = guard;
                guard.armed = false;
                Ok(sent)
            }
            Err(e) => {
                let f = failure(&e);
                // An SDK retry of a Complete whose answer was lost finds the
                // upload already completed: NoSuchUpload (s3s-fs says
                // AccessDenied). If the object is ours, it is done.
                if !f.precondition_failed()
                    && self.holds(key, size, want_sha).await.unwrap_or(false)
                {
                    let mut guard = guard;
                    guard.armed = false;
                    return Ok(sent);
                }
                guard.abort().await;
                if f.precondition_failed() {
                    Err(self.already_exists(key))
                } else {
                    Err(self.ctx.error("CompleteMultipartUpload", key, &f))
                }
            }
        }
    }

    /// Hashes the file part by part (one reader, in order, hashing the whole
    /// file on the way) and uploads up to `parts_in_flight` parts at once,
    /// each streamed from the file with the SHA-256 just computed for it.
    /// Returns the completed parts in order with their SHA-256 digests.
    #[expect(
        clippy::too_many_arguments,
        reason = "the progress line is one more borrowed handle"
    )]
    pub(super) async fn upload_parts(
        &self,
        file: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
        want_sha: &str,
        cancel: &CancellationToken,
        shown: &crate::progress::Counter,
    ) -> Result<Vec<(CompletedPart, [u8; 32])>, TargetError> {
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size);
        let slots = Arc::new(Semaphore::new(self.parts_in_flight));
        let uploaded = Arc::new(AtomicU64::new(0));
        let mut tasks: JoinSet<Result<(CompletedPart, [u8; 32]), TargetError>> = JoinSet::new();
        let mut done: Vec<(CompletedPart, [u8; 32])> = Vec::with_capacity(count as usize);
        let mut whole = Some(Sha256::new());

        for number in 1..=count {
            let permit = unless_cancelled(cancel, slots.clone().acquire_owned())
                .await?
                .map_err(|e| self.ctx.failed("part scheduling".into()).caused_by(e))?;
            while let Some(joined) = tasks.try_join_next() {
                done.push(self.joined(joined)?);
            }
            let offset = (number - 1) * part_size;
            let len = part_size.min(size - offset);
            let (digest, hashed) = self.hash_range(file, offset, len, whole.take()).await?;
            whole = hashed;
            let checksum = b64(&digest);
            let body = self.file_body(file, offset, len).await?;
            let request = self
                .client
                .upload_part()
                .bucket(&self.ctx.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number as i32)
                .content_length(len as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(body);
            let ctx = Arc::clone(&self.ctx);
            let key = key.to_owned();
            let uploaded = Arc::clone(&uploaded);
            let progress = self.progress.clone();
            let shown = shown.clone();
            tasks.spawn(async move {
                let _slot = permit;
                let out = request.send().await.map_err(|e| {
                    ctx.error("UploadPart", &format!("{key} part {number}"), &failure(&e))
                })?;
                crate::crash::crash_point!("s3.multipart.after-part");
                let total = uploaded.fetch_add(len, Ordering::Relaxed) + len;
                shown.set(total);
                if let Some(p) = progress {
                    p(total);
                }
                let part = CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .checksum_sha256(checksum)
                    .build();
                Ok((part, digest))
            });
        }
        while !tasks.is_empty() {
            let joined = unless_cancelled(cancel, tasks.join_next()).await?;
            if let Some(joined) = joined {
                done.push(self.joined(joined)?);
            }
        }
        if whole.map(|h| hex::encode(h.finalize())).as_deref() != Some(want_sha) {
            return Err(changed(&self.ctx, file));
        }
        done.sort_by_key(|(p, _)| p.part_number());
        Ok(done)
    }

    pub(super) fn joined(
        &self,
        joined: Result<Result<(CompletedPart, [u8; 32]), TargetError>, tokio::task::JoinError>,
    ) -> Result<(CompletedPart, [u8; 32]), TargetError> {
        joined.map_err(|e| self.ctx.failed("part upload task".into()).caused_by(e))?
    }

    /// Aborts incomplete multipart uploads of exactly `key`, whatever their
    /// age: `put` checked the key is absent and holds the run lock, so such
    /// an upload can only be a crashed run's upload of this very snapshot
    /// (the age-based [`Self::cleanup_older_than`] would leave it for a
    /// day). Best effort: a store without ListMultipartUploads, or a denied
    /// listing, leaves it to that cleanup.
    pub(super) async fn abort_crashed_uploads_of(&self, key: &str) {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.ctx.bucket)
            .prefix(key)
            .send()
            .await;
        let page = match listed {
            Ok(p) => p,
            Err(e) => {
                let f = failure(&e);
                tracing::debug!(
                    key,
                    code = f.code.as_deref().unwrap_or("-"),
                    "cannot list incomplete uploads of the key; the stale-upload cleanup will abort any"
                );
                return;
            }
        };
        for upload in page.uploads() {
            if let (Some(k), Some(id)) = (upload.key(), upload.upload_id())
                && k == key
            {
                tracing::info!(
                    target_name = %self.ctx.target,
                    key,
                    "aborting an incomplete upload of this snapshot left by a crashed run"
                );
                abort_upload(&self.client, &self.ctx.bucket, key, id).await;
            }
        }
    }
}
