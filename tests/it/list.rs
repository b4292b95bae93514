//! `snapward list`: every store's snapshots with identity, validity and
//! retention's verdict with reasons — read-only, on real files.

use crate::support::fixture_snapshot;
use crate::support::work::files_in;

#[test]
fn list_shows_identity_validity_and_retention_verdicts_without_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let nfs = dir.path().join("nfs");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&nfs).unwrap();
    for name in [
        "openbao-20261120-020000.snap",
        "openbao-20261121-020000.snap",
        "openbao-20261122-020000.snap",
    ] {
        std::fs::copy(fixture_snapshot(), local.join(name)).unwrap();
    }
    // a truncated file: invalid, never counted
    let bytes = std::fs::read(fixture_snapshot()).unwrap();
    std::fs::write(
        local.join("openbao-20261123-020000.snap"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    std::fs::copy(fixture_snapshot(), nfs.join("openbao-20261122-020000.snap")).unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: l}}\nspec:\n  cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n  local: {{path: {}, retention: {{keepLast: 2}}}}\n  targets:\n    - {{name: nfs, filesystem: {{path: {}}}, retention: {{keepLast: 5}}}}\n",
            local.display(),
            nfs.display()
        ),
    )
    .unwrap();
    let before = (files_in(&local), files_in(&nfs));
    let out = crate::support::cmd::snapward()
        .args(["list", "--format", "json", "-f"])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        before,
        (files_in(&local), files_in(&nfs)),
        "list must not change any store"
    );

    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stores = v.as_array().unwrap();
    assert_eq!(stores[0]["store"], "local");
    let snaps = stores[0]["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 4);
    let by_name = |n: &str| snaps.iter().find(|s| s["name"] == n).unwrap().clone();
    let bad = by_name("openbao-20261123-020000.snap");
    assert_eq!(bad["valid"], false);
    assert_eq!(bad["verdict"], "ignore");
    assert!(
        bad["invalid"].as_str().unwrap().contains("truncated"),
        "{bad}"
    );
    // All three valid copies share the fixture's raft identity; the newest
    // by name (time) wins the tie. keepLast 2 keeps two.
    let verdicts: Vec<String> = ["20261120", "20261121", "20261122"]
        .iter()
        .map(|d| {
            by_name(&format!("openbao-{d}-020000.snap"))["verdict"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(verdicts, ["delete", "keep", "keep"]);
    let newest = by_name("openbao-20261122-020000.snap");
    assert_eq!(newest["index"], 36);
    assert!(
        newest["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("newest"))
    );
    assert_eq!(stores[1]["store"], "nfs");
    assert_eq!(stores[1]["snapshots"][0]["verdict"], "keep");
}

#[test]
fn list_of_a_missing_local_dir_is_empty_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: l}}\nspec:\n  cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n  local: {{path: {}, retention: {{keepLast: 2}}}}\n",
            dir.path().join("absent").display()
        ),
    )
    .unwrap();
    let out = crate::support::cmd::snapward()
        .args(["list", "-f"])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("absent").exists(),
        "list must not create the store"
    );
}
