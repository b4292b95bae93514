//! The backup path (`snapward run`) end to end against real components: the
//! real `snapward` binary, real OpenBao servers (`support::bao`), real S3
//! servers (moto 5.2.5 and s3s-fs 0.14.1, `support::s3`) and real
//! directories. One test per safety invariant (README "Guarantees"), named after
//! it, plus the operational promises of issue 3 (optional targets, backlog,
//! dry run, leader-only snapshots, the run lock, a clear S3 refusal).
//!
//! Each test writes its policy (JSON, which is YAML) to a temp dir, runs
//! `snapward run -f POLICY --report FILE`, and asserts on the JSON report and
//! on what the stores really hold afterwards. Snapshots with chosen names are
//! copies of a real snapshot of the cluster under test, taken by a first run
//! (the identity is inside the file, the time is in its name).
//!
//! Needs `eval "$(scripts/test-env.sh)"`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::bao::{BaoCluster, FakeHttp, FakeReply};
use crate::support::fixture_snapshot;
use crate::support::outcome::Outcome;
use crate::support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::support::work::{
    Bao, PREFIX, Work, cluster_nodes, copy_as, names, poll, sha256_file, snap, snaps,
};

/// A secret access key s3s-fs does not know.
const WRONG_SECRET: &str = "wrong-secret-7c1e9d04b6a2f3";

/// A test's temp dir; one run may take 3 minutes.
fn work() -> Work {
    Work::with("snapward-backup-", Duration::from_secs(180))
}

// ---- stores -------------------------------------------------------------------

/// Relative path → (SHA-256, mode) of every file under `dir`, recursively;
/// directories as (`dir`, mode).
fn tree(dir: &Path) -> BTreeMap<String, (String, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, u32)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&p).expect("metadata");
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.insert(rel, ("dir".into(), mode));
                walk(root, &p, out);
            } else {
                out.insert(rel, (sha256_file(&p), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every version and delete marker in `bucket` (moto).
async fn s3_versions(server: &S3Server, bucket: &str) -> BTreeSet<String> {
    let v = server
        .client()
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("list versions of {bucket}: {e:?}"));
    let mut out: BTreeSet<String> = v
        .versions()
        .iter()
        .map(|o| {
            format!(
                "{}@{}",
                o.key().unwrap_or_default(),
                o.version_id().unwrap_or_default()
            )
        })
        .collect();
    out.extend(
        v.delete_markers()
            .iter()
            .map(|m| format!("delete marker {}", m.key().unwrap_or_default())),
    );
    out
}

/// `snapward-sha256` metadata of an object.
async fn s3_sha256(server: &S3Server, bucket: &str, key: &str) -> Option<String> {
    server
        .client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"))
        .metadata()
        .and_then(|m| m.get("snapward-sha256").cloned())
}

/// A policy target on `bucket`/`prefix` of `server` with good credentials.
fn s3_target(name: &str, server: &S3Server, bucket: &str, prefix: &str, keep: Value) -> Value {
    json!({
        "name": name,
        "s3": serde_json::to_value(server.target_config(bucket, prefix)).expect("target json"),
        "retention": keep,
    })
}

fn fs_target(name: &str, dir: &Path, keep: Value) -> Value {
    json!({"name": name, "filesystem": {"path": dir.display().to_string()}, "retention": keep})
}

/// `snapward verify --format json FILE` → the identity.
async fn verify_identity(work: &Work, file: &Path) -> Value {
    let (code, stdout, stderr) = work
        .snapward(
            &[
                "verify".into(),
                "--format".into(),
                "json".into(),
                file.into(),
            ],
            None,
        )
        .await;
    assert_eq!(code, Some(0), "verify {}: {stdout}{stderr}", file.display());
    let v: Value = serde_json::from_str(&stdout).expect("verify json");
    assert_eq!(v[0]["valid"], true, "{v}");
    v[0]["identity"].clone()
}

/// A scripted node: initialised, unsealed and active; the snapshot request
/// is answered by `snapshot`.
/// How far ahead [`prefill_names`] takes every snapshot name: far more
/// than any run can take to reach its snapshot on a loaded machine.
const PREFILL_AHEAD_SECS: i64 = 30 * 60;

/// Puts (with `put`, 16 at a time) an object under every snapshot name
/// from 2 s ago to [`PREFILL_AHEAD_SECS`] ahead; returns the last instant
/// covered, for [`expect_prefilled`].
async fn prefill_names<F, T, E>(put: impl Fn(String) -> F) -> jiff::Timestamp
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    use futures::StreamExt;
    let now = jiff::Timestamp::now();
    futures::stream::iter(-2..PREFILL_AHEAD_SECS)
        .map(|s| {
            put(snapward::backends::snapshot_name(
                PREFIX,
                now + jiff::SignedDuration::from_secs(s),
            ))
        })
        .buffer_unordered(16)
        .for_each(|r| async move {
            r.expect("put a colliding snapshot");
        })
        .await;
    now + jiff::SignedDuration::from_secs(PREFILL_AHEAD_SECS)
}

/// The run's snapshot name lies inside the pre-filled range: otherwise
/// the test did not test a collision, and says so.
#[track_caller]
fn expect_prefilled(run: &Outcome, until: jiff::Timestamp) {
    let name = run.snapshot_name();
    let last = snapward::backends::snapshot_name(PREFIX, until);
    assert!(
        name <= last,
        "the run's snapshot {name} is past the pre-filled names (up to {last})\n{}",
        run.context()
    );
}

async fn fake_node(snapshot: impl Fn() -> FakeReply + Send + Sync + 'static) -> FakeHttp {
    FakeHttp::start(move |req| match req.path.split('?').next().unwrap_or("") {
        "/v1/sys/seal-status" => FakeReply::Json(
            200,
            json!({"type": "shamir", "initialized": true, "sealed": false, "t": 1, "n": 1,
                   "progress": 0, "cluster_id": "fake-cluster"}),
        ),
        "/v1/sys/init" => FakeReply::Json(200, json!({"initialized": true})),
        "/v1/sys/leader" => FakeReply::Json(
            200,
            json!({"ha_enabled": true, "is_self": true, "leader_address": "", "raft_committed_index": 36}),
        ),
        "/v1/sys/storage/raft/snapshot" => snapshot(),
        _ => FakeReply::Json(404, json!({"errors": []})),
    })
    .await
}

fn gzip_reply(body: Vec<u8>) -> FakeReply {
    FakeReply::Raw(
        200,
        vec![("Content-Type".into(), "application/gzip".into())],
        body,
    )
}

/// Asserts none of `secrets` occurs in `text` (case-insensitive), naming
/// where it was found.
#[track_caller]
fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    let lower = text.to_lowercase();
    for s in secrets {
        if let Some(at) = lower.find(&s.to_lowercase()) {
            let from = at.saturating_sub(200);
            let to = (at + s.len() + 200).min(text.len());
            panic!(
                "a secret ({}…) appears in {what}:\n…{}…",
                &s[..4.min(s.len())],
                text.get(from..to).unwrap_or(text)
            );
        }
    }
}

