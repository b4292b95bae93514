//! Snapshot verification against a real OpenBao 2.7.2 snapshot
//! (fixtures/snapshots/, made by scripts/make-snapshot-fixture.sh) and
//! variants of it damaged or rebuilt here: every refusal names its check.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use jiff::Timestamp;
use proptest::prelude::*;
use rstest::rstest;
use sha2::{Digest, Sha256};
use snapward::snapshot::{Identity, newest_order, verify_file, verify_reader};

use crate::support::fixture_snapshot;

fn fixture() -> Vec<u8> {
    std::fs::read(fixture_snapshot()).expect("read the fixture snapshot")
}

/// One tar entry of the fixture: its original header and data.
#[derive(Clone)]
struct Entry {
    header: tar::Header,
    data: Vec<u8>,
}

impl Entry {
    fn name(&self) -> String {
        String::from_utf8_lossy(&self.header.path_bytes()).into_owned()
    }

    fn with_data(mut self, data: impl Into<Vec<u8>>) -> Entry {
        self.data = data.into();
        self.header.set_size(self.data.len() as u64);
        self.header.set_cksum();
        self
    }

    /// Same header, other raw name bytes (no validation: tests need bad ones).
    fn renamed(mut self, name: &str) -> Entry {
        let field = &mut self.header.as_old_mut().name;
        field.fill(0);
        field[..name.len()].copy_from_slice(name.as_bytes());
        self.header.set_cksum();
        self
    }

    fn kind(mut self, kind: tar::EntryType) -> Entry {
        self.header.set_entry_type(kind);
        self.header.set_cksum();
        self
    }
}

/// The fixture's entries in archive order.
fn entries() -> Vec<Entry> {
    let raw = fixture();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&raw[..]));
    let mut out = Vec::new();
    for e in archive.entries().expect("fixture is a tar") {
        let mut e = e.expect("fixture entry");
        let header = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("fixture entry data");
        out.push(Entry { header, data });
    }
    out
}

fn entry(name: &str) -> Entry {
    entries()
        .into_iter()
        .find(|e| e.name() == name)
        .expect("fixture has the entry")
}

fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        b.append(&e.header, &e.data[..]).expect("append to a Vec");
    }
    b.into_inner().expect("finish a Vec")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut g = GzEncoder::new(Vec::new(), Compression::fast());
    g.write_all(bytes).expect("write to a Vec");
    g.finish().expect("finish a Vec")
}

fn rebuilt(entries: &[Entry]) -> Vec<u8> {
    gzip(&tar_of(entries))
}

/// The fixture's entries with `f` applied to the list.
fn edit(f: impl FnOnce(&mut Vec<Entry>)) -> Vec<u8> {
    let mut list = entries();
    f(&mut list);
    rebuilt(&list)
}

/// Replaces the entry called `name` with `f(entry)`.
fn replace(name: &str, f: impl FnOnce(Entry) -> Entry) -> Vec<u8> {
    edit(|list| {
        if let Some(slot) = list.iter_mut().find(|e| e.name() == name) {
            *slot = f(slot.clone());
        }
    })
}

fn sums_for(meta: &[u8], state: &[u8]) -> String {
    format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(meta)),
        hex::encode(Sha256::digest(state))
    )
}

/// meta.json rewritten by `f`, with SHA256SUMS updated to match it.
fn with_meta(f: impl FnOnce(&str) -> String) -> Vec<u8> {
    let meta = f(&String::from_utf8(entry("meta.json").data).expect("meta.json is UTF-8"));
    let sums = sums_for(meta.as_bytes(), &entry("state.bin").data);
    edit(|list| {
        for e in list.iter_mut() {
            match e.name().as_str() {
                "meta.json" => *e = e.clone().with_data(meta.as_bytes()),
                "SHA256SUMS" => *e = e.clone().with_data(sums.as_bytes()),
                _ => {}
            }
        }
    })
}

