//! Dry-run decorators (rustic_core's `DryRunBackend`): each wraps a real
//! backend, forwards every read, and turns every write into a typed "would"
//! answer without touching anything. The actions cannot tell them apart
//! from the real backends, so no action has a dry-run branch.
//!
//! - [`DryRunTarget`]: list/fetch forward; put → `WouldUpload`, delete →
//!   `WouldDelete`, cleanup removes nothing.
//! - [`DryRunLocal`]: inventory and markers are read; a new snapshot
//!   streams into a scratch dir outside every store and is never linked
//!   into place (`WouldSave`); delete → `WouldDelete`; markers are never
//!   written.
//! - [`DryRunKeyStore`]: probe/read/check forward; create stores nothing.
//! - [`DryRunCeremony`]: seal-status/leader/read forward; init, unseal,
//!   restore and restart are refused (the executor's dry-run decorator
//!   never runs those actions; this is the second lock on the door).
//!
//! Stage: backends. Never writes outside the scratch directory.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::keys::{KeyStore, KeyStoreError, Presence, StoredKeys};
use super::local::{Begun, CommitError, Committed, LocalSnapshot, SnapshotStore};
use super::{
    BaoError, Ceremony, Cleanup, DeleteOutcome, InitResult, LeaderState, PutOutcome,
    RemoteSnapshot, RestoreEndpoint, SealKind, SealState, Target, TargetError, UploadTag,
};
use crate::secret::Secret;
use crate::snapshot::{Identity, SealedSums, VerifyError};

/// A target that is listed and read, never written.
pub struct DryRunTarget {
    pub inner: Arc<dyn Target>,
}

#[async_trait]
impl Target for DryRunTarget {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn list(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        self.inner.list().await
    }
    async fn put(
        &self,
        _file: &Path,
        _name: &str,
        identity: &Identity,
        _tag: &UploadTag,
        _cancel: &CancellationToken,
    ) -> Result<PutOutcome, TargetError> {
        Ok(PutOutcome::WouldUpload {
            size: identity.file_size,
            sha256: identity.sha256.clone(),
        })
    }
    async fn delete(&self, _name: &str) -> Result<DeleteOutcome, TargetError> {
        Ok(DeleteOutcome::WouldDelete)
    }
    async fn fetch(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        self.inner.fetch(name, dest, cancel).await
    }
    async fn cleanup(&self) -> Result<Cleanup, TargetError> {
        Ok(Cleanup::default())
    }
}

/// The local store, read but never written: new snapshots go to `scratch`.
#[derive(Debug)]
pub struct DryRunLocal {
    pub inner: Arc<dyn SnapshotStore>,
    /// A temp dir outside every store (removed by the caller).
    pub scratch: PathBuf,
}

impl SnapshotStore for DryRunLocal {
    fn dir(&self) -> &Path {
        self.inner.dir()
    }
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
    fn path_of(&self, name: &str) -> PathBuf {
        self.inner.path_of(name)
    }
    fn inventory(&self) -> io::Result<Vec<LocalSnapshot>> {
        self.inner.inventory()
    }
    fn begin(&self, name: &str) -> io::Result<Begun> {
        let path = self.scratch.join(format!(".{name}.partial"));
        let file = File::create_new(&path)?;
        Ok(Begun {
            path,
            file,
            removed_stale: Vec::new(),
        })
    }
    fn commit(
        &self,
        partial: &Path,
        name: &str,
        verdict: Result<SealedSums, VerifyError>,
    ) -> Result<Committed, CommitError> {
        let identity = match verdict {
            Ok(s) => s.identity,
            Err(e) => {
                let _ = fs::remove_file(partial);
                return Err(CommitError::Invalid(e));
            }
        };
        Ok(Committed::WouldSave {
            at: self.inner.path_of(name),
            kept_at: partial.to_path_buf(),
            identity,
        })
    }
    fn delete(&self, _name: &str) -> io::Result<DeleteOutcome> {
        Ok(DeleteOutcome::WouldDelete)
    }
    fn write_restore_marker(&self, _policy: &str, _what: &str) -> io::Result<()> {
        Ok(())
    }
    fn read_restore_marker(&self, policy: &str) -> io::Result<Option<String>> {
        self.inner.read_restore_marker(policy)
    }
    fn remove_restore_marker(&self, _policy: &str) -> io::Result<()> {
        Ok(())
    }
}

