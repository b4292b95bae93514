//! The `gcs` target against a real Google Cloud Storage emulator
//! (fake-gcs-server, JSON API): the contract S3 and filesystem targets keep
//! — create-only, confirmed by read-back, identity in the metadata, prune
//! by retention, nothing left by a cut upload, verified fetch — plus the
//! service-account file checks and a DR drill (local store lost ⇒ restored
//! from GCS).
//!
//! fake-gcs-server checks no credentials and (1.54) ignores
//! `ifGenerationMatch=0` on resumable uploads: create-only is shown by the
//! refusal before any byte is sent; the credential tests use what fails for
//! real (the file itself, the token exchange).
//!
//! Needs `eval "$(scripts/test-env.sh)"` (SNAPWARD_TEST_FAKE_GCS; the drill
//! also SNAPWARD_TEST_BAO).

use std::fs;
use std::path::{Path, PathBuf};

use snapward::backends::gcs::GcsTarget;
use snapward::backends::{
    DeleteOutcome, PutOutcome, RemoteSnapshot, Target, TargetError, Trust, UploadTag, snapshot_name,
};
use snapward::retention::{self, Candidate, Rules, Verdict};
use snapward::snapshot::Identity;
use tokio_util::sync::CancellationToken;

use crate::support::drill::{Drill, RESTORE};
use crate::support::fake_gcs::{FakeGcs, settings};
use crate::support::fault_proxy::{Fault, FaultProxy, Rule};
use crate::support::work::{PREFIX, files_in, random_bytes, sha256_hex};

const MIB: usize = 1024 * 1024;
const BUCKET: &str = "snapshots";
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
    snapshot_name(PREFIX, time_on(day))
}

fn time_on(day: u32) -> jiff::Timestamp {
    format!("2026-11-{day:02}T02:15:00Z").parse().expect("time")
}

async fn server() -> FakeGcs {
    let s = FakeGcs::start();
    s.create_bucket(BUCKET).await;
    s
}

async fn target(cfg: &snapward::policy::model::GcsTarget) -> GcsTarget {
    GcsTarget::new("gcs", &settings(cfg), PREFIX)
        .await
        .expect("a gcs target")
}

fn tag() -> UploadTag {
    UploadTag {
        cluster_id: "c0ffee".into(),
        tag: Some("ab".repeat(32)),
    }
}

#[tokio::test]
async fn an_upload_in_chunks_is_confirmed_listed_with_its_identity_and_fetched_verified() {
    let s = server().await;
    let work = tempfile::tempdir().expect("work dir");
    // 2.5 chunks of 1 MiB: three PUTs on one session.
    let t = target(&s.target_config(BUCKET, KEY_PREFIX))
        .await
        .with_chunk_size(MIB);
    let (file, id) = snapshot_file(work.path(), "a.snap", 5 * MIB / 2, 4711);
    let name = name_on(3);
    let out = t
        .put(&file, &name, &id, &tag(), &CancellationToken::new())
        .await
        .expect("upload");
    let PutOutcome::Confirmed(c) = out else {
        panic!("a real target confirms: {out:?}")
    };
    assert_eq!(
        (c.size, c.sha256.as_str()),
        (id.file_size, id.sha256.as_str())
    );
    assert_eq!(
        s.objects(BUCKET).await,
        [(
            format!("{KEY_PREFIX}{name}"),
            (id.file_size, id.sha256.clone())
        )]
        .into(),
        "exactly one object, under the prefix"
    );
    assert_eq!(
        sha256_hex(&s.content(BUCKET, &format!("{KEY_PREFIX}{name}")).await),
        id.sha256,
        "the stored bytes are the file's"
    );
    let listed = t.list().await.expect("list");
    assert_eq!(
        listed,
        vec![RemoteSnapshot {
            name: name.clone(),
            size: id.file_size,
            sha256: Some(id.sha256.clone()),
            index: Some(4711),
            term: Some(48),
            time: time_on(3),
            cluster_id: Some("c0ffee".into()),
            tag: Some("ab".repeat(32)),
            sums: None,
            trust: Trust::Unchecked,
        }]
    );
    let dest = work.path().join("fetched.snap");
    let n = t
        .fetch(&name, &dest, &CancellationToken::new())
        .await
        .expect("fetch");
    assert_eq!(n, id.file_size);
    assert_eq!(sha256_hex(&fs::read(&dest).expect("read")), id.sha256);
    let again = t.fetch(&name, &dest, &CancellationToken::new()).await;
    assert!(
        matches!(again, Err(TargetError::Io { .. })),
        "fetch never writes over an existing file: {again:?}"
    );
}