fn flip(mut bytes: Vec<u8>, at: usize, xor: u8) -> Vec<u8> {
    bytes[at] ^= xor;
    bytes
}

fn from_end(back: usize) -> usize {
    fixture().len() - back
}

#[test]
fn real_fixture_verifies() {
    let raw = fixture();
    let id = verify_file(&fixture_snapshot()).expect("the real snapshot verifies");
    assert!(id.index > 0, "{id:?}");
    assert!(id.term > 0, "{id:?}");
    assert_eq!(id.version, 1);
    assert_eq!(id.file_size, raw.len() as u64);
    assert_eq!(id.sha256, hex::encode(Sha256::digest(&raw)));
    assert_eq!(id.state_size, entry("state.bin").data.len() as u64);
    assert_eq!(verify_reader(&raw[..]).ok(), Some(id));
}

#[test]
fn extra_gzip_layer_verifies() {
    let raw = fixture();
    let snap_gz = gzip(&raw);
    let plain = verify_reader(&raw[..]).expect("fixture");
    let id = verify_reader(&snap_gz[..]).expect("a .snap.gz verifies");
    assert_eq!(
        (id.index, id.term, id.state_size),
        (plain.index, plain.term, plain.state_size)
    );
    assert_eq!(id.file_size, snap_gz.len() as u64);
    assert_eq!(id.sha256, hex::encode(Sha256::digest(&snap_gz)));
}

#[rstest]
#[case::rebuilt_unchanged(edit(|_| {}))]
#[case::state_first(edit(|l| { let s = l.remove(1); l.insert(0, s); }))]
#[case::reversed(edit(|l| l.reverse()))]
#[case::sums_first(edit(|l| { let s = l.remove(2); l.insert(0, s); }))]
#[case::multi_member_gzip({ let t = tar_of(&entries()); let mut g = gzip(&t[..700]); g.extend(gzip(&t[700..])); g })]
fn valid_variants(#[case] bytes: Vec<u8>) {
    let id = verify_reader(&bytes[..]).expect("variant is a valid snapshot");
    assert_eq!(id.sha256, hex::encode(Sha256::digest(&bytes)));
}

