//! Retention, mirroring and restore count only snapshots whose claims the
//! stored keys authenticate (issue 18, item 1), with real OpenBao 2.7.2,
//! a real S3 server, real snapshots and the real binary. Whoever can write
//! to the bucket or the local store — but holds no unseal keys — plants
//! objects with huge raft indices under future names; today's code ranked
//! them newest, kept them, and pruned the real off-site snapshots with
//! snapward's own delete right, or restored an old snapshot re-uploaded
//! under a newer name (a rollback). Now they are reported as foreign,
//! never counted, never deleted, never restored unless a human names them
//! — and then the download must match what its listing claimed.

use std::collections::BTreeSet;
use std::fs;

use serde_json::{Value, json};

use crate::support::drill::{BUCKET, Drill, RESTORE, S3_PREFIX, SNAP_PREFIX, snap_names};
use crate::support::surgery::{entries, entry_mut, resum, write_snapshot};

/// Copies the S3 object of `from` to `to` (body and metadata), with the
/// metadata edited by `edit` — what a bucket writer can do.
async fn plant(
    d: &Drill,
    from: &str,
    to: &str,
    edit: impl Fn(&mut std::collections::HashMap<String, String>),
) {
    let client = d.s3().client();
    let got = client
        .get_object()
        .bucket(BUCKET)
        .key(format!("{S3_PREFIX}{from}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {from}: {e:?}"));
    let mut meta = got.metadata().cloned().unwrap_or_default();
    edit(&mut meta);
    let bytes = got.body.collect().await.expect("read body").to_vec();
    client
        .put_object()
        .bucket(BUCKET)
        .key(format!("{S3_PREFIX}{to}"))
        .set_metadata(Some(meta))
        .body(bytes.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {to}: {e:?}"));
}

/// Snapshot names (without prefix) in the bucket.
async fn s3_names(d: &Drill) -> BTreeSet<String> {
    d.s3_objects()
        .await
        .keys()
        .filter_map(|k| k.strip_prefix(S3_PREFIX).map(str::to_owned))
        .collect()
}

/// `observe`'s foreign items: (store, name).
fn foreign(r: &crate::support::outcome::Outcome) -> BTreeSet<(String, String)> {
    r.items_of("observe", "foreign")
        .iter()
        .map(|i| {
            (
                i["store"].as_str().unwrap_or("").to_owned(),
                i["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// A single-node drill with the S3 target (`keepLast` `s3_keep`),
/// initialised by snapward: the drill, its policy and the root token.
async fn initialised(s3_keep: u32) -> (Drill, std::path::PathBuf, String) {
    let mut d = Drill::single(true).await;
    let keys_dir = d.keys_dir();
    let mut o = d.opts();
    o.s3 = true;
    o.s3_keep = s3_keep;
    let policy = d.policy("policy", &o);
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    (d, policy, token)
}

/// The cluster and its local snapshots are lost; the bucket remains.
async fn lose_cluster_and_local(d: &mut Drill) {
    d.bao.wipe(0).await;
    let snap_dir = d.snap_dir();
    for n in snap_names(&snap_dir) {
        fs::remove_file(snap_dir.join(n)).expect("remove local snapshot");
    }
}

fn future(n: u32) -> String {
    format!("{SNAP_PREFIX}2099{:02}01-000000.snap", n.clamp(1, 12))
}

/// Forged objects with huge indices under future names — untagged, with
/// a made-up tag, and with a genuine object's tag copied — fill no
/// retention slot: the next backup's prune keeps the two genuine newest
/// (keepLast 2) and deletes only the genuine oldest; every forgery is
/// reported foreign and left alone. Each upload records the cluster id
/// and a tag.
#[tokio::test]
async fn retention_counts_only_authenticated_snapshots_forged_objects_cannot_make_prune_delete() {
    let mut d = Drill::single(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let mut o = d.opts();
    o.s3 = true;
    o.s3_keep = 2;
    let policy = d.policy("policy", &o);
    d.snapward_init(&policy, &keys_dir).await;
    let mut genuine = Vec::new();
    for tag in ["a", "b", "c"] {
        d.write_marker(tag).await;
        genuine.push(d.backup(&policy, &snap_dir).await.1);
    }
    // keepLast 2: the first one is gone, the newest two are there.
    assert_eq!(
        s3_names(&d).await,
        genuine[1..].iter().cloned().collect::<BTreeSet<_>>()
    );
    // Every upload carries this cluster's id and a tag.
    let head = d
        .s3()
        .client()
        .head_object()
        .bucket(BUCKET)
        .key(format!("{S3_PREFIX}{}", genuine[2]))
        .send()
        .await
        .expect("head");
    let meta = head.metadata().cloned().unwrap_or_default();
    assert_eq!(
        meta.get("snapward-cluster-id").map(String::as_str),
        Some(d.cluster_id(0).await.as_str())
    );
    let tag = meta.get("snapward-tag").cloned().unwrap_or_default();
    assert!(
        tag.len() == 64 && tag.bytes().all(|b| b.is_ascii_hexdigit()),
        "{meta:?}"
    );

    // The bucket writer's forgeries, all claiming a huge raft index.
    let huge = |m: &mut std::collections::HashMap<String, String>| {
        m.insert("snapward-raft-index".into(), u64::MAX.to_string());
    };
    plant(&d, &genuine[2], &future(1), |m| {
        huge(m);
        m.remove("snapward-tag");
    })
    .await;
    plant(&d, &genuine[2], &future(2), |m| {
        huge(m);
        m.insert("snapward-tag".into(), "00".repeat(32));
    })
    .await;
    // The genuine tag, copied: it covers the name and the index.
    plant(&d, &genuine[2], &future(3), huge).await;
    let forged: BTreeSet<String> = (1..=3).map(future).collect();

    d.write_marker("d").await;
    let (r, newest) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:s3", "succeeded")
        .expect_status("prune:s3", "succeeded");
    let reported: BTreeSet<String> = foreign(&r)
        .into_iter()
        .filter(|(s, _)| s == "s3")
        .map(|(_, n)| n)
        .collect();
    assert_eq!(reported, forged, "{}", r.context());
    assert_eq!(
        r.named("prune:s3", "deleted"),
        BTreeSet::from([genuine[1].clone()]),
        "only the genuine oldest is pruned\n{}",
        r.context()
    );
    let mut want: BTreeSet<String> = forged.clone();
    want.insert(genuine[2].clone());
    want.insert(newest.clone());
    assert_eq!(s3_names(&d).await, want, "forgeries are never deleted");

    // `list` shows them as foreign, not counted.
    let l = crate::support::cmd::snapward_async()
        .args([
            "list",
            "-f",
            &policy.display().to_string(),
            "--format",
            "json",
        ])
        .output()
        .await
        .expect("list");
    let v: Value = serde_json::from_slice(&l.stdout).expect("list json");
    let s3 = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["store"] == "s3"))
        .cloned()
        .unwrap_or(Value::Null);
    for row in s3["snapshots"].as_array().into_iter().flatten() {
        let name = row["name"].as_str().unwrap_or("");
        assert_eq!(row["valid"], json!(!forged.contains(name)), "{row}");
        if forged.contains(name) {
            assert!(
                row["invalid"].as_str().unwrap_or("").starts_with("foreign"),
                "{row}"
            );
        }
    }
}

/// A rollback: the OLDEST genuine snapshot (its bytes are authentic)
/// re-uploaded under a future name with a huge index claim. Today it
/// ranks newest and, being authentic content, is restored — old data
/// comes back. Now it is foreign and the genuine newest is restored. Named
/// explicitly (`restore --snapshot`), it is fetched — and rejected because
/// the file does not match its listing.
#[tokio::test]
async fn a_rollback_under_a_newer_name_is_never_restored() {
    let (mut d, policy, token) = initialised(5).await;
    let snap_dir = d.snap_dir();
    d.write_marker("old").await;
    let (_, oldest) = d.backup(&policy, &snap_dir).await;
    d.write_marker("new").await;
    let (_, newest) = d.backup(&policy, &snap_dir).await;
    let rollback = future(6);
    plant(&d, &oldest, &rollback, |m| {
        m.insert("snapward-raft-index".into(), "999999999".into());
    })
    .await;

    lose_cluster_and_local(&mut d).await;

    // Named by a human: fetched, and refused for not being what it claims.
    let named = d
        .snapward("restore", &policy, &["--snapshot", &rollback])
        .await;
    let rejected = named.items_of("fetch", "rejected");
    assert!(
        rejected.iter().any(|i| i["name"] == rollback.as_str()
            && i["reason"]
                .as_str()
                .unwrap_or("")
                .contains("does not match its listing")),
        "{}",
        named.context()
    );
    assert!(!d.initialized(0).await, "nothing was restored");

    let r = d.run(&policy).await;
    r.expect_exit(0).expect_branch("restore");
    for id in RESTORE {
        r.expect_status(id, "succeeded");
    }
    assert!(
        foreign(&r).contains(&("s3".to_string(), rollback.clone())),
        "{}",
        r.context()
    );
    let chose = r.items_of("fetch", "chose");
    assert_eq!(
        chose.first().and_then(|c| c["name"].as_str()),
        Some(newest.as_str()),
        "{}",
        r.context()
    );
    d.expect_data(&token, &["old", "new"], &[]).await;
}

/// The local store: forged snapshots (the genuine one with its meta.json
/// Index raised and SHA256SUMS recomputed — structurally valid) under
/// future names would fill all ten local slots and make prune:local delete
/// the genuine ones. The stored keys do not open their sealed sums: they
/// are not counted, not deleted, not mirrored, and every genuine snapshot
/// stays.
#[tokio::test]
async fn forged_local_snapshots_fill_no_slot_and_are_never_mirrored() {
    let mut d = Drill::single(true).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let mut o = d.opts();
    o.s3 = true;
    o.s3_keep = 20;
    let policy = d.policy("policy", &o);
    d.snapward_init(&policy, &keys_dir).await;
    let (_, first) = d.backup(&policy, &snap_dir).await;

    let mut es = entries(&snap_dir.join(&first));
    let meta = entry_mut(&mut es, "meta.json");
    let mut m: Value = serde_json::from_slice(meta).expect("meta.json");
    m["Index"] = json!(m["Index"].as_u64().unwrap_or(0) + 1_000_000);
    *meta = serde_json::to_vec(&m).expect("json");
    resum(&mut es);
    let forged: BTreeSet<String> = (1..=10).map(future).collect();
    for n in &forged {
        write_snapshot(&es, &snap_dir.join(n));
    }

    d.write_marker("next").await;
    let (r, second) = d.backup(&policy, &snap_dir).await;
    r.expect_status("prune:local", "succeeded");
    let names = snap_names(&snap_dir);
    for g in [&first, &second] {
        assert!(
            names.contains(g),
            "genuine {g} kept: {names:?}\n{}",
            r.context()
        );
    }
    let reported: BTreeSet<String> = foreign(&r)
        .into_iter()
        .filter(|(s, _)| s == "local")
        .map(|(_, n)| n)
        .collect();
    assert_eq!(reported, forged, "{}", r.context());
    assert!(
        r.named("prune:local", "deleted").is_empty(),
        "{}",
        r.context()
    );
    let on_s3 = s3_names(&d).await;
    assert!(
        on_s3.is_disjoint(&forged),
        "a forgery was uploaded: {on_s3:?}"
    );
    assert!(on_s3.contains(&second), "{on_s3:?}");
}

/// Snapshots of two clusters under one prefix — a validly tagged object
/// (made here with the stored keys, as only a key holder can) that
/// records another cluster id: snapward cannot tell which cluster this
/// is, so the automatic restore refuses (exit 3) before anything is
/// written; named by a human, the genuine newest is restored.
#[tokio::test]
async fn candidates_of_two_clusters_are_refused_unless_a_human_names_one() {
    let (mut d, policy, token) = initialised(5).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    d.write_marker("before").await;
    let (_, genuine) = d.backup(&policy, &snap_dir).await;

    // A key holder's object, recorded from another cluster.
    let shares: Vec<snapward::secret::Secret> = (0..3)
        .filter_map(|i| fs::read_to_string(keys_dir.join(format!("unseal-key-{i}"))).ok())
        .map(|s| snapward::secret::Secret::new(s.trim()))
        .collect();
    let key = snapward::snapshot::auth::tag::ObjectKey::derive(
        &snapward::snapshot::auth::key_from_shares(&shares).expect("the stored shares combine"),
    );
    let other = format!("{SNAP_PREFIX}20000101-000000.snap");
    let id = snapward::snapshot::verify_file(&snap_dir.join(&genuine)).expect("genuine");
    let tag = key.tag(&snapward::snapshot::auth::tag::Claims {
        name: &other,
        size: id.file_size,
        sha256: &id.sha256,
        index: id.index,
        term: id.term,
        cluster_id: "another-cluster",
    });
    plant(&d, &genuine, &other, |m| {
        m.insert("snapward-cluster-id".into(), "another-cluster".into());
        m.insert("snapward-tag".into(), tag.clone());
    })
    .await;

    lose_cluster_and_local(&mut d).await;
    let r = d.run(&policy).await;
    r.expect_exit(3).expect_status("fetch", "failed");
    assert!(
        r.reason("fetch").contains("2 clusters") && r.reason("fetch").contains("another-cluster"),
        "{}",
        r.context()
    );
    assert!(
        foreign(&r).is_empty(),
        "both objects authenticate\n{}",
        r.context()
    );
    assert!(!d.initialized(0).await, "nothing was restored");

    let named = d
        .snapward("restore", &policy, &["--snapshot", &genuine])
        .await;
    named.expect_exit(0);
    for id in RESTORE {
        named.expect_status(id, "succeeded");
    }
    d.expect_data(&token, &["before"], &[]).await;
}
