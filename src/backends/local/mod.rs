//! The local snapshot store (the PVC): inventory with identity and
//! validity, crash-safe writes (temp name → fsync → verify → no-replace
//! rename → fsync dir), stale temp cleanup, deletion by name, and the
//! marker of a restore in progress (see `guard::interrupted_restore`).
//!
//! Stage: execute. Blocking file I/O: call from `spawn_blocking`.
//!
//! Must never: replace a snapshot file, count a file that did not verify as
//! a snapshot's identity, or remove anything but the named snapshot, its
//! own `.partial` temp files and the restore marker.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

mod port;
mod writer;
pub use port::{Begun, Committed, SnapshotStore};
pub use writer::SnapshotWriter;

use crate::backends::snapshot_time;
use crate::backends::verify_cache::{CacheUse, VerifyCache};
use crate::snapshot::{self, Identity};

/// One `.snap` file in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalSnapshot {
    pub name: String,
    pub time: jiff::Timestamp,
    /// `Some` when the file verified.
    pub identity: Option<Identity>,
    /// The failing check, for an invalid file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// The file's `SHA256SUMS` and `SHA256SUMS.sealed` (read in the same
    /// verification pass), for authenticating it with the stored keys.
    #[serde(skip)]
    pub sums: Option<(Vec<u8>, Vec<u8>)>,
    /// Set by the executor (see [`crate::backends::Trust`]).
    pub trust: crate::backends::Trust,
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    pub dir: PathBuf,
    pub prefix: String,
    pub mode: u32,
    /// How `inventory` uses the verification cache in the directory
    /// ([`crate::backends::verify_cache`]).
    cache: CacheUse,
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens `path` for reading without following a symbolic link at its last
/// component (`O_NOFOLLOW`): a link planted there (to `/etc/passwd`, to
/// another snapshot) is an error that says so, never read through.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| refuse_symlink(path, e))
}

