//! What the policy's retention would keep and delete at the next run, from
//! an inventory: the JSON `snapward list --format json` printed (committed
//! to the repository or fetched by a CI job). `plan --inventory` shows it so
//! a PR that lowers `keepDaily` says how many snapshots it would delete.
//!
//! The decision is prune's (`exec::actions::prune`), on the listed claims:
//! - only snapshots the listing counted (verdict `keep`/`delete`: valid and,
//!   where checked, authenticated) take part; the rest (`ignore`: invalid,
//!   foreign, other keys) are never deleted and are reported as such;
//! - the next run's own snapshot counts (when `spec.schedule` says when the
//!   next run is: the first firing after the newest listed snapshot), as it
//!   does in that run's prune;
//! - locally, with `guards.keepUnmirroredLocal` and targets, a snapshot no
//!   listed target holds (same name and SHA-256, counted) is kept;
//! - on an S3 target with `objectLock`, a deletion within `days` of the
//!   snapshot's time is reported as retained by the lock (the store refuses
//!   it; the upload, and so the lock, may be later than the snapshot).
//!
//! Stage: plan. Pure: parses text it is given, never reads a file or the
//! clock.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::policy::{StoreId, TargetKind, ValidPolicy};
use crate::retention::{self, Candidate, Verdict};

/// One store of the inventory, as `snapward list --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedStore {
    pub store: String,
    #[serde(default)]
    pub error: Option<String>,
    pub snapshots: Vec<ListedSnapshot>,
}

/// One snapshot row of `list --format json` (fields `plan` does not need
/// are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSnapshot {
    pub name: String,
    pub time: Timestamp,
    pub valid: bool,
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(default)]
    pub term: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// `ignore`: not counted by retention (invalid, foreign, other keys).
    pub verdict: ListedVerdict,
    #[serde(default)]
    pub invalid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListedVerdict {
    Keep,
    Delete,
    Ignore,
}

impl ListedSnapshot {
    /// Retention counted it when it was listed.
    fn counted(&self) -> bool {
        self.verdict != ListedVerdict::Ignore
    }
}

/// Why an inventory cannot be used. The caller names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error(
        "not the JSON of `snapward list --format json`: {0} \
         (expected an array of {{\"store\", \"snapshots\": [...]}}; regenerate it with `snapward list -f POLICY --format json > FILE`)"
    )]
    Json(String),
    #[error("store `{0}` appears twice: one entry per store")]
    DuplicateStore(String),
    #[error("store `{store}`: snapshot `{name}` appears twice")]
    DuplicateSnapshot { store: String, name: String },
    #[error(
        "store `{store}`: snapshot `{name}` is counted (verdict keep/delete) but has no raft index and term: \
         an inventory from an old or edited listing? Regenerate it with `snapward list --format json`"
    )]
    NoIdentity { store: String, name: String },
}

/// Parses an inventory and checks it is one `list` could have printed.
pub fn parse(text: &str) -> Result<Vec<ListedStore>, InventoryError> {
    let stores: Vec<ListedStore> =
        serde_json::from_str(text).map_err(|e| InventoryError::Json(e.to_string()))?;
    let mut seen = BTreeSet::new();
    for s in &stores {
        if !seen.insert(s.store.as_str()) {
            return Err(InventoryError::DuplicateStore(s.store.clone()));
        }
        let mut names = BTreeSet::new();
        for r in &s.snapshots {
            if !names.insert(r.name.as_str()) {
                return Err(InventoryError::DuplicateSnapshot {
                    store: s.store.clone(),
                    name: r.name.clone(),
                });
            }
            if r.counted() && (r.index.is_none() || r.term.is_none()) {
                return Err(InventoryError::NoIdentity {
                    store: s.store.clone(),
                    name: r.name.clone(),
                });
            }
        }
    }
    Ok(stores)
}

/// The next run's snapshot, as its prune counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextRun {
    pub time: Timestamp,
    pub name: String,
}

/// A snapshot retention would delete but the store's Object Lock keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Locked {
    pub name: String,
    /// The snapshot's time plus `objectLock.days` (the upload may be later).
    pub locked_until: Timestamp,
}

