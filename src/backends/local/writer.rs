//! The local store's snapshot writer: the bytes of a streaming snapshot go
//! to the temp file and to the verifier in large buffers, off the async
//! runtime (issue 14, item 1).
//!
//! Stage: execute. Call [`SnapshotWriter::new`] inside a Tokio runtime.
//!
//! Why this shape (measured on a 528 MiB snapshot; see README "Performance"):
//! the HTTP body arrives in small chunks (often 8–16 KiB). Writing each one
//! through `tokio::fs::File` is a `spawn_blocking` hop per chunk, and
//! handing each one to the verifier is a channel message and an allocation
//! per chunk. Here the async side only copies into a [`BUF`]-byte buffer;
//! a full buffer is one message to a dedicated blocking thread that does a
//! plain `write(2)` loop and then moves the same buffer (not a copy) to
//! the verifier thread, which hands it back to a small pool for reuse.
//! Writeback is started every [`SYNC_EVERY`] bytes (`sync_file_range` on
//! Linux, `fdatasync` elsewhere) so the final
//! `fsync` has little left to do and the page cache holds a bounded amount
//! of dirty data. Written-back windows older than [`CACHED_WINDOWS`]
//! are dropped from the page cache (`POSIX_FADV_DONTNEED`): the snapshot
//! does not evict the node's cache, and the writer reuses the pages it
//! just freed (on a VM whose free pages go back to the host, writing into
//! fresh pages was 3× slower: README "Performance").
//!
//! Memory is bounded: at most `1 + FILE_SLOTS + 1 + VERIFY_SLOTS + 1`
//! buffers (≈ 10 MiB) exist at once, whatever the snapshot size, and the
//! same ones are reused for the whole run.
//!
//! Must never: report success for bytes that did not reach the file and an
//! `fsync`, or let a verifier that stopped early (the bytes are already
//! invalid) stop the file being written: the verdict is then its error.

use std::fs::File;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::backends::tail::TailFeed;
use crate::snapshot::{Limits, SealedSums, VerifyError, sealed_sums_reader_with};

/// Bytes gathered before they go to the file thread and the verifier.
pub const BUF: usize = 1 << 20;
/// Full buffers queued for the file thread.
const FILE_SLOTS: usize = 4;
/// Buffers queued for the verifier (it runs beside the file thread).
const VERIFY_SLOTS: usize = 4;
/// Writeback is started (and the previous window waited for) this often.
pub const SYNC_EVERY: u64 = 32 << 20;
/// Written-back windows kept in the page cache behind the writer when it
/// forgets the rest (for a target reading the file back as it grows).
pub const CACHED_WINDOWS: u64 = 4;

/// Buffers kept for reuse: every buffer that can exist at once
/// (the one gathering, the file thread's queue and its current one, the
/// verifier's queue and its current one). A run of any size allocates at
/// most these: no allocator churn, no heap fragmentation.
const POOLED: usize = FILE_SLOTS + VERIFY_SLOTS + 3;

