//! Auto-unseal clusters (issue 12, DESIGN §8): the real `snapward` binary
//! against real OpenBao servers that unseal themselves through a seal —
//! `seal "static"` (a key file) and `seal "transit"` (a second, Shamir
//! OpenBao as the KMS) — driven through policies, exit codes and the JSON
//! report, in the style of `drills.rs`.
//!
//! The key store holds the RECOVERY keys of such a cluster (`unseal-key-*`,
//! `key-shape` with `"seal":"auto"`); a restore needs none of them. Each
//! drill that recovers proves that data written BEFORE the snapshot is
//! readable with the ORIGINAL root token afterwards and that the cluster_id
//! is the original one; each drill that must refuse proves that nothing
//! changed (key files and snapshot files byte-identical). Every run is also
//! checked for leaked key shares and tokens (see `support::drill`).
//!
//! Needs `eval "$(scripts/test-env.sh)"` (SNAPWARD_TEST_BAO, SNAPWARD_TEST_MOTO).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::bao::BaoCluster;
use crate::support::drill::{
    Drill, INIT, RESTORE, S3_PREFIX, SHARES, THRESHOLD, snap_files, snap_names, write_keys,
};
use crate::support::outcome::Outcome;
use crate::support::work::files_in;

/// The destructive or writing actions of the backup branch.
const BACKUP: [&str; 4] = ["unseal", "snapshot", "verify", "prune:local"];

/// The guard's rules for auto-unseal clusters (README "Guard decision table").
const RULE_FRESH: &str = "fresh cluster";
const RULE_BACKUP: &str = "initialised (auto-unseal)";
const RULE_RESTORE: &str = "wiped, snapshot present (auto-unseal)";
const RULE_SEALED: &str = "auto-unseal node sealed";
const RULE_NO_SNAPSHOT: &str = "recovery keys present, no snapshot";
const RULE_INTERRUPTED: &str = "interrupted restore";

/// Exit 0 through the restore branch, every restore action succeeded, and
/// `fetch` chose `<store>/<name>`. `init` says whether the policy allows
/// init (else the init branch is not in the plan).
#[track_caller]
fn expect_restored(r: &Outcome, init: bool, store: &str, name: &str) {
    r.expect_exit(0).expect_branch("restore");
    assert_eq!(r.rule(), RULE_RESTORE, "{}", r.context());
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

/// Every `node` item of `observe` reports the seal type `want`.
#[track_caller]
fn expect_observed_seal(r: &Outcome, nodes: usize, want: &str) {
    let items = r.items_of("observe", "node");
    assert_eq!(
        items.len(),
        nodes,
        "observe must report every node\n{}",
        r.context()
    );
    for i in &items {
        assert_eq!(
            i["seal"],
            want,
            "observe must report the seal type of {}: {i}\n{}",
            i["name"],
            r.context()
        );
    }
}

/// The key store an auto-unseal init leaves: the recovery keys as
/// `unseal-key-0..SHARES-1`, `root-token`, and `key-shape` saying
/// `"seal":"auto"`. Returns the recovery keys.
#[track_caller]
fn expect_auto_key_store(keys_dir: &Path) -> Vec<String> {
    let stored = files_in(keys_dir);
    let mut want: Vec<String> = (0..SHARES).map(|i| format!("unseal-key-{i}")).collect();
    want.push("root-token".into());
    want.push("key-shape".into());
    want.sort();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), want);
    let shape: Value = serde_json::from_slice(&stored["key-shape"]).unwrap_or_else(|e| {
        panic!(
            "key-shape is not JSON ({e}): {}",
            String::from_utf8_lossy(&stored["key-shape"])
        )
    });
    assert_eq!(
        shape,
        json!({"shares": SHARES, "threshold": THRESHOLD, "seal": "auto"}),
        "the key shape of an auto-unseal cluster records the recovery shape and the seal"
    );
    (0..SHARES)
        .map(|i| {
            String::from_utf8_lossy(&stored[&format!("unseal-key-{i}")])
                .trim()
                .to_owned()
        })
        .collect()
}

/// The stored recovery keys are the cluster's: a root-token generation
/// (`sys/generate-root-token`, OpenBao ≥ 2.6: authenticated with `token`
/// and authorised by recovery keys on an auto-unseal server) completes
/// with `threshold` of them; a wrong key aborts it ("recovery key
/// verification failed"). It mints a root token that nobody decodes; the
/// original one keeps working.
async fn expect_genuine_recovery_keys(bao: &BaoCluster, token: &str, keys: &[String]) {
    let n = bao.active_node().await;
    let (status, v) = bao
        .call(
            n,
            Method::PUT,
            "sys/generate-root-token/attempt",
            Some(token),
            Some(json!({})),
        )
        .await;
    assert!(
        status.is_success(),
        "generate-root-token/attempt: {status} {v}"
    );
    let nonce = v["data"]["nonce"].as_str().expect("nonce").to_owned();
    let mut last = Value::Null;
    for k in keys.iter().take(THRESHOLD as usize) {
        let (status, v) = bao
            .call(
                n,
                Method::PUT,
                "sys/generate-root-token/update",
                Some(token),
                Some(json!({"key": k, "nonce": nonce})),
            )
            .await;
        assert!(
            status.is_success(),
            "a stored recovery key was rejected by the root generation: {status} {v}"
        );
        last = v;
    }
    assert_eq!(
        last["data"]["complete"],
        json!(true),
        "{THRESHOLD} stored recovery keys must complete a root generation: {last}"
    );
}

