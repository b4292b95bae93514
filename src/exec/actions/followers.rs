//! Followers during an auto-unseal restore (issue 12 item 5): before node 0
//! gets the snapshot, every follower must have joined node 0's temporary
//! cluster completely.
//!
//! Why (measured on OpenBao 2.7.2, three nodes, `seal "static"`, followers
//! with `retry_join`): an auto-unseal follower joins node 0 by itself as
//! soon as node 0 is temp-initialised. A follower whose join is under way
//! while node 0 applies the snapshot ends up in raft with the temporary
//! cluster's state: every `appendEntries` from the restored node 0 fails
//! with "remote error: tls: unrecognized name", the follower stays sealed
//! ("stored unseal keys are supported, but none were found") for good, and
//! restarting it does not help ("cluster already has state"); only wiping
//! it again does. Followers that had completely joined (unsealed by their
//! seal, standbys that applied node 0's log) receive the restored state
//! through raft, with the snapshot's cluster_id and data. A Shamir
//! follower cannot finish a join without unseal keys (the temporary keys
//! never leave snapward), so the Shamir restore needs no such wait.
//!
//! And after the restore, those followers must restart (the lesson of
//! openbao-operator#658, measured here too): they hold the restored raft
//! data and report the snapshot's cluster_id, but keep serving the
//! temporary cluster's in-memory state — their `sys/mounts` lacks the
//! restored mounts and a read of restored data answers 404 "no handler for
//! route" minutes later. A restarted follower unseals itself through its
//! seal and serves the restored state. snapward restarts them through
//! [`crate::backends::Ceremony::restart`] (Kubernetes: the pod) when
//! `restore.restartPod` allows it; otherwise the run fails and says which
//! server processes to restart.
//!
//! Stage: execute. Reads, and restarts followers when the policy allows.

use std::sync::Mutex as SyncMutex;

use tokio_util::sync::CancellationToken;

use super::Actions;
use super::unsealing::{POLL, poll};
use crate::exec::{Item, Outcome};

/// Waits (at most `restore.joinTimeout`) until every follower is unsealed
/// in node 0's temporary cluster (`temp_id`), is a standby, and has
/// applied what node 0 had applied when the wait began. `Ok` is the step
/// to report (none for a single node); `Err` the failed outcome — nothing
/// was restored then.
pub(super) async fn joined_temporary(
    a: &Actions,
    temp_id: &str,
    cancel: &CancellationToken,
) -> Result<Option<Item>, Outcome> {
    let names = a.bao.node_names();
    if names.len() < 2 {
        return Ok(None);
    }
    let c = a.ceremony.as_ref();
    let wait = a.policy.restore.join_timeout;
    let floor = match c.leader(0).await {
        Ok(l) => l.raft_applied_index.or(l.raft_committed_index).unwrap_or(0),
        Err(e) => return Err(Outcome::failed(format!("node 0: sys/leader: {e}"))),
    };
    let last: SyncMutex<Vec<Option<String>>> = SyncMutex::new(vec![None; names.len()]);
    let last_r = &last;
    let n = names.len();
    let done = poll(wait, POLL, cancel, || async move {
        let mut all = true;
        for node in 1..n {
            let why = follower_problem(c, node, temp_id, floor).await;
            all &= why.is_none();
            if let Some(slot) = lock(last_r).get_mut(node) {
                *slot = why;
            }
        }
        all.then_some(())
    })
    .await;
    if done.is_some() {
        return Ok(Some(Item::step(format!(
            "every follower joined node 0's temporary cluster (unsealed by its seal, raft applied index ≥ {floor}) before the snapshot was sent: the restored state reaches them through raft"
        ))));
    }
    let why: Vec<String> = lock(&last)
        .iter()
        .zip(&names)
        .filter_map(|(p, name)| p.as_ref().map(|p| format!("{name}: {p}")))
        .collect();
    Err(Outcome::failed(format!(
        "not every follower joined node 0's temporary cluster within {wait:?} ({}); nothing was restored (a follower still joining when node 0 applies the snapshot stays sealed for good). Node 0 holds only a temporary, empty barrier: check that every follower can reach node 0 (retry_join) and its seal, wipe node 0's raft data and rerun",
        if why.is_empty() {
            "the run was cancelled".to_owned()
        } else {
            why.join("; ")
        }
    )))
}

/// After node 0 serves the restored cluster: restart every follower (they
/// were standbys of the temporary cluster, see the module docs). `Err` is
/// the failed outcome: the restore itself is applied, the followers still
/// need a restart.
pub(super) async fn restart_stale(a: &Actions, items: &mut Vec<Item>) -> Result<(), Outcome> {
    let names = a.bao.node_names();
    let followers: Vec<(usize, &String)> = names.iter().enumerate().skip(1).collect();
    if followers.is_empty() {
        return Ok(());
    }
    let list = followers
        .iter()
        .map(|(_, n)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let by_hand = format!(
        "the restore is applied on node 0, but {list} joined the temporary cluster first and serve its in-memory state (not the restored mounts, policies and tokens) until their server processes restart: restart them (in Kubernetes: delete their pods, or set restore.restartPod: true); they unseal themselves through the seal, then rerun"
    );
    if !a.policy.restore.restart_pod {
        return Err(Outcome::failed(by_hand));
    }
    let c = a.ceremony.as_ref();
    for (node, name) in followers {
        match c.restart(node).await {
            Ok(true) => items.push(Item::FollowerRestarted { node: name.clone() }),
            Ok(false) => return Err(Outcome::failed(by_hand)),
            Err(e) => {
                return Err(Outcome::failed(format!(
                    "restarting {name} (a standby of the temporary cluster) failed: {e}; {by_hand}"
                )));
            }
        }
    }
    Ok(())
}

/// Why follower `node` has not (yet) joined the temporary cluster.
async fn follower_problem(
    c: &dyn crate::backends::Ceremony,
    node: usize,
    temp_id: &str,
    floor: u64,
) -> Option<String> {
    let s = match c.seal_status(node).await {
        Ok(s) => s,
        Err(e) => return Some(format!("sys/seal-status: {e}")),
    };
    if !s.initialized || s.sealed {
        return Some("not joined yet (sealed)".into());
    }
    if s.cluster_id.as_deref() != Some(temp_id) {
        return Some(format!(
            "reports cluster_id {}, node 0 {temp_id}",
            s.cluster_id.as_deref().unwrap_or("none")
        ));
    }
    match c.leader(node).await {
        Err(e) => Some(format!("sys/leader: {e}")),
        Ok(l) if l.is_self => Some("claims to be the active node".into()),
        Ok(l) => {
            let applied = l.raft_applied_index.or(l.raft_committed_index).unwrap_or(0);
            (applied < floor).then(|| format!("raft applied index {applied} < {floor}"))
        }
    }
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