// ---- invariant 1 ---------------------------------------------------------------

/// Two targets hold the same old history that their retention (keepLast 1)
/// would delete. The upload to `unconfirmed` cannot succeed (its policy asks
/// for Object Lock on a bucket without an Object Lock configuration, which S3
/// refuses with 400), so its prune must not run: every old object there stays,
/// byte for byte. `confirmed` is the control in the same run: its upload is
/// confirmed and its retention does prune.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_1_nothing_pruned_when_the_upload_is_not_confirmed() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::moto() });
    let work = work();
    let seed = work.real_snapshot(&bao).await;
    s3.create_bucket("confirmed", false).await;
    s3.create_bucket("unconfirmed", false).await;
    let old = [
        snap("20210101-020000"),
        snap("20210102-020000"),
        snap("20210103-020000"),
    ];
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    s3.seed("confirmed", "c/", &seed, &old).await;
    s3.seed("unconfirmed", "u/", &seed, &old).await;
    let before = s3.objects("unconfirmed").await;
    let versions_before = s3_versions(&s3, "unconfirmed").await;
    assert_eq!(before.len(), 3);
    // `collided` already holds, under every name this run's snapshot can get
    // in the next 30 minutes, another snapshot (other content, valid metadata):
    // snapward never overwrites, so this run's snapshot is not confirmed
    // there although the upload action itself does not fail.
    s3.create_bucket("collided", false).await;
    let other = std::fs::read(fixture_snapshot()).expect("fixture");
    let other_id = snapward::snapshot::verify_file(&fixture_snapshot()).expect("fixture identity");
    let client = s3.client();
    let until = prefill_names(|name| {
        client
            .put_object()
            .bucket("collided")
            .key(format!("x/{name}"))
            .body(other.clone().into())
            .metadata("snapward-sha256", &other_id.sha256)
            .metadata("snapward-raft-index", other_id.index.to_string())
            .metadata("snapward-raft-term", other_id.term.to_string())
            .send()
    })
    .await;
    let collided_before = s3.objects("collided").await;

    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    let mut p = work.policy(
        "inv1",
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 5}),
        "20s",
    );
    let mut unconfirmed = s3_target(
        "unconfirmed",
        &s3,
        "unconfirmed",
        "u/",
        json!({"keepLast": 1}),
    );
    unconfirmed["s3"]["objectLock"] = json!({"mode": "GOVERNANCE", "days": 1});
    p["spec"]["targets"] = json!([
        s3_target("confirmed", &s3, "confirmed", "c/", json!({"keepLast": 1})),
        unconfirmed,
        s3_target("collided", &s3, "collided", "x/", json!({"keepLast": 1})),
    ]);
    let policy = work.write_policy("policy.yaml", &p);

    let run = work.run(&policy, &[]).await;
    expect_prefilled(&run, until);
    run.expect_exit(4)
        .expect_status("verify", "succeeded")
        .expect_status("upload:confirmed", "succeeded")
        .expect_status("prune:confirmed", "succeeded")
        .expect_status("upload:unconfirmed", "failed")
        .expect_status("prune:unconfirmed", "skipped");
    let name = run.snapshot_name();
    assert!(
        run.reason("prune:unconfirmed")
            .contains("upload:unconfirmed"),
        "the skip names the unconfirmed upload: {}",
        run.context()
    );

    // Not confirmed: nothing deleted, nothing replaced, no delete marker,
    // no half upload.
    assert_eq!(s3.objects("unconfirmed").await, before);
    assert_eq!(s3_versions(&s3, "unconfirmed").await, versions_before);
    assert!(s3.uploads("unconfirmed").await.is_empty());

    // Not confirmed without a failure: the precondition stops the prune.
    assert!(
        run.named("upload:collided", "conflict").contains(&name),
        "{}",
        run.context()
    );
    // The upload itself fails (this run's snapshot reached the target under
    // no name), so the prune is skipped because its upload failed.
    run.expect_status("upload:collided", "failed");
    assert!(
        run.reason("upload:collided").contains("not confirmed"),
        "{}",
        run.context()
    );
    run.expect_status("prune:collided", "skipped");
    assert!(
        run.reason("prune:collided").contains("upload:collided"),
        "{}",
        run.context()
    );
    assert_eq!(s3.objects("collided").await, collided_before);

    // The control: confirmed, so retention pruned the old history there.
    let confirmed: BTreeSet<String> = s3.objects("confirmed").await.into_keys().collect();
    assert_eq!(
        confirmed,
        BTreeSet::from([format!("c/{name}")]),
        "{}",
        run.context()
    );
    assert_eq!(
        run.named("prune:confirmed", "deleted"),
        old.iter().map(|s| s.to_string()).collect(),
        "{}",
        run.context()
    );
    assert!(snaps(&local).contains(&name));
}

// ---- invariant 2 ---------------------------------------------------------------

