//! Listing (one-level listing, then a HEAD per snapshot for its metadata),
//! fetching to a new file with verification, deleting one snapshot (an
//! immutability refusal is `RetainedByLock`), and removing stale staging
//! blobs.
//!
//! Must never: count a blob without valid metadata as a snapshot's
//! identity, list or delete outside the prefix, write to an existing local
//! file, or leave a partial download behind.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use object_store::{Attribute, GetOptions, GetResult, ObjectStoreExt as _};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::error::{check_name, io_err, is_immutable};
use super::{CloudTarget, LIST_HEADS_IN_FLIGHT, STAGING_MARK};
use crate::backends::{Cleanup, DeleteOutcome, RemoteSnapshot, TargetError, Trust};

/// What a HEAD tells: size and user metadata.
pub(super) struct Head {
    pub(super) size: u64,
    meta: Vec<(String, String)>,
}

impl Head {
    pub(super) fn from_result(r: &GetResult) -> Self {
        let meta = r
            .attributes
            .iter()
            .filter_map(|(k, v)| match k {
                Attribute::Metadata(name) => {
                    Some((name.to_ascii_lowercase(), v.as_ref().to_owned()))
                }
                _ => None,
            })
            .collect();
        Self {
            size: r.meta.size,
            meta,
        }
    }

    pub(super) fn meta(&self, name: &str) -> Option<String> {
        self.meta
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
    }
}

impl CloudTarget {
    /// HEAD of `key`; `None` when there is no such blob.
    pub(super) async fn head(&self, key: &str) -> Result<Option<Head>, TargetError> {
        let path = self.path(key)?;
        match self
            .store
            .get_opts(&path, GetOptions::new().with_head(true))
            .await
        {
            Ok(r) => Ok(Some(Head::from_result(&r))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("HEAD", key, &e)),
        }
    }

    /// Every blob directly in the prefix's folder, with its age.
    async fn list_dir_entries(&self) -> Result<Vec<(String, jiff::Timestamp)>, TargetError> {
        let dir = self.list_dir();
        let listed = self
            .store
            .list_with_delimiter(dir.as_ref())
            .await
            .map_err(|e| self.error("list", &self.prefix, &e))?;
        Ok(listed
            .objects
            .into_iter()
            .map(|o| {
                let t = jiff::Timestamp::from_second(o.last_modified.timestamp())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                (o.location.to_string(), t)
            })
            .collect())
    }

