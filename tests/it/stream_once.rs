//! Stream once (issue 14 item 2, DESIGN.md §10): the snapshot's bytes go
//! from the active node to the local temp file, the verifier and a
//! filesystem target's temp copy at the same time; the target's upload
//! commits that copy (create-only link, read-back) after `verify` linked
//! the local file. Real OpenBao, real directories, the real binary.
//!
//! The assertions are on files and report fields (item kinds), never on
//! log wording or timing. Crash points inside the overlapped path are in
//! `crash.rs` (`stream.after-verify`, `fs.after-publish`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::drill::{Drill, PolicyOpts, SNAP_PREFIX, snap_files};
use crate::support::outcome::Outcome;

fn nfs(d: &Drill) -> PathBuf {
    d.path("nfs")
}

/// A single-node cluster initialised by snapward, a policy with the local
/// store and the filesystem target `nfs` (no S3).
async fn bed() -> (Drill, PathBuf) {
    let mut d = Drill::single(false).await;
    let p = d.policy(
        "policy",
        &PolicyOpts {
            nfs: Some(nfs(&d)),
            ..d.opts()
        },
    );
    let keys = d.keys_dir();
    d.snapward_init(&p, &keys).await;
    (d, p)
}

/// The kinds (and targets) of an action's report items.
fn items<'a>(r: &'a Outcome, id: &str) -> Vec<&'a Value> {
    r.action(id)["items"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

fn has_item(r: &Outcome, id: &str, kind: &str, target: Option<&str>) -> bool {
    items(r, id)
        .iter()
        .any(|i| i["kind"] == kind && target.is_none_or(|t| i["target"] == t))
}

/// Every temp file (`.<name>.partial`) of `dir`.
fn stray(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(SNAP_PREFIX) && !n.ends_with(".snap"))
                .collect()
        })
        .unwrap_or_default()
}

fn expect_no_temp_files(d: &Drill) {
    for dir in [d.snap_dir(), nfs(d)] {
        let s = stray(&dir);
        assert!(s.is_empty(), "temp files left in {}: {s:?}", dir.display());
    }
}

/// The target holds exactly the local snapshots, byte-identical.
fn expect_target_mirrors_local(d: &Drill, r: &Outcome) {
    let local: BTreeMap<String, Vec<u8>> = snap_files(&d.snap_dir());
    let remote: BTreeMap<String, Vec<u8>> = snap_files(&nfs(d));
    assert_eq!(
        remote.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>(),
        "the target holds other snapshots than the local store\n{}",
        r.context()
    );
    for (name, bytes) in &local {
        assert!(
            remote[name] == *bytes,
            "{name} on the target differs from the local copy"
        );
        snapward::snapshot::verify_file(&nfs(d).join(name))
            .unwrap_or_else(|e| panic!("{name} on the target is not a valid snapshot: {e}"));
    }
}

#[tokio::test]
async fn a_filesystem_target_gets_the_copy_streamed_with_the_snapshot_confirmed_and_identical() {
    let (d, p) = bed().await;
    let (r, name) = d.backup(&p, &d.snap_dir()).await;
    r.expect_status("upload:nfs", "succeeded");
    assert!(
        has_item(&r, "snapshot", "streamed-to", Some("nfs")),
        "the snapshot streamed to `nfs` at the same time\n{}",
        r.context()
    );
    assert!(
        !has_item(&r, "snapshot", "stream-detached", None),
        "no target dropped out of the stream\n{}",
        r.context()
    );
    assert!(
        r.named("upload:nfs", "stream-committed").contains(&name),
        "upload:nfs published the streamed copy instead of copying the local file\n{}",
        r.context()
    );
    assert!(
        r.named("upload:nfs", "uploaded").contains(&name),
        "and reports it as uploaded (confirmed)\n{}",
        r.context()
    );
    expect_target_mirrors_local(&d, &r);
    expect_no_temp_files(&d);
    // The confirmed upload lets the target's prune run, as before.
    assert!(
        ["succeeded", "nothing-to-do"].contains(&r.status("prune:nfs")),
        "prune:nfs ran after the confirmed commit\n{}",
        r.context()
    );
}