#[tokio::test]
async fn list_shows_only_snapshots_under_the_prefix_and_no_identity_for_foreign_objects() {
    let s = server().await;
    let work = tempfile::tempdir().expect("work dir");
    let t = target(&s.target_config(BUCKET, KEY_PREFIX)).await;
    let other = target(&s.target_config(BUCKET, "other/")).await;
    let (file, id) = snapshot_file(work.path(), "a.snap", 1000, 7);
    t.put(
        &file,
        &name_on(1),
        &id,
        &UploadTag::default(),
        &CancellationToken::new(),
    )
    .await
    .expect("upload");
    other
        .put(
            &file,
            &name_on(2),
            &id,
            &UploadTag::default(),
            &CancellationToken::new(),
        )
        .await
        .expect("upload to the other prefix");
    // An object someone else wrote: a snapshot name, no snapward metadata.
    let url = format!(
        "{}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={KEY_PREFIX}{}",
        s.endpoint,
        name_on(4)
    );
    let res = reqwest::Client::new()
        .post(url)
        .body("forged")
        .send()
        .await
        .expect("seed");
    assert!(res.status().is_success());
    let listed = t.list().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec![name_on(1).as_str(), name_on(4).as_str()]);
    let foreign = &listed[1];
    assert_eq!(
        (foreign.sha256.as_ref(), foreign.index, foreign.tag.as_ref()),
        (None, None, None)
    );
    assert_eq!(
        listed[0].cluster_id, None,
        "no cluster id when none was known"
    );
}

#[tokio::test]
async fn an_existing_object_is_never_overwritten() {
    let s = server().await;
    let work = tempfile::tempdir().expect("work dir");
    let t = target(&s.target_config(BUCKET, KEY_PREFIX)).await;
    let (first, id1) = snapshot_file(work.path(), "1.snap", 3000, 1);
    let (second, id2) = snapshot_file(work.path(), "2.snap", 4000, 2);
    let name = name_on(5);
    t.put(&first, &name, &id1, &tag(), &CancellationToken::new())
        .await
        .expect("first upload");
    let r = t
        .put(&second, &name, &id2, &tag(), &CancellationToken::new())
        .await;
    assert!(
        matches!(&r, Err(TargetError::AlreadyExists { name: n, .. }) if *n == name),
        "a second upload under the same name is refused: {r:?}"
    );
    let key = format!("{KEY_PREFIX}{name}");
    assert_eq!(s.objects(BUCKET).await[&key], (3000, id1.sha256.clone()));
    assert_eq!(sha256_hex(&s.content(BUCKET, &key).await), id1.sha256);
}

