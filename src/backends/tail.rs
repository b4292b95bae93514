//! A snapshot temp file followed while it is written (stream once,
//! DESIGN.md §10; README "S3 streaming").
//!
//! The local writer's file thread reports every buffer it wrote through a
//! [`TailFeed`]; a target that uploads from the file while the snapshot
//! still streams (S3) follows it through a [`Tail`]: it waits until the
//! bytes it needs are in the file, then reads them back (from the page
//! cache: they were just written). So a slow target never holds the local
//! copy up, and no byte is queued in memory for it.
//!
//! The tail reads through a read-only descriptor of its own (the
//! writer's `/proc/self/fd/<n>` reopened), reachable as the path
//! `/proc/self/fd/<m>` on Linux: the SDK reopens a file body by path for
//! a retry, and the temp file is renamed when `verify` links it. Elsewhere
//! [`Tail::path`] is `None` and the target uploads from the local file
//! afterwards instead.
//!
//! The feed also keeps the CRC32 of everything written: a follower
//! proves at its commit that what it sent is what was written (and
//! verified), without one more SHA-256 pass over the bytes.
//!
//! Must never: report an end for a stream whose writer failed (dropping a
//! feed without [`TailFeed::complete`] ends the tail as failed).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

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
    crc: crc32fast::Hasher,
    done: bool,
}

/// A follower's side. Clones follow the same file.
#[derive(Clone)]
pub struct Tail {
    rx: watch::Receiver<Progress>,
    file: Arc<File>,
    path: Option<PathBuf>,
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
/// following it.
pub fn follow(file: &File) -> io::Result<(TailFeed, Tail)> {
    let (file, path) = reopen(file)?;
    let file = Arc::new(file);
    let (tx, rx) = watch::channel(Progress {
        written: 0,
        end: End::Open,
    });
    Ok((
        TailFeed {
            tx,
            crc: crc32fast::Hasher::new(),
            done: false,
        },
        Tail { rx, file, path },
    ))
}

/// A read-only descriptor of the same file (the writer's may be
/// write-only), and the path that reopens it.
#[cfg(target_os = "linux")]
fn reopen(file: &File) -> io::Result<(File, Option<PathBuf>)> {
    use std::os::fd::AsRawFd;
    let read = File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", read.as_raw_fd()));
    Ok((read, Some(path)))
}

#[cfg(not(target_os = "linux"))]
fn reopen(file: &File) -> io::Result<(File, Option<PathBuf>)> {
    Ok((file.try_clone()?, None))
}

impl TailFeed {
    /// `bytes` were appended to the file.
    pub fn wrote(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        let n = bytes.len() as u64;
        self.tx.send_modify(|p| p.written += n);
    }

    /// Every byte was written.
    pub fn complete(mut self) {
        self.done = true;
        let crc32 = self.crc.clone().finalize();
        self.tx.send_modify(|p| p.end = End::Complete { crc32 });
    }
}

impl Drop for TailFeed {
    fn drop(&mut self) {
        if !self.done {
            self.tx.send_modify(|p| p.end = End::Failed);
        }
    }
}

impl Tail {
    /// A path that opens the followed file (for a retryable request body),
    /// while this tail lives; `None` where the platform has none.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
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

    /// The CRC32 of `len` written bytes at `offset`, read back from the
    /// file (off the async runtime).
    pub async fn crc32_of(&self, offset: u64, len: u64) -> io::Result<u32> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || crc32_range(&file, offset, len))
            .await
            .map_err(io::Error::other)?
    }
}

#[cfg(unix)]
fn crc32_range(file: &File, offset: u64, len: u64) -> io::Result<u32> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (1 << 20).min(usize::try_from(len).unwrap_or(usize::MAX))];
    let mut crc = crc32fast::Hasher::new();
    let mut done = 0u64;
    while done < len {
        let want = usize::try_from(len - done)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = buf.get_mut(..want).unwrap_or_default();
        file.read_exact_at(chunk, offset + done)?;
        crc.update(chunk);
        done += want as u64;
    }
    Ok(crc.finalize())
}

#[cfg(not(unix))]
fn crc32_range(_file: &File, _offset: u64, _len: u64) -> io::Result<u32> {
    Err(io::Error::other(
        "reading a followed file needs a Unix platform",
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn a_tail_sees_what_was_written_and_the_crc32_of_the_whole_stream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut f = File::create(dir.path().join("snap")).expect("create");
        let (mut feed, mut tail) = follow(&f).expect("follow");
        f.write_all(b"hello ").expect("write");
        feed.wrote(b"hello ");
        assert_eq!(tail.wait(6).await.expect("open"), (6, None));
        f.write_all(b"world").expect("write");
        feed.wrote(b"world");
        feed.complete();
        let end = tail.ended().await.expect("ended");
        assert_eq!(end.len, 11);
        assert_eq!(end.crc32, crc32fast::hash(b"hello world"));
        assert_eq!(
            tail.crc32_of(6, 5).await.expect("read back"),
            crc32fast::hash(b"world")
        );
        if cfg!(target_os = "linux") {
            let p = tail.path().expect("a reopenable path");
            assert_eq!(std::fs::read(p).expect("reopened"), b"hello world");
        }
    }

    #[tokio::test]
    async fn a_feed_dropped_before_the_end_fails_its_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = File::create(dir.path().join("snap")).expect("create");
        let (mut feed, mut tail) = follow(&f).expect("follow");
        feed.wrote(b"abc");
        drop(feed);
        assert!(tail.wait(100).await.is_err(), "no end for a failed writer");
        assert!(tail.ended().await.is_err());
    }
}
