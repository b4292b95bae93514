//! Plan: compile the policy to a DAG, apply the guard to an observed (or
//! hypothetical) state, and say per action whether it would run and why not.
//!
//! Stage: plan. Pure: never touches the network or the stores.

pub mod action;
pub mod alerts;
pub mod compile;
pub mod guard;
pub mod inventory;
pub mod render;

use std::collections::BTreeMap;

use serde::Serialize;

pub use action::{Action, Precondition};
pub use compile::{CompileError, Dag, EdgeKind, compile};

use crate::cluster::{InitState, SealKind};
use crate::exit::Exit;
use crate::policy::model::SealMode;
use crate::policy::{Nodes, StoreId, ValidPolicy};
use guard::{Branch, Decision, GuardPolicy, NodeObservation, Observation};

/// Hypothetical states for `plan --scenario`, one per row family of the
/// guard table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every node initialised and unsealed; keys and snapshots present.
    Healthy,
    /// Every node initialised but sealed (e.g. after a restart).
    Sealed,
    /// Raft data lost on every node; local snapshots intact.
    DataLoss,
    /// Raft data and the snapshot PVC lost; snapshots only off-cluster.
    PvcLost,
    /// A brand-new cluster: no keys, no snapshots.
    Fresh,
    /// Raft data and unseal keys lost; snapshots present.
    KeysLost,
    /// Raft data lost; keys survive; no valid snapshot anywhere.
    NoSnapshot,
    /// Node 0 unreachable, the others uninitialised.
    Partition,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Healthy => "healthy",
            Scenario::Sealed => "sealed",
            Scenario::DataLoss => "data-loss",
            Scenario::PvcLost => "pvc-lost",
            Scenario::Fresh => "fresh",
            Scenario::KeysLost => "keys-lost",
            Scenario::NoSnapshot => "no-snapshot",
            Scenario::Partition => "partition",
        }
    }

    pub fn all() -> &'static [Scenario] {
        &[
            Scenario::Healthy,
            Scenario::Sealed,
            Scenario::DataLoss,
            Scenario::PvcLost,
            Scenario::Fresh,
            Scenario::KeysLost,
            Scenario::NoSnapshot,
            Scenario::Partition,
        ]
    }

    /// One line for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            Scenario::Healthy => "Every node initialised and unsealed; keys and snapshots present.",
            Scenario::Sealed => "Every node initialised but sealed (e.g. after a restart).",
            Scenario::DataLoss => "Raft data lost on every node; local snapshots intact.",
            Scenario::PvcLost => "Raft data and the snapshot PVC lost; snapshots only off-cluster.",
            Scenario::Fresh => "A brand-new cluster: no keys, no snapshots.",
            Scenario::KeysLost => "Raft data and unseal keys lost; snapshots present.",
            Scenario::NoSnapshot => "Raft data lost; keys survive; no valid snapshot anywhere.",
            Scenario::Partition => "Node 0 unreachable, the others uninitialised.",
        }
    }

    /// The observation this scenario stands for, shaped by the policy
    /// (node count, which stores exist).
    pub fn observation(self, p: &ValidPolicy) -> Observation {
        let names = node_names(p);
        let node = |i: usize, init: InitState, sealed: bool| NodeObservation {
            name: names.get(i).cloned().unwrap_or_default(),
            init,
            sealed,
            active: i == 0 && init == InitState::Initialized && !sealed,
            seal: expected_seal(p),
        };
        let all = |init: InitState, sealed: bool| -> Vec<NodeObservation> {
            (0..names.len()).map(|i| node(i, init, sealed)).collect()
        };
        // Which stores hold a valid snapshot in this scenario; the newest
        // is reported from the first of them in restore-source order.
        let everywhere = |_: &str| true;
        let remote_only = |s: &str| !StoreId::from_name(s).is_local();
        let nowhere = |_: &str| false;
        let (nodes, keys, holds): (_, _, &dyn Fn(&str) -> bool) = match self {
            Scenario::Healthy => (all(InitState::Initialized, false), true, &everywhere),
            Scenario::Sealed => (all(InitState::Initialized, true), true, &everywhere),
            Scenario::DataLoss => (all(InitState::Uninitialized, false), true, &everywhere),
            Scenario::PvcLost => (all(InitState::Uninitialized, false), true, &remote_only),
            Scenario::Fresh => (all(InitState::Uninitialized, false), false, &nowhere),
            Scenario::KeysLost => (all(InitState::Uninitialized, false), false, &everywhere),
            Scenario::NoSnapshot => (all(InitState::Uninitialized, false), true, &nowhere),
            Scenario::Partition => {
                let mut n = all(InitState::Uninitialized, false);
                if let Some(first) = n.first_mut() {
                    first.init = InitState::Unknown;
                }
                (n, true, &everywhere)
            }
        };
        let snap = p
            .sources
            .iter()
            .find(|s| holds(s.as_str()))
            .map(ToString::to_string);
        Observation {
            nodes,
            keys_present: Some(keys),
            key_entries: keys,
            newest_snapshot_in: snap,
        }
    }
}

/// Node display names: listed names, `node-<i>`, or three discovered pods.
pub fn node_names(p: &ValidPolicy) -> Vec<String> {
    match &p.cluster.nodes {
        Nodes::Listed(nodes) if !nodes.is_empty() => nodes.iter().map(|n| n.name.clone()).collect(),
        _ => (0..3).map(|i| format!("pod-{i}")).collect(),
    }
}