/// The remote history survives an empty local directory and a missing one:
/// copy-only mirroring deletes nothing; deletions come only from the
/// target's retention (shown last, when the policy asks for them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_2_empty_local_dir_deletes_nothing_remotely() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::moto() });
    let work = work();
    let seed = work.real_snapshot(&bao).await;
    s3.create_bucket("history", false).await;
    let old = [
        snap("20220301-020000"),
        snap("20220302-020000"),
        snap("20220303-020000"),
    ];
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    s3.seed("history", "prod/", &seed, &old).await;
    let history = s3.objects("history").await;

    let token = work.file("token", &bao.token);
    let local = work.mkdir("snapshots");
    let write = |keep: Value| {
        let mut p = work.policy(
            "inv2",
            bao.nodes(),
            &token,
            &local,
            json!({"keepLast": 2}),
            "20s",
        );
        p["spec"]["targets"] = json!([s3_target("offsite", &s3, "history", "prod/", keep)]);
        work.write_policy("policy.yaml", &p)
    };
    // Retention that keeps everything: any deletion would be the mirror's.
    let policy = write(json!({"keepLast": 10}));

    // 1. The local directory exists and is empty (a new PVC).
    assert!(snaps(&local).is_empty());
    let run1 = work.run(&policy, &[]).await;
    run1.expect_exit(0)
        .expect_status("upload:offsite", "succeeded");
    let n1 = run1.snapshot_name();
    let mut expected = history.clone();
    let after1 = s3.objects("history").await;
    expected.insert(format!("prod/{n1}"), after1[&format!("prod/{n1}")].clone());
    assert_eq!(after1, expected, "only this run's snapshot was added");
    assert!(
        run1.named("prune:offsite", "deleted").is_empty(),
        "{}",
        run1.context()
    );

    // 2. The local directory is gone altogether.
    std::fs::remove_dir_all(&local).expect("wipe local");
    let run2 = work.run(&policy, &[]).await;
    run2.expect_exit(0)
        .expect_status("upload:offsite", "succeeded");
    let n2 = run2.snapshot_name();
    let after2 = s3.objects("history").await;
    expected.insert(format!("prod/{n2}"), after2[&format!("prod/{n2}")].clone());
    assert_eq!(after2, expected, "only this run's snapshot was added");
    assert!(
        run2.named("prune:offsite", "deleted").is_empty(),
        "{}",
        run2.context()
    );
    assert_eq!(snaps(&local), BTreeSet::from([n2.clone()]));

    // 3. Wiped again, and now retention (keepLast 2) asks for deletions:
    //    exactly what it does not keep goes, whatever the local dir holds.
    std::fs::remove_dir_all(&local).expect("wipe local");
    let policy = write(json!({"keepLast": 2}));
    let run3 = work.run(&policy, &[]).await;
    run3.expect_exit(0)
        .expect_status("prune:offsite", "succeeded");
    let n3 = run3.snapshot_name();
    let remaining: BTreeSet<String> = s3.objects("history").await.into_keys().collect();
    assert_eq!(
        remaining,
        BTreeSet::from([format!("prod/{n2}"), format!("prod/{n3}")])
    );
    let mut by_retention: BTreeSet<String> = old.iter().map(|s| s.to_string()).collect();
    by_retention.insert(n1);
    assert_eq!(run3.named("prune:offsite", "deleted"), by_retention);
    assert!(
        run3.items_of("prune:offsite", "deleted")
            .iter()
            .all(
                |i| i["reasons"].as_array().is_some_and(|r| r.iter().any(|x| x
                    .as_str()
                    .is_some_and(|x| x.contains("not kept by any rule"))))
            ),
        "every deletion carries retention's reason: {}",
        run3.context()
    );
}

// ---- invariant 3 ---------------------------------------------------------------

/// Retention counts from the newest valid snapshot (never from "now"), never
/// deletes the newest valid one ("newest" = highest raft index, then time —
/// not the latest name), and keeps a local snapshot that exists on no target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_3_retention_never_deletes_the_newest_and_counts_from_the_newest_not_now() {
    let bao = Bao::single().await;
    let work = work();
    let seed = work.real_snapshot(&bao).await;
    let token = work.file("token", &bao.token);
    let stalled = [
        snap("20200101-020000"),
        snap("20200102-020000"),
        snap("20200103-020000"),
        snap("20200104-020000"),
        snap("20200105-020000"),
    ];
    let stalled: Vec<&str> = stalled.iter().map(String::as_str).collect();

    // A. Backups stalled years ago (keepWithin 7d; "now" is years later) and
    //    the cluster is still unreachable: nothing is aged away.
    let local_a = work.path("a/snapshots");
    copy_as(&seed, &local_a, &stalled);
    let before_a = tree(&local_a);
    let unreachable = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        format!("http://127.0.0.1:{port}")
    };
    let p = work.policy(
        "inv3a",
        json!([{"name": "gone", "address": unreachable}]),
        &token,
        &local_a,
        json!({"keepWithin": "7d"}),
        "20s",
    );
    let policy_a = work.write_policy("a/policy.yaml", &p);
    let run = work.run(&policy_a, &[]).await;
    run.expect_exit(4).expect_status("prune:local", "skipped");
    // The run lock is the only file a run may add.
    let mut after_a = tree(&local_a);
    after_a.retain(|k, _| !k.starts_with(".snapward-"));
    assert_eq!(after_a, before_a, "{}", run.context());
    // What retention decides about that history: all kept, counting back
    // from the newest (2020-01-05), not from now.
    let (code, stdout, stderr) = work
        .snapward(
            &[
                "list".into(),
                "--format".into(),
                "json".into(),
                "-f".into(),
                policy_a.into(),
            ],
            None,
        )
        .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("list json");
    let local_list = list
        .as_array()
        .and_then(|a| a.iter().find(|s| s["store"] == "local"))
        .unwrap_or_else(|| panic!("no local store in {list}"));
    let verdicts: BTreeMap<String, String> = local_list["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["verdict"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        stalled
            .iter()
            .map(|n| (n.to_string(), "keep".to_string()))
            .collect(),
        "{list}"
    );
    assert!(
        local_list.to_string().contains("2020-01-05"),
        "the window is anchored at the newest snapshot: {list}"
    );

    // B. The newest valid snapshot is this run's (highest raft index), not
    //    the copy with the latest name, nor a broken file with a later name.
    //    keepLast 1 keeps exactly it; the broken file is not counted (and not
    //    deleted by retention).
    let local_b = work.path("b/snapshots");
    copy_as(&seed, &local_b, &stalled);
    copy_as(&seed, &local_b, &[&snap("20991231-000000")]);
    let bytes = std::fs::read(&seed).expect("read seed");
    std::fs::write(
        local_b.join(snap("20991231-120000")),
        &bytes[..bytes.len() / 2],
    )
    .expect("write a truncated snapshot");
    let p = work.policy(
        "inv3b",
        bao.nodes(),
        &token,
        &local_b,
        json!({"keepLast": 1}),
        "20s",
    );
    let policy_b = work.write_policy("b/policy.yaml", &p);
    let run = work.run(&policy_b, &[]).await;
    run.expect_exit(0).expect_status("prune:local", "succeeded");
    let newest = run.snapshot_name();
    assert_eq!(
        snaps(&local_b),
        BTreeSet::from([newest.clone(), snap("20991231-120000")]),
        "{}",
        run.context()
    );
    let mut deleted: BTreeSet<String> = stalled.iter().map(|s| s.to_string()).collect();
    deleted.insert(snap("20991231-000000"));
    assert_eq!(run.named("prune:local", "deleted"), deleted);
    assert!(
        run.named("prune:local", "not-counted")
            .iter()
            .any(|n| n.contains("20991231-120000")),
        "{}",
        run.context()
    );
    let seed_index = verify_identity(&work, &seed).await["index"]
        .as_u64()
        .unwrap();
    let new_index = verify_identity(&work, &local_b.join(&newest)).await["index"]
        .as_u64()
        .unwrap();
    assert!(new_index > seed_index, "{new_index} > {seed_index}");

    // C. keepUnmirroredLocal (default on): with a target enabled, a local
    //    snapshot that exists on no target is kept whatever local retention
    //    says; one the target holds (same name and content) may go.
    let local_c = work.path("c/snapshots");
    let nfs = work.path("c/nfs");
    let three = &stalled[..3];
    copy_as(&seed, &local_c, three);
    copy_as(&seed, &nfs, &[three[2]]);
    let write_c = |guard: bool| {
        let mut p = work.policy(
            "inv3c",
            bao.nodes(),
            &token,
            &local_c,
            json!({"keepLast": 1}),
            "20s",
        );
        // keepLast 2: the target takes this run's snapshot and keeps its
        // newest old one; it would drop the two older ones at once, so they
        // are never uploaded: they exist only locally.
        p["spec"]["targets"] = json!([fs_target("nfs", &nfs, json!({"keepLast": 2}))]);
        if !guard {
            p["spec"]["guards"] = json!({"keepUnmirroredLocal": false});
        }
        work.write_policy("c/policy.yaml", &p)
    };
    let run = work.run(&write_c(true), &[]).await;
    run.expect_exit(0);
    let n1 = run.snapshot_name();
    assert_eq!(
        run.named("upload:nfs", "not-uploaded"),
        BTreeSet::from([three[0].to_string(), three[1].to_string()]),
        "{}",
        run.context()
    );
    assert_eq!(
        snaps(&local_c),
        BTreeSet::from([three[0].to_string(), three[1].to_string(), n1.clone()]),
        "{}",
        run.context()
    );
    assert_eq!(
        run.named("prune:local", "deleted"),
        BTreeSet::from([three[2].to_string()])
    );
    assert_eq!(
        run.named("prune:local", "kept-unmirrored"),
        BTreeSet::from([three[0].to_string(), three[1].to_string()]),
        "{}",
        run.context()
    );
    assert_eq!(
        snaps(&nfs),
        BTreeSet::from([three[2].to_string(), n1.clone()])
    );

    // The guard is configurable: off, local retention alone decides.
    let run = work.run(&write_c(false), &[]).await;
    run.expect_exit(0);
    let n2 = run.snapshot_name();
    assert_eq!(snaps(&local_c), BTreeSet::from([n2]), "{}", run.context());
}

