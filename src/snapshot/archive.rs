//! Stage: snapshot verification, layer 2 — the tar archive and its entries.
//!
//! [`walk`] reads the decompressed stream as a strict tar archive: exactly the
//! four regular-file entries `meta.json`, `state.bin`, `SHA256SUMS` and
//! `SHA256SUMS.sealed`, in any order, then the end-of-archive marker (two zero
//! blocks) and nothing but zero padding up to the end of the stream. It hashes
//! `meta.json` and `state.bin` while streaming them and parses the small
//! entries; [`Contents::conclude`] then compares sums and sizes.
//!
//! Must never buffer `state.bin` (GiBs), read a small entry beyond its 8 KiB
//! cap, follow or create any path (nothing is extracted), or panic on input.

use std::io::{self, Read};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::VerifyError;

pub(crate) const META: &str = "meta.json";
pub(crate) const STATE: &str = "state.bin";
pub(crate) const SUMS: &str = "SHA256SUMS";
pub(crate) const SEALED: &str = "SHA256SUMS.sealed";
/// Cap on `meta.json`, `SHA256SUMS` and `SHA256SUMS.sealed` (each is a few
/// hundred bytes in practice).
pub const SMALL_ENTRY_LIMIT: u64 = 8 * 1024;

const BLOCK: usize = 512;
/// Zero padding allowed after the end-of-archive marker: tar pads an archive
/// to a whole record, and records are at most 1 MiB (blocking factor 2048).
/// The limit also keeps a stream of zeros from being read forever.
pub const TAR_PADDING_LIMIT: u64 = 1 << 20;

/// The part of hashicorp/raft's `SnapshotMeta` snapward relies on. Other
/// fields (Peers, Configuration, ConfigurationIndex) may be present.
#[derive(Debug, Deserialize)]
pub(crate) struct Meta {
    #[serde(rename = "Version")]
    pub version: u64,
    /// Always "bolt-snapshot" in OpenBao 2.x; required, value not checked.
    #[serde(rename = "ID")]
    pub _id: String,
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "Term")]
    pub term: u64,
    #[serde(rename = "Size")]
    pub size: u64,
}

/// The two digests `SHA256SUMS` lists.
#[derive(Debug)]
pub(crate) struct Sums {
    pub meta: [u8; 32],
    pub state: [u8; 32],
}

/// What the walk found; every entry present exactly once when it succeeds.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    meta: Option<(Meta, [u8; 32])>,
    state: Option<(u64, [u8; 32])>,
    /// The parsed sums and the bytes of `SHA256SUMS`.
    sums: Option<(Sums, Vec<u8>)>,
    /// The bytes of `SHA256SUMS.sealed`.
    sealed: Option<Vec<u8>>,
}

/// The checked facts a [`super::Identity`] is made of.
pub(crate) struct Checked {
    pub meta: Meta,
    /// The bytes of `SHA256SUMS` and of `SHA256SUMS.sealed` (for
    /// authentication: `super::auth`).
    pub sums: Vec<u8>,
    pub sealed: Vec<u8>,
}

impl Contents {
    /// The checks that need every entry: presence, both sums, Size.
    pub(crate) fn conclude(self) -> Result<Checked, VerifyError> {
        let Some((meta, meta_sha)) = self.meta else {
            return Err(VerifyError::MissingEntry { name: META });
        };
        let Some((state_len, state_sha)) = self.state else {
            return Err(VerifyError::MissingEntry { name: STATE });
        };
        let Some((sums, sums_bytes)) = self.sums else {
            return Err(VerifyError::MissingEntry { name: SUMS });
        };
        let Some(sealed) = self.sealed else {
            return Err(VerifyError::MissingEntry { name: SEALED });
        };
        if sums.meta != meta_sha {
            return Err(VerifyError::Sha256MismatchMeta {
                listed: hex::encode(sums.meta),
                actual: hex::encode(meta_sha),
            });
        }
        if sums.state != state_sha {
            return Err(VerifyError::Sha256MismatchState {
                listed: hex::encode(sums.state),
                actual: hex::encode(state_sha),
            });
        }
        if meta.size != state_len {
            return Err(VerifyError::SizeMismatch {
                meta_size: meta.size,
                state_len,
            });
        }
        if sealed.is_empty() {
            return Err(VerifyError::SealedSumsEmpty);
        }
        Ok(Checked {
            meta,
            sums: sums_bytes,
            sealed,
        })
    }
}

