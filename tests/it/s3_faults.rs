//! S3 faults on the backup path, end to end: the real `snapward run` binary,
//! a real OpenBao server, and a real S3 server (s3s-fs 0.14.1, which checks
//! SigV4, or moto 5.2.5, which lists multipart uploads) behind
//! `support::fault_proxy`, which forwards bytes unmodified and injects, per
//! request and per count: 500 InternalError, 503 SlowDown, a connection
//! reset in the middle of an UploadPart body, a stall, and a HEAD that
//! reports the wrong size or checksum.
//!
//! Every test starts from the same history: two old snapshots of the
//! cluster, both local and in the bucket, that the target's retention
//! (keepLast 1) deletes once — and only once — this run's snapshot is
//! confirmed there. What each test asserts is behaviour (exit code, report,
//! what the stores hold, how many attempts the proxy saw), never a time.
//!
//! The multipart tests fill OpenBao until its snapshot is above the 16 MiB
//! single-PUT threshold (two parts: 16 MiB + the rest).
//!
//! Needs `eval "$(scripts/test-env.sh)"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use snapward::backends::Target;
use snapward::backends::s3::{DEFAULT_MULTIPART_THRESHOLD, MAX_ATTEMPTS, S3Target};
use tokio_util::sync::CancellationToken;

use crate::support::fault_proxy::{Fault, FaultProxy, Request, Rule};
use crate::support::outcome::Outcome;
use crate::support::s3::{Kind, S3Server, SECRET_KEY};
use crate::support::work::{
    Bao, PREFIX, Work, copy_as, nodes_json, partials, sha256_file, snap, snaps,
};

const BUCKET: &str = "snapshots";
const KEY_PREFIX: &str = "prod/";
/// Enough data that the snapshot goes up in parts (> 16 MiB).
const MULTIPART_MIB: usize = 20;

/// A cluster, an S3 server behind a fault proxy, and the old history.
struct Setup {
    bao: Bao,
    s3: S3Server,
    proxy: FaultProxy,
    work: Work,
    token: PathBuf,
    local: PathBuf,
    /// The old snapshots (names), local and remote.
    old: Vec<String>,
    /// The bucket before the run under test.
    before: BTreeMap<String, (String, i64)>,
}

async fn setup(kind: Kind, fill_mib: usize) -> Setup {
    let (bao, s3) = tokio::join!(Bao::single(), async { S3Server::start(kind) });
    s3.create_bucket(BUCKET, false).await;
    let proxy = FaultProxy::start(&s3.endpoint).await;
    let work = Work::new();
    let token = work.file("token", &bao.token);

    // A real snapshot of this cluster (a local-only run) is the history.
    let seed_dir = work.path("seed");
    let p = work.policy(
        "seed",
        nodes_json(&[("bao-0", bao.cluster.address(0).as_str())]),
        &token,
        &seed_dir,
        json!({"keepLast": 5}),
        "20s",
    );
    let run = work.run(&work.write_policy("seed.yaml", &p), &[]).await;
    run.expect_exit(0);
    let seed = seed_dir.join(run.snapshot_name());
    bao.advance("after-seed").await;
    if fill_mib > 0 {
        bao.fill(fill_mib).await;
    }

    let old = vec![snap("20210101-020000"), snap("20210102-020000")];
    let local = work.path("snapshots");
    let names: Vec<&str> = old.iter().map(String::as_str).collect();
    copy_as(&seed, &local, &names);
    // Straight to the server, the way snapward uploads (identity metadata).
    s3.seed(BUCKET, KEY_PREFIX, &seed, &names).await;
    let before = s3.objects(BUCKET).await;
    assert_eq!(before.len(), 2);
    Setup {
        bao,
        s3,
        proxy,
        work,
        token,
        local,
        old,
        before,
    }
}