/// `spec.maxSnapshotBytes` far below the real snapshot: the stream ends
/// normally and only the verifier refuses it — verification failing at
/// the very end, after every byte went to the target's temp copy.
#[tokio::test]
async fn a_snapshot_failing_verification_at_the_end_leaves_no_copy_on_the_target_and_prunes_nothing()
 {
    let (d, p) = bed().await;
    let (first, _) = d.backup(&p, &d.snap_dir()).await;
    first.expect_status("upload:nfs", "succeeded");
    let local_before = snap_files(&d.snap_dir());
    let nfs_before = snap_files(&nfs(&d));
    assert_eq!(nfs_before.len(), 1, "{}", first.context());

    let yaml = fs::read_to_string(&p).expect("read the policy");
    let limited = d.path("limited.yaml");
    fs::write(
        &limited,
        yaml.replacen("spec:\n", "spec:\n  maxSnapshotBytes: \"4Ki\"\n", 1),
    )
    .expect("write the policy");
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let r = d.run(&limited).await;
    assert_ne!(r.code, Some(0), "the run fails\n{}", r.context());
    assert!(
        has_item(&r, "snapshot", "streamed-to", Some("nfs")),
        "the snapshot streamed to `nfs` before the verdict\n{}",
        r.context()
    );
    assert_eq!(r.status("verify"), "failed", "{}", r.context());
    for id in ["upload:nfs", "prune:nfs", "prune:local"] {
        assert_ne!(
            r.status(id),
            "succeeded",
            "{id} must not run\n{}",
            r.context()
        );
    }
    assert!(
        snap_files(&nfs(&d)) == nfs_before,
        "the target holds exactly what it held before (nothing new, nothing pruned)"
    );
    assert!(
        snap_files(&d.snap_dir()) == local_before,
        "the local store holds exactly what it held before"
    );
    expect_no_temp_files(&d);
}

/// The fault point `fs.stream-write` fails every write of the target's
/// streamed copy: the target is detached, the local copy is intact, and
/// `upload:nfs` uploads from the local file as before.
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_target_failing_mid_stream_is_detached_and_gets_the_snapshot_by_the_normal_upload() {
    let (d, p) = bed().await;
    d.wait_for_a_fresh_second(&d.snap_dir()).await;
    let r = d
        .snapward_env("run", &p, &[], &[("FAILPOINTS", "fs.stream-write=return")])
        .await;
    r.expect_exit(0).expect_branch("backup");
    assert!(
        items(&r, "snapshot")
            .iter()
            .any(|i| i["kind"] == "stream-detached" && i["target"] == "nfs"),
        "`nfs` dropped out of the stream\n{}",
        r.context()
    );
    r.expect_status("verify", "succeeded")
        .expect_status("upload:nfs", "succeeded");
    assert!(
        !has_item(&r, "upload:nfs", "stream-committed", None),
        "nothing streamed was published\n{}",
        r.context()
    );
    assert!(
        has_item(&r, "upload:nfs", "uploaded", None),
        "the normal upload sent it\n{}",
        r.context()
    );
    let local = snap_files(&d.snap_dir());
    assert_eq!(local.len(), 1, "{}", r.context());
    for name in local.keys() {
        snapward::snapshot::verify_file(&d.snap_dir().join(name))
            .unwrap_or_else(|e| panic!("the local copy {name} is not intact: {e}"));
    }
    expect_target_mirrors_local(&d, &r);
    expect_no_temp_files(&d);
}

