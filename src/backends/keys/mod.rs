//! The unseal-key store: read keys for unseal/restore, create them once at
//! init. Create-only: snapward never overwrites, updates or deletes stored
//! keys, and a restore never writes them. Key material is held in `Secret`
//! (redacted in Debug/Display, zeroised on drop) and never logged.
//!
//! Stage: execute (backend). Two stores implement [`KeyStore`]: files in a
//! directory ([`FileKeyStore`], `file.rs`) and one Kubernetes Secret
//! ([`SecretKeyStore`], `secret.rs`); [`UnavailableKeyStore`] stands in for
//! a store this run cannot reach.
//!
//! Must never: look empty while any entry exists (absent keys allow a fresh
//! init), or put key material in an error.

mod file;
mod secret;

pub use file::FileKeyStore;
pub use secret::SecretKeyStore;

use async_trait::async_trait;

use crate::backends::error::{Cause, with_cause};
use crate::secret::Secret;

/// Keys as stored: every share present, and the root token if it was kept.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    pub keys: Vec<Secret>,
    pub root_token: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The store already holds keys: init refuses (create-only).
    #[error("the key store {location} already holds keys; snapward never overwrites them")]
    AlreadyExists { location: String },
    #[error("the key store {location} holds no unseal keys")]
    Empty { location: String },
    /// The message is `detail`, then the cause chain.
    #[error(
        "the key store {location} cannot be read or written: {}",
        with_cause(.detail, std::error::Error::source(self))
    )]
    Unavailable {
        location: String,
        detail: String,
        #[source]
        source: Option<Cause>,
    },
}

impl KeyStoreError {
    /// [`KeyStoreError::Unavailable`] at `location`, without a cause.
    pub(in crate::backends) fn unavailable(location: String, detail: impl Into<String>) -> Self {
        Self::Unavailable {
            location,
            detail: detail.into(),
            source: None,
        }
    }

    /// The same error with `cause` as its source (`Unavailable` only).
    pub(in crate::backends) fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        if let Self::Unavailable { source, .. } = &mut self {
            *source = Some(cause.into());
        }
        self
    }
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Human-readable location (no secrets): `files:/keys`, `secret openbao/keys`.
    fn location(&self) -> String;
    /// `Ok(true)` if at least one key share is stored.
    async fn probe(&self) -> Result<bool, KeyStoreError>;
    async fn read(&self) -> Result<StoredKeys, KeyStoreError>;
    /// Store keys that do not exist yet. Refuses if any entry exists.
    async fn create(&self, keys: &StoredKeys) -> Result<(), KeyStoreError>;
    /// Right before a fresh init: prove that `create` would succeed — the
    /// store is still empty *and* writable — so init never creates a
    /// barrier whose keys cannot be stored. Stores nothing.
    async fn check_create(&self) -> Result<(), KeyStoreError> {
        if self.probe().await? {
            return Err(KeyStoreError::AlreadyExists {
                location: self.location(),
            });
        }
        Ok(())
    }
}

/// A key store this build cannot reach (e.g. a Kubernetes Secret before the
/// Kubernetes client is configured). Every call fails, so the guard treats
/// the keys as unknown — never as absent (absent would allow init).
#[derive(Debug, Clone)]
pub struct UnavailableKeyStore {
    pub location: String,
    pub reason: String,
}

#[async_trait]
impl KeyStore for UnavailableKeyStore {
    fn location(&self) -> String {
        self.location.clone()
    }
    async fn probe(&self) -> Result<bool, KeyStoreError> {
        Err(KeyStoreError::unavailable(self.location(), &self.reason))
    }
    async fn read(&self) -> Result<StoredKeys, KeyStoreError> {
        Err(KeyStoreError::unavailable(self.location(), &self.reason))
    }
    async fn create(&self, _keys: &StoredKeys) -> Result<(), KeyStoreError> {
        Err(KeyStoreError::unavailable(self.location(), &self.reason))
    }
}
