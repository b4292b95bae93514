//! The Azure Blob target against Azurite (npm `azurite`, started per test on
//! 127.0.0.1, `tests/it/support/azurite.rs`): upload + read-back, list
//! identity, create-only, retention, refusals, a cut upload, SAS
//! credentials, and a DR drill (local store lost ⇒ restored from Azure).
//! Needs `eval "$(scripts/test-env.sh)"` (SNAPWARD_TEST_AZURITE, and
//! SNAPWARD_TEST_BAO for the drill).

use std::fs;
use std::path::{Path, PathBuf};

use snapward::backends::cloud::CloudTarget;
use snapward::backends::{
    DeleteOutcome, PutOutcome, Target, TargetError, UploadTag, snapshot_name,
};
use snapward::policy::model;
use snapward::retention::{self, Candidate, Rules, Verdict};
use snapward::snapshot::Identity;
use tokio_util::sync::CancellationToken;

use crate::support::azurite::{ACCOUNT, ACCOUNT_KEY, Azurite};
use crate::support::drill::{Drill, RESTORE, snap_files};
use crate::support::fault_proxy::{Fault, FaultProxy, Rule};
use crate::support::work::{files_in, random_bytes, sha256_hex};

const PREFIX: &str = "openbao-";
const MIB: usize = 1024 * 1024;
const CONTAINER: &str = "snapshots";
const KEY_PREFIX: &str = "cluster-a/";

fn snapshot_file(dir: &Path, file: &str, len: usize, index: u64) -> (PathBuf, Identity) {
    let bytes = random_bytes(len, index);
    let path = dir.join(file);
    fs::write(&path, &bytes).expect("write test snapshot");
    let identity = Identity {
        index,
        term: index / 100 + 1,
        version: 1,
        state_size: 0,
        file_size: len as u64,
        sha256: sha256_hex(&bytes),
    };
    (path, identity)
}

fn name_on(day: u32) -> String {
    let t: jiff::Timestamp = format!("2026-11-{day:02}T02:15:00Z").parse().expect("time");
    snapshot_name(PREFIX, t)
}

fn never() -> CancellationToken {
    CancellationToken::new()
}

fn tag() -> UploadTag {
    UploadTag {
        cluster_id: "cluster-1234".to_owned(),
        tag: Some("ab".repeat(32)),
    }
}

async fn azurite() -> Azurite {
    let a = Azurite::start();
    a.create_container(CONTAINER).await;
    a
}

async fn target(cfg: &model::AzureTarget) -> CloudTarget {
    snapward::backends::azure::target("azure", cfg, PREFIX)
        .await
        .expect("azure target")
}

/// A small (single put) and a multipart-sized (staged + copied) upload are
/// confirmed, and `list` gives back exactly the identity and tag written;
/// `fetch` returns the same bytes; no staging blob stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_small_and_staged_uploads_are_confirmed_and_listed_with_identity() {
    let a = azurite().await;
    let t = target(&a.target_config(CONTAINER, KEY_PREFIX))
        .await
        .with_parts(MIB, 2);
    let work = tempfile::tempdir().expect("tmp");
    let mut sent = Vec::new();
    for (day, len, index) in [(1, 200 * 1024, 101), (2, 9 * MIB + 17, 202)] {
        let (file, id) = snapshot_file(work.path(), &format!("s{day}"), len, index);
        let name = name_on(day);
        let out = t
            .put(&file, &name, &id, &tag(), &never())
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
        let PutOutcome::Confirmed(c) = out else {
            panic!("a real target confirms: {out:?}");
        };
        assert_eq!(
            (c.size, c.sha256.as_str()),
            (len as u64, id.sha256.as_str())
        );
        sent.push((name, id, file));
    }
    let blobs = a.blobs(CONTAINER).await;
    assert_eq!(
        blobs.keys().cloned().collect::<Vec<_>>(),
        sent.iter()
            .map(|(n, _, _)| format!("{KEY_PREFIX}{n}"))
            .collect::<Vec<_>>(),
        "only the two snapshots, no staging blob"
    );
    let listed = t.list().await.expect("list");
    assert_eq!(listed.len(), 2);
    for (r, (name, id, file)) in listed.iter().zip(&sent) {
        assert_eq!(&r.name, name);
        assert_eq!(r.size, id.file_size);
        assert_eq!(r.sha256.as_deref(), Some(id.sha256.as_str()));
        assert_eq!((r.index, r.term), (Some(id.index), Some(id.term)));
        assert_eq!(r.cluster_id.as_deref(), Some("cluster-1234"));
        assert_eq!(r.tag, tag().tag);
        let dest = work.path().join(format!("fetched-{name}"));
        let n = t.fetch(name, &dest, &never()).await.expect("fetch");
        assert_eq!(n, id.file_size);
        assert_eq!(fs::read(&dest).unwrap(), fs::read(file).unwrap());
    }
}

