//! Unit and property tests of offline authentication on synthetic sealed
//! sums and archives (sealed here with `aes-gcm` the way OpenBao's Shamir
//! seal does). The real-server tests are tests/auth.rs.

use std::io::Write;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::shamir::split;
use super::*;

/// `SHA256SUMS.sealed` as OpenBao writes it: `0a <len> nonce‖ct‖tag 2a 00`.
fn seal(key: &[u8], nonce: [u8; 12], plain: &[u8]) -> Vec<u8> {
    let ct = match key.len() {
        16 => Aes128Gcm::new_from_slice(key)
            .unwrap()
            .encrypt(&nonce.into(), plain),
        _ => Aes256Gcm::new_from_slice(key)
            .unwrap()
            .encrypt(&nonce.into(), plain),
    }
    .unwrap();
    let mut field = nonce.to_vec();
    field.extend(ct);
    let mut out = vec![0x0a];
    let mut n = field.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend(field);
    out.extend([0x2a, 0x00]);
    out
}

fn sums_of(meta: &[u8], state: &[u8]) -> Vec<u8> {
    format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(meta)),
        hex::encode(Sha256::digest(state))
    )
    .into_bytes()
}

const SUMS: &[u8] =
    b"4392c52f24296e1958679de44ee7a34e801f1ef10d3351380d11f8167cf5348e  meta.json\n\
8d1a6d1d1e1b38b2bf2bb1e0fb09c9b0a4e3b4a4e0f3c6f0d3e4c1c7d0f2a9b1  state.bin\n";

fn shares_of(key: &[u8], xs: &[u8], threshold: usize, seed: u8) -> Vec<Vec<u8>> {
    let mut n = seed | 1;
    split(key, xs, threshold, || {
        n = n.wrapping_mul(167).wrapping_add(13);
        n | 1 // never 0: keeps every leading coefficient non-zero
    })
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

#[test]
fn a_two_of_three_split_authenticates_with_any_two_and_all_three() {
    let key = [0x42u8; 32];
    let sealed = seal(&key, [7; 12], SUMS);
    let shares = shares_of(&key, &[17, 3, 250], 2, 9);
    for pick in [[0, 1], [0, 2], [1, 2], [2, 0]] {
        let parts = [&shares[pick[0]][..], &shares[pick[1]][..]];
        assert_eq!(
            authenticate_raw(&sealed, SUMS, &parts).unwrap(),
            Authenticity::Authentic
        );
    }
    assert_eq!(
        authenticate_raw(&sealed, SUMS, &refs(&shares)).unwrap(),
        Authenticity::Authentic
    );
    assert!(matches!(
        authenticate_raw(&sealed, SUMS, &[&shares[1][..]]),
        Err(AuthError::TooFewShares { len: 33 })
    ));
    assert_eq!(
        authenticate_with_key(&sealed, SUMS, &key).unwrap(),
        Authenticity::Authentic
    );
}

#[test]
fn stored_shares_in_hex_base64_or_mixed() {
    let key = [0x17u8; 32];
    let sealed = seal(&key, [1; 12], SUMS);
    let shares = shares_of(&key, &[1, 2, 3], 2, 5);
    let hex_keys: Vec<Secret> = shares.iter().map(|s| Secret::new(hex::encode(s))).collect();
    let b64: Vec<Secret> = shares
        .iter()
        .map(|s| Secret::new(base64::engine::general_purpose::STANDARD.encode(s)))
        .collect();
    for keys in [
        hex_keys.clone(),
        b64.clone(),
        vec![hex_keys[0].clone(), b64[2].clone()],
    ] {
        assert_eq!(
            authenticate(&sealed, SUMS, &keys).unwrap(),
            Authenticity::Authentic
        );
    }
    let upper = vec![
        Secret::new(hex::encode_upper(&shares[0])),
        hex_keys[1].clone(),
    ];
    assert!(authenticate(&sealed, SUMS, &upper).unwrap().is_authentic());
    let bad = vec![hex_keys[0].clone(), Secret::new("not a key!")];
    assert!(matches!(
        authenticate(&sealed, SUMS, &bad),
        Err(AuthError::ShareEncoding { index: 1 })
    ));
    // the error names the position, never the value
    let shown = format!(
        "{:?} {}",
        bad[1],
        authenticate(&sealed, SUMS, &bad).unwrap_err()
    );
    assert!(!shown.contains("not a key"), "{shown}");
    assert!(matches!(
        authenticate(&sealed, SUMS, &[]),
        Err(AuthError::NoShares)
    ));
}

#[test]
fn a_one_of_one_key_and_other_aes_sizes() {
    for len in [16usize, 32] {
        let key = vec![9u8; len];
        let sealed = seal(&key, [3; 12], SUMS);
        let stored = Secret::new(base64::engine::general_purpose::STANDARD.encode(&key));
        assert!(
            authenticate(&sealed, SUMS, &[stored])
                .unwrap()
                .is_authentic()
        );
    }
    let sealed = seal(&[9u8; 32], [3; 12], SUMS);
    assert!(matches!(
        authenticate_with_key(&sealed, SUMS, &[0u8; 20]),
        Err(AuthError::KeyLength { len: 20 })
    ));
    // a 17-byte secret split in two combines to a 17-byte key
    let shares = shares_of(&[1u8; 17], &[1, 2], 2, 1);
    assert!(matches!(
        authenticate_raw(&sealed, SUMS, &refs(&shares)),
        Err(AuthError::KeyLength { len: 17 })
    ));
}

#[test]
fn malformed_sealed_files_are_errors() {
    let shares = shares_of(&[1u8; 32], &[1, 2], 2, 1);
    let parts = refs(&shares);
    for (bytes, check) in [
        (&b"\x0a\x05ab"[..], "sealed-format"),
        (&b"\x0a\x1bnonce+tag is 28 bytes....."[..], "sealed-format"),
        (&b""[..], "sealed-format"),
        (&b"\x0b"[..], "sealed-format"),
    ] {
        let err = authenticate_raw(bytes, SUMS, &parts).unwrap_err();
        assert_eq!(err.check(), check, "{bytes:02x?}: {err}");
    }
}

#[test]
fn every_flipped_bit_of_the_sealed_file_or_the_sums_is_caught() {
    let key = [0xa5u8; 32];
    let sealed = seal(&key, [0x5a; 12], SUMS);
    let shares = shares_of(&key, &[40, 41, 42], 3, 77);
    let parts = refs(&shares);
    let original = blob::parse(&sealed).unwrap().ciphertext.to_vec();
    let mut unauthenticated_framing = 0;
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let verdict = authenticate_raw(&bad, SUMS, &parts);
        let same_ciphertext = blob::parse(&bad).is_ok_and(|b| b.ciphertext == original);
        if same_ciphertext {
            // KeyInfo's framing (`2a 00`) is not covered by the tag
            unauthenticated_framing += 1;
            continue;
        }
        assert!(
            !matches!(verdict, Ok(Authenticity::Authentic)),
            "bit {bit}: {verdict:?}"
        );
    }
    assert!(unauthenticated_framing <= 16, "{unauthenticated_framing}");
    for bit in 0..SUMS.len() * 8 {
        let mut bad = SUMS.to_vec();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            authenticate_raw(&sealed, &bad, &parts).unwrap(),
            Authenticity::SumsMismatch,
            "bit {bit}"
        );
    }
    assert_eq!(
        authenticate_raw(&sealed, &SUMS[..SUMS.len() - 1], &parts).unwrap(),
        Authenticity::SumsMismatch
    );
}

