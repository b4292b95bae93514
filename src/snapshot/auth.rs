//! Stage: the snapshot archive — offline authentication with the unseal keys.
//! Pure: no network, no async; the only I/O is reading the snapshot handed in.
//!
//! # What OpenBao seals
//!
//! Every raft snapshot of a Shamir-sealed OpenBao holds `SHA256SUMS` (one
//! `<hex>  <name>` line each for `meta.json` and `state.bin`) and
//! `SHA256SUMS.sealed`: the same bytes encrypted by the server's seal when it
//! wrote the snapshot (measured on OpenBao 2.7.2 and read in its source):
//!
//! - `SHA256SUMS.sealed` is a protobuf `BlobInfo` (go-kms-wrapping v2) whose
//!   field 1 is `nonce(12) ‖ AES-GCM ciphertext ‖ tag(16)` with no additional
//!   data, field 5 an empty `KeyInfo` ([`blob`]);
//! - the AES key is the *unseal key*: the key shares from `sys/init` (or
//!   from the last rekey) combined with hashicorp's Shamir scheme over GF(2⁸)
//!   ([`shamir`]); a 1-of-1 barrier's single share is the key itself;
//! - it opens to the lines of `SHA256SUMS`, byte for byte — but not always
//!   in the same order: OpenBao encodes the sums twice from one Go map (once
//!   for `SHA256SUMS`, once for the copy it seals) and Go randomises map
//!   order, so in about a third of real snapshots (7 of 28 measured on
//!   2.7.2) the two lines are swapped.
//!   The comparison is therefore of the lines as a multiset, each line
//!   byte for byte; OpenBao's own check (`DecodeAndVerify`) ignores the
//!   order too.
//!
//! OpenBao itself checks this on a plain (non-force) restore, and refuses a
//! snapshot that its running seal cannot open ("could not verify hash file").
//!
//! # What "authentic" proves
//!
//! [`Authenticity::Authentic`] — the sealed sums open under the key combined
//! from the given shares and hold exactly the lines of `SHA256SUMS` — proves,
//! without any server:
//!
//! 1. the snapshot was written by a barrier whose unseal key is the one these
//!    shares combine to (GCM's tag is a MAC under that key: nobody without
//!    the key could have made it); so after a restore these keys unseal it;
//! 2. `SHA256SUMS` is the one that barrier wrote. Together with the archive
//!    check ([`super::verify_reader`]: both digests match), `meta.json` (so
//!    its Index and Term) and `state.bin` are the bytes OpenBao wrote.
//!
//! [`authenticate_reader`]/[`authenticate_file`] do both in one pass; the
//! pure [`authenticate`] only proves 1 and that `SHA256SUMS` is sealed.
//!
//! It does not prove the snapshot is recent, nor that it comes from a given
//! cluster rather than another one sharing the same keys (a restored copy,
//! a cluster the same snapshot was force-restored into). `KeyInfo` and any
//! other protobuf framing around the ciphertext is not authenticated (by
//! OpenBao neither); only the ciphertext field is.
//!
//! A rekey (`bao operator rekey`; in 2.x the authenticated
//! `sys/rotate/root/init` + `update`) gives the barrier a new unseal key (and
//! a new root key): snapshots taken before it authenticate with the old
//! shares only, later ones with the new — and OpenBao's plain restore
//! refuses the older ones likewise. Rotating the root key alone
//! (`sys/rotate/root`, measured) or the keyring (`sys/rotate`, by the
//! source) keeps the unseal key.
//!
//! Must never log, print or keep key material: decoded shares and the
//! combined key live in [`Zeroizing`] buffers (wiped on drop), errors name
//! shares by position only, and the AES key schedule is wiped on drop
//! (`aes-gcm`'s `zeroize` feature). Must never panic on input.

pub mod blob;
pub mod shamir;
pub mod tag;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Nonce};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, aes::Aes192};
use base64::Engine as _;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::secret::Secret;

pub use blob::{BlobError, BlobInfo, KeyInfo};
pub use shamir::{combine, unseal_key};

use super::{Identity, VerifyError};

/// Bytes of the GCM nonce in front of the ciphertext.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag after the ciphertext.
pub const TAG_LEN: usize = 16;

/// The verdict on a snapshot's sealed sums under a set of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authenticity {
    /// `SHA256SUMS.sealed` opens under the combined key and holds the same
    /// lines as `SHA256SUMS`, byte for byte, in either order (see the module
    /// docs for why the order may differ and for what this proves).
    Authentic,
    /// The GCM tag does not verify: the sums were sealed under another
    /// unseal key — another cluster, this cluster before or after a rekey,
    /// or fewer shares than the threshold (that combines to a wrong key) —
    /// or the sealed ciphertext was altered. The two cannot be told apart.
    OtherKeys,
    /// The sealed sums open (these keys sealed them) but their lines differ
    /// from `SHA256SUMS`'s: `SHA256SUMS` was altered — and with it, in any
    /// archive that passes verification, `meta.json` or `state.bin` — or
    /// belongs to another snapshot sealed under the same keys.
    SumsMismatch,
}

