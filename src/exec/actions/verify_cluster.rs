//! `verify-cluster` (restore branch): every node unsealed with one
//! cluster_id, raft index ≥ the snapshot's, and the canary read (if
//! configured) — before the run may say "done".

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use super::unsealing::{POLL, poll};
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome};

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
    let c = a.ceremony.as_ref();
    let n = a.bao.node_names().len();
    // Followers' reads may lag the leader briefly: poll until consistent.
    let verdict = poll(a.policy.restore.join_timeout, POLL, cancel, || async move {
        let mut ids = std::collections::BTreeSet::new();
        for node in 0..n {
            let s = c.seal_status(node).await.ok()?;
            if s.sealed {
                return None;
            }
            ids.insert(s.cluster_id.clone()?);
        }
        let idx = c.leader(0).await.ok()?.raft_committed_index.unwrap_or(0);
        (ids.len() == 1 && idx >= want_index)
            .then(|| (ids.into_iter().next().unwrap_or_default(), idx))
    })
    .await;
    let Some((cluster_id, idx)) = verdict else {
        return Outcome::failed(format!(
            "the cluster did not settle: every node unsealed with one cluster_id and raft index ≥ {want_index} was not reached"
        ));
    };
    let mut items = vec![Item::ClusterVerified {
        nodes: n,
        cluster_id,
        raft_index: idx,
        want_index,
    }];
    if let Some(canary) = &a.policy.restore.canary {
        let token = match crate::secret::read_secret_file(&canary.token_file) {
            Ok(t) => t,
            Err(e) => {
                return Outcome::failed(format!("canary token file {}: {e}", canary.token_file))
                    .with_items(items);
            }
        };
        match c.read(0, &token, &canary.path).await {
            Ok(_) => items.push(Item::CanaryRead {
                path: canary.path.clone(),
            }),
            Err(e) => {
                return Outcome::failed(format!("canary read of {} failed: {e}", canary.path))
                    .with_items(items);
            }
        }
    }
    state.lock().await.nodes = a.bao.observe().await;
    Outcome::ok("the restored cluster answers on every node").with_items(items)
}
