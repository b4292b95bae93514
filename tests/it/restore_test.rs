//! `snapward test-restore` (issue 13): a stored copy is rehearsed on a
//! throwaway OpenBao — real `bao` servers, real moto, the real binary.
//! The production cluster is stopped while the rehearsal runs: it must
//! never be needed, and is unchanged afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::bao::bao_binary;
use crate::support::drill::{Drill, snap_files};
use crate::support::work::files_in;

/// The drill's policy with `spec.restoreTest` (from `from`) and a canary
/// reading the marker `drill/m1` with the stored root token.
fn with_restore_test(d: &Drill, policy: &Path, from: &str) -> PathBuf {
    let text = fs::read_to_string(policy).expect("read policy");
    let keys = d.keys_dir();
    let text = text.replacen(
        "  restore:\n",
        &format!(
            "  restore:\n    canary: {{path: secret/data/drill/m1, tokenFile: {}/root-token}}\n",
            keys.display()
        ),
        1,
    );
    let text = format!(
        "{text}  restoreTest: {{baoBinary: {}, from: {from}, timeout: 5m}}\n",
        bao_binary().display()
    );
    let path = d.path(&format!("rehearsal-{from}.yaml"));
    fs::write(&path, text).expect("write policy");
    path
}

/// The rehearsals' work root (default: in the local snapshot directory).
fn work_root(d: &Drill) -> PathBuf {
    d.snap_dir().join(".snapward-restore-test")
}

/// Throwaway server directories left under the work root.
fn leftovers(d: &Drill) -> Vec<String> {
    fs::read_dir(work_root(d))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("bao-"))
                .collect()
        })
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped) is not alive either.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

/// A cluster initialised and backed up (to the local store and S3) by
/// snapward, with the marker `m1` in the backup.
async fn backed_up() -> (Drill, PathBuf, String) {
    let mut d = Drill::single(true).await;
    let (keys, snaps) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.snapward_init(&policy, &keys).await;
    d.write_marker("m1").await;
    let (_, name) = d.backup(&policy, &snaps).await;
    (d, policy, name)
}

/// The copy in S3 restores on a throwaway server, unsealed with the stored
/// keys, and the canary reads the marker — while the production node is
/// down; afterwards the production cluster, the key store and the local
/// store are as before, and no throwaway process or directory is left.
#[tokio::test]
async fn a_copy_in_s3_restores_on_a_throwaway_server_without_the_cluster() {
    let (mut d, policy, name) = backed_up().await;
    let cluster_id = d.cluster_id(0).await;
    let rehearsal = with_restore_test(&d, &policy, "s3");
    let (keys, snaps) = (files_in(&d.keys_dir()), snap_files(&d.snap_dir()));
    d.bao.stop(0);

    let r = d.snapward("test-restore", &rehearsal, &[]).await;
    r.expect_exit(0).expect_branch("restore");
    let chose = r.items_of("fetch", "chose");
    assert_eq!(chose.len(), 1, "{}", r.context());
    assert_eq!(
        chose[0]["store"],
        "s3",
        "fetched fresh from S3: {}",
        r.context()
    );
    assert_eq!(chose[0]["name"], name.as_str());
    let verified = r.items_of("verify-cluster", "cluster-verified");
    assert_eq!(
        verified[0]["cluster_id"].as_str(),
        Some(cluster_id.as_str()),
        "the rehearsal restored this cluster: {}",
        r.context()
    );
    assert_eq!(r.items_of("verify-cluster", "canary-read").len(), 1);
    assert!(r.stderr.contains("restore test passed"), "{}", r.context());
    // It says what it proved: the snapshot, the cluster, the canary.
    for proof in [
        format!("chose s3/{name}"),
        format!("cluster_id {cluster_id}"),
        "canary secret/data/drill/m1 readable".to_string(),
    ] {
        assert!(r.stderr.contains(&proof), "{proof}: {}", r.context());
    }
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    assert_eq!(files_in(&d.keys_dir()), keys, "the key store is untouched");
    assert_eq!(
        snap_files(&d.snap_dir()),
        snaps,
        "the local store is untouched"
    );

    // Back up: snapward unseals the restarted node; it is the same cluster.
    d.bao.start(0).await;
    d.run(&policy).await.expect_exit(0).expect_branch("backup");
    assert_eq!(d.cluster_id(0).await, cluster_id);
}

