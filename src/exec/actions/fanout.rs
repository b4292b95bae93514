//! Stream once (DESIGN.md §10): [`Fanout`] is the writer the snapshot
//! streams into. Every byte the local writer (temp file + verifier)
//! accepted is also queued, through one bounded channel per target, to a
//! task feeding that target's [`StreamingPut`].
//!
//! The local copy comes first: a target never changes what the local
//! file gets, and holds it up at most while its channel is full — for
//! [`STALL`] at most, then it is detached. A target whose write failed is
//! detached at once. A detached target's temp copy is aborted and its
//! `upload:<target>` action uploads from the local file as before.
//! Memory: `SLOTS` chunks (one `poll_write` buffer each) per target.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, PollSender};

use crate::backends::{StreamingPut, TargetError};

/// Chunks queued per target before the local writer waits for it.
const SLOTS: usize = 16;

/// How long a target's full queue may hold up the local copy before the
/// target is detached.
pub const STALL: Duration = Duration::from_secs(10);

/// One target's side of the fan-out.
struct Out {
    target: String,
    /// `None` once detached.
    tx: Option<PollSender<Bytes>>,
    /// Since when its queue has been full (while the writer waits on it).
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Why it was detached.
    detached: Option<String>,
    /// Cancelled on detach: the pump stops at once, even inside a write.
    stop: CancellationToken,
    pump: tokio::task::JoinHandle<Pumped>,
}

/// What the pump hands back: the stream (to commit or abort) and the
/// error of the write that failed, if one did.
type Pumped = (Box<dyn StreamingPut>, Result<(), TargetError>);

impl Out {
    fn detach(&mut self, why: String) {
        if self.tx.take().is_some() {
            self.stop.cancel();
            tracing::warn!(target_name = %self.target, reason = %why, "target detached from the snapshot stream: it uploads from the local file afterwards");
            self.detached = Some(why);
        }
    }
}

/// Writes to `inner` and copies what it accepted to every attached target.
pub struct Fanout<W> {
    inner: W,
    outs: Vec<Out>,
}

/// A target after the stream: ready to commit, or detached (already
/// aborted) with the reason.
pub enum Streamed {
    Ready(Box<dyn StreamingPut>),
    Detached(String),
}

/// Feeds the queue to the target until it ends, a write fails, or `stop`.
async fn pump(
    mut put: Box<dyn StreamingPut>,
    mut rx: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
) -> Pumped {
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => return (put, Ok(())),
            next = rx.recv() => next,
        };
        let Some(chunk) = next else {
            return (put, Ok(()));
        };
        let wrote = tokio::select! {
            biased;
            _ = stop.cancelled() => return (put, Ok(())),
            wrote = put.write(chunk) => wrote,
        };
        if let Err(e) = wrote {
            return (put, Err(e));
        }
    }
}

impl<W: AsyncWrite + Unpin> Fanout<W> {
    /// `targets`: (name, stream) of every target that streams.
    pub fn new(inner: W, targets: Vec<(String, Box<dyn StreamingPut>)>) -> Self {
        let outs = targets
            .into_iter()
            .map(|(target, put)| {
                let (tx, rx) = mpsc::channel(SLOTS);
                let stop = CancellationToken::new();
                Out {
                    target,
                    tx: Some(PollSender::new(tx)),
                    stall: None,
                    detached: None,
                    pump: tokio::spawn(pump(put, rx, stop.clone())),
                    stop,
                }
            })
            .collect();
        Fanout { inner, outs }
    }

    /// Ends the stream: the inner writer, and per target whether it holds
    /// every byte (a detached target's stream is aborted here).
    pub async fn finish(self) -> (W, Vec<(String, Streamed)>) {
        let mut done = Vec::new();
        for mut o in self.outs {
            drop(o.tx.take());
            // What is still queued drains; a target that cannot take it
            // within the stall bound is detached like during the stream.
            let drained = tokio::time::timeout(STALL, &mut o.pump).await;
            if drained.is_err() && o.detached.is_none() {
                o.stop.cancel();
                o.detached = Some(format!(
                    "it did not take the last bytes within {} s",
                    STALL.as_secs()
                ));
            }
            let joined = match drained {
                Ok(j) => j,
                Err(_) => (&mut o.pump).await,
            };
            let (put, wrote) = match joined {
                Ok(p) => p,
                Err(e) => {
                    done.push((
                        o.target,
                        Streamed::Detached(format!("its task failed: {e}")),
                    ));
                    continue;
                }
            };
            let why = match (o.detached, wrote) {
                (_, Err(e)) => Some(crate::backends::chain(&e)),
                (Some(why), Ok(())) => Some(why),
                (None, Ok(())) => None,
            };
            match why {
                None => done.push((o.target, Streamed::Ready(put))),
                Some(why) => {
                    put.abort().await;
                    done.push((o.target, Streamed::Detached(why)));
                }
            }
        }
        (self.inner, done)
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Fanout<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // A slot on every attached target first, so that what the local
        // writer takes reaches each of them without waiting.
        for o in &mut this.outs {
            let Some(tx) = o.tx.as_mut() else { continue };
            match tx.poll_reserve(cx) {
                Poll::Ready(Ok(())) => o.stall = None,
                Poll::Ready(Err(_)) => o.detach("it stopped taking bytes".into()),
                Poll::Pending => {
                    let stall = o
                        .stall
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(STALL)));
                    if stall.as_mut().poll(cx).is_ready() {
                        o.detach(format!("its buffer stayed full for {} s", STALL.as_secs()));
                    } else {
                        return Poll::Pending;
                    }
                }
            }
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 && this.outs.iter().any(|o| o.tx.is_some()) {
            let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or(buf));
            for o in &mut this.outs {
                if let Some(tx) = o.tx.as_mut()
                    && tx.send_item(chunk.clone()).is_err()
                {
                    o.detach("it stopped taking bytes".into());
                }
            }
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use tokio::io::AsyncWriteExt;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::backends::{PutOutcome, UploadTag};
    use crate::snapshot::Identity;

