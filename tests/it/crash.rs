//! Crash injection (invariant 10 (README \"Guarantees\")): the real `snapward` binary,
//! built with `--features failpoints`, is aborted (SIGABRT: no cleanup,
//! like `kill -9`) at a named crash point (`src/crash.rs`), against a real
//! OpenBao and a real S3 server (moto). Then the next run — no crash point
//! — must converge:
//!
//! - it succeeds, or refuses with exit 3 where a human must act;
//! - no temp file (`.partial`, an incomplete multipart upload) is counted
//!   as a snapshot, neither right after the crash (`snapward list`) nor
//!   after the converging run, and none is left behind by it;
//! - every snapshot that existed before the crash is still in every store,
//!   byte-identical (unless retention deleted it on purpose);
//! - the key store is unchanged and still unseals the cluster; data
//!   written before the last snapshot is readable with the original token.
//!
//! No test depends on timing: the crash happens at a fixed point in the
//! code, and every wait polls for a state.
//!
//! Needs `eval "$(scripts/test-env.sh)"` and the `failpoints` feature
//! (`scripts/run-tests.sh` builds with it; without it this module is not
//! compiled and `crash_tests_need_the_failpoints_feature` fails).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rstest::rstest;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::drill::{BUCKET, Drill, PolicyOpts, RESTORE, S3_PREFIX, SNAP_PREFIX};
use crate::support::outcome::{Outcome, listed};
use crate::support::work::sha256_hex;

/// The signal a crash point ends the process with.
const SIGABRT: i32 = 6;

// ---- the policy --------------------------------------------------------

/// What varies between the policies of these tests.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    /// `keepLast` of the S3 target.
    s3_keep: u32,
    /// Add the filesystem target `nfs` (a second directory).
    fs: bool,
    /// `stream: true` on the S3 target: its parts go out while the
    /// snapshot streams (the default is the upload from the local file).
    s3_stream: bool,
}

const KNOBS: Knobs = Knobs {
    s3_keep: 10,
    fs: true,
    s3_stream: false,
};

/// The stores of a policy with these knobs, as `snapward list` names them.
fn store_names(k: Knobs) -> BTreeSet<&'static str> {
    let mut s = BTreeSet::from(["local", "s3"]);
    if k.fs {
        s.insert("nfs");
    }
    s
}

/// The filesystem target's directory.
fn nfs_dir(d: &Drill) -> PathBuf {
    d.path("nfs")
}

/// Writes `<name>.yaml`: the drill's policy (local store keepLast 10, S3
/// target `s3`, file key store with the root token, restore `auto`, init
/// allowed 3/2) with the S3 `keepLast` and the filesystem target `nfs` of
/// the knobs.
fn policy(d: &Drill, name: &str, k: Knobs) -> PathBuf {
    assert!(d.s3.is_some(), "these tests always have S3");
    d.policy(
        name,
        &PolicyOpts {
            s3_keep: k.s3_keep,
            s3_stream: k.s3_stream,
            nfs: k.fs.then(|| nfs_dir(d)),
            ..d.opts()
        },
    )
}

// ---- the crash ---------------------------------------------------------

/// `snapward run` with the crash point armed: it must abort exactly there.
async fn crash(d: &Drill, policy: &Path, point: &str) -> Outcome {
    let armed = format!("{point}=return");
    // Its scratch dir (a fetched snapshot) outlives the abort: keep it in
    // the drill dir, not in the machine's /tmp.
    let tmp = d.path("tmp");
    fs::create_dir_all(&tmp).expect("scratch dir");
    let tmp = tmp.display().to_string();
    let r = d
        .snapward_env(
            "run",
            policy,
            &[],
            &[("FAILPOINTS", &armed), ("TMPDIR", &tmp)],
        )
        .await;
    assert_eq!(
        r.signal,
        Some(SIGABRT),
        "the run must abort at crash point {point}\n{}",
        r.context()
    );
    assert!(
        r.stderr.contains(&format!("crash point {point}: aborting")),
        "the abort must come from crash point {point}\n{}",
        r.context()
    );
    assert_eq!(
        r.report,
        Value::Null,
        "an aborted run writes no report\n{}",
        r.context()
    );
    r
}

// ---- what the stores hold ----------------------------------------------

