//! Unit tests of [`SnapshotWriter`]: every byte reaches the sink in order
//! however it is split, the verdict is the verifier's on exactly those
//! bytes, a verifier that stops early does not stop the writing, and a
//! failing sink's error reaches the caller.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

use super::*;

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/snapshots/openbao-2.7.2-small.snap"
    ))
    .expect("the fixture snapshot")
}

/// A sink that takes at most `max` bytes a call, fails once `fail_at`
/// bytes were taken, and records writeback windows and syncs.
#[derive(Clone, Default)]
struct Probe {
    state: Arc<Mutex<ProbeState>>,
    max: usize,
    fail_at: Option<usize>,
}

#[derive(Default)]
struct ProbeState {
    out: Vec<u8>,
    windows: Vec<(u64, u64)>,
    forgotten: Vec<(u64, u64)>,
    synced: bool,
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.state.lock().unwrap();
        if self.fail_at.is_some_and(|f| s.out.len() >= f) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on the probe",
            ));
        }
        let n = buf.len().min(self.max.max(1));
        s.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for Probe {
    fn writeback(&mut self, from: u64, to: u64) -> io::Result<()> {
        self.state.lock().unwrap().windows.push((from, to));
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.state.lock().unwrap().synced = true;
        Ok(())
    }
    fn forget(&mut self, from: u64, to: u64) {
        let mut s = self.state.lock().unwrap();
        // Only what was written back (every window before the last one
        // started) may be dropped.
        let clean = s.windows.last().map_or(0, |w| w.0);
        assert!(
            to <= clean,
            "forgot [{from}, {to}) before it was written back"
        );
        s.forgotten.push((from, to));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap()
}

/// Streams `bytes` in `chunk`-byte writes into `probe`: the write error
/// (if one write failed), then `finish`'s result and verdict.
fn stream(
    bytes: &[u8],
    chunk: usize,
    probe: Probe,
) -> (
    Option<io::Error>,
    io::Result<()>,
    Result<SealedSums, VerifyError>,
) {
    rt().block_on(async {
        let mut w = SnapshotWriter::with_sink(probe, Limits::default());
        let mut failed = None;
        for c in bytes.chunks(chunk.max(1)) {
            if let Err(e) = w.write_all(c).await {
                failed = Some(e);
                break;
            }
        }
        if failed.is_none()
            && let Err(e) = w.flush().await
        {
            failed = Some(e);
        }
        let (r, v) = w.finish().await;
        (failed, r, v)
    })
}

#[test]
fn every_byte_reaches_the_file_in_order_and_the_verdict_is_the_verifiers() {
    let bytes = fixture();
    let expected = crate::snapshot::verify_reader(&bytes[..]).expect("the fixture is valid");
    for (chunk, max) in [(7, 3), (4096, 1000), (BUF + 1, usize::MAX)] {
        let probe = Probe {
            max,
            ..Probe::default()
        };
        let (failed, r, v) = stream(&bytes, chunk, probe.clone());
        assert!(failed.is_none() && r.is_ok(), "chunk {chunk}/{max}");
        let s = probe.state.lock().unwrap();
        assert!(s.out == bytes, "chunk {chunk}/{max}: bytes changed");
        assert!(s.synced, "finish fsyncs");
        assert_eq!(v.expect("valid").identity, expected, "chunk {chunk}/{max}");
    }
}

#[test]
fn a_verifier_that_stops_early_does_not_stop_the_file_being_written() {
    // Not gzip: the verifier refuses at the first bytes; several buffers
    // follow and must all reach the file.
    let bytes: Vec<u8> = (0..(3 * BUF + 12_345)).map(|i| (i % 251) as u8).collect();
    let probe = Probe {
        max: usize::MAX,
        ..Probe::default()
    };
    let (failed, r, v) = stream(&bytes, 16 * 1024, probe.clone());
    assert!(failed.is_none() && r.is_ok());
    assert!(probe.state.lock().unwrap().out == bytes, "all written");
    assert!(v.is_err(), "the verdict is the verifier's refusal");
}

#[test]
fn a_failing_file_write_is_reported_with_its_cause_and_the_verdict_is_not_valid() {
    let bytes = [fixture(), vec![0u8; 3 * BUF]].concat();
    let probe = Probe {
        max: usize::MAX,
        fail_at: Some(BUF),
        ..Probe::default()
    };
    let (failed, r, v) = stream(&bytes, 8192, probe.clone());
    let err = failed
        .or(r.err())
        .expect("the sink's failure reaches the caller");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().contains("no space left"), "{err}");
    assert!(
        !probe.state.lock().unwrap().synced,
        "a failed write is never fsynced as if complete"
    );
    assert!(
        v.is_err(),
        "never a valid verdict for bytes not all written"
    );
}

