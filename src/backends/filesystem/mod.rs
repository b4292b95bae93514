//! Filesystem target: a mounted directory (NFS, a second volume, a WORM
//! share). Stage: execute (backend). Blocking file I/O runs on
//! `spawn_blocking`.
//!
//! Same contract as the S3 target:
//!
//! - **Create-only, crash-safe.** `put` copies into `<dir>/.<name>.partial`
//!   (hashing on the way; the bytes must match the snapshot's identity),
//!   fsyncs it, then publishes it with `link(2)` to `<dir>/<name>` — a hard
//!   link fails with `EEXIST` instead of replacing, which std's `rename`
//!   cannot promise — removes the temp name and fsyncs the directory. Where
//!   the mount has no hard links, a rename after an existence check is used
//!   (the policy's run lock keeps that from racing).
//! - **Confirmed by read-back.** The published file is read again and its
//!   size and SHA-256 must equal the identity, else `NotConfirmed`.
//! - **Identity on `list`.** No sidecar files: each snapshot is verified
//!   (streaming, [`crate::snapshot::verify_file`]) for its raft index/term
//!   and SHA-256; a file that does not verify is listed without identity
//!   and so never counts as a valid snapshot.
//! - **Symlinks are never followed.** Reads open with `O_NOFOLLOW` and
//!   `list` looks with `symlink_metadata`: a link planted under a
//!   snapshot's name is not listed, not fetched, not read back.
//! - **WORM mounts.** `EPERM`/`EACCES` on delete means the mount retains
//!   the file: [`DeleteOutcome::RetainedByLock`], not a failure.
//!
//! Must never: replace an existing file, remove anything but the named
//! snapshot and stale `.<…>.partial` temp files, or create more than the
//! configured directory itself (a missing parent means the volume is not
//! mounted).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{
    Cleanup, Confirmed, DeleteOutcome, PutOutcome, RemoteSnapshot, Target, TargetError, Trust,
    UploadTag, snapshot_time,
};
use crate::backends::local::open_nofollow;
use crate::backends::verify_cache::{CacheUse, VerifyCache};
use crate::policy::model;
use crate::snapshot::{self, Identity};

/// Temp files of crashed runs older than this are removed by `cleanup`.
pub const STALE_PARTIAL_AGE: Duration = Duration::from_secs(60 * 60);

mod stream;

const COPY_BUF: usize = 1024 * 1024;

/// A mounted directory as a snapshot target.
#[derive(Debug, Clone)]
pub struct FsTarget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    dir: PathBuf,
    snapshot_prefix: String,
    file_mode: u32,
    /// How `list` uses the verification cache in the directory.
    cache: CacheUse,
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Which side of [`copy_hashing`] failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `input` to `out` in one pass, hashing what it read: the length
/// and the SHA-256 (hex). `None` when cancelled.
fn copy_hashing(
    input: &mut impl Read,
    out: &mut impl Write,
    cancel: &CancellationToken,
) -> Result<Option<(u64, String)>, CopyError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF];
    let mut n = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let read = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let chunk = buf.get(..read).unwrap_or(&[]);
        h.update(chunk);
        out.write_all(chunk).map_err(CopyError::Write)?;
        n += read as u64;
    }
    Ok(Some((n, hex::encode(h.finalize()))))
}

/// SHA-256 (hex) and length of a file, read in one pass.
/// `None` when cancelled.
fn hash_file(path: &Path, cancel: &CancellationToken) -> io::Result<Option<(u64, String)>> {
    copy_hashing(&mut open_nofollow(path)?, &mut io::sink(), cancel).map_err(|e| match e {
        CopyError::Read(e) | CopyError::Write(e) => e,
    })
}

/// Removes a file, ignoring "not there".
fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove temp file");
    }
}

/// Errors that mean "this mount does not do hard links".
fn links_unsupported(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::Unsupported)
        // EPERM (e.g. vfat, some FUSE), EOPNOTSUPP, EMLINK
        || matches!(e.raw_os_error(), Some(1 | 95 | 31))
}