/// The `.snap` files of a store (name → bytes): what a refused restore
/// must leave byte-identical (the restore-in-progress marker may differ).
fn snapshots(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snap_files(dir)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".snap"))
        .collect()
}

// ---- the harness ---------------------------------------------------------

/// The harness itself: a `seal "static"` node reports the static seal with
/// a recovery seal, inits with recovery shares (no unseal keys), unseals
/// itself, and after a restart comes back unsealed BY ITSELF (no key sent)
/// with its data and cluster_id.
#[tokio::test]
async fn harness_static_seal_node_inits_with_recovery_keys_and_unseals_itself_after_a_restart() {
    let mut c = BaoCluster::single_static().await;
    assert_eq!(c.seal_type(), "static");
    let s = c.seal_status(0).await;
    assert_eq!(
        (&s["type"], &s["recovery_seal"], &s["initialized"]),
        (&json!(c.seal_type()), &json!(true), &json!(false)),
        "{s}"
    );
    let (keys, token) = c.init_recovery(SHARES, THRESHOLD).await;
    assert_eq!(keys.len(), SHARES as usize);
    let s = c.seal_status(0).await;
    assert_eq!(s["sealed"], json!(false), "{s}");
    assert_eq!(s["t"], json!(THRESHOLD), "the recovery threshold: {s}");
    let cluster_id = s["cluster_id"].clone();
    c.enable_kv().await;
    c.write_secret("marker", json!({"v": 1})).await;
    expect_genuine_recovery_keys(&c, &token, &keys).await;

    c.stop(0);
    c.start(0).await;
    c.wait_unsealed(0).await;
    let s = c.seal_status(0).await;
    assert_eq!(s["cluster_id"], cluster_id, "{s}");
    assert_eq!(c.read_secret("marker").await, Some(json!({"v": 1})));

    // A new seal key: the restarted node can no longer open its own data.
    c.stop(0);
    c.replace_seal_key();
    c.start(0).await;
    let s = c.seal_status(0).await;
    assert_eq!(
        (&s["initialized"], &s["sealed"]),
        (&json!(true), &json!(true)),
        "a node restarted under another seal key stays sealed: {s}"
    );
}

