//! Unit tests of the snapshot verifier on synthetic archives: the streaming
//! layers' edge cases. The real-fixture tests live in tests/snapshot_verify.rs.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use rstest::rstest;
use sha2::{Digest, Sha256};

use super::*;

/// Deterministic incompressible bytes (xorshift64*).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        out.extend_from_slice(&s.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn header(name: &[u8], size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let field = &mut h.as_old_mut().name;
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

struct Entry {
    name: Vec<u8>,
    data: Vec<u8>,
    kind: tar::EntryType,
}

fn file(name: &str, data: impl Into<Vec<u8>>) -> Entry {
    Entry {
        name: name.as_bytes().to_vec(),
        data: data.into(),
        kind: tar::EntryType::Regular,
    }
}

fn meta_json(index: u64, term: u64, size: u64) -> Vec<u8> {
    format!(
        r#"{{"Version":1,"ID":"bolt-snapshot","Index":{index},"Term":{term},"Peers":null,"Configuration":{{"Servers":[]}},"ConfigurationIndex":1,"Size":{size}}}"#
    )
    .into_bytes()
}

fn sums(meta: &[u8], state: &[u8]) -> Vec<u8> {
    format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(meta)),
        hex::encode(Sha256::digest(state))
    )
    .into_bytes()
}

/// The four entries of a valid snapshot with the given state.
fn valid_entries(state: Vec<u8>) -> Vec<Entry> {
    let meta = meta_json(42, 3, state.len() as u64);
    let s = sums(&meta, &state);
    vec![
        file("meta.json", meta),
        file("state.bin", state),
        file("SHA256SUMS", s),
        file("SHA256SUMS.sealed", vec![7u8; 100]),
    ]
}

fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let h = header(&e.name, e.data.len() as u64, e.kind);
        b.append(&h, &e.data[..]).expect("append to a Vec");
    }
    b.into_inner().expect("finish a Vec")
}

fn gzip(bytes: &[u8], level: Compression) -> Vec<u8> {
    let mut g = GzEncoder::new(Vec::new(), level);
    g.write_all(bytes).expect("write to a Vec");
    g.finish().expect("finish a Vec")
}

fn snapshot(entries: &[Entry]) -> Vec<u8> {
    gzip(&tar_bytes(entries), Compression::none())
}

fn check_of(bytes: &[u8]) -> Result<Identity, &'static str> {
    verify_reader(bytes).map_err(|e| e.check())
}

#[test]
fn large_synthetic_snapshot_streams() {
    const LEN: usize = 64 << 20;
    let state = noise(LEN, 99);
    let file = snapshot(&valid_entries(state));
    let id = verify_reader(&file[..]).expect("64 MiB snapshot verifies");
    assert_eq!(id.state_size, LEN as u64);
    assert_eq!(id.file_size, file.len() as u64);
    assert_eq!(id.sha256, hex::encode(Sha256::digest(&file)));
    assert_eq!((id.index, id.term, id.version), (42, 3, 1));
}

#[test]
fn compressed_with_a_real_level_verifies() {
    let mut state = noise(300_000, 5);
    state.extend(std::iter::repeat_n(0u8, 300_000));
    let file = gzip(&tar_bytes(&valid_entries(state)), Compression::best());
    assert!(check_of(&file).is_ok());
}

/// Hands out at most a few bytes per read, to cross every internal boundary.
struct Dribble<'a>(&'a [u8], usize);

impl Read for Dribble<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.1 = self.1 % 7 + 1;
        let n = self.1.min(out.len()).min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn tiny_reads_verify_the_same() {
    let file = snapshot(&valid_entries(noise(70_000, 3)));
    let inner = gzip(&file, Compression::fast());
    let a = verify_reader(Dribble(&file, 0)).expect("dribbled snapshot");
    assert_eq!(Ok(a), check_of(&file));
    let b = verify_reader(Dribble(&inner, 0)).expect("dribbled .snap.gz");
    assert_eq!(Ok(b), check_of(&inner));
}

/// Fails after `.1` bytes.
struct Broken<'a>(&'a [u8], usize);

impl Read for Broken<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.1 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = out.len().min(self.1).min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        self.1 -= n;
        Ok(n)
    }
}

