//! Create-only upload with read-back: the HEAD that refuses an existing
//! key, one PutObject with `If-None-Match: *` for small files (multipart
//! above the threshold, see `multipart.rs`), a 412 accepted only when the
//! object is exactly this upload, then the confirming HEAD (size,
//! `snapward-sha256`, the store's checksum).
//!
//! Must never: overwrite an object, upload bytes that do not hash to the
//! snapshot's identity, or report an upload the read-back did not confirm.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockMode, ServerSideEncryption};
use aws_smithy_types::byte_stream::Length;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::error::{changed, check_name, failure, io_err, unless_cancelled};
use super::{BODY_BUF, META_CLUSTER_ID, META_INDEX, META_SHA256, META_TAG, META_TERM, S3Target};
use crate::backends::{Confirmed, TargetError, UploadTag};
use crate::policy::model;
use crate::snapshot::Identity;

/// Read buffer of the checksum pass.
const HASH_BUF: usize = 1024 * 1024;

/// What the store should report for the object after a successful upload:
/// the checksums it may return (base64 SHA-256 of the whole file, and for a
/// multipart upload the composite one, without its `-<parts>` suffix).
/// Empty when unknown.
pub(super) struct Sent {
    pub(super) size: u64,
    pub(super) checksums: Vec<String>,
}