// ---- invariant 4 ---------------------------------------------------------------

/// A node that cuts the stream, sends a truncated, a corrupt or a non-gzip
/// body: no `.snap` appears, no `.partial` stays, the older snapshot stays
/// the newest (byte for byte, not pruned), exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_4_a_cut_stream_never_becomes_a_snapshot() {
    let good = std::fs::read(fixture_snapshot()).expect("fixture");
    let half = good[..good.len() / 2].to_vec();
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    // (what, reply, the action that must fail)
    type Reply = Box<dyn Fn() -> FakeReply + Send + Sync>;
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "cut mid-stream",
            Box::new(move || FakeReply::Cut(half.clone())),
            "snapshot",
        ),
        (
            "complete response, truncated gzip",
            Box::new({
                let half = good[..good.len() / 2].to_vec();
                move || gzip_reply(half.clone())
            }),
            "verify",
        ),
        (
            "one byte flipped",
            Box::new(move || gzip_reply(flipped.clone())),
            "verify",
        ),
        (
            "not gzip",
            Box::new(move || gzip_reply(garbage.clone())),
            "verify",
        ),
    ];
    let work = work();
    let token = work.file("token", "s.not-used-by-the-fake-node-0000");
    for (i, (what, reply, failing)) in cases.into_iter().enumerate() {
        let node = fake_node(reply).await;
        let local = work.path(&format!("{i}/snapshots"));
        copy_as(&fixture_snapshot(), &local, &[&snap("20240101-020000")]);
        let before = tree(&local);
        let p = work.policy(
            "inv4",
            json!([{"name": "fake-0", "address": node.url.as_str()}]),
            &token,
            &local,
            json!({"keepLast": 1}),
            "20s",
        );
        let policy = work.write_policy(&format!("{i}/policy.yaml"), &p);
        let run = work.run(&policy, &[]).await;
        assert_eq!(run.code, Some(4), "{what}: {}", run.context());
        assert_eq!(run.status(failing), "failed", "{what}: {}", run.context());
        assert_eq!(
            run.status("prune:local"),
            "skipped",
            "{what}: {}",
            run.context()
        );
        assert_eq!(
            node.count("/v1/sys/storage/raft/snapshot"),
            1,
            "{what}: no retry"
        );
        let leftovers: Vec<String> = names(&local)
            .into_iter()
            .filter(|n| n.ends_with(".partial") || n.starts_with(&format!(".{PREFIX}")))
            .collect();
        assert!(leftovers.is_empty(), "{what}: left {leftovers:?}");
        let mut after = tree(&local);
        after.retain(|k, _| !k.starts_with(".snapward-"));
        assert_eq!(
            after,
            before,
            "{what}: the store changed: {}",
            run.context()
        );
    }
}

// ---- invariant 9 ---------------------------------------------------------------