#[rstest]
#[case::at_start(0)]
#[case::in_header(5)]
#[case::in_state(40_000)]
fn read_errors_are_io(#[case] after: usize) {
    let file = snapshot(&valid_entries(noise(70_000, 3)));
    let err = verify_reader(Broken(&file, after)).err();
    assert_eq!(err.map(|e| e.check()), Some("io"));
}

#[test]
fn missing_file_is_io() {
    let err = verify_file(Path::new("/nonexistent/snapward/x.snap")).err();
    assert_eq!(err.map(|e| e.check()), Some("io"));
}

#[test]
fn concatenated_members_verify() {
    let tar = tar_bytes(&valid_entries(noise(5000, 1)));
    let (a, b) = tar.split_at(1234);
    let mut file = gzip(a, Compression::none());
    file.extend(gzip(b, Compression::fast()));
    assert!(check_of(&file).is_ok());
}

#[test]
fn header_with_name_comment_extra_and_crc_verifies() {
    let tar = tar_bytes(&valid_entries(noise(5000, 1)));
    let mut g = flate2::GzBuilder::new()
        .filename("x.snap")
        .comment("made by a test")
        .extra(vec![1, 2, 3, 4])
        .operating_system(3)
        .write(Vec::new(), Compression::default());
    g.write_all(&tar).expect("write to a Vec");
    let mut file = g.finish().expect("finish a Vec");
    assert!(check_of(&file).is_ok());

    // add FHCRC by hand: flags |= 2, crc16 of the header after it
    let end = 10 + 2 + 4 + "x.snap\0".len() + "made by a test\0".len();
    file[3] |= 0x02;
    let mut crc = flate2::Crc::new();
    crc.update(&file[..end]);
    let crc16 = ((crc.sum() & 0xffff) as u16).to_le_bytes();
    let mut with_hcrc = file[..end].to_vec();
    with_hcrc.extend_from_slice(&crc16);
    with_hcrc.extend_from_slice(&file[end..]);
    assert!(check_of(&with_hcrc).is_ok());
    with_hcrc[end] ^= 1;
    assert_eq!(check_of(&with_hcrc).err(), Some("gzip-structure"));
}

#[rstest]
#[case::reserved_flag(3, 0x20)]
#[case::compression_method(2, 0x01)]
#[case::stored_block_to_reserved_type(10, 0x06)]
fn gzip_header_damage(#[case] at: usize, #[case] xor: u8) {
    let mut file = snapshot(&valid_entries(noise(5000, 1)));
    file[at] ^= xor;
    assert_eq!(check_of(&file).err(), Some("gzip-structure"));
}

#[test]
fn tar_padding_after_the_end_marker_is_allowed() {
    let mut tar = tar_bytes(&valid_entries(noise(5000, 1)));
    let padded = tar.len().div_ceil(10240) * 10240 + 10240;
    tar.resize(padded, 0);
    assert!(check_of(&gzip(&tar, Compression::fast())).is_ok());
    tar.push(1);
    assert_eq!(
        check_of(&gzip(&tar, Compression::fast())).err(),
        Some("trailing-data")
    );
}

#[test]
fn tar_padding_is_limited() {
    let mut tar = tar_bytes(&valid_entries(noise(5000, 1)));
    let end = tar.len();
    tar.resize(end + TAR_PADDING_LIMIT as usize, 0);
    assert!(check_of(&gzip(&tar, Compression::fast())).is_ok());
    tar.push(0);
    assert_eq!(
        check_of(&gzip(&tar, Compression::fast())).err(),
        Some("trailing-data")
    );
}

#[rstest]
#[case::no_end_marker(1024)]
#[case::lone_zero_block(512)]
fn tar_end_marker_is_required(#[case] cut: usize) {
    let tar = tar_bytes(&valid_entries(noise(5000, 1)));
    let file = gzip(&tar[..tar.len() - cut], Compression::fast());
    assert_eq!(check_of(&file).err(), Some("tar-structure"));
}

#[test]
fn tar_header_checksum_is_checked() {
    let mut tar = tar_bytes(&valid_entries(noise(5000, 1)));
    tar[0x64] ^= 1; // a mode digit of the first header
    assert_eq!(
        check_of(&gzip(&tar, Compression::fast())).err(),
        Some("tar-structure")
    );
}

