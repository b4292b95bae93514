//! `prune:<store>`: delete what the store's retention does not keep —
//! counted back from the newest valid snapshot, never from now; the newest
//! valid snapshot is never deleted. On a target this runs only after this
//! run's snapshot was confirmed there (`UploadConfirmed`); locally, a
//! snapshot no enabled target holds is kept (`guards.keepUnmirroredLocal`).

use tokio::sync::Mutex;

use super::{Actions, tri};
use crate::backends::DeleteOutcome;
use crate::exec::select::{local_candidate, remote_candidate, taken_candidate};
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome};
use crate::policy::StoreId;
use crate::retention::{self, Candidate, Verdict};

/// The item for one deletion, by what the store answered.
fn deletion(outcome: DeleteOutcome, name: &str, reasons: &[String]) -> Item {
    let (name, reasons) = (name.to_string(), reasons.to_vec());
    match outcome {
        DeleteOutcome::Deleted => Item::Deleted { name, reasons },
        DeleteOutcome::WouldDelete => Item::WouldDelete { name, reasons },
        DeleteOutcome::RetainedByLock => Item::RetainedByLock { name },
    }
}

pub(super) async fn target(a: &Actions, target: &str, state: &Mutex<RunState>) -> Outcome {
    let Some(slot) = a.slot(target) else {
        return Outcome::failed(format!("unknown target `{target}`"));
    };
    let Ok(t) = &slot.target else {
        return Outcome::skipped("target unavailable");
    };
    let Some(remote) = state.lock().await.remote.get(target).cloned() else {
        return Outcome::failed("no listing of the target");
    };
    // Retention decides on the listing's claims: with a key store named,
    // only claims the keys authenticated count. Keys unusable now: nothing
    // is deleted (the next run prunes).
    if let Err(reason) = a.trust_keys().await {
        return Outcome::skipped(format!(
            "nothing deleted: stored snapshots cannot be authenticated ({reason})"
        ));
    }
    let mut candidates: Vec<Candidate> = remote.iter().map(remote_candidate).collect();
    // This run's snapshot counts as present once uploaded, even where the
    // listing does not show it yet (a dry run uploads nothing).
    {
        let s = state.lock().await;
        if let Some(tr) = &s.snapshot
            && s.confirmed.contains_key(target)
            && !remote.iter().any(|r| r.name == tr.name)
        {
            candidates.push(taken_candidate(tr));
        }
    }
    let decisions = retention::apply(&slot.rules, &candidates);
    let kept = decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Keep)
        .count();
    state.lock().await.kept.insert(target.to_string(), kept);
    let mut items = Vec::new();
    let mut failed = None;
    for d in decisions.iter().filter(|d| d.verdict == Verdict::Delete) {
        match t.delete(&d.id).await {
            Ok(outcome) => {
                items.push(deletion(outcome, &d.id, &d.reasons));
                if outcome == DeleteOutcome::Deleted {
                    crate::crash::crash_point!("prune.after-delete");
                }
            }
            Err(e) => {
                failed = Some(format!("delete of {} failed: {e}", d.id));
                break;
            }
        }
    }
    match failed {
        Some(f) => Outcome::failed(f).with_items(items),
        None if items.is_empty() => Outcome::noop(format!("retention keeps all {kept}")),
        None => Outcome::ok(format!("{kept} kept")).with_items(items),
    }
}

pub(super) async fn local(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    if let Err(reason) = a.trust_keys().await {
        return Outcome::skipped(format!(
            "nothing deleted: stored snapshots cannot be authenticated ({reason})"
        ));
    }
    let inv = tri!(a.local_inventory().await);
    let mut candidates: Vec<Candidate> = inv.iter().map(local_candidate).collect();
    // This run's snapshot counts as present (a dry run keeps it in a
    // scratch dir), so a dry run shows exactly what the real run deletes.
    if let Some(tr) = &state.lock().await.snapshot
        && !inv.iter().any(|s| s.name == tr.name)
    {
        candidates.push(taken_candidate(tr));
    }
    let decisions = retention::apply(&a.policy.local.rules, &candidates);
    let guard_mirror = a.policy.guards.keep_unmirrored_local && !a.targets.is_empty();
    let mut s = state.lock().await;
    let mut items = Vec::new();
    let mut deleted = 0;
    for snap in inv.iter().filter(|s| s.invalid.is_some()) {
        items.push(Item::NotCounted {
            name: snap.name.clone(),
            reason: snap.invalid.clone().unwrap_or_default(),
        });
    }
    for snap in &inv {
        if let (Some(_), Some(reason)) = (&snap.identity, snap.trust.reason()) {
            items.push(Item::NotCounted {
                name: snap.name.clone(),
                reason: format!("foreign: {reason}"),
            });
        }
    }
    for d in decisions.iter().filter(|d| d.verdict == Verdict::Delete) {
        let sha = inv
            .iter()
            .find(|s| s.name == d.id)
            .and_then(|s| s.identity.as_ref())
            .map(|i| i.sha256.clone());
        if guard_mirror {
            let mirrored = s.remote.iter().any(|(t, list)| {
                !s.skipped_targets.contains(t)
                    && list.iter().any(|r| {
                        r.name == d.id && r.sha256.is_some() && r.sha256 == sha && r.trust.counts()
                    })
            });
            if !mirrored {
                items.push(Item::KeptUnmirrored { name: d.id.clone() });
                continue;
            }
        }
        match a.local.delete(&d.id) {
            Ok(outcome) => {
                deleted += 1;
                items.push(deletion(outcome, &d.id, &d.reasons));
            }
            Err(e) => {
                return Outcome::failed(format!("delete of {} failed: {e}", d.id))
                    .with_items(items);
            }
        }
    }
    let valid = candidates.iter().filter(|c| c.valid).count();
    s.kept
        .insert(StoreId::LOCAL.into(), valid.saturating_sub(deleted));
    if items.is_empty() {
        Outcome::noop("retention keeps every local snapshot")
    } else {
        Outcome::ok(format!("{} item(s)", items.len())).with_items(items)
    }
}