impl FsTarget {
    /// `cfg.path` is the target directory; `snapshot_prefix` names the
    /// snapshots (`openbao-`); `file_mode` is applied to published files.
    pub fn new(
        name: &str,
        cfg: &model::FilesystemTarget,
        snapshot_prefix: &str,
        file_mode: u32,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                dir: PathBuf::from(&cfg.path),
                snapshot_prefix: snapshot_prefix.to_owned(),
                file_mode,
                cache: CacheUse::default(),
            }),
        }
    }

    /// The same target with another use of the verification cache
    /// ([`crate::backends::verify_cache`]).
    pub fn with_cache(self, cache: CacheUse) -> Self {
        let i = &self.inner;
        Self {
            inner: Arc::new(Inner {
                name: i.name.clone(),
                dir: i.dir.clone(),
                snapshot_prefix: i.snapshot_prefix.clone(),
                file_mode: i.file_mode,
                cache,
            }),
        }
    }

    /// Removes `.<…>.partial` files whose modification time is more than
    /// `age` ago. Never touches anything else.
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<Cleanup, TargetError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(&self.inner.name, move || inner.cleanup(age)).await
    }
}

async fn run_blocking<T, F>(target: &str, f: F) -> Result<T, TargetError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, TargetError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(TargetError::failed(target, "file task failed").caused_by(e)),
    }
}

impl Inner {
    fn failed(&self, detail: String) -> TargetError {
        TargetError::failed(&self.name, detail)
    }