#[rstest]
#[case::pax(tar::EntryType::XHeader)]
#[case::gnu_long_name(tar::EntryType::GNULongName)]
#[case::hard_link(tar::EntryType::Link)]
#[case::fifo(tar::EntryType::Fifo)]
#[case::sparse(tar::EntryType::GNUSparse)]
fn special_entries_are_refused(#[case] kind: tar::EntryType) {
    let mut entries = valid_entries(noise(5000, 1));
    entries.insert(
        0,
        Entry {
            name: b"meta.json".to_vec(),
            data: b"30 path=meta.json\n".to_vec(),
            kind,
        },
    );
    assert_eq!(
        check_of(&snapshot(&entries)).err(),
        Some("not-regular-file")
    );
}

#[rstest]
#[case::dot(".")]
#[case::dotdot("..")]
#[case::backslash("x\\meta.json")]
#[case::empty("")]
fn odd_names_are_entry_path(#[case] name: &str) {
    let mut entries = valid_entries(noise(5000, 1));
    entries.push(file(name, "x"));
    assert_eq!(check_of(&snapshot(&entries)).err(), Some("entry-path"));
}

#[test]
fn ustar_prefix_counts_as_a_path() {
    let mut entries = valid_entries(noise(5000, 1));
    let mut tar = tar::Builder::new(Vec::new());
    let first = entries.remove(0);
    let mut h = header(&first.name, first.data.len() as u64, first.kind);
    if let Some(u) = h.as_ustar_mut() {
        u.prefix[..4].copy_from_slice(b"snap");
    }
    h.set_cksum();
    tar.append(&h, &first.data[..]).expect("append");
    for e in &entries {
        tar.append(&header(&e.name, e.data.len() as u64, e.kind), &e.data[..])
            .expect("append");
    }
    let file = gzip(&tar.into_inner().expect("finish"), Compression::fast());
    assert_eq!(check_of(&file).err(), Some("entry-path"));
}

/// Damage inside the archive *and* in the gzip trailer: the trailer, the
/// root cause, is what gets reported.
#[test]
fn stream_damage_outranks_archive_problems() {
    let mut entries = valid_entries(noise(5000, 1));
    entries.push(file("extra", "x"));
    let mut file = snapshot(&entries);
    assert_eq!(check_of(&file).err(), Some("unexpected-entry"));
    let n = file.len();
    file[n - 8] ^= 1;
    assert_eq!(check_of(&file).err(), Some("gzip-trailer"));
    file.truncate(n - 3);
    assert_eq!(check_of(&file).err(), Some("truncated"));
}

#[test]
fn a_third_gzip_layer_is_not_unwrapped() {
    let file = snapshot(&valid_entries(noise(5000, 1)));
    let twice = gzip(&gzip(&file, Compression::fast()), Compression::fast());
    assert_eq!(check_of(&twice).err(), Some("tar-structure"));
}

#[rstest]
#[case::inner_truncated(true, "truncated")]
#[case::inner_trailer(false, "gzip-trailer")]
fn inner_layer_is_checked_strictly(#[case] cut: bool, #[case] expect: &str) {
    let mut file = snapshot(&valid_entries(noise(5000, 1)));
    let n = file.len();
    if cut {
        file.truncate(n - 4);
    } else {
        file[n - 2] ^= 0x40;
    }
    let err = verify_reader(&gzip(&file, Compression::fast())[..]).err();
    assert!(matches!(
        err,
        Some(
            VerifyError::Truncated {
                layer: Layer::Inner,
                ..
            } | VerifyError::GzipTrailer {
                layer: Layer::Inner,
                ..
            }
        )
    ));
    assert_eq!(err.map(|e| e.check()), Some(expect));
}

#[test]
fn inner_layer_trailing_bytes_are_refused() {
    let mut file = snapshot(&valid_entries(noise(5000, 1)));
    file.extend_from_slice(b"junk");
    assert_eq!(
        check_of(&gzip(&file, Compression::fast())).err(),
        Some("trailing-data")
    );
}