impl Setup {
    /// The policy: local keepLast 10, target `offsite` (keepLast 1) through
    /// the proxy; `tweak` edits the target's `s3` section.
    fn policy(&self, tweak: impl FnOnce(&mut Value)) -> PathBuf {
        let mut s3 =
            serde_json::to_value(self.s3.target_config(BUCKET, KEY_PREFIX)).expect("s3 json");
        s3["endpoint"] = json!(self.proxy.url);
        // These faults are about the upload from the local file (also the
        // fallback of a detached stream); the streamed path's faults are in
        // stream_once.rs.
        s3["stream"] = json!(false);
        tweak(&mut s3);
        let mut p = self.work.policy(
            "faults",
            nodes_json(&[("bao-0", self.bao.cluster.address(0).as_str())]),
            &self.token,
            &self.local,
            json!({"keepLast": 10}),
            "20s",
        );
        p["spec"]["targets"] = json!([
            {"name": "offsite", "s3": s3, "retention": {"keepLast": 1}}
        ]);
        self.work.write_policy("policy.yaml", &p)
    }

    /// Runs `policy` and checks what every run must: no secret in any
    /// output, no temp file left, every old snapshot still local.
    async fn run(&self, policy: &Path) -> Outcome {
        let run = self.work.run(policy, &[]).await;
        let all = run.everything();
        for secret in [SECRET_KEY, self.bao.token.as_str()] {
            assert!(
                !all.contains(secret),
                "a secret reached the output: {}",
                run.context()
            );
        }
        assert!(partials(&self.local).is_empty(), "{}", run.context());
        let local = snaps(&self.local);
        for o in &self.old {
            assert!(local.contains(o), "{o} gone locally: {}", run.context());
        }
        run
    }

    fn key(&self, name: &str) -> String {
        format!("{KEY_PREFIX}{name}")
    }

    /// The run failed on the target and pruned nothing there: exit 4,
    /// upload failed, prune skipped because of it, every old object still
    /// in the bucket byte for byte, this run's snapshot still local.
    async fn assert_failed_and_nothing_pruned(&self, run: &Outcome) -> String {
        run.expect_exit(4)
            .expect_status("verify", "succeeded")
            .expect_status("upload:offsite", "failed")
            .expect_status("prune:offsite", "skipped");
        assert!(
            run.reason("prune:offsite").contains("upload:offsite"),
            "the skip names the failed upload: {}",
            run.context()
        );
        assert!(
            run.report["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("failed — retry")),
            "{}",
            run.context()
        );
        let after = self.s3.objects(BUCKET).await;
        for (key, v) in &self.before {
            assert_eq!(after.get(key), Some(v), "{key} changed: {}", run.context());
        }
        let name = run.snapshot_name();
        assert!(snaps(&self.local).contains(&name), "{}", run.context());
        name
    }

    /// The run succeeded: the object is this run's snapshot byte for byte,
    /// and retention (keepLast 1) then removed the old history remotely.
    async fn assert_uploaded_whole_and_pruned(&self, run: &Outcome) -> String {
        run.expect_exit(0)
            .expect_status("upload:offsite", "succeeded")
            .expect_status("prune:offsite", "succeeded");
        let name = run.snapshot_name();
        let local = sha256_file(&self.local.join(&name));
        assert_eq!(
            self.s3.object_sha256(BUCKET, &self.key(&name)).await,
            local,
            "{}",
            run.context()
        );
        let keys: Vec<String> = self.s3.objects(BUCKET).await.into_keys().collect();
        assert_eq!(keys, vec![self.key(&name)], "{}", run.context());
        name
    }

    /// Requests (by method) for this run's key `name`.
    fn attempts(&self, method: &str, name: &str, pred: impl Fn(&str) -> bool) -> usize {
        self.proxy
            .count(|s| s.method == method && s.target.contains(&self.key(name)) && pred(&s.target))
    }
}

/// A request for an object of this run (none of the old names).
fn new_object(old: &[String]) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
    let old = old.to_vec();
    move |r: &Request| {
        r.path().contains(&format!("/{KEY_PREFIX}{PREFIX}"))
            && !old.iter().any(|o| r.path().ends_with(o.as_str()))
    }
}

fn part(r: &Request, n: u32) -> bool {
    r.is_upload_part() && r.target.contains(&format!("partNumber={n}"))
}

fn is_part_number(target: &str, n: u32) -> bool {
    target.contains(&format!("partNumber={n}&")) || target.ends_with(&format!("partNumber={n}"))
}

// ---- transient faults are retried -----------------------------------------