/// Without `restore.canary` the rehearsal reads `sys/mounts` with the
/// stored root token: data served by the restored copy, not only its id.
#[tokio::test]
async fn without_a_canary_the_rehearsal_reads_sys_mounts_with_the_stored_root_token() {
    let (d, policy, _) = backed_up().await;
    let text = fs::read_to_string(&policy).expect("read policy");
    let path = d.path("no-canary.yaml");
    fs::write(
        &path,
        format!(
            "{text}  restoreTest: {{baoBinary: {}, from: local}}\n",
            bao_binary().display()
        ),
    )
    .expect("write");
    let r = d.snapward("test-restore", &path, &[]).await;
    r.expect_exit(0);
    let read = r.items_of("verify-cluster", "canary-read");
    assert_eq!(read.len(), 1, "{}", r.context());
    assert_eq!(read[0]["path"], "sys/mounts");
}

/// A copy corrupted after its upload (it still lists) fails the rehearsal:
/// exit 4, nothing restored, no server left.
#[tokio::test]
async fn a_copy_corrupted_after_upload_fails_the_restore_test() {
    let (d, policy, name) = backed_up().await;
    d.corrupt_s3_snapshot(&name).await;
    let rehearsal = with_restore_test(&d, &policy, "s3");
    let r = d.snapward("test-restore", &rehearsal, &[]).await;
    assert!(matches!(r.code, Some(c) if c != 0), "{}", r.context());
    assert!(r.stderr.contains("restore test FAILED"), "{}", r.context());
    r.expect_status("restore", "skipped");
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}

/// A copy made by another cluster (whose keys are not in the store) fails
/// the rehearsal before anything is restored: the keys and the copy do not
/// belong together (exit 3).
#[tokio::test]
async fn another_clusters_copy_fails_the_restore_test() {
    let (a, policy_a, _) = backed_up().await;
    let mut b = Drill::single(false).await;
    let (keys_b, snaps_b) = (b.keys_dir(), b.snap_dir());
    let policy_b = b.policy("policy", &b.opts());
    b.snapward_init(&policy_b, &keys_b).await;
    b.write_marker("m1").await;
    let (_, foreign) = b.backup(&policy_b, &snaps_b).await;
    // B's snapshot lands in A's local store, newer than A's own.
    let local = a.snap_dir();
    for (n, _) in snap_files(&local) {
        fs::remove_file(local.join(n)).expect("remove A's snapshot");
    }
    fs::copy(snaps_b.join(&foreign), local.join(&foreign)).expect("plant B's snapshot");
    let rehearsal = with_restore_test(&a, &policy_a, "local");
    let r = a.snapward("test-restore", &rehearsal, &[]).await;
    r.expect_exit(3);
    assert!(r.stderr.contains("restore test FAILED"), "{}", r.context());
    assert!(
        r.reason("restore").contains("do not belong together"),
        "{}",
        r.context()
    );
    assert!(leftovers(&a).is_empty(), "{:?}", leftovers(&a));
}

