//! `snapward plan --inventory FILE`: what the policy's retention would keep
//! and delete per store at the next run, from the JSON `snapward list
//! --format json` printed.
//!
//! The committed inventory (fixtures/inventory/production-3-node.json) is
//! what `list` prints for real stores: the first test rebuilds them from the
//! fixture snapshot and checks the file is still exactly that output
//! (`SNAPWARD_UPDATE_FIXTURES=1` rewrites it). The story it tells: the
//! stores were listed under an older version of the production policy (more
//! days kept, and an `old-nas` target since removed); the plan shows what
//! policies/production-3-node.yaml would delete.

use std::path::Path;

use crate::support::cmd::snapward;
use crate::support::{fixture_snapshot, root};

const INVENTORY: &str = "fixtures/inventory/production-3-node.json";
const POLICY: &str = "policies/production-3-node.yaml";

fn days(from: (u32, u32), count: u32) -> Vec<String> {
    let start = jiff::civil::date(2026, from.0 as i8, from.1 as i8);
    (0..count)
        .map(|i| {
            let d = start
                .checked_add(jiff::Span::new().days(i64::from(i)))
                .unwrap();
            format!("openbao-{}-021500.snap", d.strftime("%Y%m%d"))
        })
        .collect()
}

fn fill(dir: &Path, names: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    for n in names {
        std::fs::copy(fixture_snapshot(), dir.join(n)).unwrap();
    }
}

/// Retention per store (local, r2, nfs, old-nas), and the schedule line.
struct Rules<'a> {
    schedule: &'a str,
    local: &'a str,
    r2: &'a str,
    nfs: &'a str,
    old_nas: Option<&'a str>,
}

/// The policy the committed inventory was listed with.
const BEFORE: Rules = Rules {
    schedule: "  schedule: \"15 2 * * *\"\n",
    local: "{keepLast: 10}",
    r2: "{keepDaily: 60}",
    nfs: "{keepDaily: 30}",
    old_nas: Some("{keepLast: 10}"),
};

/// The stores the committed inventory describes, built from the fixture
/// snapshot in `d`.
fn build_stores(d: &Path) {
    // local: the last five nightly runs, a manual run no target holds, and a
    // truncated file (never counted).
    let mut local = days((11, 25), 5);
    local.push("openbao-20261127-120000.snap".into());
    fill(&d.join("local"), &local);
    let bytes = std::fs::read(fixture_snapshot()).unwrap();
    std::fs::write(
        d.join("local/openbao-20261124-021500.snap"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    fill(&d.join("r2"), &days((10, 16), 45));
    fill(&d.join("nfs"), &days((10, 31), 30));
    fill(&d.join("old-nas"), &days((11, 20), 10));
}

/// A policy over the stores in `d` (all filesystem targets).
fn write_policy(d: &Path, file: &str, r: &Rules) -> std::path::PathBuf {
    let target = |name: &str, retention: &str| {
        format!(
            "    - {{name: {name}, filesystem: {{path: {}}}, retention: {retention}}}\n",
            d.join(name).display()
        )
    };
    let policy = d.join(file);
    std::fs::write(
        &policy,
        format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: openbao-prod}}\nspec:\n{}  \
             cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n  \
             local: {{path: {}, retention: {}}}\n  targets:\n{}{}{}",
            r.schedule,
            d.join("local").display(),
            r.local,
            target("r2", r.r2),
            target("nfs", r.nfs),
            r.old_nas.map(|o| target("old-nas", o)).unwrap_or_default(),
        ),
    )
    .unwrap();
    policy
}

fn list_json(policy: &Path) -> String {
    let o = snapward()
        .args(["list", "--format", "json", "-f"])
        .arg(policy)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `snapward list --format json` of the stores the committed inventory
/// describes, under the policy they were listed with.
fn list_the_stores() -> String {
    let dir = tempfile::tempdir().unwrap();
    build_stores(dir.path());
    list_json(&write_policy(dir.path(), "before.yaml", &BEFORE))
}

#[test]
fn the_committed_inventory_is_what_list_prints() {
    let listed = list_the_stores();
    let path = root().join(INVENTORY);
    if std::env::var_os("SNAPWARD_UPDATE_FIXTURES").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &listed).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == listed,
        "{INVENTORY} is not what `snapward list --format json` prints for its stores: \
         rerun this test with SNAPWARD_UPDATE_FIXTURES=1"
    );
}

