//! Deleting one snapshot: every version and delete marker of its key, by
//! version id (or a plain DeleteObject where versions cannot be listed),
//! and telling an Object Lock refusal ([`DeleteOutcome::RetainedByLock`])
//! from a failure.
//!
//! Must never: delete anything but the named snapshot's key (and then its
//! identity object, `stream.rs`), or bypass
//! Object Lock governance (no `x-amz-bypass-governance-retention`).

use super::S3Target;
use super::error::{Failure, check_name, failure};
use crate::backends::{DeleteOutcome, TargetError};

impl S3Target {
    /// Deletes every version of the snapshot's key (and any delete marker),
    /// by version id, so a versioned bucket does not keep the data behind a
    /// delete marker and Object Lock gets its say: a version under
    /// retention or legal hold refuses, the snapshot stays listed, and the
    /// outcome is [`DeleteOutcome::RetainedByLock`] (governance retention
    /// is never bypassed). Unversioned stores, or credentials without
    /// s3:ListBucketVersions, get a plain DeleteObject (which, on a
    /// versioned bucket, leaves a delete marker; an AccessDenied caused by
    /// a lock is still `RetainedByLock`).
    pub(super) async fn delete_snapshot(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        check_name(&self.ctx.target, name)?;
        let key = self.key(name);
        let outcome = self.delete_key(&key).await?;
        if outcome == DeleteOutcome::RetainedByLock {
            tracing::info!(target_name = %self.ctx.target, key, "delete refused by Object Lock: retained");
        } else {
            // A streamed snapshot's identity object goes after it (never
            // before: a snapshot object never lacks its identity).
            self.delete_quietly(&self.identity_key(name)).await;
        }
        Ok(outcome)
    }

    /// [`Self::delete_key`], best effort: a failure is logged and left to
    /// `cleanup`.
    pub(super) async fn delete_quietly(&self, key: &str) {
        if let Err(e) = self.delete_key(key).await {
            tracing::warn!(target_name = %self.ctx.target, key, error = %e, "could not delete; a later cleanup will");
        }
    }

    /// Deletes every version of `key` (a plain DeleteObject where versions
    /// cannot be listed).
    async fn delete_key(&self, key: &str) -> Result<DeleteOutcome, TargetError> {
        let Some(versions) = self.versions_of(key).await? else {
            return self.delete_version(key, None).await;
        };
        let mut outcome = DeleteOutcome::Deleted;
        for id in versions {
            if self.delete_version(key, Some(&id)).await? == DeleteOutcome::RetainedByLock {
                outcome = DeleteOutcome::RetainedByLock;
            }
        }
        Ok(outcome)
    }

    /// Every version id and delete marker of exactly `key`; `None` when the
    /// store cannot list versions (unversioned stores, no permission).
    pub(super) async fn versions_of(&self, key: &str) -> Result<Option<Vec<String>>, TargetError> {
        let mut ids = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let res = self
                .client
                .list_object_versions()
                .bucket(&self.ctx.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await;
            let page = match res {
                Ok(p) => p,
                Err(e) => {
                    let f = failure(&e);
                    if f.not_implemented() || f.access_denied() {
                        tracing::debug!(
                            key,
                            code = f.code.as_deref().unwrap_or("-"),
                            "cannot list object versions; deleting the current object only"
                        );
                        return Ok(None);
                    }
                    return Err(self.ctx.error("ListObjectVersions", key, &f));
                }
            };
            let versions = page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id());
            let markers = page
                .delete_markers()
                .iter()
                .filter(|m| m.key() == Some(key))
                .filter_map(|m| m.version_id());
            ids.extend(versions.chain(markers).map(str::to_owned));
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        if ids.iter().all(|id| id == "null") {
            // Unversioned (or never versioned): a plain delete removes it.
            return Ok(None);
        }
        Ok(Some(ids))
    }

    /// Is this refused delete Object Lock's doing? The store says so, or the
    /// version carries a retention date in the future or a legal hold.
    pub(super) async fn lock_refused(&self, key: &str, version: Option<&str>, f: &Failure) -> bool {
        if !f.access_denied() && !f.is("InvalidRequest") {
            return false;
        }
        let msg = f.message.as_deref().unwrap_or("").to_ascii_lowercase();
        if msg.contains("lock") || msg.contains("retention") || msg.contains("worm") {
            return true;
        }
        let head = self
            .client
            .head_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        let Ok(head) = head else {
            return false;
        };
        let now = jiff::Timestamp::now().as_second();
        let retained = head
            .object_lock_retain_until_date()
            .is_some_and(|t| t.secs() > now);
        let held = head
            .object_lock_legal_hold_status()
            .is_some_and(|s| s.as_str() == "ON");
        retained || held
    }

    pub(super) async fn delete_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<DeleteOutcome, TargetError> {
        let res = self
            .client
            .delete_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        match res {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) => {
                let f = failure(&e);
                if f.not_found() {
                    return Ok(DeleteOutcome::Deleted);
                }
                if self.lock_refused(key, version, &f).await {
                    return Ok(DeleteOutcome::RetainedByLock);
                }
                Err(self.ctx.error("DeleteObject", key, &f))
            }
        }
    }
}
