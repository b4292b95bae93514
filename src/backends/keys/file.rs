//! [`FileKeyStore`]: unseal keys as files in one directory (`<prefix>0`,
//! `<prefix>1`, …, the root token), mode 0600, created with `O_EXCL`.
//!
//! Must never: overwrite, update or delete a key file, or report "no keys"
//! while any entry exists (a partial store must never look empty).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{KeyShape, KeyStore, KeyStoreError, Presence, SHAPE_ENTRY, StoredKeys};
use crate::backends::error::Cause;
use crate::secret::Secret;

/// One file per entry in a directory: `<prefix>0..`, `root-token`; 0600.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    pub dir: PathBuf,
    pub key_prefix: String,
    pub root_token_key: String,
}

impl FileKeyStore {
    /// `Unavailable`, caused by `e` (an I/O error, a failed blocking task).
    fn unavailable(&self, e: impl Into<Cause>) -> KeyStoreError {
        KeyStoreError::unavailable(self.location(), "").caused_by(e)
    }

    /// Does any entry of this store exist (any `<keyPrefix>*`, the root
    /// token or the shape record)? `Ok(false)` also for a missing directory.
    fn any_entry(&self) -> io::Result<bool> {
        Ok(self.presence()?.any)
    }

    /// What the directory holds: `<keyPrefix>N` shares, any entry, the
    /// recorded seal. A missing directory holds nothing.
    fn presence(&self) -> io::Result<Presence> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Presence::default()),
            Err(e) => return Err(e),
        };
        let mut p = Presence::default();
        for entry in entries {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_prefix(self.key_prefix.as_str()) {
                p.any = true;
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    p.shares += 1;
                }
            } else if *name == *self.root_token_key || name == SHAPE_ENTRY {
                p.any = true;
            }
        }
        p.seal = match fs::read_to_string(self.dir.join(SHAPE_ENTRY)) {
            Ok(t) => KeyShape::from_record(&t).and_then(|s| s.seal),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(p)
    }

    fn key_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("{}{i}", self.key_prefix))
    }

    fn read_sync(&self) -> Result<StoredKeys, KeyStoreError> {
        let mut keys = Vec::new();
        for i in 0.. {
            match crate::secret::read_secret_file(self.key_path(i)) {
                Ok(k) => keys.push(k),
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(self.unavailable(e)),
            }
        }
        if keys.is_empty() {
            return Err(KeyStoreError::Empty {
                location: self.location(),
            });
        }
        let root_token = match crate::secret::read_secret_file(self.dir.join(&self.root_token_key))
        {
            Ok(t) => Some(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.unavailable(e)),
        };
        let shape = match fs::read_to_string(self.dir.join(SHAPE_ENTRY)) {
            Ok(t) => KeyShape::from_record(&t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.unavailable(e)),
        };
        Ok(StoredKeys {
            keys,
            root_token,
            shape,
        })
    }

    fn write_new(path: &Path, value: &Secret) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(value.expose().as_bytes())?;
        f.sync_all()
    }

    fn create_sync(&self, keys: &StoredKeys) -> Result<(), KeyStoreError> {
        fs::create_dir_all(&self.dir).map_err(|e| self.unavailable(e))?;
        let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700));
        if self.any_entry().map_err(|e| self.unavailable(e))? {
            return Err(KeyStoreError::AlreadyExists {
                location: self.location(),
            });
        }
        for (i, k) in keys.keys.iter().enumerate() {
            Self::write_new(&self.key_path(i), k).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => KeyStoreError::AlreadyExists {
                    location: self.location(),
                },
                _ => self.unavailable(e),
            })?;
        }
        if let Some(t) = &keys.root_token {
            Self::write_new(&self.dir.join(&self.root_token_key), t)
                .map_err(|e| self.unavailable(e))?;
        }
        if let Some(shape) = keys.shape {
            Self::write_new(&self.dir.join(SHAPE_ENTRY), &Secret::new(shape.to_record()))
                .map_err(|e| self.unavailable(e))?;
        }
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.unavailable(e))
    }
}

#[async_trait]
impl KeyStore for FileKeyStore {
    fn location(&self) -> String {
        format!("files:{}", self.dir.display())
    }

    /// Any entry counts (`any`): a partial or mixed store must never look
    /// empty (that would allow init over surviving keys).
    async fn probe(&self) -> Result<Presence, KeyStoreError> {
        self.presence().map_err(|e| self.unavailable(e))
    }

    async fn read(&self) -> Result<StoredKeys, KeyStoreError> {
        let s = self.clone();
        tokio::task::spawn_blocking(move || s.read_sync())
            .await
            .map_err(|e| self.unavailable(e))?
    }

    async fn create(&self, keys: &StoredKeys) -> Result<(), KeyStoreError> {
        let s = self.clone();
        let keys = keys.clone();
        tokio::task::spawn_blocking(move || s.create_sync(&keys))
            .await
            .map_err(|e| self.unavailable(e))?
    }

    /// Empty, and a file can be created in the directory (made if missing).
    async fn check_create(&self) -> Result<(), KeyStoreError> {
        if self.any_entry().map_err(|e| self.unavailable(e))? {
            return Err(KeyStoreError::AlreadyExists {
                location: self.location(),
            });
        }
        fs::create_dir_all(&self.dir).map_err(|e| self.unavailable(e))?;
        tempfile::Builder::new()
            .prefix(".snapward-write-check")
            .tempfile_in(&self.dir)
            .map(drop)
            .map_err(|e| KeyStoreError::unavailable(self.location(), "not writable").caused_by(e))
    }
}
