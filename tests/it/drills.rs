//! Disaster-recovery drills (issue 4, item 7): the real `snapward` binary
//! against real OpenBao 2.7.2 servers (1 and 3 nodes, raft) and a real S3
//! server (moto), driven through policies, exit codes and the JSON report.
//!
//! Each drill that recovers proves that data written BEFORE the snapshot is
//! readable with the ORIGINAL root token afterwards and that data written
//! AFTER it is gone; each drill that must refuse proves that nothing
//! changed (key files byte-identical, nodes still uninitialised, snapshot
//! files and S3 objects unchanged). Every run is also checked for leaked
//! key shares and tokens (see `support::drill`).
//!
//! Needs `eval "$(scripts/test-env.sh)"` (SNAPWARD_TEST_BAO, SNAPWARD_TEST_MOTO).

use std::fs;

use serde_json::json;

use crate::support::drill::{
    Drill, INIT, RESTORE, S3_PREFIX, SHARES, THRESHOLD, mode, snap_files, snap_names,
    truncate_half, write_keys,
};
use crate::support::outcome::Outcome;
use crate::support::work::files_in;

/// The destructive or writing actions of the backup branch.
const BACKUP: [&str; 4] = ["unseal", "snapshot", "verify", "prune:local"];

/// Exit 0 through the restore branch, every restore action succeeded, and
/// `fetch` chose `<store>/<name>`. `init` says whether the policy allows
/// init (else the init branch is not in the plan).
fn expect_restored(r: &Outcome, init: bool, store: &str, name: &str) {
    r.expect_exit(0).expect_branch("restore");
    for id in RESTORE {
        r.expect_status(id, "succeeded");
    }
    if init {
        r.expect_skipped(&INIT);
    } else {
        r.expect_not_planned(&INIT);
    }
    r.expect_skipped(&BACKUP);
    let chose = format!("chose {store}/{name}");
    assert!(
        r.reason("fetch").contains(&chose),
        "fetch should have chosen {store}/{name}\n{}",
        r.context()
    );
}

/// Plausible key shares that no server knows (never used to unseal).
fn foreign_keys() -> Vec<String> {
    (0..SHARES)
        .map(|i| format!("{}{i:02x}", "5a".repeat(32)))
        .collect()
}

// ---- (a) ---------------------------------------------------------------

/// (a) A node that restarted comes back sealed: `run` unseals it with the
/// keys an operator put into the key store (threshold many shares, hex, as
/// `bao operator init` prints them) and then takes the backup.
#[tokio::test]
async fn a_sealed_after_restart_is_unsealed_with_stored_keys_then_backed_up() {
    let mut d = Drill::single(false).await;
    let (keys, token) = d.bao.init_unsealed(SHARES, THRESHOLD).await;
    for k in &keys {
        d.remember_secret(k);
    }
    d.remember_secret(&token);
    d.bao.enable_kv().await;
    d.write_marker("before").await;
    let keys_dir = d.keys_dir();
    write_keys(&keys_dir, &keys[..THRESHOLD as usize], Some(&token));
    let stored = files_in(&keys_dir);
    let mut o = d.opts();
    o.init_allowed = false;
    let policy = d.policy("policy", &o);
    let cluster_id = d.cluster_id(0).await;

    d.bao.stop(0);
    d.bao.start(0).await;
    assert_eq!(d.bao.seal_status(0).await["sealed"], json!(true));

    let (r, name) = d.backup(&policy, &d.snap_dir()).await;
    assert_eq!(r.rule(), "initialised, keys present", "{}", r.context());
    r.expect_status("unseal", "succeeded");
    assert!(
        r.items_of("unseal", "unsealed")
            .iter()
            .any(|i| i["node"] == "bao-0"),
        "the unseal action must name the node it unsealed\n{}",
        r.context()
    );
    r.expect_not_planned(&INIT).expect_skipped(&RESTORE);
    assert!(
        r.reason("verify").starts_with(&name),
        "verify must report the new snapshot {name}\n{}",
        r.context()
    );

    assert_eq!(d.bao.seal_status(0).await["sealed"], json!(false));
    assert_eq!(d.cluster_id(0).await, cluster_id, "same cluster");
    d.expect_data(&token, &["before"], &[]).await;
    assert_eq!(
        files_in(&keys_dir),
        stored,
        "unseal must not write the key store"
    );
}

