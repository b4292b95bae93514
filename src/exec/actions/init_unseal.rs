//! `init-unseal`: unseal the freshly initialised cluster with the new keys
//! (node 0, then each follower once it joined), then forget the keys. An
//! auto-unseal cluster unseals itself: the action waits until every node
//! is unsealed by its seal, and sends no key. With
//! `storeRootToken: false` the init root token is revoked first: stored
//! nowhere, it must not keep working for whoever saw the `sys/init` answer.
//! A revocation that fails is a warning, not a failure: the keys are stored
//! and the cluster is up; the token cannot be retried later (it was never
//! stored), so the detail says how to revoke it by hand.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use super::unsealing::{POLL, poll, unseal_with};
use crate::backends::Ceremony;
use crate::cluster::SealKind;
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome, Unsealing};

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let Some(keys) = state.lock().await.new_keys.clone() else {
        return Outcome::failed("no keys from init");
    };
    let mut items = Vec::new();
    if state.lock().await.seal_kind() == SealKind::Auto {
        // The seal unseals every node; the run only confirms it.
        if let Err(e) = a.await_unsealed_by_seal(0, cancel, &mut items).await {
            return Outcome::failed(e.to_string()).with_items(items);
        }
        let mut detail = "cluster initialised; every node unsealed by its seal".to_string();
        if !a.policy.doc.spec.init.store_root_token
            && let Some(token) = &keys.root_token
        {
            detail.push_str(&revoke_root_token(a, token, cancel).await);
        }
        state.lock().await.new_keys = None;
        return Outcome::ok(detail).with_items(items);
    }
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
            how: Unsealing::New,
        }),
        Ok(_) => return Outcome::failed("node 0 is still sealed after every new key"),
        Err(e) => return Outcome::failed(format!("node 0: {e}")),
    }
    if let Err(e) = a
        .unseal_followers(&keys.keys, Unsealing::New, cancel, &mut items)
        .await
    {
        return Outcome::failed(e.to_string()).with_items(items);
    }
    let mut detail = "cluster initialised and unsealed".to_string();
    if !a.policy.doc.spec.init.store_root_token
        && let Some(token) = &keys.root_token
    {
        detail.push_str(&revoke_root_token(a, token, cancel).await);
    }
    // Forget the keys as soon as they are stored and used.
    state.lock().await.new_keys = None;
    Outcome::ok(detail).with_items(items)
}

/// Revokes the init root token once node 0 knows the active node (a
/// request to a node without one fails); what happened, as a clause of
/// the action's detail.
async fn revoke_root_token(
    a: &Actions,
    token: &crate::secret::Secret,
    cancel: &CancellationToken,
) -> String {
    let c: &dyn Ceremony = a.ceremony.as_ref();
    let _ = poll(
        a.policy.restore.apply_timeout,
        POLL,
        cancel,
        || async move {
            let l = c.leader(0).await.ok()?;
            (l.is_self || l.leader_address.is_some_and(|s| !s.is_empty())).then_some(())
        },
    )
    .await;
    match c.revoke_self(0, token).await {
        Ok(()) => "; the init root token was revoked (storeRootToken: false)".into(),
        Err(e) => {
            tracing::warn!(error = %e, "the init root token could not be revoked: it stays valid until revoked by hand");
            format!(
                "; WARNING: the init root token could not be revoked ({e}): it is stored nowhere but stays valid; revoke it by hand: make a root token with `bao operator generate-root`, find the old one with `bao list auth/token/accessors`, revoke it with `bao token revoke -accessor <accessor>`"
            )
        }
    }
}