/// A 500 InternalError and then a 503 SlowDown on the PutObject, and a 503
/// SlowDown on the first listing: the SDK retries each (with backoff), the
/// run succeeds, the object is this run's snapshot byte for byte, and the
/// prune that follows the confirmed upload runs. s3s-fs checks every
/// signature, so the retried requests went through the proxy intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_500_and_503_slowdown_are_retried_and_the_run_succeeds() {
    let s = setup(Kind::S3sFs, 0).await;
    let new = new_object(&s.old);
    s.proxy.add(
        Rule::new(
            "list-slowdown",
            |r| r.method == "GET" && r.has_query("list-type"),
            Fault::s3_error(503, "SlowDown", "Please reduce your request rate."),
        )
        .times(1),
    );
    s.proxy.add(
        Rule::new(
            "put-500",
            move |r| r.is_put_object() && new(r),
            Fault::s3_error(500, "InternalError", "We encountered an internal error."),
        )
        .times(1),
    );
    let new = new_object(&s.old);
    s.proxy.add(
        Rule::new(
            "put-slowdown",
            move |r| r.is_put_object() && new(r),
            Fault::s3_error(503, "SlowDown", "Please reduce your request rate."),
        )
        .times(1),
    );

    let run = s.run(&s.policy(|_| {})).await;
    let name = s.assert_uploaded_whole_and_pruned(&run).await;
    assert_eq!(s.proxy.fired("list-slowdown"), 1, "{}", s.proxy.log());
    assert_eq!(s.proxy.fired("put-500"), 1, "{}", s.proxy.log());
    assert_eq!(s.proxy.fired("put-slowdown"), 1, "{}", s.proxy.log());
    // Two injected failures, then the attempt that reached the server.
    assert_eq!(s.attempts("PUT", &name, |_| true), 3, "{}", s.proxy.log());
    assert_eq!(
        s.proxy
            .count(|x| x.method == "PUT" && x.status == Some(200)),
        1,
        "{}",
        s.proxy.log()
    );
}

/// A multipart upload hit by a connection reset in the middle of part 1's
/// body, a 503 SlowDown on part 2 and a 500 on CompleteMultipartUpload:
/// each request is retried from the file, the run succeeds, the object is
/// this run's snapshot byte for byte, and no multipart upload is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_reset_mid_part_and_slowdown_are_retried_and_the_object_is_whole() {
    let s = setup(Kind::Moto, MULTIPART_MIB).await;
    s.proxy.add(
        Rule::new(
            "reset-part-1",
            |r| part(r, 1),
            Fault::ResetRequestBody { after: 1024 * 1024 },
        )
        .times(1),
    );
    s.proxy.add(
        Rule::new(
            "slowdown-part-2",
            |r| part(r, 2),
            Fault::s3_error(503, "SlowDown", "Please reduce your request rate."),
        )
        .times(1),
    );
    s.proxy.add(
        Rule::new(
            "complete-500",
            |r| r.is_complete_multipart(),
            Fault::s3_error(500, "InternalError", "We encountered an internal error."),
        )
        .times(1),
    );

    let run = s.run(&s.policy(|_| {})).await;
    let name = s.assert_uploaded_whole_and_pruned(&run).await;
    let size = std::fs::metadata(s.local.join(&name)).expect("local").len();
    assert!(
        size > DEFAULT_MULTIPART_THRESHOLD,
        "the snapshot ({size} bytes) must be multipart-sized"
    );
    for rule in ["reset-part-1", "slowdown-part-2", "complete-500"] {
        assert_eq!(s.proxy.fired(rule), 1, "{rule}:\n{}", s.proxy.log());
    }
    assert_eq!(s.attempts("PUT", &name, |t| is_part_number(t, 1)), 2);
    assert_eq!(s.attempts("PUT", &name, |t| is_part_number(t, 2)), 2);
    assert_eq!(s.attempts("POST", &name, |t| t.contains("uploadId")), 2);
    assert!(s.s3.uploads(BUCKET).await.is_empty());
}

// ---- persistent faults fail the run and prune nothing ---------------------