/// The token and the S3 secrets never reach stdout, stderr (JSON and human
/// logs, at trace level), reports, plans, listings, the metrics textfile or
/// the output of any other command (lint, verify, restore, schema) — in
/// successful runs,
/// dry runs, and failing runs whose errors come from the S3 server (a wrong
/// secret on s3s-fs, which checks signatures) or from OpenBao (a rejected
/// token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_9_secrets_never_reach_logs_reports_or_errors() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::s3s_fs() });
    s3.create_bucket("secrets", false).await;
    let work = work();
    let token = work.file("token", &bao.token);
    let bad_token_value = "s.Zq8mN3vR6tY1wX4cB7eH0jK2";
    let bad_token = work.file("bad-token", bad_token_value);
    let mut secrets = vec![
        bao.token.as_str(),
        SECRET_KEY,
        WRONG_SECRET,
        bad_token_value,
    ];
    // The token without its `s.` prefix, too.
    let token_body = bao.token.trim_start_matches("s.").to_string();
    secrets.push(&token_body);
    for k in &bao.keys {
        secrets.push(k);
    }
    assert!(bao.token.len() > 20, "a real token");

    let local = work.path("snapshots");
    let good_target = s3_target("offsite", &s3, "secrets", "p/", json!({"keepLast": 3}));
    let mut wrong_target = good_target.clone();
    wrong_target["s3"]["credentials"] =
        serde_json::to_value(s3.credential_files("wrong", ACCESS_KEY, WRONG_SECRET)).expect("json");
    let with = |tok: &Path, target: &Value, file: &str| {
        let mut p = work.policy(
            "inv9",
            bao.nodes(),
            tok,
            &local,
            json!({"keepLast": 3}),
            "20s",
        );
        p["spec"]["targets"] = json!([target]);
        work.write_policy(file, &p)
    };
    let metrics = work.path("metrics.prom");
    let good = {
        let mut p = work.policy(
            "inv9",
            bao.nodes(),
            &token,
            &local,
            json!({"keepLast": 3}),
            "20s",
        );
        p["spec"]["targets"] = json!([good_target.clone()]);
        p["spec"]["metrics"] = json!({"textfile": metrics.display().to_string()});
        work.write_policy("good.yaml", &p)
    };
    let wrong_s3 = with(&token, &wrong_target, "wrong-s3.yaml");
    let wrong_bao = with(&bad_token, &good_target, "wrong-token.yaml");

    let mut texts: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, r: &Outcome| texts.push((what.to_string(), r.everything()));

    let r = work.run_logged(&good, &[], "json", Some("trace")).await;
    r.expect_exit(0)
        .expect_status("upload:offsite", "succeeded");
    record("a successful run (json logs)", &r);
    let r = work
        .run_logged(&good, &["--format", "json"], "human", Some("trace"))
        .await;
    r.expect_exit(0);
    record("a successful run (human logs, json stdout)", &r);
    let r = work
        .run_logged(
            &good,
            &["--dry-run", "--format", "json"],
            "json",
            Some("trace"),
        )
        .await;
    r.expect_exit(0);
    record("a dry run", &r);
    let r = work.run_logged(&wrong_s3, &[], "json", Some("trace")).await;
    r.expect_exit(4).expect_status("upload:offsite", "failed");
    record("a run with a wrong S3 secret", &r);
    let r = work
        .run_logged(&wrong_s3, &[], "human", Some("trace"))
        .await;
    r.expect_exit(4);
    record("a run with a wrong S3 secret (human logs)", &r);
    let r = work
        .run_logged(&wrong_bao, &[], "json", Some("trace"))
        .await;
    r.expect_exit(4).expect_status("snapshot", "failed");
    record("a run with a rejected token", &r);
    for (what, policy) in [("list", &good), ("list with a wrong secret", &wrong_s3)] {
        let (_, out, err) = work
            .snapward(
                &[
                    "--log-format".into(),
                    "json".into(),
                    "list".into(),
                    "--format".into(),
                    "json".into(),
                    "-f".into(),
                    policy.into(),
                ],
                Some("trace"),
            )
            .await;
        texts.push((what.to_string(), format!("{out}\n{err}")));
    }
    for (what, policy) in [("plan", &good), ("plan (markdown)", &wrong_s3)] {
        let (_, out, err) = work
            .snapward(
                &[
                    "plan".into(),
                    "--format".into(),
                    "markdown".into(),
                    "-f".into(),
                    policy.into(),
                ],
                Some("trace"),
            )
            .await;
        texts.push((what.to_string(), format!("{out}\n{err}")));
    }
    // Every other command, with the same secrets in reach.
    let a_snapshot = local
        .join(snaps(&local).into_iter().next().expect("a snapshot"))
        .display()
        .to_string();
    let commands: Vec<(&str, Vec<OsString>)> = vec![
        (
            "lint",
            vec![
                "lint".into(),
                good.clone().into(),
                wrong_s3.clone().into(),
                wrong_bao.clone().into(),
            ],
        ),
        (
            "verify",
            vec![
                "verify".into(),
                "--format".into(),
                "json".into(),
                a_snapshot.into(),
            ],
        ),
        (
            "restore on a healthy cluster (refused)",
            vec!["restore".into(), "-f".into(), good.clone().into()],
        ),
        (
            "restore --dry-run",
            vec![
                "restore".into(),
                "--dry-run".into(),
                "-f".into(),
                good.clone().into(),
            ],
        ),
        ("schema", vec!["schema".into()]),
    ];
    for (what, args) in commands {
        let mut all: Vec<OsString> = vec!["--log-format".into(), "json".into()];
        all.extend(args);
        let (_, out, err) = work.snapward(&all, Some("trace")).await;
        texts.push((what.to_string(), format!("{out}\n{err}")));
    }
    texts.push((
        "the metrics textfile".into(),
        std::fs::read_to_string(&metrics).expect("metrics textfile written"),
    ));
    for (what, text) in &texts {
        assert!(!text.trim().is_empty(), "{what}: no output at all");
        assert_no_secret(what, text, &secrets);
    }
    // The snapshot files hold no token either (they are OpenBao's bytes).
    for n in snaps(&local) {
        let bytes = std::fs::read(local.join(&n)).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert_no_secret(&n, &text, &[bao.token.as_str()]);
    }
}

// ---- operational promises ---------------------------------------------------------

