//! The guard decision table (README "Guard decision table"): from an observed state to the
//! branch a run takes. One function, used by `plan --scenario` and by the
//! executor after `observe`, so what PR CI shows is what a run does.
//!
//! Stage: plan/execute. Pure: no I/O.

use serde::Serialize;

pub use crate::cluster::InitState;
use crate::policy::model::RestoreMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeObservation {
    pub name: String,
    pub init: InitState,
    /// Meaningful only when `init` is `Initialized`.
    pub sealed: bool,
    pub active: bool,
}

/// What `observe` saw (or what a `plan --scenario` pretends it saw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub nodes: Vec<NodeObservation>,
    /// The key store holds unseal keys. `None`: the store could not be read.
    pub keys_present: Option<bool>,
    /// The store holding the newest valid snapshot (in source order), if any.
    pub newest_snapshot_in: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Branch {
    /// Unseal sealed nodes (if any) and take a backup.
    Backup,
    /// Initialise a fresh cluster and store its keys (create-only).
    Init,
    /// Restore the newest valid snapshot onto a wiped cluster.
    Restore,
    /// Nothing destructive; a human must act.
    Refuse,
    /// Nothing destructive now; the next run may do better.
    Retry,
}

impl Branch {
    /// Stable name (`backup`, `refuse`, ...), as plans and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            Branch::Backup => "backup",
            Branch::Init => "init",
            Branch::Restore => "restore",
            Branch::Refuse => "refuse",
            Branch::Retry => "retry",
        }
    }
}

/// The guard's verdict, with the words a human reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub branch: Branch,
    /// Which row of the table matched.
    pub rule: &'static str,
    pub observed: String,
    /// What happens, or what a human can do.
    pub explanation: String,
    /// Backup may still run (leader reachable and unsealed) though the
    /// decision is `Retry` because some node is unknown.
    pub backup_allowed: bool,
}

/// What the guard needs from the policy.
#[derive(Debug, Clone, Copy)]
pub struct GuardPolicy {
    pub restore_mode: RestoreMode,
    pub init_allowed: bool,
    /// `snapward restore` was run by a human (manual mode's way forward).
    pub explicit_restore: bool,
}

/// A restore stopped (crash, kill, failure) after node 0 was
/// temp-initialised and before the server accepted the snapshot: its
/// marker is still in the local store. Node 0 then holds an empty barrier
/// whose temporary keys are gone (they are never persisted) and which the
/// stored keys do not open: no run can finish or undo that. Whatever
/// [`decide`] chose, an initialised node now means "refuse" (an unknown
/// node still means "retry"), and never a backup of that empty barrier.
/// With every node uninitialised (wiped again) the decision stands: the
/// restore starts over.
pub fn interrupted_restore(d: Decision, obs: &Observation, marker: &str) -> Decision {
    let initialised = obs.nodes.iter().any(|n| n.init == InitState::Initialized);
    if !initialised {
        return d;
    }
    if d.branch == Branch::Retry {
        return Decision {
            backup_allowed: false,
            ..d
        };
    }
    Decision {
        branch: Branch::Refuse,
        rule: "interrupted restore",
        explanation: format!(
            "a restore ({marker}) stopped after node 0 was temporarily initialised: its temporary keys are gone and the stored keys do not open it, so snapward can neither finish nor undo it. Nothing was changed. Wipe node 0's raft data (in Kubernetes: delete its data volume and pod) and rerun: the restore starts over. If the cluster was restored by other means, delete the marker `.snapward-<policy>.restore-in-progress` in the local snapshot directory."
        ),
        backup_allowed: false,
        observed: d.observed,
    }
}

pub fn decide(obs: &Observation, policy: GuardPolicy) -> Decision {
    let d = decide_table(obs, policy);
    // `snapward restore` asks for a restore and nothing else: on a cluster
    // that is up (or fresh) it must not back up, unseal or initialise.
    if policy.explicit_restore && matches!(d.branch, Branch::Backup | Branch::Init) {
        let would = d.branch.name();
        return Decision {
            branch: Branch::Refuse,
            rule: "restore requested, cluster not wiped",
            explanation: format!(
                "`snapward restore` restores only a wiped cluster (every node uninitialised, unseal keys stored, a valid snapshot); this one is not ({}). Nothing was changed; `snapward run` would take the `{would}` branch.",
                d.observed
            ),
            backup_allowed: false,
            observed: d.observed,
        };
    }
    if policy.explicit_restore {
        return Decision {
            backup_allowed: false,
            ..d
        };
    }
    d
}

