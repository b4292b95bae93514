//! The CI smoke run of the two fuzz targets (issue 6 item 4): the same
//! properties as `fuzz/fuzz_targets/{policy,verify}.rs`, checked on a few
//! thousand inputs mutated from the real fixtures with proptest (cargo-fuzz
//! needs a nightly-only sanitizer build and minutes of runtime; the long
//! runs are documented in the README). Any regression input a long run
//! finds goes into `fixtures/fuzz/<target>/`, and every file there is
//! replayed here.
//!
//! - policy: `lint_text` never panics and every diagnostic's span lies
//!   inside the text;
//! - verify: `verify_reader` never panics, and whatever it accepts has the
//!   input's length as its file size;
//! - sealed: the `SHA256SUMS.sealed` reader and the authentication never
//!   panic, and nothing authenticates under a key the input does not
//!   choose (`fuzz/fuzz_targets/sealed.rs`).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p
            .file_name()
            .is_some_and(|n| n == "README.md" || n == ".gitkeep")
        {
            continue;
        } else if ext.is_empty() || p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn policy_seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(read_policy_seeds)
}

fn read_policy_seeds() -> Vec<String> {
    let mut seeds: Vec<String> = files(&root().join("fixtures/policies"), "yaml")
        .into_iter()
        .chain(files(&root().join("policies"), "yaml"))
        .map(|p| std::fs::read_to_string(p).expect("read seed"))
        .collect();
    assert!(seeds.len() >= 10, "the policy fixtures are the seeds");
    seeds.sort();
    seeds
}

fn snapshot_seed() -> Vec<u8> {
    static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        std::fs::read(root().join("fixtures/snapshots/openbao-2.7.2-small.snap")).expect("fixture")
    })
    .clone()
}

fn policy_property(text: &str) {
    let report = snapward::policy::lint_text("fuzz.yaml", text, true);
    for d in &report.diagnostics {
        assert!(d.span.offset() <= text.len(), "span outside the file");
    }
}

fn verify_property(data: &[u8]) {
    if let Ok(id) = snapward::snapshot::verify_reader(data) {
        assert_eq!(id.file_size, data.len() as u64);
    }
}

/// One edit of a byte string: replace, insert or delete a range.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = data.len().max(1);
        match e {
            Edit::Set(i, b) => {
                if !data.is_empty() {
                    let i = i % data.len();
                    data[i] = *b;
                }
            }
            Edit::Insert(i, v) => {
                let i = i % (data.len() + 1);
                data.splice(i..i, v.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = i % len;
                let end = (i + n).min(data.len());
                if i < end {
                    data.drain(i..end);
                }
            }
            Edit::Truncate(i) => data.truncate(i % len),
        }
    }
    data
}

/// YAML-shaped edits: tokens that stress the parser and the validator.
fn yaml_token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        ": ",
        "\n",
        "  ",
        "- ",
        "{",
        "}",
        "[",
        "]",
        "&a ",
        "*a",
        "!!str ",
        "~",
        "null",
        "'",
        "\"",
        "#",
        "<<: *a",
        "0o777",
        "1e309",
        "-1",
        "99999999999999999999",
        "\t",
        "---\n",
        "…",
        "\u{feff}",
        "kind: ConfigMap\n",
        "apiVersion: v1\n",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    #[test]
    fn policy_lint_never_panics_on_mutated_policies(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec(edit(), 1..6),
        tokens in proptest::collection::vec((any::<usize>(), yaml_token()), 0..4),
    ) {
        let mut bytes = seed.get(policy_seeds()).as_bytes().to_vec();
        for (at, t) in &tokens {
            let i = at % (bytes.len() + 1);
            bytes.splice(i..i, t.bytes());
        }
        let bytes = apply(bytes, &edits);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            policy_property(text);
        }
        // Invalid UTF-8 is what `lint` reports as unreadable; lossy text
        // must still lint without a panic.
        policy_property(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn snapshot_verify_never_panics_on_mutated_snapshots(
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        verify_property(&apply(snapshot_seed(), &edits));
    }

    /// The `sealed` target's property: the sealed-sums reader and the
    /// authentication never panic on a mutated `SHA256SUMS.sealed`, and
    /// nothing is authentic under a key the input does not choose.
    #[test]
    fn sealed_sums_never_panic_and_never_authenticate_under_a_random_key(
        edits in proptest::collection::vec(edit(), 1..4),
        key in proptest::collection::vec(any::<u8>(), 32),
    ) {
        let (sums, sealed) = sealed_seed();
        let sealed = apply(sealed.clone(), &edits);
        let _ = snapward::snapshot::auth::blob::parse(&sealed);
        let verdict = snapward::snapshot::auth::authenticate_with_key(&sealed, sums, &key);
        prop_assert!(!matches!(verdict, Ok(snapward::snapshot::auth::Authenticity::Authentic)));
    }
}

