//! `unseal` (backup branch): unseal sealed, initialised nodes with the
//! stored keys, then wait until a node is active again for the snapshot.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::unsealing::{POLL, poll, unseal_with};
use super::{Actions, tri};
use crate::cluster::{InitState, SealKind};
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome, Unsealing};

/// The sealed, initialised nodes: (index, name).
pub(crate) fn sealed_nodes(s: &RunState) -> Vec<(usize, String)> {
    s.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.init == InitState::Initialized && n.sealed == Some(true))
        .map(|(i, n)| (i, n.name.clone()))
        .collect()
}

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let sealed = sealed_nodes(&*state.lock().await);
    if sealed.is_empty() {
        return Outcome::noop("no sealed node");
    }
    if state.lock().await.seal_kind() == SealKind::Auto {
        // Recovery keys do not unseal; the seal does (the guard retries).
        return Outcome::noop(format!(
            "{} sealed auto-unseal node(s): snapward never unseals them (their seal does)",
            sealed.len()
        ));
    }
    let keys = tri!(a.read_stored_keys().await);
    let mut items = Vec::new();
    for (node, name) in &sealed {
        match unseal_with(
            a.ceremony.as_ref(),
            *node,
            &keys.keys,
            a.policy.restore.join_timeout,
            cancel,
        )
        .await
        {
            Ok(s) if !s.sealed => items.push(Item::Unsealed {
                node: name.clone(),
                how: Unsealing::Stored,
            }),
            Ok(_) => {
                return Outcome::failed(format!("{name} is still sealed after every stored key"))
                    .with_items(items);
            }
            Err(e) => return Outcome::failed(format!("{name}: {e}")).with_items(items),
        }
    }
    // The active node must be known again for the snapshot.
    let c = a.ceremony.as_ref();
    let active = poll(a.policy.restore.join_timeout, POLL, cancel, || async move {
        for n in 0..a.bao.node_names().len() {
            if c.leader(n).await.map(|l| l.is_self).unwrap_or(false) {
                return Some(n);
            }
        }
        None
    })
    .await;
    let observed = a.bao.observe().await;
    state.lock().await.nodes = observed;
    match active {
        Some(_) => Outcome::ok(format!("{} node(s) unsealed", sealed.len())).with_items(items),
        None => Outcome::failed("unsealed, but no node became active").with_items(items),
    }
}