/// Every PutObject answered 503 SlowDown: the SDK gives up after
/// `MAX_ATTEMPTS` attempts, the run exits 4 ("retry"), the target is not
/// pruned (its old snapshots stay), and the local store keeps everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_persistent_503_fails_with_exit_4_and_prunes_nothing() {
    let s = setup(Kind::S3sFs, 0).await;
    let new = new_object(&s.old);
    s.proxy.add(Rule::new(
        "put-slowdown",
        move |r| r.is_put_object() && new(r),
        Fault::s3_error(503, "SlowDown", "Please reduce your request rate."),
    ));

    let run = s.run(&s.policy(|_| {})).await;
    let name = s.assert_failed_and_nothing_pruned(&run).await;
    assert!(
        run.reason("upload:offsite").contains("SlowDown"),
        "{}",
        run.context()
    );
    assert_eq!(
        s.attempts("PUT", &name, |_| true),
        MAX_ATTEMPTS as usize,
        "{}",
        s.proxy.log()
    );
    assert_eq!(s.s3.objects(BUCKET).await, s.before);
}

/// Part 2 of a multipart upload always fails with 500: the run exits 4,
/// the multipart upload is aborted at once (none listed right after the
/// run), no object appears under the new name, nothing is pruned. The next
/// run, with the store healthy again, uploads the backlog and prunes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_persistent_part_failure_aborts_the_multipart_upload_and_prunes_nothing() {
    let s = setup(Kind::Moto, MULTIPART_MIB).await;
    s.proxy.add(Rule::new(
        "part-2-500",
        |r| part(r, 2),
        Fault::s3_error(500, "InternalError", "We encountered an internal error."),
    ));
    let policy = s.policy(|_| {});

    let run = s.run(&policy).await;
    let name = s.assert_failed_and_nothing_pruned(&run).await;
    assert_eq!(
        s.attempts("PUT", &name, |t| is_part_number(t, 2)),
        MAX_ATTEMPTS as usize,
        "{}",
        s.proxy.log()
    );
    assert!(
        s.attempts("DELETE", &name, |t| t.contains("uploadId")) >= 1,
        "the multipart upload was aborted:\n{}",
        s.proxy.log()
    );
    assert!(s.s3.uploads(BUCKET).await.is_empty());
    assert_eq!(s.s3.objects(BUCKET).await, s.before);

    // Healthy again: the failed snapshot and a new one go up, then prune.
    s.proxy.clear();
    s.bao.advance("second").await;
    let run2 = s.run(&policy).await;
    run2.expect_exit(0)
        .expect_status("upload:offsite", "succeeded")
        .expect_status("prune:offsite", "succeeded");
    let second = run2.snapshot_name();
    let keys: Vec<String> = s.s3.objects(BUCKET).await.into_keys().collect();
    assert!(keys.contains(&s.key(&second)), "{}", run2.context());
    assert!(
        !keys.iter().any(|k| s.old.iter().any(|o| k.ends_with(o))),
        "the old history was pruned once the upload was confirmed: {keys:?}"
    );
    assert!(s.s3.uploads(BUCKET).await.is_empty());
}

/// Every UploadPart stalls (the request is read, never answered). With
/// the target's `timeouts.request` at 10 s (it bounds every call to moto,
/// not only the stalled ones: well above what a loaded machine needs for
/// one of them) each attempt times out and is
/// retried up to `MAX_ATTEMPTS` times; then the run fails cleanly: exit 4
/// well within the harness's limit (no hang), the multipart upload
/// aborted, nothing pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stall_past_the_request_timeout_fails_cleanly_with_exit_4() {
    let s = setup(Kind::Moto, MULTIPART_MIB).await;
    s.proxy.add(Rule::new(
        "stall-parts",
        |r| r.is_upload_part(),
        Fault::Stall,
    ));
    let policy = s.policy(|t| t["timeouts"] = json!({"request": "10s"}));

    let run = s.run(&policy).await;
    let name = s.assert_failed_and_nothing_pruned(&run).await;
    assert!(
        run.reason("upload:offsite")
            .to_lowercase()
            .contains("timeout")
            || run
                .reason("upload:offsite")
                .to_lowercase()
                .contains("timed out"),
        "the failure says it timed out: {}",
        run.context()
    );
    let most = (1..=2)
        .map(|n| s.attempts("PUT", &name, |t| is_part_number(t, n)))
        .max()
        .unwrap_or(0);
    assert_eq!(most, MAX_ATTEMPTS as usize, "{}", s.proxy.log());
    assert!(s.s3.uploads(BUCKET).await.is_empty());
    assert_eq!(s.s3.objects(BUCKET).await, s.before);
}