/// A blob already at the name (another writer's) is never overwritten:
/// `put` answers AlreadyExists and the blob keeps its bytes — for the single
/// put and the staged upload alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_put_is_create_only_and_never_overwrites() {
    let a = azurite().await;
    let t = target(&a.target_config(CONTAINER, KEY_PREFIX))
        .await
        .with_parts(MIB, 2);
    let work = tempfile::tempdir().expect("tmp");
    for (day, len) in [(3, 1000), (4, 9 * MIB)] {
        let name = name_on(day);
        let key = format!("{KEY_PREFIX}{name}");
        a.put_raw(CONTAINER, &key, b"someone else's".to_vec()).await;
        let (file, id) = snapshot_file(work.path(), &format!("f{day}"), len, 7);
        let err = t
            .put(&file, &name, &id, &tag(), &never())
            .await
            .expect_err("an existing blob must refuse the upload");
        assert!(matches!(err, TargetError::AlreadyExists { .. }), "{err}");
        assert_eq!(a.get_raw(CONTAINER, &key).await, b"someone else's");
    }
}

/// Retention prunes by the rules: `keepLast: 2` of four snapshots deletes
/// the two oldest by name and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_prune_by_retention_deletes_only_what_the_rules_drop() {
    let a = azurite().await;
    let t = target(&a.target_config(CONTAINER, KEY_PREFIX)).await;
    let work = tempfile::tempdir().expect("tmp");
    for day in 1..=4u32 {
        let (file, id) = snapshot_file(work.path(), &format!("s{day}"), 4096, u64::from(day) * 100);
        t.put(&file, &name_on(day), &id, &tag(), &never())
            .await
            .expect("put");
    }
    // A foreign blob beside them is never touched.
    a.put_raw(CONTAINER, &format!("{KEY_PREFIX}notes.txt"), b"x".to_vec())
        .await;
    let listed = t.list().await.expect("list");
    let rules = Rules {
        keep_last: Some(2),
        ..Rules::default()
    };
    let candidates: Vec<Candidate> = listed
        .iter()
        .map(|r| Candidate {
            id: r.name.clone(),
            time: r.time,
            index: r.index.expect("index listed"),
            term: r.term.expect("term listed"),
            valid: true,
        })
        .collect();
    let mut deleted = Vec::new();
    for d in retention::apply(&rules, &candidates) {
        if d.verdict == Verdict::Delete {
            assert_eq!(
                t.delete(&d.id).await.expect("delete"),
                DeleteOutcome::Deleted
            );
            deleted.push(d.id);
        }
    }
    deleted.sort();
    assert_eq!(deleted, vec![name_on(1), name_on(2)]);
    let left: Vec<_> = a.blobs(CONTAINER).await.into_keys().collect();
    assert_eq!(
        left,
        vec![
            format!("{KEY_PREFIX}notes.txt"),
            format!("{KEY_PREFIX}{}", name_on(3)),
            format!("{KEY_PREFIX}{}", name_on(4)),
        ]
    );
}

/// A wrong account key is refused (HTTP 403 named, what to check), and the
/// message holds neither key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_wrong_account_key_is_refused_clearly_without_the_secret() {
    let a = azurite().await;
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleQ==";
    let mut cfg = a.target_config(CONTAINER, KEY_PREFIX);
    cfg.credentials = Some(model::AzureCredentials {
        account_key_file: Some(a.secret_file("wrong-key", wrong)),
        sas_token_file: None,
    });
    let t = target(&cfg).await;
    let work = tempfile::tempdir().expect("tmp");
    let (file, id) = snapshot_file(work.path(), "s", 1000, 1);
    let err = t
        .put(&file, &name_on(1), &id, &tag(), &never())
        .await
        .expect_err("a wrong key must be refused");
    let msg = err.to_string();
    assert!(matches!(err, TargetError::Refused { .. }), "{msg}");
    assert!(msg.contains("403"), "the status is named: {msg}");
    assert!(msg.contains("account key"), "says what to check: {msg}");
    assert!(!msg.contains(wrong) && !msg.contains(ACCOUNT_KEY), "{msg}");
    let err = t.list().await.expect_err("list refused too");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(a.blobs(CONTAINER).await.is_empty());
}

