//! Snapshot targets against real components: the S3 target against moto
//! 5.2.5 (versioning, Object Lock) and s3s-fs 0.14.1 (SigV4 checked), both
//! started per test on 127.0.0.1 (`tests/it/support/s3.rs`); the filesystem
//! target against temp dirs. Needs `eval "$(scripts/test-env.sh)"`.
//!
//! Only one upload is multipart-sized (40 MiB); everything else is small.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::ChecksumAlgorithm;
use rstest::rstest;
use snapward::backends::filesystem::FsTarget;
use snapward::backends::s3::S3Target;
use snapward::backends::{
    Confirmed, DeleteOutcome, PutOutcome, RemoteSnapshot, Target, TargetError, snapshot_name,
};
use snapward::policy::model;
use snapward::snapshot::{self, Identity};
use tokio_util::sync::CancellationToken;

use crate::support::fixture_snapshot;
use crate::support::s3::{ACCESS_KEY, Kind, S3Server, SECRET_KEY};
use crate::support::work::{random_bytes, sha256_hex};

const PREFIX: &str = "openbao-";
const MIB: usize = 1024 * 1024;
const BUCKET: &str = "snapshots";
const KEY_PREFIX: &str = "cluster-a/";

/// A file of random bytes with a hand-made identity (`put` does not verify
/// the archive; it uploads exactly the bytes the identity describes).
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

/// `openbao-YYYYMMDD-HHMMSS.snap` for a day in November 2026.
fn name_on(day: u32) -> String {
    let t: jiff::Timestamp = format!("2026-11-{day:02}T02:15:00Z").parse().expect("time");
    snapshot_name(PREFIX, t)
}

fn time_on(day: u32) -> jiff::Timestamp {
    format!("2026-11-{day:02}T02:15:00Z").parse().expect("time")
}

fn never() -> CancellationToken {
    CancellationToken::new()
}

async fn s3_target(cfg: &model::S3Target) -> S3Target {
    S3Target::new("offsite", &crate::support::s3::settings(cfg), PREFIX)
        .await
        .expect("S3 target builds")
}

async fn head_metadata(
    server: &S3Server,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    server
        .client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"))
}

async fn object_exists(server: &S3Server, bucket: &str, key: &str) -> bool {
    match server
        .client()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => true,
        Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => false,
        Err(e) => panic!("HEAD {key}: {e:?}"),
    }
}

// ---------------------------------------------------------------- S3 ----

#[rstest]
#[case::moto(Kind::Moto)]
#[case::s3s_fs(Kind::S3sFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_small_and_multipart_uploads_are_head_confirmed_and_listed_with_identity(
    #[case] kind: Kind,
) {
    let server = S3Server::start(kind);
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let (small, small_id) = snapshot_file(work.path(), "small", MIB + 17, 1042);
    // Above the 16 MiB threshold: 3 parts of 16 MiB, the last one short.
    let (big, big_id) = snapshot_file(work.path(), "big", 40 * MIB - 3, 2077);

    for (file, day, id) in [(&small, 27, &small_id), (&big, 28, &big_id)] {
        let confirmed = target
            .put(
                file,
                &name_on(day),
                id,
                &snapward::backends::UploadTag::default(),
                &never(),
            )
            .await
            .expect("upload confirmed");
        assert_eq!(
            confirmed,
            PutOutcome::Confirmed(Confirmed {
                size: id.file_size,
                sha256: id.sha256.clone()
            })
        );
        let head = head_metadata(&server, BUCKET, &format!("{KEY_PREFIX}{}", name_on(day))).await;
        assert_eq!(head.content_length(), Some(id.file_size as i64));
        let meta = head.metadata().expect("user metadata");
        assert_eq!(meta.get("snapward-sha256"), Some(&id.sha256));
        assert_eq!(meta.get("snapward-raft-index"), Some(&id.index.to_string()));
        assert_eq!(meta.get("snapward-raft-term"), Some(&id.term.to_string()));
    }

    let listed = target.list().await.expect("list");
    let expect = |day: u32, id: &Identity| RemoteSnapshot {
        name: name_on(day),
        size: id.file_size,
        sha256: Some(id.sha256.clone()),
        index: Some(id.index),
        term: Some(id.term),
        time: time_on(day),
        cluster_id: None,
        tag: None,
        sums: None,
        trust: snapward::backends::Trust::Unchecked,
    };
    assert_eq!(listed, vec![expect(27, &small_id), expect(28, &big_id)]);

    let dest = work.path().join("fetched.snap");
    let n = target
        .fetch(&name_on(28), &dest, &never())
        .await
        .expect("fetch");
    assert_eq!(n, big_id.file_size);
    assert_eq!(
        sha256_hex(&fs::read(&dest).expect("read fetched")),
        big_id.sha256
    );
}