/// An optional target whose credential files are absent is skipped with a
/// clear status and log line; the run succeeds and the other target is
/// served. The same target made required is a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_target_without_credentials_is_skipped_not_failed() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::moto() });
    s3.create_bucket("offsite", false).await;
    let work = work();
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    let nfs = work.path("nfs");
    let write = |optional: bool| {
        let mut offsite = s3_target("r2", &s3, "offsite", "p/", json!({"keepLast": 3}));
        offsite["optional"] = json!(optional);
        offsite["s3"]["credentials"] = json!({
            "accessKeyIdFile": work.path("absent/access-key-id").display().to_string(),
            "secretAccessKeyFile": work.path("absent/secret-access-key").display().to_string(),
        });
        let mut p = work.policy(
            "opt",
            bao.nodes(),
            &token,
            &local,
            json!({"keepLast": 3}),
            "20s",
        );
        p["spec"]["targets"] = json!([offsite, fs_target("nfs", &nfs, json!({"keepLast": 3}))]);
        work.write_policy("policy.yaml", &p)
    };

    let run = work.run(&write(true), &[]).await;
    run.expect_exit(0)
        .expect_status("upload:r2", "skipped")
        .expect_status("prune:r2", "skipped")
        .expect_status("upload:nfs", "succeeded")
        .expect_status("prune:local", "nothing-to-do");
    let name = run.snapshot_name();
    assert!(
        run.reason("upload:r2")
            .starts_with("skipped: credentials absent"),
        "{}",
        run.context()
    );
    assert_eq!(run.report["summary"], "done");
    // A clear log line (JSON) names the target and says why.
    assert!(
        run.stderr.lines().any(|l| {
            l.contains("optional target skipped") && l.contains("r2") && l.contains("WARN")
        }),
        "{}",
        run.stderr
    );
    assert!(s3.objects("offsite").await.is_empty());
    assert_eq!(snaps(&nfs), BTreeSet::from([name.clone()]));
    assert!(snaps(&local).contains(&name));

    // Required, the same absence is a failure to retry.
    let run = work.run(&write(false), &[]).await;
    run.expect_exit(4)
        .expect_status("upload:r2", "failed")
        .expect_status("upload:nfs", "succeeded");
    assert!(
        run.reason("upload:r2").contains("credentials"),
        "{}",
        run.context()
    );
}

/// After an outage of the target, every local snapshot the target's
/// retention keeps is uploaded (the backlog); the ones it would delete at
/// once are not — and are not re-uploaded by the next run either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_is_uploaded_after_an_outage() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::moto() });
    s3.create_bucket("backlog", false).await;
    let work = work();
    let seed = work.real_snapshot(&bao).await;
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    // One snapshot a day while the target was down.
    let days = [
        snap("20250301-020000"),
        snap("20250302-020000"),
        snap("20250303-020000"),
        snap("20250304-020000"),
        snap("20250305-020000"),
    ];
    let days: Vec<&str> = days.iter().map(String::as_str).collect();
    copy_as(&seed, &local, &days);
    let mut p = work.policy(
        "backlog",
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 10}),
        "20s",
    );
    p["spec"]["targets"] = json!([s3_target(
        "offsite",
        &s3,
        "backlog",
        "",
        json!({"keepDaily": 3})
    )]);
    let policy = work.write_policy("policy.yaml", &p);

    let run = work.run(&policy, &[]).await;
    run.expect_exit(0)
        .expect_status("upload:offsite", "succeeded");
    let n1 = run.snapshot_name();
    // keepDaily 3: today's (this run's), 03-05 and 03-04.
    let kept = BTreeSet::from([n1.clone(), days[4].to_string(), days[3].to_string()]);
    assert_eq!(
        run.named("upload:offsite", "uploaded"),
        kept,
        "{}",
        run.context()
    );
    assert_eq!(
        run.named("upload:offsite", "not-uploaded"),
        days[..3].iter().map(|s| s.to_string()).collect(),
        "{}",
        run.context()
    );
    let remote: BTreeSet<String> = s3.objects("backlog").await.into_keys().collect();
    assert_eq!(remote, kept);
    for k in &kept {
        assert_eq!(
            s3_sha256(&s3, "backlog", k).await,
            Some(sha256_file(&local.join(k))),
            "{k}: identity metadata"
        );
    }
    assert!(run.named("prune:offsite", "deleted").is_empty());

    // The next night: only the new snapshot goes up; nothing the target's
    // retention dropped comes back.
    let run = work.run(&policy, &[]).await;
    run.expect_exit(0);
    let n2 = run.snapshot_name();
    assert_eq!(
        run.named("upload:offsite", "uploaded"),
        BTreeSet::from([n2.clone()]),
        "{}",
        run.context()
    );
    let remote: BTreeSet<String> = s3.objects("backlog").await.into_keys().collect();
    for d in &days[..3] {
        assert!(!remote.contains(*d), "{d} was re-uploaded");
    }
    assert!(remote.contains(&n2));
}

/// `run --dry-run` reads everything and writes nothing: the local store, the
/// key store, the filesystem target and the S3 bucket (objects, ETags,
/// versions, multipart uploads) are byte-identical afterwards, and the report
/// says what a run would upload and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_leaves_every_store_byte_identical() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::moto() });
    s3.create_bucket("dry", true).await; // versioned (Object Lock bucket)
    let work = work();
    let seed = work.real_snapshot(&bao).await;
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    let nfs = work.path("nfs");
    let keys = work.mkdir("keys");
    for (i, k) in bao.keys.iter().enumerate() {
        std::fs::write(keys.join(format!("unseal-key-{i}")), k).expect("key file");
        std::fs::set_permissions(
            keys.join(format!("unseal-key-{i}")),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
    }
    let old = [
        snap("20240601-020000"),
        snap("20240602-020000"),
        snap("20240603-020000"),
    ];
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    copy_as(&seed, &local, &old);
    copy_as(&seed, &nfs, &old[..2]);
    // Tagged under the cluster's keys, as snapward's own uploads are.
    s3.seed_tagged("dry", "d/", &seed, &old[..2], &bao.keys)
        .await;
    // A stale temp file of a crashed run: a real run would remove it.
    std::fs::write(
        local.join(format!(".{}.partial", snap("20240604-020000"))),
        b"partial",
    )
    .expect("partial");

    let mut p = work.policy(
        "dry",
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 1}),
        "20s",
    );
    p["spec"]["targets"] = json!([
        s3_target("s3", &s3, "dry", "d/", json!({"keepLast": 1})),
        fs_target("nfs", &nfs, json!({"keepLast": 1})),
    ]);
    p["spec"]["unsealKeys"] = json!({"files": {"directory": keys.display().to_string()}});
    let policy = work.write_policy("policy.yaml", &p);

    let stores = || async {
        (
            tree(&local),
            tree(&keys),
            tree(&nfs),
            s3.objects("dry").await,
            s3_versions(&s3, "dry").await,
            s3.uploads("dry").await,
        )
    };
    let before = stores().await;
    let run = work.run(&policy, &["--dry-run"]).await;
    run.expect_exit(0);
    assert_eq!(
        stores().await,
        before,
        "a dry run changed a store: {}",
        run.context()
    );
    assert_eq!(run.report["dryRun"], true);

    // It still shows what a run would do.
    let name = run.snapshot_name();
    for t in ["s3", "nfs"] {
        assert_eq!(
            run.named(&format!("upload:{t}"), "would-upload"),
            BTreeSet::from([name.clone()]),
            "{}",
            run.context()
        );
        assert_eq!(
            run.named(&format!("prune:{t}"), "would-delete"),
            old[..2].iter().map(|s| s.to_string()).collect(),
            "{}",
            run.context()
        );
    }
    assert!(
        !run.named("prune:local", "would-delete").is_empty(),
        "{}",
        run.context()
    );
    assert!(!snaps(&local).contains(&name));
}