/// (a, 3 nodes) Every node of a 3-node cluster restarted (a node pool
/// upgrade): all come back sealed; `run` unseals each one with the stored
/// keys — a raft follower finishes unsealing asynchronously — and backs up
/// from the active node.
#[tokio::test]
async fn a_three_nodes_all_restarted_sealed_are_unsealed_then_backed_up() {
    let mut d = Drill::three(false).await;
    let (keys, token) = d.bao.init_unsealed(SHARES, THRESHOLD).await;
    for k in &keys {
        d.remember_secret(k);
    }
    d.remember_secret(&token);
    d.bao.enable_kv().await;
    d.write_marker("before").await;
    let keys_dir = d.keys_dir();
    write_keys(&keys_dir, &keys, Some(&token));
    let stored = files_in(&keys_dir);
    let mut o = d.opts();
    o.init_allowed = false;
    let policy = d.policy("policy", &o);
    let cluster_id = d.cluster_id(0).await;

    for node in 0..3 {
        d.bao.stop(node);
    }
    for node in 0..3 {
        d.bao.start(node).await;
        assert_eq!(d.bao.seal_status(node).await["sealed"], json!(true));
    }

    let (r, _) = d.backup(&policy, &d.snap_dir()).await;
    r.expect_status("unseal", "succeeded");
    for node in 0..3 {
        assert!(
            r.items_of("unseal", "unsealed")
                .iter()
                .any(|i| i["node"] == format!("bao-{node}")),
            "bao-{node} must be reported unsealed\n{}",
            r.context()
        );
        let s = d.bao.seal_status(node).await;
        assert_eq!(s["sealed"], json!(false), "bao-{node}: {s}");
        assert_eq!(
            s["cluster_id"],
            json!(cluster_id),
            "bao-{node}: one cluster"
        );
    }
    d.expect_data(&token, &["before"], &[]).await;
    assert_eq!(
        files_in(&keys_dir),
        stored,
        "unseal must not write the key store"
    );
}

// ---- (b) ---------------------------------------------------------------

/// (b) The raft data is lost, the local snapshots survive: the run restores
/// the newest local snapshot and unseals with the ORIGINAL keys.
#[tokio::test]
async fn b_raft_data_lost_is_restored_from_the_local_snapshot() {
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;
    d.expect_data(&token, &["before", "after"], &[]).await;
    let cluster_id = d.cluster_id(0).await;
    let (keys, snaps) = (files_in(&keys_dir), snap_files(&snap_dir));

    d.bao.wipe(0).await;
    assert!(
        !d.initialized(0).await,
        "the wipe left an uninitialised node"
    );

    let r = d.run(&policy).await;
    expect_restored(&r, true, "local", &name);
    assert_eq!(
        r.rule(),
        "wiped, keys and snapshot present",
        "{}",
        r.context()
    );

    assert_eq!(
        d.cluster_id(0).await,
        cluster_id,
        "the restored node reports the original cluster_id"
    );
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
    assert_eq!(
        snap_files(&snap_dir),
        snaps,
        "a restore neither writes nor deletes local snapshots"
    );
}

// ---- (c) ---------------------------------------------------------------

