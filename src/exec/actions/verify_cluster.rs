//! `verify-cluster` (restore branch): before the run may say "done",
//! EVERY node must be unsealed with one cluster_id, there must be an
//! active node, every node's state machine must have applied the restored
//! state (`sys/leader` `raft_applied_index` at or past the snapshot's index
//! and past what the active node had applied when it was first seen), and
//! — with `restore.canary` — every node must serve the canary read itself.
//!
//! Why every node: OpenBao 2.x standbys serve reads from their own state
//! ("entering read-enabled standby mode"; measured on 2.7.2: a standby
//! answered a KV read in 2 ms while the active node was stopped with
//! SIGSTOP), so a read on node 0 proves nothing about the others, and a
//! node left out of the restore (openbao#2455) or serving stale in-memory
//! state (openbao-operator#658) would serve wrong answers to clients.
//!
//! A node that does not get there within `restore.joinTimeout` fails the
//! action; the failure names each such node with what it last showed.
//!
//! Stage: execute. Reads only: never unseals, restarts or writes.

use std::sync::Mutex as SyncMutex;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use super::unsealing::{POLL, poll};
use crate::backends::Ceremony;
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome};
use crate::secret::Secret;

/// One node as verify-cluster last read it.
#[derive(Debug, Clone)]
struct Seen {
    cluster_id: String,
    active: bool,
    applied: u64,
}

/// Every node converged: the floor they all reached, and each node.
struct Verdict {
    cluster_id: String,
    floor: u64,
    nodes: Vec<Seen>,
}

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let want_index = state
        .lock()
        .await
        .restore_from
        .as_ref()
        .map(|s| s.identity.index)
        .unwrap_or(0);
    let canary = match &a.policy.restore.canary {
        None => None,
        Some(c) => match crate::secret::read_secret_file(&c.token_file) {
            Ok(t) => Some((c.path.as_str(), t)),
            Err(e) => {
                return Outcome::failed(format!("canary token file {}: {e}", c.token_file));
            }
        },
    };
    let names = a.bao.node_names();
    let c = a.ceremony.as_ref();
    let wait = a.policy.restore.join_timeout;
    // What keeps each node (and the cluster as a whole) from being done,
    // as last seen: the failure names them.
    let problems: SyncMutex<Vec<Option<String>>> = SyncMutex::new(vec![None; names.len()]);
    let cluster_problem: SyncMutex<Option<String>> = SyncMutex::new(None);
    // Set once, when an active node is first seen: what every node must
    // have applied (the active node had committed all of it).
    let floor: SyncMutex<Option<u64>> = SyncMutex::new(None);
    let canary_ref = canary.as_ref().map(|(p, t)| (*p, t));
    let (problems_r, cluster_r, floor_r) = (&problems, &cluster_problem, &floor);
    let n = names.len();
    let verdict = poll(wait, POLL, cancel, || async move {
        let verdict = check_all(c, n, want_index, canary_ref, floor_r).await;
        match verdict {
            Ok(v) => Some(v),
            Err((per_node, cluster)) => {
                let mut last = lock(problems_r);
                if *last != per_node {
                    // A long wait says what it waits for, once per change.
                    let waiting: Vec<String> = per_node
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| p.as_ref().map(|p| format!("node {i}: {p}")))
                        .collect();
                    tracing::info!(waiting = %waiting.join("; "), "verify-cluster: not every node is there yet");
                }
                *last = per_node;
                drop(last);
                *lock(cluster_r) = cluster;
                None
            }
        }
    })
    .await;
    let Some(v) = verdict else {
        let mut why: Vec<String> = lock(&problems)
            .iter()
            .zip(&names)
            .filter_map(|(p, name)| p.as_ref().map(|p| format!("{name}: {p}")))
            .collect();
        if let Some(p) = lock(&cluster_problem).clone() {
            why.push(p);
        }
        if why.is_empty() {
            why.push("the run was cancelled before every node was read".into());
        }
        return Outcome::failed(format!(
            "the restored cluster did not settle within {wait:?} (every node unsealed with one cluster_id, raft applied index ≥ {want_index}{}): {}",
            if canary.is_some() {
                ", the canary read on every node"
            } else {
                ""
            },
            why.join("; ")
        ));
    };
    let mut items = vec![Item::ClusterVerified {
        nodes: names.len(),
        cluster_id: v.cluster_id,
        raft_index: v.floor,
        want_index,
    }];
    for (name, seen) in names.iter().zip(&v.nodes) {
        items.push(Item::NodeVerified {
            node: name.clone(),
            active: seen.active,
            raft_applied_index: seen.applied,
            want_index: v.floor,
            canary: canary.as_ref().map(|(p, _)| (*p).to_owned()),
        });
    }
    if let Some((path, _)) = &canary {
        items.push(Item::CanaryRead {
            path: (*path).to_owned(),
        });
    }
    state.lock().await.nodes = a.bao.observe().await;
    Outcome::ok("the restored cluster answers on every node").with_items(items)
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Per-node problems (index = node) and a cluster-wide one.
type Problems = (Vec<Option<String>>, Option<String>);