/// `ELOOP` from an `O_NOFOLLOW` open, in words; other errors unchanged.
fn refuse_symlink(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::other(format!(
            "{} is a symbolic link: snapward never follows one there (something other than snapward wrote into this directory); remove it",
            path.display()
        ))
    } else {
        e
    }
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>, mode: u32) -> Self {
        Self {
            dir: dir.into(),
            prefix: prefix.into(),
            mode,
            cache: CacheUse::default(),
        }
    }

    /// The same store with another use of the verification cache.
    pub fn with_cache(mut self, cache: CacheUse) -> Self {
        self.cache = cache;
        self
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The temp name for a snapshot being written: `.<name>.partial`.
    pub fn partial_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!(".{name}.partial"))
    }

    /// Every snapshot-named file, verified. A missing directory is an empty
    /// store (never a reason to delete anything anywhere).
    pub fn inventory(&self) -> io::Result<Vec<LocalSnapshot>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut cache = VerifyCache::load(&self.dir, self.cache);
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(time) = snapshot_time(&self.prefix, &name) else {
                continue;
            };
            if !entry.file_type()?.is_file() {
                continue;
            }
            let (identity, invalid, sums) = match verify_cached(&mut cache, &name, &entry.path()) {
                Ok(s) => (Some(s.identity), None, Some((s.sums, s.sealed))),
                Err(e) => (None, Some(format!("{}: {e}", e.check())), None),
            };
            out.push(LocalSnapshot {
                name,
                time,
                identity,
                invalid,
                sums,
                trust: crate::backends::Trust::Unchecked,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        cache.save();
        Ok(out)
    }

    /// Remove `.<prefix>*.partial` files left by a crashed run. Call only
    /// while holding the run lock. Returns the removed names.
    pub fn remove_stale_partials(&self) -> io::Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!(".{}", self.prefix)) && name.ends_with(".snap.partial") {
                fs::remove_file(self.dir.join(&name))?;
                removed.push(name);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Create the temp file for a new snapshot (create-new: never reuse;
    /// mode 0600 until [`Self::commit`] gives it the store's mode).
    pub fn create_partial(&self, name: &str) -> io::Result<(PathBuf, File)> {
        fs::create_dir_all(&self.dir)?;
        let path = self.partial_path(name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        Ok((path, f))
    }

    /// Move the fsynced, verified temp file into place under `name` without
    /// replacing anything (hard link + unlink), set the mode and fsync the
    /// directory. The temp file is opened without following a symlink and
    /// its mode set through that descriptor; what gets linked must be that
    /// very file (same inode), else nothing is published. `verdict` is the verification of the bytes written (see
    /// [`snapshot::VerifyingWriter`]); an error, or a file whose length is
    /// not the verified length, is refused. On any failure the temp file is
    /// removed and no `.snap` appears.
    pub fn commit(
        &self,
        partial: &Path,
        name: &str,
        verdict: Result<snapshot::SealedSums, snapshot::VerifyError>,
    ) -> Result<(PathBuf, Identity), CommitError> {
        let result = (|| {
            let sums = verdict.map_err(CommitError::Invalid)?;
            let identity = sums.identity.clone();
            let file = open_nofollow(partial).map_err(CommitError::Io)?;
            let meta = file.metadata().map_err(CommitError::Io)?;
            if !meta.is_file() {
                return Err(CommitError::Io(io::Error::other(format!(
                    "{} is not a regular file",
                    partial.display()
                ))));
            }
            let len = meta.len();
            if len != identity.file_size {
                return Err(CommitError::Io(io::Error::other(format!(
                    "the temp file holds {len} bytes but {} were verified",
                    identity.file_size
                ))));
            }
            let dest = self.path_of(name);
            // fchmod: the file opened above, whatever the name points at now.
            file.set_permissions(fs::Permissions::from_mode(self.mode))
                .map_err(CommitError::Io)?;
            crate::crash::crash_point!("local.before-link");
            fs::hard_link(partial, &dest).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => CommitError::Exists {
                    name: name.to_string(),
                },
                _ => CommitError::Io(e),
            })?;
            crate::crash::crash_point!("local.after-link");
            // The name was swapped between the open and the link: what was
            // published is not the verified file. Take it back.
            let linked = fs::symlink_metadata(&dest).map_err(CommitError::Io)?;
            if (linked.dev(), linked.ino()) != (meta.dev(), meta.ino()) {
                let _ = fs::remove_file(&dest);
                return Err(CommitError::Io(io::Error::other(format!(
                    "{} was replaced while it was being moved into place (something other than snapward writes into the store directory); nothing was published",
                    partial.display()
                ))));
            }
            Ok((dest, identity, sums))
        })();
        let _ = fs::remove_file(partial);
        let (dest, identity, sums) = result?;
        // Verified just now: the inventory need not read it again. The
        // stamp is taken after the temp name was removed (an unlink
        // changes the inode's ctime).
        if let Ok(m) = fs::symlink_metadata(&dest) {
            let mut cache = VerifyCache::load(&self.dir, self.cache);
            cache.put(name, &m, &sums);
            cache.save_keeping_unseen();
        }
        let out = (dest, identity);
        fsync_dir(&self.dir).map_err(CommitError::Io)?;
        Ok(out)
    }

    /// The marker of a restore in progress for `policy`:
    /// `.snapward-<policy>.restore-in-progress`, beside the run lock.
    pub fn restore_marker_path(&self, policy: &str) -> PathBuf {
        self.dir
            .join(format!(".snapward-{policy}.restore-in-progress"))
    }

    /// Record (durably: file and directory fsynced) that a restore is about
    /// to temp-initialise node 0. `what` names the snapshot; never a secret.
    pub fn write_restore_marker(&self, policy: &str, what: &str) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let path = self.restore_marker_path(policy);
        // Never through a symlink planted under the marker's name.
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| refuse_symlink(&path, e))?;
        io::Write::write_all(&mut f, format!("{what}\n").as_bytes())?;
        f.sync_all()?;
        fsync_dir(&self.dir)
    }

    /// The marker's text, if a restore was interrupted. A symlink under
    /// the marker's name is an error, never followed.
    pub fn read_restore_marker(&self, policy: &str) -> io::Result<Option<String>> {
        let mut f = match open_nofollow(&self.restore_marker_path(policy)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut s = String::new();
        io::Read::read_to_string(&mut f, &mut s)?;
        Ok(Some(s.trim().to_string()))
    }

    /// The restore no longer needs the marker (durably removed).
    pub fn remove_restore_marker(&self, policy: &str) -> io::Result<()> {
        match fs::remove_file(self.restore_marker_path(policy)) {
            Ok(()) => fsync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn delete(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path_of(name))?;
        fsync_dir(&self.dir)
    }
}

/// A store file's verdict: from the cache while the file is unchanged,
/// else read and verified (and remembered when valid). The metadata is
/// taken before the read, so a file changed during it is read again.
fn verify_cached(
    cache: &mut VerifyCache,
    name: &str,
    path: &Path,
) -> Result<snapshot::SealedSums, snapshot::VerifyError> {
    let meta = fs::symlink_metadata(path).map_err(snapshot::VerifyError::Io)?;
    if let Some(hit) = cache.get(name, &meta) {
        return Ok(hit);
    }
    match snapshot::sealed_sums_file(path) {
        Ok(s) => {
            cache.put(name, &meta, &s);
            Ok(s)
        }
        Err(e) => {
            cache.forget(name);
            Err(e)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("the snapshot failed verification ({check}): {0}", check = .0.check())]
    Invalid(#[source] snapshot::VerifyError),
    /// Never replaced. Names have one-second resolution, so this means a
    /// file dated now already exists: a clock that was ahead named it.
    #[error(
        "`{name}` already exists in the local store and is never replaced: a snapshot dated in the future (a clock that was ahead, or is now behind) took this name; check the clocks; nothing was overwritten"
    )]
    Exists { name: String },
    /// The cause is part of the message: callers print only this error.
    #[error("could not move the snapshot into place: {0}")]
    Io(#[source] io::Error),
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn identity_of(len: u64) -> snapshot::SealedSums {
        snapshot::SealedSums {
            identity: Identity {
                index: 1,
                term: 1,
                version: 1,
                state_size: 0,
                file_size: len,
                sha256: "00".repeat(32),
            },
            sums: Vec::new(),
            sealed: Vec::new(),
        }
    }

    #[test]
    fn a_symlink_swapped_in_for_the_temp_file_does_not_redirect_the_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("snaps"), "openbao-", 0o644);
        let name = "openbao-20261128-021500.snap";
        let (partial, f) = store.create_partial(name).unwrap();
        drop(f);
        // Someone with write access to the store swaps the written temp
        // file for a symlink to a private file of the same length.
        let victim = dir.path().join("private");
        fs::write(&victim, b"secret").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(&partial).unwrap();
        symlink(&victim, &partial).unwrap();

        let err = store
            .commit(&partial, name, Ok(identity_of(6)))
            .expect_err("a symlink is never committed");
        assert!(
            err.to_string().contains("symbolic link"),
            "the error says why: {err}"
        );
        assert_eq!(mode_of(&victim), 0o600, "the chmod did not follow the link");
        assert!(
            fs::symlink_metadata(store.path_of(name)).is_err(),
            "nothing was published under the snapshot's name"
        );
    }

    #[test]
    fn the_temp_file_is_created_0600_whatever_the_umask_allows() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path(), "openbao-", 0o640);
        let (partial, _f) = store
            .create_partial("openbao-20261128-021500.snap")
            .unwrap();
        assert_eq!(mode_of(&partial), 0o600);
    }

    #[test]
    fn a_symlinked_restore_marker_is_neither_read_nor_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("snaps"), "openbao-", 0o640);
        fs::create_dir_all(&store.dir).unwrap();
        let elsewhere = dir.path().join("passwd");
        fs::write(&elsewhere, b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
        symlink(&elsewhere, store.restore_marker_path("p")).unwrap();

        let read = store
            .read_restore_marker("p")
            .expect_err("a symlinked marker is refused");
        assert!(
            read.to_string().contains("symbolic link")
                && read.to_string().contains(".snapward-p.restore-in-progress"),
            "the error names the marker and why: {read}"
        );
        let write = store
            .write_restore_marker("p", "snapshot s3/x")
            .expect_err("never written through a symlink");
        assert!(write.to_string().contains("symbolic link"), "{write}");
        assert_eq!(
            fs::read(&elsewhere).unwrap(),
            b"root:x:0:0:root:/root:/bin/sh\n",
            "the link's target is untouched"
        );
        // Removing it removes the link, never its target.
        store.remove_restore_marker("p").unwrap();
        assert!(elsewhere.exists());
    }
}