impl S3Target {
    pub(super) async fn put_confirmed(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        check_name(&self.ctx.target, name)?;
        let want_sha = identity.sha256.to_ascii_lowercase();
        if !is_sha256_hex(&want_sha) {
            return Err(self.ctx.failed(format!(
                "the identity of `{name}` has no valid SHA-256: not uploaded"
            )));
        }
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|source| io_err(file, source))?
            .len();
        if size != identity.file_size {
            return Err(changed(&self.ctx, file));
        }
        let key = self.key(name);
        if self.head(&key).await?.is_some() {
            return Err(self.already_exists(&key));
        }
        // An identity object without its snapshot is a crashed stream's
        // (`stream.rs`; the run lock excludes a live one): it would stand
        // for this upload's own metadata in listings.
        let orphan = self.identity_key(name);
        if self.head(&orphan).await?.is_some() {
            tracing::info!(target_name = %self.ctx.target, key = orphan, "deleting a crashed stream's identity object");
            self.delete_quietly(&orphan).await;
        }
        if cancel.is_cancelled() {
            return Err(TargetError::Cancelled);
        }
        tracing::info!(target_name = %self.ctx.target, key, size, "uploading snapshot");
        // Progress per part (a single PutObject has no byte hook: all at once).
        let shown = crate::progress::start(format!("upload {}", self.ctx.target), Some(size));
        let sent = if size <= self.multipart_threshold {
            self.put_single(file, &key, identity, tag, &want_sha, cancel)
                .await
        } else {
            self.put_multipart(
                file,
                &key,
                size,
                self.metadata(identity, &want_sha, tag),
                &want_sha,
                cancel,
                &shown.handle(),
            )
            .await
        };
        let sent = match sent {
            Ok(s) => s,
            Err(TargetError::AlreadyExists { target, name }) => {
                // 412 after our HEAD said absent: either a racing writer or
                // an SDK retry whose first attempt succeeded. Only the
                // latter is ours: same size and SHA-256.
                if !self.holds(&key, size, &want_sha).await? {
                    return Err(TargetError::AlreadyExists { target, name });
                }
                // The parts of that attempt are unknown: confirm by size
                // and metadata only.
                Sent {
                    size,
                    checksums: Vec::new(),
                }
            }
            Err(e) => return Err(e),
        };
        // Sent (the confirming HEAD follows).
        shown.set(size);
        shown.finish();
        crate::crash::crash_point!("s3.after-complete");
        let confirmed = self.confirm(&key, name, &want_sha, &sent).await?;
        tracing::info!(target_name = %self.ctx.target, key, size, "upload confirmed");
        Ok(confirmed)
    }

    /// One PutObject streamed from the (small) file.
    pub(super) async fn put_single(
        &self,
        file: &Path,
        key: &str,
        identity: &Identity,
        tag: &UploadTag,
        want_sha: &str,
        cancel: &CancellationToken,
    ) -> Result<Sent, TargetError> {
        let size = identity.file_size;
        let whole = Some(Sha256::new());
        let (digest, whole) = self.hash_range(file, 0, size, whole).await?;
        if whole.map(|h| hex::encode(h.finalize())).as_deref() != Some(want_sha) {
            return Err(changed(&self.ctx, file));
        }
        let checksum = b64(&digest);
        let body = self.file_body(file, 0, size).await?;
        let (sse, kms) = self.sse();
        let (lock_mode, lock_until) = self.lock();
        let req = self
            .client
            .put_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .body(body)
            .content_length(size as i64)
            .content_type("application/gzip")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .if_none_match("*")
            .set_metadata(Some(self.metadata(identity, want_sha, tag)))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until);
        let res = unless_cancelled(cancel, req.send()).await?;
        match res {
            Ok(_) => {
                self.report_progress(size);
                Ok(Sent {
                    size,
                    checksums: vec![checksum],
                })
            }
            Err(e) => {
                let f = failure(&e);
                if f.precondition_failed() {
                    Err(self.already_exists(key))
                } else {
                    Err(self.ctx.error("PutObject", key, &f))
                }
            }
        }
    }

    /// Does `key` hold an object of this size with this `snapward-sha256`?
    pub(super) async fn holds(
        &self,
        key: &str,
        size: u64,
        want_sha: &str,
    ) -> Result<bool, TargetError> {
        Ok(self.head(key).await?.is_some_and(|h| {
            h.content_length() == Some(size as i64)
                && h.metadata()
                    .and_then(|m| m.get(META_SHA256))
                    .is_some_and(|s| s == want_sha)
        }))
    }

    pub(super) fn already_exists(&self, key: &str) -> TargetError {
        TargetError::AlreadyExists {
            target: self.ctx.target.clone(),
            name: key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
        }
    }

    /// The identity, and what authenticates it later (cluster id, tag).
    pub(super) fn metadata(
        &self,
        identity: &Identity,
        sha256: &str,
        tag: &UploadTag,
    ) -> HashMap<String, String> {
        let mut m = HashMap::from([
            (META_SHA256.to_owned(), sha256.to_owned()),
            (META_INDEX.to_owned(), identity.index.to_string()),
            (META_TERM.to_owned(), identity.term.to_string()),
        ]);
        if !tag.cluster_id.is_empty() {
            m.insert(META_CLUSTER_ID.to_owned(), tag.cluster_id.clone());
        }
        if let Some(t) = &tag.tag {
            m.insert(META_TAG.to_owned(), t.clone());
        }
        m
    }

    pub(super) fn sse(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.sse {
            None => (None, None),
            Some(s) => match s.mode {
                model::SseMode::Aes256 => (Some(ServerSideEncryption::Aes256), None),
                model::SseMode::AwsKms => {
                    (Some(ServerSideEncryption::AwsKms), s.kms_key_id.clone())
                }
            },
        }
    }

    /// Object Lock mode and retain-until (now + days).
    pub(super) fn lock(&self) -> (Option<ObjectLockMode>, Option<aws_smithy_types::DateTime>) {
        match &self.object_lock {
            None => (None, None),
            Some(l) => {
                let mode = match l.mode {
                    model::ObjectLockMode::Governance => ObjectLockMode::Governance,
                    model::ObjectLockMode::Compliance => ObjectLockMode::Compliance,
                };
                let until = jiff::Timestamp::now().as_second() + i64::from(l.days) * 86_400;
                (
                    Some(mode),
                    Some(aws_smithy_types::DateTime::from_secs(until)),
                )
            }
        }
    }

    /// SHA-256 of `len` bytes at `offset` (and feeds them to `whole`), read
    /// through one small buffer on a blocking thread.
    pub(super) async fn hash_range(
        &self,
        file: &Path,
        offset: u64,
        len: u64,
        mut whole: Option<Sha256>,
    ) -> Result<([u8; 32], Option<Sha256>), TargetError> {
        let path = file.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; HASH_BUF.min(len as usize).max(1)];
            let mut part = Sha256::new();
            let mut at = offset;
            let end = offset + len;
            while at < end {
                let n = buf.len().min((end - at) as usize);
                let chunk = buf.get_mut(..n).unwrap_or_default();
                f.read_exact_at(chunk, at)?;
                part.update(&*chunk);
                if let Some(h) = whole.as_mut() {
                    h.update(&*chunk);
                }
                at += n as u64;
            }
            Ok::<_, std::io::Error>((part.finalize().into(), whole))
        });
        match task.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(source)) => Err(io_err(file, source)),
            Err(e) => Err(self
                .ctx
                .failed(format!("reading {}", file.display()))
                .caused_by(e)),
        }
    }

    /// A retryable request body streaming `len` bytes at `offset` from the
    /// file (the SDK reopens it for a retry).
    pub(super) async fn file_body(
        &self,
        file: &Path,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, TargetError> {
        ByteStream::read_from()
            .path(file)
            .offset(offset)
            .length(Length::Exact(len))
            .buffer_size(BODY_BUF)
            .build()
            .await
            .map_err(|e| {
                self.ctx
                    .failed(format!("reading {}", file.display()))
                    .caused_by(e)
            })
    }

    /// HEAD after upload: size, metadata SHA-256 and the store's checksum.
    pub(super) async fn confirm(
        &self,
        key: &str,
        name: &str,
        want_sha: &str,
        sent: &Sent,
    ) -> Result<Confirmed, TargetError> {
        let not_confirmed = |got: String| TargetError::NotConfirmed {
            target: self.ctx.target.clone(),
            name: name.to_owned(),
            expected: format!("{} bytes, sha256 {want_sha}", sent.size),
            got,
        };
        let Some(head) = self.head(key).await? else {
            return Err(not_confirmed("no such object".to_owned()));
        };
        let size = head.content_length().map(|l| l.max(0) as u64);
        let sha = head
            .metadata()
            .and_then(|m| m.get(META_SHA256))
            .map(|s| s.to_ascii_lowercase());
        if size != Some(sent.size) || sha.as_deref() != Some(want_sha) {
            return Err(not_confirmed(format!(
                "{} bytes, sha256 {}",
                size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                sha.as_deref().unwrap_or("absent")
            )));
        }
        if let Some(cs) = head
            .checksum_sha256()
            .filter(|_| !sent.checksums.is_empty())
        {
            // A store may report the composite (`<b64>-<n>` on AWS, moto
            // drops the `-<n>`) or a full-object checksum for a multipart
            // object; either must be ours.
            let value = cs.split_once('-').map_or(cs, |(v, _)| v);
            if !sent.checksums.iter().any(|c| c == value) {
                return Err(not_confirmed(format!("checksum-sha256 {cs}")));
            }
        }
        Ok(Confirmed {
            size: sent.size,
            sha256: want_sha.to_owned(),
        })
    }
}

pub(super) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(super) fn hex_to_bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).unwrap_or_default()
}

pub(super) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