/// (c) The raft data AND the local snapshot store are lost (PVC gone): the
/// newest snapshot is fetched from S3, verified and restored.
#[tokio::test]
async fn c_raft_data_and_local_snapshots_lost_is_restored_from_s3() {
    let mut d = Drill::single(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (r, name) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:s3", "succeeded");
    d.write_marker("after").await;
    let objects = d.s3_objects().await;
    assert!(
        objects.contains_key(&format!("{S3_PREFIX}{name}")),
        "the backup uploaded {name}: {objects:?}"
    );
    let keys = files_in(&keys_dir);

    d.bao.wipe(0).await;
    fs::remove_dir_all(&snap_dir).expect("lose the local snapshot store");

    let r = d.run(&policy).await;
    expect_restored(&r, true, "s3", &name);
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
    assert_eq!(
        d.s3_objects().await,
        objects,
        "a restore neither writes nor deletes remote snapshots"
    );
    assert!(
        snap_files(&snap_dir)
            .keys()
            .all(|n| !n.contains(".partial") && !n.starts_with(".fetch")),
        "no temp file of the fetch is left in the local store: {:?}",
        snap_files(&snap_dir).keys().collect::<Vec<_>>()
    );
}

// ---- (d) ---------------------------------------------------------------

/// (d) A genuinely fresh cluster is initialised and its keys are stored
/// create-only (0600 files in a 0700 dir); a second run takes the backup
/// branch and changes nothing else; a key store that already holds a key
/// makes the guard refuse to initialise, and the key is never overwritten.
#[tokio::test]
async fn d_fresh_cluster_is_initialised_keys_stored_create_only_and_never_overwritten() {
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    assert!(!keys_dir.exists());

    let (r, token) = d.snapward_init(&policy, &keys_dir).await;
    assert_eq!(r.rule(), "fresh cluster", "{}", r.context());
    r.expect_skipped(&BACKUP).expect_skipped(&RESTORE);
    let stored = files_in(&keys_dir);
    let mut want: Vec<String> = (0..SHARES).map(|i| format!("unseal-key-{i}")).collect();
    want.push("root-token".into());
    want.push("key-shape".into()); // shares and threshold, not a secret
    want.sort();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), want);
    for name in stored.keys() {
        assert_eq!(mode(&keys_dir.join(name)), 0o600, "{name} must be 0600");
    }
    assert_eq!(mode(&keys_dir), 0o700, "the key dir must be 0700");
    assert!(
        snap_names(&snap_dir).is_empty(),
        "the init branch takes no snapshot"
    );
    let cluster_id = d.cluster_id(0).await;
    d.write_marker("before").await;

    // A second run: nothing destructive, only the backup branch.
    let (r, _) = d.backup(&policy, &snap_dir).await;
    assert_eq!(r.rule(), "initialised, keys present", "{}", r.context());
    r.expect_skipped(&INIT).expect_skipped(&RESTORE);
    r.expect_status("unseal", "nothing-to-do");
    assert_eq!(
        files_in(&keys_dir),
        stored,
        "the key store is never rewritten"
    );
    assert_eq!(d.cluster_id(0).await, cluster_id, "still the same cluster");
    d.expect_data(&token, &["before"], &[]).await;

    // A fresh node again, and a key store that already holds a key share.
    d.bao.wipe(0).await;
    let mut o = d.opts();
    o.keys_dir = d.path("keys-preexisting");
    o.snap_dir = d.path("snapshots-empty");
    let old = foreign_keys();
    write_keys(&o.keys_dir, &old[..1], None);
    let preexisting = files_in(&o.keys_dir);
    let policy = d.policy("policy-preexisting", &o);
    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(r.rule(), "keys present, no snapshot", "{}", r.context());
    r.expect_only_observed("refused");
    assert!(!d.initialized(0).await, "init must not have run");
    assert_eq!(
        files_in(&o.keys_dir),
        preexisting,
        "a pre-existing key is never overwritten or joined by new ones"
    );
    assert!(snap_names(&o.snap_dir).is_empty());
}

/// (d, continued) Create-only must hold for EVERY entry of the key store,
/// not only `unseal-key-0`: an old `root-token` (or a stray
/// `unseal-key-1`) left in the store must stop the init before the cluster
/// is initialised. Otherwise the cluster gets initialised, storing the new
/// keys then fails ("already holds keys"), and the only copy of the new
/// unseal keys is dropped from memory: a sealed cluster nobody can unseal.
#[tokio::test]
async fn d_init_refuses_before_initialising_when_any_key_store_entry_exists() {
    let mut d = Drill::single(false).await;
    let cases: [(&str, Vec<(String, String)>); 2] = [
        (
            "root-token only",
            vec![(
                "root-token".into(),
                "s.an-old-root-token-from-before\n".into(),
            )],
        ),
        (
            "unseal-key-1 only",
            vec![("unseal-key-1".into(), format!("{}\n", foreign_keys()[1]))],
        ),
    ];
    for (i, (case, entries)) in cases.iter().enumerate() {
        if i > 0 {
            d.bao.wipe(0).await;
        }
        let mut o = d.opts();
        o.keys_dir = d.path(&format!("keys-{i}"));
        o.snap_dir = d.path(&format!("snapshots-{i}"));
        fs::create_dir_all(&o.keys_dir).expect("key dir");
        for (name, value) in entries {
            fs::write(o.keys_dir.join(name), value).expect("write entry");
            d.remember_secret(value);
        }
        let before = files_in(&o.keys_dir);
        let policy = d.policy(&format!("policy-{i}"), &o);
        let r = d.run(&policy).await;
        assert!(
            !d.initialized(0).await,
            "{case}: the node was initialised although the key store already held an entry; \
             init {}, store-keys {}: the new unseal keys were not stored and are lost\n{}",
            r.status("init"),
            r.status("store-keys"),
            r.context()
        );
        assert_eq!(
            files_in(&o.keys_dir),
            before,
            "{case}: the key store must not be written\n{}",
            r.context()
        );
        r.expect_exit(3);
        r.expect_skipped(&INIT);
    }
}