/// Every file in a directory (name → bytes), the run lock excepted.
fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::support::drill::snap_files(dir)
}

/// Only the `.snap` files of a directory.
fn snaps_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    dir_files(dir)
        .into_iter()
        .filter(|(n, _)| n.starts_with(SNAP_PREFIX) && n.ends_with(".snap"))
        .collect()
}

/// A streamed snapshot's identity object (`<prefix>.<name>.identity`).
fn is_identity_object(key: &str) -> bool {
    key.strip_prefix(S3_PREFIX)
        .is_some_and(|k| k.starts_with('.') && k.ends_with(".identity"))
}

/// The identity objects under the S3 prefix whose snapshot is not there.
async fn orphaned_identities(d: &Drill) -> Vec<String> {
    let objects = d.s3().objects(BUCKET).await;
    objects
        .keys()
        .filter(|k| is_identity_object(k))
        .filter(|k| {
            let name = k
                .strip_prefix(S3_PREFIX)
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.strip_suffix(".identity"))
                .unwrap_or_default();
            !objects.contains_key(&format!("{S3_PREFIX}{name}"))
        })
        .cloned()
        .collect()
}

/// Every object under the S3 prefix but identity objects (name without
/// prefix → bytes).
async fn s3_snaps(d: &Drill) -> BTreeMap<String, Vec<u8>> {
    let client = d.s3.as_ref().expect("S3").client();
    let listed = client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(S3_PREFIX)
        .send()
        .await
        .expect("list the bucket");
    let mut out = BTreeMap::new();
    for o in listed.contents() {
        let key = o.key().unwrap_or_default().to_owned();
        if is_identity_object(&key) {
            continue;
        }
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
        let bytes = got.body.collect().await.expect("read body").to_vec();
        out.insert(
            key.strip_prefix(S3_PREFIX).unwrap_or(&key).to_owned(),
            bytes,
        );
    }
    out
}

/// Everything that must survive a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stores {
    local: BTreeMap<String, Vec<u8>>,
    s3: BTreeMap<String, Vec<u8>>,
    nfs: BTreeMap<String, Vec<u8>>,
    keys: BTreeMap<String, Vec<u8>>,
}

async fn stores(d: &Drill) -> Stores {
    Stores {
        local: snaps_in(&d.snap_dir()),
        s3: s3_snaps(d).await,
        nfs: snaps_in(&nfs_dir(d)),
        keys: dir_files(&d.keys_dir()),
    }
}

fn names(m: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    m.keys().collect()
}