/// A connection cut in the middle of every block upload (retries
/// included) fails the upload and leaves no blob: neither the snapshot nor
/// a staging blob. The same for a single put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_upload_cut_mid_body_leaves_no_blob() {
    let a = azurite().await;
    let proxy = FaultProxy::start(&format!("http://127.0.0.1:{}", a.port)).await;
    proxy.add(Rule::new(
        "reset-every-upload",
        |r| r.method == "PUT" && (r.has_query("blockid") || !r.target.contains('?')),
        Fault::ResetRequestBody { after: 64 * 1024 },
    ));
    let endpoint = format!("{}/{ACCOUNT}", proxy.url);
    let t = target(&a.target_config_at(&endpoint, CONTAINER, KEY_PREFIX))
        .await
        .with_parts(MIB, 2);
    let work = tempfile::tempdir().expect("tmp");
    for (day, len) in [(1, 512 * 1024), (2, 9 * MIB)] {
        let (file, id) = snapshot_file(work.path(), &format!("s{day}"), len, 3);
        let err = t
            .put(&file, &name_on(day), &id, &tag(), &never())
            .await
            .expect_err("every attempt is cut");
        assert!(matches!(err, TargetError::Failed { .. }), "{err}");
    }
    assert!(proxy.fired("reset-every-upload") >= 2, "{}", proxy.log());
    assert!(
        a.blobs(CONTAINER).await.is_empty(),
        "no blob left: {:?}",
        a.blobs(CONTAINER).await
    );
}

/// A SAS token file (with its leading `?`) works for the whole cycle:
/// put, list, fetch, delete — and an invalid one is refused without the
/// signature in the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_sas_token_credentials_upload_list_fetch_and_delete() {
    let a = azurite().await;
    let sas = a.account_sas();
    let mut cfg = a.target_config(CONTAINER, "");
    cfg.credentials = Some(model::AzureCredentials {
        account_key_file: None,
        sas_token_file: Some(a.secret_file("sas", &format!("?{sas}"))),
    });
    let t = target(&cfg).await.with_parts(MIB, 2);
    let work = tempfile::tempdir().expect("tmp");
    let (file, id) = snapshot_file(work.path(), "s", 3 * MIB, 9);
    let (big, big_id) = snapshot_file(work.path(), "b", 9 * MIB, 10);
    t.put(&file, &name_on(1), &id, &tag(), &never())
        .await
        .expect("put");
    t.put(&big, &name_on(2), &big_id, &tag(), &never())
        .await
        .expect("staged put with a SAS");
    let listed = t.list().await.expect("list");
    assert_eq!(listed.len(), 2);
    let dest = work.path().join("fetched");
    t.fetch(&name_on(1), &dest, &never()).await.expect("fetch");
    assert_eq!(fs::read(&dest).unwrap(), fs::read(&file).unwrap());
    assert_eq!(
        t.delete(&name_on(1)).await.expect("delete"),
        DeleteOutcome::Deleted
    );
    assert_eq!(t.list().await.expect("list").len(), 1);

    let sig = sas.rsplit_once("sig=").map(|(_, s)| s.to_owned()).unwrap();
    let forged = sas.replace(&sig, "AAAA%2BBBBBCCCCDDDDEEEEFFFFGGGGHHHHIIIIJJJJKKK%3D");
    cfg.credentials = Some(model::AzureCredentials {
        account_key_file: None,
        sas_token_file: Some(a.secret_file("sas-bad", &forged)),
    });
    let bad = target(&cfg).await;
    let err = bad.list().await.expect_err("a forged SAS is refused");
    let msg = err.to_string();
    assert!(matches!(err, TargetError::Refused { .. }), "{msg}");
    assert!(!msg.contains("AAAA") && !msg.contains(&sig), "{msg}");
}

