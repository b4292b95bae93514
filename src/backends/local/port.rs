//! The local store as the actions see it: a trait, so that a dry run can
//! put a decorator in front of the real directory (`backends::dry_run`).
//!
//! Stage: backends. Blocking file I/O: call from `spawn_blocking`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::{CommitError, LocalSnapshot, LocalStore};
use crate::backends::DeleteOutcome;
use crate::snapshot::{Identity, SealedSums, VerifyError};

/// The temp file a new snapshot streams into.
#[derive(Debug)]
pub struct Begun {
    pub path: PathBuf,
    pub file: File,
    /// Temp files of crashed runs removed first.
    pub removed_stale: Vec<String>,
}

/// What `commit` did with a verified temp file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// In the store under its final name.
    Saved { path: PathBuf, identity: Identity },
    /// A dry run: verified, left at `kept_at` (outside every store); a real
    /// run would have saved it as `at`.
    WouldSave {
        at: PathBuf,
        kept_at: PathBuf,
        identity: Identity,
    },
}

impl Committed {
    /// Where the verified bytes are now.
    pub fn path(&self) -> &Path {
        match self {
            Committed::Saved { path, .. } => path,
            Committed::WouldSave { kept_at, .. } => kept_at,
        }
    }
    pub fn identity(&self) -> &Identity {
        match self {
            Committed::Saved { identity, .. } | Committed::WouldSave { identity, .. } => identity,
        }
    }
}

/// The local snapshot store (the PVC).
pub trait SnapshotStore: Send + Sync + std::fmt::Debug {
    fn dir(&self) -> &Path;
    fn prefix(&self) -> &str;
    fn path_of(&self, name: &str) -> PathBuf;
    /// Every snapshot-named file, verified.
    fn inventory(&self) -> io::Result<Vec<LocalSnapshot>>;
    /// Remove crashed runs' temp files, then create the temp file for `name`.
    fn begin(&self, name: &str) -> io::Result<Begun>;
    /// Move the verified temp file into place (see [`LocalStore::commit`]).
    fn commit(
        &self,
        partial: &Path,
        name: &str,
        verdict: Result<SealedSums, VerifyError>,
    ) -> Result<Committed, CommitError>;
    fn delete(&self, name: &str) -> io::Result<DeleteOutcome>;
    fn write_restore_marker(&self, policy: &str, what: &str) -> io::Result<()>;
    fn read_restore_marker(&self, policy: &str) -> io::Result<Option<String>>;
    fn remove_restore_marker(&self, policy: &str) -> io::Result<()>;
}

impl SnapshotStore for LocalStore {
    fn dir(&self) -> &Path {
        &self.dir
    }
    fn prefix(&self) -> &str {
        &self.prefix
    }
    fn path_of(&self, name: &str) -> PathBuf {
        LocalStore::path_of(self, name)
    }
    fn inventory(&self) -> io::Result<Vec<LocalSnapshot>> {
        LocalStore::inventory(self)
    }
    fn begin(&self, name: &str) -> io::Result<Begun> {
        let removed_stale = self.remove_stale_partials()?;
        let (path, file) = self.create_partial(name)?;
        Ok(Begun {
            path,
            file,
            removed_stale,
        })
    }
    fn commit(
        &self,
        partial: &Path,
        name: &str,
        verdict: Result<SealedSums, VerifyError>,
    ) -> Result<Committed, CommitError> {
        LocalStore::commit(self, partial, name, verdict)
            .map(|(path, identity)| Committed::Saved { path, identity })
    }
    fn delete(&self, name: &str) -> io::Result<DeleteOutcome> {
        LocalStore::delete(self, name).map(|()| DeleteOutcome::Deleted)
    }
    fn write_restore_marker(&self, policy: &str, what: &str) -> io::Result<()> {
        LocalStore::write_restore_marker(self, policy, what)
    }
    fn read_restore_marker(&self, policy: &str) -> io::Result<Option<String>> {
        LocalStore::read_restore_marker(self, policy)
    }
    fn remove_restore_marker(&self, policy: &str) -> io::Result<()> {
        LocalStore::remove_restore_marker(self, policy)
    }
}