/// The upload reaches the store, but the HEAD that confirms it reports a
/// wrong size, a wrong `snapward-sha256`, or a wrong SHA-256 checksum:
/// the upload is not confirmed, the run exits 4, and nothing is pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_head_size_or_checksum_fails_confirmation_and_prunes_nothing() {
    type Edit = fn(&mut crate::support::fault_proxy::ResponseHead);
    let cases: [(&str, Edit); 3] = [
        ("size", |h| {
            let len: u64 = h
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            h.set_header("Content-Length", &(len + 1).to_string());
        }),
        ("metadata sha256", |h| {
            h.set_header("x-amz-meta-snapward-sha256", &"0".repeat(64));
        }),
        ("checksum sha256", |h| {
            // SHA-256 of nothing, base64: a valid checksum of other bytes.
            h.set_header(
                "x-amz-checksum-sha256",
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            );
        }),
    ];
    let s = setup(Kind::S3sFs, 0).await;
    for (what, edit) in cases {
        s.proxy.clear();
        // Only this run's object: not the old ones, not an earlier case's.
        let existing: Vec<String> =
            s.s3.objects(BUCKET)
                .await
                .into_keys()
                .map(|k| k.trim_start_matches(KEY_PREFIX).to_string())
                .collect();
        let new = new_object(&existing);
        s.proxy.add(Rule::new(
            what,
            move |r| r.method == "HEAD" && new(r),
            Fault::EditResponse(std::sync::Arc::new(move |h| {
                if h.status == 200 {
                    edit(h)
                }
            })),
        ));
        let run = s.run(&s.policy(|_| {})).await;
        let name = s.assert_failed_and_nothing_pruned(&run).await;
        assert!(
            run.reason("upload:offsite").contains("not confirmed"),
            "{what}: {}",
            run.context()
        );
        assert!(s.proxy.fired(what) >= 1, "{what}:\n{}", s.proxy.log());
        // The bytes did arrive: only the confirmation was wrong.
        assert_eq!(
            s.s3.object_sha256(BUCKET, &s.key(&name)).await,
            sha256_file(&s.local.join(&name)),
            "{what}"
        );
    }
}

// ---- a response lost after the store acted --------------------------------

/// The store stores the object (PutObject) or completes the multipart
/// upload, but its answer is lost (connection reset). The SDK retries; the
/// retry finds the object there — 412 from `If-None-Match: *`, or, for a
/// Complete, 200 (moto) or an "upload gone" error (s3s-fs: AccessDenied,
/// others: NoSuchUpload). snapward recognises the object as its own (size
/// and `snapward-sha256`), confirms it, and the run succeeds; no abort is
/// sent for a completed upload.
///
/// Regression: a lost Complete answer on s3s-fs used to fail the run as
/// "refused … check the key's policy" although the object was complete.
#[rstest::rstest]
#[case::put_object_moto(Kind::Moto, 0)]
#[case::put_object_s3s_fs(Kind::S3sFs, 0)]
#[case::complete_multipart_moto(Kind::Moto, MULTIPART_MIB)]
#[case::complete_multipart_s3s_fs(Kind::S3sFs, MULTIPART_MIB)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_lost_answer_is_retried_and_the_object_recognised_as_ours(
    #[case] kind: Kind,
    #[case] fill_mib: usize,
) {
    let s = setup(kind, fill_mib).await;
    let new = new_object(&s.old);
    let multipart = fill_mib > 0;
    s.proxy.add(
        Rule::new(
            "lost",
            move |r| {
                new(r)
                    && if multipart {
                        r.is_complete_multipart()
                    } else {
                        r.is_put_object()
                    }
            },
            Fault::DropResponse,
        )
        .times(1),
    );

    let run = s.run(&s.policy(|_| {})).await;
    let name = s.assert_uploaded_whole_and_pruned(&run).await;
    assert_eq!(s.proxy.fired("lost"), 1, "{}", s.proxy.log());
    let (method, query) = if multipart {
        ("POST", "uploadId")
    } else {
        ("PUT", "x-id=PutObject")
    };
    assert_eq!(
        s.attempts(method, &name, |t| t.contains(query)),
        2,
        "{}",
        s.proxy.log()
    );
    assert_eq!(
        s.attempts("DELETE", &name, |t| t.contains("uploadId")),
        0,
        "no abort of a completed upload:\n{}",
        s.proxy.log()
    );
    if kind == Kind::Moto {
        assert!(s.s3.uploads(BUCKET).await.is_empty());
    }
}

