//! Filesystem target, streaming (DESIGN.md §10): the snapshot's bytes are
//! written to `<dir>/.<name>.partial` while they stream from the active
//! node (hashed on the way). `commit` fsyncs it, sets the mode and then
//! does exactly what [`super::Inner::put`] does after its copy: the length
//! and SHA-256 must be the verified identity, `link(2)` create-only,
//! directory fsync, read-back. `abort` removes the temp file.
//!
//! A crashed run's stream temp file has a snapshot's name inside
//! (`.<prefix>YYYYMMDD-HHMMSS.snap.partial`) that no later run reuses:
//! the next stream to this directory removes every such leftover of the
//! same prefix (the policy's run lock excludes a live writer), as the
//! local store does with its own temp files.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{COPY_BUF, Inner, remove_quietly, run_blocking};
use crate::backends::{PutOutcome, StreamingPut, TargetError, UploadTag, snapshot_time};
use crate::snapshot::Identity;

/// Opens the stream's temp file for snapshot `name`.
pub(super) async fn begin(
    inner: Arc<Inner>,
    name: &str,
) -> Result<Option<Box<dyn StreamingPut>>, TargetError> {
    let (i2, n2) = (Arc::clone(&inner), name.to_owned());
    let (tmp, file) = run_blocking(&inner.name, move || i2.open_stream(&n2)).await?;
    Ok(Some(Box::new(FsStream {
        inner,
        name: name.to_owned(),
        tmp,
        out: tokio::io::BufWriter::with_capacity(COPY_BUF, tokio::fs::File::from_std(file)),
        hash: Sha256::new(),
        len: 0,
    })))
}

impl Inner {
    fn open_stream(&self, name: &str) -> Result<(PathBuf, fs::File), TargetError> {
        self.check_name(name)?;
        self.ensure_dir()?;
        if fs::symlink_metadata(self.dir.join(name)).is_ok() {
            return Err(TargetError::AlreadyExists {
                target: self.name.clone(),
                name: name.to_owned(),
            });
        }
        self.remove_crashed_streams();
        let tmp = self.dir.join(format!(".{name}.partial"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(&tmp, e))?;
        Ok((tmp, file))
    }

    /// Removes `.<prefix>YYYYMMDD-HHMMSS.snap.partial` regular files:
    /// temp files of crashed runs of this policy. Failures are logged.
    fn remove_crashed_streams(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let is_ours = file
                .strip_prefix('.')
                .and_then(|f| f.strip_suffix(".partial"))
                .is_some_and(|snap| snapshot_time(&self.snapshot_prefix, snap).is_some());
            if !is_ours || !fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                continue;
            }
            remove_quietly(&entry.path());
            tracing::info!(target_name = %self.name, file = %file, "removed a crashed run's temp file");
        }
    }
}

struct FsStream {
    inner: Arc<Inner>,
    name: String,
    tmp: PathBuf,
    out: tokio::io::BufWriter<tokio::fs::File>,
    hash: Sha256,
    len: u64,
}

impl FsStream {
    fn io(&self, e: io::Error) -> TargetError {
        self.inner.io(&self.tmp, e)
    }
}

#[async_trait]
impl StreamingPut for FsStream {
    async fn write(&mut self, bytes: bytes::Bytes) -> Result<(), TargetError> {
        if crate::crash::fault("fs.stream-write") {
            return Err(self.io(io::Error::other("injected write fault (fs.stream-write)")));
        }
        self.hash.update(&bytes);
        self.out.write_all(&bytes).await.map_err(|e| self.io(e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    async fn commit(
        mut self: Box<Self>,
        identity: &Identity,
        // Files are authenticated by their content (sealed sums) on `list`.
        _tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError> {
        if let Err(e) = self.out.flush().await {
            let e = self.io(e);
            remove_quietly(&self.tmp);
            return Err(e);
        }
        let this = *self;
        let file = this.out.into_inner().into_std().await;
        let copied = (this.len, hex::encode(this.hash.finalize()));
        let (inner, name, tmp) = (this.inner, this.name, this.tmp);
        let (identity, cancel) = (identity.clone(), cancel.clone());
        let shown = crate::progress::start(format!("upload {}", inner.name), Some(copied.0));
        let target = inner.name.clone();
        let confirmed = run_blocking(&target, move || {
            let durable = file
                .sync_all()
                .and_then(|()| file.set_permissions(fs::Permissions::from_mode(inner.file_mode)));
            drop(file);
            if let Err(e) = durable {
                remove_quietly(&tmp);
                return Err(inner.io(&tmp, e));
            }
            let what = format!("the streamed copy {}", tmp.display());
            inner.publish_confirmed(&tmp, &name, &identity, copied, &what, &cancel)
        })
        .await?;
        shown.set(confirmed.size);
        shown.finish();
        Ok(PutOutcome::Confirmed(confirmed))
    }

    async fn abort(self: Box<Self>) {
        let tmp = self.tmp.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || remove_quietly(&tmp)).await;
    }
}