    pub(super) async fn list_snapshots(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let keys: Vec<_> = self
            .list_dir_entries()
            .await?
            .into_iter()
            .filter_map(|(key, _)| {
                let (name, time) = self.snapshot_of(&key)?;
                Some((key.clone(), name.to_owned(), time))
            })
            .collect();
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
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// One listed blob with its identity; `None` if it vanished meanwhile.
    async fn describe(
        &self,
        key: String,
        name: String,
        time: jiff::Timestamp,
    ) -> Result<Option<RemoteSnapshot>, TargetError> {
        let Some(head) = self.head(&key).await? else {
            return Ok(None);
        };
        let m = &self.meta;
        let sha256 = head
            .meta(m.sha256)
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(Some(RemoteSnapshot {
            name,
            size: head.size,
            sha256,
            index: head.meta(m.index).and_then(|v| v.parse().ok()),
            term: head.meta(m.term).and_then(|v| v.parse().ok()),
            time,
            cluster_id: head.meta(m.cluster_id).filter(|v| !v.is_empty()),
            tag: head.meta(m.tag),
            sums: None,
            trust: Trust::Unchecked,
        }))
    }

    pub(super) async fn fetch_into(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        check_name(&self.name, name)?;
        let key = self.key(name);
        let path = self.path(&key)?;
        let res = tokio::select! {
            r = self.store.get_opts(&path, GetOptions::default()) => r,
            () = cancel.cancelled() => return Err(TargetError::Cancelled),
        };
        let res = res.map_err(|e| self.error("GET", &key, &e))?;
        let head = Head::from_result(&res);
        let expected_size = head.size;
        let expected_sha = head.meta(self.meta.sha256).map(|s| s.to_ascii_lowercase());
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|source| io_err(dest, source))?;
        let shown = crate::progress::start(format!("fetch {}", self.name), Some(expected_size));
        let mut stream = res.into_stream();
        let result: Result<u64, TargetError> = async {
            let mut hasher = Sha256::new();
            let mut written = 0u64;
            loop {
                let chunk = tokio::select! {
                    c = stream.next() => c,
                    () = cancel.cancelled() => return Err(TargetError::Cancelled),
                };
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| self.error("GET", &key, &e))?;
                if written + chunk.len() as u64 > expected_size {
                    return Err(self.failed(format!(
                        "GET `{key}`: the body is longer than the {expected_size} bytes the store announced; download stopped"
                    )));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|source| io_err(dest, source))?;
                written += chunk.len() as u64;
                shown.inc(chunk.len() as u64);
            }
            file.flush().await.map_err(|source| io_err(dest, source))?;
            file.sync_all()
                .await
                .map_err(|source| io_err(dest, source))?;
            let sha = hex::encode(hasher.finalize());
            if written != expected_size || expected_sha.as_deref() != Some(sha.as_str()) {
                return Err(TargetError::NotConfirmed {
                    target: self.name.clone(),
                    name: name.to_owned(),
                    expected: format!(
                        "{expected_size} bytes, sha256 {}",
                        expected_sha.as_deref().unwrap_or("absent")
                    ),
                    got: format!("{written} bytes, sha256 {sha}"),
                });
            }
            Ok(written)
        }
        .await;
        match result {
            Ok(n) => {
                shown.finish();
                Ok(n)
            }
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
                Err(e)
            }
        }
    }

    /// Deletes one snapshot's blob. An immutability policy or legal hold
    /// that refuses is [`DeleteOutcome::RetainedByLock`] (never bypassed).
    pub(super) async fn delete_snapshot(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        check_name(&self.name, name)?;
        let key = self.key(name);
        self.delete_key(&key).await
    }

    pub(super) async fn delete_key(&self, key: &str) -> Result<DeleteOutcome, TargetError> {
        if let Some(d) = &self.one_delete {
            return self.delete_one(d.as_ref(), key).await;
        }
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(DeleteOutcome::Deleted),
            Err(e) if is_immutable(&crate::backends::chain(&e)) => {
                tracing::info!(target_name = %self.name, key, "delete refused by an immutability policy or legal hold: retained");
                Ok(DeleteOutcome::RetainedByLock)
            }
            Err(e) => Err(self.error("delete", key, &e)),
        }
    }

    /// [`Self::delete_key`] through the store's own single-blob delete,
    /// retried (with backoff) on transport errors, 5xx and 429.
    async fn delete_one(
        &self,
        d: &dyn super::OneDelete,
        key: &str,
    ) -> Result<DeleteOutcome, TargetError> {
        let mut wait = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let answer = d.delete_one(key).await;
            let retry = match &answer {
                Err(_) => true,
                Ok((status, _)) => *status >= 500 || *status == 429,
            };
            if retry && attempt < 5 {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
                attempt += 1;
                continue;
            }
            return match answer {
                Ok((200..=299 | 404, _)) => Ok(DeleteOutcome::Deleted),
                Ok((409, body)) if is_immutable(&body) => {
                    tracing::info!(target_name = %self.name, key, "delete refused by an immutability policy or legal hold: retained");
                    Ok(DeleteOutcome::RetainedByLock)
                }
                Ok((status @ (401 | 403), body)) => Err(TargetError::Refused {
                    target: self.name.clone(),
                    detail: format!(
                        "{} delete `{key}`: HTTP {status}: {} ({})",
                        self.kind,
                        self.refused_hint,
                        self.scrub.scrub(body.trim())
                    ),
                    source: None,
                }),
                Ok((status, body)) => Err(self.failed(format!(
                    "{} delete `{key}`: HTTP {status} ({})",
                    self.kind,
                    self.scrub.scrub(body.trim())
                ))),
                Err(e) => Err(self.failed(format!("{} {}", self.kind, self.scrub.scrub(&e)))),
            };
        }
    }

    /// Removes staging blobs of this target's snapshots (`.<name>.partial-*`)
    /// last written more than `age` ago: a crashed run's. Uncommitted blocks
    /// are not listed; the store drops them itself (Azure: after 7 days).
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<Cleanup, TargetError> {
        let cutoff = jiff::Timestamp::now().as_second()
            - i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2);
        let staged = format!(".{}", self.snapshot_prefix);
        let mut removed = Vec::new();
        for (key, time) in self.list_dir_entries().await? {
            let Some(name) = key.strip_prefix(&self.prefix) else {
                continue;
            };
            if name.contains('/') || !name.starts_with(&staged) || !name.contains(STAGING_MARK) {
                continue;
            }
            if time.as_second() > cutoff {
                continue;
            }
            if self.delete_key(&key).await? == DeleteOutcome::Deleted {
                tracing::info!(target_name = %self.name, key, "removed a stale staging blob");
                removed.push(key);
            }
        }
        Ok(Cleanup { removed })
    }
}
