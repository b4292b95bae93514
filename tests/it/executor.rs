//! The executor's scheduling rules with an in-memory runner (pure logic:
//! which node runs, which is skipped and why), and the copy-only mirror plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use snapward::backends::{Confirmed, NodeStatus, PutOutcome, RemoteSnapshot};
use snapward::cluster::InitState;
use snapward::exec::select::mirror_plan;
use snapward::exec::state::TakenSnapshot;
use snapward::exec::{self, Outcome, RunState, Runner, Status};
use snapward::plan::guard::{Branch, Decision};
use snapward::plan::{self, Action};
use snapward::policy;
use snapward::retention::Rules;
use snapward::snapshot::Identity;
use tokio::sync::{Barrier, Mutex};
use tokio_util::sync::CancellationToken;

const POLICY: &str = "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {name: t}\nspec:\n  cluster: {nodes: [{address: \"http://127.0.0.1:8200\"}]}\n  local: {path: /snap, retention: {keepLast: 3}}\n  targets:\n    - {name: a, filesystem: {path: /a}, retention: {keepLast: 3}}\n    - {name: b, filesystem: {path: /b}, retention: {keepLast: 3}}\n  unsealKeys: {files: {directory: /keys}}\n";

fn dag() -> plan::Dag {
    let mut r = policy::lint_text("t.yaml", POLICY, true);
    assert!(r.diagnostics.is_empty());
    plan::compile(&r.policies.remove(0)).unwrap()
}

/// Scripted outcomes by action id; records the start order. Sets the state
/// the way the real actions do (decision, snapshot, confirmations).
struct Script {
    fail: Vec<&'static str>,
    barrier: Option<Arc<Barrier>>,
    started: StdMutex<Vec<String>>,
}

#[async_trait]
impl Runner for Script {
    async fn run(
        &self,
        action: &Action,
        state: &Mutex<RunState>,
        _c: &CancellationToken,
    ) -> Outcome {
        let id = action.id();
        self.started.lock().unwrap().push(id.clone());
        if let (Action::Upload { .. }, Some(b)) = (action, &self.barrier) {
            // Both uploads must be in flight at once to get past this.
            b.wait().await;
        }
        if self.fail.contains(&id.as_str()) {
            return Outcome::failed("scripted failure");
        }
        let mut s = state.lock().await;
        match action {
            Action::Observe => s.nodes = vec![healthy_node()],
            Action::GuardCheck => {
                s.decision = Some(Decision {
                    branch: Branch::Backup,
                    rule: "test",
                    observed: String::new(),
                    explanation: String::new(),
                    backup_allowed: true,
                })
            }
            Action::Verify => {
                s.snapshot = Some(TakenSnapshot {
                    name: "x".into(),
                    path: "/x".into(),
                    identity: identity(1, "aa"),
                    time: jiff::Timestamp::UNIX_EPOCH,
                })
            }
            Action::Upload { target } => {
                s.confirmed.insert(
                    target.clone(),
                    PutOutcome::Confirmed(Confirmed {
                        size: 1,
                        sha256: "aa".into(),
                    }),
                );
            }
            _ => {}
        }
        Outcome::ok("done")
    }
}

fn healthy_node() -> NodeStatus {
    NodeStatus {
        name: "n0".into(),
        address: "http://127.0.0.1:8200".into(),
        init: InitState::Initialized,
        sealed: Some(false),
        active: true,
        cluster_id: None,
        raft_index: None,
        seal: None,
        error: None,
    }
}

fn identity(index: u64, sha: &str) -> Identity {
    Identity {
        index,
        term: 1,
        version: 1,
        state_size: 1,
        file_size: 1,
        sha256: sha.into(),
    }
}

async fn run(
    script: Script,
    cancel: CancellationToken,
) -> (BTreeMap<String, (Status, String)>, Vec<String>) {
    let script = Arc::new(script);
    let reports = exec::execute(
        &dag(),
        script.clone(),
        Arc::new(Mutex::new(RunState::default())),
        cancel,
        4,
    )
    .await;
    let by_id = reports
        .into_iter()
        .map(|r| (r.id, (r.status, r.reason)))
        .collect();
    let started = script.started.lock().unwrap().clone();
    (by_id, started)
}