/// The `timeouts` of an S3 target (what the stall test shortens) are
/// validated like every other duration: a bad one is a `bad-duration`
/// error on its exact path; good ones pass.
#[test]
fn s3_target_timeouts_are_validated() {
    let policy = |timeouts: Value| {
        json!({
            "apiVersion": "snapward.dev/v1alpha1",
            "kind": "SnapshotPolicy",
            "metadata": {"name": "t"},
            "spec": {
                "cluster": {"nodes": [{"address": "http://127.0.0.1:8200"}]},
                "local": {"path": "/snapshots", "retention": {"keepLast": 3}},
                "targets": [{
                    "name": "offsite",
                    "retention": {"keepLast": 3},
                    "s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "snaps",
                           "prefix": "p/", "timeouts": timeouts}
                }]
            }
        })
    };
    let (valid, findings) =
        snapward::policy::validate::validate(&policy(json!({"connect": "3s", "request": "2m"})));
    assert!(valid.is_some(), "{findings:?}");
    let (valid, findings) =
        snapward::policy::validate::validate(&policy(json!({"request": "soon"})));
    assert!(valid.is_none());
    let bad: Vec<&str> = findings
        .iter()
        .filter(|f| f.code == snapward::diag::Code::BadDuration)
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        bad,
        vec!["/spec/targets/0/s3/timeouts/request"],
        "{findings:?}"
    );
}

// ---- the restore's download -------------------------------------------------

/// The download a restore starts with (GetObject), cut mid-body by a reset
/// and then stalled mid-body: `fetch` fails each time — a stall is ended by
/// the SDK's stalled-stream protection, not by waiting forever — and leaves
/// no file behind, so no half-downloaded snapshot can be restored. With the
/// faults gone the same fetch brings the object back byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_download_cut_or_stalled_mid_body_fails_and_leaves_no_file() {
    let s = setup(Kind::S3sFs, 0).await;
    let name = s.old[0].clone();
    let local_sha = sha256_file(&s.local.join(&name));
    let mut cfg = s.s3.target_config(BUCKET, KEY_PREFIX);
    cfg.endpoint = Some(s.proxy.url.clone());
    let target = S3Target::new("offsite", &crate::support::s3::settings(&cfg), PREFIX)
        .await
        .expect("target through the proxy");
    let key = s.key(&name);
    for (what, cut) in [
        ("reset", crate::support::fault_proxy::Cut::Reset),
        ("stall", crate::support::fault_proxy::Cut::Stall),
    ] {
        s.proxy.clear();
        let k = key.clone();
        s.proxy.add(Rule::new(
            what,
            move |r| r.method == "GET" && r.path().ends_with(&k),
            Fault::CutResponse {
                after: 4096,
                then: cut,
            },
        ));
        let dest = s.work.path(&format!("fetched-{what}.snap"));
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(300),
            target.fetch(&name, &dest, &CancellationToken::new()),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: the download hung:\n{}", s.proxy.log()));
        let err = got.expect_err(&format!("{what}: a cut download must fail"));
        assert!(s.proxy.fired(what) >= 1, "{what}:\n{}", s.proxy.log());
        assert!(!dest.exists(), "{what}: a partial download was left: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("GetObject") && !msg.contains(SECRET_KEY),
            "{what}: {msg}"
        );
    }
    s.proxy.clear();
    let dest = s.work.path("fetched.snap");
    target
        .fetch(&name, &dest, &CancellationToken::new())
        .await
        .expect("the download without faults");
    assert_eq!(sha256_file(&dest), local_sha);
}