/// What `run --dry-run` says it would upload and delete is what the real run
/// right after it does (this run's snapshot aside, which has a new name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shows_exactly_what_the_run_then_uploads_and_deletes() {
    let bao = Bao::single().await;
    let work = work();
    let seed = work.real_snapshot(&bao).await;
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    let nfs = work.path("nfs");
    let old = [
        snap("20240601-020000"),
        snap("20240602-020000"),
        snap("20240603-020000"),
    ];
    let old: Vec<&str> = old.iter().map(String::as_str).collect();
    copy_as(&seed, &local, &old);
    copy_as(&seed, &nfs, &old);
    let mut p = work.policy(
        "fidelity",
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 1}),
        "20s",
    );
    p["spec"]["targets"] = json!([fs_target("nfs", &nfs, json!({"keepLast": 2}))]);
    let policy = work.write_policy("policy.yaml", &p);

    let dry = work.run(&policy, &["--dry-run"]).await;
    dry.expect_exit(0);
    let real = work.run(&policy, &[]).await;
    real.expect_exit(0);
    let this = |r: &Outcome, set: BTreeSet<String>| -> BTreeSet<String> {
        let own = r.snapshot_name();
        set.into_iter()
            .map(|n| {
                if n == own {
                    "<this run's>".to_string()
                } else {
                    n
                }
            })
            .collect()
    };
    for id in ["upload:nfs", "prune:nfs", "prune:local"] {
        let (would, did) = if id.starts_with("upload") {
            (dry.named(id, "would-upload"), real.named(id, "uploaded"))
        } else {
            (dry.named(id, "would-delete"), real.named(id, "deleted"))
        };
        assert_eq!(
            this(&dry, would),
            this(&real, did),
            "`{id}`: the dry run promised something else than the run did\n--- dry run ---\n{}\n--- run ---\n{}",
            dry.context(),
            real.context()
        );
    }
}

/// In a 3-node raft whose first listed node is a standby (an OpenBao 2.7.2
/// standby answers the snapshot request with 200 and its own, possibly
/// stale, snapshot), the snapshot comes from the active node and holds the
/// leader's latest writes. When the leader dies, the next run takes it from
/// the new leader (exit 4: a node is unknown, so the run says "retry", but
/// the backup still happens — the guard decision table, first row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_comes_from_the_leader_in_a_3_node_cluster() {
    let mut bao = Bao::setup(BaoCluster::three().await).await;
    let work = work();
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");

    /// Runs with every node listed, `first` first and the leader last;
    /// asserts the snapshot came from `leader` and is at least as new as
    /// the leader's committed index before the run.
    async fn round(
        work: &Work,
        bao: &Bao,
        token: &Path,
        local: &Path,
        first: usize,
        leader: usize,
        tag: &str,
    ) -> Outcome {
        let c = &bao.cluster;
        let mut order = vec![first];
        order.extend((0..c.len()).filter(|&i| i != first && i != leader));
        order.push(leader);
        let p = work.policy(
            "ha",
            cluster_nodes(c, &order),
            token,
            local,
            json!({"keepLast": 5}),
            "20s",
        );
        let policy = work.write_policy(&format!("policy-{tag}.yaml"), &p);
        bao.advance(tag).await;
        let committed = c.leader(leader).await.expect("the leader answers")["raft_committed_index"]
            .as_u64()
            .expect("raft_committed_index");

        let run = work.run(&policy, &[]).await;
        assert_eq!(
            c.active_node().await,
            leader,
            "leadership changed during the run"
        );
        run.expect_status("snapshot", "succeeded")
            .expect_status("verify", "succeeded");
        assert!(
            run.reason("snapshot")
                .ends_with(&format!("from active node {}", c.name(leader))),
            "{tag}: {}",
            run.context()
        );
        let observed = run.items_of("observe", "node");
        for i in 0..c.len() {
            let node = observed
                .iter()
                .find(|n| n["name"] == c.name(i))
                .unwrap_or_else(|| panic!("no observe item for {}: {observed:?}", c.name(i)));
            assert_eq!(node["active"] == true, i == leader, "{tag}: {node}");
        }
        let identity = verify_identity(work, &local.join(run.snapshot_name())).await;
        let index = identity["index"].as_u64().expect("index");
        assert!(
            index >= committed,
            "{tag}: snapshot index {index} < the leader's committed index {committed} before the run"
        );
        run
    }

    let leader = bao.cluster.active_node().await;
    let standby = (0..3).find(|&i| i != leader).expect("a standby");
    let run = round(&work, &bao, &token, &local, standby, leader, "healthy").await;
    run.expect_exit(0);

    // The leader dies; another node takes over. Followers join as
    // non-voters and autopilot promotes them after ~10 s: wait for that,
    // or no one could win the election.
    {
        let c = &bao.cluster;
        poll("every follower to be a raft voter", || async {
            let (status, v) = c
                .call(
                    leader,
                    reqwest::Method::GET,
                    "sys/storage/raft/configuration",
                    Some(c.root_token()),
                    None,
                )
                .await;
            let servers = v["data"]["config"]["servers"].as_array()?;
            (status.is_success()
                && servers.len() == c.len()
                && servers.iter().all(|s| s["voter"] == json!(true)))
            .then_some(())
        })
        .await;
    }
    bao.cluster.stop(leader);
    let c = &bao.cluster;
    let new_leader = poll("another node to become active", || async {
        for i in (0..c.len()).filter(|&i| i != leader) {
            if let Some(l) = c.leader(i).await
                && l["is_self"] == json!(true)
            {
                return Some(i);
            }
        }
        None
    })
    .await;
    // The dead node listed first.
    let run = round(&work, &bao, &token, &local, leader, new_leader, "failover").await;
    run.expect_exit(4);
    assert_eq!(
        run.report["decision"]["branch"],
        "retry",
        "{}",
        run.context()
    );
}