/// S3 by default (no `stream` key) sends the parts while the snapshot
/// streams and the upload publishes them; `stream: false` uploads from the
/// verified local file. Both leave one confirmed object per snapshot,
/// byte-identical to the local copy (a streamed one with its identity
/// object), and no staging key or open upload.
#[tokio::test]
async fn s3_streams_by_default_and_stream_false_uploads_from_the_file_both_publishing_the_confirmed_object()
 {
    use crate::support::drill::{BUCKET, S3_PREFIX};
    use sha2::{Digest, Sha256};
    let mut d = Drill::single(true).await;
    let plain = d.policy("plain", &d.opts());
    let keys = d.keys_dir();
    d.snapward_init(&plain, &keys).await;
    let streamed = d.policy(
        "streamed",
        &PolicyOpts {
            s3_stream: true,
            ..d.opts()
        },
    );
    for (p, stream) in [(&plain, false), (&streamed, true)] {
        d.wait_for_a_fresh_second(&d.snap_dir()).await;
        let (r, name) = d.backup(p, &d.snap_dir()).await;
        r.expect_status("upload:s3", "succeeded");
        assert_eq!(
            has_item(&r, "snapshot", "streamed-to", Some("s3")),
            stream,
            "stream: {stream}: the parts went out with the snapshot\n{}",
            r.context()
        );
        assert_eq!(
            r.named("upload:s3", "stream-committed").contains(&name),
            stream,
            "stream: {stream}: upload:s3 published the streamed parts\n{}",
            r.context()
        );
        assert!(
            r.named("upload:s3", "uploaded").contains(&name),
            "stream: {stream}: reported as uploaded (confirmed)\n{}",
            r.context()
        );
        let objects = d.s3().objects(BUCKET).await;
        let key = format!("{S3_PREFIX}{name}");
        let local = fs::read(d.snap_dir().join(&name)).expect("the local copy");
        assert_eq!(
            objects.get(&key).map(|o| o.1),
            Some(local.len() as i64),
            "stream: {stream}: {key} holds the snapshot: {objects:?}"
        );
        assert_eq!(
            d.s3().object_sha256(BUCKET, &key).await,
            hex::encode(Sha256::digest(&local)),
            "stream: {stream}: {key} is byte-identical to the local copy"
        );
        let identity = format!("{S3_PREFIX}.{name}.identity");
        assert_eq!(
            objects.contains_key(&identity),
            stream,
            "stream: {stream}: a streamed snapshot has its identity object: {objects:?}"
        );
        assert!(
            objects.keys().all(|k| !k.contains(".partial-")),
            "stream: {stream}: no staging key: {objects:?}"
        );
        let uploads = d.s3().uploads(BUCKET).await;
        assert!(
            uploads.is_empty(),
            "stream: {stream}: no open upload: {uploads:?}"
        );
    }
}

// ---- S3: the streamed upload at the backend level ------------------------
//
// `S3Target::with_streaming(true)`: parts go straight to the final key
// while the bytes arrive (an incomplete multipart upload, invisible);
// `commit` writes the identity object `<prefix>.<name>.identity`
// create-only, then completes the upload create-only.

mod s3 {
    use std::time::Duration;

    use rstest::rstest;
    use sha2::{Digest, Sha256};
    use snapward::backends::s3::S3Target;
    use snapward::backends::tail::{self, Tail, TailFeed};
    use snapward::backends::{PutOutcome, StreamingPut, Target, TargetError, UploadTag};
    use snapward::snapshot::Identity;
    use tokio_util::sync::CancellationToken;

    use crate::support::fault_proxy::{Fault, FaultProxy, Rule};
    use crate::support::s3::{Kind, S3Server, settings};
    use crate::support::work::{PREFIX, snap};

    const BUCKET: &str = "stream";
    const KEY_PREFIX: &str = "once/";
    const MIB: usize = 1 << 20;

    /// A little over 20 MiB that do not compress: four whole 5 MiB parts
    /// and a short last one.
    fn blob() -> Vec<u8> {
        let len = 20 * MIB + 4321;
        let mut out = Vec::with_capacity(len + 32);
        let mut h = Sha256::digest(b"stream once");
        while out.len() < len {
            h = Sha256::digest(h);
            out.extend_from_slice(&h);
        }
        out.truncate(len);
        out
    }

