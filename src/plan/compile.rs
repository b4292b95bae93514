//! Compile a `ValidPolicy` into a petgraph DAG of actions. Each node carries
//! its preconditions as data; edges say whether a dependency must succeed
//! (`Requires`) or merely finish first (`After`).
//!
//! Stage: plan. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use super::action::{Action, Precondition};
use crate::plan::guard::Branch;
use crate::policy::model::RestoreMode;
use crate::policy::{StoreId, ValidPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EdgeKind {
    /// The dependent runs only if this one succeeded.
    Requires,
    /// The dependent waits for this one to finish, whatever its outcome.
    After,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub preconditions: Vec<Precondition>,
}

#[derive(Debug, Clone)]
pub struct Dag {
    pub graph: DiGraph<Step, EdgeKind>,
    ids: BTreeMap<String, NodeIndex>,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CompileError {
    #[error("the action graph has a cycle: {}", path.join(" → "))]
    #[diagnostic(code(plan::cycle))]
    Cycle { path: Vec<String> },
}

impl Dag {
    fn add(&mut self, action: Action, preconditions: Vec<Precondition>) -> NodeIndex {
        let id = action.id();
        let ix = self.graph.add_node(Step {
            id: id.clone(),
            action,
            preconditions,
        });
        self.ids.insert(id, ix);
        ix
    }

    pub fn index(&self, id: &str) -> Option<NodeIndex> {
        self.ids.get(id).copied()
    }

    pub fn step(&self, ix: NodeIndex) -> &Step {
        &self.graph[ix]
    }

    /// Dependencies of `ix` with the edge kind, sorted by id.
    pub fn dependencies(&self, ix: NodeIndex) -> Vec<(NodeIndex, EdgeKind)> {
        let mut v: Vec<_> = self
            .graph
            .edges_directed(ix, Direction::Incoming)
            .map(|e| (e.source(), *e.weight()))
            .collect();
        v.sort_by(|a, b| self.graph[a.0].id.cmp(&self.graph[b.0].id));
        v
    }

    /// Every node reachable backwards from `ix` over `Requires` edges.
    pub fn required_ancestors(&self, ix: NodeIndex) -> BTreeSet<NodeIndex> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![ix];
        while let Some(n) = stack.pop() {
            for (d, kind) in self.dependencies(n) {
                if kind == EdgeKind::Requires && seen.insert(d) {
                    stack.push(d);
                }
            }
        }
        seen
    }

    /// Every node reachable forwards from `ix` (any edge kind).
    pub fn descendants(&self, ix: NodeIndex) -> BTreeSet<NodeIndex> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![ix];
        while let Some(n) = stack.pop() {
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                if seen.insert(e.target()) {
                    stack.push(e.target());
                }
            }
        }
        seen
    }

    /// Deterministic topological order: Kahn's algorithm, ties broken by
    /// insertion order (which follows the policy's order).
    pub fn order(&self) -> Result<Vec<NodeIndex>, CompileError> {
        let mut indeg: BTreeMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| (n, self.graph.edges_directed(n, Direction::Incoming).count()))
            .collect();
        let mut ready: BTreeSet<NodeIndex> = indeg
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut out = Vec::new();
        while let Some(n) = ready.pop_first() {
            out.push(n);
            for e in self.graph.edges_directed(n, Direction::Outgoing) {
                if let Some(d) = indeg.get_mut(&e.target()) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(e.target());
                    }
                }
            }
        }
        if out.len() != self.graph.node_count() {
            let stuck: Vec<String> = indeg
                .iter()
                .filter(|(n, d)| **d > 0 && !out.contains(n))
                .map(|(n, _)| self.graph[*n].id.clone())
                .collect();
            return Err(CompileError::Cycle { path: stuck });
        }
        Ok(out)
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.graph.node_weights()
    }
}

/// Compile the policy's DAG. Branches the policy never allows (init when
/// `init.allowed` is false, restore when disabled) are left out.
/// The store `spec.restoreTest` rehearses from: `from`, else the last
/// restore source (the farthest copy). `None` without `spec.restoreTest`.
pub fn restore_test_store(p: &ValidPolicy) -> Option<StoreId> {
    let t = p.doc.spec.restore_test.as_ref()?;
    Some(match &t.from {
        Some(name) => StoreId::from_name(name),
        None => p.sources.last().cloned().unwrap_or(StoreId::Local),
    })
}