/// A run of the same policy that finds the lock taken exits 5 and touches
/// nothing: no request to the node, no file in any store. Dry runs take no
/// lock; once the lock is free, the run works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_one_is_busy() {
    let snapshot = std::fs::read(fixture_snapshot()).expect("fixture");
    let node = fake_node(move || gzip_reply(snapshot.clone())).await;
    let work = work();
    let token = work.file("token", "s.not-used-by-the-fake-node-0000");
    let local = work.path("snapshots");
    let nfs = work.path("nfs");
    copy_as(&fixture_snapshot(), &local, &[&snap("20240101-020000")]);
    copy_as(&fixture_snapshot(), &nfs, &[&snap("20231231-020000")]);
    let mut p = work.policy(
        "busy",
        json!([{"name": "fake-0", "address": node.url.as_str()}]),
        &token,
        &local,
        json!({"keepLast": 1}),
        "20s",
    );
    p["spec"]["targets"] = json!([fs_target("nfs", &nfs, json!({"keepLast": 1}))]);
    let policy = work.write_policy("policy.yaml", &p);

    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(local.join(".snapward-busy.lock"))
        .expect("open the lock file");
    lock.lock().expect("take the lock");
    let before = (tree(&local), tree(&nfs));

    let run = work.run(&policy, &[]).await;
    run.expect_exit_without_report(5);
    assert!(run.stderr.contains("busy"), "{}", run.context());
    assert!(
        node.seen().is_empty(),
        "the node was asked: {:?}",
        node.seen()
    );
    assert_eq!(
        (tree(&local), tree(&nfs)),
        before,
        "a busy run touched a store"
    );

    // Dry runs write nothing, so they take no lock.
    let dry = work.run(&policy, &["--dry-run"]).await;
    dry.expect_exit(0);
    assert_eq!((tree(&local), tree(&nfs)), before);

    drop(lock);
    let run = work.run(&policy, &[]).await;
    run.expect_exit(0).expect_status("upload:nfs", "succeeded");
    assert!(snaps(&local).contains(&run.snapshot_name()));
}

/// s3s-fs checks signatures: a wrong secret is a failure to retry (exit 4),
/// and the report names the target and says what to check — without the
/// secret. Nothing reaches the bucket and the local snapshot is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3s_fs_wrong_secret_gives_a_clear_error() {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::s3s_fs() });
    s3.create_bucket("signed", false).await;
    let work = work();
    let token = work.file("token", &bao.token);
    let local = work.path("snapshots");
    let mut target = s3_target("offsite-r2", &s3, "signed", "p/", json!({"keepLast": 3}));
    target["s3"]["credentials"] =
        serde_json::to_value(s3.credential_files("wrong", ACCESS_KEY, WRONG_SECRET)).expect("json");
    let mut p = work.policy(
        "signed",
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 1}),
        "20s",
    );
    p["spec"]["targets"] = json!([target]);
    let policy = work.write_policy("policy.yaml", &p);

    let run = work.run(&policy, &[]).await;
    run.expect_exit(4)
        .expect_status("upload:offsite-r2", "failed")
        .expect_status("prune:offsite-r2", "skipped");
    let reason = run.reason("upload:offsite-r2");
    assert!(
        reason.contains("`offsite-r2`"),
        "names the target: {reason}"
    );
    assert!(
        reason.contains("SignatureDoesNotMatch"),
        "says what happened: {reason}"
    );
    assert!(
        reason.contains("secretAccessKeyFile") && reason.contains("accessKeyIdFile"),
        "says what to check: {reason}"
    );
    assert!(
        run.report["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("upload:offsite-r2"),
        "{}",
        run.context()
    );
    assert_no_secret("the run", &run.everything(), &[WRONG_SECRET, SECRET_KEY]);
    assert!(s3.objects("signed").await.is_empty());
    // Kept locally: it exists on no target.
    let name = run.snapshot_name();
    assert!(snaps(&local).contains(&name));
}

/// The target already holds another snapshot under the name this run's
/// snapshot gets (say, a second cluster misconfigured onto the same bucket
/// and prefix). snapward never overwrites it, so this run's snapshot exists
/// on no target, and the target's prune does not run (invariant 1). That run
/// is not "done": it must exit 4 so the Job is retried and alerts fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_snapshot_reached_no_target_is_not_done() {
    let snapshot = std::fs::read(fixture_snapshot()).expect("fixture");
    let node = fake_node(move || gzip_reply(snapshot.clone())).await;
    let s3 = S3Server::moto();
    s3.create_bucket("shared", false).await;
    // Every name this run can give its snapshot in the next 30 minutes is
    // taken by another cluster's snapshot (valid metadata, other content).
    let client = s3.client();
    let until = prefill_names(|name| {
        client
            .put_object()
            .bucket("shared")
            .key(format!("p/{name}"))
            .body(b"another cluster's snapshot".to_vec().into())
            .metadata("snapward-sha256", "ab".repeat(32))
            .metadata("snapward-raft-index", "1")
            .metadata("snapward-raft-term", "1")
            .send()
    })
    .await;
    let before = s3.objects("shared").await;
    let work = work();
    let token = work.file("token", "s.not-used-by-the-fake-node-0000");
    let local = work.path("snapshots");
    let mut p = work.policy(
        "collision",
        json!([{"name": "fake-0", "address": node.url.as_str()}]),
        &token,
        &local,
        json!({"keepLast": 3}),
        "20s",
    );
    p["spec"]["targets"] = json!([s3_target(
        "offsite",
        &s3,
        "shared",
        "p/",
        json!({"keepLast": 1})
    )]);
    let policy = work.write_policy("policy.yaml", &p);

    let run = work.run(&policy, &[]).await;
    expect_prefilled(&run, until);
    let name = run.snapshot_name();
    assert!(
        run.named("upload:offsite", "conflict").contains(&name),
        "{}",
        run.context()
    );
    run.expect_status("prune:offsite", "skipped");
    assert_eq!(
        s3.objects("shared").await,
        before,
        "nothing overwritten or pruned"
    );
    assert!(snaps(&local).contains(&name), "kept locally");
    // The snapshot is on no target: not done.
    run.expect_exit(4);
}