impl Authenticity {
    pub fn is_authentic(self) -> bool {
        self == Authenticity::Authentic
    }
}

/// A verified snapshot and the verdict on its sealed sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authenticated {
    pub identity: Identity,
    pub authenticity: Authenticity,
}

/// Why no verdict could be reached. Never carries key material: shares are
/// named by their position in the list given.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum AuthError {
    #[error("no unseal key shares were given")]
    #[diagnostic(code("snapshot-auth::no-shares"))]
    NoShares,

    #[error(
        "one key share of {len} bytes is not enough: a share of a split key needs at least one more, and a lone unseal key (1-of-1) is 16, 24 or 32 bytes"
    )]
    #[diagnostic(code("snapshot-auth::too-few-shares"))]
    TooFewShares { len: usize },

    #[error("key share {index} is neither hex nor base64")]
    #[diagnostic(
        code("snapshot-auth::share-encoding"),
        help("store the shares as OpenBao's sys/init returns them (`keys` or `keys_base64`)")
    )]
    ShareEncoding { index: usize },

    #[error("key share {index} is {len} bytes, share 0 is {expected}: not shares of one key")]
    #[diagnostic(code("snapshot-auth::share-length"))]
    ShareLengthMismatch {
        index: usize,
        len: usize,
        expected: usize,
    },

    #[error(
        "key share {index} is {len} bytes; a share is at least 2 (key bytes and an x-coordinate)"
    )]
    #[diagnostic(code("snapshot-auth::share-length"))]
    ShareTooShort { index: usize, len: usize },

    #[error("key shares {first} and {second} have the same x-coordinate (the same share twice?)")]
    #[diagnostic(code("snapshot-auth::duplicate-share"))]
    DuplicateShare { first: usize, second: usize },

    #[error("key share {index} has x-coordinate 0, which no real share has")]
    #[diagnostic(code("snapshot-auth::share-coordinate"))]
    ZeroCoordinate { index: usize },

    #[error("the combined unseal key is {len} bytes; AES needs 16, 24 or 32")]
    #[diagnostic(code("snapshot-auth::key-length"))]
    KeyLength { len: usize },

    #[error("SHA256SUMS.sealed is not a protobuf BlobInfo: {0}")]
    #[diagnostic(code("snapshot-auth::sealed-format"))]
    SealedFormat(#[source] BlobError),

    #[error(
        "SHA256SUMS.sealed holds {len} ciphertext bytes, fewer than a GCM nonce and tag ({})",
        NONCE_LEN + TAG_LEN
    )]
    #[diagnostic(code("snapshot-auth::sealed-format"))]
    SealedTooShort { len: usize },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Snapshot(#[from] VerifyError),
}

impl AuthError {
    /// A stable kebab-case name (the tail of the miette code); a snapshot
    /// that fails verification gives the verifier's check name.
    pub fn check(&self) -> &'static str {
        match self {
            AuthError::NoShares => "no-shares",
            AuthError::TooFewShares { .. } => "too-few-shares",
            AuthError::ShareEncoding { .. } => "share-encoding",
            AuthError::ShareLengthMismatch { .. } | AuthError::ShareTooShort { .. } => {
                "share-length"
            }
            AuthError::DuplicateShare { .. } => "duplicate-share",
            AuthError::ZeroCoordinate { .. } => "share-coordinate",
            AuthError::KeyLength { .. } => "key-length",
            AuthError::SealedFormat(_) | AuthError::SealedTooShort { .. } => "sealed-format",
            AuthError::Snapshot(e) => e.check(),
        }
    }
}

/// Go's `base64.StdEncoding` (padded, trailing bits not checked).
const GO_STD_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Decodes one stored key share as OpenBao's `sys/unseal` does: hex when it
/// is hex of 16 ..= 33 bytes, else standard base64 (`keys` / `keys_base64`
/// of `sys/init` and `sys/rekey/update`). `index` only names it in errors.
pub fn decode_share(share: &Secret, index: usize) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let text = share.expose();
    if let Ok(bytes) = hex::decode(text) {
        let bytes = Zeroizing::new(bytes);
        if (16..=33).contains(&bytes.len()) {
            return Ok(bytes);
        }
    }
    GO_STD_BASE64
        .decode(text)
        .map(Zeroizing::new)
        .map_err(|_| AuthError::ShareEncoding { index })
}