/// One pass over every node. `Ok` when every node is done; otherwise what
/// keeps each node (and the cluster) from being done.
async fn check_all(
    c: &dyn Ceremony,
    n: usize,
    want_index: u64,
    canary: Option<(&str, &Secret)>,
    floor: &SyncMutex<Option<u64>>,
) -> Result<Verdict, Problems> {
    // Per node: what it showed, or why it is not done.
    let mut slots: Vec<Result<Seen, String>> = Vec::with_capacity(n);
    for node in 0..n {
        slots.push(read_node(c, node).await);
    }
    // One cluster_id: node 0's (the restored one) is the reference.
    let reference = slots
        .first()
        .and_then(|s| s.as_ref().ok())
        .map(|s| s.cluster_id.clone());
    if let Some(r) = &reference {
        for slot in &mut slots {
            if let Ok(s) = slot
                && s.cluster_id != *r
            {
                *slot = Err(format!(
                    "reports cluster_id {}, node 0 reports {r}",
                    s.cluster_id
                ));
            }
        }
    }
    let active = slots.iter().flatten().find(|s| s.active).map(|s| s.applied);
    let floor = {
        let mut f = lock(floor);
        if f.is_none()
            && let Some(applied) = active
        {
            *f = Some(applied.max(want_index));
        }
        *f
    };
    let cluster = active
        .is_none()
        .then(|| "no node is the active node".to_owned());
    if let Some(floor) = floor {
        for slot in &mut slots {
            if let Ok(s) = slot
                && s.applied < floor
            {
                *slot = Err(format!(
                    "raft applied index {} < {floor}: it has not applied the restored state",
                    s.applied
                ));
            }
        }
    }
    if let Some((path, token)) = canary {
        for (node, slot) in slots.iter_mut().enumerate() {
            if slot.is_ok()
                && let Err(e) = c.read(node, token, path).await
            {
                *slot = Err(format!("canary read of {path} on this node failed: {e}"));
            }
        }
    }
    match floor {
        Some(floor) if cluster.is_none() && slots.iter().all(Result::is_ok) => {
            let nodes: Vec<Seen> = slots.into_iter().flatten().collect();
            Ok(Verdict {
                cluster_id: reference.unwrap_or_default(),
                floor,
                nodes,
            })
        }
        _ => Err((slots.into_iter().map(Result::err).collect(), cluster)),
    }
}

/// A node's seal state and `sys/leader`, or why it is not done.
async fn read_node(c: &dyn Ceremony, node: usize) -> Result<Seen, String> {
    let s = c
        .seal_status(node)
        .await
        .map_err(|e| format!("sys/seal-status: {e}"))?;
    if !s.initialized {
        return Err("uninitialised: it has not joined".into());
    }
    if s.sealed {
        return Err("sealed".into());
    }
    let Some(cluster_id) = s.cluster_id else {
        return Err("unsealed but reports no cluster_id".into());
    };
    let l = c
        .leader(node)
        .await
        .map_err(|e| format!("sys/leader: {e}"))?;
    // A server that reports no applied index: its committed one.
    let applied = l.raft_applied_index.or(l.raft_committed_index).unwrap_or(0);
    Ok(Seen {
        cluster_id,
        active: l.is_self,
        applied,
    })
}
