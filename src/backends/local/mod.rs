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

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

mod port;
pub use port::{Begun, Committed, SnapshotStore};

use crate::backends::snapshot_time;
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
    /// Verification results of this run, by (name, length, mtime): a file
    /// is verified once per run unless it changes. Shared by clones.
    verified: Arc<Mutex<HashMap<CacheKey, Verdict>>>,
}

/// (file name, length, mtime): a changed file is verified again.
type CacheKey = (String, u64, SystemTime);

/// A remembered verification. The error is shared (`Arc`): `VerifyError`
/// holds an `io::Error` and is not `Clone`.
type Verdict = Result<snapshot::SealedSums, Arc<snapshot::VerifyError>>;

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>, prefix: impl Into<String>, mode: u32) -> Self {
        Self {
            dir: dir.into(),
            prefix: prefix.into(),
            mode,
            verified: Arc::default(),
        }
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
            let (identity, invalid, sums) = match self.verify_cached(&name, &entry.path()) {
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
        Ok(out)
    }

    fn cache_key(name: &str, path: &Path) -> Option<CacheKey> {
        let m = fs::metadata(path).ok()?;
        Some((name.to_string(), m.len(), m.modified().ok()?))
    }

    /// Verify a store file, at most once per run while it is unchanged.
    fn verify_cached(&self, name: &str, path: &Path) -> Verdict {
        let key = Self::cache_key(name, path);
        if let Some(k) = &key
            && let Some(hit) = self.verified.lock().ok().and_then(|c| c.get(k).cloned())
        {
            return hit;
        }
        let result = snapshot::sealed_sums_file(path).map_err(Arc::new);
        if let (Some(k), Ok(mut c)) = (key, self.verified.lock()) {
            c.insert(k, result.clone());
        }
        result
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

    /// Create the temp file for a new snapshot (create-new: never reuse).
    pub fn create_partial(&self, name: &str) -> io::Result<(PathBuf, File)> {
        fs::create_dir_all(&self.dir)?;
        let path = self.partial_path(name);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, f))
    }

    /// Move the fsynced, verified temp file into place under `name` without
    /// replacing anything (hard link + unlink), set the mode and fsync the
    /// directory. `verdict` is the verification of the bytes written (see
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
            let len = fs::metadata(partial).map_err(CommitError::Io)?.len();
            if len != identity.file_size {
                return Err(CommitError::Io(io::Error::other(format!(
                    "the temp file holds {len} bytes but {} were verified",
                    identity.file_size
                ))));
            }
            let dest = self.path_of(name);
            fs::set_permissions(partial, fs::Permissions::from_mode(self.mode))
                .map_err(CommitError::Io)?;
            crate::crash::crash_point!("local.before-link");
            fs::hard_link(partial, &dest).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => CommitError::Exists {
                    name: name.to_string(),
                },
                _ => CommitError::Io(e),
            })?;
            crate::crash::crash_point!("local.after-link");
            // Verified just now: the inventory need not read it again.
            if let (Some(k), Ok(mut c)) = (Self::cache_key(name, &dest), self.verified.lock()) {
                c.insert(k, Ok(sums));
            }
            Ok((dest, identity))
        })();
        let _ = fs::remove_file(partial);
        let out = result?;
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
        let mut f = File::create(&path)?;
        io::Write::write_all(&mut f, format!("{what}\n").as_bytes())?;
        f.sync_all()?;
        fsync_dir(&self.dir)
    }

    /// The marker's text, if a restore was interrupted.
    pub fn read_restore_marker(&self, policy: &str) -> io::Result<Option<String>> {
        match fs::read_to_string(self.restore_marker_path(policy)) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
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