/// [`authenticate_raw`] with the shares as stored (see [`decode_share`]),
/// e.g. `StoredKeys::keys`. Which shares and how many: any that together
/// reach the threshold (extra ones do no harm); fewer give
/// [`Authenticity::OtherKeys`] (or [`AuthError::TooFewShares`] for one).
pub fn authenticate(
    sealed: &[u8],
    sums: &[u8],
    shares: &[Secret],
) -> Result<Authenticity, AuthError> {
    let decoded = decode_shares(shares)?;
    let parts: Vec<&[u8]> = decoded.iter().map(|d| d.as_slice()).collect();
    authenticate_raw(sealed, sums, &parts)
}

/// Every stored share decoded ([`decode_share`]); wiped on drop.
fn decode_shares(shares: &[Secret]) -> Result<Vec<Zeroizing<Vec<u8>>>, AuthError> {
    shares
        .iter()
        .enumerate()
        .map(|(i, s)| decode_share(s, i))
        .collect()
}

/// The unseal key the stored `shares` (hex or base64) combine to
/// ([`unseal_key`]), for checking many snapshots with one combination.
pub fn key_from_shares(shares: &[Secret]) -> Result<Zeroizing<Vec<u8>>, AuthError> {
    let decoded = decode_shares(shares)?;
    let parts: Vec<&[u8]> = decoded.iter().map(|d| d.as_slice()).collect();
    unseal_key(&parts)
}

/// Opens `sealed` (the bytes of `SHA256SUMS.sealed`) under the unseal key the
/// raw `shares` combine to ([`unseal_key`]) and compares the result with
/// `sums` (the bytes of `SHA256SUMS`) line by line ([`same_lines`]). Errors
/// for malformed shares or blob; otherwise the [`Authenticity`].
pub fn authenticate_raw(
    sealed: &[u8],
    sums: &[u8],
    shares: &[&[u8]],
) -> Result<Authenticity, AuthError> {
    let blob = blob::parse(sealed).map_err(AuthError::SealedFormat)?;
    let key = unseal_key(shares)?;
    open_and_compare(&blob, sums, &key)
}

/// [`authenticate_raw`] with the combined unseal key itself.
pub fn authenticate_with_key(
    sealed: &[u8],
    sums: &[u8],
    key: &[u8],
) -> Result<Authenticity, AuthError> {
    let blob = blob::parse(sealed).map_err(AuthError::SealedFormat)?;
    open_and_compare(&blob, sums, key)
}

fn open_and_compare(
    blob: &BlobInfo<'_>,
    sums: &[u8],
    key: &[u8],
) -> Result<Authenticity, AuthError> {
    let ct = blob.ciphertext;
    if ct.len() < NONCE_LEN + TAG_LEN {
        return Err(AuthError::SealedTooShort { len: ct.len() });
    }
    let (nonce, body) = ct.split_at(NONCE_LEN);
    let opened = match key.len() {
        16 => open::<Aes128Gcm>(key, nonce, body),
        24 => open::<AesGcm<Aes192, U12>>(key, nonce, body),
        32 => open::<Aes256Gcm>(key, nonce, body),
        len => return Err(AuthError::KeyLength { len }),
    };
    Ok(match opened {
        None => Authenticity::OtherKeys,
        Some(plain) if same_lines(&plain, sums) => Authenticity::Authentic,
        Some(_) => Authenticity::SumsMismatch,
    })
}

/// The same lines (each with its `\n`, if any), byte for byte, in any
/// order: equal as multisets. Any change of a byte changes the multiset.
pub fn same_lines(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    sorted_lines(a) == sorted_lines(b)
}

fn sorted_lines(x: &[u8]) -> Vec<&[u8]> {
    let mut v: Vec<&[u8]> = x.split_inclusive(|&c| c == b'\n').collect();
    v.sort_unstable();
    v
}

/// AES-GCM open with a 12-byte nonce and no additional data; `None` when
/// the tag does not verify.
fn open<C: KeyInit + Aead<NonceSize = U12>>(
    key: &[u8],
    nonce: &[u8],
    body: &[u8],
) -> Option<Vec<u8>> {
    let cipher = C::new_from_slice(key).ok()?;
    let nonce = Nonce::<C>::try_from(nonce).ok()?;
    cipher.decrypt(&nonce, body).ok()
}

/// Verifies the snapshot read from `r` ([`super::verify_reader`]: every
/// check, one streaming pass) and authenticates its sealed sums with the
/// stored `shares`. `Authentic` here proves all of the module docs' points.
pub fn authenticate_reader<R: Read>(r: R, shares: &[Secret]) -> Result<Authenticated, AuthError> {
    let s = super::sealed_sums_reader(r)?;
    let authenticity = authenticate(&s.sealed, &s.sums, shares)?;
    Ok(Authenticated {
        identity: s.identity,
        authenticity,
    })
}

/// [`authenticate_reader`] on a file.
pub fn authenticate_file(path: &Path, shares: &[Secret]) -> Result<Authenticated, AuthError> {
    let file = File::open(path).map_err(VerifyError::Io)?;
    authenticate_reader(file, shares)
}

#[cfg(test)]
mod tests;
