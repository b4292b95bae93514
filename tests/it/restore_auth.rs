//! Snapshot authenticity on the restore and backup paths (invariant 11:
//! no destructive step on a snapshot the stored keys cannot open), with
//! real OpenBao 2.7.2 servers, real snapshots and the real binary:
//! another cluster's keys are refused before `sys/init`; a forged newer
//! snapshot (raised Index, recomputed SHA256SUMS) is skipped and the
//! genuine newest restored; after a rekey, the backup reports at once that
//! the stored keys no longer open its snapshot, and a restore skips the
//! snapshots they do not open.

use std::fs;
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::drill::{Drill, RESTORE, SNAP_PREFIX, snap_files};
use crate::support::outcome::Outcome;
use crate::support::surgery::{entries, entry_mut, resum, write_snapshot};
use crate::support::work::files_in;

/// The kinds and texts of `id`'s items that name `name`.
fn verdict_of(r: &Outcome, id: &str, name: &str) -> Vec<(String, String)> {
    r.report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["id"] == id)
        .flat_map(|a| a["items"].as_array().cloned().unwrap_or_default())
        .filter(|i| i["name"] == name)
        .map(|i| {
            (
                i["authenticity"]
                    .as_str()
                    .unwrap_or(i["kind"].as_str().unwrap_or(""))
                    .to_string(),
                i["text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn restore_marker_exists(snap_dir: &Path) -> bool {
    files_in(snap_dir)
        .keys()
        .any(|n| n.ends_with(".restore-in-progress"))
}

/// A wiped cluster, a valid snapshot of it, and the keys of ANOTHER real
/// cluster in the key store (a Secret restored from the wrong backup): the
/// restore is refused (exit 3) before anything is written — node 0 stays
/// uninitialised, the key store and the snapshots are unchanged, no
/// restore marker — and the refusal says the keys and snapshots do not
/// belong together.
#[tokio::test]
async fn invariant_11_another_clusters_keys_are_refused_before_sys_init() {
    let mut a = Drill::single(false).await;
    let mut b = Drill::single(false).await;
    let (keys_a, snaps_a) = (a.keys_dir(), a.snap_dir());
    let policy_a = a.policy("policy", &a.opts());
    a.snapward_init(&policy_a, &keys_a).await;
    a.write_marker("before").await;
    let (_, name) = a.backup(&policy_a, &snaps_a).await;
    let policy_b = b.policy("policy", &b.opts());
    let keys_b = b.keys_dir();
    b.snapward_init(&policy_b, &keys_b).await;

    // The mix-up: A's key store now holds B's keys.
    for (file, bytes) in files_in(&keys_b) {
        fs::write(keys_a.join(&file), bytes).expect("copy a key");
        if let Ok(text) = String::from_utf8(fs::read(keys_b.join(&file)).expect("read")) {
            a.remember_secret(text.trim());
        }
    }
    a.bao.wipe(0).await;
    let (keys, snaps) = (files_in(&keys_a), snap_files(&snaps_a));

    let r = a.run(&policy_a).await;
    r.expect_exit(3).expect_branch("restore");
    r.expect_status("fetch", "succeeded")
        .expect_status("restore", "skipped");
    let why = r.reason("restore");
    assert!(
        why.contains("do not belong together") && why.contains("sealed with other keys"),
        "{}",
        r.context()
    );
    assert!(
        r.report["summary"]
            .as_str()
            .unwrap_or("")
            .starts_with("refused by a guard"),
        "{}",
        r.context()
    );
    let v = verdict_of(&r, "fetch", &name);
    assert_eq!(
        v.first().map(|(k, _)| k.as_str()),
        Some("other-keys"),
        "{v:?}"
    );
    assert!(!a.initialized(0).await, "node 0 was never initialised");
    assert!(!restore_marker_exists(&snaps_a), "nothing was started");
    assert_eq!(files_in(&keys_a), keys, "the key store is untouched");
    assert_eq!(snap_files(&snaps_a), snaps, "the snapshots are untouched");
}

/// A forged snapshot — the genuine one with its meta.json Index raised and
/// SHA256SUMS recomputed, under a later name, as someone with write access
/// to a store could plant — would win "newest" on structure alone. The
/// stored keys do not authenticate it: it is skipped with its reason and
/// the genuine newest snapshot is restored.
#[tokio::test]
async fn a_forged_newer_snapshot_is_skipped_and_the_genuine_newest_restored() {
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (_, genuine) = d.backup(&policy, &snap_dir).await;
    d.write_marker("after").await;

    let mut es = entries(&snap_dir.join(&genuine));
    let meta = entry_mut(&mut es, "meta.json");
    let mut m: Value = serde_json::from_slice(meta).expect("meta.json");
    m["Index"] = json!(m["Index"].as_u64().unwrap_or(0) + 1_000_000);
    *meta = serde_json::to_vec(&m).expect("json");
    resum(&mut es);
    let forged = format!("{SNAP_PREFIX}20991231-235959.snap");
    write_snapshot(&es, &snap_dir.join(&forged));
    snapward::snapshot::verify_file(&snap_dir.join(&forged))
        .expect("the forgery passes structural verification");

    d.bao.wipe(0).await;
    let r = d.run(&policy).await;
    r.expect_exit(0).expect_branch("restore");
    for id in RESTORE {
        r.expect_status(id, "succeeded");
    }
    assert!(
        r.reason("fetch")
            .contains(&format!("chose local/{genuine}")),
        "{}",
        r.context()
    );
    let v = verdict_of(&r, "fetch", &forged);
    assert_eq!(
        v.first().map(|(k, _)| k.as_str()),
        Some("sums-mismatch"),
        "{v:?}"
    );
    d.expect_data(&token, &["before"], &["after"]).await;
}

/// A rekey (new unseal keys) that never reached the key store: the next
/// backup reports that the stored keys do not open its snapshot (item,
/// metric 0) instead of the day of the restore; after a wipe, the restore
/// skips that snapshot ("sealed with other keys") and restores the newest
/// one the stored keys do open, which they then unseal.
#[tokio::test]
async fn after_a_rekey_the_backup_warns_and_the_restore_picks_what_the_stored_keys_open() {
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let metrics = d.path("metrics.prom");
    let policy = d.policy("policy", &d.opts());
    let text = fs::read_to_string(&policy).expect("policy");
    fs::write(
        &policy,
        format!("{text}  metrics: {{textfile: {}}}\n", metrics.display()),
    )
    .expect("policy with metrics");
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (r, old) = d.backup(&policy, &snap_dir).await;
    let v = verdict_of(&r, "verify", &old);
    assert_eq!(
        v.first().map(|(k, _)| k.as_str()),
        Some("authentic"),
        "{v:?}"
    );
    let m = fs::read_to_string(&metrics).expect("metrics");
    assert!(
        m.contains("snapward_snapshot_authentic{policy=\"drill\"} 1"),
        "{m}"
    );

    // Rekey through the API with the stored keys; the new keys go nowhere.
    let stored: Vec<String> = (0..2)
        .map(|i| {
            fs::read_to_string(keys_dir.join(format!("unseal-key-{i}")))
                .expect("a stored key")
                .trim()
                .to_string()
        })
        .collect();
    let (status, v) = d
        .bao
        .call(
            0,
            Method::PUT,
            "sys/rotate/root/init",
            Some(&token),
            Some(json!({"secret_shares": 3, "secret_threshold": 2})),
        )
        .await;
    assert!(status.is_success(), "rekey init: {status} {v}");
    let nonce = v["data"]["nonce"].as_str().expect("nonce").to_string();
    let mut last = Value::Null;
    for k in &stored {
        let (status, v) = d
            .bao
            .call(
                0,
                Method::PUT,
                "sys/rotate/root/update",
                Some(&token),
                Some(json!({"key": k, "nonce": nonce})),
            )
            .await;
        assert!(status.is_success(), "rekey update: {status} {v}");
        last = v;
    }
    assert_eq!(last["data"]["complete"], json!(true), "rekey: {last}");
    for k in last["data"]["keys_base64"].as_array().into_iter().flatten() {
        d.remember_secret(k.as_str().unwrap_or(""));
    }
    for k in last["data"]["keys"].as_array().into_iter().flatten() {
        d.remember_secret(k.as_str().unwrap_or(""));
    }

    d.write_marker("after").await;
    let (r, new) = d.backup(&policy, &snap_dir).await;
    let v = verdict_of(&r, "verify", &new);
    assert_eq!(
        v.first().map(|(k, _)| k.as_str()),
        Some("other-keys"),
        "{v:?}"
    );
    let m = fs::read_to_string(&metrics).expect("metrics");
    assert!(
        m.contains("snapward_snapshot_authentic{policy=\"drill\"} 0"),
        "{m}"
    );

    d.bao.wipe(0).await;
    let r = d.run(&policy).await;
    r.expect_exit(0).expect_branch("restore");
    for id in RESTORE {
        r.expect_status(id, "succeeded");
    }
    assert!(
        r.reason("fetch").contains(&format!("chose local/{old}")),
        "{}",
        r.context()
    );
    let v = verdict_of(&r, "fetch", &new);
    assert_eq!(
        v.first().map(|(k, _)| k.as_str()),
        Some("other-keys"),
        "{v:?}"
    );
    d.expect_data(&token, &["before"], &["after"]).await;
}
