//! A snapshot temp file followed while it is written (stream once,
//! DESIGN.md §10; README "S3 streaming").
//!
//! The local writer's file thread reports every buffer it wrote through a
//! [`TailFeed`]; a target that uploads while the snapshot still streams
//! (S3) follows it through a [`Tail`]. It gets the written buffers
//! themselves (shared, not copied) through a small queue
//! ([`Tail::subscribe`]); when it falls behind and its queue is full, the
//! feed skips it — the writer never waits for a follower — and the
//! follower reads what it missed back from the file ([`Tail::read_at`]).
//! So a slow target never holds the local copy up, and what is queued for
//! it stays bounded.
//!
//! The tail reads through a read-only descriptor of its own (the
//! writer's `/proc/self/fd/<n>` reopened; the temp file is renamed when
//! `verify` links it). Where that does not exist (not Linux), [`follow`]
//! gives no tail and the target uploads from the local file afterwards.
//!
//! The feed also keeps the CRC32 of everything written: a follower
//! proves at its commit that what it sent is what was written (and
//! verified), without one more SHA-256 pass over the bytes.
//!
//! Must never: report an end for a stream whose writer failed (dropping a
//! feed without [`TailFeed::complete`] ends the tail as failed).

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

/// Buffers queued per follower before the feed skips it.
pub const QUEUE: usize = 4;

/// A written buffer and the offset of its first byte.
pub type Chunk = (u64, Bytes);

type Subscribers = Arc<Mutex<Vec<mpsc::Sender<Chunk>>>>;

/// How far the file was written, and whether the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    written: u64,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    /// Every byte was written: their CRC32.
    Complete {
        crc32: u32,
    },
    /// The writer stopped before the end.
    Failed,
}

/// The writer's side: one call per buffer written, then
/// [`TailFeed::complete`].
pub struct TailFeed {
    tx: watch::Sender<Progress>,
    subs: Subscribers,
    written: u64,
    crc: crc32fast::Hasher,
    done: bool,
}

/// A follower's side. Clones follow the same file.
#[derive(Clone)]
pub struct Tail {
    rx: watch::Receiver<Progress>,
    subs: Subscribers,
    file: Arc<File>,
}

/// The end of a followed stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Every byte written.
    pub len: u64,
    /// Their CRC32.
    pub crc32: u32,
}

/// Why a tail has nothing more to give.
#[derive(Debug, thiserror::Error)]
#[error("the local snapshot file stopped being written before the end")]
pub struct TailFailed;

/// A feed for the writer of `file` (already open for writing) and a tail
/// following it; `Ok(None)` where the file cannot be followed.
pub fn follow(file: &File) -> io::Result<Option<(TailFeed, Tail)>> {
    let Some(file) = reopen(file)? else {
        return Ok(None);
    };
    let (tx, rx) = watch::channel(Progress {
        written: 0,
        end: End::Open,
    });
    let subs = Subscribers::default();
    Ok(Some((
        TailFeed {
            tx,
            subs: Arc::clone(&subs),
            written: 0,
            crc: crc32fast::Hasher::new(),
            done: false,
        },
        Tail {
            rx,
            subs,
            file: Arc::new(file),
        },
    )))
}

/// A read-only descriptor of the same file (the writer's may be
/// write-only).
#[cfg(target_os = "linux")]
fn reopen(file: &File) -> io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).map(Some)
}

#[cfg(not(target_os = "linux"))]
fn reopen(_file: &File) -> io::Result<Option<File>> {
    Ok(None)
}

impl TailFeed {
    /// `bytes` were appended to the file: queued for every follower that
    /// has room (one that has none reads them back from the file).
    pub fn wrote(&mut self, bytes: &Bytes) {
        self.crc.update(bytes);
        let at = self.written;
        self.written += bytes.len() as u64;
        if let Ok(mut subs) = self.subs.lock() {
            subs.retain(|s| !s.is_closed());
            for s in subs.iter() {
                let _ = s.try_send((at, bytes.clone()));
            }
        }
        let n = self.written;
        self.tx.send_modify(|p| p.written = n);
    }

    /// Every byte was written.
    pub fn complete(mut self) {
        self.done = true;
        let crc32 = self.crc.clone().finalize();
        self.tx.send_modify(|p| p.end = End::Complete { crc32 });
        self.close();
    }

    /// Ends every follower's queue.
    fn close(&self) {
        if let Ok(mut subs) = self.subs.lock() {
            subs.clear();
        }
    }
}

