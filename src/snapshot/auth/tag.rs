//! Object tags: what lets a HEAD (no download) authenticate a stored
//! snapshot's claims — its name, size, SHA-256, raft index and term, and the
//! id of the cluster it was taken from.
//!
//! Why a tag and not the snapshot's own sealed sums: a retention decision
//! reads every object's claims on every run, and an S3 listing gives only
//! metadata (2 KiB of it). The sealed sums authenticate the archive's
//! content, but checking them needs the whole file. So at upload snapward
//! writes, next to the claims, `HMAC-SHA256(object key, claims)`; whoever
//! can write to the bucket but does not hold the unseal keys cannot make a
//! tag that verifies, so a forged object (huge index, a name in the future)
//! is never counted, never deleted, never restored.
//!
//! The object key is derived, not stored: `HKDF-SHA256(ikm = the unseal key
//! the stored shares combine to, info = "snapward object tag v1")`. It needs
//! nothing new in the key store (the shares are what a restore needs
//! anyway), any threshold subset of the shares gives the same key, and the
//! unseal key itself never signs anything. After a rekey the key changes:
//! objects tagged before it no longer verify — like their sealed sums,
//! which the new shares do not open either (see [`super::Authenticity`]).
//!
//! The claims are encoded unambiguously: a version string, then each field
//! as its length (u64, big-endian) and its bytes.
//!
//! Must never: log or print the key (it lives in a [`Zeroizing`] buffer),
//! or compare tags in variable time (`hmac`'s `verify_slice`).

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The HKDF `info` (domain separation from every other use of the key).
const INFO: &[u8] = b"snapward object tag v1";
/// First field of every tagged message.
const VERSION: &[u8] = b"snapward-object-v1";

/// The key object tags are made and checked with (32 bytes, wiped on drop).
pub struct ObjectKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey([redacted])")
    }
}

/// What a stored object says about itself; the tag covers every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'a> {
    /// File name without the target prefix (`openbao-20261128-021500.snap`).
    pub name: &'a str,
    pub size: u64,
    /// Lowercase hex SHA-256 of the file as stored.
    pub sha256: &'a str,
    pub index: u64,
    pub term: u64,
    /// The cluster the snapshot was taken from (`sys/seal-status`
    /// `cluster_id`); empty when it was not known.
    pub cluster_id: &'a str,
}

impl ObjectKey {
    /// The object key of the barrier whose unseal key is `unseal_key`
    /// (e.g. [`super::key_from_shares`]).
    pub fn derive(unseal_key: &[u8]) -> Self {
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit (255 × 32): cannot fail.
        let _ = Hkdf::<Sha256>::new(None, unseal_key).expand(INFO, okm.as_mut_slice());
        Self(okm)
    }

    fn mac(&self, claims: &Claims<'_>) -> Hmac<Sha256> {
        // HMAC takes a key of any length: cannot fail.
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        let size = claims.size.to_be_bytes();
        let index = claims.index.to_be_bytes();
        let term = claims.term.to_be_bytes();
        for field in [
            VERSION,
            claims.name.as_bytes(),
            &size,
            claims.sha256.as_bytes(),
            &index,
            &term,
            claims.cluster_id.as_bytes(),
        ] {
            m.update(&(field.len() as u64).to_be_bytes());
            m.update(field);
        }
        m
    }

    /// The tag of `claims`: lowercase hex.
    pub fn tag(&self, claims: &Claims<'_>) -> String {
        hex::encode(self.mac(claims).finalize().into_bytes())
    }

    /// Does `tag` (hex, as stored) authenticate `claims`? Constant-time in
    /// the tag's bytes; malformed hex is simply "no".
    pub fn verify(&self, claims: &Claims<'_>, tag: &str) -> bool {
        match hex::decode(tag.trim()) {
            Ok(bytes) => self.mac(claims).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims<'static> {
        Claims {
            name: "openbao-20261128-021500.snap",
            size: 4096,
            sha256: "ab".repeat(32).leak(),
            index: 42,
            term: 3,
            cluster_id: "8d0c4d1e-6b43-a4e1-0f6a-6f43c1a9e9b2",
        }
    }

    #[test]
    fn a_tag_verifies_under_its_key_only() {
        let k = ObjectKey::derive(&[7u8; 32]);
        let t = k.tag(&claims());
        assert_eq!(t.len(), 64);
        assert!(k.verify(&claims(), &t));
        assert!(!ObjectKey::derive(&[8u8; 32]).verify(&claims(), &t));
        assert!(!k.verify(&claims(), "not hex"));
        assert!(!k.verify(&claims(), ""));
    }

    #[test]
    fn every_claim_is_covered() {
        let k = ObjectKey::derive(&[7u8; 32]);
        let t = k.tag(&claims());
        let sha = "cd".repeat(32);
        let changed = [
            Claims {
                name: "openbao-20991231-235959.snap",
                ..claims()
            },
            Claims {
                size: 4097,
                ..claims()
            },
            Claims {
                sha256: &sha,
                ..claims()
            },
            Claims {
                index: u64::MAX,
                ..claims()
            },
            Claims {
                term: 4,
                ..claims()
            },
            Claims {
                cluster_id: "",
                ..claims()
            },
        ];
        for c in changed {
            assert!(!k.verify(&c, &t), "{c:?} must not verify");
        }
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        // Length prefixes: moving bytes between adjacent string fields
        // changes the message.
        let k = ObjectKey::derive(&[1u8; 16]);
        let a = Claims {
            name: "ab",
            sha256: "c",
            ..claims()
        };
        let b = Claims {
            name: "a",
            sha256: "bc",
            ..claims()
        };
        assert_ne!(k.tag(&a), k.tag(&b));
    }

    #[test]
    fn the_key_never_prints() {
        let k = ObjectKey::derive(&[0x41u8; 32]);
        assert_eq!(format!("{k:?}"), "ObjectKey([redacted])");
    }
}