    fn identity(bytes: &[u8]) -> Identity {
        Identity {
            index: 42,
            term: 3,
            version: 1,
            state_size: 1,
            file_size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        }
    }

    async fn target(s3: &S3Server, endpoint: &str) -> S3Target {
        let mut cfg = s3.target_config(BUCKET, KEY_PREFIX);
        cfg.endpoint = Some(endpoint.to_owned());
        S3Target::new("offsite", &settings(&cfg), PREFIX)
            .await
            .expect("target")
            .with_multipart(5 * MIB as u64, 5 * MIB as u64, 2)
            .with_streaming(true)
    }

    async fn server(kind: Kind) -> S3Server {
        let s3 = S3Server::start(kind);
        s3.create_bucket(BUCKET, false).await;
        s3
    }

    fn identity_key(name: &str) -> String {
        format!("{KEY_PREFIX}.{name}.identity")
    }

    /// An empty object at `key` with identity-object metadata (as a
    /// crashed stream or a hand-made object leaves it).
    async fn put_empty(s3: &S3Server, key: &str, size: u64, sha256: &str) {
        s3.client()
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .metadata("snapward-size", size.to_string())
            .metadata("snapward-sha256", sha256)
            .body(Vec::new().into())
            .send()
            .await
            .expect("put");
    }

    /// A local temp file being written, followed as the local writer's is
    /// (`snapward::backends::tail`): what a streaming target reads.
    struct Local {
        _dir: tempfile::TempDir,
        file: std::fs::File,
        feed: Option<TailFeed>,
        tail: Tail,
    }

    fn local() -> Local {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(dir.path().join("snap.partial")).expect("create");
        let (feed, tail) = tail::follow(&file).expect("follow");
        Local {
            _dir: dir,
            file,
            feed: Some(feed),
            tail,
        }
    }

    impl Local {
        /// Appends `bytes` in 64 KiB chunks, telling the feed `told` (the
        /// bytes the verifier saw: the same, unless a test says otherwise).
        fn write(&mut self, bytes: &[u8], told: &[u8]) {
            use std::io::Write;
            let feed = self.feed.as_mut().expect("open");
            for (chunk, seen) in bytes.chunks(64 * 1024).zip(told.chunks(64 * 1024)) {
                self.file.write_all(chunk).expect("write");
                feed.wrote(seen);
            }
        }

        fn complete(&mut self) {
            self.feed.take().expect("open").complete();
        }
    }

    async fn begin(t: &S3Target, name: &str, l: &Local) -> Box<dyn StreamingPut> {
        let put = t
            .begin_stream(name, &l.tail)
            .await
            .expect("begin")
            .expect("streams");
        assert!(put.follows_file(), "an S3 stream reads the local file");
        put
    }

    /// A stream of `bytes`, written whole, neither committed nor aborted.
    async fn fed(t: &S3Target, name: &str, bytes: &[u8]) -> (Box<dyn StreamingPut>, Local) {
        let mut l = local();
        let put = begin(t, name, &l).await;
        l.write(bytes, bytes);
        l.complete();
        (put, l)
    }