#[rstest]
#[case::moto(Kind::Moto)]
#[case::s3s_fs(Kind::S3sFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_is_create_only_and_never_overwrites(#[case] kind: Kind) {
    let server = S3Server::start(kind);
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let (first, first_id) = snapshot_file(work.path(), "first", 64 * 1024, 300);
    let (second, second_id) = snapshot_file(work.path(), "second", 80 * 1024, 301);
    let name = name_on(20);

    target
        .put(
            &first,
            &name,
            &first_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("first upload");
    let err = target
        .put(
            &second,
            &name,
            &second_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("second upload of the same name must be refused");
    assert!(
        matches!(&err, TargetError::AlreadyExists { name: n, .. } if *n == name),
        "{err:?}"
    );

    let head = head_metadata(&server, BUCKET, &format!("{KEY_PREFIX}{name}")).await;
    assert_eq!(head.content_length(), Some(first_id.file_size as i64));
    assert_eq!(
        head.metadata().and_then(|m| m.get("snapward-sha256")),
        Some(&first_id.sha256)
    );
}

#[rstest]
#[case::moto(Kind::Moto)]
#[case::s3s_fs(Kind::S3sFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_object_written_during_the_upload_is_never_overwritten(#[case] kind: Kind) {
    let server = S3Server::start(kind);
    server.create_bucket(BUCKET, false).await;
    let name = name_on(21);
    let key = format!("{KEY_PREFIX}{name}");
    // A racing writer creates the key after snapward's HEAD said "absent",
    // while the parts are going up: CompleteMultipartUpload's
    // `If-None-Match: *` must make the store refuse (412).
    let racer = server.client();
    let (race_key, raced) = (key.clone(), Arc::new(std::sync::Once::new()));
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX))
        .await
        .with_multipart(5 * MIB as u64, 5 * MIB as u64, 1)
        .with_progress(Arc::new(move |_| {
            raced.call_once(|| {
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async {
                        racer
                            .put_object()
                            .bucket(BUCKET)
                            .key(&race_key)
                            .body(b"the other writer".to_vec().into())
                            .send()
                            .await
                            .expect("racing write");
                    });
                });
            });
        }));
    let work = tempfile::tempdir().expect("tempdir");
    let (file, id) = snapshot_file(work.path(), "snap", 10 * MIB, 99);

    let err = target
        .put(
            &file,
            &name,
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("the key appeared meanwhile");
    assert!(matches!(err, TargetError::AlreadyExists { .. }), "{err:?}");
    let body = server
        .client()
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(&body[..], b"the other writer");
    if kind == Kind::Moto {
        assert!(server.uploads(BUCKET).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_secret_is_refused_with_a_clear_message_that_holds_no_secret() {
    const WRONG: &str = "wrong-secret-value-8d1e77";
    let server = S3Server::s3s_fs();
    server.create_bucket(BUCKET, false).await;
    let mut cfg = server.target_config(BUCKET, KEY_PREFIX);
    cfg.credentials = Some(server.credential_files("wrong", ACCESS_KEY, WRONG));
    let target = s3_target(&cfg).await;
    let work = tempfile::tempdir().expect("tempdir");
    let (file, id) = snapshot_file(work.path(), "snap", 4096, 7);

    // ListObjectsV2 gets an error body (SignatureDoesNotMatch); put starts
    // with a HEAD, whose 403 has no body and so no code.
    let errors = [
        (
            target.list().await.expect_err("list with a wrong secret"),
            "SignatureDoesNotMatch",
        ),
        (
            target
                .put(
                    &file,
                    &name_on(3),
                    &id,
                    &snapward::backends::UploadTag::default(),
                    &never(),
                )
                .await
                .expect_err("put with a wrong secret"),
            "HTTP 403",
        ),
    ];
    for (err, says) in errors {
        let TargetError::Refused { target: t, .. } = &err else {
            panic!("expected Refused, got {err:?}");
        };
        assert_eq!(t, "offsite");
        let text = format!("{err} {err:?}");
        assert!(text.contains(says), "{text}");
        assert!(text.contains(BUCKET), "names the bucket: {text}");
        assert!(
            text.contains("secretAccessKeyFile"),
            "says what to check: {text}"
        );
        for secret in [WRONG, SECRET_KEY, ACCESS_KEY] {
            assert!(!text.contains(secret), "leaks `{secret}`: {text}");
        }
    }
    let debug = format!("{target:?}");
    assert!(
        !debug.contains(WRONG) && !debug.contains(ACCESS_KEY),
        "{debug}"
    );
    assert!(
        !object_exists(&server, BUCKET, &format!("{KEY_PREFIX}{}", name_on(3))).await,
        "nothing was written"
    );
}

#[tokio::test]
async fn s3_missing_or_empty_credential_files_are_credentials_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    fs::write(&empty, "  \n").expect("write");
    let present = dir.path().join("present");
    fs::write(&present, "AKIAEXAMPLE\n").expect("write");
    let missing = dir.path().join("no-such-file").display().to_string();
    let cases = [
        (
            missing.clone(),
            present.display().to_string(),
            "accessKeyIdFile",
        ),
        (
            present.display().to_string(),
            missing,
            "secretAccessKeyFile",
        ),
        (
            present.display().to_string(),
            empty.display().to_string(),
            "secretAccessKeyFile",
        ),
    ];
    for (ak, sk, field) in cases {
        let cfg = model::S3Target {
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            region: "us-east-1".to_owned(),
            bucket: BUCKET.to_owned(),
            prefix: KEY_PREFIX.to_owned(),
            path_style: true,
            credentials: Some(model::S3Credentials {
                access_key_id_file: ak,
                secret_access_key_file: sk,
                session_token_file: None,
            }),
            server_side_encryption: None,
            object_lock: None,
            timeouts: None,
            stream: true,
        };
        let err = S3Target::new(
            "optional-offsite",
            &crate::support::s3::settings(&cfg),
            PREFIX,
        )
        .await
        .expect_err("no credentials");
        match &err {
            TargetError::CredentialsAbsent { target, detail } => {
                assert_eq!(target, "optional-offsite");
                assert!(detail.contains(field), "{detail}");
            }
            other => panic!("expected CredentialsAbsent, got {other:?}"),
        }
    }
}

#[rstest]
#[case::governance(model::ObjectLockMode::Governance, "GOVERNANCE")]
#[case::compliance(model::ObjectLockMode::Compliance, "COMPLIANCE")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_object_lock_retains_a_snapshot_against_delete(
    #[case] mode: model::ObjectLockMode,
    #[case] wire: &str,
) {
    let server = S3Server::moto();
    server.create_bucket("locked", true).await;
    let mut cfg = server.target_config("locked", KEY_PREFIX);
    cfg.object_lock = Some(model::ObjectLock { mode, days: 3 });
    let target = s3_target(&cfg).await;
    let work = tempfile::tempdir().expect("tempdir");
    let (file, id) = snapshot_file(work.path(), "snap", 32 * 1024, 55);
    let name = name_on(10);
    target
        .put(
            &file,
            &name,
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("locked upload");

    let head = head_metadata(&server, "locked", &format!("{KEY_PREFIX}{name}")).await;
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some(wire));
    let until = head
        .object_lock_retain_until_date()
        .expect("retain-until set")
        .secs();
    let now = jiff::Timestamp::now().as_second();
    assert!(
        until > now + 2 * 86_400 && until <= now + 3 * 86_400 + 60,
        "retain-until {until} is about now + 3 days (now {now})"
    );

    let outcome = target.delete(&name).await.expect("delete answers");
    assert_eq!(outcome, DeleteOutcome::RetainedByLock);
    let listed = target.list().await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].sha256.as_deref(), Some(id.sha256.as_str()));
    let versions = server
        .client()
        .list_object_versions()
        .bucket("locked")
        .prefix(KEY_PREFIX)
        .send()
        .await
        .expect("ListObjectVersions");
    assert_eq!(versions.versions().len(), 1);
    assert!(
        versions.delete_markers().is_empty(),
        "no delete marker hides it"
    );
}

