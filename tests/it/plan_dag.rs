//! The compiled DAG's safety properties, over generated policies, and the
//! guard decision table row by row.

use proptest::prelude::*;
use rstest::rstest;
use snapward::plan::guard::{self, Branch, GuardPolicy, InitState, NodeObservation, Observation};
use snapward::plan::{self, Action, EdgeKind, Precondition};
use snapward::policy::{self, ValidPolicy, model::RestoreMode};

#[derive(Debug, Clone)]
struct Shape {
    targets: Vec<(bool, bool)>, // (is_s3, optional)
    init_allowed: bool,
    mode: &'static str,
    keep_unmirrored: bool,
    max_age: bool,
}

fn policy_text(s: &Shape) -> String {
    let mut t = String::from(
        "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {name: gen}\nspec:\n  cluster:\n    nodes: [{address: \"http://127.0.0.1:8200\"}, {address: \"http://127.0.0.1:8202\"}]\n  local: {path: /snap, retention: {keepLast: 3}}\n  unsealKeys: {files: {directory: /keys}}\n",
    );
    t.push_str("  targets:\n");
    if s.targets.is_empty() {
        t.truncate(t.len() - "  targets:\n".len());
    }
    for (i, (s3, optional)) in s.targets.iter().enumerate() {
        if *s3 {
            t.push_str(&format!("    - name: t{i}\n      optional: {optional}\n      s3: {{bucket: bucket{i}, prefix: p/}}\n      retention: {{keepDaily: 7}}\n"));
        } else {
            t.push_str(&format!("    - name: t{i}\n      optional: {optional}\n      filesystem: {{path: /mnt/t{i}}}\n      retention: {{keepDaily: 7}}\n"));
        }
    }
    t.push_str(&format!(
        "  restore: {{mode: {}}}\n  init: {{allowed: {}, shares: 3, threshold: 2}}\n",
        s.mode, s.init_allowed
    ));
    t.push_str(&format!(
        "  guards: {{keepUnmirroredLocal: {}",
        s.keep_unmirrored
    ));
    if s.max_age {
        t.push_str(", maxRestoreAge: 7d");
    }
    t.push_str("}\n");
    t
}

fn valid(s: &Shape) -> ValidPolicy {
    let text = policy_text(s);
    let mut r = policy::lint_text("gen.yaml", &text, true);
    assert!(r.diagnostics.is_empty(), "{text}\n{:?}", r.diagnostics);
    r.policies.remove(0)
}