/// Walks the archive to the end of the stream. A problem inside the archive
/// is reported only after the rest of the stream was read and its gzip
/// trailer held: when the stream itself is damaged, that is the real cause.
/// `buf` is scratch space for streaming (any size ≥ 512); a `state.bin`
/// header announcing more than `max_state` bytes is refused before its
/// bytes are read.
pub(crate) fn walk<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    max_state: u64,
) -> Result<Contents, VerifyError> {
    match walk_entries(r, buf, max_state) {
        Ok(c) => Ok(c),
        Err(e) if e.is_stream_level() => Err(e),
        Err(e) => match drain(r, buf, false) {
            Err(stream) if stream.is_stream_level() => Err(stream),
            _ => Err(e),
        },
    }
}

fn tar_err(detail: impl Into<String>) -> VerifyError {
    VerifyError::TarStructure {
        detail: detail.into(),
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, VerifyError> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|rest| !rest.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k.min(buf.len() - n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(VerifyError::from_io(e)),
        }
    }
    Ok(n)
}

/// Reads to the end of the stream; with `zeros_only`, anything but zero
/// padding of at most [`TAR_PADDING_LIMIT`] bytes is trailing data.
fn drain<R: Read>(r: &mut R, buf: &mut [u8], zeros_only: bool) -> Result<(), VerifyError> {
    let mut total: u64 = 0;
    loop {
        let n = read_full(r, buf)?;
        if n == 0 {
            return Ok(());
        }
        total += n as u64;
        if !zeros_only {
            continue;
        }
        if buf.get(..n).is_some_and(|b| b.iter().any(|&x| x != 0)) {
            return Err(VerifyError::TrailingTarData {
                detail: "non-zero bytes".into(),
            });
        }
        if total > TAR_PADDING_LIMIT {
            return Err(VerifyError::TrailingTarData {
                detail: format!("more than {TAR_PADDING_LIMIT} bytes of zero padding"),
            });
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Meta,
    State,
    Sums,
    Sealed,
}

fn walk_entries<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    max_state: u64,
) -> Result<Contents, VerifyError> {
    let mut contents = Contents::default();
    let mut block = [0u8; BLOCK];
    loop {
        let n = read_full(r, &mut block)?;
        if n == 0 {
            return Err(tar_err(
                "it ends without the end-of-archive marker (two zero blocks)",
            ));
        }
        if n < BLOCK {
            return Err(tar_err(format!(
                "it ends inside a header block ({n} of {BLOCK} bytes)"
            )));
        }
        if block.iter().all(|&b| b == 0) {
            let n = read_full(r, &mut block)?;
            if n < BLOCK || block.iter().any(|&b| b != 0) {
                return Err(tar_err(
                    "a lone zero block: the end-of-archive marker is two zero blocks",
                ));
            }
            drain(r, buf, true)?;
            return Ok(contents);
        }
        let (which, size) = check_header(&block, &contents)?;
        match which {
            Which::Meta => {
                if size > SMALL_ENTRY_LIMIT {
                    return Err(VerifyError::MetaTooLarge {
                        size,
                        limit: SMALL_ENTRY_LIMIT,
                    });
                }
                let bytes = read_small(r, size, META)?;
                let meta: Meta = serde_json::from_slice(&bytes).map_err(VerifyError::MetaJson)?;
                contents.meta = Some((meta, Sha256::digest(&bytes).into()));
            }
            Which::Sums => {
                if size > SMALL_ENTRY_LIMIT {
                    return Err(VerifyError::SumsTooLarge {
                        name: SUMS,
                        size,
                        limit: SMALL_ENTRY_LIMIT,
                    });
                }
                let bytes = read_small(r, size, SUMS)?;
                contents.sums = Some((parse_sums(&bytes)?, bytes));
            }
            Which::Sealed => {
                if size > SMALL_ENTRY_LIMIT {
                    return Err(VerifyError::SumsTooLarge {
                        name: SEALED,
                        size,
                        limit: SMALL_ENTRY_LIMIT,
                    });
                }
                contents.sealed = Some(read_small(r, size, SEALED)?);
            }
            Which::State => {
                if size > max_state {
                    return Err(VerifyError::StateTooLarge {
                        size,
                        limit: max_state,
                    });
                }
                let digest = hash_entry(r, size, buf)?;
                contents.state = Some((size, digest));
            }
        }
        skip_padding(r, size)?;
    }
}

/// Validates one header block; returns which entry it starts and its size.
fn check_header(block: &[u8; BLOCK], seen: &Contents) -> Result<(Which, u64), VerifyError> {
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(block);
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * u32::from(b' ');
    let listed = header
        .cksum()
        .map_err(|e| tar_err(format!("unreadable header checksum field: {e}")))?;
    if listed != sum {
        return Err(tar_err(format!(
            "header checksum mismatch (listed {listed}, computed {sum})"
        )));
    }
    let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
    let size = header
        .entry_size()
        .map_err(|e| tar_err(format!("unreadable size field: {e}")))?;
    let kind = header.entry_type();
    if !kind.is_file() {
        return Err(VerifyError::NotRegularFile {
            name,
            kind: kind_name(kind),
        });
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(VerifyError::EntryPath { name });
    }
    let (which, fixed) = match name.as_str() {
        META => (Which::Meta, META),
        STATE => (Which::State, STATE),
        SUMS => (Which::Sums, SUMS),
        SEALED => (Which::Sealed, SEALED),
        _ => return Err(VerifyError::UnexpectedEntry { name }),
    };
    let dup = match which {
        Which::Meta => seen.meta.is_some(),
        Which::State => seen.state.is_some(),
        Which::Sums => seen.sums.is_some(),
        Which::Sealed => seen.sealed.is_some(),
    };
    if dup {
        return Err(VerifyError::DuplicateEntry { name: fixed });
    }
    Ok((which, size))
}

fn kind_name(kind: tar::EntryType) -> String {
    use tar::EntryType as E;
    match kind {
        E::Link => "hard link".into(),
        E::Symlink => "symbolic link".into(),
        E::Char => "character device".into(),
        E::Block => "block device".into(),
        E::Directory => "directory".into(),
        E::Fifo => "FIFO".into(),
        E::Continuous => "contiguous file".into(),
        E::XHeader => "pax extended header".into(),
        E::XGlobalHeader => "pax global header".into(),
        E::GNULongName => "GNU long-name record".into(),
        E::GNULongLink => "GNU long-link record".into(),
        E::GNUSparse => "GNU sparse file".into(),
        other => format!("entry of type {:?}", char::from(other.as_byte())),
    }
}

/// Reads a small entry (size already checked against the cap).
fn read_small<R: Read>(r: &mut R, size: u64, name: &str) -> Result<Vec<u8>, VerifyError> {
    let len = usize::try_from(size.min(SMALL_ENTRY_LIMIT)).unwrap_or(0);
    let mut bytes = vec![0u8; len];
    if read_full(r, &mut bytes)? < len {
        return Err(tar_err(format!("it ends inside `{name}`")));
    }
    Ok(bytes)
}

/// Streams `size` bytes of an entry through SHA-256.
fn hash_entry<R: Read>(r: &mut R, size: u64, buf: &mut [u8]) -> Result<[u8; 32], VerifyError> {
    let mut h = Sha256::new();
    let mut left = size;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let Some(chunk) = buf.get_mut(..want) else {
            return Err(tar_err("internal: hash buffer"));
        };
        let n = match r.read(chunk) {
            Ok(0) => return Err(tar_err(format!("it ends inside `{STATE}`"))),
            Ok(n) => n.min(want),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(VerifyError::from_io(e)),
        };
        h.update(chunk.get(..n).unwrap_or_default());
        left -= n as u64;
    }
    Ok(h.finalize().into())
}

