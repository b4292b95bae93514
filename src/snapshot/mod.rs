//! Stage: the snapshot archive — verification and identity. Pure: no network,
//! no async, no writes; the only I/O is reading the snapshot handed in.
//!
//! An OpenBao raft snapshot (`GET /v1/sys/storage/raft/snapshot`) is a gzip
//! stream of a tar archive holding exactly four regular files: `meta.json`
//! (hashicorp/raft `SnapshotMeta`), `state.bin` (the encrypted state),
//! `SHA256SUMS` (`<hex>  <name>` lines for meta.json and state.bin) and a
//! non-empty `SHA256SUMS.sealed`. [`verify_reader`] checks all of it in one
//! streaming pass with constant memory (a few MiB, whatever the size of
//! `state.bin`) and returns the snapshot's [`Identity`]:
//!
//! 1. the stored bytes are SHA-256-hashed on a second thread (`source`);
//! 2. the gzip stream is inflated strictly: headers, every member's CRC32 and
//!    ISIZE trailer (OpenBao itself ignores a damaged trailer; snapward does
//!    not), and nothing after the last member (`gzip`);
//! 3. the tar archive must hold the four entries once each, in any order, as
//!    regular files with bare names, then the two-zero-block end marker and
//!    at most 1 MiB of zero padding; small entries are capped at 8 KiB
//!    (`archive`);
//! 4. both digests in `SHA256SUMS` must match and meta.json `Size` must equal
//!    the length of `state.bin`;
//! 5. what the layers inflate is capped ([`Limits`], `limits`): at most
//!    `max_bytes` (default 64 GiB) and at most 1032 times the bytes read
//!    from the file so far, and a `state.bin` header announcing more than
//!    `max_bytes` is refused before its bytes are read — so a small hostile
//!    file (a nested gzip layer, a base-256 tar size) costs work in
//!    proportion to its size, not hours.
//!
//! A problem inside the archive is reported only after the whole stream was
//! read and its gzip trailers held, so a damaged download is reported as
//! such (`truncated`, `gzip-trailer`) rather than as one of its symptoms.
//!
//! [`sealed_sums_reader`] is the same pass, also returning the bytes of
//! `SHA256SUMS` and `SHA256SUMS.sealed`; [`auth`] authenticates those with
//! the unseal keys, offline.
//!
//! Must never extract anything, buffer `state.bin`, talk to a server, or
//! panic on input data.

mod archive;
pub mod auth;
mod error;
mod gzip;
mod limits;
mod source;
mod streaming;

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use archive::{SMALL_ENTRY_LIMIT, TAR_PADDING_LIMIT};
pub use error::{Layer, VerifyError};
pub use limits::{DEFAULT_MAX_SNAPSHOT_BYTES, Limits, MAX_INFLATE_RATIO};
pub use streaming::VerifyingWriter;

use archive::read_full;
use gzip::Gunzip;
use limits::Capped;
use source::{CHUNK, Source};

/// What identifies a verified snapshot: its raft position (from `meta.json`)
/// and the file exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Raft index of the last log entry the snapshot covers (meta `Index`).
    pub index: u64,
    /// Raft term of that entry (meta `Term`).
    pub term: u64,
    /// hashicorp/raft snapshot format version (meta `Version`).
    pub version: u64,
    /// Length of `state.bin`, equal to meta `Size`.
    pub state_size: u64,
    /// Bytes of the file as stored.
    pub file_size: u64,
    /// Lowercase hex SHA-256 of the whole file as stored.
    pub sha256: String,
}

/// Verifies a snapshot read from `r` (see the module docs for every check)
/// and returns its identity. `r` is read exactly to its end, once.
///
/// Also accepts a gzip-compressed snapshot as Vault and operators store them:
/// when the bytes inside the first gzip layer are gzip again (magic `1f 8b`),
/// as in a `.snap.gz` made by running `gzip` on a `.snap`, that one extra
/// layer is unwrapped and checked just as strictly (its own trailer, nothing
/// after it). The identity's `file_size` and `sha256` still describe the
/// bytes as stored, i.e. the `.snap.gz`.
pub fn verify_reader<R: Read>(r: R) -> Result<Identity, VerifyError> {
    sealed_sums_reader(r).map(|s| s.identity)
}