fn plan(args: &[&str]) -> (i32, String, String) {
    let o = snapward().arg("plan").args(args).output().unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

/// The part of a text or Markdown plan the inventory adds.
fn section(out: &str, start: &str, end: Option<&str>) -> String {
    let from = out
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in\n{out}"));
    let rest = &out[from..];
    match end.and_then(|e| rest.find(e)) {
        Some(to) => rest[..to].to_string(),
        None => rest.to_string(),
    }
}

#[test]
fn plan_with_an_inventory_shows_what_retention_would_delete_per_store() {
    let (code, text, err) = plan(&["-f", POLICY, "--inventory", INVENTORY]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(
        "plan-inventory-text",
        section(&text, "Retention at the next run", None)
    );
    // The inventory adds a section, and changes nothing else.
    let (_, without, _) = plan(&["-f", POLICY]);
    let added = section(&text, "\nRetention at the next run", None);
    assert_eq!(text.replacen(&added, "", 1), without);

    let (code, md, err) = plan(&[
        "-f",
        POLICY,
        "--inventory",
        INVENTORY,
        "--format",
        "markdown",
    ]);
    assert_eq!(code, 0, "{err}");
    let retention = section(
        &md,
        "#### Retention at the next run",
        Some("\n<details><summary>Actions"),
    );
    insta::assert_snapshot!("plan-inventory-markdown", retention);
    // What a reviewer reads first, in the words the issue asks for.
    assert!(
        retention.contains(
            "- **r2**: keeps 20, would delete 26 snapshots (oldest `openbao-20261016-021500.snap`"
        ),
        "{retention}"
    );
    assert!(retention.contains("`old-nas`"), "{retention}");

    let (code, json, err) = plan(&["-f", POLICY, "--inventory", INVENTORY, "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    insta::assert_json_snapshot!("plan-inventory-json", v["retention"]);

    // A picture of the DAG leaves it out, and says where it is.
    let (code, dot, err) = plan(&["-f", POLICY, "--inventory", INVENTORY, "--format", "dot"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dot, plan(&["-f", POLICY, "--format", "dot"]).1);
    assert!(err.contains("--format dot draws the DAG only"), "{err}");
}

#[test]
fn the_preview_counts_the_next_run_and_spares_what_prune_spares() {
    // Under the policy the inventory was listed with, `list` kept all but
    // the truncated file.
    let inv: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(INVENTORY)).unwrap()).unwrap();
    for store in inv.as_array().unwrap() {
        for s in store["snapshots"].as_array().unwrap() {
            let want = if s["valid"] == true { "keep" } else { "ignore" };
            assert_eq!(s["verdict"], want, "{s}");
        }
    }
    let (_, json, _) = plan(&["-f", POLICY, "--inventory", INVENTORY, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let r = &v["retention"];
    assert_eq!(r["nextRun"]["name"], "openbao-20261130-021500.snap");
    let store = |n: &str| {
        r["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["store"] == n)
            .unwrap()
            .clone()
    };
    let local = store("local");
    // keepLast 3 with the next run's snapshot: Nov 30, 29, 28 kept.
    assert_eq!(local["keep"].as_array().unwrap().len(), 3);
    // The manual run exists on no target: kept (guards.keepUnmirroredLocal).
    assert_eq!(local["keptUnmirrored"][0], "openbao-20261127-120000.snap");
    assert_eq!(
        local["notCounted"][0]["name"], "openbao-20261124-021500.snap",
        "the truncated file is never deleted"
    );
    assert!(
        !local["delete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "openbao-20261124-021500.snap")
    );
    // Every listed snapshot is kept or deleted (or spared), none lost.
    let listed_r2 = inv
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["store"] == "r2")
        .unwrap()["snapshots"]
        .as_array()
        .unwrap()
        .len();
    let r2 = store("r2");
    assert_eq!(
        r2["keep"].as_array().unwrap().len() + r2["delete"].as_array().unwrap().len(),
        listed_r2 + 1,
        "the listed ones plus the next run's"
    );
    assert_eq!(r["notInPolicy"][0], "old-nas");
}

#[test]
fn stores_missing_from_the_inventory_and_object_lock_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    // r2 with an Object Lock of 20 days (S3 shape), and a target the
    // inventory does not list.
    std::fs::write(
        &policy,
        "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {name: openbao-prod}\nspec:\n  \
         schedule: \"15 2 * * *\"\n  cluster: {nodes: [{address: \"http://127.0.0.1:1\"}]}\n  \
         local: {path: /tmp/snapward-none, retention: {keepLast: 3}}\n  targets:\n    \
         - name: r2\n      s3: {endpoint: \"https://s3.example.com\", region: us-east-1, bucket: snapshots, objectLock: {mode: GOVERNANCE, days: 20}}\n      \
         retention: {keepLast: 5}\n    \
         - {name: tape, filesystem: {path: /mnt/tape}, retention: {keepLast: 5}}\n",
    )
    .unwrap();
    let (code, text, err) = plan(&["-f", policy.to_str().unwrap(), "--inventory", INVENTORY]);
    assert_eq!(code, 0, "{err}");
    let r = section(&text, "Retention at the next run", None);
    // keepLast 5 deletes 41 of r2's 46; the 15 newest of those (within 20
    // days of the next run at 2026-11-30) are still locked.
    assert!(
        r.contains("  r2     keeps 5, would delete 26 snapshots")
            && r.contains("Object Lock keeps 15 more it would delete (until 2026-12-15T02:15:00Z at the latest)"),
        "{r}"
    );
    // Locked until its time + 20 days, past the next run; the one whose
    // lock ends exactly at the next run is deleted.
    assert!(
        r.contains("locked  openbao-20261111-021500.snap (until 2026-12-01T02:15:00Z)"),
        "{r}"
    );
    assert!(r.contains("delete  openbao-20261110-021500.snap"), "{r}");
    assert!(r.contains("  tape   not in the inventory"), "{r}");
    assert!(
        r.contains("In the inventory, not in the policy (ignored): nfs, old-nas"),
        "{r}"
    );
}

#[test]
fn a_bad_inventory_is_a_usage_error_naming_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        (
            dir.path().join("absent.json").display().to_string(),
            "cannot read the inventory",
        ),
        (
            write("yaml.json", "- store: local\n"),
            "not the JSON of `snapward list --format json`",
        ),
        (
            write("obj.json", "{\"store\": \"local\"}"),
            "expected an array",
        ),
        (
            write(
                "twice.json",
                "[{\"store\": \"r2\", \"snapshots\": []}, {\"store\": \"r2\", \"snapshots\": []}]",
            ),
            "store `r2` appears twice",
        ),
        (
            write(
                "noid.json",
                "[{\"store\": \"r2\", \"snapshots\": [{\"name\": \"openbao-20261101-021500.snap\", \"time\": \"2026-11-01T02:15:00Z\", \"valid\": true, \"verdict\": \"keep\"}]}]",
            ),
            "has no raft index and term",
        ),
    ];
    for (file, want) in cases {
        let (code, out, err) = plan(&["-f", POLICY, "--inventory", &file]);
        assert_eq!(code, 2, "{file}: {err}");
        assert!(out.is_empty(), "{file}: nothing on stdout");
        assert!(err.contains(&file), "{file} not named: {err}");
        assert!(err.contains(want), "{file}: want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The plan decides as `list` (the executor's candidates and retention)
/// does: with no schedule (so no next-run snapshot is added), the plan of
/// the production retention over the committed inventory keeps exactly what
/// `list` under that policy keeps, and deletes what it deletes — less the
/// local snapshots no target holds, which prune's guard keeps.
#[test]
fn the_plan_keeps_and_deletes_what_list_decides_under_the_same_policy() {
    let dir = tempfile::tempdir().unwrap();
    build_stores(dir.path());
    let after = Rules {
        schedule: "",
        local: "{keepLast: 3}",
        r2: "{keepDaily: 14, keepWeekly: 8, keepMonthly: 12, keepYearly: 3}",
        nfs: "{keepDaily: 7, keepWithin: 3d}",
        old_nas: None,
    };
    let policy = write_policy(dir.path(), "after.yaml", &after);
    let listed: serde_json::Value = serde_json::from_str(&list_json(&policy)).unwrap();
    let (code, json, err) = plan(&[
        "-f",
        policy.to_str().unwrap(),
        "--inventory",
        INVENTORY,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(
        v["retention"]["nextRun"].is_null(),
        "no schedule: no next run"
    );
    let names = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_array()
            .map(|a| a.iter().map(|n| n.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    for store in ["local", "r2", "nfs"] {
        let l = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["store"] == store)
            .unwrap();
        let verdict = |want: &str| -> std::collections::BTreeSet<String> {
            l["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["verdict"] == want)
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect()
        };
        let p = v["retention"]["stores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["store"] == store)
            .unwrap();
        assert_eq!(names(&p["keep"]), verdict("keep"), "{store}: kept");
        let mut deleted = names(&p["delete"]);
        deleted.extend(names(&p["keptUnmirrored"]));
        assert_eq!(deleted, verdict("delete"), "{store}: deleted");
        assert!(
            !verdict("delete").is_empty(),
            "{store}: the case deletes something"
        );
    }
}

/// A real S3 store (moto): `list` of snapshots snapward uploaded and of an
/// object another tool put under the prefix with a snapshot's name (no
/// snapward metadata). The plan over that inventory deletes only
/// snapward's surplus and never the other object.
#[tokio::test]
async fn an_s3_inventory_never_deletes_an_object_snapward_did_not_write() {
    use crate::support::s3::S3Server;
    let s3 = S3Server::moto();
    s3.create_bucket("snaps", false).await;
    let names: Vec<String> = days((11, 20), 6);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    s3.seed("snaps", "prod/", &fixture_snapshot(), &refs).await;
    let stranger = "openbao-20261130-000000.snap";
    s3.client()
        .put_object()
        .bucket("snaps")
        .key(format!("prod/{stranger}"))
        .body(std::fs::read(fixture_snapshot()).unwrap().into())
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = serde_json::to_string(&s3.target_config("snaps", "prod/")).unwrap();
    let write = |file: &str, keep: u32| {
        let p = dir.path().join(file);
        std::fs::write(
            &p,
            format!(
                "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: p}}\nspec:\n  \
                 cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n  \
                 local: {{path: {}, retention: {{keepLast: 3}}}}\n  \
                 targets: [{{name: s3, s3: {target}, retention: {{keepLast: {keep}}}}}]\n",
                dir.path().join("local").display()
            ),
        )
        .unwrap();
        p
    };
    let before = write("before.yaml", 10);
    let inventory = dir.path().join("inventory.json");
    std::fs::write(&inventory, list_json(&before)).unwrap();
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    let s3_rows = listed[1]["snapshots"].as_array().unwrap();
    assert_eq!(s3_rows.len(), 7, "{listed}");
    let row = s3_rows.iter().find(|r| r["name"] == stranger).unwrap();
    assert_eq!(row["verdict"], "ignore", "{row}");

    let after = write("after.yaml", 2);
    let (code, json, err) = plan(&[
        "-f",
        after.to_str().unwrap(),
        "--inventory",
        inventory.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let st = &v["retention"]["stores"][1];
    assert_eq!(st["store"], "s3");
    // keepLast 2 of snapward's six (no schedule: no next run counted).
    assert_eq!(st["keep"], serde_json::json!([names[5], names[4]]), "{st}");
    assert_eq!(st["delete"].as_array().unwrap().len(), 4, "{st}");
    assert_eq!(st["notCounted"][0]["name"], stranger, "{st}");
    assert!(
        !st["delete"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == stranger),
        "{st}"
    );
    // Nothing was touched: the bucket still holds all seven.
    assert_eq!(s3.objects("snaps").await.len(), 7);
}