#[rstest]
// the byte stream
#[case::empty_file(Vec::new(), "empty-file")]
#[case::not_gzip(tar_of(&entries()), "not-gzip")]
#[case::html_error_page(b"<html>502 Bad Gateway</html>".to_vec(), "not-gzip")]
#[case::cut_after_magic(fixture()[..2].to_vec(), "truncated")]
#[case::cut_in_header(fixture()[..7].to_vec(), "truncated")]
#[case::cut_after_header(fixture()[..10].to_vec(), "truncated")]
#[case::cut_in_meta(fixture()[..300].to_vec(), "truncated")]
#[case::cut_in_state(fixture()[..10_000].to_vec(), "truncated")]
#[case::cut_before_trailer(fixture()[..from_end(8)].to_vec(), "truncated")]
#[case::cut_in_isize(fixture()[..from_end(3)].to_vec(), "truncated")]
#[case::crc_flipped(flip(fixture(), from_end(8), 0x01), "gzip-trailer")]
#[case::crc_high_byte_flipped(flip(fixture(), from_end(5), 0x80), "gzip-trailer")]
#[case::isize_flipped(flip(fixture(), from_end(4), 0x01), "gzip-trailer")]
#[case::isize_high_byte_flipped(flip(fixture(), from_end(1), 0x10), "gzip-trailer")]
#[case::stored_state_byte_flipped(flip(fixture(), 10_000, 0x04), "gzip-trailer")]
#[case::stored_tar_name_flipped(flip(fixture(), 15, 0x20), "gzip-trailer")]
#[case::deflate_block_type_broken(flip(fixture(), 10, 0x06), "gzip-structure")]
#[case::compression_method_broken(flip(fixture(), 2, 0x01), "gzip-structure")]
#[case::garbage_after_member([fixture(), b"garbage".to_vec()].concat(), "trailing-data")]
#[case::zeros_after_member([fixture(), vec![0; 512]].concat(), "trailing-data")]
#[case::second_member_with_junk([fixture(), gzip(b"junk")].concat(), "trailing-data")]
#[case::gzip_of_text(gzip(b"hello, not a tar archive\n"), "tar-structure")]
#[case::gzip_of_random(gzip(&fixture()[100..3000]), "tar-structure")]
#[case::gzip_of_nothing(gzip(b""), "tar-structure")]
#[case::tar_without_end_marker({ let t = tar_of(&entries()); gzip(&t[..t.len() - 1024]) }, "tar-structure")]
// the entries
#[case::missing_meta(edit(|l| l.retain(|e| e.name() != "meta.json")), "missing-entry")]
#[case::missing_state(edit(|l| l.retain(|e| e.name() != "state.bin")), "missing-entry")]
#[case::missing_sums(edit(|l| l.retain(|e| e.name() != "SHA256SUMS")), "missing-entry")]
#[case::missing_sealed(edit(|l| l.retain(|e| e.name() != "SHA256SUMS.sealed")), "missing-entry")]
#[case::extra_entry(edit(|l| l.push(entry("meta.json").renamed("notes.txt"))), "unexpected-entry")]
#[case::duplicate_state(edit(|l| l.push(entry("state.bin"))), "duplicate-entry")]
#[case::duplicate_meta(edit(|l| l.insert(1, entry("meta.json"))), "duplicate-entry")]
#[case::symlink_entry(edit(|l| l.push(entry("meta.json").renamed("link").kind(tar::EntryType::Symlink).with_data(""))), "not-regular-file")]
#[case::state_as_symlink(replace("state.bin", |e| e.kind(tar::EntryType::Symlink).with_data("")), "not-regular-file")]
#[case::directory_entry(edit(|l| l.insert(0, entry("meta.json").renamed("snap/").kind(tar::EntryType::Directory).with_data(""))), "not-regular-file")]
#[case::path_with_slash(replace("meta.json", |e| e.renamed("snap/meta.json")), "entry-path")]
#[case::path_with_dotdot(replace("meta.json", |e| e.renamed("../meta.json")), "entry-path")]
// the contents
#[case::state_byte_flipped(replace("state.bin", |e| { let d = flip(e.data.clone(), 77, 0x01); e.with_data(d) }), "sha256-mismatch-state")]
#[case::state_cut_short(replace("state.bin", |e| { let d = e.data[..e.data.len() - 1].to_vec(); e.with_data(d) }), "sha256-mismatch-state")]
#[case::meta_size_wrong(with_meta(|m| m.replace("\"Size\":", "\"Size\":1")), "size-mismatch")]
#[case::meta_edited_sums_not(replace("meta.json", |e| { let d = String::from_utf8_lossy(&e.data).replace("\"Index\":", "\"Index\":9"); e.with_data(d) }), "sha256-mismatch-meta")]
#[case::sums_wrong_state_hash(replace("SHA256SUMS", |e| { let d = sums_for(&entry("meta.json").data, b"other"); e.with_data(d) }), "sha256-mismatch-state")]
#[case::sums_wrong_meta_hash(replace("SHA256SUMS", |e| { let d = sums_for(b"other", &entry("state.bin").data); e.with_data(d) }), "sha256-mismatch-meta")]
#[case::sums_garbage(replace("SHA256SUMS", |e| e.with_data("not a sums file\n")), "sums-format")]
#[case::sums_empty(replace("SHA256SUMS", |e| e.with_data("")), "sums-format")]
#[case::sealed_empty(replace("SHA256SUMS.sealed", |e| e.with_data("")), "sealed-sums-empty")]
#[case::meta_too_large(with_meta(|m| format!("{m}{}", " ".repeat(9000))), "meta-too-large")]
#[case::sums_too_large(replace("SHA256SUMS", |e| { let d = format!("{}{}", String::from_utf8_lossy(&e.data), "\n".repeat(9000)); e.with_data(d) }), "sums-too-large")]
#[case::sealed_too_large(replace("SHA256SUMS.sealed", |e| e.with_data(vec![1u8; 8193])), "sums-too-large")]
#[case::meta_not_json(with_meta(|_| "this is not json".into()), "meta-json")]
#[case::meta_without_index(with_meta(|m| m.replace("\"Index\"", "\"Indox\"")), "meta-json")]
#[case::meta_negative_size(with_meta(|m| m.replace("\"Size\":", "\"Size\":-")), "meta-json")]
fn corrupt_variants_are_refused(#[case] bytes: Vec<u8>, #[case] check: &str) {
    let err = verify_reader(&bytes[..]).err();
    assert_eq!(err.as_ref().map(|e| e.check()), Some(check), "{err:?}");
}