#[tokio::test]
async fn prune_by_retention_deletes_exactly_what_the_rules_drop() {
    let s = server().await;
    let work = tempfile::tempdir().expect("work dir");
    let t = target(&s.target_config(BUCKET, KEY_PREFIX)).await;
    for day in 1..=5u32 {
        let (file, id) = snapshot_file(work.path(), &format!("{day}.snap"), 500, u64::from(day));
        t.put(&file, &name_on(day), &id, &tag(), &CancellationToken::new())
            .await
            .expect("upload");
    }
    let listed = t.list().await.expect("list");
    let candidates: Vec<Candidate> = listed
        .iter()
        .map(|r| Candidate {
            id: r.name.clone(),
            time: r.time,
            index: r.index.expect("index"),
            term: r.term.expect("term"),
            valid: true,
        })
        .collect();
    let rules = Rules {
        keep_last: Some(2),
        ..Rules::default()
    };
    let doomed: Vec<String> = retention::apply(&rules, &candidates)
        .into_iter()
        .filter(|d| d.verdict == Verdict::Delete)
        .map(|d| d.id)
        .collect();
    let mut sorted = doomed.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![name_on(1), name_on(2), name_on(3)],
        "keepLast 2 of 5 drops the three oldest"
    );
    for n in &doomed {
        assert_eq!(t.delete(n).await.expect("delete"), DeleteOutcome::Deleted);
    }
    let left: Vec<String> = t
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(left, vec![name_on(4), name_on(5)], "the two newest stay");
    // Deleting what is gone already is not an error (a retried prune).
    assert_eq!(
        t.delete(&name_on(1)).await.expect("delete"),
        DeleteOutcome::Deleted
    );
}

#[tokio::test]
async fn a_malformed_or_wrong_service_account_file_is_refused_naming_the_file_never_its_content() {
    let dir = tempfile::tempdir().expect("dir");
    const MARK: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7SECRET";
    let pem_garbage = format!("-----BEGIN PRIVATE KEY-----\n{MARK}\n-----END PRIVATE KEY-----\n");
    let good_fields = |key: &str| {
        serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "k1",
            "private_key": key,
            "client_email": "snapward@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string()
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("not-json", format!("{{\"type\": \"service_account\", \"private_key\": \"{MARK}"), "is not JSON"),
        (
            "user-adc",
            serde_json::json!({"type": "authorized_user", "client_id": "x", "client_secret": MARK, "refresh_token": MARK}).to_string(),
            "\"authorized_user\"",
        ),
        (
            "no-key",
            serde_json::json!({"type": "service_account", "client_email": "a@b", "token_uri": "https://x", "private_key_id": MARK}).to_string(),
            "`private_key` is missing",
        ),
        ("bad-pem", good_fields(&pem_garbage), "does not parse"),
        ("not-pem", good_fields(MARK), "not a PEM PKCS#8"),
    ];
    for (case, content, says) in cases {
        let path = dir.path().join(format!("{case}.json"));
        fs::write(&path, content).expect("write");
        let cfg = snapward::policy::model::GcsTarget {
            endpoint: None,
            bucket: "b".into(),
            prefix: String::new(),
            credentials: Some(snapward::policy::model::GcsCredentials {
                service_account_file: path.display().to_string(),
            }),
            timeouts: None,
        };
        let err = GcsTarget::new("gcs", &settings(&cfg), PREFIX)
            .await
            .expect_err(case);
        let msg = err.to_string();
        assert!(matches!(err, TargetError::Refused { .. }), "{case}: {msg}");
        assert!(
            msg.contains(&path.display().to_string()),
            "{case} names the file: {msg}"
        );
        assert!(
            msg.contains(says),
            "{case} says what is wrong ({says}): {msg}"
        );
        assert!(
            !msg.contains("SECRET") && !msg.contains("MIIE"),
            "{case} leaks key material: {msg}"
        );
    }
    // Absent ⇒ credentials absent (an `optional` target is skipped).
    let cfg = snapward::policy::model::GcsTarget {
        endpoint: None,
        bucket: "b".into(),
        prefix: String::new(),
        credentials: Some(snapward::policy::model::GcsCredentials {
            service_account_file: dir.path().join("absent.json").display().to_string(),
        }),
        timeouts: None,
    };
    let err = GcsTarget::new("gcs", &settings(&cfg), PREFIX)
        .await
        .expect_err("absent");
    assert!(
        matches!(err, TargetError::CredentialsAbsent { .. }),
        "{err}"
    );
}

