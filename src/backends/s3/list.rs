//! Listing a target: every key under the prefix that looks like a snapshot,
//! with the identity its metadata carries (`snapward-sha256`, raft index
//! and term), HEADs running a few at a time.
//!
//! Must never: count an object without valid `snapward-*` metadata as a
//! snapshot's identity (a foreign or damaged object is listed without it),
//! or list anything outside the prefix.

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;
use futures::StreamExt as _;

use super::error::failure;
use super::{
    LIST_HEADS_IN_FLIGHT, META_CLUSTER_ID, META_INDEX, META_SHA256, META_TAG, META_TERM, S3Target,
};
use crate::backends::{RemoteSnapshot, TargetError, Trust};

impl S3Target {
    pub(super) async fn list_snapshots(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let list_prefix = format!("{}{}", self.prefix, self.snapshot_prefix);
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.ctx.bucket)
            .prefix(&list_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.ctx.error("ListObjectsV2", &list_prefix, &failure(&e)))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if let Some((name, time)) = self.snapshot_of(key) {
                    keys.push((key.to_owned(), name.to_owned(), time));
                }
            }
        }
        let described: Vec<_> = futures::stream::iter(keys)
            .map(|(key, name, time)| self.describe(key, name, time))
            .buffer_unordered(LIST_HEADS_IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(described.len());
        for d in described {
            if let Some(s) = d? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// HEAD with checksums; `None` when the key does not exist.
    pub(super) async fn head(&self, key: &str) -> Result<Option<HeadObjectOutput>, TargetError> {
        let res = self
            .client
            .head_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                let f = failure(&e);
                if f.not_found() {
                    Ok(None)
                } else {
                    Err(self.ctx.error("HeadObject", key, &f))
                }
            }
        }
    }

    /// HEADs one listed key into a `RemoteSnapshot` (`None` if it vanished).
    pub(super) async fn describe(
        &self,
        key: String,
        name: String,
        time: jiff::Timestamp,
    ) -> Result<Option<RemoteSnapshot>, TargetError> {
        let Some(head) = self.head(&key).await? else {
            return Ok(None);
        };
        let meta = head.metadata();
        let get = |k: &str| meta.and_then(|m| m.get(k)).map(|v| v.trim().to_owned());
        let sha256 = get(META_SHA256)
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(Some(RemoteSnapshot {
            name,
            size: head.content_length().map_or(0, |l| l.max(0) as u64),
            sha256,
            index: get(META_INDEX).and_then(|v| v.parse().ok()),
            term: get(META_TERM).and_then(|v| v.parse().ok()),
            time,
            cluster_id: get(META_CLUSTER_ID).filter(|v| !v.is_empty()),
            tag: get(META_TAG),
            sums: None,
            trust: Trust::Unchecked,
        }))
    }
}
