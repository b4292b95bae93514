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
use crate::cluster::SealKind;
use crate::secret::Secret;

/// Keys as stored: every share present, the root token if it was kept,
/// and the shape the barrier was made with, if recorded.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    pub keys: Vec<Secret>,
    pub root_token: Option<Secret>,
    /// Recorded by snapward's init (entry [`SHAPE_ENTRY`]); `None` for keys
    /// stored by hand.
    pub shape: Option<KeyShape>,
}

/// The entry that records the key shape, beside the shares: not a secret.
pub const SHAPE_ENTRY: &str = "key-shape";

/// Shares and threshold of the barrier the stored keys belong to, and
/// which seal made them. A restore temp-initialises node 0 with exactly
/// this shape (another shape leaves the restored node refusing the stored
/// keys with "invalid key size").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyShape {
    pub shares: u32,
    pub threshold: u32,
    /// `shamir`: the shares are unseal keys; `auto`: recovery keys of an
    /// auto-unseal cluster. `None` in records written before seals were
    /// told apart (they were all Shamir) — then the cluster's seal decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealKind>,
}

impl KeyShape {
    /// The record as stored (`{"shares":3,"threshold":2,"seal":"auto"}`).
    pub fn to_record(self) -> String {
        serde_json::to_string(&self).unwrap_or_default()
    }

    /// Parses a stored record; `None` for anything that is not a possible
    /// shape (then the policy's shape is used, and the report says so).
    pub fn from_record(text: &str) -> Option<Self> {
        let s: Self = serde_json::from_str(text.trim()).ok()?;
        (s.threshold >= 1 && s.threshold <= s.shares).then_some(s)
    }
}

/// What a key store holds, without reading a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presence {
    /// Key shares stored (`<keyPrefix>N` entries).
    pub shares: usize,
    /// The seal the shares belong to, as recorded at init (`None`: not
    /// recorded, e.g. keys stored by hand).
    pub seal: Option<SealKind>,
    /// Some entry exists (a share, the root token, the shape record):
    /// never an init over it.
    pub any: bool,
}

impl Presence {
    /// Shares of `seal`'s kind are stored (unrecorded shares count for
    /// either: the operator stored the keys this cluster hands out).
    pub fn shares_for(&self, seal: SealKind) -> bool {
        self.shares > 0 && self.seal.is_none_or(|s| s == seal)
    }
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
    /// What the store holds (no secret is read).
    async fn probe(&self) -> Result<Presence, KeyStoreError>;
    async fn read(&self) -> Result<StoredKeys, KeyStoreError>;
    /// Store keys that do not exist yet. Refuses if any entry exists.
    async fn create(&self, keys: &StoredKeys) -> Result<(), KeyStoreError>;
    /// Right before a fresh init: prove that `create` would succeed — the
    /// store is still empty *and* writable — so init never creates a
    /// barrier whose keys cannot be stored. Stores nothing.
    async fn check_create(&self) -> Result<(), KeyStoreError> {
        if self.probe().await?.any {
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
    async fn probe(&self) -> Result<Presence, KeyStoreError> {
        Err(KeyStoreError::unavailable(self.location(), &self.reason))
    }
    async fn read(&self) -> Result<StoredKeys, KeyStoreError> {
        Err(KeyStoreError::unavailable(self.location(), &self.reason))
    }
    async fn create(&self, _keys: &StoredKeys) -> Result<(), KeyStoreError> {
        Err(KeyStoreError::unavailable(self.location(), &self.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::KeyShape;
    use crate::cluster::SealKind;

    #[test]
    fn a_key_shape_record_round_trips_and_impossible_ones_are_ignored() {
        for seal in [None, Some(SealKind::Shamir), Some(SealKind::Auto)] {
            let s = KeyShape {
                shares: 5,
                threshold: 3,
                seal,
            };
            assert_eq!(KeyShape::from_record(&s.to_record()), Some(s));
        }
        assert_eq!(
            KeyShape::from_record("{\"shares\":3,\"threshold\":2,\"seal\":\"auto\"}")
                .and_then(|s| s.seal),
            Some(SealKind::Auto)
        );
        assert_eq!(
            KeyShape::from_record(" {\"shares\":1,\"threshold\":1}\n").map(|s| s.shares),
            Some(1)
        );
        for bad in [
            "",
            "3/2",
            "{\"shares\":2,\"threshold\":3}",
            "{\"shares\":2,\"threshold\":0}",
            "{\"shares\":3,\"threshold\":2,\"extra\":1}",
            "{\"shares\":3,\"threshold\":2,\"seal\":\"kms\"}",
        ] {
            assert_eq!(KeyShape::from_record(bad), None, "{bad}");
        }
    }
}