fn skip_padding<R: Read>(r: &mut R, size: u64) -> Result<(), VerifyError> {
    let pad = ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize;
    let mut scratch = [0u8; BLOCK];
    let pad_buf = scratch.get_mut(..pad).unwrap_or_default();
    if read_full(r, pad_buf)? < pad {
        return Err(tar_err("it ends inside an entry's padding"));
    }
    Ok(())
}

/// `SHA256SUMS`: one `<64 hex>  <name>` line each for meta.json and state.bin.
pub(crate) fn parse_sums(bytes: &[u8]) -> Result<Sums, VerifyError> {
    let fail = |detail: String| VerifyError::SumsFormat { detail };
    let text = std::str::from_utf8(bytes).map_err(|_| fail("it is not UTF-8 text".into()))?;
    let body = text.strip_suffix('\n').unwrap_or(text);
    let (mut meta, mut state) = (None, None);
    for (i, line) in body.split('\n').enumerate() {
        let lineno = i + 1;
        let Some((hash, name)) = line.split_once("  ") else {
            return Err(fail(format!("line {lineno} is not `<hex>  <name>`")));
        };
        let mut digest = [0u8; 32];
        if hash.len() != 64 || hex::decode_to_slice(hash, &mut digest).is_err() {
            return Err(fail(format!(
                "line {lineno}: `{}` is not a SHA-256 in hex",
                hash.chars().take(80).collect::<String>()
            )));
        }
        let slot = match name {
            META => &mut meta,
            STATE => &mut state,
            other => {
                return Err(fail(format!(
                    "line {lineno} lists `{}`, expected only {META} and {STATE}",
                    other.chars().take(80).collect::<String>()
                )));
            }
        };
        if slot.replace(digest).is_some() {
            return Err(fail(format!("line {lineno} lists `{name}` a second time")));
        }
    }
    match (meta, state) {
        (Some(meta), Some(state)) => Ok(Sums { meta, state }),
        (None, _) => Err(fail(format!("no line for {META}"))),
        (_, None) => Err(fail(format!("no line for {STATE}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const H: &str = "4392c52f24296e1958679de44ee7a34e801f1ef10d3351380d11f8167cf5348e";

    #[rstest]
    #[case::real(format!("{H}  meta.json\n{H}  state.bin\n"))]
    #[case::no_final_newline(format!("{H}  meta.json\n{H}  state.bin"))]
    #[case::reordered(format!("{H}  state.bin\n{H}  meta.json\n"))]
    #[case::uppercase_hex(format!("{}  meta.json\n{H}  state.bin\n", H.to_uppercase()))]
    fn sums_accepted(#[case] text: String) {
        assert!(parse_sums(text.as_bytes()).is_ok());
    }

    #[rstest]
    #[case::empty(String::new())]
    #[case::one_space(format!("{H} meta.json\n{H}  state.bin\n"))]
    #[case::short_hash(format!("{}  meta.json\n{H}  state.bin\n", &H[1..]))]
    #[case::not_hex(format!("{}x  meta.json\n{H}  state.bin\n", &H[1..]))]
    #[case::missing_state(format!("{H}  meta.json\n"))]
    #[case::extra_name(format!("{H}  meta.json\n{H}  state.bin\n{H}  other\n"))]
    #[case::duplicate(format!("{H}  meta.json\n{H}  meta.json\n{H}  state.bin\n"))]
    #[case::blank_line(format!("{H}  meta.json\n\n{H}  state.bin\n"))]
    #[case::crlf(format!("{H}  meta.json\r\n{H}  state.bin\r\n"))]
    fn sums_refused(#[case] text: String) {
        let err = parse_sums(text.as_bytes()).err();
        assert_eq!(err.map(|e| e.check()), Some("sums-format"));
    }
}