/// A key store that is read, never written.
pub struct DryRunKeyStore {
    pub inner: Arc<dyn KeyStore>,
}

#[async_trait]
impl KeyStore for DryRunKeyStore {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn probe(&self) -> Result<Presence, KeyStoreError> {
        self.inner.probe().await
    }
    async fn read(&self) -> Result<StoredKeys, KeyStoreError> {
        self.inner.read().await
    }
    async fn create(&self, _keys: &StoredKeys) -> Result<(), KeyStoreError> {
        tracing::info!(location = %self.inner.location(), "dry run: the keys would be stored (create-only); nothing written");
        Ok(())
    }
    async fn check_create(&self) -> Result<(), KeyStoreError> {
        self.inner.check_create().await
    }
}

/// The init/unseal/restore calls, reads only.
pub struct DryRunCeremony {
    pub inner: Arc<dyn Ceremony>,
    pub node_names: Vec<String>,
}

impl DryRunCeremony {
    fn refused(&self, node: usize, what: &str) -> BaoError {
        BaoError::Refused {
            node: self
                .node_names
                .get(node)
                .cloned()
                .unwrap_or_else(|| format!("node-{node}")),
            detail: format!("dry run: {what} is never sent"),
            source: None,
        }
    }
}

#[async_trait]
impl Ceremony for DryRunCeremony {
    async fn init(
        &self,
        node: usize,
        _shares: u32,
        _threshold: u32,
        _seal: SealKind,
    ) -> Result<InitResult, BaoError> {
        Err(self.refused(node, "sys/init"))
    }
    async fn unseal(&self, node: usize, _key: &Secret) -> Result<SealState, BaoError> {
        Err(self.refused(node, "sys/unseal"))
    }
    async fn seal_status(&self, node: usize) -> Result<SealState, BaoError> {
        self.inner.seal_status(node).await
    }
    async fn leader(&self, node: usize) -> Result<LeaderState, BaoError> {
        self.inner.leader(node).await
    }
    async fn restore(
        &self,
        node: usize,
        _token: &Secret,
        _file: &Path,
        _how: RestoreEndpoint,
    ) -> Result<(), BaoError> {
        Err(self.refused(node, "a snapshot restore"))
    }
    async fn read(
        &self,
        node: usize,
        token: &Secret,
        path: &str,
    ) -> Result<serde_json::Value, BaoError> {
        self.inner.read(node, token, path).await
    }
    async fn revoke_self(&self, node: usize, _token: &Secret) -> Result<(), BaoError> {
        Err(self.refused(node, "a token revocation"))
    }
    async fn restart(&self, node: usize) -> Result<bool, BaoError> {
        Err(self.refused(node, "a restart"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::local::LocalStore;

    #[test]
    fn the_dry_run_local_store_never_writes_the_store() {
        let store = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let real = Arc::new(LocalStore::new(store.path(), "openbao-", 0o640));
        let dry = DryRunLocal {
            inner: real,
            scratch: scratch.path().to_path_buf(),
        };
        let name = "openbao-20261128-021500.snap";
        let begun = dry.begin(name).unwrap();
        assert!(begun.path.starts_with(scratch.path()));
        drop(begun.file);
        let id = Identity {
            index: 7,
            term: 2,
            sha256: "00".repeat(32),
            version: 1,
            state_size: 0,
            file_size: 0,
        };
        let sums = SealedSums {
            identity: id,
            sums: Vec::new(),
            sealed: Vec::new(),
        };
        let c = dry.commit(&begun.path, name, Ok(sums)).unwrap();
        assert!(matches!(c, Committed::WouldSave { .. }));
        assert_eq!(c.path(), begun.path.as_path());
        assert_eq!(dry.delete(name).unwrap(), DeleteOutcome::WouldDelete);
        dry.write_restore_marker("p", "x").unwrap();
        assert_eq!(
            fs::read_dir(store.path()).unwrap().count(),
            0,
            "the store stays empty"
        );
    }
}