impl Drop for TailFeed {
    fn drop(&mut self) {
        if !self.done {
            self.tx.send_modify(|p| p.end = End::Failed);
            self.close();
        }
    }
}

impl Tail {
    /// A queue of the buffers written from now on, [`QUEUE`] deep; it
    /// ends with the stream. A buffer that found it full is not in it.
    pub fn subscribe(&self) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(QUEUE);
        // The feed sets the end before it ends the queues: a queue added
        // after that would never end.
        if let Ok(mut subs) = self.subs.lock()
            && self.rx.borrow().end == End::Open
        {
            subs.push(tx);
        }
        rx
    }

    /// Waits until at least `upto` bytes are written or the writer ended:
    /// the bytes written, and the end once there is one.
    pub async fn wait(&mut self, upto: u64) -> Result<(u64, Option<Ended>), TailFailed> {
        let p = *self
            .rx
            .wait_for(|p| p.written >= upto || p.end != End::Open)
            .await
            .map_err(|_| TailFailed)?;
        match p.end {
            End::Failed => Err(TailFailed),
            End::Open => Ok((p.written, None)),
            End::Complete { crc32 } => Ok((
                p.written,
                Some(Ended {
                    len: p.written,
                    crc32,
                }),
            )),
        }
    }

    /// Waits for the end of the stream.
    pub async fn ended(&mut self) -> Result<Ended, TailFailed> {
        match self.wait(u64::MAX).await? {
            (_, Some(e)) => Ok(e),
            (_, None) => Err(TailFailed),
        }
    }

    /// Appends `len` written bytes at `offset`, read back from the file
    /// (off the async runtime), to `buf`.
    pub async fn read_at(&self, offset: u64, len: u64, buf: BytesMut) -> io::Result<BytesMut> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || read_range(&file, offset, len, buf))
            .await
            .map_err(io::Error::other)?
    }
}

#[cfg(unix)]
fn read_range(file: &File, offset: u64, len: u64, mut buf: BytesMut) -> io::Result<BytesMut> {
    use std::os::unix::fs::FileExt;
    let start = buf.len();
    let n = usize::try_from(len).map_err(io::Error::other)?;
    buf.resize(start + n, 0);
    file.read_exact_at(buf.get_mut(start..).unwrap_or_default(), offset)?;
    Ok(buf)
}

#[cfg(not(unix))]
fn read_range(_file: &File, _offset: u64, _len: u64, _buf: BytesMut) -> io::Result<BytesMut> {
    Err(io::Error::other(
        "reading a followed file needs a Unix platform",
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn append(f: &mut File, feed: &mut TailFeed, b: &[u8]) {
        f.write_all(b).expect("write");
        feed.wrote(&Bytes::copy_from_slice(b));
    }

    #[tokio::test]
    async fn a_follower_gets_what_was_written_queued_or_from_the_file_and_the_crc32_of_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = File::create(dir.path().join("snap")).expect("create");
        let (mut feed, mut tail) = follow(&f).expect("follow").expect("linux");
        let mut rx = tail.subscribe();
        append(&mut f, &mut feed, b"hello ");
        assert_eq!(tail.wait(6).await.expect("open"), (6, None));
        assert_eq!(rx.recv().await, Some((0, Bytes::from_static(b"hello "))));
        // More than the queue holds: the rest is skipped, not waited for.
        for _ in 0..QUEUE + 2 {
            append(&mut f, &mut feed, b"x");
        }
        feed.complete();
        let mut got = Vec::new();
        while let Some(c) = rx.recv().await {
            got.push(c.0);
        }
        assert_eq!(got, (6..6 + QUEUE as u64).collect::<Vec<_>>());
        let end = tail.ended().await.expect("ended");
        assert_eq!(end.len, 6 + QUEUE as u64 + 2);
        assert_eq!(end.crc32, crc32fast::hash(b"hello xxxxxx"));
        let back = tail
            .read_at(6, 6, BytesMut::from(&b"<"[..]))
            .await
            .expect("read back");
        assert_eq!(&back[..], b"<xxxxxx");
    }

    #[tokio::test]
    async fn a_feed_dropped_before_the_end_fails_its_tail_and_ends_the_queues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = File::create(dir.path().join("snap")).expect("create");
        let (mut feed, mut tail) = follow(&f).expect("follow").expect("linux");
        let mut rx = tail.subscribe();
        feed.wrote(&Bytes::from_static(b"abc"));
        drop(feed);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none(), "the queue ends");
        assert!(tail.wait(100).await.is_err(), "no end for a failed writer");
        assert!(tail.ended().await.is_err());
    }
}