/// Buffers handed back by the file thread or the verifier, taken again by
/// the gathering side. A buffer is moved along (gathered, written, then
/// verified), never shared.
#[derive(Clone, Default)]
struct Pool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Buffers allocated so far (the pool was empty when one was taken).
    made: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| {
                self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Vec::with_capacity(BUF)
            })
    }

    fn give(&self, mut b: Vec<u8>) {
        b.clear();
        if let Ok(mut p) = self.free.lock()
            && p.len() < POOLED
        {
            p.push(b);
        }
    }

    #[cfg(test)]
    fn made(&self) -> usize {
        self.made.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The first error of the file thread, for the async side to report.
type Failure = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

/// An [`AsyncWrite`] into a snapshot temp file that also verifies the
/// bytes. Finish with [`SnapshotWriter::finish`]; dropping it without
/// finishing lets the thread write what was queued, and the verifier sees a
/// truncated stream.
pub struct SnapshotWriter {
    buf: Vec<u8>,
    pool: Pool,
    /// `None` after `finish` or once the file thread stopped.
    tx: Option<PollSender<Vec<u8>>>,
    failure: Failure,
    file: tokio::task::JoinHandle<io::Result<u64>>,
    verifier: tokio::task::JoinHandle<Result<SealedSums, VerifyError>>,
}

impl SnapshotWriter {
    /// Starts the file thread and the verifier (blocking tasks).
    /// `feed`: told of every buffer written, for a target following the
    /// file ([`crate::backends::tail`]). The file's pages leave the page
    /// cache once written back, [`CACHED_WINDOWS`] windows behind the
    /// writer (a follower reads its parts before they go; a later reader
    /// reads the file from disk).
    pub fn new(file: File, limits: Limits, feed: Option<TailFeed>) -> Self {
        Self::start(file, limits, feed, true)
    }

    /// [`SnapshotWriter::new`] over any blocking writer (tests give one
    /// that fails or takes short writes). Durability calls are made only
    /// for a real [`File`].
    pub fn with_sink<S: Sink + Send + 'static>(sink: S, limits: Limits) -> Self {
        Self::start(sink, limits, None, false)
    }

    fn start<S: Sink + Send + 'static>(
        sink: S,
        limits: Limits,
        feed: Option<TailFeed>,
        forget: bool,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(FILE_SLOTS);
        let (vtx, vrx) = std_mpsc::sync_channel::<Vec<u8>>(VERIFY_SLOTS);
        let pool = Pool::default();
        let (p1, p2) = (pool.clone(), pool.clone());
        let verifier = tokio::task::spawn_blocking(move || {
            sealed_sums_reader_with(
                BufsReader {
                    rx: vrx,
                    cur: Vec::new(),
                    pos: 0,
                    pool: p1,
                },
                limits,
            )
        });
        let failure = Failure::default();
        let f2 = failure.clone();
        let file = tokio::task::spawn_blocking(move || {
            let r = file_thread(sink, rx, vtx, &p2, feed, forget);
            if let Err(e) = &r
                && let Ok(mut slot) = f2.lock()
            {
                *slot = Some((e.kind(), e.to_string()));
            }
            r
        });
        SnapshotWriter {
            buf: pool.take(),
            pool,
            tx: Some(PollSender::new(tx)),
            failure,
            file,
            verifier,
        }
    }

    /// The file thread's error, once it stopped (else a generic one).
    fn stopped(&self) -> io::Error {
        match self.failure.lock().ok().and_then(|s| s.clone()) {
            Some((kind, msg)) => io::Error::new(kind, msg),
            None => io::Error::other("the snapshot file writer stopped"),
        }
    }

    /// Hands the gathered buffer to the file thread (waits for a slot).
    fn poll_send_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let Some(tx) = self.tx.as_mut() else {
            return Poll::Ready(Err(self.stopped()));
        };
        if ready!(tx.poll_reserve(cx)).is_err() {
            self.tx = None;
            return Poll::Ready(Err(self.stopped()));
        }
        let full = std::mem::replace(&mut self.buf, self.pool.take());
        if tx.send_item(full).is_err() {
            self.tx = None;
            return Poll::Ready(Err(self.stopped()));
        }
        Poll::Ready(Ok(()))
    }

    /// Ends the stream: the last buffer is written, the file fsynced
    /// (`sync_all`), and the verifier's verdict returned beside the result
    /// of writing. Both must be `Ok` for the snapshot to be kept.
    pub async fn finish(mut self) -> (io::Result<()>, Result<SealedSums, VerifyError>) {
        let sent = futures::future::poll_fn(|cx| self.poll_send_buf(cx)).await;
        drop(self.tx.take());
        let written = match (&mut self.file).await {
            Ok(r) => r.map(drop),
            Err(e) => Err(io::Error::other(format!(
                "the snapshot file writer stopped: {e}"
            ))),
        };
        let verdict = match (&mut self.verifier).await {
            Ok(v) => v,
            Err(e) => Err(VerifyError::Io(io::Error::other(format!(
                "the verifier stopped: {e}"
            )))),
        };
        // The file thread's own error says more than "it stopped".
        let result = match (written, sent) {
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        };
        (result, verdict)
    }
}

impl AsyncWrite for SnapshotWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.tx.is_none() {
            return Poll::Ready(Err(this.stopped()));
        }
        if this.buf.len() >= BUF {
            ready!(this.poll_send_buf(cx))?;
        }
        let n = (BUF - this.buf.len()).min(buf.len());
        this.buf.extend_from_slice(buf.get(..n).unwrap_or_default());
        Poll::Ready(Ok(n))
    }

    /// Hands what is gathered to the file thread; durability is
    /// [`SnapshotWriter::finish`]'s.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send_buf(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