/// `SHA256SUMS` and `SHA256SUMS.sealed` of the real fixture snapshot.
fn sealed_seed() -> &'static (Vec<u8>, Vec<u8>) {
    static SEED: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        let s = snapward::snapshot::sealed_sums_file(&crate::support::fixture_snapshot())
            .expect("the fixture verifies");
        (s.sums, s.sealed)
    })
}

/// The inputs kept in `fixtures/fuzz/` (seeds from the real fixtures and
/// any crash input a long `cargo fuzz` run found), replayed through each
/// target's property. A verify input named `accept-*` must verify, one
/// named `refuse-*` must be refused: so the replay fails if verify accepted
/// everything (or nothing).
#[test]
fn fuzz_regression_fixtures_replay() {
    let policies = files(&root().join("fixtures/fuzz/policy"), "");
    assert!(policies.len() >= 3, "policy seeds: {policies:?}");
    for p in &policies {
        let bytes = std::fs::read(p).expect("read");
        policy_property(&String::from_utf8_lossy(&bytes));
    }
    let snaps = files(&root().join("fixtures/fuzz/verify"), "");
    let (mut accept, mut refuse) = (0, 0);
    for p in &snaps {
        let data = std::fs::read(p).expect("read");
        verify_property(&data);
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        let verdict = snapward::snapshot::verify_reader(&data[..]);
        if name.starts_with("accept-") {
            assert!(verdict.is_ok(), "{name} must verify: {verdict:?}");
            accept += 1;
        } else if name.starts_with("refuse-") {
            assert!(verdict.is_err(), "{name} must be refused");
            refuse += 1;
        }
    }
    assert!(
        accept >= 1 && refuse >= 5,
        "verify seeds: {accept} accept-*, {refuse} refuse-* in {snaps:?}"
    );
}

/// The good snapshot's archive: (meta.json, state.bin) and the raw bytes.
fn good_entries() -> &'static Vec<(String, Vec<u8>)> {
    static E: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
    E.get_or_init(|| crate::support::surgery::entries(&crate::support::fixture_snapshot()))
}

/// The good snapshot rebuilt from `es` (a valid gzip'd tar: only what
/// the sums cover differs).
fn rebuilt(es: &[(String, Vec<u8>)]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("s.snap");
    crate::support::surgery::write_snapshot(es, &p);
    std::fs::read(&p).expect("read")
}

#[test]
fn the_good_snapshot_rebuilt_unchanged_verifies() {
    // The control for the refusals below: the rebuild itself is accepted.
    let bytes = rebuilt(good_entries());
    snapward::snapshot::verify_reader(&bytes[..]).expect("the rebuilt fixture verifies");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Any change to a covered byte of the good snapshot is refused: a
    /// byte of state.bin's or meta.json's content (in a well-formed
    /// archive, the sums unchanged), or a byte of the gzip trailer (CRC32,
    /// ISIZE).
    #[test]
    fn mutations_of_covered_bytes_of_the_good_snapshot_are_refused(
        entry in prop::sample::select(vec!["state.bin", "meta.json"]),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        trailer in 0usize..8,
        trailer_xor in 1u8..=255,
    ) {
        let mut es = good_entries().clone();
        let data = crate::support::surgery::entry_mut(&mut es, entry);
        let i = at.index(data.len());
        data[i] ^= xor;
        let bytes = rebuilt(&es);
        prop_assert!(
            snapward::snapshot::verify_reader(&bytes[..]).is_err(),
            "accepted with {entry} byte {i} changed (^{xor:#04x})"
        );
        let mut raw = snapshot_seed();
        let n = raw.len();
        raw[n - 8 + trailer] ^= trailer_xor;
        prop_assert!(
            snapward::snapshot::verify_reader(&raw[..]).is_err(),
            "accepted with gzip trailer byte {trailer} changed (^{trailer_xor:#04x})"
        );
    }

    /// Whatever verify accepts of a mutated good snapshot holds the same
    /// archive: a change that reaches the content is never accepted.
    #[test]
    fn an_accepted_mutation_of_the_good_snapshot_holds_the_same_archive(
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let data = apply(snapshot_seed(), &edits);
        if snapward::snapshot::verify_reader(&data[..]).is_ok() {
            prop_assert_eq!(gunzip(&data), gunzip(&snapshot_seed()), "accepted a changed archive");
        }
    }
}

/// The tar stream inside a gzip file, as a lenient reader sees it.
fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}