    fn io(&self, path: &Path, source: io::Error) -> TargetError {
        TargetError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn check_name(&self, name: &str) -> Result<(), TargetError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(self.failed(format!("`{name}` is not a snapshot file name")));
        }
        Ok(())
    }

    /// Whether the configured directory's parent exists (a relative path's
    /// parent is the working directory).
    fn parent_present(&self) -> bool {
        self.dir
            .parent()
            .is_some_and(|p| p.as_os_str().is_empty() || p.is_dir())
    }

    /// The directory must exist; it is created only if its parent exists
    /// (a missing parent means the volume is not mounted).
    fn ensure_dir(&self) -> Result<(), TargetError> {
        match fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(self.failed(format!(
                    "target path {} exists but is not a directory",
                    self.dir.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(&self.dir, e)),
        }
        if !self.parent_present() {
            return Err(self.failed(format!(
                "target directory {} does not exist and neither does its parent: is the volume \
                 mounted? (snapward creates only the configured directory itself)",
                self.dir.display()
            )));
        }
        match fs::create_dir(&self.dir) {
            Ok(()) => {
                tracing::info!(target_name = %self.name, dir = %self.dir.display(), "created target directory");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(self.io(&self.dir, e)),
        }
    }

    fn list(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A fresh target whose directory `put` will create is empty;
                // a missing mount is an error, never "nothing there".
                if self.parent_present() {
                    return Ok(Vec::new());
                }
                return Err(self.failed(format!(
                    "target directory {} and its parent do not exist: is the volume mounted?",
                    self.dir.display()
                )));
            }
            Err(e) => return Err(self.io(&self.dir, e)),
        };
        let mut cache = VerifyCache::load(&self.dir, self.cache);
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(time) = snapshot_time(&self.snapshot_prefix, &name) else {
                continue;
            };
            let path = entry.path();
            // Never followed: a symlink under a snapshot's name (to another
            // snapshot, to a file outside) is not a snapshot of this target.
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(m) => {
                    if m.file_type().is_symlink() {
                        tracing::warn!(
                            target_name = %self.name,
                            file = %name,
                            "a symbolic link under a snapshot's name on the target: never followed, not counted; remove it"
                        );
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&path, e)),
            };
            // Read only when the cache has no entry for the file as it is.
            let verified = match cache.get(&name, &meta) {
                Some(hit) => Ok(hit),
                None => {
                    let v = open_nofollow(&path)
                        .map_err(snapshot::VerifyError::Io)
                        .and_then(snapshot::sealed_sums_reader);
                    match &v {
                        Ok(s) => cache.put(&name, &meta, s),
                        Err(_) => cache.forget(&name),
                    }
                    v
                }
            };
            let (sha256, index, term, sums) = match verified {
                Ok(s) => (
                    Some(s.identity.sha256.clone()),
                    Some(s.identity.index),
                    Some(s.identity.term),
                    Some(s),
                ),
                Err(e) => {
                    tracing::warn!(
                        target_name = %self.name,
                        file = %name,
                        check = e.check(),
                        "snapshot on target does not verify; not counted"
                    );
                    (None, None, None, None)
                }
            };
            out.push(RemoteSnapshot {
                name,
                size: meta.len(),
                sha256,
                index,
                term,
                time,
                cluster_id: None,
                tag: None,
                sums,
                trust: Trust::Unchecked,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        cache.save();
        Ok(out)
    }

    /// Copies `src` to `tmp` (create-new), hashing; `None` when cancelled.
    fn copy_to_partial(
        &self,
        src: &Path,
        tmp: &Path,
        cancel: &CancellationToken,
    ) -> Result<Option<(u64, String)>, TargetError> {
        let input = File::open(src).map_err(|e| self.io(src, e))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .map_err(|e| self.io(tmp, e))?;
        let total = input.metadata().ok().map(|m| m.len());
        let shown = crate::progress::start(format!("upload {}", self.name), total);
        let mut input = crate::progress::SyncReader::new(input, &shown);
        let copied = copy_hashing(&mut input, &mut out, cancel).map_err(|e| match e {
            CopyError::Read(e) => self.io(src, e),
            CopyError::Write(e) => self.io(tmp, e),
        })?;
        if copied.is_none() {
            return Ok(None);
        }
        shown.finish();
        out.sync_all().map_err(|e| self.io(tmp, e))?;
        out.set_permissions(fs::Permissions::from_mode(self.file_mode))
            .map_err(|e| self.io(tmp, e))?;
        Ok(copied)
    }

    /// Makes `tmp` visible as `dest` unless `dest` exists.
    fn publish(&self, tmp: &Path, dest: &Path, name: &str) -> Result<(), TargetError> {
        match fs::hard_link(tmp, dest) {
            Ok(()) => {
                remove_quietly(tmp);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(TargetError::AlreadyExists {
                target: self.name.clone(),
                name: name.to_owned(),
            }),
            Err(e) if links_unsupported(&e) => {
                // No hard links on this mount: check, then rename. The run
                // lock makes this the only writer.
                if fs::symlink_metadata(dest).is_ok() {
                    return Err(TargetError::AlreadyExists {
                        target: self.name.clone(),
                        name: name.to_owned(),
                    });
                }
                fs::rename(tmp, dest).map_err(|e| self.io(dest, e))
            }
            Err(e) => Err(self.io(dest, e)),
        }
    }

    fn put(
        &self,
        src: &Path,
        name: &str,
        identity: &Identity,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        self.check_name(name)?;
        self.ensure_dir()?;
        let dest = self.dir.join(name);
        if fs::symlink_metadata(&dest).is_ok() {
            return Err(TargetError::AlreadyExists {
                target: self.name.clone(),
                name: name.to_owned(),
            });
        }
        let tmp = self.dir.join(format!(".{name}.partial"));
        // A temp file of this very name is a crashed run's leftover (the
        // run lock excludes a live one).
        remove_quietly(&tmp);
        let copied = match self.copy_to_partial(src, &tmp, cancel) {
            Ok(Some(c)) => c,
            Ok(None) => {
                remove_quietly(&tmp);
                return Err(TargetError::Cancelled);
            }
            Err(e) => {
                remove_quietly(&tmp);
                return Err(e);
            }
        };
        self.publish_confirmed(
            &tmp,
            name,
            identity,
            copied,
            &src.display().to_string(),
            cancel,
        )
    }

    /// `tmp` (fsynced, mode set) holds `copied` (length, SHA-256) of
    /// `what`: unless that is `identity`, it is removed; else it is
    /// published create-only as `name` and read back.
    fn publish_confirmed(
        &self,
        tmp: &Path,
        name: &str,
        identity: &Identity,
        copied: (u64, String),
        what: &str,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        let dest = self.dir.join(name);
        let want = identity.sha256.to_ascii_lowercase();
        if copied.0 != identity.file_size || copied.1 != want {
            remove_quietly(tmp);
            return Err(self.failed(format!(
                "{what} does not match its snapshot identity (changed since it was verified?): not copied"
            )));
        }
        crate::crash::crash_point!("fs.before-publish");
        if let Err(e) = self.publish(tmp, &dest, name) {
            remove_quietly(tmp);
            return Err(e);
        }
        fsync_dir(&self.dir).map_err(|e| self.io(&self.dir, e))?;
        crate::crash::crash_point!("fs.after-publish");
        // Published; a cancel now only skips the read-back (the next run's
        // `list` verifies the file anyway).
        let Some((size, sha)) = hash_file(&dest, cancel).map_err(|e| self.io(&dest, e))? else {
            return Err(TargetError::Cancelled);
        };
        if size != identity.file_size || sha != want {
            return Err(TargetError::NotConfirmed {
                target: self.name.clone(),
                name: name.to_owned(),
                expected: format!("{} bytes, sha256 {want}", identity.file_size),
                got: format!("{size} bytes, sha256 {sha}"),
            });
        }
        Ok(Confirmed { size, sha256: sha })
    }

    fn delete(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        self.check_name(name)?;
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                fsync_dir(&self.dir).map_err(|e| self.io(&self.dir, e))?;
                Ok(DeleteOutcome::Deleted)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DeleteOutcome::Deleted),
            Err(e)
                if e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(1) =>
            {
                tracing::info!(
                    target_name = %self.name,
                    file = %name,
                    "delete refused by the mount (WORM/immutable): retained"
                );
                Ok(DeleteOutcome::RetainedByLock)
            }
            Err(e) => Err(self.io(&path, e)),
        }
    }

    fn fetch(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        self.check_name(name)?;
        let src = self.dir.join(name);
        let mut input = open_nofollow(&src).map_err(|e| self.io(&src, e))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| self.io(dest, e))?;
        let total = input.metadata().ok().map(|m| m.len());
        let shown = crate::progress::start(format!("fetch {}", self.name), total);
        let result = (|| {
            let mut buf = vec![0u8; COPY_BUF];
            let mut n = 0u64;
            loop {
                if cancel.is_cancelled() {
                    return Err(TargetError::Cancelled);
                }
                let read = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.io(&src, e)),
                };
                out.write_all(buf.get(..read).unwrap_or(&[]))
                    .map_err(|e| self.io(dest, e))?;
                n += read as u64;
                shown.inc(read as u64);
            }
            out.sync_all().map_err(|e| self.io(dest, e))?;
            Ok(n)
        })();
        if result.is_ok() {
            shown.finish();
        } else {
            remove_quietly(dest);
        }
        result
    }

    fn cleanup(&self, age: Duration) -> Result<Cleanup, TargetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Cleanup::default()),
            Err(e) => return Err(self.io(&self.dir, e)),
        };
        let cutoff = SystemTime::now().checked_sub(age);
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with('.')
                && name.ends_with(".partial")
                && name.len() > ".partial".len())
            {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let old = match (meta.modified(), cutoff) {
                (Ok(m), Some(c)) => m <= c,
                // now − age is before the epoch: everything is younger.
                (Ok(_), None) => false,
                (Err(_), _) => false,
            };
            if !old {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(target_name = %self.name, file = %name, "removed stale temp file");
                    removed.push(name);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io(&path, e)),
            }
        }
        removed.sort();
        Ok(Cleanup { removed })
    }
}