/// Missing credential files make the target "credentials absent" (an
/// optional target is then skipped), naming the file but no content.
#[tokio::test]
async fn azure_missing_credential_file_is_credentials_absent() {
    let cfg = model::AzureTarget {
        account: ACCOUNT.to_owned(),
        container: CONTAINER.to_owned(),
        prefix: String::new(),
        endpoint: Some("http://127.0.0.1:9/devstoreaccount1".to_owned()),
        credentials: Some(model::AzureCredentials {
            account_key_file: Some("/nonexistent/account-key".to_owned()),
            sas_token_file: None,
        }),
    };
    let err = snapward::backends::azure::target("azure", &cfg, PREFIX)
        .await
        .expect_err("absent");
    assert!(
        matches!(err, TargetError::CredentialsAbsent { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("/nonexistent/account-key"),
        "{err}"
    );
}

/// DR drill: a backup uploads to Azure; then the raft data and the local
/// snapshot store (the PVC) are lost, and `run` restores from Azure: data
/// from before the snapshot is back, data from after it is gone, and the
/// restore neither writes nor deletes a blob.
#[tokio::test]
async fn azure_drill_local_store_lost_is_restored_from_azure() {
    let a = azurite().await;
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let base = d.policy("base", &d.opts());
    let key_file = a.secret_file("drill-key", ACCOUNT_KEY);
    let yaml = fs::read_to_string(&base).expect("policy").replace(
        "  unsealKeys:\n",
        &format!(
            "  targets:\n\
             \x20   - name: azure\n\
             \x20     azure:\n\
             \x20       account: {ACCOUNT}\n\
             \x20       container: {CONTAINER}\n\
             \x20       prefix: {KEY_PREFIX}\n\
             \x20       endpoint: {endpoint}\n\
             \x20       credentials: {{accountKeyFile: {key_file}}}\n\
             \x20     retention: {{keepLast: 3}}\n\
             \x20 unsealKeys:\n",
            endpoint = a.endpoint
        ),
    );
    let policy = d.path("policy.yaml");
    fs::write(&policy, yaml).expect("write policy");
    d.remember_secret(ACCOUNT_KEY);
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (r, name) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:azure", "succeeded");
    d.write_marker("after").await;
    let blobs = a.blobs(CONTAINER).await;
    assert!(
        blobs.contains_key(&format!("{KEY_PREFIX}{name}")),
        "the backup uploaded {name}: {blobs:?}"
    );
    let keys = files_in(&keys_dir);

    d.bao.wipe(0).await;
    fs::remove_dir_all(&snap_dir).expect("lose the local snapshot store");

    let r = d.run(&policy).await;
    r.expect_exit(0).expect_branch("restore");
    for id in RESTORE {
        r.expect_status(id, "succeeded");
    }
    assert!(
        r.reason("fetch").contains(&format!("chose azure/{name}")),
        "fetch should have chosen azure/{name}\n{}",
        r.context()
    );
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
    assert_eq!(
        a.blobs(CONTAINER).await,
        blobs,
        "a restore writes and deletes no blob"
    );
    assert!(
        snap_files(&snap_dir)
            .keys()
            .all(|n| !n.contains(".partial")),
        "no temp file of the fetch is left"
    );
}

/// `cleanup` removes only staging blobs of this target's snapshots
/// (`.<name>.partial-*`) older than the age: never a snapshot, never a
/// foreign blob, never a young staging blob (a live run's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_cleanup_removes_only_stale_staging_blobs() {
    let a = azurite().await;
    let t = target(&a.target_config(CONTAINER, KEY_PREFIX)).await;
    let work = tempfile::tempdir().expect("tmp");
    let (file, id) = snapshot_file(work.path(), "s", 1000, 1);
    t.put(&file, &name_on(1), &id, &tag(), &never())
        .await
        .expect("put");
    let staging = format!("{KEY_PREFIX}.{}.partial-0123456789abcdef", name_on(2));
    let foreign = format!("{KEY_PREFIX}.other.partial-1");
    for k in [&staging, &foreign] {
        a.put_raw(CONTAINER, k, b"left over".to_vec()).await;
    }
    let young = t
        .cleanup_older_than(std::time::Duration::from_secs(3600))
        .await
        .expect("cleanup");
    assert!(
        young.removed.is_empty(),
        "a young staging blob stays: {young:?}"
    );
    let old = t
        .cleanup_older_than(std::time::Duration::ZERO)
        .await
        .expect("cleanup");
    assert_eq!(old.removed, vec![staging.clone()]);
    let left: Vec<_> = a.blobs(CONTAINER).await.into_keys().collect();
    assert_eq!(left, vec![foreign, format!("{KEY_PREFIX}{}", name_on(1))]);
}