/// A snapshot retention does not count: never deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotCounted {
    pub name: String,
    pub reason: String,
}

/// How a store of the policy appears in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "error")]
pub enum StoreStatus {
    Listed,
    /// The policy names it; the inventory does not list it.
    NotInInventory,
    /// `list` could not read it (its error).
    Unavailable(String),
}

/// What retention would do to one store at the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorePreview {
    pub store: String,
    #[serde(flatten)]
    pub status: StoreStatus,
    /// Kept by retention, newest first (the next run's snapshot included).
    pub keep: Vec<String>,
    /// Deleted, oldest first.
    pub delete: Vec<String>,
    /// Retention would delete these; Object Lock keeps them for now.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retained_by_lock: Vec<Locked>,
    /// Retention would delete these local snapshots, but no target holds
    /// them (`guards.keepUnmirroredLocal`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_unmirrored: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_counted: Vec<NotCounted>,
}

/// Retention at the next run, per store of the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// The inventory file, as given.
    pub inventory: String,
    /// The newest snapshot the inventory lists (any store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_listed: Option<Timestamp>,
    /// `None`: the policy has no `spec.schedule`, so the next run's
    /// snapshot is not counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<NextRun>,
    /// In the policy's order: local, then each target.
    pub stores: Vec<StorePreview>,
    /// Listed in the inventory, not in the policy: ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_in_policy: Vec<String>,
}

/// The first firing of `schedule` strictly after `after`.
pub fn next_firing(schedule: &str, after: Timestamp) -> Option<Timestamp> {
    let cron: croner::Cron = schedule.parse().ok()?;
    let start = chrono::DateTime::from_timestamp(
        after.as_second(),
        after.subsec_nanosecond().max(0).unsigned_abs(),
    )?;
    let next = cron.iter_after(start).next()?;
    Timestamp::from_second(next.timestamp()).ok()
}

fn candidate(r: &ListedSnapshot) -> Candidate {
    Candidate {
        id: r.name.clone(),
        time: r.time,
        index: r.index.unwrap_or(0),
        term: r.term.unwrap_or(0),
        valid: r.counted(),
    }
}

fn not_counted(s: &ListedStore) -> Vec<NotCounted> {
    s.snapshots
        .iter()
        .filter(|r| !r.counted())
        .map(|r| NotCounted {
            name: r.name.clone(),
            reason: r
                .invalid
                .clone()
                .unwrap_or_else(|| retention::REASON_INVALID.to_string()),
        })
        .collect()
}

