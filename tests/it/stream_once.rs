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
        items(&r, "upload:nfs")
            .iter()
            .any(|i| i["kind"] == "stream-committed" && i["name"] == name.as_str()),
        "upload:nfs published the streamed copy instead of copying the local file\n{}",
        r.context()
    );
    assert!(
        items(&r, "upload:nfs")
            .iter()
            .any(|i| i["kind"] == "uploaded" && i["name"] == name.as_str()),
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