/// A well-formed key whose token exchange fails (the token endpoint is the
/// emulator, which has none): the upload is refused before any object
/// request, with no key material and no token in the message.
#[tokio::test]
async fn a_key_the_token_endpoint_rejects_refuses_the_upload_without_key_material() {
    let s = server().await;
    let work = tempfile::tempdir().expect("work dir");
    let pem_path = work.path().join("key.pem");
    let st = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem_path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl genpkey");
    assert!(st.success());
    let pem = fs::read_to_string(&pem_path).expect("pem");
    let body_line = pem.lines().nth(1).expect("a key line").to_owned();
    let key = work.path().join("sa.json");
    fs::write(
        &key,
        serde_json::json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "snapward@p.iam.gserviceaccount.com",
            "token_uri": format!("{}/token", s.endpoint),
        })
        .to_string(),
    )
    .expect("write key");
    let mut cfg = s.target_config(BUCKET, KEY_PREFIX);
    cfg.credentials = Some(snapward::policy::model::GcsCredentials {
        service_account_file: key.display().to_string(),
    });
    let t = target(&cfg).await;
    let (file, id) = snapshot_file(work.path(), "a.snap", 1000, 1);
    let err = t
        .put(&file, &name_on(1), &id, &tag(), &CancellationToken::new())
        .await
        .expect_err("no token, no upload");
    let msg = err.to_string();
    assert!(matches!(err, TargetError::Refused { .. }), "{msg}");
    assert!(msg.contains("access token"), "{msg}");
    assert!(
        !msg.contains(&body_line) && !msg.contains("PRIVATE KEY"),
        "{msg}"
    );
    assert!(
        !format!("{t:?}").contains(&body_line),
        "Debug leaks the key"
    );
    assert!(s.objects(BUCKET).await.is_empty());
}

#[tokio::test]
async fn a_connection_cut_mid_upload_leaves_no_object() {
    let s = server().await;
    let proxy = FaultProxy::start(&s.endpoint).await;
    // Every chunk PUT (not the status queries) is cut after 256 KiB.
    proxy.add(Rule::new(
        "cut-chunk",
        |r| {
            r.method == "PUT"
                && r.has_query("upload_id")
                && r.header("content-range")
                    .is_some_and(|c| !c.starts_with("bytes */"))
        },
        Fault::ResetRequestBody { after: 256 * 1024 },
    ));
    let work = tempfile::tempdir().expect("work dir");
    let mut cfg = s.target_config(BUCKET, KEY_PREFIX);
    cfg.endpoint = Some(proxy.url.clone());
    let t = target(&cfg).await.with_chunk_size(MIB);
    let (file, id) = snapshot_file(work.path(), "a.snap", 3 * MIB, 9);
    let err = t
        .put(&file, &name_on(7), &id, &tag(), &CancellationToken::new())
        .await
        .expect_err("every chunk is cut");
    assert!(matches!(err, TargetError::Failed { .. }), "{err}");
    assert!(
        !err.to_string().contains("upload_id"),
        "the session URI is never shown: {err}"
    );
    assert!(proxy.fired("cut-chunk") >= 1, "{}", proxy.log());
    assert_eq!(
        s.objects(BUCKET).await,
        Default::default(),
        "no object, not even a short one"
    );
    assert_eq!(t.list().await.expect("list"), vec![]);
    assert_eq!(
        t.cleanup().await.expect("cleanup").removed,
        Vec::<String>::new()
    );
}