/// What the next run's prune would do to each store of `p`, given what
/// `stores` lists. `inventory` names the file in the output.
pub fn preview(p: &ValidPolicy, inventory: &str, stores: &[ListedStore]) -> Preview {
    let listed = |name: &str| stores.iter().find(|s| s.store == name);
    let newest_listed = stores
        .iter()
        .flat_map(|s| s.snapshots.iter().map(|r| r.time))
        .max();
    let next_run = p
        .doc
        .spec
        .schedule
        .as_deref()
        .zip(newest_listed)
        .and_then(|(sched, t)| next_firing(sched, t))
        .map(|time| NextRun {
            time,
            name: format!("{}{}.snap", p.local.prefix, time.strftime("%Y%m%d-%H%M%S")),
        });
    // The next snapshot is the newest by the one rule: above every listed
    // raft index.
    let counted = stores
        .iter()
        .flat_map(|s| s.snapshots.iter())
        .filter(|r| r.counted());
    let top_index = counted.clone().filter_map(|r| r.index).max().unwrap_or(0);
    let top_term = counted.filter_map(|r| r.term).max().unwrap_or(0);
    let next_candidate = next_run.as_ref().map(|n| Candidate {
        id: n.name.clone(),
        time: n.time,
        index: top_index.saturating_add(1),
        term: top_term,
        valid: true,
    });
    // Lock windows count from the next run's time, else from the newest
    // listed snapshot (a lower bound on "now").
    let reference = next_run.as_ref().map(|n| n.time).or(newest_listed);

    let mut order: Vec<(String, &retention::Rules, Option<u32>)> =
        vec![(StoreId::LOCAL.to_string(), &p.local.rules, None)];
    for t in &p.targets {
        let lock = match &t.kind {
            TargetKind::S3(s) => s.object_lock.as_ref().map(|l| l.days),
            // A bucket retention policy, immutability policy or hold is not known in
            // advance: its refusals show up as `retained` when prune runs.
            TargetKind::Azure(_) | TargetKind::Gcs(_) | TargetKind::Filesystem(_) => None,
        };
        order.push((t.name.clone(), &t.rules, lock));
    }
    let target_names: BTreeSet<&str> = p.targets.iter().map(|t| t.name.as_str()).collect();
    let guard_mirror = p.guards.keep_unmirrored_local && !p.targets.is_empty();

    let mut out = Vec::new();
    for (name, rules, lock_days) in &order {
        let empty = |status| StorePreview {
            store: name.clone(),
            status,
            keep: vec![],
            delete: vec![],
            retained_by_lock: vec![],
            kept_unmirrored: vec![],
            not_counted: vec![],
        };
        let Some(s) = listed(name) else {
            out.push(empty(StoreStatus::NotInInventory));
            continue;
        };
        if let Some(e) = &s.error {
            out.push(empty(StoreStatus::Unavailable(e.clone())));
            continue;
        }
        let mut cands: Vec<Candidate> = s.snapshots.iter().map(candidate).collect();
        if let Some(n) = &next_candidate
            && !s.snapshots.iter().any(|r| r.name == n.id)
        {
            cands.push(n.clone());
        }
        let decisions = retention::apply(rules, &cands);
        let mut preview = empty(StoreStatus::Listed);
        preview.not_counted = not_counted(s);
        let mut deletions: Vec<&ListedSnapshot> = Vec::new();
        for d in &decisions {
            match d.verdict {
                Verdict::Keep => preview.keep.push(d.id.clone()),
                Verdict::Delete => {
                    if let Some(r) = s.snapshots.iter().find(|r| r.name == d.id) {
                        deletions.push(r);
                    }
                }
                Verdict::Ignore => {}
            }
        }
        // Oldest first.
        deletions.reverse();
        for r in deletions {
            if name == StoreId::LOCAL && guard_mirror && !mirrored(r, stores, &target_names) {
                preview.kept_unmirrored.push(r.name.clone());
                continue;
            }
            let until = lock_days.and_then(|days| {
                r.time
                    .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
                    .ok()
            });
            match (until, reference) {
                (Some(until), Some(now)) if until > now => preview.retained_by_lock.push(Locked {
                    name: r.name.clone(),
                    locked_until: until,
                }),
                _ => preview.delete.push(r.name.clone()),
            }
        }
        out.push(preview);
    }
    let policy_stores: BTreeSet<&str> = order.iter().map(|(n, _, _)| n.as_str()).collect();
    Preview {
        inventory: inventory.to_string(),
        newest_listed,
        next_run,
        stores: out,
        not_in_policy: stores
            .iter()
            .filter(|s| !policy_stores.contains(s.store.as_str()))
            .map(|s| s.store.clone())
            .collect(),
    }
}