    #[derive(Clone, Copy)]
    enum Mode {
        Keep,
        Fail,
        Hang,
    }

    struct Probe {
        mode: Mode,
        got: Arc<Mutex<Vec<u8>>>,
        aborted: Arc<AtomicBool>,
    }

    #[async_trait]
    impl StreamingPut for Probe {
        async fn write(&mut self, b: Bytes) -> Result<(), TargetError> {
            match self.mode {
                Mode::Keep => {
                    self.got.lock().unwrap().extend_from_slice(&b);
                    Ok(())
                }
                Mode::Fail => Err(TargetError::Cancelled),
                Mode::Hang => std::future::pending().await,
            }
        }
        async fn commit(
            self: Box<Self>,
            _: &Identity,
            _: &UploadTag,
            _: &CancellationToken,
        ) -> Result<PutOutcome, TargetError> {
            Err(TargetError::Cancelled)
        }
        async fn abort(self: Box<Self>) {
            self.aborted.store(true, Ordering::SeqCst);
        }
    }

    type Seen = (Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>);

    fn probe(mode: Mode) -> (Box<dyn StreamingPut>, Seen) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let aborted = Arc::new(AtomicBool::new(false));
        let p = Probe {
            mode,
            got: got.clone(),
            aborted: aborted.clone(),
        };
        (Box::new(p), (got, aborted))
    }

    /// Streams `chunks` distinct 1000-byte chunks through a fan-out to a
    /// target that keeps everything and one of `other`'s mode.
    async fn stream(other: Mode, chunks: usize) -> (Vec<u8>, Vec<u8>, Seen, Vec<(String, bool)>) {
        let (keep, keep_seen) = probe(Mode::Keep);
        let (odd, odd_seen) = probe(other);
        let mut fan = Fanout::new(
            Vec::new(),
            vec![("keep".to_string(), keep), ("odd".to_string(), odd)],
        );
        let mut want = Vec::new();
        for i in 0..chunks {
            let chunk = vec![(i % 251) as u8; 1000];
            fan.write_all(&chunk).await.unwrap();
            want.extend_from_slice(&chunk);
        }
        fan.flush().await.unwrap();
        let (local, done) = fan.finish().await;
        assert_eq!(local, want, "the local copy got every byte, in order");
        let ready = done
            .into_iter()
            .map(|(t, s)| (t, matches!(s, Streamed::Ready(_))))
            .collect();
        let kept = keep_seen.0.lock().unwrap().clone();
        assert!(
            !keep_seen.1.load(Ordering::SeqCst),
            "a healthy target is not aborted"
        );
        (want, kept, odd_seen, ready)
    }

    #[tokio::test]
    async fn a_failing_target_is_detached_and_aborted_while_the_others_get_every_byte() {
        let (want, kept, (_, aborted), ready) = stream(Mode::Fail, 4 * SLOTS).await;
        assert_eq!(kept, want, "the healthy target got every byte, in order");
        assert_eq!(
            ready,
            vec![("keep".to_string(), true), ("odd".to_string(), false)]
        );
        assert!(
            aborted.load(Ordering::SeqCst),
            "the failed target's copy is aborted"
        );
    }

    /// The paused clock advances only when every task waits: no timing.
    #[tokio::test(start_paused = true)]
    async fn a_target_whose_buffer_stays_full_is_detached_and_holds_up_the_local_copy_no_longer() {
        let (want, kept, (_, aborted), ready) = stream(Mode::Hang, 4 * SLOTS).await;
        assert_eq!(kept, want);
        assert_eq!(
            ready,
            vec![("keep".to_string(), true), ("odd".to_string(), false)]
        );
        assert!(
            aborted.load(Ordering::SeqCst),
            "the stuck target's copy is aborted"
        );
    }
}
