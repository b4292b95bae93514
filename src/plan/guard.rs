//! The guard decision table (README "Guard decision table"): from an observed state to the
//! branch a run takes. One function, used by `plan --scenario` and by the
//! executor after `observe`, so what PR CI shows is what a run does.
//!
//! Stage: plan/execute. Pure: no I/O.

use serde::Serialize;

pub use crate::cluster::{InitState, SealKind};
use crate::policy::model::RestoreMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeObservation {
    pub name: String,
    pub init: InitState,
    /// Meaningful only when `init` is `Initialized`.
    pub sealed: bool,
    pub active: bool,
    /// The node's seal kind, if it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealKind>,
}

/// What `observe` saw (or what a `plan --scenario` pretends it saw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub nodes: Vec<NodeObservation>,
    /// The key store holds the shares this cluster's seal hands out (unseal
    /// keys for Shamir, recovery keys for auto-unseal). `None`: the store
    /// could not be read.
    pub keys_present: Option<bool>,
    /// The key store holds some entry (shares of either kind, a root
    /// token, a shape record): a fresh init never runs over one.
    pub key_entries: bool,
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
    /// `spec.cluster.seal`, if the policy says.
    pub expected_seal: Option<SealKind>,
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
    let agreed = crate::cluster::agreed_seal(obs.nodes.iter().map(|n| n.seal));
    // What the nodes say; the policy's word only when none said anything.
    let seal = match agreed {
        Ok(Some(k)) => k,
        _ => policy.expected_seal.unwrap_or(SealKind::Shamir),
    };
    let keys_word = seal.keys_word();
    let keys = match obs.keys_present {
        Some(true) => "present",
        Some(false) if obs.key_entries => "absent (other entries stored)",
        Some(false) => "absent",
        None => "unreadable",
    };
    let snap = obs
        .newest_snapshot_in
        .as_deref()
        .map(|s| format!("newest valid snapshot in `{s}`"))
        .unwrap_or_else(|| "no valid snapshot".into());
    let seal_words = match &agreed {
        Ok(Some(k)) => format!("{} seal; ", k.name()),
        Ok(None) => String::new(),
        Err(_) => "seal types disagree; ".into(),
    };
    let observed = format!(
        "{init} initialised ({sealed} sealed), {uninit} uninitialised, {unknown} unknown of {} node(s); {seal_words}{keys_word} {keys}; {snap}",
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
    if let Err(kinds) = &agreed {
        let names: Vec<_> = obs
            .nodes
            .iter()
            .map(|n| format!("{}: {}", n.name, n.seal.map_or("?", SealKind::name)))
            .collect();
        return d(
            Branch::Retry,
            "nodes disagree on the seal type",
            format!(
                "the nodes report different seal kinds ({}; {} kinds): a contradiction, so the cluster's state is unknown — no init, no restore, no unseal{}. Check that every node runs the same seal configuration, then retry.",
                names.join(", "),
                kinds.len(),
                if leader_unsealed {
                    "; the backup still runs"
                } else {
                    ", no backup"
                }
            ),
            leader_unsealed,
        );
    }
    if let (Ok(Some(k)), Some(want)) = (agreed, policy.expected_seal)
        && k != want
    {
        return d(
            Branch::Refuse,
            "seal contradicts the policy",
            format!(
                "the policy says `spec.cluster.seal: {}` but the nodes report a {} seal: nothing destructive is done{}. Fix `spec.cluster.seal` (or remove it: the seal is observed), or check that the policy names the right cluster.",
                want.name(),
                k.name(),
                if leader_unsealed {
                    "; the backup still runs"
                } else {
                    ""
                }
            ),
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
        if seal == SealKind::Auto {
            if sealed > 0 {
                return d(
                    Branch::Retry,
                    "auto-unseal node sealed",
                    format!(
                        "{sealed} auto-unseal node(s) are sealed: their seal (KMS, transit server, key file) is unreachable or refuses them, and snapward never unseals an auto-unseal node{}. Check the seal's reachability and credentials; the nodes unseal themselves once it answers.",
                        if leader_unsealed {
                            "; the backup still runs"
                        } else {
                            "; no backup (no unsealed active node)"
                        }
                    ),
                    leader_unsealed,
                );
            }
            return d(
                Branch::Backup,
                "initialised (auto-unseal)",
                if keys_present {
                    "the cluster is up (it unseals itself): back up".into()
                } else {
                    "the cluster is up (it unseals itself): back up. The key store holds no recovery keys: a restore does not need them, but `bao operator generate-root` and rekeys do — keep them somewhere safe".into()
                },
                true,
            );
        }
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
    let restore = |src: &str, then: &str| match policy.restore_mode {
        RestoreMode::Auto => d(
            Branch::Restore,
            if seal == SealKind::Auto {
                "wiped, snapshot present (auto-unseal)"
            } else {
                "wiped, keys and snapshot present"
            },
            format!("restore the newest valid snapshot (from `{src}`) onto node 0, {then}"),
            false,
        ),
        RestoreMode::Manual if policy.explicit_restore => d(
            Branch::Restore,
            if seal == SealKind::Auto {
                "wiped, snapshot present (auto-unseal)"
            } else {
                "wiped, keys and snapshot present"
            },
            format!("restore (requested with `snapward restore`) from `{src}`"),
            false,
        ),
        RestoreMode::Manual => d(
            Branch::Refuse,
            "wiped, restore mode manual",
            format!(
                "the cluster is wiped and a valid snapshot is in `{src}`; restore mode is manual: run `snapward restore -f POLICY` to restore it"
            ),
            false,
        ),
        RestoreMode::Disabled => d(
            Branch::Refuse,
            "wiped, restore disabled",
            format!(
                "the cluster is wiped and a valid snapshot is in `{src}`, but restore is disabled in the policy: restore by hand"
            ),
            false,
        ),
    };
    let fresh = || {
        if policy.init_allowed {
            d(
                Branch::Init,
                "fresh cluster",
                match seal {
                    SealKind::Shamir => "a fresh cluster: initialise node 0 and store the keys (create-only)".into(),
                    SealKind::Auto => "a fresh auto-unseal cluster: initialise node 0 with recovery shares and store the recovery keys (create-only); the seal unseals it".into(),
                },
                false,
            )
        } else {
            d(
                Branch::Refuse,
                "fresh cluster, init not allowed",
                "a fresh cluster, but `spec.init.allowed` is false: initialise it by hand or allow init in the policy".into(),
                false,
            )
        }
    };
    if seal == SealKind::Auto {
        // DESIGN.md §8: the restore needs no keys (the seal opens the
        // snapshot); an init never runs over any stored entry.
        return match (obs.key_entries, obs.newest_snapshot_in.as_deref()) {
            (_, Some(src)) => restore(src, "through the verified endpoint (the seal must be the one the snapshot was taken under); the seal unseals it"),
            (false, None) => fresh(),
            (true, None) => d(
                Branch::Refuse,
                "recovery keys present, no snapshot",
                "the key store holds entries (recovery keys or a root token) of a cluster that is gone, and no valid snapshot exists: snapward never initialises over surviving keys. If the data is truly gone, acknowledge the loss by moving the old entries out of the key store (keep a copy), then rerun: the cluster is treated as fresh.".into(),
                false,
            ),
        };
    }
    match (keys_present, obs.newest_snapshot_in.as_deref()) {
        (false, None) if obs.key_entries => d(
            Branch::Refuse,
            "key store not empty, no unseal keys",
            "the key store holds entries but no unseal-key shares (a lone root token, or recovery keys of an auto-unseal cluster), and no valid snapshot exists: snapward never initialises over stored keys. Check that the policy names this cluster's key store; if the old cluster is truly gone, move the entries out of the key store (keep a copy) and rerun.".into(),
            false,
        ),
        (false, None) => fresh(),
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
        (true, Some(src)) => restore(src, "then unseal with the stored keys"),
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
                seal: None,
            }],
            keys_present: Some(keys),
            key_entries: keys,
            newest_snapshot_in: snapshot.then(|| "local".to_string()),
        }
    }

    fn policy(explicit_restore: bool) -> GuardPolicy {
        GuardPolicy {
            restore_mode: RestoreMode::Manual,
            init_allowed: true,
            explicit_restore,
            expected_seal: None,
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

    fn auto(init: InitState, sealed: bool, entries: bool, snapshot: bool) -> Observation {
        Observation {
            nodes: (0..3)
                .map(|i| NodeObservation {
                    name: format!("n{i}"),
                    init,
                    sealed,
                    active: i == 0 && init == InitState::Initialized && !sealed,
                    seal: Some(SealKind::Auto),
                })
                .collect(),
            keys_present: Some(entries),
            key_entries: entries,
            newest_snapshot_in: snapshot.then(|| "s3".to_string()),
        }
    }

    fn auto_policy() -> GuardPolicy {
        GuardPolicy {
            restore_mode: RestoreMode::Auto,
            ..policy(false)
        }
    }

    #[test]
    fn auto_unseal_rows_follow_design_section_8() {
        let p = auto_policy();
        let u = InitState::Uninitialized;
        let d = decide(&auto(u, false, false, false), p);
        assert_eq!((d.branch, d.rule), (Branch::Init, "fresh cluster"));
        assert!(
            d.explanation.contains("recovery shares"),
            "{}",
            d.explanation
        );
        let d = decide(&auto(u, false, true, false), p);
        assert_eq!(
            (d.branch, d.rule),
            (Branch::Refuse, "recovery keys present, no snapshot")
        );
        // A restore needs no keys at all: present or absent.
        for entries in [false, true] {
            let d = decide(&auto(u, false, entries, true), p);
            assert_eq!(
                (d.branch, d.rule),
                (Branch::Restore, "wiped, snapshot present (auto-unseal)")
            );
        }
        let i = InitState::Initialized;
        let d = decide(&auto(i, true, true, true), p);
        assert_eq!(
            (d.branch, d.rule),
            (Branch::Retry, "auto-unseal node sealed")
        );
        assert!(!d.backup_allowed);
        let mut one_sealed = auto(i, false, true, true);
        one_sealed.nodes[2].sealed = true;
        let d = decide(&one_sealed, p);
        assert_eq!(d.branch, Branch::Retry);
        assert!(d.backup_allowed, "the active node is unsealed: back up");
        let d = decide(&auto(i, false, false, true), p);
        assert_eq!(
            (d.branch, d.rule),
            (Branch::Backup, "initialised (auto-unseal)")
        );
        assert!(
            d.observed.contains("auto seal; recovery keys absent"),
            "{}",
            d.observed
        );
    }

    #[test]
    fn nodes_that_disagree_on_the_seal_are_unknown_and_nothing_destructive_runs() {
        let mut o = auto(InitState::Uninitialized, false, false, true);
        o.nodes[1].seal = Some(SealKind::Shamir);
        for p in [auto_policy(), policy(true)] {
            let d = decide(&o, p);
            assert_eq!(
                (d.branch, d.rule),
                (Branch::Retry, "nodes disagree on the seal type")
            );
            assert!(!d.backup_allowed);
        }
    }

    #[test]
    fn a_seal_that_contradicts_the_policy_is_refused() {
        let o = auto(InitState::Uninitialized, false, false, true);
        let p = GuardPolicy {
            expected_seal: Some(SealKind::Shamir),
            ..auto_policy()
        };
        let d = decide(&o, p);
        assert_eq!(
            (d.branch, d.rule),
            (Branch::Refuse, "seal contradicts the policy")
        );
        // The policy's word stands in when no node reported a seal.
        let mut quiet = o.clone();
        for n in &mut quiet.nodes {
            n.seal = None;
        }
        let p = GuardPolicy {
            expected_seal: Some(SealKind::Auto),
            ..auto_policy()
        };
        assert_eq!(decide(&quiet, p).branch, Branch::Restore);
    }

    #[test]
    fn a_shamir_store_without_unseal_shares_never_allows_an_init() {
        let mut o = obs(InitState::Uninitialized, false, false);
        o.key_entries = true; // e.g. a lone root-token file
        let d = decide(&o, policy(false));
        assert_eq!(
            (d.branch, d.rule),
            (Branch::Refuse, "key store not empty, no unseal keys")
        );
        o.key_entries = false;
        assert_eq!(decide(&o, policy(false)).branch, Branch::Init);
    }
}