/// DR drill: the raft data and the local snapshot store (the PVC) are
/// lost; `run` restores the cluster from the GCS target, and data written
/// before the snapshot is back, data written after it gone.
#[tokio::test]
async fn drill_raft_data_and_local_store_lost_is_restored_from_gcs() {
    let s = server().await;
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let yaml = fs::read_to_string(&policy).expect("policy");
    let gcs = format!(
        "  targets:\n    - name: gcs\n      gcs:\n        endpoint: {}\n        bucket: {BUCKET}\n        prefix: drill/\n      retention: {{keepLast: 10}}\n",
        s.endpoint
    );
    assert!(yaml.contains("  unsealKeys:\n") && !yaml.contains("targets:"));
    fs::write(
        &policy,
        yaml.replace("  unsealKeys:\n", &format!("{gcs}  unsealKeys:\n")),
    )
    .expect("write policy");
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    d.write_marker("before").await;
    let (r, name) = d.backup(&policy, &snap_dir).await;
    r.expect_status("upload:gcs", "succeeded");
    d.write_marker("after").await;
    let objects = s.objects(BUCKET).await;
    assert!(
        objects.contains_key(&format!("drill/{name}")),
        "{objects:?}"
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
        r.reason("fetch").contains(&format!("chose gcs/{name}")),
        "fetch should have chosen gcs/{name}\n{}",
        r.context()
    );
    d.expect_data(&token, &["before"], &["after"]).await;
    assert_eq!(
        files_in(&keys_dir),
        keys,
        "a restore never writes the key store"
    );
    assert_eq!(
        s.objects(BUCKET).await,
        objects,
        "a restore changes no remote snapshot"
    );
}

/// fake-gcs-server enforces neither retention policies nor holds: the
/// proxy gives the DELETE Google's own refusals. A retention or hold
/// refusal is `RetainedByLock` (the snapshot stays); a permission refusal
/// is an error naming what to check.
#[tokio::test]
async fn a_delete_refused_by_retention_or_a_hold_is_retained_and_a_permission_refusal_is_an_error()
{
    let s = server().await;
    let proxy = FaultProxy::start(&s.endpoint).await;
    let work = tempfile::tempdir().expect("work dir");
    let mut cfg = s.target_config(BUCKET, KEY_PREFIX);
    cfg.endpoint = Some(proxy.url.clone());
    let t = target(&cfg).await;
    let (file, id) = snapshot_file(work.path(), "a.snap", 800, 3);
    let name = name_on(9);
    t.put(&file, &name, &id, &tag(), &CancellationToken::new())
        .await
        .expect("upload");
    let google = |message: &str| Fault::Reply {
        status: 403,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::json!({"error": {"code": 403, "message": message}})
            .to_string()
            .into_bytes(),
    };
    let key = format!("{KEY_PREFIX}{name}");
    for (i, message) in [
        format!("Object '{BUCKET}/{key}' is subject to bucket's retention policy or object retention and cannot be deleted or overwritten until 2027-01-01T00:00:00Z"),
        format!("Object '{BUCKET}/{key}' is under active Temporary hold and cannot be deleted, overwritten or archived until hold is removed."),
    ]
    .into_iter()
    .enumerate()
    {
        let rule = format!("locked-{i}");
        proxy.clear();
        proxy.add(Rule::new(&rule, |r| r.method == "DELETE", google(&message)).times(1));
        assert_eq!(
            t.delete(&name).await.expect("a lock is not an error"),
            DeleteOutcome::RetainedByLock,
            "{message}"
        );
        assert_eq!(proxy.fired(&rule), 1);
    }
    proxy.clear();
    proxy.add(Rule::new(
        "denied",
        |r| r.method == "DELETE",
        google("snapward@p.iam.gserviceaccount.com does not have storage.objects.delete access to the Google Cloud Storage object."),
    ).times(1));
    let err = t.delete(&name).await.expect_err("permission denied");
    assert!(matches!(err, TargetError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("storage.objects.delete"), "{err}");
    assert_eq!(
        s.objects(BUCKET).await.keys().cloned().collect::<Vec<_>>(),
        vec![key],
        "every refused delete left the snapshot"
    );
}
