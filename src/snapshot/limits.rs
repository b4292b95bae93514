//! Stage: snapshot verification — how much a snapshot may inflate.
//!
//! A few MiB on disk can inflate without bound: deflate alone reaches at
//! most ~1032:1, but the `.snap.gz` form nests a second gzip layer
//! (~1032² : 1), and a tar header may announce any `state.bin` size
//! (base-256 sizes reach 2^95). [`Capped`] counts the bytes the archive walk
//! reads (after every gzip layer) and fails the read once they exceed
//! [`Limits::max_bytes`] or [`MAX_INFLATE_RATIO`] times the bytes consumed
//! from the file so far (plus [`RATIO_ALLOWANCE`]); the walk also refuses a
//! `state.bin` header larger than `max_bytes` before reading it. So the
//! work is bounded by the file's size, not by what it claims.
//!
//! Must never stop a real snapshot: a single gzip layer (what OpenBao
//! writes, or a `.snap.gz` of it) cannot pass the ratio.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use super::error::VerifyError;

/// The default [`Limits::max_bytes`]: 64 GiB of tar (OpenBao's raft
/// storage is rarely more than a few GiB).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

/// Inflated bytes allowed per stored byte: deflate's own maximum (a 258-byte
/// match coded in 2 bits), so only nested layers exceed it.
pub const MAX_INFLATE_RATIO: u64 = 1032;

/// Inflated bytes allowed whatever the ratio: tar headers and up to
/// [`super::TAR_PADDING_LIMIT`] of zero padding in a tiny file.
pub const RATIO_ALLOWANCE: u64 = 2 << 20;

/// Bounds on what verification inflates (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the tar archive inside may hold (after every gzip
    /// layer); also the largest `state.bin` a tar header may announce.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }
}

/// The inflated stream, cut off at the limits (see the module docs).
pub(crate) struct Capped<R> {
    inner: R,
    /// Bytes consumed from the file so far ([`super::source::Source`]).
    stored: Rc<Cell<u64>>,
    inflated: u64,
    limits: Limits,
}

impl<R: Read> Capped<R> {
    pub(crate) fn new(inner: R, stored: Rc<Cell<u64>>, limits: Limits) -> Self {
        Self {
            inner,
            stored,
            inflated: 0,
            limits,
        }
    }

    fn check(&self) -> Result<(), VerifyError> {
        if self.inflated > self.limits.max_bytes {
            return Err(VerifyError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        let stored = self.stored.get();
        let allowed = stored
            .saturating_mul(MAX_INFLATE_RATIO)
            .saturating_add(RATIO_ALLOWANCE);
        if self.inflated > allowed {
            return Err(VerifyError::InflateRatio {
                ratio: MAX_INFLATE_RATIO,
                inflated: self.inflated,
                stored,
            });
        }
        Ok(())
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Checked before reading too: once over, every read fails.
        self.check().map_err(VerifyError::into_io)?;
        let n = self.inner.read(out)?;
        self.inflated = self.inflated.saturating_add(n as u64);
        self.check().map_err(VerifyError::into_io)?;
        Ok(n)
    }
}
