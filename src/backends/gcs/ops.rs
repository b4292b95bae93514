//! Listing (identity from the listing's metadata: no request per object),
//! reading one object's metadata, downloading with verification, deleting
//! one snapshot and telling a retention/hold refusal from a failure.
//!
//! Must never: count an object without `snapward-*` metadata as a
//! snapshot's identity, list outside the prefix, write to an existing
//! file or leave a partial download, delete anything but the named object.

use std::path::Path;

use futures::StreamExt as _;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::http::{Failure, Listing, Object, scrub};
use super::{GcsTarget, META_CLUSTER_ID, META_INDEX, META_TAG, META_TERM};
use crate::backends::{DeleteOutcome, RemoteSnapshot, TargetError, Trust};

impl GcsTarget {
    /// The object's resource; `None` if there is none.
    pub(super) async fn object(&self, key: &str) -> Result<Option<Object>, TargetError> {
        let url = self.http.objects_url(&self.bucket, Some(key));
        let res = self
            .http
            .send_idempotent("reading", key, |r| r, Method::GET, &url)
            .await?;
        match res.status() {
            StatusCode::NOT_FOUND => {
                // A missing bucket is also a 404: tell them apart.
                let f = Failure::read(res).await;
                let msg = f.message.to_ascii_lowercase();
                if msg.contains("bucket does not exist") || msg.contains("no such bucket") {
                    return Err(self.http.error("reading", key, &f));
                }
                Ok(None)
            }
            s if s.is_success() => res.json::<Object>().await.map(Some).map_err(|e| {
                TargetError::failed(&self.target, format!("reading `{key}`: {}", scrub(&e)))
            }),
            _ => {
                let f = Failure::read(res).await;
                Err(self.http.error("reading", key, &f))
            }
        }
    }

    /// Does `key` hold an object of this size with this `snapward-sha256`?
    pub(super) async fn holds(
        &self,
        key: &str,
        size: u64,
        want: &str,
    ) -> Result<bool, TargetError> {
        Ok(self
            .object(key)
            .await?
            .is_some_and(|o| o.size() == Some(size) && o.sha256().as_deref() == Some(want)))
    }