/// The tar stream inside a gzip file, as a lenient reader sees it.
fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

/// A damaged copy may only be accepted when the damage hit bits no checksum
/// covers and that carry no content (the gzip header's MTIME/XFL/OS and FTEXT
/// flag, the padding bits of a stored-block header): the archive inside must
/// be byte-for-byte the original.
fn accepted_only_if_unchanged(damaged: &[u8]) -> Result<(), String> {
    if verify_reader(damaged).is_ok() && gunzip(damaged) != gunzip(&fixture()) {
        return Err("accepted a snapshot whose archive differs".into());
    }
    Ok(())
}

#[test]
fn every_byte_is_covered() {
    let raw = fixture();
    let mut accepted = Vec::new();
    for at in (0..raw.len())
        .step_by(97)
        .chain(0..32)
        .chain(raw.len() - 16..raw.len())
    {
        let bytes = flip(raw.clone(), at, 0x10);
        if let Err(e) = accepted_only_if_unchanged(&bytes) {
            panic!("flip at {at}: {e}");
        }
        if verify_reader(&bytes[..]).is_ok() {
            accepted.push(at);
        }
    }
    // bit 4 is free in MTIME, XFL and OS (4..10), in the padding of the
    // stored block header (10) and of the final empty block (just before
    // the 8-byte trailer); nowhere else
    let n = raw.len();
    assert_eq!(accepted, vec![4, 5, 6, 7, 8, 9, 10, n - 9]);
}

proptest! {
    #[test]
    fn any_truncation_is_refused(cut in any::<prop::sample::Index>()) {
        let raw = fixture();
        let cut = cut.index(raw.len());
        prop_assert!(verify_reader(&raw[..cut]).is_err());
    }

    #[test]
    fn no_byte_flip_changes_an_accepted_archive(at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let raw = fixture();
        let at = at.index(raw.len());
        let damaged = flip(raw, at, xor);
        prop_assert_eq!(accepted_only_if_unchanged(&damaged), Ok(()));
    }
}