#[test]
fn identity_serializes_camel_case() {
    let id = Identity {
        index: 1,
        term: 2,
        version: 1,
        state_size: 3,
        file_size: 4,
        sha256: "ab".into(),
    };
    let v = serde_json::to_value(&id).expect("serialize");
    assert_eq!(
        v,
        serde_json::json!({"index":1,"term":2,"version":1,"stateSize":3,"fileSize":4,"sha256":"ab"})
    );
    assert_eq!(serde_json::from_value::<Identity>(v).ok(), Some(id));
}

fn one_of_each() -> Vec<VerifyError> {
    let s = String::new;
    vec![
        VerifyError::Io(io::Error::other("x")),
        VerifyError::EmptyFile,
        VerifyError::NotGzip { found: s() },
        VerifyError::Truncated {
            layer: Layer::Outer,
            detail: s(),
        },
        VerifyError::GzipStructure {
            layer: Layer::Outer,
            detail: s(),
        },
        VerifyError::GzipTrailer {
            layer: Layer::Outer,
            detail: s(),
        },
        VerifyError::TrailingGzipData {
            layer: Layer::Outer,
        },
        VerifyError::TrailingTarData { detail: s() },
        VerifyError::TarStructure { detail: s() },
        VerifyError::NotRegularFile {
            name: s(),
            kind: s(),
        },
        VerifyError::EntryPath { name: s() },
        VerifyError::UnexpectedEntry { name: s() },
        VerifyError::DuplicateEntry { name: "x" },
        VerifyError::MissingEntry { name: "x" },
        VerifyError::MetaTooLarge { size: 1, limit: 1 },
        VerifyError::SumsTooLarge {
            name: "x",
            size: 1,
            limit: 1,
        },
        VerifyError::MetaJson(serde_json::from_str::<u8>("x").expect_err("not JSON")),
        VerifyError::SumsFormat { detail: s() },
        VerifyError::Sha256MismatchMeta {
            listed: s(),
            actual: s(),
        },
        VerifyError::Sha256MismatchState {
            listed: s(),
            actual: s(),
        },
        VerifyError::SizeMismatch {
            meta_size: 1,
            state_len: 2,
        },
        VerifyError::SealedSumsEmpty,
        VerifyError::TooLarge { limit: 1 },
        VerifyError::InflateRatio {
            ratio: 1,
            inflated: 2,
            stored: 1,
        },
        VerifyError::StateTooLarge { size: 2, limit: 1 },
    ]
}

#[test]
fn check_names_match_diagnostic_codes_and_the_list() {
    use miette::Diagnostic;
    let mut seen = std::collections::BTreeSet::new();
    for e in one_of_each() {
        let code = e.code().map(|c| c.to_string());
        assert_eq!(code, Some(format!("snapshot::{}", e.check())), "{e:?}");
        assert!(
            VerifyError::CHECKS.contains(&e.check()),
            "{} not in CHECKS",
            e.check()
        );
        assert!(
            e.check()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{} is not kebab-case",
            e.check()
        );
        seen.insert(e.check());
    }
    assert_eq!(
        seen.len(),
        VerifyError::CHECKS.len(),
        "CHECKS lists a check no variant has"
    );
}

/// A gzip member holding `len` zero bytes (about `len / 1000` bytes).
fn zeros_member(len: usize) -> Vec<u8> {
    gzip(&vec![0u8; len], Compression::best())
}

/// A `.snap.gz`-shaped file (two gzip layers) whose tar starts with
/// `meta.json` and a `state.bin` header announcing `state_size` bytes, then
/// `gib` GiB of zeros — about 2 KiB per GiB on disk, as concatenated gzip
/// members in both layers (each member is valid on its own).
fn nested_bomb(state_size: u64, gib: usize) -> Vec<u8> {
    let meta = meta_json(1, 1, state_size);
    let mut head = Vec::new();
    head.extend_from_slice(
        header(b"meta.json", meta.len() as u64, tar::EntryType::Regular).as_bytes(),
    );
    head.extend_from_slice(&meta);
    head.resize(head.len().div_ceil(512) * 512, 0);
    head.extend_from_slice(header(b"state.bin", state_size, tar::EntryType::Regular).as_bytes());
    // Inner layer: the tar head, then 1 MiB-of-zeros members; outer layer:
    // the inner head, then members of 1024 inner members (1 GiB of tar each).
    let mut file = gzip(&gzip(&head, Compression::best()), Compression::best());
    let inner_gib = zeros_member(1 << 20).repeat(1024);
    let outer_gib = gzip(&inner_gib, Compression::best());
    for _ in 0..gib {
        file.extend_from_slice(&outer_gib);
    }
    file
}