#[rstest]
#[case::moto(Kind::Moto)]
#[case::s3s_fs(Kind::S3sFs)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_delete_on_a_plain_bucket_removes_only_the_named_snapshot(#[case] kind: Kind) {
    let server = S3Server::start(kind);
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let (a, a_id) = snapshot_file(work.path(), "a", 10_000, 400);
    let (b, b_id) = snapshot_file(work.path(), "b", 20_000, 401);
    target
        .put(
            &a,
            &name_on(1),
            &a_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("a");
    target
        .put(
            &b,
            &name_on(2),
            &b_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("b");

    assert_eq!(
        target.delete(&name_on(1)).await.expect("delete"),
        DeleteOutcome::Deleted
    );
    let names: Vec<String> = target
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec![name_on(2)]);
    // Deleting what is gone is not an error (a retried prune).
    assert_eq!(
        target.delete(&name_on(1)).await.expect("delete again"),
        DeleteOutcome::Deleted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_delete_on_a_versioned_bucket_leaves_no_version_and_no_delete_marker() {
    let server = S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    server.enable_versioning(BUCKET).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let work = tempfile::tempdir().expect("tempdir");
    let (file, id) = snapshot_file(work.path(), "snap", 10_000, 9);
    target
        .put(
            &file,
            &name_on(5),
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("put");

    assert_eq!(
        target.delete(&name_on(5)).await.expect("delete"),
        DeleteOutcome::Deleted
    );
    let versions = server
        .client()
        .list_object_versions()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListObjectVersions");
    assert!(versions.versions().is_empty(), "{versions:?}");
    assert!(versions.delete_markers().is_empty(), "{versions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_list_keeps_only_snapshot_names_directly_under_the_prefix() {
    let server = S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let client = server.client();
    let foreign = format!("{KEY_PREFIX}{}", name_on(4));
    for key in [
        foreign.as_str(),
        "cluster-a/openbao-latest.snap",
        "cluster-a/nested/openbao-20261104-021500.snap",
        "cluster-a/.openbao-20261104-021500.snap.partial",
        "cluster-a/openbao-20261104-021500.snap.sha256",
        "cluster-b/openbao-20261104-021500.snap",
        "openbao-20261104-021500.snap",
    ] {
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(b"not written by snapward".to_vec().into())
            .send()
            .await
            .expect("seed object");
    }
    let listed = target.list().await.expect("list");
    assert_eq!(
        listed,
        vec![RemoteSnapshot {
            name: name_on(4),
            size: 23,
            sha256: None,
            index: None,
            term: None,
            time: time_on(4),
            cluster_id: None,
            tag: None,
            sums: None,
            trust: snapward::backends::Trust::Unchecked,
        }],
        "only the snapshot-named key directly under the prefix, without identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_server_side_encryption_is_requested_on_every_upload() {
    let server = S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    let mut cfg = server.target_config(BUCKET, KEY_PREFIX);
    cfg.server_side_encryption = Some(model::ServerSideEncryption {
        mode: model::SseMode::Aes256,
        kms_key_id: None,
    });
    let target = s3_target(&cfg)
        .await
        .with_multipart(5 * MIB as u64, 5 * MIB as u64, 2);
    let work = tempfile::tempdir().expect("tempdir");
    let (small, small_id) = snapshot_file(work.path(), "small", 1000, 1);
    let (parts, parts_id) = snapshot_file(work.path(), "parts", 6 * MIB, 2);
    target
        .put(
            &small,
            &name_on(1),
            &small_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("small");
    target
        .put(
            &parts,
            &name_on(2),
            &parts_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("multipart");
    for day in [1, 2] {
        let head = head_metadata(&server, BUCKET, &format!("{KEY_PREFIX}{}", name_on(day))).await;
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("AES256")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cleanup_aborts_only_stale_multipart_uploads_of_snapshots() {
    let server = S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let client = server.client();
    let snapshot_key = format!("{KEY_PREFIX}{}", name_on(6));
    for key in [snapshot_key.as_str(), "cluster-a/someone-elses-upload.bin"] {
        client
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .expect("create multipart upload");
    }

    // moto 5.2.5 reports every upload as initiated 2010-11-10 (a constant in
    // its ListMultipartUploads answer), so "fresh" here means a threshold
    // longer than that: nothing is aborted.
    let century = Duration::from_secs(100 * 365 * 86_400);
    let fresh = target.cleanup_older_than(century).await.expect("cleanup");
    assert!(fresh.removed.is_empty(), "{fresh:?}");
    assert_eq!(server.uploads(BUCKET).await.len(), 2);

    // The day-old rule: the snapshot's upload is stale, the other is not ours.
    let stale = target.cleanup().await.expect("cleanup");
    assert_eq!(stale.removed.len(), 1, "{stale:?}");
    assert!(stale.removed[0].contains(&snapshot_key), "{stale:?}");
    assert_eq!(
        server.uploads(BUCKET).await,
        vec!["cluster-a/someone-elses-upload.bin".to_owned()],
        "an upload that is not a snapshot is never touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cleanup_on_a_store_without_multipart_listing_has_nothing_to_clean() {
    let server = S3Server::s3s_fs();
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX)).await;
    let cleaned = target
        .cleanup_older_than(Duration::ZERO)
        .await
        .expect("501 is nothing to clean");
    assert!(cleaned.removed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_cancel_mid_multipart_leaves_no_object_and_no_upload() {
    let server = S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    let cancel = CancellationToken::new();
    let on_progress = cancel.clone();
    // 4 parts of 5 MiB, one at a time; cancel once the first is stored.
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX))
        .await
        .with_multipart(5 * MIB as u64, 5 * MIB as u64, 1)
        .with_progress(Arc::new(move |bytes| {
            if bytes >= 5 * MIB as u64 {
                on_progress.cancel();
            }
        }));
    let work = tempfile::tempdir().expect("tempdir");
    let (file, id) = snapshot_file(work.path(), "snap", 20 * MIB, 77);

    let err = target
        .put(
            &file,
            &name_on(7),
            &id,
            &snapward::backends::UploadTag::default(),
            &cancel,
        )
        .await
        .expect_err("cancelled");
    assert!(matches!(err, TargetError::Cancelled), "{err:?}");
    assert!(!object_exists(&server, BUCKET, &format!("{KEY_PREFIX}{}", name_on(7))).await);
    assert!(server.uploads(BUCKET).await.is_empty());
    assert!(target.list().await.expect("list").is_empty());
}

#[rstest]
#[case::single_put(64 * 1024)]
#[case::multipart(11 * MIB)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_upload_of_a_file_that_does_not_match_its_identity_leaves_nothing(#[case] len: usize) {
    let server = S3Server::moto();
    server.create_bucket(BUCKET, false).await;
    let target = s3_target(&server.target_config(BUCKET, KEY_PREFIX))
        .await
        .with_multipart(5 * MIB as u64, 5 * MIB as u64, 2);
    let work = tempfile::tempdir().expect("tempdir");
    let (file, mut id) = snapshot_file(work.path(), "snap", len, 88);
    id.sha256 = sha256_hex(b"some other snapshot");

    let err = target
        .put(
            &file,
            &name_on(8),
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("does not match its snapshot identity"),
        "{err}"
    );
    assert!(!object_exists(&server, BUCKET, &format!("{KEY_PREFIX}{}", name_on(8))).await);
    assert!(server.uploads(BUCKET).await.is_empty());
}

// -------------------------------------------------------- filesystem ----

fn fs_target(dir: &Path) -> FsTarget {
    FsTarget::new(
        "nfs",
        &model::FilesystemTarget {
            path: dir.display().to_string(),
        },
        PREFIX,
        0o640,
    )
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn set_age(path: &Path, age: Duration) {
    let f = fs::File::options()
        .write(true)
        .open(path)
        .expect("open for mtime");
    f.set_modified(SystemTime::now() - age).expect("set mtime");
}

#[tokio::test]
async fn fs_put_list_fetch_delete_round_trip_with_verified_identity() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("offsite");
    let target = fs_target(&dir);
    let id = snapshot::verify_file(&fixture_snapshot()).expect("fixture verifies");
    let name = name_on(12);

    let confirmed = target
        .put(
            &fixture_snapshot(),
            &name,
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("put");
    assert_eq!(
        confirmed,
        PutOutcome::Confirmed(Confirmed {
            size: id.file_size,
            sha256: id.sha256.clone()
        })
    );
    assert_eq!(
        dir_names(&dir),
        vec![name.clone()],
        "no temp file left behind"
    );
    let mode = fs::metadata(dir.join(&name))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    let mut listed = target.list().await.expect("list");
    // The file was read in full: its sealed sums come with the listing.
    let sums = listed.first_mut().and_then(|r| r.sums.take());
    assert_eq!(sums.map(|s| s.identity), Some(id.clone()));
    assert_eq!(
        listed,
        vec![RemoteSnapshot {
            name: name.clone(),
            size: id.file_size,
            sha256: Some(id.sha256.clone()),
            index: Some(id.index),
            term: Some(id.term),
            time: time_on(12),
            cluster_id: None,
            tag: None,
            sums: None,
            trust: snapward::backends::Trust::Unchecked,
        }]
    );

    let dest = root.path().join("restored.snap");
    assert_eq!(
        target.fetch(&name, &dest, &never()).await.expect("fetch"),
        id.file_size
    );
    assert_eq!(
        fs::read(&dest).expect("read"),
        fs::read(fixture_snapshot()).expect("read")
    );
    let again = target
        .fetch(&name, &dest, &never())
        .await
        .expect_err("dest exists");
    assert!(matches!(again, TargetError::Io { .. }), "{again:?}");

    assert_eq!(
        target.delete(&name).await.expect("delete"),
        DeleteOutcome::Deleted
    );
    assert!(target.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn fs_put_is_create_only_and_never_overwrites() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = fs_target(root.path());
    let (first, first_id) = snapshot_file(root.path(), "first.bin", 5000, 1);
    let (second, second_id) = snapshot_file(root.path(), "second.bin", 6000, 2);
    let name = name_on(13);
    target
        .put(
            &first,
            &name,
            &first_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("first");
    let err = target
        .put(
            &second,
            &name,
            &second_id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("second");
    assert!(matches!(err, TargetError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(
        sha256_hex(&fs::read(root.path().join(&name)).expect("read")),
        first_id.sha256
    );
    assert!(
        !root.path().join(format!(".{name}.partial")).exists(),
        "no temp file left behind"
    );
}

#[tokio::test]
async fn fs_cleanup_removes_stale_partials_and_never_a_snapshot() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = fs_target(root.path());
    let stale = format!(".{}.partial", name_on(1));
    let fresh = format!(".{}.partial", name_on(2));
    let old_snapshot = name_on(3);
    let other = "notes.partial.txt";
    for f in [&stale, &fresh, &old_snapshot, &other.to_owned()] {
        fs::write(root.path().join(f), b"x").expect("write");
    }
    set_age(&root.path().join(&stale), Duration::from_secs(2 * 3600));
    set_age(
        &root.path().join(&old_snapshot),
        Duration::from_secs(400 * 86_400),
    );
    set_age(&root.path().join(other), Duration::from_secs(400 * 86_400));

    let cleaned = target.cleanup().await.expect("cleanup");
    assert_eq!(cleaned.removed, vec![stale.clone()]);
    let mut expect = vec![fresh.clone(), old_snapshot.clone(), other.to_owned()];
    expect.sort();
    assert_eq!(dir_names(root.path()), expect);

    // Even with no age limit, only temp files go.
    let all = target
        .cleanup_older_than(Duration::ZERO)
        .await
        .expect("cleanup");
    assert_eq!(all.removed, vec![fresh]);
    let mut expect = vec![old_snapshot, other.to_owned()];
    expect.sort();
    assert_eq!(dir_names(root.path()), expect);
}

#[tokio::test]
async fn fs_put_into_an_unwritable_directory_is_an_error_not_a_panic() {
    let root = tempfile::tempdir().expect("tempdir");
    let ro = root.path().join("read-only");
    fs::create_dir(&ro).expect("mkdir");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).expect("chmod");
    // root ignores mode bits; then use a directory the kernel refuses
    // (sysfs) to prove the same path.
    let dir = if fs::write(ro.join("probe"), b"").is_err() {
        ro.clone()
    } else {
        PathBuf::from("/sys")
    };
    assert!(
        fs::write(dir.join("probe"), b"").is_err(),
        "{} must be unwritable for this test",
        dir.display()
    );
    let target = fs_target(&dir);
    let (file, id) = snapshot_file(root.path(), "snap", 1000, 3);
    let err = target
        .put(
            &file,
            &name_on(14),
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("unwritable");
    assert!(
        matches!(err, TargetError::Io { .. } | TargetError::Failed { .. }),
        "{err:?}"
    );
    assert!(!dir.join(name_on(14)).exists());
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[tokio::test]
async fn fs_missing_mount_is_a_clear_failure_and_only_the_configured_dir_is_created() {
    let root = tempfile::tempdir().expect("tempdir");
    let (file, id) = snapshot_file(root.path(), "snap", 1000, 4);

    let unmounted = root.path().join("mnt/nfs/snapshots");
    let target = fs_target(&unmounted);
    let err = target
        .put(
            &file,
            &name_on(15),
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("no mount");
    assert!(
        matches!(&err, TargetError::Failed { detail, .. } if detail.contains("mounted")),
        "{err:?}"
    );
    assert!(!root.path().join("mnt").exists(), "no parent chain created");
    let err = target.list().await.expect_err("list of a missing mount");
    assert!(matches!(err, TargetError::Failed { .. }), "{err:?}");

    let fresh = root.path().join("snapshots");
    let target = fs_target(&fresh);
    assert!(target.list().await.expect("empty").is_empty());
    target
        .put(
            &file,
            &name_on(15),
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect("creates the configured dir");
    assert_eq!(dir_names(&fresh), vec![name_on(15)]);
}

#[tokio::test]
async fn fs_list_reports_a_corrupt_snapshot_without_identity() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = fs_target(root.path());
    fs::write(root.path().join(name_on(16)), b"not a snapshot").expect("write");
    fs::write(root.path().join("openbao-latest.snap"), b"ignored").expect("write");
    let listed = target.list().await.expect("list");
    assert_eq!(
        listed,
        vec![RemoteSnapshot {
            name: name_on(16),
            size: 14,
            sha256: None,
            index: None,
            term: None,
            time: time_on(16),
            cluster_id: None,
            tag: None,
            sums: None,
            trust: snapward::backends::Trust::Unchecked,
        }]
    );
}

#[tokio::test]
async fn fs_put_of_a_file_not_matching_its_identity_publishes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("offsite");
    fs::create_dir(&dir).expect("mkdir");
    let target = fs_target(&dir);
    let (file, mut id) = snapshot_file(root.path(), "snap", 3000, 5);
    id.sha256 = sha256_hex(b"another file");
    let err = target
        .put(
            &file,
            &name_on(17),
            &id,
            &snapward::backends::UploadTag::default(),
            &never(),
        )
        .await
        .expect_err("mismatch");
    assert!(
        err.to_string()
            .contains("does not match its snapshot identity"),
        "{err}"
    );
    assert!(dir_names(&dir).is_empty(), "{:?}", dir_names(&dir));
}

#[tokio::test]
async fn fs_cancelled_put_leaves_no_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("offsite");
    let target = fs_target(&dir);
    let (file, id) = snapshot_file(root.path(), "snap", 3 * MIB, 6);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = target
        .put(
            &file,
            &name_on(18),
            &id,
            &snapward::backends::UploadTag::default(),
            &cancel,
        )
        .await
        .expect_err("cancelled");
    assert!(matches!(err, TargetError::Cancelled), "{err:?}");
    assert!(dir_names(&dir).is_empty(), "{:?}", dir_names(&dir));
}