pub fn compile(p: &ValidPolicy) -> Result<Dag, CompileError> {
    use Precondition as P;
    let spec = &p.doc.spec;
    let mut g = Dag {
        graph: DiGraph::new(),
        ids: BTreeMap::new(),
    };
    let req = EdgeKind::Requires;
    let observe = g.add(Action::Observe, vec![]);
    let guard = g.add(Action::GuardCheck, vec![]);
    g.graph.add_edge(observe, guard, req);

    // backup branch
    let backup = P::BranchChosen {
        branch: Branch::Backup,
    };
    let unseal = g.add(Action::Unseal, vec![backup.clone()]);
    g.graph.add_edge(guard, unseal, req);
    let snapshot = g.add(
        Action::Snapshot,
        vec![backup.clone(), P::ActiveNodeUnsealed],
    );
    g.graph.add_edge(unseal, snapshot, req);
    let verify = g.add(Action::Verify, vec![]);
    g.graph.add_edge(snapshot, verify, req);
    let mut uploads = Vec::new();
    for t in &p.targets {
        let mut pre = vec![P::SnapshotVerified];
        if t.optional {
            pre.push(P::CredentialsPresent {
                target: t.name.clone(),
            });
        }
        let up = g.add(
            Action::Upload {
                target: t.name.clone(),
            },
            pre,
        );
        g.graph.add_edge(verify, up, req);
        let prune = g.add(
            Action::Prune {
                store: t.name.clone(),
            },
            vec![P::UploadConfirmed {
                store: t.name.clone(),
            }],
        );
        g.graph.add_edge(up, prune, req);
        uploads.push((t.name.clone(), up));
    }
    let mut local_pre = vec![P::SnapshotVerified];
    if p.guards.keep_unmirrored_local && !p.targets.is_empty() {
        local_pre.push(P::MirroredElsewhere);
    }
    let prune_local = g.add(
        Action::Prune {
            store: crate::policy::StoreId::LOCAL.into(),
        },
        local_pre,
    );
    g.graph.add_edge(verify, prune_local, req);
    for (_, up) in &uploads {
        g.graph.add_edge(*up, prune_local, EdgeKind::After);
    }
    // The rehearsal of this run's snapshot as stored in the tested store:
    // after its confirmed upload (a target), or its verification (local).
    if let Some(from) = restore_test_store(p) {
        let mut pre = vec![P::RestoreTestDue];
        let after = match uploads
            .iter()
            .find(|(name, _)| StoreId::from_name(name) == from)
        {
            Some((name, up)) => {
                pre.insert(
                    0,
                    P::UploadConfirmed {
                        store: name.clone(),
                    },
                );
                *up
            }
            None => {
                pre.insert(0, P::SnapshotVerified);
                verify
            }
        };
        let rt = g.add(
            Action::RestoreTest {
                store: from.to_string(),
            },
            pre,
        );
        g.graph.add_edge(after, rt, req);
    }

    // init branch
    if spec.init.allowed {
        let init = g.add(
            Action::Init,
            vec![
                P::BranchChosen {
                    branch: Branch::Init,
                },
                P::AllNodesKnown,
                P::AllNodesUninitialized,
                P::InitAllowed,
                P::KeyStoreEmpty,
            ],
        );
        g.graph.add_edge(guard, init, req);
        let store = g.add(Action::StoreKeys, vec![P::KeyStoreEmpty]);
        g.graph.add_edge(init, store, req);
        let iu = g.add(Action::InitUnseal, vec![]);
        g.graph.add_edge(store, iu, req);
    }

    // restore branch
    if p.restore.mode != RestoreMode::Disabled {
        let restore_branch = P::BranchChosen {
            branch: Branch::Restore,
        };
        let fetch = g.add(
            Action::Fetch,
            vec![
                restore_branch.clone(),
                P::AllNodesKnown,
                P::AllNodesUninitialized,
                P::KeysPresent,
            ],
        );
        g.graph.add_edge(guard, fetch, req);
        let mut pre = vec![
            restore_branch,
            P::AllNodesKnown,
            P::AllNodesUninitialized,
            P::KeysPresent,
            P::RestoreSnapshotVerified,
            P::SnapshotAuthenticated,
            P::RestoreAuthorized,
        ];
        if p.guards.max_restore_age.is_some() {
            pre.push(P::SnapshotFreshEnough);
        }
        let restore = g.add(Action::Restore, pre);
        g.graph.add_edge(fetch, restore, req);
        let ru = g.add(
            Action::RestoreUnseal,
            vec![P::RestoreApplied, P::KeysPresent],
        );
        g.graph.add_edge(restore, ru, req);
        let vc = g.add(Action::VerifyCluster, vec![]);
        g.graph.add_edge(ru, vc, req);
    }
    g.order()?;
    Ok(g)
}