#[test]
fn dropping_the_writer_without_finish_gives_the_verifier_a_truncated_stream() {
    let bytes = fixture();
    let probe = Probe {
        max: usize::MAX,
        ..Probe::default()
    };
    let state = probe.state.clone();
    rt().block_on(async {
        let mut w = SnapshotWriter::with_sink(probe, Limits::default());
        w.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
        w.flush().await.unwrap();
        let verifier = {
            // What dropping the writer does: the sender goes first.
            let SnapshotWriter {
                verifier, file, tx, ..
            } = w;
            drop(tx);
            let _ = file.await;
            verifier
        };
        assert!(
            verifier.await.unwrap().is_err(),
            "half a snapshot is refused"
        );
    });
    assert_eq!(state.lock().unwrap().out.len(), bytes.len() / 2);
}

#[test]
fn writeback_is_started_every_window_so_the_final_fsync_is_short() {
    let len = 2 * SYNC_EVERY as usize + 5;
    let bytes = vec![7u8; len];
    let probe = Probe {
        max: usize::MAX,
        ..Probe::default()
    };
    let (failed, r, _) = stream(&bytes, BUF, probe.clone());
    assert!(failed.is_none() && r.is_ok());
    let s = probe.state.lock().unwrap();
    assert_eq!(
        s.windows,
        vec![(0, SYNC_EVERY), (SYNC_EVERY, 2 * SYNC_EVERY)],
        "one window per {SYNC_EVERY} bytes, in order"
    );
    assert_eq!(s.out.len(), len);
    assert!(s.synced);
}

/// Forgetting drops each written-back window once it is
/// `CACHED_WINDOWS` behind, in order and without gaps; without it
/// nothing is dropped.
#[test]
fn forgotten_windows_are_written_back_and_lag_the_writer_by_the_cached_windows() {
    let windows = CACHED_WINDOWS + 3;
    let len = (windows * SYNC_EVERY) as usize + 5;
    let bytes = vec![7u8; len];
    for forget in [true, false] {
        let probe = Probe {
            max: usize::MAX,
            ..Probe::default()
        };
        let p2 = probe.clone();
        rt().block_on(async {
            let mut w = SnapshotWriter::start(p2, Limits::default(), None, forget);
            w.write_all(&bytes).await.expect("written");
            let (r, _) = w.finish().await;
            r.expect("synced");
        });
        let s = probe.state.lock().unwrap();
        assert_eq!(s.out.len(), len, "every byte written");
        if forget {
            // Windows start at 0, W, … (windows - 1)·W; when window k
            // starts, [0, (k - 1 - CACHED)·W) is clean and forgotten.
            let want: Vec<(u64, u64)> = (CACHED_WINDOWS + 1..windows)
                .map(|k| {
                    (
                        (k - 1 - CACHED_WINDOWS) * SYNC_EVERY,
                        (k - CACHED_WINDOWS) * SYNC_EVERY,
                    )
                })
                .collect();
            assert_eq!(s.forgotten, want);
        } else {
            assert!(s.forgotten.is_empty(), "nothing dropped: {:?}", s.forgotten);
        }
    }
}

/// A gzip'ed tar (stored, not compressed: `len` bytes of state) that the
/// verifier reads to the very end before its verdict (no `SHA256SUMS`).
fn big_archive(len: usize) -> Vec<u8> {
    use flate2::{Compression, write::GzEncoder};
    let state: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let meta = format!(
        "{{\"Version\":1,\"ID\":\"bolt-snapshot\",\"Index\":7,\"Term\":2,\"Peers\":null,\"Configuration\":{{\"Servers\":[]}},\"ConfigurationIndex\":1,\"Size\":{len}}}\n"
    );
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::none()));
    for (name, data) in [("meta.json", meta.as_bytes()), ("state.bin", &state[..])] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn the_same_few_buffers_carry_a_stream_of_any_size() {
    // 40 MiB the verifier reads to the end (the buffers come back from
    // it), and 40 MiB it refuses at once (they come back from the file
    // thread): either way at most POOLED buffers are ever allocated.
    for (what, bytes) in [
        ("read to the end", big_archive(40 * BUF)),
        ("refused at once", vec![7u8; 40 * BUF]),
    ] {
        let probe = Probe {
            max: usize::MAX,
            ..Probe::default()
        };
        let state = probe.state.clone();
        let (made, v) = rt().block_on(async {
            let mut w = SnapshotWriter::with_sink(probe, Limits::default());
            let pool = w.pool.clone();
            for c in bytes.chunks(64 * 1024) {
                w.write_all(c).await.unwrap();
            }
            w.flush().await.unwrap();
            let (r, v) = w.finish().await;
            r.unwrap();
            (pool.made(), v)
        });
        assert!(
            state.lock().unwrap().out == bytes,
            "{what}: every byte written"
        );
        assert!(
            made <= POOLED,
            "{what}: {made} buffers allocated for {} MiB, at most {POOLED} expected",
            bytes.len() >> 20
        );
        let e = v.expect_err("neither is a whole snapshot").to_string();
        if what == "read to the end" {
            // Refused only at the end of the archive: the verifier read it all.
            assert!(e.contains("SHA256SUMS"), "{what}: {e}");
        }
    }
}