/// The decision table itself (README "Guard decision table").
fn decide_table(obs: &Observation, policy: GuardPolicy) -> Decision {
    let count = |s: InitState| obs.nodes.iter().filter(|n| n.init == s).count();
    let (init, uninit, unknown) = (
        count(InitState::Initialized),
        count(InitState::Uninitialized),
        count(InitState::Unknown),
    );
    let sealed = obs
        .nodes
        .iter()
        .filter(|n| n.init == InitState::Initialized && n.sealed)
        .count();
    let leader_unsealed = obs
        .nodes
        .iter()
        .any(|n| n.init == InitState::Initialized && !n.sealed && n.active);
    let keys = match obs.keys_present {
        Some(true) => "present",
        Some(false) => "absent",
        None => "unreadable",
    };
    let snap = obs
        .newest_snapshot_in
        .as_deref()
        .map(|s| format!("newest valid snapshot in `{s}`"))
        .unwrap_or_else(|| "no valid snapshot".into());
    let observed = format!(
        "{init} initialised ({sealed} sealed), {uninit} uninitialised, {unknown} unknown of {} node(s); unseal keys {keys}; {snap}",
        obs.nodes.len()
    );
    let d = |branch, rule, explanation: String, backup_allowed| Decision {
        branch,
        rule,
        observed: observed.clone(),
        explanation,
        backup_allowed,
    };

    if unknown > 0 || obs.nodes.is_empty() {
        return d(
            Branch::Retry,
            "any node unknown",
            if leader_unsealed {
                "some node's state is unknown: no init, no restore; the active node is unsealed, so the backup still runs. Retry once every node answers.".into()
            } else {
                "some node's state is unknown: no init, no restore, no backup. Check that every pod is Running and reachable, then retry.".into()
            },
            leader_unsealed,
        );
    }
    if obs.keys_present.is_none() {
        return d(
            Branch::Retry,
            "key store unreadable",
            "the unseal-key store could not be read: nothing destructive is done. Fix access to the key store and retry.".into(),
            leader_unsealed,
        );
    }
    let keys_present = obs.keys_present == Some(true);
    if init > 0 {
        if sealed > 0 && !keys_present {
            return d(
                Branch::Refuse,
                "initialised, keys absent, sealed",
                "sealed nodes and no unseal keys in the store: snapward cannot unseal. Unseal by hand, or restore the key store.".into(),
                false,
            );
        }
        return d(
            Branch::Backup,
            if keys_present {
                "initialised, keys present"
            } else {
                "initialised, keys absent (auto-unseal)"
            },
            if sealed > 0 {
                format!("unseal {sealed} sealed node(s) with the stored keys, then back up")
            } else {
                "the cluster is up: back up".into()
            },
            true,
        );
    }
    // Every node is known and uninitialised.
    match (keys_present, obs.newest_snapshot_in.as_deref()) {
        (false, None) => {
            if policy.init_allowed {
                d(Branch::Init, "fresh cluster", "a fresh cluster: initialise node 0 and store the keys (create-only)".into(), false)
            } else {
                d(
                    Branch::Refuse,
                    "fresh cluster, init not allowed",
                    "a fresh cluster, but `spec.init.allowed` is false: initialise it by hand or allow init in the policy".into(),
                    false,
                )
            }
        }
        (true, None) => d(
            Branch::Refuse,
            "keys present, no snapshot",
            "unseal keys survive but no valid snapshot exists: snapward never initialises over surviving keys. If the data is truly gone, acknowledge the loss by moving the old keys out of the key store (keep a copy), then rerun: the cluster is treated as fresh.".into(),
            false,
        ),
        (false, Some(_)) => d(
            Branch::Refuse,
            "keys absent, snapshot present",
            "a snapshot exists but the unseal keys are gone: the snapshot is unusable without its keys. Put the original keys back into the key store and rerun.".into(),
            false,
        ),
        (true, Some(src)) => match policy.restore_mode {
            RestoreMode::Auto => d(Branch::Restore, "wiped, keys and snapshot present", format!("restore the newest valid snapshot (from `{src}`) onto node 0, then unseal with the stored keys"), false),
            RestoreMode::Manual if policy.explicit_restore => d(Branch::Restore, "wiped, keys and snapshot present", format!("restore (requested with `snapward restore`) from `{src}`"), false),
            RestoreMode::Manual => d(
                Branch::Refuse,
                "wiped, restore mode manual",
                format!("the cluster is wiped and a valid snapshot is in `{src}`; restore mode is manual: run `snapward restore -f POLICY` to restore it"),
                false,
            ),
            RestoreMode::Disabled => d(
                Branch::Refuse,
                "wiped, restore disabled",
                format!("the cluster is wiped and a valid snapshot is in `{src}`, but restore is disabled in the policy: restore by hand"),
                false,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(init: InitState, keys: bool, snapshot: bool) -> Observation {
        Observation {
            nodes: vec![NodeObservation {
                name: "n0".into(),
                init,
                sealed: false,
                active: init == InitState::Initialized,
            }],
            keys_present: Some(keys),
            newest_snapshot_in: snapshot.then(|| "local".to_string()),
        }
    }

    fn policy(explicit_restore: bool) -> GuardPolicy {
        GuardPolicy {
            restore_mode: RestoreMode::Manual,
            init_allowed: true,
            explicit_restore,
        }
    }

    #[test]
    fn explicit_restore_never_backs_up_or_initialises() {
        let up = obs(InitState::Initialized, true, true);
        assert_eq!(decide(&up, policy(false)).branch, Branch::Backup);
        let d = decide(&up, policy(true));
        assert_eq!(d.branch, Branch::Refuse);
        assert!(!d.backup_allowed);
        assert!(
            d.explanation.contains("restores only a wiped cluster"),
            "{}",
            d.explanation
        );
        assert!(
            d.explanation.contains("would take the `backup` branch"),
            "{}",
            d.explanation
        );

        let fresh = obs(InitState::Uninitialized, false, false);
        assert_eq!(decide(&fresh, policy(false)).branch, Branch::Init);
        assert_eq!(decide(&fresh, policy(true)).branch, Branch::Refuse);

        let wiped = obs(InitState::Uninitialized, true, true);
        assert_eq!(decide(&wiped, policy(false)).branch, Branch::Refuse);
        assert_eq!(decide(&wiped, policy(true)).branch, Branch::Restore);
    }
}