fn script(fail: Vec<&'static str>) -> Script {
    Script {
        fail,
        barrier: None,
        started: StdMutex::new(Vec::new()),
    }
}

#[tokio::test]
async fn healthy_backup_runs_every_backup_node() {
    let (r, _) = run(script(vec![]), CancellationToken::new()).await;
    for id in [
        "observe",
        "guard-check",
        "unseal",
        "snapshot",
        "verify",
        "upload:a",
        "prune:a",
        "upload:b",
        "prune:b",
        "prune:local",
    ] {
        assert_eq!(r[id].0, Status::Succeeded, "{id}: {:?}", r[id]);
    }
    // init is not allowed and restore mode is manual: restore nodes skipped by the guard
    assert_eq!(r["fetch"].0, Status::Skipped);
    assert!(
        r["fetch"].1.contains("branch `restore` not taken"),
        "{:?}",
        r["fetch"]
    );
}

#[tokio::test]
async fn invariant_1_a_failed_upload_skips_that_targets_prune_only() {
    let (r, started) = run(script(vec!["upload:a"]), CancellationToken::new()).await;
    assert_eq!(r["upload:a"].0, Status::Failed);
    assert_eq!(r["prune:a"].0, Status::Skipped);
    assert!(r["prune:a"].1.contains("upload:a"), "{:?}", r["prune:a"]);
    assert!(!started.contains(&"prune:a".to_string()));
    // the other target is independent
    assert_eq!(r["prune:b"].0, Status::Succeeded);
    // local prune waits for uploads but does not need them to succeed
    assert_eq!(r["prune:local"].0, Status::Succeeded);
}

#[tokio::test]
async fn a_failed_snapshot_skips_everything_after_it() {
    let (r, started) = run(script(vec!["snapshot"]), CancellationToken::new()).await;
    for id in [
        "verify",
        "upload:a",
        "upload:b",
        "prune:a",
        "prune:b",
        "prune:local",
    ] {
        assert_eq!(r[id].0, Status::Skipped, "{id}");
        assert!(!started.contains(&id.to_string()), "{id} must not start");
    }
    assert!(r["verify"].1.contains("`snapshot` failed"));
}

#[tokio::test]
async fn uploads_to_independent_targets_run_concurrently() {
    let s = Script {
        fail: vec![],
        barrier: Some(Arc::new(Barrier::new(2))),
        started: StdMutex::new(Vec::new()),
    };
    // If the executor ran the two uploads one after the other, the first
    // would wait at the barrier forever.
    let (r, _) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        run(s, CancellationToken::new()),
    )
    .await
    .expect("uploads did not run concurrently");
    assert_eq!(r["upload:a"].0, Status::Succeeded);
    assert_eq!(r["upload:b"].0, Status::Succeeded);
}

#[tokio::test]
async fn cancelled_runs_start_nothing_and_report_every_node() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (r, started) = run(script(vec![]), cancel).await;
    assert!(started.is_empty());
    assert_eq!(r.len(), dag().graph.node_count());
    assert!(
        r.values()
            .all(|(s, why)| *s == Status::Skipped && why.contains("cancelled"))
    );
}

