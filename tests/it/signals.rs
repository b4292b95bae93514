//! SIGTERM (the Job's deadline) mid-snapshot: the run stops cleanly, removes
//! its temp file, writes the report and exits "retry" (docs/architecture.md, a run's flow,
//! invariant 10). The node is a scripted HTTP server whose snapshot stream
//! stalls, so the signal always lands mid-stream (no timing involved).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::bao::{FakeHttp, FakeReply};
use crate::support::cmd;
use crate::support::outcome::Outcome;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_10_sigterm_mid_snapshot_leaves_no_temp_file_and_writes_the_report() {
    let fake = FakeHttp::start(|req| match req.path.split('?').next().unwrap_or("") {
        "/v1/sys/seal-status" => FakeReply::Json(
            200,
            json!({"type": "shamir", "initialized": true, "sealed": false, "t": 1, "n": 1, "progress": 0, "cluster_id": "c1"}),
        ),
        "/v1/sys/init" => FakeReply::Json(200, json!({"initialized": true})),
        "/v1/sys/leader" => FakeReply::Json(200, json!({"ha_enabled": true, "is_self": true, "raft_committed_index": 10})),
        "/v1/sys/storage/raft/snapshot" => FakeReply::Stall(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
        _ => FakeReply::Json(404, json!({"errors": []})),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("snapshots");
    let token = dir.path().join("token");
    std::fs::write(&token, "s.known-token-value").unwrap();
    let report = dir.path().join("report.json");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: sig}}\nspec:\n  cluster:\n    nodes: [{{address: \"{}\"}}]\n    auth: {{tokenFile: {}}}\n    timeouts: {{streamIdle: 10m}}\n  local: {{path: {}, retention: {{keepLast: 3}}}}\n",
            fake.url,
            token.display(),
            local.display()
        ),
    )
    .unwrap();
    let args = [
        "--log-format".as_ref(),
        "json".as_ref(),
        "run".as_ref(),
        "-f".as_ref(),
        policy.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ];
    let child = cmd::snapward()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stream has started and the temp file exists.
    wait_for("the snapshot request", || {
        fake.count("/v1/sys/storage/raft/snapshot") > 0
    });
    wait_for("the .partial file", || {
        std::fs::read_dir(&local)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".partial"))
            })
            .unwrap_or(false)
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let run = Outcome::new(&args, &out, &report);
    run.expect_exit(4);

    let leftovers: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial") || n.ends_with(".snap"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    assert_eq!(run.report["cancelled"], true, "{}", run.context());
    run.expect_status("snapshot", "failed")
        .expect_status("verify", "skipped");
    // The token never reaches logs or the report.
    assert!(!run.everything().contains("known-token-value"));
}
