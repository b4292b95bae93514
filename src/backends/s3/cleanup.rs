//! Aborting incomplete multipart uploads that crashed runs left under the
//! snapshot prefix, and deleting identity objects left without their
//! snapshot.
//!
//! Must never: abort an upload younger than the given age (a live run's),
//! touch a completed snapshot object, or delete the identity object of a
//! snapshot that exists.

use std::time::Duration;

use super::multipart::abort_upload;

use super::S3Target;
use super::error::failure;
use crate::backends::{Cleanup, TargetError};

impl S3Target {
    /// Aborts incomplete multipart uploads of snapshots under the prefix
    /// initiated more than `age` ago. A store without ListMultipartUploads
    /// (HTTP 501, e.g. s3s-fs) has nothing to clean.
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<Cleanup, TargetError> {
        let cutoff = jiff::Timestamp::now().as_second()
            - i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2);
        let list_prefix = format!("{}{}", self.prefix, self.snapshot_prefix);
        let mut removed = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let res = self
                .client
                .list_multipart_uploads()
                .bucket(&self.ctx.bucket)
                .prefix(&list_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await;
            let page = match res {
                Ok(p) => p,
                Err(e) => {
                    let f = failure(&e);
                    if f.not_implemented() {
                        tracing::debug!(
                            target_name = %self.ctx.target,
                            "store does not implement ListMultipartUploads: nothing to clean"
                        );
                        return Ok(Cleanup::default());
                    }
                    return Err(self.ctx.error("ListMultipartUploads", &list_prefix, &f));
                }
            };
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                if self.snapshot_of(key).is_none() {
                    continue;
                }
                let initiated = upload.initiated().map(|t| t.secs());
                if initiated.is_none_or(|t| t > cutoff) {
                    continue;
                }
                let res = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.ctx.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
                match res {
                    Ok(_) => {}
                    Err(e) => {
                        let f = failure(&e);
                        if !(f.not_found() || f.is("NoSuchUpload")) {
                            return Err(self.ctx.error("AbortMultipartUpload", key, &f));
                        }
                    }
                }
                tracing::info!(
                    target_name = %self.ctx.target,
                    key,
                    "aborted a stale incomplete multipart upload"
                );
                removed.push(format!("{key} (multipart upload {id})"));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        removed.extend(self.cleanup_staging(cutoff).await);
        Ok(Cleanup { removed })
    }

    /// Identity objects without their snapshot (`<prefix>.<name>.identity`,
    /// see `stream.rs`), and earlier versions' staging uploads and objects
    /// (`<prefix>.<name>.partial-<random>`), older than `cutoff` (seconds).
    /// Best effort: one page of each listing.
    async fn cleanup_staging(&self, cutoff: i64) -> Vec<String> {
        let prefix = format!("{}.{}", self.prefix, self.snapshot_prefix);
        let mut removed = Vec::new();
        if let Ok(page) = self
            .client
            .list_multipart_uploads()
            .bucket(&self.ctx.bucket)
            .prefix(&prefix)
            .send()
            .await
        {
            for u in page.uploads() {
                let old = u.initiated().is_some_and(|t| t.secs() <= cutoff);
                if let (Some(k), Some(id), true) = (u.key(), u.upload_id(), old)
                    && self.is_staging(k)
                {
                    abort_upload(&self.client, &self.ctx.bucket, k, id).await;
                    removed.push(format!("{k} (multipart upload {id})"));
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
                let old = o.last_modified().is_some_and(|t| t.secs() <= cutoff);
                let (Some(k), true) = (o.key(), old) else {
                    continue;
                };
                if self.is_staging(k) {
                    self.delete_quietly(k).await;
                    removed.push(k.to_owned());
                } else if let Some(name) = self.identity_of(k)
                    && matches!(self.head(&self.key(name)).await, Ok(None))
                {
                    // An identity object whose snapshot was never completed
                    // (a crash between the two) or whose delete stopped
                    // half-way: it describes nothing.
                    self.delete_quietly(k).await;
                    removed.push(k.to_owned());
                }
            }
        }
        removed
    }
}
