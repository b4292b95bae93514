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
use tokio_util::sync::PollSender;

use crate::backends::{StreamingPut, TargetError};

/// Chunks queued per target before the local writer waits for it.
const SLOTS: usize = 64;

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
    pump: tokio::task::JoinHandle<Pumped>,
}

/// What the pump hands back: the stream (to commit or abort) and the
/// error of the write that failed, if one did.
type Pumped = (Box<dyn StreamingPut>, Result<(), TargetError>);

impl Out {
    fn detach(&mut self, why: String) {
        if self.tx.take().is_some() {
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

async fn pump(mut put: Box<dyn StreamingPut>, mut rx: mpsc::Receiver<Bytes>) -> Pumped {
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = put.write(chunk).await {
            return (put, Err(e));
        }
    }
    (put, Ok(()))
}

impl<W: AsyncWrite + Unpin> Fanout<W> {
    /// `targets`: (name, stream) of every target that streams.
    pub fn new(inner: W, targets: Vec<(String, Box<dyn StreamingPut>)>) -> Self {
        let outs = targets
            .into_iter()
            .map(|(target, put)| {
                let (tx, rx) = mpsc::channel(SLOTS);
                Out {
                    target,
                    tx: Some(PollSender::new(tx)),
                    stall: None,
                    detached: None,
                    pump: tokio::spawn(pump(put, rx)),
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
            let (put, wrote) = match (&mut o.pump).await {
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
