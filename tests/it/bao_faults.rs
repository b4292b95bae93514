//! OpenBao faults on the backup path, end to end: the real `snapward run`
//! binary against real OpenBao servers (single node and 3-node raft), with
//! `support::fault_proxy` in front of the node snapward snapshots from, to
//! make a fault happen at an exact point (after N bytes of the snapshot
//! stream, on the snapshot request only) rather than after a sleep.
//!
//! Each test starts with one old snapshot of the cluster in the local
//! store; every fault must leave it the only snapshot (no `.partial` left,
//! nothing new listed by `snapward list`) and exit with the right code.
//!
//! Needs `eval "$(scripts/test-env.sh)"`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::bao::BaoCluster;
use crate::support::cmd;
use crate::support::fault_proxy::{Cut, Fault, FaultProxy, Gate, Request, Rule};
use crate::support::outcome::Outcome;
use crate::support::work::{
    Bao, RUN_LIMIT, WAIT, Work, copy_as, nodes_json, partials, poll, sha256_file, snap, snaps,
};

const SNAPSHOT_PATH: &str = "/v1/sys/storage/raft/snapshot";

fn is_snapshot(r: &Request) -> bool {
    r.path() == SNAPSHOT_PATH
}

/// A cluster, a proxy in front of its active node, a local store holding
/// one old snapshot of the cluster.
struct Setup {
    bao: Bao,
    proxy: FaultProxy,
    /// The node behind the proxy.
    active: usize,
    work: Work,
    token: PathBuf,
    local: PathBuf,
    old: String,
    old_sha: String,
}

async fn setup(cluster: BaoCluster) -> Setup {
    let bao = Bao::setup(cluster).await;
    let active = bao.cluster.active_node().await;
    let proxy = FaultProxy::start(bao.cluster.address(active).as_str()).await;
    let work = Work::new();
    let token = work.file("token", &bao.token);
    let seed_dir = work.path("seed");
    let p = work.policy(
        "seed",
        nodes_json(&[("seed", bao.cluster.address(active).as_str())]),
        &token,
        &seed_dir,
        json!({"keepLast": 5}),
        "20s",
    );
    let run = work.run(&work.write_policy("seed.yaml", &p), &[]).await;
    run.expect_exit(0);
    let seed = seed_dir.join(run.snapshot_name());
    bao.advance("after-seed").await;
    let local = work.path("snapshots");
    let old = snap("20210101-020000");
    copy_as(&seed, &local, &[&old]);
    let old_sha = sha256_file(&local.join(&old));
    Setup {
        bao,
        proxy,
        active,
        work,
        token,
        local,
        old,
        old_sha,
    }
}

impl Setup {
    /// Every node listed, the active one through the proxy.
    fn nodes(&self) -> Value {
        let addrs: Vec<(String, String)> = (0..self.bao.cluster.len())
            .map(|i| {
                let addr = if i == self.active {
                    self.proxy.url.clone()
                } else {
                    self.bao.cluster.address(i).to_string()
                };
                (self.bao.cluster.name(i).to_string(), addr)
            })
            .collect();
        let pairs: Vec<(&str, &str)> = addrs
            .iter()
            .map(|(n, a)| (n.as_str(), a.as_str()))
            .collect();
        nodes_json(&pairs)
    }

    fn policy(&self, stream_idle: &str) -> PathBuf {
        let p = self.work.policy(
            "faults",
            self.nodes(),
            &self.token,
            &self.local,
            json!({"keepLast": 10}),
            stream_idle,
        );
        self.work.write_policy("policy.yaml", &p)
    }

    fn snapshot_requests(&self) -> usize {
        self.proxy
            .count(|s| s.target.split('?').next() == Some(SNAPSHOT_PATH))
    }

    /// What every run here must leave: no secret in any output, no temp
    /// file, the old snapshot untouched.
    fn check(&self, run: &Outcome) {
        assert!(
            !run.everything().contains(&self.bao.token),
            "the token reached the output: {}",
            run.context()
        );
        assert!(
            partials(&self.local).is_empty(),
            "left {:?}: {}",
            partials(&self.local),
            run.context()
        );
        assert_eq!(
            sha256_file(&self.local.join(&self.old)),
            self.old_sha,
            "{}",
            run.context()
        );
    }