pub fn guard_policy(p: &ValidPolicy, explicit_restore: bool) -> GuardPolicy {
    GuardPolicy {
        restore_mode: p.restore.mode,
        init_allowed: p.doc.spec.init.allowed,
        explicit_restore,
        expected_seal: expected_seal(p),
    }
}

/// `spec.cluster.seal`, as the guard's seal kind.
pub fn expected_seal(p: &ValidPolicy) -> Option<SealKind> {
    p.doc.spec.cluster.seal.map(|s| match s {
        SealMode::Shamir => SealKind::Shamir,
        SealMode::Auto => SealKind::Auto,
    })
}

/// What a plan says about one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "reason")]
pub enum Verdict {
    Run,
    /// Runs, gated at run time by these preconditions.
    RunIf(String),
    Skip(String),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStep {
    pub id: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<&'static str>,
    pub requires: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    pub preconditions: Vec<Precondition>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioOutcome {
    pub scenario: Scenario,
    pub decision: Decision,
    pub exit: Exit,
}

/// A rendered-ready plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    pub steps: Vec<PlannedStep>,
    /// Every scenario's branch (the PR-comment summary).
    pub scenarios: Vec<ScenarioOutcome>,
    /// With `--inventory`: what retention would keep and delete per store
    /// at the next run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<inventory::Preview>,
}

pub fn exit_for(d: &Decision) -> Exit {
    match d.branch {
        Branch::Backup | Branch::Init | Branch::Restore => Exit::Success,
        Branch::Refuse => Exit::Refused,
        Branch::Retry => Exit::Retry,
    }
}

/// Is the action's branch the one taken?
fn branch_taken(step: &compile::Step, d: &Decision) -> bool {
    match step.action.branch() {
        None => true,
        Some(Branch::Backup) => d.branch == Branch::Backup || d.backup_allowed,
        Some(b) => d.branch == b,
    }
}

/// Preconditions that only the run itself can settle.
fn runtime_gate(pre: &Precondition) -> bool {
    matches!(
        pre,
        Precondition::UploadConfirmed { .. }
            | Precondition::CredentialsPresent { .. }
            | Precondition::MirroredElsewhere
            | Precondition::SnapshotVerified
            | Precondition::RestoreSnapshotVerified
            | Precondition::RestoreApplied
            | Precondition::SnapshotFreshEnough
            | Precondition::ActiveNodeUnsealed
    )
}

/// Build the plan: the DAG, and if a state is given, what each step would do.
pub fn build(
    p: &ValidPolicy,
    dag: &Dag,
    scenario: Option<Scenario>,
    observation: Option<Observation>,
) -> Result<Plan, CompileError> {
    let gp = guard_policy(p, false);
    let observation = observation.or_else(|| scenario.map(|s| s.observation(p)));
    let decision = observation.as_ref().map(|o| guard::decide(o, gp));
    let order = dag.order()?;
    let mut verdicts: BTreeMap<String, Verdict> = BTreeMap::new();
    let mut steps = Vec::new();
    for ix in order {
        let step = dag.step(ix);
        let deps = dag.dependencies(ix);
        let requires: Vec<String> = deps
            .iter()
            .filter(|(_, k)| *k == EdgeKind::Requires)
            .map(|(d, _)| dag.step(*d).id.clone())
            .collect();
        let after: Vec<String> = deps
            .iter()
            .filter(|(_, k)| *k == EdgeKind::After)
            .map(|(d, _)| dag.step(*d).id.clone())
            .collect();
        let verdict = match &decision {
            None => Verdict::RunIf(describe_gates(&step.preconditions, |_| true)),
            Some(d) => {
                let blocked = requires
                    .iter()
                    .find(|r| matches!(verdicts.get(*r), Some(Verdict::Skip(_))));
                if !branch_taken(step, d) {
                    Verdict::Skip(format!(
                        "branch `{}` not taken (guard: {})",
                        step.action.branch().map(Branch::name).unwrap_or("?"),
                        d.branch.name()
                    ))
                } else if let Some(b) = blocked {
                    Verdict::Skip(format!("`{b}` is skipped"))
                } else {
                    let gates = describe_gates(&step.preconditions, runtime_gate);
                    if gates.is_empty() {
                        Verdict::Run
                    } else {
                        Verdict::RunIf(gates)
                    }
                }
            }
        };
        verdicts.insert(step.id.clone(), verdict.clone());
        steps.push(PlannedStep {
            id: step.id.clone(),
            kind: step.action.label(),
            branch: step.action.branch().map(Branch::name),
            requires,
            after,
            preconditions: step.preconditions.clone(),
            verdict,
        });
    }
    let scenarios = Scenario::all()
        .iter()
        .map(|s| {
            let d = guard::decide(&s.observation(p), gp);
            ScenarioOutcome {
                scenario: *s,
                exit: exit_for(&d),
                decision: d,
            }
        })
        .collect();
    Ok(Plan {
        policy: p.name().to_string(),
        scenario,
        exit: decision.as_ref().map(exit_for),
        observation,
        decision,
        steps,
        scenarios,
        retention: None,
    })
}

fn describe_gates(pre: &[Precondition], keep: impl Fn(&Precondition) -> bool) -> String {
    pre.iter()
        .filter(|p| keep(p))
        .map(Precondition::describe)
        .collect::<Vec<_>>()
        .join("; ")
}