    pub(super) async fn list_snapshots(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let list_prefix = format!("{}{}", self.prefix, self.snapshot_prefix);
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = self.http.objects_url(&self.bucket, None);
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("prefix", &list_prefix);
                if let Some(t) = &page_token {
                    q.append_pair("pageToken", t);
                }
            }
            let res = self
                .http
                .send_idempotent("listing", &list_prefix, |r| r, Method::GET, &url)
                .await?;
            if !res.status().is_success() {
                let f = Failure::read(res).await;
                return Err(self.http.error("listing", &list_prefix, &f));
            }
            let page: Listing = res.json().await.map_err(|e| {
                TargetError::failed(
                    &self.target,
                    format!("listing `{list_prefix}`: {}", scrub(&e)),
                )
            })?;
            for o in page.items {
                if let Some(s) = self.describe(&o) {
                    out.push(s);
                }
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A listed object as a snapshot, if its name is one. Metadata that is
    /// not snapward's (or not valid) gives no identity.
    fn describe(&self, o: &Object) -> Option<RemoteSnapshot> {
        let (name, time) = self.snapshot_of(&o.name)?;
        let get = |k: &str| o.metadata.get(k).cloned();
        let sha256 = o
            .sha256()
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        Some(RemoteSnapshot {
            name: name.to_owned(),
            size: o.size().unwrap_or(0),
            sha256,
            index: get(META_INDEX).and_then(|v| v.parse().ok()),
            term: get(META_TERM).and_then(|v| v.parse().ok()),
            time,
            cluster_id: get(META_CLUSTER_ID).filter(|v| !v.is_empty()),
            tag: get(META_TAG),
            sums: None,
            trust: Trust::Unchecked,
        })
    }

    /// Deletes the snapshot's live object. A refusal because of a bucket
    /// retention policy, object retention or a hold is `RetainedByLock`
    /// (never bypassed: snapward sends no override).
    pub(super) async fn delete_snapshot(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        self.check_name(name)?;
        let key = self.key(name);
        let url = self.http.objects_url(&self.bucket, Some(&key));
        let res = self
            .http
            .send_idempotent("deleting", &key, |r| r, Method::DELETE, &url)
            .await?;
        let status = res.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(DeleteOutcome::Deleted);
        }
        let f = Failure::read(res).await;
        if status == StatusCode::FORBIDDEN {
            let msg = f.message.to_ascii_lowercase();
            let said = [
                "retention policy",
                "object retention",
                "temporary hold",
                "event-based hold",
                "event based hold",
            ]
            .iter()
            .any(|p| msg.contains(p));
            if said
                || self
                    .object(&key)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|o| o.locked())
            {
                tracing::info!(target_name = %self.target, key, "delete refused by a retention policy or hold: retained");
                return Ok(DeleteOutcome::RetainedByLock);
            }
        }
        Err(self.http.error("deleting", &key, &f))
    }

    /// Deletes exactly generation `generation` of `key` (best effort: an
    /// object this run just created short).
    pub(super) async fn delete_generation(&self, key: &str, generation: u64) {
        let mut url = self.http.objects_url(&self.bucket, Some(key));
        url.query_pairs_mut()
            .append_pair("ifGenerationMatch", &generation.to_string());
        let res = self
            .http
            .send_idempotent("deleting", key, |r| r, Method::DELETE, &url)
            .await;
        if !res.is_ok_and(|r| r.status().is_success()) {
            tracing::warn!(target_name = %self.target, key, generation, "could not remove a short object this run created");
        }
    }

    /// Downloads one generation of the object to `dest` (created new),
    /// bounded by its size, checked against size and `snapward-sha256`.
    pub(super) async fn fetch_into(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        self.check_name(name)?;
        let key = self.key(name);
        let Some(obj) = self.object(&key).await? else {
            return Err(TargetError::failed(
                &self.target,
                format!("`{key}` does not exist"),
            ));
        };
        let (Some(size), Some(want)) = (obj.size(), obj.sha256()) else {
            return Err(TargetError::failed(
                &self.target,
                format!(
                    "`{key}` has no size or no `snapward-sha256`: not a snapward upload, not downloaded"
                ),
            ));
        };
        let mut url = self.http.objects_url(&self.bucket, Some(&key));
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("alt", "media");
            if let Some(g) = obj.generation() {
                q.append_pair("generation", &g.to_string());
            }
        }
        let res = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(TargetError::Cancelled),
            r = self.http.send_idempotent("downloading", &key, |r| r, Method::GET, &url) => r?,
        };
        if !res.status().is_success() {
            let f = Failure::read(res).await;
            return Err(self.http.error("downloading", &key, &f));
        }
        let io = |source| TargetError::Io {
            path: dest.display().to_string(),
            source,
        };
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(io)?;
        let shown = crate::progress::start(format!("fetch {}", self.target), Some(size));
        let mut body = res.bytes_stream();
        let result: Result<u64, TargetError> = async {
            let mut hasher = Sha256::new();
            let mut written = 0u64;
            loop {
                let chunk = tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(TargetError::Cancelled),
                    c = body.next() => c,
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| {
                    TargetError::failed(&self.target, format!("downloading `{key}`: {}", scrub(&e)))
                })?;
                if written + chunk.len() as u64 > size {
                    return Err(TargetError::failed(
                        &self.target,
                        format!("downloading `{key}`: the body is longer than the object's {size} bytes; download stopped"),
                    ));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(io)?;
                written += chunk.len() as u64;
                shown.inc(chunk.len() as u64);
                crate::crash::crash_point!("fetch.mid-download");
            }
            file.flush().await.map_err(io)?;
            file.sync_all().await.map_err(io)?;
            let sha = hex::encode(hasher.finalize());
            if written != size || sha != want {
                return Err(TargetError::NotConfirmed {
                    target: self.target.clone(),
                    name: name.to_owned(),
                    expected: format!("{size} bytes, sha256 {want}"),
                    got: format!("{written} bytes, sha256 {sha}"),
                });
            }
            Ok(written)
        }
        .await;
        match &result {
            Ok(_) => shown.finish(),
            Err(_) => {
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
            }
        }
        result
    }
}