/// A listed target of the policy holds this local snapshot: same name and
/// SHA-256, counted there (prune's `keepUnmirroredLocal` test).
fn mirrored(local: &ListedSnapshot, stores: &[ListedStore], targets: &BTreeSet<&str>) -> bool {
    local.sha256.is_some()
        && stores
            .iter()
            .filter(|s| targets.contains(s.store.as_str()) && s.error.is_none())
            .any(|s| {
                s.snapshots
                    .iter()
                    .any(|r| r.name == local.name && r.sha256 == local.sha256 && r.counted())
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(spec_tail: &str) -> ValidPolicy {
        let text = format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: p}}\nspec:\n  schedule: \"0 2 * * *\"\n  \
             cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n{spec_tail}"
        );
        crate::policy::load_policy_text("p.yaml", &text).unwrap()
    }

    fn row(day: u32, sha: &str, verdict: &str) -> serde_json::Value {
        json!({
            "name": format!("openbao-202611{day:02}-020000.snap"),
            "time": format!("2026-11-{day:02}T02:00:00Z"),
            "valid": true, "index": 100 + day, "term": 2, "sha256": sha,
            "verdict": verdict, "reasons": []
        })
    }

    fn inv(v: serde_json::Value) -> Vec<ListedStore> {
        parse(&v.to_string()).unwrap()
    }

    #[test]
    fn lowering_keep_daily_deletes_the_oldest_and_counts_the_next_run() {
        let p = policy(
            "  local: {path: /tmp/x, retention: {keepLast: 1}}\n  guards: {keepUnmirroredLocal: false}\n",
        );
        let rows: Vec<_> = (1..=10).map(|d| row(d, "aa", "keep")).collect();
        let v = preview(
            &p,
            "i.json",
            &inv(json!([{"store": "local", "snapshots": rows}])),
        );
        let next = v.next_run.clone().unwrap();
        assert_eq!(next.name, "openbao-20261111-020000.snap");
        let local = &v.stores[0];
        assert_eq!(local.keep, [next.name.as_str()]);
        assert_eq!(local.delete.len(), 10);
        assert_eq!(
            local.delete[0], "openbao-20261101-020000.snap",
            "oldest first"
        );
    }

    #[test]
    fn unmirrored_local_snapshots_are_kept_and_ignored_ones_never_deleted() {
        let p = policy(
            "  local: {path: /tmp/x, retention: {keepLast: 1}}\n  targets:\n    - {name: nfs, filesystem: {path: /m}, retention: {keepLast: 5}}\n",
        );
        let mut bad = row(3, "cc", "ignore");
        bad["valid"] = json!(false);
        bad["invalid"] = json!("truncated");
        let v = preview(
            &p,
            "i.json",
            &inv(json!([
                {"store": "local", "snapshots": [row(1, "aa", "keep"), row(2, "bb", "keep"), bad]},
                {"store": "nfs", "snapshots": [row(1, "aa", "keep"), row(2, "other", "keep")]},
                {"store": "gone", "snapshots": []}
            ])),
        );
        let local = &v.stores[0];
        assert_eq!(local.delete, ["openbao-20261101-020000.snap"]);
        // Same name on nfs, other content: not a copy.
        assert_eq!(local.kept_unmirrored, ["openbao-20261102-020000.snap"]);
        assert_eq!(local.not_counted[0].reason, "truncated");
        assert_eq!(v.not_in_policy, ["gone"]);
    }

    #[test]
    fn a_store_missing_or_unreadable_in_the_inventory_says_so() {
        let p = policy(
            "  local: {path: /tmp/x, retention: {keepLast: 1}}\n  targets:\n    - {name: nfs, filesystem: {path: /m}, retention: {keepLast: 5}}\n",
        );
        let v = preview(
            &p,
            "i.json",
            &inv(json!([{"store": "local", "error": "cannot read", "snapshots": []}])),
        );
        assert_eq!(
            v.stores[0].status,
            StoreStatus::Unavailable("cannot read".into())
        );
        assert_eq!(v.stores[1].status, StoreStatus::NotInInventory);
        assert!(
            v.next_run.is_none(),
            "nothing listed: no time to count from"
        );
    }

    #[test]
    fn malformed_inventories_are_refused_with_the_reason() {
        for (text, want) in [
            ("{}", "not the JSON of `snapward list"),
            ("[{\"store\": \"local\"}]", "missing field `snapshots`"),
            (
                "[{\"store\": \"a\", \"snapshots\": []}, {\"store\": \"a\", \"snapshots\": []}]",
                "appears twice",
            ),
            (
                "[{\"store\": \"a\", \"snapshots\": [{\"name\": \"x\", \"time\": \"2026-11-01T00:00:00Z\", \"valid\": true, \"verdict\": \"keep\"}]}]",
                "no raft index",
            ),
            (
                "[{\"store\": \"a\", \"snapshots\": [{\"name\": \"x\", \"time\": \"yesterday\", \"valid\": true, \"verdict\": \"keep\"}]}]",
                "line 1",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn next_firing_is_strictly_after() {
        let t: Timestamp = "2026-11-29T02:15:00Z".parse().unwrap();
        assert_eq!(
            next_firing("15 2 * * *", t).unwrap().to_string(),
            "2026-11-30T02:15:00Z"
        );
        assert!(next_firing("not cron", t).is_none());
    }
}