/// Counts the bytes read from the file.
struct Counted<'a>(&'a [u8], u64);

impl Read for Counted<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(out)?;
        self.1 += n as u64;
        Ok(n)
    }
}

/// Issue 18, item 4: 64 GiB of tar in ~150 KiB. Before the caps, verify
/// inflated all of it (minutes to hours); now the ratio stops it after a
/// few MiB of inflate.
#[test]
fn a_nested_gzip_bomb_is_refused_by_the_ratio() {
    let file = nested_bomb(60 << 30, 64);
    assert!(file.len() < 512 << 10, "{} bytes on disk", file.len());
    let mut r = Counted(&file, 0);
    let err = sealed_sums_reader(&mut r).expect_err("a bomb");
    let read = r.1;
    let VerifyError::InflateRatio {
        ratio,
        inflated,
        stored,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(ratio, MAX_INFLATE_RATIO);
    // The work done: a few MiB of tar, not 60 GiB.
    assert!(inflated < 64 << 20, "inflated {inflated}");
    assert!(stored <= read, "{stored} > {read}");
    let text = VerifyError::InflateRatio {
        ratio,
        inflated,
        stored,
    }
    .to_string();
    assert!(
        text.starts_with("the snapshot inflates more than 1032x: "),
        "{text}"
    );
}

/// A `state.bin` header announcing more than the limit (here 4 TiB, a
/// base-256 size) is refused before any of its bytes is inflated.
#[test]
fn an_oversized_state_header_is_refused_before_streaming() {
    let file = nested_bomb(4 << 40, 1);
    let err = verify_reader(&file[..]).expect_err("too large");
    assert!(
        matches!(
            err,
            VerifyError::StateTooLarge {
                size,
                limit: DEFAULT_MAX_SNAPSHOT_BYTES
            } if size == 4 << 40
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the tar header of state.bin announces 4398046511104 bytes, more than the 68719476736-byte limit"
    );
    // A lower limit applies to the header too.
    let small = snapshot(&valid_entries(noise(3 << 20, 4)));
    let err = sealed_sums_reader_with(&small[..], Limits { max_bytes: 1 << 20 }).expect_err("cap");
    assert_eq!(err.check(), "state-too-large");
}

/// The absolute cap counts every inflated byte (headers, padding), not only
/// state.bin; below it, a snapshot verifies as before.
#[test]
fn the_absolute_cap_counts_the_whole_tar() {
    let file = snapshot(&valid_entries(noise((1 << 20) - 1024, 4)));
    let tight = Limits { max_bytes: 1 << 20 };
    let err = sealed_sums_reader_with(&file[..], tight).expect_err("over 1 MiB of tar");
    assert!(
        matches!(err, VerifyError::TooLarge { limit } if limit == 1 << 20),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the snapshot inflates to more than 1048576 bytes, the limit"
    );
    let roomy = Limits { max_bytes: 2 << 20 };
    assert!(sealed_sums_reader_with(&file[..], roomy).is_ok());
}

/// One layer never reaches the ratio: zeros at the best level (deflate's
/// best case). A `.snap.gz` of real-looking data (encrypted values, some
/// zero pages) stays far below it too.
#[test]
fn one_layer_of_zeros_is_within_the_ratio() {
    let tar = tar_bytes(&valid_entries(vec![0u8; 32 << 20]));
    let once = gzip(&tar, Compression::best());
    assert!(
        tar.len() / once.len() > 1000,
        "ratio {}",
        tar.len() / once.len()
    );
    assert!(check_of(&once).is_ok());
    let mut state = noise(4 << 20, 8);
    state.extend(std::iter::repeat_n(0u8, 4 << 20));
    let snap = gzip(&tar_bytes(&valid_entries(state)), Compression::default());
    assert!(check_of(&gzip(&snap, Compression::best())).is_ok());
}
