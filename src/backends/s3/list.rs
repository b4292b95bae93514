//! Listing a target: every key under the prefix that looks like a snapshot,
//! with the identity its metadata carries (`snapward-sha256`, raft index
//! and term), HEADs running a few at a time. A streamed snapshot's
//! identity is its identity object's metadata (`stream.rs`): one more
//! listing finds those, and their HEAD replaces the snapshot's.
//!
//! Must never: count an object without valid `snapward-*` metadata as a
//! snapshot's identity (a foreign or damaged object is listed without it),
//! take an identity object's word for a snapshot of another size, or list
//! anything outside the prefix.

use std::collections::HashSet;

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::types::ChecksumMode;
use futures::StreamExt as _;

use super::error::failure;
use super::{
    LIST_HEADS_IN_FLIGHT, META_CLUSTER_ID, META_INDEX, META_SHA256, META_SIZE, META_TAG, META_TERM,
    S3Target,
};
use crate::backends::{RemoteSnapshot, TargetError, Trust};

impl S3Target {
    pub(super) async fn list_snapshots(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let list_prefix = format!("{}{}", self.prefix, self.snapshot_prefix);
        let mut keys = Vec::new();
        for (key, size) in self.keys_under(&list_prefix).await? {
            if let Some((name, time)) = self.snapshot_of(&key) {
                let name = name.to_owned();
                keys.push((key, name, time, size));
            }
        }
        let identities = if keys.is_empty() {
            HashSet::new()
        } else {
            self.identity_objects().await?
        };
        let described: Vec<_> = futures::stream::iter(keys)
            .map(|(key, name, time, size)| {
                let streamed = identities.contains(&name);
                self.describe(key, name, time, size.filter(|_| streamed))
            })
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

    /// The snapshot names under the prefix that have an identity object.
    pub(super) async fn identity_objects(&self) -> Result<HashSet<String>, TargetError> {
        let list_prefix = format!("{}.{}", self.prefix, self.snapshot_prefix);
        let keys = self.keys_under(&list_prefix).await?;
        Ok(keys
            .iter()
            .filter_map(|(k, _)| self.identity_of(k).map(str::to_owned))
            .collect())
    }

    /// Every key under `prefix` (all pages) with its listed size.
    async fn keys_under(&self, prefix: &str) -> Result<Vec<(String, Option<u64>)>, TargetError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.ctx.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.ctx.error("ListObjectsV2", prefix, &failure(&e)))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    keys.push((key.to_owned(), object.size().map(|s| s.max(0) as u64)));
                }
            }
        }
        Ok(keys)
    }

    /// The identity object's metadata of a streamed snapshot of `size`
    /// bytes; `None` when it is absent or describes another size.
    pub(super) async fn streamed_identity(
        &self,
        name: &str,
        size: u64,
    ) -> Result<Option<HeadObjectOutput>, TargetError> {
        let head = self.head(&self.identity_key(name)).await?;
        Ok(head.filter(|h| {
            h.metadata()
                .and_then(|m| m.get(META_SIZE))
                .is_some_and(|s| s.trim() == size.to_string())
        }))
    }

    /// HEADs one listed key into a `RemoteSnapshot` (`None` if it vanished).
    /// `streamed`: the listed size of a snapshot with an identity object,
    /// whose HEAD then stands for the snapshot's (falling back to the
    /// snapshot's own HEAD if it does not match).
    pub(super) async fn describe(
        &self,
        key: String,
        name: String,
        time: jiff::Timestamp,
        streamed: Option<u64>,
    ) -> Result<Option<RemoteSnapshot>, TargetError> {
        let identity = match streamed {
            Some(size) => self
                .streamed_identity(&name, size)
                .await?
                .map(|h| (h, size)),
            None => None,
        };
        let (head, size) = match identity {
            Some(found) => found,
            None => {
                let Some(head) = self.head(&key).await? else {
                    return Ok(None);
                };
                let size = head.content_length().map_or(0, |l| l.max(0) as u64);
                (head, size)
            }
        };
        let meta = head.metadata();
        let get = |k: &str| meta.and_then(|m| m.get(k)).map(|v| v.trim().to_owned());
        let sha256 = get(META_SHA256)
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(Some(RemoteSnapshot {
            name,
            size,
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