#[async_trait]
impl Target for FsTarget {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn list(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let inner = Arc::clone(&self.inner);
        run_blocking(&self.inner.name, move || inner.list()).await
    }

    async fn put(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        // Files are authenticated by their content (sealed sums) on `list`.
        _tag: &UploadTag,
        cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError> {
        let inner = Arc::clone(&self.inner);
        let (file, name, identity, cancel) = (
            file.to_owned(),
            name.to_owned(),
            identity.clone(),
            cancel.clone(),
        );
        run_blocking(&self.inner.name, move || {
            inner.put(&file, &name, &identity, &cancel)
        })
        .await
        .map(PutOutcome::Confirmed)
    }

    async fn delete(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        let inner = Arc::clone(&self.inner);
        let name = name.to_owned();
        run_blocking(&self.inner.name, move || inner.delete(&name)).await
    }

    async fn fetch(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        let inner = Arc::clone(&self.inner);
        let (name, dest, cancel) = (name.to_owned(), dest.to_owned(), cancel.clone());
        run_blocking(&self.inner.name, move || inner.fetch(&name, &dest, &cancel)).await
    }

    async fn cleanup(&self) -> Result<Cleanup, TargetError> {
        self.cleanup_older_than(STALE_PARTIAL_AGE).await
    }

    async fn begin_stream(
        &self,
        name: &str,
        _tail: &super::tail::Tail,
    ) -> Result<Option<Box<dyn super::StreamingPut>>, TargetError> {
        stream::begin(Arc::clone(&self.inner), name).await
    }
}