/// `snapward list -f POLICY --format json`: store → [(name, valid)].
fn list(policy: &Path) -> BTreeMap<String, Vec<(String, bool)>> {
    let out = crate::support::cmd::snapward()
        .args(["--log-format", "json", "list", "--format", "json", "-f"])
        .arg(policy)
        .output()
        .expect("run snapward list");
    assert!(
        out.status.success(),
        "snapward list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    listed(&out.stdout)
}

/// Right after a crash: `snapward list` counts exactly the complete,
/// verified `.snap` files and objects — never a temp file or an
/// incomplete upload — and every snapshot from before is still there.
async fn expect_nothing_partial_counted(
    d: &Drill,
    policy: &Path,
    k: Knobs,
    before: &Stores,
    point: &str,
    s3_pruned: bool,
) {
    let listed = list(policy);
    let now = stores(d).await;
    assert_eq!(
        listed.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        store_names(k),
        "{point}: `snapward list` shows other stores than the policy has"
    );
    for store in store_names(k) {
        let held = match store {
            "local" => &now.local,
            "s3" => &now.s3,
            "nfs" => &now.nfs,
            other => unreachable!("no store `{other}` in these tests"),
        };
        let rows = &listed[store];
        for (name, valid) in rows {
            assert!(
                name.starts_with(SNAP_PREFIX) && name.ends_with(".snap"),
                "{point}: `{store}` lists `{name}`, which is not a snapshot name"
            );
            assert!(
                *valid,
                "{point}: `{store}` lists `{name}` as invalid: a crash left a broken snapshot"
            );
            assert!(
                held.contains_key(name),
                "{point}: `{store}` lists `{name}`, which is not a complete snapshot there"
            );
        }
        let rows: BTreeSet<&String> = rows.iter().map(|(n, _)| n).collect();
        assert_eq!(
            rows,
            held.keys().collect::<BTreeSet<_>>(),
            "{point}: `{store}`: the listing and the store disagree"
        );
    }
    expect_kept(before, &now, point, "right after the crash", s3_pruned);
}

/// Every snapshot in `before` is in `now`, byte-identical (S3 may have
/// lost some to retention if `s3_pruned`), and the key store is unchanged.
fn expect_kept(before: &Stores, now: &Stores, point: &str, when: &str, s3_pruned: bool) {
    for (store, b, n) in [
        ("local", &before.local, &now.local),
        ("nfs", &before.nfs, &now.nfs),
        ("s3", &before.s3, &now.s3),
    ] {
        for (name, bytes) in b {
            if store == "s3" && s3_pruned && !n.contains_key(name) {
                continue;
            }
            let got = n.get(name).unwrap_or_else(|| {
                panic!(
                    "{point}: {when}: `{store}` lost {name} (it holds {:?})",
                    names(n)
                )
            });
            assert!(
                got == bytes,
                "{point}: {when}: {name} on `{store}` changed (sha256 {} → {})",
                sha256_hex(bytes),
                sha256_hex(got)
            );
        }
    }
    assert!(
        before.keys == now.keys,
        "{point}: {when}: the key store changed (entries {:?} → {:?})",
        names(&before.keys),
        names(&now.keys)
    );
}

/// After the converging run: no temp file and no incomplete multipart
/// upload is left, every remote snapshot is a byte-identical copy of a
/// valid local one (or of what `before` held), and nothing was lost.
async fn expect_converged(
    d: &Drill,
    policy: &Path,
    k: Knobs,
    before: &Stores,
    point: &str,
    s3_pruned: bool,
) {
    let now = stores(d).await;
    expect_kept(before, &now, point, "after the next run", s3_pruned);
    for (store, dir) in [("local", d.snap_dir()), ("nfs", nfs_dir(d))] {
        let stray: Vec<String> = dir_files(&dir)
            .into_keys()
            .filter(|n| !(n.starts_with(SNAP_PREFIX) && n.ends_with(".snap")))
            .filter(|n| n != snapward::backends::verify_cache::FILE_NAME)
            .collect();
        assert!(
            stray.is_empty(),
            "{point}: temp files left in `{store}` after the next run: {stray:?}"
        );
    }
    let uploads = d.s3().uploads(BUCKET).await;
    assert!(
        uploads.is_empty(),
        "{point}: incomplete multipart uploads left after the next run: {uploads:?}"
    );
    let orphans = orphaned_identities(d).await;
    assert!(
        orphans.is_empty(),
        "{point}: identity objects without their snapshot left after the next run: {orphans:?}"
    );
    for (store, held) in [("s3", &now.s3), ("nfs", &now.nfs)] {
        for (name, bytes) in held {
            let same = now.local.get(name).or_else(|| before.local.get(name));
            if let Some(local) = same {
                assert!(
                    local == bytes,
                    "{point}: {name} on `{store}` differs from the local snapshot"
                );
            }
            snapward::snapshot::verify_file(&write_tmp(d, bytes)).unwrap_or_else(|e| {
                panic!("{point}: {name} on `{store}` is not a valid snapshot: {e}")
            });
        }
    }
    expect_nothing_partial_counted(d, policy, k, before, point, s3_pruned).await;
}

/// Writes bytes to a scratch file in the drill dir (for `verify_file`).
fn write_tmp(d: &Drill, bytes: &[u8]) -> PathBuf {
    let p = d.path("verify.tmp");
    fs::write(&p, bytes).expect("write scratch file");
    p
}

// ---- the cluster ---------------------------------------------------------

/// Polls seal-status of node 0 until it says `sealed`, at most 300 s (the
/// server applies a forced restore in the background, then seals).
async fn wait_sealed(d: &Drill) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while d.bao.seal_status(0).await["sealed"] != json!(true) {
        assert!(
            Instant::now() < deadline,
            "node 0 did not seal after the restore"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes ~18 MiB of incompressible data into the cluster, so that its
/// snapshot is larger than the S3 target's multipart threshold (16 MiB)
/// and goes up in two parts. Values stay under raft's 1 MiB entry limit.
async fn grow_past_the_multipart_threshold(d: &Drill) {
    for i in 0..24u32 {
        let mut blob = String::with_capacity(768 * 1024);
        let mut block = Sha256::digest(i.to_be_bytes());
        while blob.len() < 768 * 1024 {
            blob.push_str(&hex::encode(block));
            block = Sha256::digest(block);
        }
        d.bao
            .write_secret(&format!("crash/blob-{i}"), json!({ "b": blob }))
            .await;
    }
}

// ---- beds ------------------------------------------------------------------

/// An initialised cluster (by snapward: keys and root token stored) with
/// `crash/before` written and `backups` backups taken (local, S3, nfs).
async fn backup_bed(backups: usize, k: Knobs) -> (Drill, PathBuf, String) {
    let mut d = Drill::single(true).await;
    let p = policy(&d, "policy", k);
    let keys_dir = d.keys_dir();
    let (_, token) = d.snapward_init(&p, &keys_dir).await;
    d.write_marker("before").await;
    for _ in 0..backups {
        let (r, _) = d.backup(&p, &d.snap_dir()).await;
        r.expect_status("upload:s3", "succeeded");
    }
    (d, p, token)
}

/// A converging run of the backup branch: exit 0, a new snapshot,
/// uploaded and confirmed on every target of the policy (`k`).
async fn expect_backup(d: &Drill, p: &Path, k: Knobs, point: &str) -> Outcome {
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let r = d.run(p).await;
    assert_eq!(
        r.code,
        Some(0),
        "{point}: the next run must succeed\n{}",
        r.context()
    );
    r.expect_exit(0).expect_branch("backup");
    for id in ["snapshot", "verify", "upload:s3"] {
        r.expect_status(id, "succeeded");
    }
    if k.fs {
        r.expect_status("upload:nfs", "succeeded");
    } else {
        r.expect_not_planned(&["upload:nfs"]);
    }
    r
}

/// Crash at `point` in a backup run of a healthy cluster, then converge.
async fn backup_crash_then_converge(d: &Drill, p: &Path, k: Knobs, token: &str, point: &str) {
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let before = stores(d).await;
    crash(d, p, point).await;
    expect_nothing_partial_counted(d, p, k, &before, point, false).await;
    expect_backup(d, p, k, point).await;
    expect_converged(d, p, k, &before, point, false).await;
    d.expect_data(token, &["before"], &[]).await;
}

// ---- backup branch: every action boundary --------------------------------

/// Crash right before and right after each action of the backup branch:
/// the next run backs up, nothing is lost, nothing partial is counted.
#[rstest]
#[case::observe("observe")]
#[case::guard_check("guard-check")]
#[case::unseal("unseal")]
#[case::snapshot("snapshot")]
#[case::verify("verify")]
#[case::upload_s3("upload:s3")]
#[case::upload_nfs("upload:nfs")]
#[case::prune_s3("prune:s3")]
#[case::prune_nfs("prune:nfs")]
#[case::prune_local("prune:local")]
#[tokio::test]
async fn backup_action_boundary(#[case] action: &str) {
    let (d, p, token) = backup_bed(1, KNOBS).await;
    for point in [
        format!("action.before.{action}"),
        format!("action.after.{action}"),
    ] {
        backup_crash_then_converge(&d, &p, KNOBS, &token, &point).await;
    }
}

// ---- backup branch: inside the actions ------------------------------------

/// Crash inside the local store's commit and the targets' uploads: the S3
/// upload from the local file and, `streamed`, the S3 parts sent while
/// the snapshot streams: after the streamed upload was created (before the
/// first byte), after a part read back from the growing temp file was
/// accepted, after the identity object was written but before the upload
/// completed, after it completed, and after verification with both
/// targets' streamed copies still unpublished.
#[rstest]
#[case::local_before_link("local.before-link", false)]
#[case::local_after_link("local.after-link", false)]
#[case::s3_after_complete("s3.after-complete", false)]
#[case::s3_after_complete_streamed("s3.after-complete", true)]
#[case::s3_stream_after_identity("s3.stream.after-identity", true)]
#[case::s3_stream_after_create("s3.multipart.after-create", true)]
#[case::s3_stream_after_part("s3.multipart.after-part", true)]
#[case::fs_before_publish("fs.before-publish", false)]
#[case::stream_after_verify("stream.after-verify", false)]
#[case::stream_after_verify_s3_streamed("stream.after-verify", true)]
#[case::fs_after_publish("fs.after-publish", false)]
#[tokio::test]
async fn backup_crash_inside(#[case] point: &str, #[case] s3_stream: bool) {
    let k = Knobs { s3_stream, ..KNOBS };
    let (d, p, token) = backup_bed(1, k).await;
    backup_crash_then_converge(&d, &p, k, &token, point).await;
}

/// Crash in a multipart upload (the snapshot is > 16 MiB): after the
/// upload was created, and after a part was accepted. The next run aborts
/// the crashed run's incomplete upload, uploads the snapshot again and
/// leaves no multipart upload behind.
///
/// With moto, the next run's age-based cleanup already aborts it: moto
/// reports every upload as initiated in 2010. A real store reports the
/// real time, and that cleanup waits a day; the abort of the same object's
/// leftover upload, which works whatever the age, is proven on its own by
/// `s3_put_aborts_a_crashed_runs_incomplete_upload_of_the_same_object`.
#[rstest]
#[case::after_create("s3.multipart.after-create")]
#[case::after_part("s3.multipart.after-part")]
#[tokio::test]
async fn backup_crash_mid_multipart_upload(#[case] point: &str) {
    let k = Knobs { fs: false, ..KNOBS };
    let (d, p, token) = backup_bed(1, k).await;
    // The upload from the local file (KNOBS: no `stream`): the streamed
    // path's multipart crash points (a staging upload, no local snapshot
    // yet) are proven in `stream_once::s3`.
    grow_past_the_multipart_threshold(&d).await;
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let before = stores(&d).await;
    crash(&d, &p, point).await;
    let uploads = d.s3().uploads(BUCKET).await;
    assert_eq!(
        uploads.len(),
        1,
        "{point}: the crash leaves the incomplete upload it started: {uploads:?}"
    );
    expect_nothing_partial_counted(&d, &p, k, &before, point, false).await;
    let crashed = snaps_in(&d.snap_dir())
        .into_keys()
        .find(|n| !before.local.contains_key(n))
        .expect("the crashed run committed its snapshot before uploading");
    assert!(
        uploads[0].ends_with(&crashed),
        "{point}: the incomplete upload is the crashed run's snapshot"
    );
    let r = expect_backup(&d, &p, k, point).await;
    assert!(
        r.named("upload:s3", "uploaded").contains(&crashed),
        "{point}: the next run uploads the crashed run's snapshot\n{}",
        r.context()
    );
    expect_converged(&d, &p, k, &before, point, false).await;
    assert!(
        d.s3.is_some() && s3_snaps(&d).await.contains_key(&crashed),
        "{point}: {crashed} is on S3"
    );
    d.expect_data(&token, &["before"], &[]).await;
}

/// Crash between two deletions of a target's prune: the next run finishes
/// the prune; S3 ends up holding exactly what retention keeps, each a
/// byte-identical copy of a local snapshot, and the local store (keepLast
/// 10) lost nothing.
#[tokio::test]
async fn prune_crash_between_two_deletions() {
    let point = "prune.after-delete";
    let (d, _, token) = backup_bed(3, KNOBS).await;
    let k = Knobs {
        s3_keep: 1,
        ..KNOBS
    };
    let keep_one = policy(&d, "keep-one", k);
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let before = stores(&d).await;
    assert_eq!(before.s3.len(), 3, "three snapshots on S3 before the prune");
    crash(&d, &keep_one, point).await;
    let after_crash = s3_snaps(&d).await;
    assert_eq!(
        after_crash.len(),
        3,
        "{point}: new snapshot uploaded, exactly one old one deleted: {:?}",
        names(&after_crash)
    );
    expect_nothing_partial_counted(&d, &keep_one, k, &before, point, true).await;
    let r = expect_backup(&d, &keep_one, k, point).await;
    r.expect_status("prune:s3", "succeeded");
    expect_converged(&d, &keep_one, k, &before, point, true).await;
    let local = snaps_in(&d.snap_dir());
    let newest = local.keys().next_back().expect("local snapshots").clone();
    assert_eq!(
        names(&s3_snaps(&d).await),
        vec![&newest],
        "{point}: S3 keeps exactly the newest snapshot (keepLast 1)"
    );
    assert_eq!(local.len(), 5, "the local store kept every snapshot");
    d.expect_data(&token, &["before"], &[]).await;
}

/// Invariant 1 with a prune that has something to delete: S3 keeps one
/// snapshot (`keepLast: 1`) and holds the previous run's. A crash around
/// this run's upload and prune of S3 must never leave S3 without a
/// confirmed snapshot: the previous one is deleted only once this run's is
/// there, byte-identical to the local copy. The next run converges to
/// exactly the newest snapshot on S3, and the previous one is gone.
#[rstest]
#[case::before_upload("action.before.upload:s3", false)]
#[case::s3_after_complete("s3.after-complete", false)]
#[case::after_upload("action.after.upload:s3", false)]
#[case::before_prune("action.before.prune:s3", false)]
#[case::prune_after_delete("prune.after-delete", true)]
#[case::after_prune("action.after.prune:s3", true)]
#[tokio::test]
async fn keep_last_one_deletes_the_previous_snapshot_only_after_the_new_one_is_confirmed(
    #[case] point: &str,
    #[case] pruned_at_crash: bool,
) {
    let k = Knobs {
        s3_keep: 1,
        fs: false,
        ..KNOBS
    };
    let (d, p, token) = backup_bed(1, k).await;
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let before = stores(&d).await;
    let previous = names(&before.s3)
        .into_iter()
        .next()
        .cloned()
        .expect("the previous snapshot is on S3");
    assert_eq!(before.s3.len(), 1, "one snapshot on S3 before the crash");

    crash(&d, &p, point).await;
    let local = snaps_in(&d.snap_dir());
    let crashed = local
        .keys()
        .find(|n| !before.local.contains_key(*n))
        .cloned();
    let s3 = s3_snaps(&d).await;
    expect_a_confirmed_newest_on_s3(&s3, &local, &previous, point, "right after the crash");
    assert_eq!(
        !s3.contains_key(&previous),
        pruned_at_crash,
        "{point}: right after the crash S3 holds {:?}: the previous snapshot {previous} \
         must be deleted exactly when the prune has run",
        names(&s3)
    );
    expect_nothing_partial_counted(&d, &p, k, &before, point, true).await;

    let r = expect_backup(&d, &p, k, point).await;
    r.expect_status("prune:s3", "succeeded");
    expect_converged(&d, &p, k, &before, point, true).await;
    let local = snaps_in(&d.snap_dir());
    let newest = local.keys().next_back().expect("local snapshots").clone();
    let s3 = s3_snaps(&d).await;
    assert_eq!(
        names(&s3),
        vec![&newest],
        "{point}: S3 keeps exactly the newest snapshot (keepLast 1)"
    );
    assert!(
        !s3.contains_key(&previous),
        "{point}: the previous snapshot {previous} is deleted in the end"
    );
    if let Some(c) = crashed {
        assert!(
            local.contains_key(&c),
            "{point}: the local store (keepLast 10) keeps the crashed run's {c}"
        );
    }
    d.expect_data(&token, &["before"], &[]).await;
}

/// S3 holds the previous snapshot, or a snapshot newer than it that is
/// byte-identical to the local copy (confirmed): it never lacks one.
fn expect_a_confirmed_newest_on_s3(
    s3: &BTreeMap<String, Vec<u8>>,
    local: &BTreeMap<String, Vec<u8>>,
    previous: &str,
    point: &str,
    when: &str,
) {
    let confirmed_newer = s3
        .iter()
        .any(|(n, b)| n.as_str() > previous && local.get(n) == Some(b));
    assert!(
        s3.contains_key(previous) || confirmed_newer,
        "{point}: {when}: S3 holds {:?}: the previous snapshot {previous} is gone and no \
         newer, complete snapshot replaced it",
        names(s3)
    );
}

// ---- restore branch --------------------------------------------------------

/// What the run after a crash must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Restore (again) and verify the cluster: exit 0, branch `restore`.
    Restore,
    /// The restore was applied: unseal with the stored keys and back up.
    Backup,
    /// Refuse (exit 3) without touching anything: a human must act.
    Refuse,
    /// Initialise (again): exit 0, branch `init`.
    Init,
}

/// Crash in a restore (from S3: the raft data and the local snapshot store
/// are lost), then run again. The snapshot and the keys are never touched;
/// the cluster ends up restored, or the run refuses and says what to do —
/// and doing it (wiping node 0's raft data) lets the next run restore.
#[rstest]
#[case::before_fetch("action.before.fetch", Next::Restore)]
#[case::fetch_mid_download("fetch.mid-download", Next::Restore)]
#[case::after_fetch("action.after.fetch", Next::Restore)]
#[case::after_temp_init("restore.after-temp-init", Next::Refuse)]
#[case::after_temp_unseal("restore.after-temp-unseal", Next::Refuse)]
#[case::after_force("restore.after-force", Next::Backup)]
#[case::after_restore("action.after.restore", Next::Backup)]
#[case::after_restore_unseal("action.after.restore-unseal", Next::Backup)]
#[case::after_verify_cluster("action.after.verify-cluster", Next::Backup)]
#[tokio::test]
async fn restore_crash(#[case] point: &str, #[case] next: Next) {
    let k = Knobs { fs: false, ..KNOBS };
    let (mut d, p, token) = backup_bed(1, k).await;
    d.write_marker("after").await;
    d.bao.wipe(0).await;
    fs::remove_dir_all(d.snap_dir()).expect("lose the local snapshot store");
    let before = stores(&d).await;
    assert_eq!(before.s3.len(), 1, "one snapshot on S3");

    crash(&d, &p, point).await;
    expect_nothing_partial_counted(&d, &p, k, &before, point, false).await;
    if point == "restore.after-force" {
        // The server applies the snapshot in the background, then seals.
        wait_sealed(&d).await;
    }

    let r = d.run(&p).await;
    match next {
        Next::Restore => {
            r.expect_exit(0).expect_branch("restore");
            for id in RESTORE {
                r.expect_status(id, "succeeded");
            }
        }
        Next::Backup => {
            r.expect_exit(0).expect_branch("backup");
            for id in ["snapshot", "verify", "upload:s3"] {
                r.expect_status(id, "succeeded");
            }
        }
        Next::Refuse => {
            r.expect_exit(3).expect_branch("refuse");
            r.expect_only_observed(point);
            assert_eq!(
                r.rule(),
                "interrupted restore",
                "{point}: the refusal names the interrupted restore\n{}",
                r.context()
            );
            expect_kept(
                &before,
                &stores(&d).await,
                point,
                "after the refusal",
                false,
            );
            // What the explanation says a human does: wipe node 0, rerun.
            d.bao.wipe(0).await;
            let r = d.run(&p).await;
            r.expect_exit(0).expect_branch("restore");
            for id in RESTORE {
                r.expect_status(id, "succeeded");
            }
        }
        Next::Init => unreachable!("not a restore outcome"),
    }
    expect_converged(&d, &p, k, &before, point, false).await;
    d.expect_data(&token, &["before"], &["after"]).await;
}

// ---- init branch -------------------------------------------------------------

/// Crash while a fresh cluster is initialised, then run again.
///
/// `init.after-init` / `action.after.init` is the data-loss window: the
/// server is initialised, its only keys were in the crashed process's
/// memory. The next run sees "initialised, keys absent, sealed" and
/// refuses (exit 3): it never initialises again and never writes the key
/// store. The cluster holds no data yet, so the way forward is to wipe
/// node 0's raft data and rerun — which the test does.
#[rstest]
#[case::before_init("action.before.init", Next::Init)]
#[case::after_init_inside("init.after-init", Next::Refuse)]
#[case::after_init("action.after.init", Next::Refuse)]
#[case::after_store_keys("action.after.store-keys", Next::Backup)]
#[case::after_init_unseal("action.after.init-unseal", Next::Backup)]
#[tokio::test]
async fn init_crash(#[case] point: &str, #[case] next: Next) {
    let mut d = Drill::single(true).await;
    let k = Knobs { fs: false, ..KNOBS };
    let p = policy(&d, "policy", k);
    let mut before = stores(&d).await;
    crash(&d, &p, point).await;
    // What the crashed run stored (if it got that far) must stay.
    let keys_after_crash = dir_files(&d.keys_dir());
    before.keys = keys_after_crash.clone();
    expect_nothing_partial_counted(&d, &p, k, &before, point, false).await;

    let r = d.run(&p).await;
    match next {
        Next::Init => {
            r.expect_exit(0).expect_branch("init");
            for id in ["init", "store-keys", "init-unseal"] {
                r.expect_status(id, "succeeded");
            }
        }
        Next::Backup => {
            r.expect_exit(0).expect_branch("backup");
            for id in ["snapshot", "verify", "upload:s3"] {
                r.expect_status(id, "succeeded");
            }
            if point == "action.after.store-keys" {
                // Initialised and sealed: the stored keys unseal it.
                r.expect_status("unseal", "succeeded");
            }
            assert_eq!(
                dir_files(&d.keys_dir()),
                keys_after_crash,
                "{point}: the stored keys are used, never rewritten"
            );
        }
        Next::Refuse => {
            r.expect_exit(3).expect_branch("refuse");
            r.expect_only_observed(point);
            assert_eq!(
                r.rule(),
                "initialised, keys absent, sealed",
                "{point}\n{}",
                r.context()
            );
            assert!(
                dir_files(&d.keys_dir()).is_empty(),
                "{point}: no key was stored, and none is invented"
            );
            assert!(d.initialized(0).await, "{point}: node 0 stays initialised");
            d.bao.wipe(0).await;
            let r = d.run(&p).await;
            r.expect_exit(0).expect_branch("init");
        }
        Next::Restore => unreachable!("not an init outcome"),
    }
    // The key store now unseals the cluster: restart node 0 (it comes back
    // sealed) and let a run unseal it with the stored keys.
    d.bao.stop(0);
    d.bao.start(0).await;
    let r = expect_backup(&d, &p, k, point).await;
    r.expect_status("unseal", "succeeded");
    expect_converged(&d, &p, k, &stores(&d).await, point, false).await;
}

// ---- S3: the leftover of a crashed multipart upload -------------------------

/// A crashed run left an incomplete multipart upload of snapshot X (one
/// part sent; the store reports it as just initiated, so the age-based
/// cleanup leaves it for a day). The next `put` of X aborts it before
/// uploading X again — whatever its age: under the run lock only a crashed
/// run of this policy can have started it — and leaves any other
/// snapshot's upload alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_aborts_a_crashed_runs_incomplete_upload_of_the_same_object() {
    use snapward::backends::Target;
    const MIB: usize = 1024 * 1024;
    let server = crate::support::s3::S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    let client = server.client();
    let name = format!("{SNAP_PREFIX}20261128-021500.snap");
    let other = format!("{SNAP_PREFIX}20261127-021500.snap");
    let bytes: Vec<u8> = (0..10 * MIB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for key in [&name, &other] {
        let key = format!("{S3_PREFIX}{key}");
        let created = client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("create the crashed run's upload");
        client
            .upload_part()
            .bucket(BUCKET)
            .key(&key)
            .upload_id(created.upload_id().expect("upload id"))
            .part_number(1)
            .body(bytes[..5 * MIB].to_vec().into())
            .send()
            .await
            .expect("upload a part");
    }
    assert_eq!(server.uploads(BUCKET).await.len(), 2);

    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("snap");
    fs::write(&file, &bytes).expect("write");
    let identity = snapward::snapshot::Identity {
        index: 10,
        term: 2,
        version: 1,
        state_size: 0,
        file_size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    };
    let target = snapward::backends::s3::S3Target::new(
        "s3",
        &crate::support::s3::settings(&server.target_config(BUCKET, S3_PREFIX)),
        SNAP_PREFIX,
    )
    .await
    .expect("target")
    .with_multipart(5 * MIB as u64, 5 * MIB as u64, 1);
    let confirmed = target
        .put(
            &file,
            &name,
            &identity,
            &snapward::backends::UploadTag::default(),
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("upload");
    let snapward::backends::PutOutcome::Confirmed(confirmed) = confirmed else {
        panic!("a real target only answers Confirmed, got {confirmed:?}");
    };
    assert_eq!(confirmed.sha256, identity.sha256);
    assert_eq!(
        server.uploads(BUCKET).await,
        vec![format!("{S3_PREFIX}{other}")],
        "the crashed upload of {name} is aborted; {other}'s is not ours to touch"
    );
}