#[test]
fn the_sealed_lines_may_come_in_the_other_order() {
    // OpenBao encodes the sums twice from a Go map: the order may differ
    let (first, second) = SUMS.split_at(SUMS.iter().position(|&c| c == b'\n').unwrap() + 1);
    let swapped = [second, first].concat();
    let key = [0x61u8; 32];
    let sealed = seal(&key, [8; 12], &swapped);
    assert_eq!(
        authenticate_with_key(&sealed, SUMS, &key).unwrap(),
        Authenticity::Authentic
    );
    // but every line byte for byte: no other spelling of a digest
    let upper = String::from_utf8(SUMS.to_vec())
        .unwrap()
        .replacen('a', "A", 1);
    assert_eq!(
        authenticate_with_key(&sealed, upper.as_bytes(), &key).unwrap(),
        Authenticity::SumsMismatch
    );
    assert!(same_lines(b"a\nb\n", b"b\na\n"));
    assert!(!same_lines(b"a\nb", b"b\na"));
    assert!(!same_lines(b"a\na\n", b"a\nb\n"));
    assert!(same_lines(b"", b""));
}

/// (key, x-coordinates, threshold, coefficient seed, subset order, k)
fn key_split() -> impl Strategy<Value = ([u8; 32], Vec<u8>, usize, u8, Vec<usize>, usize)> {
    (2usize..=5)
        .prop_flat_map(|n| (Just(n), 2..=n))
        .prop_flat_map(|(n, t)| {
            (
                any::<[u8; 32]>(),
                Just((1..=255u8).collect::<Vec<u8>>()).prop_shuffle(),
                Just(t),
                any::<u8>(),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
                t..=n,
            )
                .prop_map(move |(key, xs, t, seed, order, k)| {
                    (key, xs.into_iter().take(n).collect(), t, seed, order, k)
                })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_threshold_subset_authenticates_fewer_or_foreign_do_not(
        (key, xs, t, seed, order, k) in key_split(),
        nonce in any::<[u8; 12]>(),
        foreign in any::<[u8; 32]>(),
    ) {
        let sealed = seal(&key, nonce, SUMS);
        let shares = shares_of(&key, &xs, t, seed);
        let parts: Vec<&[u8]> = order.iter().take(k).map(|&i| &shares[i][..]).collect();
        prop_assert_eq!(authenticate_raw(&sealed, SUMS, &parts).unwrap(), Authenticity::Authentic);
        if t > 2 {
            let fewer: Vec<&[u8]> = parts.iter().take(t - 1).copied().collect();
            prop_assert_eq!(authenticate_raw(&sealed, SUMS, &fewer).unwrap(), Authenticity::OtherKeys);
        }
        prop_assume!(foreign != key);
        let other = shares_of(&foreign, &xs, t, seed);
        let other_parts: Vec<&[u8]> = order.iter().take(k).map(|&i| &other[i][..]).collect();
        prop_assert_eq!(authenticate_raw(&sealed, SUMS, &other_parts).unwrap(), Authenticity::OtherKeys);
        prop_assert_eq!(authenticate_with_key(&sealed, SUMS, &foreign).unwrap(), Authenticity::OtherKeys);
    }

    #[test]
    fn arbitrary_sealed_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        sums in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let key = [1u8; 32];
        let _ = authenticate_with_key(&bytes, &sums, &key);
        let shares = [Secret::new(hex::encode([1u8; 32]))];
        let _ = authenticate(&bytes, &sums, &shares);
    }
}

// ---- whole archives --------------------------------------------------

fn meta_json(index: u64, size: usize) -> Vec<u8> {
    format!(
        "{{\"Version\":1,\"ID\":\"bolt-snapshot\",\"Index\":{index},\"Term\":2,\"Peers\":null,\"Configuration\":{{\"Servers\":[]}},\"ConfigurationIndex\":1,\"Size\":{size}}}\n"
    )
    .into_bytes()
}

/// A gzip'ed tar in OpenBao's entry order.
fn archive(meta: &[u8], state: &[u8], sums: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (name, data) in [
        ("meta.json", meta),
        ("state.bin", state),
        ("SHA256SUMS", sums),
        ("SHA256SUMS.sealed", sealed),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data).unwrap();
    }
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[test]
fn whole_archives_tampered_with_or_not() {
    let key = [0x33u8; 32];
    let shares: Vec<Secret> = shares_of(&key, &[5, 6, 7], 2, 3)
        .iter()
        .map(|s| Secret::new(hex::encode(s)))
        .collect();
    let state: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let meta = meta_json(40, state.len());
    let sums = sums_of(&meta, &state);
    let sealed = seal(&key, [2; 12], &sums);

    let good = archive(&meta, &state, &sums, &sealed);
    let a = authenticate_reader(&good[..], &shares[..2]).unwrap();
    assert_eq!(a.authenticity, Authenticity::Authentic);
    assert_eq!((a.identity.index, a.identity.term), (40, 2));
    let s = crate::snapshot::sealed_sums_reader(&good[..]).unwrap();
    assert_eq!((s.sums, s.sealed), (sums.clone(), sealed.clone()));

    // raised Index, sums left alone: the archive check fails
    let raised = meta_json(41, state.len());
    let e =
        authenticate_reader(&archive(&raised, &state, &sums, &sealed)[..], &shares).unwrap_err();
    assert_eq!(e.check(), "sha256-mismatch-meta");
    // ... and with the sums recomputed: consistent, but not what was sealed
    let resummed = sums_of(&raised, &state);
    let a =
        authenticate_reader(&archive(&raised, &state, &resummed, &sealed)[..], &shares).unwrap();
    assert_eq!(a.authenticity, Authenticity::SumsMismatch);
    assert_eq!(a.identity.index, 41);

    // one flipped bit in state.bin, likewise
    let mut flipped = state.clone();
    flipped[1234] ^= 0x10;
    let e =
        authenticate_reader(&archive(&meta, &flipped, &sums, &sealed)[..], &shares).unwrap_err();
    assert_eq!(e.check(), "sha256-mismatch-state");
    let resummed = sums_of(&meta, &flipped);
    let a =
        authenticate_reader(&archive(&meta, &flipped, &resummed, &sealed)[..], &shares).unwrap();
    assert_eq!(a.authenticity, Authenticity::SumsMismatch);

    // and a reseal under other keys
    let other = seal(&[0x34u8; 32], [2; 12], &resummed);
    let a = authenticate_reader(&archive(&meta, &flipped, &resummed, &other)[..], &shares).unwrap();
    assert_eq!(a.authenticity, Authenticity::OtherKeys);

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.snap");
    std::fs::write(&p, &good).unwrap();
    assert!(
        authenticate_file(&p, &shares)
            .unwrap()
            .authenticity
            .is_authentic()
    );
    assert_eq!(
        authenticate_file(&dir.path().join("missing"), &shares)
            .unwrap_err()
            .check(),
        "io"
    );
}

#[test]
fn the_real_fixture_opens_to_its_sums_under_no_known_key() {
    // fixtures/snapshots/openbao-2.7.2-small.snap: 1-of-1, key discarded.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/snapshots/openbao-2.7.2-small.snap");
    let s = crate::snapshot::sealed_sums_file(&path).unwrap();
    let blob = blob::parse(&s.sealed).unwrap();
    assert_eq!(blob.ciphertext.len(), NONCE_LEN + s.sums.len() + TAG_LEN);
    assert_eq!(blob.key_info, Some(KeyInfo::default()));
    assert_eq!(
        authenticate_with_key(&s.sealed, &s.sums, &[0u8; 32]).unwrap(),
        Authenticity::OtherKeys
    );
}
