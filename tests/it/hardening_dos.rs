//! Issue 18, item 4 (snapshot side): a small hostile file must not keep
//! `snapward verify` busy for hours. The files are built here (two gzip
//! layers of concatenated members: ~2 KiB on disk per GiB of tar) and the
//! assertions bound the work by what the refusal reports, not by time.
//! (The 1 MiB cap on OpenBao's JSON answers is tested at the client layer
//! with an endless answer: `src/backends/openbao/client.rs`.)

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::Value;

use crate::support::cmd::snapward;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut g = GzEncoder::new(Vec::new(), Compression::best());
    g.write_all(bytes).unwrap();
    g.finish().unwrap()
}

fn header(name: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    // tar writes sizes of 8 GiB and more in base-256.
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A `.snap.gz`-shaped file: meta.json, then a state.bin header announcing
/// `state_size` bytes and `gib` GiB of zeros.
fn bomb(state_size: u64, gib: usize) -> Vec<u8> {
    let meta =
        format!(r#"{{"Version":1,"ID":"bolt-snapshot","Index":9,"Term":2,"Size":{state_size}}}"#);
    let mut head = header("meta.json", meta.len() as u64);
    head.extend_from_slice(meta.as_bytes());
    head.resize(head.len().div_ceil(512) * 512, 0);
    head.extend(header("state.bin", state_size));
    let mut file = gzip(&gzip(&head));
    let inner_gib = gzip(&vec![0u8; 1 << 20]).repeat(1024);
    let outer_gib = gzip(&inner_gib);
    for _ in 0..gib {
        file.extend_from_slice(&outer_gib);
    }
    file
}

fn verify_json(file: &std::path::Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = snapward()
        .arg("verify")
        .arg(file)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, stderr)
}

/// 48 GiB of tar in ~100 KiB, below the 64 GiB default cap: before the
/// caps `verify` inflated all of it; now the ratio refuses it after a few
/// MiB (the numbers in the message are the work done).
#[test]
fn verify_refuses_a_nested_gzip_bomb_after_a_few_mib() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bomb.snap.gz");
    let bytes = bomb(48 << 30, 48);
    assert!(bytes.len() < 256 << 10, "{} bytes", bytes.len());
    std::fs::write(&f, &bytes).unwrap();
    let (code, v, stderr) = verify_json(&f, &[]);
    assert_eq!(code, Some(1), "{v}\n{stderr}");
    let row = &v[0];
    assert_eq!(row["valid"], false, "{v}");
    assert_eq!(row["check"], "inflate-ratio", "{v}");
    let error = row["error"].as_str().unwrap();
    let inflated: u64 = error
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no inflated count in {error:?}"));
    assert!(
        error.starts_with("the snapshot inflates more than 1032x: "),
        "{error}"
    );
    assert!(inflated < 64 << 20, "inflated {inflated} bytes: {error}");
}

/// A state.bin header over the cap (1 TiB in base-256) is refused before
/// its bytes are read; `--max-snapshot-bytes` sets the cap without a policy.
#[test]
fn verify_refuses_an_oversized_state_header_and_takes_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.snap.gz");
    std::fs::write(&f, bomb(1 << 40, 1)).unwrap();
    let (code, v, stderr) = verify_json(&f, &[]);
    assert_eq!(code, Some(1), "{v}\n{stderr}");
    assert_eq!(v[0]["check"], "state-too-large", "{v}");
    assert_eq!(
        v[0]["error"],
        "the tar header of state.bin announces 1099511627776 bytes, more than the 68719476736-byte limit"
    );

    // The same file under a 1 TiB + 1 MiB cap gets past the header and hits
    // the ratio instead; a cap below it refuses the header again.
    let (_, v, _) = verify_json(&f, &["--max-snapshot-bytes", "2Ti"]);
    assert_eq!(v[0]["check"], "inflate-ratio", "{v}");
    let (_, v, _) = verify_json(&f, &["--max-snapshot-bytes", "1Mi"]);
    assert_eq!(
        v[0]["error"],
        "the tar header of state.bin announces 1099511627776 bytes, more than the 1048576-byte limit"
    );

    let (code, _, stderr) = verify_json(&f, &["--max-snapshot-bytes", "lots"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--max-snapshot-bytes \"lots\" is not a positive size"),
        "{stderr}"
    );
}

/// The real fixture verifies under the default limits and under a cap
/// just large enough for it, and is refused (`too-large`) under a smaller
/// one that still admits its state.bin header.
#[test]
fn the_real_fixture_fits_the_default_limits() {
    let f = crate::support::fixture_snapshot();
    let (code, v, stderr) = verify_json(&f, &[]);
    assert_eq!(code, Some(0), "{v}\n{stderr}");
    let state = v[0]["identity"]["stateSize"].as_u64().unwrap();
    let (code, v, _) = verify_json(&f, &["--max-snapshot-bytes", &(state + 512).to_string()]);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v[0]["check"], "too-large", "{v}");
}