#[tokio::test]
async fn invariant_1_prune_is_skipped_when_the_upload_was_not_confirmed() {
    // An upload that "succeeds" without a confirmation must not unlock prune.
    struct NoConfirm;
    #[async_trait]
    impl Runner for NoConfirm {
        async fn run(
            &self,
            action: &Action,
            state: &Mutex<RunState>,
            _c: &CancellationToken,
        ) -> Outcome {
            let mut s = state.lock().await;
            match action {
                Action::Observe => s.nodes = vec![healthy_node()],
                Action::GuardCheck => {
                    s.decision = Some(Decision {
                        branch: Branch::Backup,
                        rule: "t",
                        observed: String::new(),
                        explanation: String::new(),
                        backup_allowed: true,
                    })
                }
                Action::Verify => {
                    s.snapshot = Some(TakenSnapshot {
                        name: "x".into(),
                        path: "/x".into(),
                        identity: identity(1, "aa"),
                        time: jiff::Timestamp::UNIX_EPOCH,
                    })
                }
                _ => {}
            }
            Outcome::ok("done")
        }
    }
    let reports = exec::execute(
        &dag(),
        Arc::new(NoConfirm),
        Arc::new(Mutex::new(RunState::default())),
        CancellationToken::new(),
        4,
    )
    .await;
    let prune = reports.iter().find(|r| r.id == "prune:a").unwrap();
    assert_eq!(prune.status, Status::Skipped);
    assert!(
        prune.reason.contains("not confirmed on `a`"),
        "{}",
        prune.reason
    );
}

fn remote(name: &str, index: u64, sha: &str) -> RemoteSnapshot {
    RemoteSnapshot {
        name: name.into(),
        size: 1,
        sha256: Some(sha.into()),
        index: Some(index),
        term: Some(1),
        time: snapward::backends::snapshot_time("openbao-", name).unwrap(),
        cluster_id: None,
        tag: None,
        sums: None,
        trust: snapward::backends::Trust::Unchecked,
    }
}

fn local(name: &str, index: u64, sha: &str) -> TakenSnapshot {
    TakenSnapshot {
        name: name.into(),
        path: format!("/snap/{name}").into(),
        identity: identity(index, sha),
        time: snapward::backends::snapshot_time("openbao-", name).unwrap(),
    }
}

#[test]
fn mirror_uploads_the_backlog_after_an_outage() {
    let rules = Rules {
        keep_last: Some(5),
        ..Default::default()
    };
    let remote = vec![remote("openbao-20261120-020000.snap", 10, "a")];
    let locals = vec![
        local("openbao-20261120-020000.snap", 10, "a"),
        local("openbao-20261121-020000.snap", 11, "b"),
        local("openbao-20261122-020000.snap", 12, "c"),
    ];
    let p = mirror_plan(&rules, &remote, &locals);
    let names: Vec<&str> = p.upload.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "openbao-20261122-020000.snap",
            "openbao-20261121-020000.snap"
        ]
    );
}

#[test]
fn mirror_never_reuploads_what_remote_retention_would_delete_at_once() {
    // remote keeps 2; local keeps 4 older ones the remote already aged out
    let rules = Rules {
        keep_last: Some(2),
        ..Default::default()
    };
    let remote = vec![
        remote("openbao-20261123-020000.snap", 13, "d"),
        remote("openbao-20261124-020000.snap", 14, "e"),
    ];
    let locals = vec![
        local("openbao-20261121-020000.snap", 11, "b"),
        local("openbao-20261122-020000.snap", 12, "c"),
        local("openbao-20261123-020000.snap", 13, "d"),
        local("openbao-20261124-020000.snap", 14, "e"),
    ];
    let p = mirror_plan(&rules, &remote, &locals);
    assert!(p.upload.is_empty(), "{:?}", p.upload);
    assert_eq!(p.not_uploaded.len(), 2);
}

#[test]
fn invariant_2_mirror_of_an_empty_local_dir_plans_nothing() {
    let rules = Rules {
        keep_last: Some(2),
        ..Default::default()
    };
    let remote = vec![remote("openbao-20261123-020000.snap", 13, "d")];
    let p = mirror_plan(&rules, &remote, &[]);
    assert!(p.upload.is_empty() && p.not_uploaded.is_empty() && p.conflicts.is_empty());
}

#[test]
fn mirror_never_overwrites_a_different_remote_object() {
    let rules = Rules {
        keep_last: Some(5),
        ..Default::default()
    };
    let remote = vec![remote("openbao-20261123-020000.snap", 13, "remote-sha")];
    let locals = vec![local("openbao-20261123-020000.snap", 13, "local-sha")];
    let p = mirror_plan(&rules, &remote, &locals);
    assert!(p.upload.is_empty());
    assert_eq!(p.conflicts, ["openbao-20261123-020000.snap"]);
}