fn id(index: u64, term: u64) -> Identity {
    Identity {
        index,
        term,
        version: 1,
        state_size: 1,
        file_size: 1,
        sha256: String::new(),
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

#[rstest]
#[case::higher_index_beats_later_time((10, 1), "2026-01-01T00:00:00Z", (9, 5), "2026-06-01T00:00:00Z", std::cmp::Ordering::Greater)]
#[case::lower_index_loses_to_earlier_time((9, 9), "2026-06-01T00:00:00Z", (10, 1), "2026-01-01T00:00:00Z", std::cmp::Ordering::Less)]
#[case::same_index_higher_term((10, 3), "2026-01-01T00:00:00Z", (10, 2), "2026-06-01T00:00:00Z", std::cmp::Ordering::Greater)]
#[case::same_identity_later_time((10, 2), "2026-06-01T00:00:00Z", (10, 2), "2026-01-01T00:00:00Z", std::cmp::Ordering::Greater)]
#[case::same_identity_earlier_time((10, 2), "2026-01-01T00:00:00Z", (10, 2), "2026-06-01T00:00:00Z", std::cmp::Ordering::Less)]
#[case::all_equal((10, 2), "2026-01-01T00:00:00Z", (10, 2), "2026-01-01T00:00:00Z", std::cmp::Ordering::Equal)]
fn newest_order_table(
    #[case] a: (u64, u64),
    #[case] at: &str,
    #[case] b: (u64, u64),
    #[case] bt: &str,
    #[case] expect: std::cmp::Ordering,
) {
    let (ia, ib) = (id(a.0, a.1), id(b.0, b.1));
    assert_eq!(newest_order((&ia, ts(at)), (&ib, ts(bt))), expect);
    assert_eq!(newest_order((&ib, ts(bt)), (&ia, ts(at))), expect.reverse());
}

#[test]
fn newest_order_picks_one_newest() {
    let list = [
        (id(5, 1), ts("2026-03-01T00:00:00Z")),
        (id(7, 1), ts("2026-01-01T00:00:00Z")),
        (id(7, 2), ts("2025-01-01T00:00:00Z")),
        (id(6, 9), ts("2026-12-01T00:00:00Z")),
    ];
    let newest = list
        .iter()
        .max_by(|a, b| newest_order((&a.0, a.1), (&b.0, b.1)))
        .map(|(i, _)| (i.index, i.term));
    assert_eq!(newest, Some((7, 2)));
}

// ---- verification while streaming (VerifyingWriter) ----------------------

/// A writer that takes at most `max` bytes a call and answers every other
/// call `Pending` (waking itself at once): short writes and waits, as a
/// file or socket may give them.
struct Choppy {
    out: Vec<u8>,
    max: usize,
    calls: usize,
}

impl tokio::io::AsyncWrite for Choppy {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.calls += 1;
        if self.calls.is_multiple_of(2) {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        let n = buf.len().min(self.max);
        self.out.extend_from_slice(&buf[..n]);
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Streams `bytes` through a `VerifyingWriter` in `chunk`-byte writes:
/// what reached the inner writer, and the verdict's check (`None`: valid,
/// with its identity).
fn stream_verified(
    bytes: &[u8],
    chunk: usize,
    max: usize,
) -> (Vec<u8>, Result<Identity, &'static str>) {
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut w = snapward::snapshot::VerifyingWriter::new(Choppy {
            out: Vec::new(),
            max,
            calls: 0,
        });
        for c in bytes.chunks(chunk.max(1)) {
            w.write_all(c).await.expect("write");
        }
        w.flush().await.expect("flush");
        let (inner, verdict) = w.finish().await;
        (
            inner.out,
            verdict.map(|s| s.identity).map_err(|e| e.check()),
        )
    })
}

/// The verdict while streaming is exactly `verify_reader`'s on the same
/// bytes — the identity of a valid snapshot, the same check for every
/// damaged one — however the bytes are split, and every byte reaches the
/// inner writer unchanged (also after the verifier has stopped early).
#[rstest]
#[case::valid(fixture())]
#[case::extra_gzip_layer(gzip(&fixture()))]
#[case::cut_in_state(fixture()[..10_000].to_vec())]
#[case::crc_flipped(flip(fixture(), from_end(8), 0x01))]
#[case::not_gzip(b"<html>502 Bad Gateway</html>".to_vec())]
#[case::garbage_after_member([fixture(), b"garbage".to_vec()].concat())]
#[case::empty(Vec::new())]
fn verifying_writer_agrees_with_verify_reader(#[case] bytes: Vec<u8>) {
    let expected = verify_reader(&bytes[..]).map_err(|e| e.check());
    for (chunk, max) in [
        (1 << 20, usize::MAX),
        (4096, 1000),
        (7, 3),
        (65_536, 65_536),
    ] {
        let (written, verdict) = stream_verified(&bytes, chunk, max);
        assert!(written == bytes, "chunk {chunk}/{max}: bytes changed");
        assert_eq!(verdict, expected, "chunk {chunk}/{max}");
    }
}
