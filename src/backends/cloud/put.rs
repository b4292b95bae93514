//! Create-only upload with read-back: the HEAD that refuses an existing
//! name, one `PutMode::Create` put for small files, a staged multipart
//! upload + `copy_if_not_exists` for large ones, then the full read-back.
//!
//! Must never: overwrite a blob, upload bytes that do not hash to the
//! snapshot's identity, or report an upload the read-back did not confirm.

use std::path::Path;

use futures::StreamExt as _;
use object_store::path::Path as Key;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStoreExt as _, PutMode, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

use super::error::{check_name, io_err};
use super::{CloudTarget, SINGLE_PUT_LIMIT, STAGING_MARK};
use crate::backends::{Confirmed, TargetError, UploadTag};
use crate::snapshot::Identity;

/// Read buffer of the streamed multipart upload.
const READ_BUF: usize = 256 * 1024;
/// Read-backs of a blob whose server-side copy may still be pending.
const PENDING_COPY_CHECKS: u32 = 10;
const PENDING_COPY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl CloudTarget {
    pub(super) async fn put_confirmed(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        check_name(&self.name, name)?;
        let want_sha = identity.sha256.to_ascii_lowercase();
        if want_sha.len() != 64 || !want_sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.failed(format!(
                "the identity of `{name}` has no valid SHA-256: not uploaded"
            )));
        }
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|source| io_err(file, source))?
            .len();
        if size != identity.file_size {
            return Err(self.changed(file));
        }
        let key = self.key(name);
        if self.head(&key).await?.is_some() {
            return Err(self.already_exists(name));
        }
        if cancel.is_cancelled() {
            return Err(TargetError::Cancelled);
        }
        tracing::info!(target_name = %self.name, key, size, "uploading snapshot");
        let attrs = self.attributes(identity, &want_sha, tag);
        let shown = crate::progress::start(format!("upload {}", self.name), Some(size));
        let mut staging = None;
        let sent = if size <= SINGLE_PUT_LIMIT {
            self.put_single(file, &key, size, &want_sha, attrs, cancel)
                .await
        } else {
            self.put_staged(file, name, &key, &want_sha, attrs, cancel, &shown)
                .await
                .map(|s| staging = Some(s))
        };
        match sent {
            Ok(()) => {}
            Err(TargetError::AlreadyExists { target, name: n }) => {
                // A conflict after our HEAD said absent: a racing writer, or
                // a retried request whose first attempt succeeded. Only the
                // latter is ours.
                if !self.holds(&key, size, &want_sha).await? {
                    return Err(TargetError::AlreadyExists { target, name: n });
                }
            }
            Err(e) => return Err(e),
        }
        shown.set(size);
        shown.finish();
        crate::crash::crash_point!("cloud.after-put");
        let confirmed = self.confirm(&key, name, size, &want_sha, cancel).await;
        // The staging blob goes only now: a copy the store finishes
        // asynchronously (Azure may) needs its source until it is done.
        if let Some(staging) = staging {
            self.delete_staging(&staging).await;
        }
        let confirmed = confirmed?;
        tracing::info!(target_name = %self.name, key, size, "upload confirmed");
        Ok(confirmed)
    }

    /// The identity and what authenticates it later, as blob metadata.
    fn attributes(&self, identity: &Identity, sha256: &str, tag: &UploadTag) -> Attributes {
        let mut a = Attributes::new();
        let mut meta = |k: &'static str, v: String| {
            a.insert(Attribute::Metadata(k.into()), v.into());
        };
        meta(self.meta.sha256, sha256.to_owned());
        meta(self.meta.index, identity.index.to_string());
        meta(self.meta.term, identity.term.to_string());
        if !tag.cluster_id.is_empty() {
            meta(self.meta.cluster_id, tag.cluster_id.clone());
        }
        if let Some(t) = &tag.tag {
            meta(self.meta.tag, t.clone());
        }
        a.insert(Attribute::ContentType, "application/gzip".into());
        a
    }

    /// One create-only put of the (small) file, hashed first.
    async fn put_single(
        &self,
        file: &Path,
        key: &str,
        size: u64,
        want_sha: &str,
        attributes: Attributes,
        cancel: &CancellationToken,
    ) -> Result<(), TargetError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|source| io_err(file, source))?;
        if bytes.len() as u64 != size || hex::encode(Sha256::digest(&bytes)) != want_sha {
            return Err(self.changed(file));
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..Default::default()
        };
        let path = self.path(key)?;
        let res = tokio::select! {
            r = self.store.put_opts(&path, PutPayload::from(bytes), opts) => r,
            () = cancel.cancelled() => return Err(TargetError::Cancelled),
        };
        match res {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(self.already_exists(key.strip_prefix(&self.prefix).unwrap_or(key))),
            Err(e) => Err(self.error("put", key, &e)),
        }
    }

    /// Multipart upload to a staging blob, then a create-only copy to the
    /// final name. The staging blob is deleted on every failure; on
    /// success it is handed back, for deletion after the read-back.
    #[allow(clippy::too_many_arguments)]
    async fn put_staged(
        &self,
        file: &Path,
        name: &str,
        key: &str,
        want_sha: &str,
        attributes: Attributes,
        cancel: &CancellationToken,
        shown: &crate::progress::Transfer,
    ) -> Result<Key, TargetError> {
        let staging = format!("{}.{name}{STAGING_MARK}{}", self.prefix, unique_suffix());
        let staging_path = self.path(&staging)?;
        let result = tokio::select! {
            r = self.upload_staging(file, &staging, &staging_path, want_sha, attributes, shown) => r,
            () = cancel.cancelled() => Err(TargetError::Cancelled),
        };
        let result = match result {
            Ok(()) => {
                let to = self.path(key)?;
                crate::crash::crash_point!("cloud.before-copy");
                match self.store.copy_if_not_exists(&staging_path, &to).await {
                    Ok(()) => Ok(()),
                    Err(
                        object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. },
                    ) => Err(self.already_exists(name)),
                    Err(e) => Err(self.error("copy", key, &e)),
                }
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.delete_staging(&staging_path).await;
        }
        result.map(|()| staging_path)
    }

    /// Never left behind (a crash before this: `cleanup` removes it a day
    /// later; uncommitted blocks the store drops itself).
    async fn delete_staging(&self, staging: &Key) {
        let key = staging.to_string();
        if let Err(e) = self.delete_key(&key).await {
            tracing::warn!(
                target_name = %self.name,
                staging = key,
                error = %e,
                "could not delete the staging blob; cleanup removes it later"
            );
        }
    }

    async fn upload_staging(
        &self,
        file: &Path,
        staging: &str,
        staging_path: &Key,
        want_sha: &str,
        attributes: Attributes,
        shown: &crate::progress::Transfer,
    ) -> Result<(), TargetError> {
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(staging_path, opts)
            .await
            .map_err(|e| self.error("start upload", staging, &e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|source| io_err(file, source))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; READ_BUF];
        let read: Result<(), TargetError> = async {
            loop {
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(|source| io_err(file, source))?;
                if n == 0 {
                    return Ok(());
                }
                let chunk = buf.get(..n).unwrap_or_default();
                hasher.update(chunk);
                w.wait_for_capacity(self.parts_in_flight)
                    .await
                    .map_err(|e| self.error("upload part", staging, &e))?;
                w.write(chunk);
                shown.inc(n as u64);
            }
        }
        .await;
        if let Err(e) = read {
            let _ = w.abort().await;
            return Err(e);
        }
        if hex::encode(hasher.finalize()) != want_sha {
            let _ = w.abort().await;
            return Err(self.changed(file));
        }
        crate::crash::crash_point!("cloud.before-commit");
        w.finish()
            .await
            .map_err(|e| self.error("commit upload", staging, &e))?;
        Ok(())
    }

    /// Does `key` hold a blob of this size with this stored SHA-256?
    async fn holds(&self, key: &str, size: u64, want_sha: &str) -> Result<bool, TargetError> {
        Ok(self.head(key).await?.is_some_and(|h| {
            h.size == size && h.meta(self.meta.sha256).as_deref() == Some(want_sha)
        }))
    }

    fn already_exists(&self, name: &str) -> TargetError {
        TargetError::AlreadyExists {
            target: self.name.clone(),
            name: name.to_owned(),
        }
    }

    fn changed(&self, file: &Path) -> TargetError {
        self.failed(format!(
            "{} does not match its snapshot identity (changed since it was verified?): not uploaded",
            file.display()
        ))
    }

    /// Reads the final blob in full: size and SHA-256 of what the store
    /// holds, and its stored SHA-256, must all be this upload's. The inner
    /// `Err` is a disagreement (with the bytes read), the outer one a
    /// failed request.
    async fn read_back(
        &self,
        key: &str,
        name: &str,
        size: u64,
        want_sha: &str,
        cancel: &CancellationToken,
    ) -> Result<Result<Confirmed, (u64, TargetError)>, TargetError> {
        let not_confirmed = |got: String| TargetError::NotConfirmed {
            target: self.name.clone(),
            name: name.to_owned(),
            expected: format!("{size} bytes, sha256 {want_sha}"),
            got,
        };
        let path = self.path(key)?;
        let res = match self.store.get_opts(&path, GetOptions::default()).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Ok(Err((0, not_confirmed("no such blob".to_owned()))));
            }
            Err(e) => return Err(self.error("read back", key, &e)),
        };
        let stored = super::ops::Head::from_result(&res).meta(self.meta.sha256);
        let mut stream = res.into_stream();
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        loop {
            let chunk = tokio::select! {
                c = stream.next() => c,
                () = cancel.cancelled() => return Err(TargetError::Cancelled),
            };
            let Some(chunk) = chunk else { break };
            let chunk = chunk.map_err(|e| self.error("read back", key, &e))?;
            got += chunk.len() as u64;
            if got > size {
                return Ok(Err((got, not_confirmed(format!("more than {size} bytes")))));
            }
            hasher.update(&chunk);
        }
        let sha = hex::encode(hasher.finalize());
        if got != size || sha != want_sha || stored.as_deref() != Some(want_sha) {
            return Ok(Err((
                got,
                not_confirmed(format!(
                    "{got} bytes, sha256 {sha}, stored sha256 {}",
                    stored.as_deref().unwrap_or("absent")
                )),
            )));
        }
        Ok(Ok(Confirmed {
            size,
            sha256: want_sha.to_owned(),
        }))
    }

    /// [`Self::read_back`], again while the blob is shorter than the file:
    /// a server-side copy the store completes asynchronously (Azure Copy
    /// Blob may answer 202 "pending") — bounded, [`PENDING_COPY_CHECKS`]
    /// reads [`PENDING_COPY_WAIT`] apart.
    async fn confirm(
        &self,
        key: &str,
        name: &str,
        size: u64,
        want_sha: &str,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        let mut checks = 1;
        loop {
            match self.read_back(key, name, size, want_sha, cancel).await? {
                Ok(c) => return Ok(c),
                Err((got, e)) if got >= size || checks >= PENDING_COPY_CHECKS => return Err(e),
                Err(_) => {
                    checks += 1;
                    tokio::select! {
                        () = tokio::time::sleep(PENDING_COPY_WAIT) => {}
                        () = cancel.cancelled() => return Err(TargetError::Cancelled),
                    }
                }
            }
        }
    }

    pub(super) fn path(&self, key: &str) -> Result<Key, TargetError> {
        Key::parse(key).map_err(|e| self.failed(format!("`{key}` is not a valid blob name: {e}")))
    }
}

/// 16 hex digits that differ between uploads (time, process, a counter):
/// the staging name must not collide with another run's.
fn unique_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut h = Sha256::new();
    h.update(jiff::Timestamp::now().as_nanosecond().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(n.to_le_bytes());
    hex::encode(h.finalize().get(..8).unwrap_or_default())
}