/// SIGKILL during a rehearsal leaves the throwaway server running and its
/// directory behind; the next rehearsal stops that process and removes the
/// directory first (then passes). SIGTERM leaves nothing at all.
#[tokio::test]
async fn a_killed_rehearsal_is_cleaned_up_by_the_next_and_sigterm_leaves_nothing() {
    let (d, policy, _) = backed_up().await;
    let rehearsal = with_restore_test(&d, &policy, "s3");
    for signal in ["KILL", "TERM"] {
        let mut child = crate::support::cmd::snapward_async()
            .args(["test-restore", "-f"])
            .arg(&rehearsal)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start snapward");
        // Wait until the throwaway server runs (its pid file is written).
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let pid = loop {
            let found = leftovers(&d).into_iter().find_map(|n| {
                fs::read_to_string(work_root(&d).join(n).join("server.pid"))
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
            });
            if let Some(p) = found {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no throwaway server appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let snapward_pid = child.id().expect("pid").to_string();
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), snapward_pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let _ = child.wait().await;
        if signal == "KILL" {
            assert!(alive(pid), "SIGKILL leaves the throwaway server running");
            assert_eq!(leftovers(&d).len(), 1);
            let r = d.snapward("test-restore", &rehearsal, &[]).await;
            r.expect_exit(0);
            assert!(
                r.stderr.contains("removed the leftover")
                    && r.stderr.contains("stopped its server"),
                "{}",
                r.context()
            );
            assert!(!alive(pid), "the leftover server was stopped");
        } else {
            assert!(!alive(pid), "SIGTERM stops the throwaway server");
        }
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
    }
}

/// `spec.restoreTest` in a scheduled run: after the confirmed upload to S3
/// the run rehearses this run's snapshot from S3 (`restore-test:s3`), and
/// with `every: 7d` the next run skips it with its reason. Metrics carry
/// the result.
#[tokio::test]
async fn a_scheduled_run_rehearses_its_snapshot_from_s3_and_every_holds_the_next_back() {
    let mut d = Drill::single(true).await;
    let (keys, snaps) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.snapward_init(&policy, &keys).await;
    d.write_marker("m1").await;
    let rehearsal = with_restore_test(&d, &policy, "s3");
    let prom = d.path("metrics.prom");
    let text = fs::read_to_string(&rehearsal).expect("read");
    let text = text.replace("timeout: 5m}", "timeout: 5m, every: 7d}");
    let text = format!("{text}  metrics: {{textfile: {}}}\n", prom.display());
    fs::write(&rehearsal, text).expect("write");

    let r = d.run(&rehearsal).await;
    r.expect_exit(0).expect_branch("backup");
    let name = r.snapshot_name();
    r.expect_status("upload:s3", "succeeded")
        .expect_status("restore-test:s3", "succeeded");
    let why = r.action("restore-test:s3")["reason"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        why.contains(&format!("s3/{name} restored on a throwaway OpenBao")),
        "{}",
        r.context()
    );
    let m = fs::read_to_string(&prom).expect("metrics");
    assert!(
        m.contains("snapward_restore_test_result{policy=\"drill\"} 1"),
        "{m}"
    );
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

    d.wait_for_a_fresh_second(&snaps).await;
    let r = d.run(&rehearsal).await;
    r.expect_exit(0).expect_status("upload:s3", "succeeded");
    r.expect_status("restore-test:s3", "skipped");
    assert!(
        r.reason("restore-test:s3")
            .contains("less than spec.restoreTest.every"),
        "{}",
        r.context()
    );
}

/// A rehearsal that fails does not undo the backup: the snapshot is taken,
/// uploaded and kept, and the run ends with its own exit code 6 (here the
/// throwaway server cannot start: its seal stanza is broken).
#[tokio::test]
async fn a_failed_restore_test_keeps_the_backup_and_exits_6() {
    let mut d = Drill::single(true).await;
    let (keys, snaps) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.snapward_init(&policy, &keys).await;
    d.write_marker("m1").await;
    let rehearsal = with_restore_test(&d, &policy, "s3");
    let broken = d.path("broken-seal.hcl");
    fs::write(
        &broken,
        "seal \"static\" {\n  current_key = \"file:///nonexistent\"\n}\n",
    )
    .expect("write");
    let text = fs::read_to_string(&rehearsal).expect("read");
    let text = text.replace(
        "timeout: 5m}",
        &format!("timeout: 5m, sealConfigFile: {}}}", broken.display()),
    );
    fs::write(&rehearsal, text).expect("write");
    let before = snap_files(&snaps).len();

    let r = d.run(&rehearsal).await;
    r.expect_exit(6);
    r.expect_status("upload:s3", "succeeded")
        .expect_status("restore-test:s3", "failed");
    assert!(
        r.summary().contains("restore test FAILED"),
        "{}",
        r.context()
    );
    assert_eq!(snap_files(&snaps).len(), before + 1, "the backup stands");
    assert_eq!(d.s3_objects().await.len(), 1, "and is uploaded");
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}

/// An auto-unseal cluster's copy is rehearsed with its seal
/// (`sealConfigFile`: the same static key): the throwaway server takes the
/// verified restore and unseals itself; with another seal key the
/// rehearsal fails as a seal mismatch (exit 3) and leaves nothing.
#[tokio::test]
async fn an_auto_unseal_copy_is_rehearsed_with_its_seal() {
    let mut d = Drill::single_static(true).await;
    let (keys, snaps) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    d.snapward_init(&policy, &keys).await;
    d.write_marker("m1").await;
    let (_, name) = d.backup(&policy, &snaps).await;
    let cluster_id = d.cluster_id(0).await;
    let seal = d.path("seal.hcl");
    fs::write(&seal, d.bao.seal_stanza()).expect("write seal stanza");
    let rehearsal = with_restore_test(&d, &policy, "s3");
    let text = fs::read_to_string(&rehearsal).expect("read");
    fs::write(
        &rehearsal,
        text.replace(
            "timeout: 5m}",
            &format!("timeout: 5m, sealConfigFile: {}}}", seal.display()),
        ),
    )
    .expect("write");

    let r = d.snapward("test-restore", &rehearsal, &[]).await;
    r.expect_exit(0).expect_branch("restore");
    assert_eq!(
        r.rule(),
        "wiped, snapshot present (auto-unseal)",
        "{}",
        r.context()
    );
    assert!(
        r.stderr.contains(&format!("chose s3/{name}"))
            && r.stderr.contains(&format!("cluster_id {cluster_id}")),
        "{}",
        r.context()
    );
    assert_eq!(r.items_of("verify-cluster", "canary-read").len(), 1);
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));

    // The same copy under another seal key: refused by the seal.
    let other = d.path("other-seal.hcl");
    let key = d.path("other-key");
    fs::write(&key, [7u8; 32]).expect("write key");
    fs::write(
        &other,
        format!(
            "seal \"static\" {{\n  current_key_id = \"k9\"\n  current_key = \"file://{}\"\n}}\n",
            key.display()
        ),
    )
    .expect("write");
    let text = fs::read_to_string(&rehearsal).expect("read");
    fs::write(
        &rehearsal,
        text.replace(&seal.display().to_string(), &other.display().to_string()),
    )
    .expect("write");
    let r = d.snapward("test-restore", &rehearsal, &[]).await;
    r.expect_exit(3);
    assert_eq!(
        r.items_of("restore", "seal-mismatch").len(),
        1,
        "{}",
        r.context()
    );
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}

/// `spec.restoreTest.timeout` bounds a rehearsal: when it runs out the
/// rehearsal stops (exit 4), and the throwaway server and its directory
/// are gone.
#[tokio::test]
async fn the_time_budget_stops_a_rehearsal_and_leaves_nothing() {
    let (d, policy, _) = backed_up().await;
    let rehearsal = with_restore_test(&d, &policy, "s3");
    let text = fs::read_to_string(&rehearsal).expect("read");
    fs::write(&rehearsal, text.replace("timeout: 5m}", "timeout: 1s}")).expect("write");
    let r = d.snapward("test-restore", &rehearsal, &[]).await;
    r.expect_exit(4);
    assert!(r.stderr.contains("time budget"), "{}", r.context());
    assert!(r.stderr.contains("restore test FAILED"), "{}", r.context());
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}
