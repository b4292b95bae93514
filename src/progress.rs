//! Progress of long transfers on a terminal (indicatif): one line per
//! transfer — `snapshot <name>`, `upload <target>`, `fetch <store>`,
//! `restore <node>` — with bytes, rate and, when the total is known, the
//! total and an ETA. A finished transfer leaves one line (bytes, time,
//! average rate) above the live ones; a failed one says where it stopped.
//!
//! Stage: output (a leaf: it knows no other module). [`install`] is called
//! once by the binary; until then, and when it was disabled (stderr is not
//! a terminal, `--quiet`, JSON logs), every call here is a no-op and
//! nothing is drawn. Log lines go through [`LogWriter`], which hides the
//! live bars while it writes, so logs and bars never garble each other.
//!
//! Must never: draw anything when disabled, write to stdout (data), or show
//! anything but names and byte counts (no URL, no key, no token).

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The live bars, when progress is enabled for this process.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Enables progress for this process when `enabled` (decided by the
/// binary: stderr is a terminal, not `--quiet`, human logs). Call once,
/// before any transfer; later calls change nothing.
pub fn install(enabled: bool) {
    if enabled {
        let _ = BARS.set(MultiProgress::with_draw_target(
            ProgressDrawTarget::stderr_with_hz(10),
        ));
    }
}

/// Whether transfers are drawn.
pub fn enabled() -> bool {
    BARS.get().is_some()
}

/// Starts a transfer labelled `label` (`upload offsite`); `total` in bytes
/// when known (a snapshot's size is not known before it streamed). The
/// returned handle counts bytes; dropping it ends the line.
pub fn start(label: impl Into<String>, total: Option<u64>) -> Transfer {
    let Some(multi) = BARS.get() else {
        return Transfer {
            bar: None,
            label: String::new(),
            began: Instant::now(),
            done: false,
        };
    };
    let label = label.into();
    let bar = match total {
        Some(len) => ProgressBar::new(len).with_style(style(
            "{prefix} [{bar:24}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )),
        None => ProgressBar::no_length().with_style(style(
            "{prefix} {spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
        )),
    };
    let bar = multi.add(bar.with_prefix(label.clone()));
    bar.enable_steady_tick(Duration::from_millis(200));
    Transfer {
        bar: Some(bar),
        label,
        began: Instant::now(),
        done: false,
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// One transfer's line. Cheap when progress is disabled (no bar at all).
#[derive(Debug)]
pub struct Transfer {
    bar: Option<ProgressBar>,
    label: String,
    began: Instant,
    done: bool,
}

impl Transfer {
    /// `n` more bytes moved.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// `total` bytes moved so far (for cumulative counters, e.g. parts).
    pub fn set(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_position(total);
        }
    }

    /// Whether the known total has been moved.
    fn complete(&self) -> bool {
        self.bar
            .as_ref()
            .is_some_and(|b| b.length().is_some_and(|l| b.position() >= l))
    }

    /// A handle on the same line for another task (multipart parts).
    pub fn handle(&self) -> Counter {
        Counter(self.bar.clone())
    }

    /// The transfer succeeded: the live line becomes
    /// `<label>  <bytes> in <secs>s (<rate>/s)`.
    pub fn finish(mut self) {
        self.end(true);
    }

    fn end(&mut self, ok: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let (Some(bar), Some(multi)) = (self.bar.take(), BARS.get()) else {
            return;
        };
        let bytes = bar.position();
        bar.finish_and_clear();
        multi.remove(&bar);
        let secs = self.began.elapsed().as_secs_f64();
        let line = if ok {
            let rate = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
            format!(
                "{}  {} in {secs:.1}s ({}/s)",
                self.label,
                HumanBytes(bytes),
                HumanBytes(rate as u64)
            )
        } else {
            format!(
                "{}  stopped after {} ({secs:.1}s)",
                self.label,
                HumanBytes(bytes)
            )
        };
        let _ = multi.println(line);
    }
}

/// Dropped without [`Transfer::finish`]: the transfer failed or was
/// cancelled; its line says where it stopped.
impl Drop for Transfer {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// Counts bytes on a [`Transfer`]'s line from another task.
#[derive(Debug, Clone)]
pub struct Counter(Option<ProgressBar>);

impl Counter {
    pub fn set(&self, total: u64) {
        if let Some(b) = &self.0 {
            b.set_position(total);
        }
    }
}

/// An [`AsyncWrite`] that counts what it writes on a transfer's line.
pub struct Writer<'t, W> {
    inner: W,
    shown: &'t Transfer,
}

impl<'t, W> Writer<'t, W> {
    pub fn new(inner: W, shown: &'t Transfer) -> Self {
        Self { inner, shown }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Writer<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.shown.inc(n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A blocking [`io::Read`] that counts what it reads on a transfer's line.
pub struct SyncReader<'t, R> {
    inner: R,
    shown: &'t Transfer,
}

impl<'t, R> SyncReader<'t, R> {
    pub fn new(inner: R, shown: &'t Transfer) -> Self {
        Self { inner, shown }
    }
}

impl<R: io::Read> io::Read for SyncReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.shown.inc(n as u64);
        Ok(n)
    }
}

/// An [`AsyncRead`] that counts what it reads on a transfer's line (owns
/// the transfer: the line ends when the reader is dropped, finished if it
/// reached the end).
pub struct Reader<R> {
    inner: R,
    shown: Option<Transfer>,
}

impl<R> Reader<R> {
    pub fn new(inner: R, shown: Transfer) -> Self {
        Self {
            inner,
            shown: Some(shown),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Reader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let n = buf.filled().len() - before;
            if let Some(t) = &self.shown {
                t.inc(n as u64);
            }
            // The end of the input, or all of it (a reader of a known
            // length may not be read to its end): the transfer is complete.
            if (n == 0 || self.shown.as_ref().is_some_and(Transfer::complete))
                && let Some(t) = self.shown.take()
            {
                t.finish();
            }
        }
        polled
    }
}

/// The log writer (`tracing_subscriber::fmt().with_writer(LogWriter)`):
/// stderr, with the live bars hidden while a line is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match BARS.get() {
            Some(multi) => multi.suspend(|| io::stderr().lock().write_all(buf).map(|()| buf.len())),
            None => io::stderr().lock().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match BARS.get() {
            Some(multi) => multi.suspend(|| io::stderr().lock().write_all(buf)),
            None => io::stderr().lock().write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn disabled_progress_is_a_no_op_and_passes_bytes_through() {
        // Never installed in unit tests: nothing is drawn, bytes pass.
        assert!(!enabled());
        let shown = start("upload t", Some(3));
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, &shown);
        w.write_all(b"abc").await.unwrap();
        w.flush().await.unwrap();
        shown.finish();
        assert_eq!(out, b"abc");
        let mut r = Reader::new(&b"xyz"[..], start("restore n", Some(3)));
        let mut got = String::new();
        r.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "xyz");
    }
}