/// What the file thread writes into: a [`File`] (with writeback and
/// fsync), or a test's writer.
pub trait Sink: Write {
    /// Start writeback of `[from, to)` and wait for the window before it.
    fn writeback(&mut self, _from: u64, _to: u64) -> io::Result<()> {
        Ok(())
    }
    /// Make everything written durable.
    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }
    /// Drop `[from, to)` (written back: clean) from the page cache.
    /// Advisory: never fails.
    fn forget(&mut self, _from: u64, _to: u64) {}
}

impl Sink for File {
    #[cfg(target_os = "linux")]
    fn writeback(&mut self, from: u64, to: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.as_raw_fd();
        let range = |a: u64, b: u64, flags| {
            let (Ok(off), Ok(len)) = (i64::try_from(a), i64::try_from(b.saturating_sub(a))) else {
                return Ok(());
            };
            // SAFETY: a plain syscall on a descriptor this File owns.
            if unsafe { libc::sync_file_range(fd, off, len, flags) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // Start this window's writeback; wait for the previous one, so at
        // most two windows are dirty and the final fsync is short.
        range(from, to, libc::SYNC_FILE_RANGE_WRITE)?;
        if from > 0 {
            range(
                from.saturating_sub(SYNC_EVERY),
                from,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )?;
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn writeback(&mut self, _from: u64, _to: u64) -> io::Result<()> {
        self.sync_data()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }

    #[cfg(target_os = "linux")]
    fn forget(&mut self, from: u64, to: u64) {
        use std::os::fd::AsRawFd;
        if let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(to.saturating_sub(from))) {
            // SAFETY: a plain syscall on a descriptor this File owns.
            unsafe { libc::posix_fadvise(self.as_raw_fd(), off, len, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

/// Writes every buffer, passes it on to the verifier while it still
/// reads, starts writeback, and fsyncs at the end. Returns the length.
fn file_thread<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<Vec<u8>>,
    vtx: std_mpsc::SyncSender<Vec<u8>>,
    pool: &Pool,
    mut feed: Option<TailFeed>,
    forget: bool,
) -> io::Result<u64> {
    let mut vtx = Some(vtx);
    let mut written = 0u64;
    let mut synced = 0u64;
    let mut forgotten = 0u64;
    while let Some(b) = rx.blocking_recv() {
        sink.write_all(&b)?;
        written += b.len() as u64;
        if let Some(f) = feed.as_mut() {
            f.wrote(&b);
        }
        // A verifier that stopped has its verdict: keep writing.
        match &vtx {
            Some(v) => {
                if let Err(std_mpsc::SendError(b)) = v.send(b) {
                    vtx = None;
                    pool.give(b);
                }
            }
            None => pool.give(b),
        }
        if written - synced >= SYNC_EVERY {
            // Returns once everything before `synced` is written back.
            sink.writeback(synced, written)?;
            let clean = synced.saturating_sub(CACHED_WINDOWS * SYNC_EVERY);
            if forget && clean > forgotten {
                sink.forget(forgotten, clean);
                forgotten = clean;
            }
            synced = written;
        }
    }
    // The verifier's stream ends here, before the (longer) fsync; so does
    // a follower's (it commits only after the fsync and the verdict).
    drop(vtx);
    if let Some(f) = feed {
        f.complete();
    }
    sink.sync()?;
    Ok(written)
}

/// The verifier's side: a blocking [`Read`] over the buffers, each handed
/// back to the pool once read; the end of the stream is the channel
/// closing.
struct BufsReader {
    rx: std_mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    pool: Pool,
}

impl Read for BufsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            // The read buffer goes back before waiting for the next one:
            // the verifier never holds two.
            let done = std::mem::take(&mut self.cur);
            if done.capacity() > 0 {
                self.pool.give(done);
            }
            match self.rx.recv() {
                Ok(next) => {
                    self.cur = next;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let rest = self.cur.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(out.len());
        if let Some(o) = out.get_mut(..n) {
            o.copy_from_slice(rest.get(..n).unwrap_or_default());
        }
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