/// The server facts the static-seal drills rely on (DESIGN §8), shown
/// without snapward: a snapshot restores onto a wiped node that was
/// temp-initialised with recovery shares, through the VERIFIED endpoint,
/// and the node then reports the original cluster_id and the original root
/// token reads the data; under another seal key the same restore answers
/// 400 "… different autoseal key" and the node keeps its temporary barrier.
#[tokio::test]
async fn harness_static_seal_snapshot_restores_under_its_key_and_is_rejected_under_another() {
    let mut c = BaoCluster::single_static().await;
    let (_, token) = c.init_recovery(SHARES, THRESHOLD).await;
    c.enable_kv().await;
    c.write_secret("marker", json!({"v": 1})).await;
    let cluster_id = c.seal_status(0).await["cluster_id"].clone();
    let snapshot = c.raft_snapshot(0).await;

    c.wipe(0).await;
    let (_, temp) = c.init_recovery(SHARES, THRESHOLD).await;
    let (status, body) = c.raft_restore(0, &temp, snapshot.clone()).await;
    assert!(status.is_success(), "the verified restore: {status} {body}");
    let deadline = std::time::Instant::now() + crate::support::bao::WAIT;
    while c.seal_status(0).await["cluster_id"] != cluster_id {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never reported the snapshot's cluster_id"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    c.set_root_token(&token);
    c.wait_active(0).await;
    assert_eq!(
        c.read_secret_with(0, &token, "marker").await,
        Some(json!({"v": 1}))
    );

    c.stop(0);
    c.replace_seal_key();
    c.wipe(0).await;
    let (_, temp) = c.init_recovery(SHARES, THRESHOLD).await;
    let temp_id = c.seal_status(0).await["cluster_id"].clone();
    let (status, body) = c.raft_restore(0, &temp, snapshot).await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(body.contains("different autoseal key"), "{body}");
    let s = c.seal_status(0).await;
    assert_eq!(
        (&s["sealed"], &s["cluster_id"]),
        (&json!(false), &temp_id),
        "the rejected snapshot changed nothing: {s}"
    );
}

/// The 3-node static harness: one seal key for every node; node 0 inits
/// with recovery shares, the followers join and unseal themselves, one
/// cluster_id; every node restarted comes back unsealed by itself.
#[tokio::test]
async fn harness_three_static_seal_nodes_join_and_unseal_themselves() {
    let mut c = BaoCluster::three_static().await;
    c.init_recovery(SHARES, THRESHOLD).await;
    let cluster_id = c.seal_status(0).await["cluster_id"].clone();
    for node in 0..3 {
        c.stop(node);
    }
    for node in 0..3 {
        c.start(node).await;
    }
    c.wait_auto_unsealed().await;
    for node in 0..3 {
        let s = c.seal_status(node).await;
        assert_eq!(
            (&s["type"], &s["sealed"], &s["cluster_id"]),
            (&json!("static"), &json!(false), &cluster_id),
            "bao-{node}: {s}"
        );
    }
}

/// The transit harness: the node unseals itself through the KMS, also
/// after a restart; without the decrypt right on the KMS a restarted node
/// stays sealed; with it granted again it unseals itself.
#[tokio::test]
async fn harness_transit_seal_node_unseals_through_its_kms_and_stays_sealed_without_it() {
    let kms = BaoCluster::transit_kms().await;
    let mut c = BaoCluster::single_transit(&kms).await;
    assert_eq!(c.seal_type(), "transit");
    let s = c.seal_status(0).await;
    assert_eq!(
        (&s["type"], &s["recovery_seal"]),
        (&json!(c.seal_type()), &json!(true)),
        "{s}"
    );
    c.init_recovery(SHARES, THRESHOLD).await;
    c.stop(0);
    c.start(0).await;
    c.wait_unsealed(0).await;

    kms.kms_allow_decrypt(false).await;
    c.stop(0);
    c.start(0).await;
    let s = c.seal_status(0).await;
    assert_eq!(
        (&s["initialized"], &s["sealed"]),
        (&json!(true), &json!(true)),
        "a restarted node whose KMS refuses to decrypt stays sealed: {s}"
    );
    kms.kms_allow_decrypt(true).await;
    c.wait_unsealed(0).await;
}

// ---- init ------------------------------------------------------------------

/// A fresh static-seal cluster is initialised by `snapward run`
/// (init.allowed): exit 0, the init branch, the RECOVERY keys and the root
/// token stored (`key-shape` says `"seal":"auto"`), the node unsealed by
/// its seal; a node restarted afterwards comes back unsealed by itself; the
/// next run takes the backup branch and changes nothing in the key store.
#[tokio::test]
async fn static_seal_fresh_cluster_is_initialised_with_recovery_keys_and_the_next_run_backs_up() {
    let mut d = Drill::single_static(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());

    let (r, token) = d.snapward_init(&policy, &keys_dir).await;
    assert_eq!(r.rule(), RULE_FRESH, "{}", r.context());
    expect_observed_seal(&r, 1, "static");
    r.expect_skipped(&BACKUP).expect_skipped(&RESTORE);
    let recovery = expect_auto_key_store(&keys_dir);
    let s = d.bao.seal_status(0).await;
    assert_eq!(
        (
            &s["type"],
            &s["initialized"],
            &s["sealed"],
            &s["n"],
            &s["t"]
        ),
        (
            &json!("static"),
            &json!(true),
            &json!(false),
            &json!(SHARES),
            &json!(THRESHOLD)
        ),
        "{s}"
    );
    expect_genuine_recovery_keys(&d.bao, &token, &recovery).await;
    assert!(snap_names(&snap_dir).is_empty(), "init takes no snapshot");
    let cluster_id = d.cluster_id(0).await;
    d.write_marker("before").await;

    d.bao.stop(0);
    d.bao.start(0).await;
    d.bao.wait_unsealed(0).await;
    assert_eq!(d.cluster_id(0).await, cluster_id, "the same cluster");

    let stored = files_in(&keys_dir);
    let (r, _) = d.backup(&policy, &snap_dir).await;
    assert_eq!(r.rule(), RULE_BACKUP, "{}", r.context());
    expect_observed_seal(&r, 1, "static");
    r.expect_skipped(&INIT).expect_skipped(&RESTORE);
    assert_eq!(
        files_in(&keys_dir),
        stored,
        "the key store is never rewritten"
    );
    d.expect_data(&token, &["before"], &[]).await;
}

/// A fresh transit-seal cluster (a second OpenBao as its KMS) is
/// initialised by `snapward run` like a static one. Then the KMS becomes
/// unreachable: the node restarts and stays sealed — the run takes retry
/// ("auto-unseal node sealed"), exit 4, touches nothing (snapward never
/// unseals an auto-unseal node). Once the KMS is back, the node unseals
/// itself and the next run backs up.
///
/// An auto-unseal server whose KMS is down when it STARTS exits at once
/// ("Error configuring seal \"transit\": … connection refused"), so the node
/// is restarted while the KMS answers but refuses to decrypt, and the KMS is
/// stopped after that: a running, sealed node whose KMS is gone.
#[tokio::test]
async fn transit_seal_fresh_cluster_is_initialised_and_a_node_sealed_without_its_kms_is_retried() {
    let mut d = Drill::single_transit(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());

    let (r, token) = d.snapward_init(&policy, &keys_dir).await;
    assert_eq!(r.rule(), RULE_FRESH, "{}", r.context());
    expect_observed_seal(&r, 1, "transit");
    let recovery = expect_auto_key_store(&keys_dir);
    expect_genuine_recovery_keys(&d.bao, &token, &recovery).await;
    let cluster_id = d.cluster_id(0).await;
    d.write_marker("before").await;
    d.bao.stop(0);
    d.bao.start(0).await;
    d.bao.wait_unsealed(0).await;
    let (r, _) = d.backup(&policy, &snap_dir).await;
    assert_eq!(r.rule(), RULE_BACKUP, "{}", r.context());

    // The KMS is lost: the restarted node cannot unseal.
    let (keys, snaps) = (files_in(&keys_dir), snap_files(&snap_dir));
    d.kms.as_ref().expect("kms").kms_allow_decrypt(false).await;
    d.bao.stop(0);
    d.bao.start(0).await;
    d.kms.as_mut().expect("kms").stop(0);
    let s = d.bao.seal_status(0).await;
    assert_eq!(
        (&s["initialized"], &s["sealed"]),
        (&json!(true), &json!(true)),
        "{s}"
    );

    let r = d.run(&policy).await;
    r.expect_exit(4).expect_branch("retry");
    assert_eq!(r.rule(), RULE_SEALED, "{}", r.context());
    expect_observed_seal(&r, 1, "transit");
    r.expect_only_observed("a sealed auto-unseal node");
    let s = d.bao.seal_status(0).await;
    assert_eq!(
        (&s["initialized"], &s["sealed"]),
        (&json!(true), &json!(true)),
        "nothing was done to the node: {s}"
    );
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
    assert_eq!(snap_files(&snap_dir), snaps, "the snapshots are untouched");

    // The KMS is back: the node unseals itself, the next run backs up.
    let kms = d.kms.as_mut().expect("kms");
    kms.kms_start_unsealed().await;
    kms.kms_allow_decrypt(true).await;
    d.bao.wait_unsealed(0).await;
    assert_eq!(d.cluster_id(0).await, cluster_id, "the same cluster");
    let (r, _) = d.backup(&policy, &snap_dir).await;
    assert_eq!(r.rule(), RULE_BACKUP, "{}", r.context());
    d.expect_data(&token, &["before"], &[]).await;
}

// ---- restore -------------------------------------------------------------

/// The raft data of a static-seal cluster is lost, the local snapshots
/// survive: the run restores the newest local snapshot through the
/// verified endpoint — no unseal key needed — and the node reports the
/// ORIGINAL cluster_id; the ORIGINAL root token reads the marker written
/// before the backup; the one written after it is gone. A restart
/// afterwards unseals by itself (the restored data is under the same seal).
#[tokio::test]
async fn static_seal_raft_data_lost_is_restored_from_the_local_store() {
    let mut d = Drill::single_static(false).await;
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
    expect_observed_seal(&r, 1, "static");
    assert_eq!(
        d.cluster_id(0).await,
        cluster_id,
        "the restored node reports the original cluster_id\n{}",
        r.context()
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

    d.bao.stop(0);
    d.bao.start(0).await;
    d.bao.wait_unsealed(0).await;
    assert_eq!(d.cluster_id(0).await, cluster_id);
    d.expect_data(&token, &["before"], &["after"]).await;
}

/// The raft data AND the local snapshot store of a static-seal cluster are
/// lost (PVC gone): the newest snapshot is fetched from S3 and restored;
/// the original root token reads the data; S3 is not written.
#[tokio::test]
async fn static_seal_raft_data_and_local_snapshots_lost_is_restored_from_s3() {
    let mut d = Drill::single_static(true).await;
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
    let cluster_id = d.cluster_id(0).await;
    let keys = files_in(&keys_dir);

    d.bao.wipe(0).await;
    fs::remove_dir_all(&snap_dir).expect("lose the local snapshot store");

    let r = d.run(&policy).await;
    expect_restored(&r, true, "s3", &name);
    assert_eq!(d.cluster_id(0).await, cluster_id, "the original cluster_id");
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
}

/// The original bug: an auto-unseal cluster initialised outside
/// snapward, whose key store holds only a `root-token` (the recovery keys
/// were never stored). It is backed up, and after its raft data is lost
/// it is restored: a restore of an auto-unseal cluster needs no key.
#[tokio::test]
async fn static_seal_key_store_with_only_a_root_token_is_backed_up_and_restored() {
    let mut d = Drill::single_static(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let (recovery, token) = d.bao.init_recovery(SHARES, THRESHOLD).await;
    for k in &recovery {
        d.remember_secret(k);
    }
    d.remember_secret(&token);
    write_keys(&keys_dir, &[], Some(&token));
    d.bao.enable_kv().await;
    let mut o = d.opts();
    o.init_allowed = false;
    let policy = d.policy("policy", &o);
    d.write_marker("before").await;
    let (r, name) = d.backup(&policy, &snap_dir).await;
    assert_eq!(r.rule(), RULE_BACKUP, "{}", r.context());
    d.write_marker("after").await;
    let cluster_id = d.cluster_id(0).await;
    let (keys, snaps) = (files_in(&keys_dir), snap_files(&snap_dir));
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["root-token"]);

    d.bao.wipe(0).await;
    let r = d.run(&policy).await;
    expect_restored(&r, false, "local", &name);
    assert_eq!(d.cluster_id(0).await, cluster_id, "the original cluster_id");
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
    assert_eq!(snap_files(&snap_dir), snaps);
}

// The 3-node static-seal restore (followers joined to the temporary
// cluster first, then restarted: openbao-operator#658) is
// `multi_node_restore::static_seal_three_node_restore_waits_for_the_followers_then_needs_them_restarted`.

// ---- refusals ------------------------------------------------------------

/// The seal key changed (the node wiped and restarted under a new static
/// key): the server rejects the snapshot ("… different autoseal key"); the
/// run is REFUSED (exit 3) with a `seal-mismatch` item naming the snapshot
/// and a refusal that says to check the seal key; snapshot files and key
/// files are byte-identical; never `-force`d. Node 0 keeps its temporary
/// barrier, so the next run refuses with "interrupted restore".
#[tokio::test]
async fn static_seal_key_changed_is_refused_as_a_seal_mismatch_and_changes_nothing() {
    let mut d = Drill::single_static(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, _token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    let cluster_id = d.cluster_id(0).await;
    let (keys, snaps) = (files_in(&keys_dir), snapshots(&snap_dir));

    d.bao.stop(0);
    d.bao.replace_seal_key();
    d.bao.wipe(0).await;
    assert!(!d.initialized(0).await);

    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("restore");
    assert_eq!(r.rule(), RULE_RESTORE, "{}", r.context());
    r.expect_status("fetch", "succeeded");
    let mismatch = r.items_of("restore", "seal-mismatch");
    assert!(
        mismatch
            .iter()
            .any(|i| i["store"] == "local" && i["name"] == json!(name)),
        "the restore action must report a seal-mismatch item for local/{name}\n{}",
        r.context()
    );
    assert_ne!(r.status("restore"), "succeeded", "{}", r.context());
    r.expect_skipped(&["restore-unseal", "verify-cluster"]);
    let refusal = format!("{}\n{}", r.summary(), r.reason("restore"));
    assert!(
        refusal.contains(&name) && refusal.to_lowercase().contains("seal key"),
        "the refusal must name the snapshot {name} and say to check the seal key: {refusal}\n{}",
        r.context()
    );
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
    assert_eq!(
        snapshots(&snap_dir),
        snaps,
        "the snapshot files are untouched"
    );
    assert_ne!(
        d.cluster_id(0).await,
        cluster_id,
        "the snapshot was not applied (not forced)"
    );

    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(r.rule(), RULE_INTERRUPTED, "{}", r.context());
    r.expect_only_observed("an interrupted restore");
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
    assert_eq!(snapshots(&snap_dir), snaps);
}

/// The cluster is lost and no snapshot exists, but the key store still
/// holds what the lost cluster left — its recovery keys, or only a lone
/// `root-token`: the run refuses ("recovery keys present, no snapshot",
/// exit 3) and touches nothing: the node stays uninitialised, the key
/// store byte-identical, no snapshot taken.
#[tokio::test]
async fn static_seal_recovery_keys_present_without_a_snapshot_is_refused_and_changes_nothing() {
    let mut d = Drill::single_static(false).await;
    let keys_dir = d.keys_dir();
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    expect_auto_key_store(&keys_dir);
    d.bao.wipe(0).await;

    let mut lone = d.opts();
    lone.keys_dir = d.path("keys-root-token-only");
    lone.snap_dir = d.path("snapshots-empty");
    write_keys(&lone.keys_dir, &[], Some(&token));
    let lone_policy = d.policy("policy-root-token-only", &lone);

    for (case, policy, keys_dir, snap_dir) in [
        ("recovery keys", &policy, keys_dir.clone(), d.snap_dir()),
        (
            "a lone root-token",
            &lone_policy,
            lone.keys_dir.clone(),
            lone.snap_dir.clone(),
        ),
    ] {
        let before = files_in(&keys_dir);
        let r = d.run(policy).await;
        r.expect_exit(3).expect_branch("refuse");
        assert_eq!(r.rule(), RULE_NO_SNAPSHOT, "{case}\n{}", r.context());
        expect_observed_seal(&r, 1, "static");
        r.expect_only_observed(case);
        assert!(!d.initialized(0).await, "{case}: init must not have run");
        assert_eq!(
            files_in(&keys_dir),
            before,
            "{case}: the key store is untouched"
        );
        assert!(snap_names(&snap_dir).is_empty(), "{case}: no snapshot");
    }
}

/// One follower of a 3-node static-seal cluster restarted under a seal key
/// it cannot use (its seal is "unreachable") stays sealed: the run says
/// retry ("auto-unseal node sealed", exit 4) — but the active node is
/// unsealed, so the backup still runs (a new, valid snapshot); snapward
/// never tries to unseal the sealed node, and neither init nor restore
/// runs.
#[tokio::test]
async fn three_static_one_follower_sealed_by_its_seal_backs_up_and_exits_4() {
    let mut d = Drill::three_static(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.bao.wait_auto_unsealed().await;
    d.write_marker("before").await;
    let active = d.bao.active_node().await;
    let follower = (0..3).rev().find(|&n| n != active).expect("a follower");
    let keys = files_in(&keys_dir);

    d.bao.stop(follower);
    d.bao.replace_seal_key();
    d.bao.start(follower).await;
    let s = d.bao.seal_status(follower).await;
    assert_eq!(
        (&s["initialized"], &s["sealed"]),
        (&json!(true), &json!(true)),
        "the follower cannot unseal under the new key: {s}"
    );
    let before = snap_names(&snap_dir);

    let r = d.run(&policy).await;
    r.expect_exit(4).expect_branch("retry");
    assert_eq!(r.rule(), RULE_SEALED, "{}", r.context());
    expect_observed_seal(&r, 3, "static");
    r.expect_status("snapshot", "succeeded")
        .expect_status("verify", "succeeded");
    r.expect_skipped(&INIT).expect_skipped(&RESTORE);
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
    let s = d.bao.seal_status(follower).await;
    assert_eq!(s["sealed"], json!(true), "still sealed: {s}");
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
    d.expect_data(&token, &["before"], &[]).await;
}

// ---- seal kinds ----------------------------------------------------------

/// The policy lists a static-seal node and a Shamir node (both fresh): the
/// nodes disagree on the seal type, the run says retry (exit 4) and
/// initialises nothing.
#[tokio::test]
async fn nodes_that_disagree_on_the_seal_type_are_retried_and_nothing_is_initialised() {
    let d = Drill::single_static(false).await;
    let shamir = BaoCluster::single().await;
    let policy = d.policy("policy", &d.opts());
    let yaml = fs::read_to_string(&policy).expect("read policy");
    let line = format!(
        "      - {{name: {}, address: \"{}\"}}\n",
        d.bao.name(0),
        d.bao.address(0).as_str().trim_end_matches('/')
    );
    assert!(yaml.contains(&line), "{yaml}");
    let yaml = yaml.replacen(
        &line,
        &format!(
            "{line}      - {{name: shamir-0, address: \"{}\"}}\n",
            shamir.address(0).as_str().trim_end_matches('/')
        ),
        1,
    );
    fs::write(&policy, yaml).expect("write policy");

    let r = d.run(&policy).await;
    r.expect_exit(4).expect_branch("retry");
    assert_eq!(
        r.rule(),
        "nodes disagree on the seal type",
        "{}",
        r.context()
    );
    r.expect_only_observed("nodes of two seal kinds");
    let seals: Vec<Value> = r
        .items_of("observe", "node")
        .iter()
        .map(|i| i["seal"].clone())
        .collect();
    assert_eq!(seals, [json!("static"), json!("shamir")], "{}", r.context());
    assert!(!d.initialized(0).await);
    assert_eq!(shamir.seal_status(0).await["initialized"], json!(false));
    assert!(!d.keys_dir().exists(), "no key store written");
}

/// `spec.cluster.seal` says what the cluster must be: a static-seal node
/// under `seal: shamir`, and a Shamir node under `seal: auto`, are refused
/// ("seal contradicts the policy", exit 3) before anything is done.
#[tokio::test]
async fn a_seal_that_contradicts_the_policy_is_refused() {
    for (case, d, declared) in [
        (
            "static node, policy shamir",
            Drill::single_static(false).await,
            "shamir",
        ),
        (
            "shamir node, policy auto",
            Drill::single(false).await,
            "auto",
        ),
    ] {
        let policy = d.policy("policy", &d.opts());
        let yaml = fs::read_to_string(&policy).expect("read policy");
        let anchor = "  cluster:\n";
        assert!(yaml.contains(anchor), "{yaml}");
        let yaml = yaml.replacen(anchor, &format!("{anchor}    seal: {declared}\n"), 1);
        fs::write(&policy, yaml).expect("write policy");
        let r = d.run(&policy).await;
        r.expect_exit(3).expect_branch("refuse");
        assert_eq!(
            r.rule(),
            "seal contradicts the policy",
            "{case}\n{}",
            r.context()
        );
        r.expect_only_observed(case);
        assert!(!d.initialized(0).await, "{case}: nothing initialised");
        assert!(!d.keys_dir().exists(), "{case}: no key store written");
    }
}

/// Shamir clusters are unchanged but for the record and one guard row: a
/// fresh init records `"seal":"shamir"` in `key-shape`; a wiped cluster
/// whose store holds only a `root-token` and no snapshot is refused with
/// "key store not empty, no unseal keys".
#[tokio::test]
async fn shamir_key_shape_records_the_seal_and_a_lone_root_token_without_snapshot_is_refused() {
    let mut d = Drill::single(false).await;
    let keys_dir = d.keys_dir();
    let policy = d.policy("policy", &d.opts());
    let (r, token) = d.snapward_init(&policy, &keys_dir).await;
    expect_observed_seal(&r, 1, "shamir");
    let shape: Value =
        serde_json::from_slice(&fs::read(keys_dir.join("key-shape")).expect("key-shape"))
            .expect("key-shape is JSON");
    assert_eq!(
        shape,
        json!({"shares": SHARES, "threshold": THRESHOLD, "seal": "shamir"})
    );

    d.bao.wipe(0).await;
    let mut o = d.opts();
    o.keys_dir = d.path("keys-root-token-only");
    o.snap_dir = d.path("snapshots-empty");
    write_keys(&o.keys_dir, &[], Some(&token));
    let before = files_in(&o.keys_dir);
    let policy = d.policy("policy-root-token-only", &o);
    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(
        r.rule(),
        "key store not empty, no unseal keys",
        "{}",
        r.context()
    );
    r.expect_only_observed("a lone root-token");
    assert!(!d.initialized(0).await, "init must not have run");
    assert_eq!(files_in(&o.keys_dir), before, "the key store is untouched");
}

/// A transit-seal cluster whose raft data is lost is restored from the
/// local store (the KMS unchanged): original cluster_id, original root
/// token reads the data, and a restart unseals through the KMS.
#[tokio::test]
async fn transit_seal_raft_data_lost_is_restored_from_the_local_store() {
    let mut d = Drill::single_transit(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;
    let cluster_id = d.cluster_id(0).await;
    let keys = files_in(&keys_dir);

    d.bao.wipe(0).await;
    let r = d.run(&policy).await;
    expect_restored(&r, true, "local", &name);
    expect_observed_seal(&r, 1, "transit");
    assert_eq!(d.cluster_id(0).await, cluster_id, "the original cluster_id");
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(files_in(&keys_dir), keys);

    d.bao.stop(0);
    d.bao.start(0).await;
    d.bao.wait_unsealed(0).await;
    d.expect_data(&token, &["before"], &["after"]).await;
}

/// Restore mode `manual` holds for auto-unseal clusters as for Shamir: a
/// wiped static-seal cluster is refused (exit 3, "wiped, restore mode
/// manual") and nothing changes; `snapward restore -f POLICY` then
/// restores it through the verified endpoint.
#[tokio::test]
async fn static_seal_manual_mode_refuses_a_wiped_cluster_until_snapward_restore_is_run() {
    let mut d = Drill::single_static(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let mut o = d.opts();
    o.mode = "manual";
    let policy = d.policy("policy", &o);
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, name) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;
    let cluster_id = d.cluster_id(0).await;
    d.bao.wipe(0).await;
    let (keys, snaps) = (files_in(&keys_dir), snap_files(&snap_dir));

    let r = d.run(&policy).await;
    r.expect_exit(3).expect_branch("refuse");
    assert_eq!(r.rule(), "wiped, restore mode manual", "{}", r.context());
    r.expect_only_observed("manual mode");
    assert!(!d.initialized(0).await);
    assert_eq!(files_in(&keys_dir), keys);
    assert_eq!(snap_files(&snap_dir), snaps);

    let r = d.snapward("restore", &policy, &[]).await;
    expect_restored(&r, true, "local", &name);
    assert_eq!(d.cluster_id(0).await, cluster_id, "the original cluster_id");
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
}

/// `spec.cluster.seal` contradicted by a cluster that is up: the run is
/// refused ("seal contradicts the policy", exit 3) — but the active node
/// is unsealed, so the backup still runs (a new, valid snapshot).
#[tokio::test]
async fn a_seal_that_contradicts_the_policy_on_a_running_cluster_is_refused_but_still_backed_up() {
    let mut d = Drill::single_static(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.snapward_init(&policy, &keys_dir).await;
    let yaml = fs::read_to_string(&policy).expect("read policy");
    let anchor = "  cluster:\n";
    assert!(yaml.contains(anchor), "{yaml}");
    let contradicting = d.path("policy-shamir.yaml");
    fs::write(
        &contradicting,
        yaml.replacen(anchor, &format!("{anchor}    seal: shamir\n"), 1),
    )
    .expect("write policy");
    let keys = files_in(&keys_dir);
    let before = snap_names(&snap_dir);

    let r = d.run(&contradicting).await;
    r.expect_exit(3);
    assert_eq!(r.rule(), "seal contradicts the policy", "{}", r.context());
    r.expect_status("snapshot", "succeeded")
        .expect_status("verify", "succeeded");
    r.expect_skipped(&INIT).expect_skipped(&RESTORE);
    let new: Vec<String> = snap_names(&snap_dir)
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert_eq!(new.len(), 1, "one new snapshot: {new:?}\n{}", r.context());
    assert_eq!(files_in(&keys_dir), keys, "the key store is untouched");
}

/// S3 object tags of an auto-unseal cluster are derived from its combined
/// recovery key: another static-seal cluster (another seal key, other
/// recovery keys) that backs up LATER into the same bucket and prefix
/// leaves a newer, valid archive there — but it is foreign to this
/// cluster. After losing its raft data and its local store, this cluster
/// restores its OWN newest snapshot from S3, not the other one.
#[tokio::test]
async fn static_seal_another_clusters_newer_s3_snapshot_is_not_restored() {
    let mut d = Drill::single_static(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (r, name) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:s3", "succeeded");
    let cluster_id = d.cluster_id(0).await;

    // The other cluster: this policy with its own node, key store and
    // local store. It is initialised by snapward without the S3 target (a
    // fresh auto-unseal cluster that sees a snapshot restores it instead:
    // here, a seal mismatch), then backs up to S3 a second later.
    let other = BaoCluster::single_static().await;
    let (other_keys, other_snaps) = (d.path("other-keys"), d.path("other-snapshots"));
    let text = |p: &Path| p.display().to_string();
    let for_other = |policy: &Path, name: &str| {
        let yaml = fs::read_to_string(policy)
            .expect("read policy")
            .replace(
                d.bao.address(0).as_str().trim_end_matches('/'),
                other.address(0).as_str().trim_end_matches('/'),
            )
            .replace(&text(&keys_dir), &text(&other_keys))
            .replace(&text(&snap_dir), &text(&other_snaps));
        let p = d.path(name);
        fs::write(&p, yaml).expect("write policy");
        p
    };
    let mut o = d.opts();
    o.s3 = false;
    let other_init = for_other(&d.policy("policy-no-s3", &o), "other-init.yaml");
    let other_policy = for_other(&policy, "other.yaml");
    let r = d.run(&other_init).await;
    r.expect_exit(0).expect_branch("init");
    d.remember_secret(&fs::read_to_string(other_keys.join("root-token")).expect("root-token"));
    d.wait_for_a_fresh_second(&snap_dir).await;
    let r = d.run(&other_policy).await;
    r.expect_exit(0).expect_branch("backup");
    r.expect_status("upload:s3", "succeeded");
    let other_names = snap_names(&other_snaps);
    assert_eq!(other_names.len(), 1, "{other_names:?}");
    assert!(
        other_names[0] > name,
        "{} is newer than {name}",
        other_names[0]
    );
    let objects = d.s3_objects().await;
    for n in [&name, &other_names[0]] {
        assert!(
            objects.contains_key(&format!("{S3_PREFIX}{n}")),
            "{n} in S3: {objects:?}"
        );
    }

    d.bao.wipe(0).await;
    fs::remove_dir_all(&snap_dir).expect("lose the local snapshot store");
    let r = d.run(&policy).await;
    expect_restored(&r, true, "s3", &name);
    assert!(
        r.items_of("observe", "foreign")
            .iter()
            .any(|i| i["store"] == "s3" && i["name"] == json!(other_names[0])),
        "observe must report the other cluster's object as foreign\n{}",
        r.context()
    );
    assert_eq!(d.cluster_id(0).await, cluster_id, "the original cluster_id");
    d.expect_data(&token, &["before"], &[]).await;
    assert_eq!(d.s3_objects().await, objects, "S3 is not written");
}