    #[rstest]
    #[case::moto(Kind::Moto)]
    #[case::s3s_fs(Kind::S3sFs)]
    #[tokio::test]
    async fn s3_streamed_parts_are_published_create_only_with_their_identity_object(
        #[case] kind: Kind,
    ) {
        let s3 = server(kind).await;
        let t = target(&s3, &s3.endpoint).await;
        let name = snap("20261202-020000");
        let bytes = blob();
        let id = identity(&bytes);
        let (put, _local) = fed(&t, &name, &bytes).await;
        let key = format!("{KEY_PREFIX}{name}");
        assert!(
            s3.objects(BUCKET).await.is_empty(),
            "nothing is visible before the commit"
        );
        let done = put
            .commit(&id, &UploadTag::default(), &CancellationToken::new())
            .await
            .expect("committed");
        let PutOutcome::Confirmed(c) = done else {
            panic!("a real target confirms: {done:?}");
        };
        assert_eq!(
            (c.size, c.sha256.as_str()),
            (id.file_size, id.sha256.as_str())
        );
        let objects = s3.objects(BUCKET).await;
        assert_eq!(
            objects.keys().collect::<Vec<_>>(),
            vec![&identity_key(&name), &key],
            "the snapshot and its identity object, nothing else"
        );
        assert_eq!(
            objects[&identity_key(&name)].1,
            0,
            "the identity object is empty"
        );
        assert_eq!(s3.object_sha256(BUCKET, &key).await, id.sha256);
        let listed = t.list().await.expect("list");
        assert_eq!(
            listed.len(),
            1,
            "the identity object is not a snapshot: {listed:?}"
        );
        assert_eq!(listed[0].name, name);
        assert_eq!(listed[0].size, id.file_size);
        assert_eq!(listed[0].sha256.as_deref(), Some(id.sha256.as_str()));
        assert_eq!((listed[0].index, listed[0].term), (Some(42), Some(3)));
        if matches!(kind, Kind::Moto) {
            assert!(s3.uploads(BUCKET).await.is_empty(), "no upload left");
            // moto reports the composite CRC32 of the parts: the commit's
            // confirming HEAD compared it (and accepted it: ours).
            let head = s3
                .client()
                .head_object()
                .bucket(BUCKET)
                .key(&key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .expect("head");
            assert!(
                head.checksum_crc32().is_some(),
                "the store reports the parts' CRC32: {head:?}"
            );
        }
        // Fetched and checked against the identity object's SHA-256.
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("fetched");
        let got = t
            .fetch(&name, &dest, &CancellationToken::new())
            .await
            .expect("fetch");
        assert_eq!(got, id.file_size);
        assert_eq!(std::fs::read(&dest).expect("fetched"), bytes);
        // Create-only: a second stream of the same name is refused.
        assert!(matches!(
            t.begin_stream(&name, &local().tail).await,
            Err(TargetError::AlreadyExists { .. })
        ));
        // Prune deletes the snapshot, then its identity object.
        t.delete(&name).await.expect("delete");
        assert!(
            s3.objects(BUCKET).await.is_empty(),
            "both gone: {:?}",
            s3.objects(BUCKET).await
        );
    }

    /// A streamed object whose identity object was tampered with (another
    /// SHA-256): the fetch is refused, nothing is left in its place.
    #[tokio::test]
    async fn s3_a_fetch_checks_the_streamed_bytes_against_the_identity_object() {
        let s3 = server(Kind::Moto).await;
        let t = target(&s3, &s3.endpoint).await;
        let name = snap("20261202-021000");
        let bytes = blob();
        let id = identity(&bytes);
        fed(&t, &name, &bytes)
            .await
            .0
            .commit(&id, &UploadTag::default(), &CancellationToken::new())
            .await
            .expect("committed");
        let forged = hex::encode(Sha256::digest(b"forged"));
        s3.client()
            .copy_object()
            .bucket(BUCKET)
            .key(identity_key(&name))
            .copy_source(format!("{BUCKET}/{}", identity_key(&name)))
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .metadata("snapward-sha256", &forged)
            .metadata("snapward-size", id.file_size.to_string())
            .send()
            .await
            .expect("rewrite the identity object");
        let listed = t.list().await.expect("list");
        assert_eq!(listed[0].sha256.as_deref(), Some(forged.as_str()));
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("fetched");
        let err = t
            .fetch(&name, &dest, &CancellationToken::new())
            .await
            .expect_err("the bytes do not match the identity");
        assert!(
            matches!(err, TargetError::NotConfirmed { .. }),
            "refused as not matching: {err}"
        );
        assert!(!dest.exists(), "no unchecked download left");
    }

    /// Abort after every byte was sent or halfway, a part refused
    /// mid-stream, the local writer failing before the end, the parts not
    /// being the bytes the verifier saw, a verified snapshot of another
    /// size, and CompleteMultipartUpload refused: none leaves an object, an
    /// identity object or an open upload.
    #[rstest]
    #[case::aborted("aborted")]
    #[case::aborted_mid_stream("aborted-mid-stream")]
    #[case::part_refused("part")]
    #[case::writer_failed("writer-failed")]
    #[case::not_the_verified_bytes("not-the-verified-bytes")]
    #[case::not_the_verified_size("not-the-verified-size")]
    #[case::complete_refused("complete")]
    #[tokio::test]
    async fn s3_a_stream_that_fails_anywhere_leaves_no_object_no_identity_and_no_upload(
        #[case] how: &str,
    ) {
        let s3 = server(Kind::Moto).await;
        let proxy = FaultProxy::start(&s3.endpoint).await;
        match how {
            "part" => proxy.add(Rule::new(
                "part",
                |r| r.is_upload_part(),
                Fault::s3_error(403, "AccessDenied", "refused by the fault proxy"),
            )),
            "complete" => proxy.add(Rule::new(
                "complete",
                |r| r.is_complete_multipart(),
                Fault::s3_error(403, "AccessDenied", "refused by the fault proxy"),
            )),
            _ => {}
        }
        let t = target(&s3, &proxy.url).await;
        let name = snap("20261202-030000");
        let bytes = blob();
        let mut id = identity(&bytes);
        let mut l = local();
        let put = begin(&t, &name, &l).await;
        let half = bytes.len() / 2;
        l.write(&bytes[..half], &bytes[..half]);
        let outcome = match how {
            "aborted-mid-stream" => {
                put.abort().await;
                Err(TargetError::Cancelled)
            }
            _ => {
                let mut seen = bytes[half..].to_vec();
                if how == "not-the-verified-bytes" {
                    seen[1000] ^= 1;
                }
                l.write(&bytes[half..], &seen);
                match how {
                    "writer-failed" => drop(l.feed.take()),
                    _ => l.complete(),
                }
                if how == "not-the-verified-size" {
                    id.file_size -= 1;
                }
                if how == "aborted" {
                    put.abort().await;
                    Err(TargetError::Cancelled)
                } else {
                    put.commit(&id, &UploadTag::default(), &CancellationToken::new())
                        .await
                        .map(|_| ())
                }
            }
        };
        assert!(outcome.is_err(), "{how}: the stream fails");
        if how == "part" || how == "complete" {
            assert!(proxy.fired(how) >= 1, "{}", proxy.log());
        }
        assert!(
            s3.objects(BUCKET).await.is_empty(),
            "{how}: no object left: {:?}",
            s3.objects(BUCKET).await
        );
        assert!(s3.uploads(BUCKET).await.is_empty(), "{how}: no upload left");
        assert!(t.list().await.expect("list").is_empty());
    }

    /// The parts go out while the file is still being written: with half
    /// the snapshot in the file (and the stream still open), the parts
    /// that are whole in it are already on the store.
    #[tokio::test]
    async fn s3_parts_go_out_while_the_local_file_is_still_being_written() {
        let s3 = server(Kind::Moto).await;
        let proxy = FaultProxy::start(&s3.endpoint).await;
        let t = target(&s3, &proxy.url).await;
        let name = snap("20261202-031000");
        let bytes = blob();
        let id = identity(&bytes);
        let mut l = local();
        let put = begin(&t, &name, &l).await;
        // Two whole 5 MiB parts and some.
        let first = 11 * MIB;
        l.write(&bytes[..first], &bytes[..first]);
        // Waits for the store to accept them (no deadline is asserted: a
        // follower that waited for the end would never get there).
        let accepted = || {
            proxy.count(|r| {
                r.method == "PUT" && r.target.contains("partNumber=") && r.status == Some(200)
            })
        };
        // (A cap, 300 s as everywhere, only so that a broken follower
        // fails instead of hanging.)
        for _ in 0..6000 {
            if accepted() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            accepted() >= 2,
            "no part went out before the end of the stream\n{}",
            proxy.log()
        );
        let key = format!("{KEY_PREFIX}{name}");
        let parts = accepted();
        assert_eq!(parts, 2, "only the whole parts: the third is not complete");
        assert!(s3.objects(BUCKET).await.is_empty(), "nothing visible yet");
        l.write(&bytes[first..], &bytes[first..]);
        l.complete();
        put.commit(&id, &UploadTag::default(), &CancellationToken::new())
            .await
            .expect("committed");
        assert_eq!(s3.object_sha256(BUCKET, &key).await, id.sha256);
    }

    /// A crash between the identity object and the completed upload leaves
    /// an identity object without its snapshot and an open upload: never
    /// listed as a snapshot; the stale cleanup aborts the upload and
    /// deletes that identity object, and keeps a snapshot's identity and
    /// anything that is not snapward's.
    #[tokio::test]
    async fn s3_cleanup_removes_a_crashed_streams_upload_and_orphaned_identity_only() {
        let s3 = server(Kind::Moto).await;
        let t = target(&s3, &s3.endpoint).await;
        let bytes = blob();
        let id = identity(&bytes);
        let kept = snap("20261202-035000");
        fed(&t, &kept, &bytes)
            .await
            .0
            .commit(&id, &UploadTag::default(), &CancellationToken::new())
            .await
            .expect("committed");
        let name = snap("20261202-040000");
        // A crash: fed, never committed nor aborted, and the identity
        // object written (as `commit` does first).
        let (crashed, _local) = fed(&t, &name, &bytes).await;
        std::mem::forget(crashed);
        let staging_object = format!("{KEY_PREFIX}.{name}.partial-deadbeef");
        let other = format!("{KEY_PREFIX}.not-ours");
        for key in [&identity_key(&name), &staging_object, &other] {
            put_empty(&s3, key, id.file_size, &id.sha256).await;
        }
        assert!(!s3.uploads(BUCKET).await.is_empty());
        let listed = t.list().await.expect("list");
        assert_eq!(
            listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            vec![kept.as_str()],
            "an identity object without its snapshot is not a snapshot"
        );
        let cleaned = t.cleanup_older_than(Duration::ZERO).await.expect("cleanup");
        assert!(
            cleaned.removed.iter().any(|r| r == &identity_key(&name)),
            "{cleaned:?}"
        );
        assert!(
            s3.uploads(BUCKET).await.is_empty(),
            "the crashed stream's upload is aborted"
        );
        let kept_key = format!("{KEY_PREFIX}{kept}");
        assert_eq!(
            s3.objects(BUCKET).await.keys().collect::<Vec<_>>(),
            vec![&other, &identity_key(&kept), &kept_key],
            "the orphaned identity and an earlier version's staging object are deleted; the snapshot, its identity and the foreign object kept"
        );
        assert_eq!(
            t.list().await.expect("list")[0].sha256.as_deref(),
            Some(id.sha256.as_str())
        );
    }

    /// An identity object left by a crashed stream does not survive an
    /// upload of the same snapshot from the local file: the listing then
    /// reads the uploaded object's own metadata.
    #[tokio::test]
    async fn s3_an_upload_from_the_local_file_replaces_a_crashed_streams_identity_object() {
        let s3 = server(Kind::Moto).await;
        let t = target(&s3, &s3.endpoint).await;
        let name = snap("20261202-050000");
        let bytes = blob();
        let id = identity(&bytes);
        let stale = hex::encode(Sha256::digest(b"stale"));
        put_empty(&s3, &identity_key(&name), id.file_size, &stale).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(&name);
        std::fs::write(&file, &bytes).expect("write");
        t.put(
            &file,
            &name,
            &id,
            &UploadTag::default(),
            &CancellationToken::new(),
        )
        .await
        .expect("uploaded");
        assert_eq!(
            s3.objects(BUCKET).await.keys().collect::<Vec<_>>(),
            vec![&format!("{KEY_PREFIX}{name}")],
            "the stale identity object is gone"
        );
        assert_eq!(
            t.list().await.expect("list")[0].sha256.as_deref(),
            Some(id.sha256.as_str())
        );
    }
}