/// A verified snapshot's identity and its two small integrity entries, for
/// [`auth`]. Each is at most [`SMALL_ENTRY_LIMIT`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSums {
    pub identity: Identity,
    /// The bytes of `SHA256SUMS`.
    pub sums: Vec<u8>,
    /// The bytes of `SHA256SUMS.sealed` (non-empty).
    pub sealed: Vec<u8>,
}

/// [`verify_reader`] (every check, one pass, `r` read to its end), also
/// returning the bytes of `SHA256SUMS` and `SHA256SUMS.sealed`. OpenBao
/// writes them after `state.bin`, so this inflates the whole stream.
pub fn sealed_sums_reader<R: Read>(r: R) -> Result<SealedSums, VerifyError> {
    sealed_sums_reader_with(r, Limits::default())
}

/// [`sealed_sums_reader`] with other [`Limits`] than the defaults.
pub fn sealed_sums_reader_with<R: Read>(r: R, limits: Limits) -> Result<SealedSums, VerifyError> {
    let mut src = Source::new(r);
    let contents = read_archive(&mut src, limits)?;
    let (file_size, sha256) = src.finish()?;
    let checked = contents.conclude()?;
    Ok(SealedSums {
        identity: Identity {
            index: checked.meta.index,
            term: checked.meta.term,
            version: checked.meta.version,
            state_size: checked.meta.size,
            file_size,
            sha256,
        },
        sums: checked.sums,
        sealed: checked.sealed,
    })
}

/// [`sealed_sums_reader`] on a file; failing to open it is
/// [`VerifyError::Io`].
pub fn sealed_sums_file(path: &Path) -> Result<SealedSums, VerifyError> {
    sealed_sums_file_with(path, Limits::default())
}

/// [`sealed_sums_file`] with other [`Limits`] than the defaults.
pub fn sealed_sums_file_with(path: &Path, limits: Limits) -> Result<SealedSums, VerifyError> {
    let file = File::open(path).map_err(VerifyError::Io)?;
    sealed_sums_reader_with(file, limits)
}

/// [`verify_reader`] on a file; failing to open or read it is
/// [`VerifyError::Io`] (check `io`).
pub fn verify_file(path: &Path) -> Result<Identity, VerifyError> {
    verify_file_with(path, Limits::default())
}

/// [`verify_file`] with other [`Limits`] than the defaults.
pub fn verify_file_with(path: &Path, limits: Limits) -> Result<Identity, VerifyError> {
    let file = File::open(path).map_err(VerifyError::Io)?;
    sealed_sums_reader_with(file, limits).map(|s| s.identity)
}

/// The one "newest" rule, used everywhere a snapshot is chosen: the higher
/// raft (index, term) wins — index first, then term — and only for the same
/// position does the later time (e.g. the time in the file name) decide.
/// `Greater` means `a` is newer.
pub fn newest_order(a: (&Identity, jiff::Timestamp), b: (&Identity, jiff::Timestamp)) -> Ordering {
    newest_key(a.0.index, a.0.term, a.1).cmp(&newest_key(b.0.index, b.0.term, b.1))
}

/// The sort key behind the one "newest" rule, for every caller (retention,
/// restore source choice, upload order): raft index, then term, then time.
pub fn newest_key(index: u64, term: u64, time: jiff::Timestamp) -> (u64, u64, jiff::Timestamp) {
    (index, term, time)
}

/// Inflates the outer gzip layer (and one extra, if present) and walks the
/// archive to the very end of the stream, within `limits`.
fn read_archive<R: Read>(
    src: &mut Source<R>,
    limits: Limits,
) -> Result<archive::Contents, VerifyError> {
    let stored = src.consumed();
    // Small buffer: it only serves the magic peek and tar headers; big reads
    // of state.bin bypass it.
    let mut outer = BufReader::with_capacity(64 * 1024, Gunzip::new(src, Layer::Outer));
    let mut magic = [0u8; 2];
    let n = read_full(&mut outer, &mut magic)?;
    let stream = magic.get(..n).unwrap_or(&[]).chain(outer);
    let mut buf = vec![0u8; CHUNK];
    let max = limits.max_bytes;
    if magic == [0x1f, 0x8b] && n == 2 {
        let inner = Gunzip::new(stream, Layer::Inner);
        archive::walk(&mut Capped::new(inner, stored, limits), &mut buf, max)
    } else {
        archive::walk(&mut Capped::new(stream, stored, limits), &mut buf, max)
    }
}

#[cfg(test)]
mod tests;