/// (d, continued) The key store must be *writable* before `sys/init`: a
/// key directory that reads as absent (so the guard chooses init) but
/// cannot be created — under /proc, which refuses mkdir even for root —
/// makes init refuse while the server is still uninitialised, instead of
/// initialising and then losing the keys.
#[tokio::test]
async fn d_init_refuses_before_initialising_when_the_key_store_cannot_be_written() {
    let d = Drill::single(false).await;
    let mut o = d.opts();
    o.keys_dir = std::path::PathBuf::from(format!("/proc/snapward-keys-{}", std::process::id()));
    let policy = d.policy("policy", &o);
    let r = d.run(&policy).await;
    assert!(
        !d.initialized(0).await,
        "the node was initialised although its keys could not be stored\n{}",
        r.context()
    );
    r.expect_exit(4);
    assert_eq!(r.status("init"), "failed", "{}", r.context());
    assert!(
        r.reason("init").contains("could not be stored"),
        "{}",
        r.context()
    );
    assert_eq!(r.status("store-keys"), "skipped", "{}", r.context());
}

/// (d, 3 nodes) A fresh 3-node cluster is initialised on node 0 and every
/// follower is unsealed once it has joined (a raft follower finishes
/// unsealing asynchronously: its answer to the last key still says
/// `sealed: true`); the keys are stored create-only; a second run backs up.
#[tokio::test]
async fn d_three_node_fresh_cluster_is_initialised_and_every_follower_unsealed() {
    let mut d = Drill::three(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    let cluster_id = d.cluster_id(0).await;
    for node in 0..3 {
        let s = d.bao.seal_status(node).await;
        assert_eq!(
            s["sealed"],
            json!(false),
            "bao-{node} must be unsealed: {s}"
        );
        assert_eq!(
            s["cluster_id"],
            json!(cluster_id),
            "bao-{node}: one cluster"
        );
    }
    // The shares, the root token and the key shape.
    assert_eq!(files_in(&keys_dir).len(), SHARES as usize + 2);
    let stored = files_in(&keys_dir);
    d.write_marker("before").await;
    let (r, _) = d.backup(&policy, &snap_dir).await;
    r.expect_skipped(&INIT).expect_skipped(&RESTORE);
    assert_eq!(
        files_in(&keys_dir),
        stored,
        "the key store is never rewritten"
    );
    d.expect_data(&token, &["before"], &[]).await;
}

// ---- (e) ---------------------------------------------------------------

/// (e) Unseal keys survive, but no valid snapshot exists anywhere (local
/// store and S3): never initialise over surviving keys. Exit 3, nothing
/// touched, and the report says how to acknowledge the data loss; doing
/// exactly that (moving the old keys out) lets the next run initialise.
#[tokio::test]
async fn e_keys_present_without_any_snapshot_is_refused_and_changes_nothing() {
    let d = Drill::single(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    write_keys(
        &keys_dir,
        &foreign_keys(),
        Some("s.an-old-root-token-from-before"),
    );
    let keys = files_in(&keys_dir);
    let policy = d.policy("policy", &d.opts());
    assert!(d.s3_objects().await.is_empty());

    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(r.rule(), "keys present, no snapshot", "{}", r.context());
    r.expect_only_observed("refused");
    for words in [
        "never initialises over surviving keys",
        "acknowledge",
        "moving the old keys out",
    ] {
        assert!(
            r.explanation().contains(words) && r.summary().contains(words),
            "the report must explain the refusal and how to acknowledge data loss ({words:?})\n{}",
            r.context()
        );
    }
    assert!(!d.initialized(0).await, "the cluster stays uninitialised");
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
    assert!(snap_names(&snap_dir).is_empty(), "no snapshot was written");
    assert!(d.s3_objects().await.is_empty(), "nothing was uploaded");

    // Acknowledge the loss as the report says: move the old keys out (keep
    // a copy). The next run sees a fresh cluster and initialises it.
    let kept = d.path("keys-old");
    fs::rename(&keys_dir, &kept).expect("move the old keys out");
    let r = d.run(&policy).await;
    r.expect_exit(0).expect_branch("init");
    for id in INIT {
        r.expect_status(id, "succeeded");
    }
    assert!(d.initialized(0).await);
    assert_eq!(files_in(&kept), keys, "the old keys were not touched");
    // The shares, the root token and the key shape.
    assert_eq!(files_in(&keys_dir).len(), SHARES as usize + 2);
}

// ---- (f) ---------------------------------------------------------------

/// (f) 3 nodes, one unreachable (stopped), the others uninitialised, init
/// allowed and no keys: an unknown node is never "uninitialised". Exit 4
/// (retry), no init, nothing written.
#[tokio::test]
async fn f_three_nodes_one_unreachable_others_uninitialised_is_retry_and_writes_nothing() {
    let mut d = Drill::three(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.bao.stop(2);

    let r = d.run(&policy).await;
    r.expect_exit(4).expect_branch("retry");
    assert_eq!(r.rule(), "any node unknown", "{}", r.context());
    r.expect_only_observed("refused");
    assert!(
        r.items_of("observe", "node")
            .iter()
            .any(|i| i["name"] == "bao-2" && i["init"] == "unknown"),
        "observe must report the unreachable node as unknown\n{}",
        r.context()
    );
    for node in [0, 1] {
        assert!(
            !d.initialized(node).await,
            "bao-{node} must stay uninitialised"
        );
    }
    assert!(
        files_in(&keys_dir).is_empty(),
        "no key was written: {:?}",
        files_in(&keys_dir).keys().collect::<Vec<_>>()
    );
    assert!(
        snap_files(&snap_dir).is_empty(),
        "no snapshot file was written"
    );
}

// ---- (g) ---------------------------------------------------------------

/// (g) The newest snapshot is corrupt in every store (the local file is
/// truncated, the S3 object has a flipped byte while its metadata still
/// looks valid): the previous valid snapshot is restored, and the report
/// says why the newest was skipped.
#[tokio::test]
async fn g_newest_snapshot_corrupt_everywhere_restores_the_previous_valid_one() {
    let mut d = Drill::single(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (r, older) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:s3", "succeeded");
    d.write_marker("between").await;
    let (r, newest) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:s3", "succeeded");
    d.write_marker("after").await;
    let index = |n: &str| {
        snapward::snapshot::verify_file(&snap_dir.join(n))
            .expect("valid before the corruption")
            .index
    };
    let (older_index, newest_index) = (index(&older), index(&newest));
    assert!(
        newest_index > older_index,
        "the two snapshots must differ in raft index ({older}: {older_index}, {newest}: {newest_index})"
    );

    d.bao.wipe(0).await;
    truncate_half(&snap_dir.join(&newest));
    d.corrupt_s3_snapshot(&newest).await;
    let (snaps, objects) = (snap_files(&snap_dir), d.s3_objects().await);

    let r = d.run(&policy).await;
    expect_restored(&r, true, "local", &older);
    assert!(
        r.items_of("observe", "invalid")
            .iter()
            .any(|i| i["store"] == "local" && i["name"] == newest.as_str()),
        "observe must report the truncated local file as invalid\n{}",
        r.context()
    );
    // The S3 copy's SHA-256 no longer matches its tag: foreign before any
    // download (retention_auth), never fetched.
    assert!(
        r.items_of("observe", "foreign")
            .iter()
            .any(|i| i["store"] == "s3" && i["name"] == newest.as_str()),
        "observe must say why the newest (s3/{newest}) does not count\n{}",
        r.context()
    );
    assert!(
        r.reason("fetch")
            .contains(&format!("raft index {older_index}")),
        "{}",
        r.context()
    );
    d.expect_data(&token, &["before"], &["between", "after"])
        .await;
    assert_eq!(
        snap_files(&snap_dir),
        snaps,
        "a restore deletes no local file"
    );
    assert_eq!(d.s3_objects().await, objects, "a restore deletes no object");
}

// ---- (h) ---------------------------------------------------------------

/// (h) The cluster is wiped and a valid snapshot exists, but the unseal
/// keys are lost: the snapshot is unusable without them. Exit 3, nothing
/// written; putting the original keys back (the way forward the report
/// names) lets the next run restore.
#[tokio::test]
async fn h_keys_lost_with_a_snapshot_present_is_refused_and_changes_nothing() {
    let mut d = Drill::single(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;

    d.bao.wipe(0).await;
    let kept = d.path("keys-kept-elsewhere");
    fs::rename(&keys_dir, &kept).expect("lose the keys");
    fs::create_dir(&keys_dir).expect("an empty key store");
    let (snaps, objects) = (snap_files(&snap_dir), d.s3_objects().await);

    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(r.rule(), "keys absent, snapshot present", "{}", r.context());
    r.expect_only_observed("refused");
    assert!(
        r.explanation().contains("unusable without its keys")
            && r.explanation().contains("Put the original keys back"),
        "{}",
        r.context()
    );
    assert!(!d.initialized(0).await, "the cluster stays uninitialised");
    assert!(files_in(&keys_dir).is_empty(), "no key was written");
    assert_eq!(snap_files(&snap_dir), snaps, "local snapshots unchanged");
    assert_eq!(d.s3_objects().await, objects, "S3 objects unchanged");

    // The way forward: put the original keys back and rerun.
    fs::remove_dir(&keys_dir).expect("remove the empty store");
    fs::rename(&kept, &keys_dir).expect("put the keys back");
    let r = d.run(&policy).await;
    expect_restored(&r, true, "local", &name);
    d.expect_data(&token, &["before"], &["after"]).await;
}

// ---- (i) ---------------------------------------------------------------

/// (i) 3 nodes, every node's raft data lost: while one node is unreachable
/// nothing is restored (exit 4); once all answer, the restore lands on
/// every node — all unsealed, one cluster_id (the original one), data
/// readable on the leader with the original root token.
#[tokio::test]
async fn i_three_nodes_restore_lands_on_every_node_with_one_cluster_id() {
    let mut d = Drill::three(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    // Initialised by the harness (the 3-node init of snapward itself is
    // `d_three_node_fresh_cluster_...`): this drill is about the restore.
    let (init_keys, token) = d.bao.init_unsealed(SHARES, THRESHOLD).await;
    for k in &init_keys {
        d.remember_secret(k);
    }
    d.remember_secret(&token);
    write_keys(&keys_dir, &init_keys, Some(&token));
    d.bao.enable_kv().await;
    let mut o = d.opts();
    o.init_allowed = false;
    let policy = d.policy("policy", &o);
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;
    let cluster_id = d.cluster_id(0).await;
    let (keys, snaps) = (files_in(&keys_dir), snap_files(&snap_dir));

    for node in 0..3 {
        d.bao.wipe(node).await;
    }

    // One node unreachable: no restore, nothing written.
    d.bao.stop(2);
    let r = d.run(&policy).await;
    r.expect_exit(4).expect_branch("retry");
    r.expect_only_observed("refused");
    for node in [0, 1] {
        assert!(!d.initialized(node).await, "bao-{node} stays uninitialised");
    }
    assert_eq!(files_in(&keys_dir), keys);
    assert_eq!(snap_files(&snap_dir), snaps);

    d.bao.start(2).await;
    let r = d.run(&policy).await;
    expect_restored(&r, false, "local", &name);
    let mut leaders = Vec::new();
    for node in 0..3 {
        let s = d.bao.seal_status(node).await;
        assert_eq!(
            (s["initialized"].clone(), s["sealed"].clone()),
            (json!(true), json!(false)),
            "bao-{node} must be initialised and unsealed: {s}\n{}",
            r.context()
        );
        assert_eq!(
            s["cluster_id"],
            json!(cluster_id),
            "bao-{node} must report the original cluster_id"
        );
        if d.bao
            .leader(node)
            .await
            .is_some_and(|l| l["is_self"] == json!(true))
        {
            leaders.push(node);
        }
    }
    assert_eq!(leaders.len(), 1, "exactly one active node: {leaders:?}");
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
}

// ---- manual mode -------------------------------------------------------

/// Restore mode `manual`: a wiped cluster is planned, not restored — exit
/// 3 with the `snapward restore` explanation and nothing changed; then
/// `snapward restore -f POLICY` restores it.
#[tokio::test]
async fn manual_mode_refuses_a_wiped_cluster_until_snapward_restore_is_run() {
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let mut o = d.opts();
    o.mode = "manual";
    let policy = d.policy("policy", &o);
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;
    d.bao.wipe(0).await;
    let (keys, snaps) = (files_in(&keys_dir), snap_files(&snap_dir));

    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(r.rule(), "wiped, restore mode manual", "{}", r.context());
    r.expect_only_observed("refused");
    assert!(
        r.explanation().contains("run `snapward restore -f POLICY`"),
        "{}",
        r.context()
    );
    assert!(!d.initialized(0).await);
    assert_eq!(files_in(&keys_dir), keys);
    assert_eq!(snap_files(&snap_dir), snaps);

    let r = d.snapward("restore", &policy, &[]).await;
    expect_restored(&r, true, "local", &name);
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
}

// ---- invariant 7 ---------------------------------------------------------

/// Every file under `dir`, recursively: path → bytes.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(tree(&p)),
            Ok(t) if t.is_file() => {
                if let Ok(b) = fs::read(&p) {
                    out.push((p, b));
                }
            }
            _ => {}
        }
    }
    out
}

/// Invariant 7 (README "Guarantees"): the temporary root token and unseal
/// keys that a restore's temp-init gets from `sys/init` are never
/// persisted. A proxy in front of node 0 records the `PUT /v1/sys/init`
/// response, so the test knows them; the run logs at debug level with its
/// own TMPDIR. None of them may appear in stdout, stderr (the logs), the
/// report, the key store, the local store, the restore marker (read while
/// the run is under way, as long as it exists), TMPDIR — or any other file
/// in the drill's work dir. (The marker, TMPDIR and the key store are read
/// every 5 ms while the run is under way: a file that lives for less than
/// that between two reads can escape; what stays behind cannot.)
#[tokio::test]
async fn invariant_7_temporary_credentials_are_never_persisted() {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::support::fault_proxy::FaultProxy;

    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;
    let keys = files_in(&keys_dir);
    d.bao.wipe(0).await;

    let proxy = FaultProxy::start(d.bao.address(0).as_str()).await;
    proxy.record_bodies(|r| r.method == "PUT" && r.path() == "/v1/sys/init");
    let yaml = fs::read_to_string(&policy).expect("read the policy");
    let node0 = d.bao.address(0).as_str().trim_end_matches('/').to_owned();
    assert!(yaml.contains(&node0), "the policy names node 0 at {node0}");
    let proxied = d.path("proxied.yaml");
    fs::write(&proxied, yaml.replace(&node0, &proxy.url)).expect("write the policy");

    // The restore marker and TMPDIR, read while the run is under way.
    let tmp = d.path("run-tmp");
    fs::create_dir_all(&tmp).expect("TMPDIR");
    let marker = snap_dir.join(".snapward-drill.restore-in-progress");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, tmp, marker, keys_dir) =
            (stop.clone(), tmp.clone(), marker.clone(), keys_dir.clone());
        std::thread::spawn(move || {
            let mut seen: BTreeSet<(String, Vec<u8>)> = BTreeSet::new();
            loop {
                let last = stop.load(Ordering::SeqCst);
                if let Ok(b) = fs::read(&marker) {
                    seen.insert((marker.display().to_string(), b));
                }
                for (p, b) in tree(&tmp).into_iter().chain(tree(&keys_dir)) {
                    seen.insert((p.display().to_string(), b));
                }
                if last {
                    return seen;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let tmp_s = tmp.display().to_string();
    let r = d
        .snapward_env(
            "run",
            &proxied,
            &[],
            &[("SNAPWARD_LOG", "debug"), ("TMPDIR", &tmp_s)],
        )
        .await;
    stop.store(true, Ordering::SeqCst);
    let during = watcher.join().expect("the watcher");
    expect_restored(&r, true, "local", &name);
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
    assert!(
        r.stderr.contains("DEBUG") || r.stderr.contains("\"level\":\"debug\""),
        "the run logged at debug level\n{}",
        r.context()
    );
    assert!(
        during
            .iter()
            .any(|(p, _)| *p == marker.display().to_string()),
        "the restore marker {} was read while the run was under way",
        marker.display()
    );

    // What sys/init answered the restore's temp-init.
    let inits: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "PUT" && s.target == "/v1/sys/init")
        .collect();
    assert_eq!(inits.len(), 1, "one temp-init\n{}", proxy.log());
    let body = String::from_utf8_lossy(inits[0].body.as_deref().expect("recorded")).into_owned();
    let json = &body[body.find('{').expect("a JSON body")..=body.rfind('}').expect("a JSON body")];
    let init: serde_json::Value = serde_json::from_str(json).expect("the sys/init answer");
    let mut temp: Vec<String> = vec![init["root_token"].as_str().expect("root_token").to_owned()];
    for field in ["keys", "keys_base64"] {
        for k in init[field].as_array().expect(field) {
            temp.push(k.as_str().expect("a key").to_owned());
        }
    }
    assert_eq!(temp.len(), 1 + 2 * SHARES as usize, "{init}");
    assert!(temp.iter().all(|t| t.len() >= 16), "{init}");

    let report = r.report.to_string();
    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("stdout".into(), r.stdout.clone().into_bytes()),
        (
            "stderr (the debug logs)".into(),
            r.stderr.clone().into_bytes(),
        ),
        ("the report".into(), report.into_bytes()),
    ];
    places.extend(during);
    places.extend(
        tree(&d.path(""))
            .into_iter()
            .map(|(p, b)| (p.display().to_string(), b)),
    );
    for secret in &temp {
        for (place, bytes) in &places {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a temporary credential of the restore ({} chars) appears in {place}",
                secret.len()
            );
        }
    }
}

// ---- every node is verified ------------------------------------------------

/// Invariant 8's "every node is verified": a 3-node restore in which node 2
/// is killed (SIGKILL) right after `restore-unseal` unsealed it — the
/// moment `verify-cluster` sends its first request (to node 0), seen by a
/// proxy in front of node 0 — must not end "done": `verify-cluster` fails
/// and the run exits 4.
#[tokio::test]
async fn a_follower_lost_after_the_restore_unseal_fails_verify_cluster() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::support::fault_proxy::FaultProxy;

    let mut d = Drill::three(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let (init_keys, token) = d.bao.init_unsealed(SHARES, THRESHOLD).await;
    for k in &init_keys {
        d.remember_secret(k);
    }
    d.remember_secret(&token);
    write_keys(&keys_dir, &init_keys, Some(&token));
    d.bao.enable_kv().await;
    let mut o = d.opts();
    o.init_allowed = false;
    // verify-cluster waits joinTimeout before it fails: 120 s keeps this
    // test short, and is still far more than the followers' joins in
    // restore-unseal need (they share the bound; too short a bound would
    // fail restore-unseal, never pass this test).
    o.join_timeout = "120s";
    let policy = d.policy("policy", &o);
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    for node in 0..3 {
        d.bao.wipe(node).await;
    }

    let p0 = FaultProxy::start(d.bao.address(0).as_str()).await;
    let p2 = FaultProxy::start(d.bao.address(2).as_str()).await;
    let unsealed2 = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    {
        // Node 2 got its keys (restore-unseal is at the last follower).
        let unsealed2 = unsealed2.clone();
        p2.add(crate::support::fault_proxy::Rule::new(
            "note the unseal of node 2",
            move |r| {
                if r.method == "PUT" && r.path() == "/v1/sys/unseal" {
                    unsealed2.store(true, Ordering::SeqCst);
                }
                false
            },
            crate::support::fault_proxy::Fault::Stall,
        ));
    }
    {
        // The next request to node 0 is verify-cluster's first: kill node 2.
        let (unsealed2, killed) = (unsealed2.clone(), killed.clone());
        let pid = d.bao.pid(2).expect("node 2 runs").to_string();
        p0.add(crate::support::fault_proxy::Rule::new(
            "kill node 2",
            move |_| {
                if unsealed2.load(Ordering::SeqCst) && !killed.swap(true, Ordering::SeqCst) {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid])
                        .status();
                }
                false
            },
            crate::support::fault_proxy::Fault::Stall,
        ));
    }
    let mut yaml = fs::read_to_string(&policy).expect("read the policy");
    for (node, proxy) in [(0, &p0), (2, &p2)] {
        let addr = d
            .bao
            .address(node)
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        assert!(yaml.contains(&addr));
        yaml = yaml.replace(&addr, &proxy.url);
    }
    let proxied = d.path("proxied.yaml");
    fs::write(&proxied, yaml).expect("write the policy");

    let r = d.run(&proxied).await;
    assert!(
        killed.load(Ordering::SeqCst),
        "node 2 was killed after its unseal\n{}\n--- node 0 ---\n{}\n--- node 2 ---\n{}",
        r.context(),
        p0.log(),
        p2.log()
    );
    r.expect_exit(4).expect_branch("restore");
    for id in ["fetch", "restore", "restore-unseal"] {
        r.expect_status(id, "succeeded");
    }
    r.expect_status("verify-cluster", "failed");
    assert!(
        r.reason("fetch").contains(&format!("chose local/{name}")),
        "{}",
        r.context()
    );
    assert!(
        !r.summary().starts_with("done") && r.summary().contains("verify-cluster"),
        "a run whose cluster is not verified never says done\n{}",
        r.context()
    );
}

/// Invariant 5 as the README states it: with one node unknown (a follower
/// stopped) and the active node unsealed, the backup branch still runs —
/// a new, valid snapshot — but the run says retry (exit 4), and neither
/// init nor restore runs.
#[tokio::test]
async fn one_node_unknown_and_the_leader_unsealed_backs_up_and_exits_4() {
    let mut d = Drill::three(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let (init_keys, token) = d.bao.init_unsealed(SHARES, THRESHOLD).await;
    for k in &init_keys {
        d.remember_secret(k);
    }
    d.remember_secret(&token);
    write_keys(&keys_dir, &init_keys, Some(&token));
    d.bao.enable_kv().await;
    let policy = d.policy("policy", &d.opts());
    d.write_marker("before").await;
    let keys = files_in(&keys_dir);
    let active = d.bao.active_node().await;
    let follower = (0..3).find(|&n| n != active).expect("a follower");
    d.bao.stop(follower);
    let before = snap_names(&snap_dir);

    let r = d.run(&policy).await;
    r.expect_exit(4).expect_branch("retry");
    assert_eq!(r.rule(), "any node unknown", "{}", r.context());
    r.expect_status("snapshot", "succeeded")
        .expect_status("verify", "succeeded");
    r.expect_skipped(&INIT).expect_skipped(&RESTORE);
    assert!(
        r.items_of("observe", "node")
            .iter()
            .any(|i| i["name"] == d.bao.name(follower) && i["init"] == "unknown"),
        "observe reports the stopped node as unknown\n{}",
        r.context()
    );
    let new: Vec<String> = snap_names(&snap_dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "one new snapshot: {new:?}\n{}", r.context());
    snapward::snapshot::verify_file(&snap_dir.join(&new[0])).expect("a valid snapshot");
    assert!(
        r.summary().starts_with("not done"),
        "exit 4 says not done\n{}",
        r.context()
    );
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
}