    /// The run took no snapshot: the old one is the only `.snap`, and
    /// `snapward list` shows exactly it.
    async fn assert_no_new_snapshot(&self, policy: &Path, run: &Outcome) {
        let only = BTreeSet::from([self.old.clone()]);
        assert_eq!(snaps(&self.local), only, "{}", run.context());
        let listed = self.work.list(policy).await;
        assert_eq!(listed.get("local"), Some(&only), "{listed:?}");
    }

    /// The snapshot action failed and everything after it was skipped.
    fn assert_snapshot_failed(&self, run: &Outcome) {
        run.expect_exit(4)
            .expect_status("snapshot", "failed")
            .expect_status("verify", "skipped")
            .expect_status("prune:local", "skipped");
    }
}

// ---- the leader dies mid-stream --------------------------------------------

/// 3-node raft. The proxy in front of the leader forwards the first 8 KiB
/// of the snapshot response and holds; once snapward has written bytes to
/// its temp file, the leader process is killed (SIGKILL) and the stream
/// cut. The run fails cleanly (exit 4): the partial file is gone, no new
/// snapshot is listed. The next run, once another node leads, takes a
/// valid snapshot from the new leader (exit 4 still: the dead node is
/// unknown, so the run is not "done").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_leader_killed_mid_stream_leaves_no_partial_and_the_next_run_uses_the_new_leader() {
    let mut s = setup(BaoCluster::three().await).await;
    // Followers join as non-voters and are promoted after ~10 s; without
    // that, no one could win the election once the leader is gone.
    {
        let c = &s.bao.cluster;
        let leader = s.active;
        poll("every follower to be a raft voter", || async {
            let (status, v) = c
                .call(
                    leader,
                    Method::GET,
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
    let gate = Gate::new();
    s.proxy.add(
        Rule::new(
            "cut-and-hold",
            is_snapshot,
            Fault::CutResponse {
                after: 8 * 1024,
                then: Cut::Hold(gate.clone()),
            },
        )
        .times(1),
    );
    let policy = s.policy("60s");

    let (args, report) = s.work.run_args(&policy, &[], "json").await;
    let mut cmd = s.work.command(&args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn snapward");
    gate.reached(WAIT).await;
    // Mid-stream for certain: the proxy sent the first 8 KiB of the body and
    // holds the rest, and snapward's snapshot action has its temp file. (It
    // may still be empty: the local writer gathers 1 MiB before it writes.)
    let local = s.local.clone();
    poll("snapward to open its temp file", || async {
        (!partials(&local).is_empty()).then_some(())
    })
    .await;
    let leader = s.active;
    let pid = s.bao.cluster.pid(leader).expect("the leader runs");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    s.bao.cluster.stop(leader);
    gate.release();
    let out = cmd::finish(child, RUN_LIMIT).await;
    let run = s.work.finish(&args, &out, &report);
    s.check(&run);
    s.assert_snapshot_failed(&run);
    assert!(
        run.reason("snapshot")
            .contains(&format!("from {}", s.bao.cluster.name(leader))),
        "{}",
        run.context()
    );
    assert_eq!(s.snapshot_requests(), 1, "{}", s.proxy.log());
    s.assert_no_new_snapshot(&policy, &run).await;

    // Another node leads; the next run converges on it.
    let c = &s.bao.cluster;
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
    let run = s.work.run(&policy, &[]).await;
    s.check(&run);
    run.expect_exit(4)
        .expect_status("snapshot", "succeeded")
        .expect_status("verify", "succeeded");
    assert_eq!(
        run.report["decision"]["branch"],
        "retry",
        "{}",
        run.context()
    );
    assert!(
        run.reason("snapshot")
            .ends_with(&format!("from active node {}", c.name(new_leader))),
        "{}",
        run.context()
    );
    let name = run.snapshot_name();
    let listed = s.work.list(&policy).await;
    assert_eq!(
        listed.get("local"),
        Some(&BTreeSet::from([s.old.clone(), name])),
        "{listed:?}"
    );
}

// ---- sealed ---------------------------------------------------------------------

/// A sealed node (really sealed, through `sys/seal`) and no unseal keys in
/// the policy: the run is refused (exit 3) with a message that says the
/// node is sealed and what to do; the snapshot endpoint is never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_sealed_node_is_never_asked_for_a_snapshot_and_the_run_is_refused() {
    let s = setup(BaoCluster::single().await).await;
    let c = &s.bao.cluster;
    let (status, v) = c
        .call(0, Method::PUT, "sys/seal", Some(c.root_token()), None)
        .await;
    assert!(status.is_success(), "seal: {status} {v}");
    assert_eq!(c.seal_status(0).await["sealed"], json!(true));
    let policy = s.policy("20s");

    let run = s.work.run(&policy, &[]).await;
    s.check(&run);
    run.expect_exit(3);
    assert_eq!(
        run.report["decision"]["branch"],
        "refuse",
        "{}",
        run.context()
    );
    let summary = run.report["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("sealed") && summary.contains("Unseal by hand"),
        "a clear message: {}",
        run.context()
    );
    assert!(run.stdout.contains("sealed"), "{}", run.context());
    assert_ne!(run.status("snapshot"), "succeeded", "{}", run.context());
    assert_eq!(s.snapshot_requests(), 0, "{}", s.proxy.log());
    s.assert_no_new_snapshot(&policy, &run).await;
}

/// The node looked unsealed and active, but answers the snapshot request
/// 503 "Vault is sealed" (sealed in between): retried with backoff (3
/// attempts), then exit 4 with the server's message; nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_503_sealed_on_the_snapshot_request_is_retried_then_fails_with_exit_4() {
    let s = setup(BaoCluster::single().await).await;
    s.proxy.add(Rule::new(
        "sealed",
        is_snapshot,
        Fault::bao_error(503, "Vault is sealed"),
    ));
    let policy = s.policy("20s");

    let run = s.work.run(&policy, &[]).await;
    s.check(&run);
    s.assert_snapshot_failed(&run);
    let reason = run.reason("snapshot");
    assert!(
        reason.contains("503") && reason.contains("Vault is sealed"),
        "{}",
        run.context()
    );
    assert_eq!(s.snapshot_requests(), 3, "{}", s.proxy.log());
    s.assert_no_new_snapshot(&policy, &run).await;
}

/// One 503 on the snapshot request, then the real stream: the retry
/// succeeds and the run is done (exit 0) with a valid new snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_503_once_on_the_snapshot_request_is_retried_and_the_run_succeeds() {
    let s = setup(BaoCluster::single().await).await;
    s.proxy.add(
        Rule::new(
            "sealed-once",
            is_snapshot,
            Fault::bao_error(503, "Vault is sealed"),
        )
        .times(1),
    );
    let policy = s.policy("20s");

    let run = s.work.run(&policy, &[]).await;
    s.check(&run);
    run.expect_exit(0)
        .expect_status("snapshot", "succeeded")
        .expect_status("verify", "succeeded");
    assert_eq!(s.snapshot_requests(), 2, "{}", s.proxy.log());
    let name = run.snapshot_name();
    let listed = s.work.list(&policy).await;
    assert_eq!(
        listed.get("local"),
        Some(&BTreeSet::from([s.old.clone(), name])),
        "{listed:?}"
    );
}

// ---- standby --------------------------------------------------------------------

/// The snapshot request answered 429 (what a standby answers on
/// `sys/health`): not a snapshot, not retried, exit 4, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_429_standby_answer_is_not_a_snapshot() {
    let s = setup(BaoCluster::single().await).await;
    s.proxy.add(Rule::new(
        "standby",
        is_snapshot,
        Fault::bao_error(429, "node is a performance standby"),
    ));
    let policy = s.policy("20s");

    let run = s.work.run(&policy, &[]).await;
    s.check(&run);
    s.assert_snapshot_failed(&run);
    assert!(run.reason("snapshot").contains("429"), "{}", run.context());
    assert_eq!(s.snapshot_requests(), 1, "{}", s.proxy.log());
    s.assert_no_new_snapshot(&policy, &run).await;
}

// ---- stalled stream -------------------------------------------------------------

/// The snapshot stream delivers 4 KiB, then nothing (the connection stays
/// open). Past the policy's `streamIdle` (2 s) the run fails cleanly: exit
/// 4, "stalled", no retry of a stream that had started, the partial file
/// removed, nothing new listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bao_stream_stalled_past_stream_idle_fails_with_exit_4_and_removes_the_partial() {
    let s = setup(BaoCluster::single().await).await;
    s.proxy.add(Rule::new(
        "stall",
        is_snapshot,
        Fault::CutResponse {
            after: 4096,
            then: Cut::Stall,
        },
    ));
    let policy = s.policy("2s");

    let run = s.work.run(&policy, &[]).await;
    s.check(&run);
    s.assert_snapshot_failed(&run);
    assert!(
        run.reason("snapshot").contains("stalled"),
        "{}",
        run.context()
    );
    assert_eq!(s.snapshot_requests(), 1, "{}", s.proxy.log());
    s.assert_no_new_snapshot(&policy, &run).await;
}
