//! Stage: snapshot verification, layer 0 — the bytes exactly as stored.
//!
//! [`Source`] is a `BufRead` over the caller's reader that counts the bytes
//! and SHA-256-hashes them (the file's identity) as they are consumed. The
//! hashing runs on a second thread fed with big buffers through a bounded
//! channel, so it overlaps with inflating and hashing `state.bin` on the
//! caller's thread. Memory is bounded by `QUEUE + 2` buffers of `CHUNK` bytes.
//!
//! Must never interpret the bytes, hold more than those buffers, or panic on
//! input; a read error is reported as `VerifyError::Io`.

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{self, JoinHandle};

use sha2::{Digest, Sha256};

use super::error::VerifyError;

/// Size of each read from the underlying reader.
pub(crate) const CHUNK: usize = 1 << 20;
/// Buffers waiting for the hashing thread.
const QUEUE: usize = 4;

pub(crate) struct Source<R> {
    inner: R,
    /// Always `CHUNK` long; `buf[pos..filled]` is unconsumed.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    eof: bool,
    total: u64,
    /// Bytes consumed so far (read by the layers above), shared with the
    /// inflate cap ([`super::limits`]).
    consumed: Rc<Cell<u64>>,
    hasher: WholeFileHasher,
}

enum WholeFileHasher {
    /// Used when no thread could be started.
    Inline(Sha256),
    Threaded {
        tx: Option<SyncSender<(Vec<u8>, usize)>>,
        recycled: Receiver<Vec<u8>>,
        handle: Option<JoinHandle<Sha256>>,
    },
}

impl WholeFileHasher {
    fn start() -> Self {
        let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(QUEUE);
        let (back_tx, recycled) = mpsc::channel::<Vec<u8>>();
        let spawned = thread::Builder::new()
            .name("snapshot-sha256".into())
            .spawn(move || {
                let mut h = Sha256::new();
                for (buf, len) in rx {
                    h.update(buf.get(..len).unwrap_or(&buf));
                    // the reader may be gone already; then the buffer is freed here
                    let _ = back_tx.send(buf);
                }
                h
            });
        match spawned {
            Ok(handle) => WholeFileHasher::Threaded {
                tx: Some(tx),
                recycled,
                handle: Some(handle),
            },
            Err(_) => WholeFileHasher::Inline(Sha256::new()),
        }
    }

    /// Hashes `buf[..len]` and returns a buffer to read into next.
    fn hand_over(&mut self, buf: Vec<u8>, len: usize) -> io::Result<Vec<u8>> {
        match self {
            WholeFileHasher::Inline(h) => {
                h.update(buf.get(..len).unwrap_or(&buf));
                Ok(buf)
            }
            WholeFileHasher::Threaded { tx, recycled, .. } => {
                let sent = match tx {
                    Some(tx) => tx.send((buf, len)).is_ok(),
                    None => false,
                };
                if !sent {
                    return Err(
                        VerifyError::Io(io::Error::other("the hashing thread stopped")).into_io(),
                    );
                }
                Ok(recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK]))
            }
        }
    }

    fn finish(mut self) -> io::Result<String> {
        match &mut self {
            WholeFileHasher::Inline(h) => Ok(hex::encode(std::mem::take(h).finalize())),
            WholeFileHasher::Threaded { tx, handle, .. } => {
                drop(tx.take());
                match handle.take().map(JoinHandle::join) {
                    Some(Ok(h)) => Ok(hex::encode(h.finalize())),
                    _ => Err(io::Error::other("the hashing thread failed")),
                }
            }
        }
    }
}

impl Drop for WholeFileHasher {
    fn drop(&mut self) {
        if let WholeFileHasher::Threaded { tx, handle, .. } = self {
            // closing the channel ends the thread after the few queued buffers
            drop(tx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Self {
        Source {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            eof: false,
            total: 0,
            consumed: Rc::new(Cell::new(0)),
            hasher: WholeFileHasher::start(),
        }
    }

    /// A live count of the bytes consumed so far.
    pub(crate) fn consumed(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.consumed)
    }

    /// Call once every byte was consumed: the byte count and the lowercase
    /// hex SHA-256 of everything read.
    pub(crate) fn finish(mut self) -> Result<(u64, String), VerifyError> {
        let buf = std::mem::take(&mut self.buf);
        let filled = self.filled;
        let mut hasher =
            std::mem::replace(&mut self.hasher, WholeFileHasher::Inline(Sha256::new()));
        if filled > 0 {
            hasher
                .hand_over(buf, filled)
                .map_err(VerifyError::from_io)?;
        }
        let digest = hasher.finish().map_err(VerifyError::Io)?;
        Ok((self.total, digest))
    }

    fn refill(&mut self) -> io::Result<()> {
        let old = std::mem::take(&mut self.buf);
        let mut buf = if self.filled > 0 {
            self.hasher.hand_over(old, self.filled)?
        } else if old.len() == CHUNK {
            old
        } else {
            vec![0; CHUNK]
        };
        self.pos = 0;
        self.filled = 0;
        while let Some(rest) = buf.get_mut(self.filled..).filter(|r| !r.is_empty()) {
            match self.inner.read(rest) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.filled += n.min(buf.len() - self.filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf = buf;
                    return Err(VerifyError::Io(e).into_io());
                }
            }
        }
        self.total += self.filled as u64;
        self.buf = buf;
        Ok(())
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        if let (Some(o), Some(a)) = (out.get_mut(..n), avail.get(..n)) {
            o.copy_from_slice(a);
        }
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Source<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled && !self.eof {
            self.refill()?;
        }
        Ok(self.buf.get(self.pos..self.filled).unwrap_or(&[]))
    }

    fn consume(&mut self, amt: usize) {
        self.pos = self.pos.saturating_add(amt).min(self.filled);
        let unread = (self.filled - self.pos) as u64;
        self.consumed.set(self.total.saturating_sub(unread));
    }
}