fn shapes() -> impl Strategy<Value = Shape> {
    (
        prop::collection::vec((any::<bool>(), any::<bool>()), 0..5),
        any::<bool>(),
        prop::sample::select(vec!["auto", "manual", "disabled"]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(targets, init_allowed, mode, keep_unmirrored, max_age)| Shape {
                targets,
                init_allowed,
                mode,
                keep_unmirrored,
                max_age,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Invariant 1: a target's prune requires that target's confirmed upload.
    #[test]
    fn invariant_1_every_prune_depends_on_the_confirmed_upload_to_its_store(s in shapes()) {
        let p = valid(&s);
        let dag = plan::compile(&p).unwrap();
        for t in &p.doc.spec.targets {
            let prune = dag.index(&format!("prune:{}", t.name)).unwrap();
            let upload = dag.index(&format!("upload:{}", t.name)).unwrap();
            prop_assert!(dag.dependencies(prune).contains(&(upload, EdgeKind::Requires)));
            let confirmed = Precondition::UploadConfirmed { store: t.name.clone() };
            prop_assert!(dag.step(prune).preconditions.contains(&confirmed));
            prop_assert!(dag.required_ancestors(prune).contains(&dag.index("verify").unwrap()));
        }
        // local prune waits for every upload and, by default, for mirroring
        let local = dag.index("prune:local").unwrap();
        for t in &p.doc.spec.targets {
            let up = dag.index(&format!("upload:{}", t.name)).unwrap();
            prop_assert!(dag.dependencies(local).iter().any(|(d, _)| *d == up));
        }
        let mirrored = dag.step(local).preconditions.contains(&Precondition::MirroredElsewhere);
        prop_assert_eq!(mirrored, s.keep_unmirrored && !s.targets.is_empty());
    }

    /// Invariant 7: no restore path reaches a key-store write.
    #[test]
    fn invariant_7_no_restore_path_reaches_a_key_store_write(s in shapes()) {
        let p = valid(&s);
        let dag = plan::compile(&p).unwrap();
        for id in ["fetch", "restore", "restore-unseal", "verify-cluster"] {
            if let Some(ix) = dag.index(id) {
                let mut reach = dag.descendants(ix);
                reach.insert(ix);
                for n in reach {
                    prop_assert!(!dag.step(n).action.writes_key_store(), "{} reaches {}", id, dag.step(n).id);
                }
            }
        }
        prop_assert_eq!(dag.index("restore").is_some(), s.mode != "disabled");
        prop_assert_eq!(dag.index("init").is_some(), s.init_allowed);
    }

    /// Invariants 5/6: every destructive action needs guard-check first, and
    /// init/restore carry the all-nodes-known precondition.
    #[test]
    fn invariant_5_destructive_actions_only_after_guard_check(s in shapes()) {
        let p = valid(&s);
        let dag = plan::compile(&p).unwrap();
        let guard = dag.index("guard-check").unwrap();
        for step in dag.steps() {
            let ix = dag.index(&step.id).unwrap();
            if step.action.is_destructive() {
                prop_assert!(dag.required_ancestors(ix).contains(&guard), "{}", step.id);
            }
            if matches!(step.action, Action::Init | Action::Restore) {
                prop_assert!(step.preconditions.contains(&Precondition::AllNodesKnown));
                prop_assert!(step.preconditions.contains(&Precondition::AllNodesUninitialized));
            }
            if step.action == Action::Init {
                prop_assert!(step.preconditions.contains(&Precondition::KeyStoreEmpty));
            }
        }
    }

    #[test]
    fn compiled_dags_are_acyclic_and_deterministic(s in shapes()) {
        let p = valid(&s);
        let a = plan::compile(&p).unwrap();
        let b = plan::compile(&p).unwrap();
        let oa: Vec<String> = a.order().unwrap().into_iter().map(|i| a.step(i).id.clone()).collect();
        let ob: Vec<String> = b.order().unwrap().into_iter().map(|i| b.step(i).id.clone()).collect();
        prop_assert_eq!(oa.len(), a.graph.node_count());
        prop_assert_eq!(&oa, &ob);
        prop_assert!(!petgraph::algo::is_cyclic_directed(&a.graph));
        // every dependency comes earlier in the order
        for (pos, id) in oa.iter().enumerate() {
            for (d, _) in a.dependencies(a.index(id).unwrap()) {
                let dpos = oa.iter().position(|x| *x == a.step(d).id).unwrap();
                prop_assert!(dpos < pos);
            }
        }
        let pa = plan::build(&p, &a, Some(plan::Scenario::Healthy), None).unwrap();
        let pb = plan::build(&p, &b, Some(plan::Scenario::Healthy), None).unwrap();
        prop_assert_eq!(serde_json::to_string(&pa).unwrap(), serde_json::to_string(&pb).unwrap());
    }
}

fn nodes(states: &[(InitState, bool)]) -> Vec<NodeObservation> {
    states
        .iter()
        .enumerate()
        .map(|(i, (init, sealed))| NodeObservation {
            name: format!("n{i}"),
            init: *init,
            sealed: *sealed,
            active: i == 0 && *init == InitState::Initialized && !*sealed,
            seal: None,
        })
        .collect()
}

use InitState::{Initialized as I, Uninitialized as U, Unknown as X};

/// the guard decision table (README), one case per row (and the mode variants).
#[rstest]
#[case::unknown_node_leader_up(&[(I, false), (X, false)], Some(true), Some("local"), RestoreMode::Auto, true, Branch::Retry, true)]
#[case::unknown_node_all_wiped(&[(X, false), (U, false), (U, false)], Some(true), Some("local"), RestoreMode::Auto, true, Branch::Retry, false)]
#[case::key_store_unreadable(&[(U, false)], None, Some("local"), RestoreMode::Auto, true, Branch::Retry, false)]
#[case::initialised_keys_present(&[(I, true), (I, false)], Some(true), None, RestoreMode::Auto, false, Branch::Backup, true)]
#[case::initialised_keys_absent_unsealed(&[(I, false)], Some(false), None, RestoreMode::Auto, false, Branch::Backup, true)]
#[case::initialised_keys_absent_sealed(&[(I, true)], Some(false), None, RestoreMode::Auto, false, Branch::Refuse, false)]
#[case::fresh_init_allowed(&[(U, false), (U, false)], Some(false), None, RestoreMode::Auto, true, Branch::Init, false)]
#[case::fresh_init_not_allowed(&[(U, false)], Some(false), None, RestoreMode::Auto, false, Branch::Refuse, false)]
#[case::keys_present_no_snapshot(&[(U, false)], Some(true), None, RestoreMode::Auto, true, Branch::Refuse, false)]
#[case::wiped_auto(&[(U, false), (U, false)], Some(true), Some("s3"), RestoreMode::Auto, true, Branch::Restore, false)]
#[case::wiped_manual(&[(U, false)], Some(true), Some("local"), RestoreMode::Manual, true, Branch::Refuse, false)]
#[case::wiped_disabled(&[(U, false)], Some(true), Some("local"), RestoreMode::Disabled, true, Branch::Refuse, false)]
#[case::keys_absent_snapshot_present(&[(U, false)], Some(false), Some("local"), RestoreMode::Auto, true, Branch::Refuse, false)]
fn guard_table(
    #[case] states: &[(InitState, bool)],
    #[case] keys: Option<bool>,
    #[case] snapshot: Option<&str>,
    #[case] mode: RestoreMode,
    #[case] init_allowed: bool,
    #[case] branch: Branch,
    #[case] backup_allowed: bool,
) {
    let obs = Observation {
        nodes: nodes(states),
        keys_present: keys,
        key_entries: keys == Some(true),
        newest_snapshot_in: snapshot.map(String::from),
    };
    let d = guard::decide(
        &obs,
        GuardPolicy {
            restore_mode: mode,
            init_allowed,
            explicit_restore: false,
            expected_seal: None,
        },
    );
    assert_eq!(d.branch, branch, "{d:?}");
    assert_eq!(d.backup_allowed, backup_allowed, "{d:?}");
    assert!(!d.explanation.is_empty());
}

#[test]
fn invariant_6_never_initialise_over_surviving_keys() {
    // all uninitialised, keys present, no snapshot: refuse even with init allowed
    let obs = Observation {
        nodes: nodes(&[(U, false), (U, false)]),
        keys_present: Some(true),
        key_entries: true,
        newest_snapshot_in: None,
    };
    let d = guard::decide(
        &obs,
        GuardPolicy {
            restore_mode: RestoreMode::Auto,
            init_allowed: true,
            explicit_restore: true,
            expected_seal: None,
        },
    );
    assert_eq!(d.branch, Branch::Refuse);
    assert!(
        d.explanation.contains("moving the old keys out"),
        "says how to acknowledge data loss"
    );
}

#[test]
fn invariant_5_an_unknown_node_is_never_treated_as_uninitialised() {
    // one unknown + the rest uninitialised, no keys, no snapshot: would be
    // "fresh init" if unknown counted as uninitialised
    let obs = Observation {
        nodes: nodes(&[(X, false), (U, false), (U, false)]),
        keys_present: Some(false),
        key_entries: false,
        newest_snapshot_in: None,
    };
    let d = guard::decide(
        &obs,
        GuardPolicy {
            restore_mode: RestoreMode::Auto,
            init_allowed: true,
            explicit_restore: false,
            expected_seal: None,
        },
    );
    assert_eq!(d.branch, Branch::Retry);
}

#[test]
fn manual_restore_proceeds_only_when_a_human_asks() {
    let obs = Observation {
        nodes: nodes(&[(U, false)]),
        keys_present: Some(true),
        key_entries: true,
        newest_snapshot_in: Some("local".into()),
    };
    let gp = |explicit_restore| GuardPolicy {
        restore_mode: RestoreMode::Manual,
        init_allowed: false,
        explicit_restore,
        expected_seal: None,
    };
    assert_eq!(guard::decide(&obs, gp(false)).branch, Branch::Refuse);
    assert_eq!(guard::decide(&obs, gp(true)).branch, Branch::Restore);
}

/// A restore interrupted after node 0 was temp-initialised (its marker is
/// left): an initialised node means refuse — never a backup of the empty
/// temporary barrier, never "retry forever"; an unknown node still means
/// retry (without backup); a wiped cluster restores again.
#[rstest]
#[case::temp_initialised_sealed(&[(I, true)], Branch::Refuse, false)]
#[case::temp_unsealed_active(&[(I, false)], Branch::Refuse, false)]
#[case::one_follower_initialised(&[(U, false), (I, true), (U, false)], Branch::Refuse, false)]
#[case::unknown_node(&[(I, false), (X, false)], Branch::Retry, false)]
#[case::wiped_again(&[(U, false)], Branch::Restore, false)]
fn interrupted_restore_marker(
    #[case] states: &[(InitState, bool)],
    #[case] branch: Branch,
    #[case] backup_allowed: bool,
) {
    let obs = Observation {
        nodes: nodes(states),
        keys_present: Some(true),
        key_entries: true,
        newest_snapshot_in: Some("s3".into()),
    };
    let gp = GuardPolicy {
        restore_mode: RestoreMode::Auto,
        init_allowed: false,
        explicit_restore: false,
        expected_seal: None,
    };
    let d = guard::interrupted_restore(guard::decide(&obs, gp), &obs, "snapshot s3/x.snap");
    assert_eq!(d.branch, branch, "{d:?}");
    assert_eq!(d.backup_allowed, backup_allowed, "{d:?}");
    if branch == Branch::Refuse {
        assert_eq!(d.rule, "interrupted restore");
        assert!(
            d.explanation.contains("snapshot s3/x.snap") && d.explanation.contains("Wipe node 0"),
            "names the restore and the way forward: {}",
            d.explanation
        );
    }
}

/// `spec.cluster.seal: auto` tells `plan` the cluster's seal offline: its
/// scenarios follow the auto-unseal rows (DESIGN.md §8), not the Shamir ones.
#[test]
fn plan_scenarios_of_an_auto_unseal_policy_follow_the_auto_unseal_rows() {
    let text = policy_text(&Shape {
        targets: vec![(true, false)],
        init_allowed: true,
        mode: "auto",
        keep_unmirrored: false,
        max_age: false,
    })
    .replace("  cluster:\n", "  cluster:\n    seal: auto\n");
    let mut r = policy::lint_text("auto.yaml", &text, true);
    assert!(r.diagnostics.is_empty(), "{text}\n{:?}", r.diagnostics);
    let p = r.policies.remove(0);
    let gp = plan::guard_policy(&p, false);
    let decide = |s: plan::Scenario| {
        let d = guard::decide(&s.observation(&p), gp);
        (d.branch, d.rule)
    };
    use plan::Scenario as S;
    // Recovery keys lost: an auto-unseal restore needs none.
    assert_eq!(
        decide(S::KeysLost),
        (Branch::Restore, "wiped, snapshot present (auto-unseal)")
    );
    assert_eq!(
        decide(S::DataLoss),
        (Branch::Restore, "wiped, snapshot present (auto-unseal)")
    );
    assert_eq!(
        decide(S::NoSnapshot),
        (Branch::Refuse, "recovery keys present, no snapshot")
    );
    assert_eq!(
        decide(S::Sealed),
        (Branch::Retry, "auto-unseal node sealed")
    );
    assert_eq!(
        decide(S::Healthy),
        (Branch::Backup, "initialised (auto-unseal)")
    );
    assert_eq!(decide(S::Fresh), (Branch::Init, "fresh cluster"));
    // The same policy without the field is read as Shamir offline.
    let shamir = text.replace("    seal: auto\n", "");
    let mut r = policy::lint_text("shamir.yaml", &shamir, true);
    let p = r.policies.remove(0);
    let d = guard::decide(&S::KeysLost.observation(&p), plan::guard_policy(&p, false));
    assert_eq!(d.rule, "keys absent, snapshot present");
}
