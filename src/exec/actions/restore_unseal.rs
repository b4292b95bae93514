//! `restore-unseal`: unseal node 0 with the stored keys (restarting its
//! server process when it rejects them with "invalid key size" and the
//! policy allows a restart), wait until it is active, then unseal the
//! followers once they joined. An auto-unseal cluster is unsealed by its
//! seal: the action waits for that and sends no key.

use tokio_util::sync::CancellationToken;

use super::unsealing::{POLL, invalid_key_size, poll, unseal_with};
use super::{Actions, tri};
use crate::backends::BaoError;
use crate::cluster::SealKind;
use crate::exec::{Item, Outcome, Unsealing};
use crate::secret::Secret;

pub(super) async fn run(a: &Actions, seal: SealKind, cancel: &CancellationToken) -> Outcome {
    if seal == SealKind::Auto {
        return by_seal(a, cancel).await;
    }
    let keys = tri!(a.read_stored_keys().await);
    let mut items = Vec::new();
    match unseal_with(
        a.ceremony.as_ref(),
        0,
        &keys.keys,
        a.policy.restore.apply_timeout,
        cancel,
    )
    .await
    {
        Ok(s) if !s.sealed => items.push(Item::Unsealed {
            node: "node 0".into(),
            how: Unsealing::StoredAfterRestore,
        }),
        Ok(_) => return Outcome::failed("node 0 is still sealed after every stored key"),
        Err(e) if invalid_key_size(&e) => {
            if let Err(failed) = restart_node0(a, &e, &keys.keys, cancel, &mut items).await {
                return failed.with_items(items);
            }
        }
        Err(e) => return Outcome::failed(format!("node 0: {e}")),
    }
    let c = a.ceremony.as_ref();
    if poll(
        a.policy.restore.apply_timeout,
        POLL,
        cancel,
        || async move { c.leader(0).await.ok().filter(|l| l.is_self) },
    )
    .await
    .is_none()
    {
        return Outcome::failed("node 0 did not become active after unsealing").with_items(items);
    }
    if let Err(e) = a
        .unseal_followers(&keys.keys, Unsealing::Stored, cancel, &mut items)
        .await
    {
        return Outcome::failed(e.to_string()).with_items(items);
    }
    Outcome::ok("every node unsealed").with_items(items)
}

/// Auto-unseal: no key is sent. Node 0 (unsealed by its seal after the
/// restore) must be active; each follower joins and is unsealed by its
/// seal.
async fn by_seal(a: &Actions, cancel: &CancellationToken) -> Outcome {
    let c = a.ceremony.as_ref();
    let mut items = Vec::new();
    if poll(
        a.policy.restore.apply_timeout,
        POLL,
        cancel,
        || async move { c.leader(0).await.ok().filter(|l| l.is_self) },
    )
    .await
    .is_none()
    {
        return Outcome::failed("node 0 did not become active after the restore");
    }
    if let Err(e) = a.await_unsealed_by_seal(0, cancel, &mut items).await {
        return Outcome::failed(e.to_string()).with_items(items);
    }
    Outcome::ok("every node unsealed by its seal").with_items(items)
}

/// Node 0 rejected the stored keys with "invalid key size" (docs/openbao.md:
/// the temporary barrier had another shape): restart its server process if
/// the backend can (`restore.restartPod`), wait until it answers
/// initialised, and unseal again. `Err` is the failed outcome.
async fn restart_node0(
    a: &Actions,
    rejected: &BaoError,
    keys: &[Secret],
    cancel: &CancellationToken,
    items: &mut Vec<Item>,
) -> Result<(), Outcome> {
    let by_hand = "the server process must restart before they work (in Kubernetes: delete the node-0 pod, or set restore.restartPod: true), then rerun";
    if !a.policy.restore.restart_pod {
        return Err(Outcome::failed(format!(
            "node 0 rejects the stored keys ({rejected}): {by_hand}"
        )));
    }
    let c = a.ceremony.as_ref();
    match c.restart(0).await {
        Ok(true) => items.push(Item::Restarted {
            node: "node 0".into(),
            why: rejected.to_string(),
        }),
        Ok(false) => {
            return Err(Outcome::failed(format!(
                "node 0 rejects the stored keys ({rejected}): {by_hand}"
            )));
        }
        Err(e) => {
            return Err(Outcome::failed(format!(
                "node 0 rejects the stored keys; {e}"
            )));
        }
    }
    let answered = poll(
        a.policy.restore.apply_timeout,
        POLL,
        cancel,
        || async move { c.seal_status(0).await.ok().filter(|s| s.initialized) },
    )
    .await;
    if answered.is_none() {
        return Err(Outcome::failed(
            "node 0 did not answer as initialised after its restart",
        ));
    }
    match unseal_with(c, 0, keys, a.policy.restore.apply_timeout, cancel).await {
        Ok(s) if !s.sealed => {
            items.push(Item::Unsealed {
                node: "node 0".into(),
                how: Unsealing::StoredAfterRestart,
            });
            Ok(())
        }
        Ok(_) => Err(Outcome::failed(
            "node 0 is still sealed after its restart and every stored key",
        )),
        Err(e) => Err(Outcome::failed(format!("node 0 after its restart: {e}"))),
    }
}
