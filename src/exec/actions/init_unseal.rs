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
    let seal = state.lock().await.seal_kind();
    let mut detail = match unseal(a, &keys.keys, seal, cancel, &mut items).await {
        Ok(d) => d.to_string(),
        Err(failed) => return failed.with_items(items),
    };
    if !a.policy.doc.spec.init.store_root_token
        && let Some(token) = &keys.root_token
    {
        detail.push_str(&revoke_root_token(a, token, cancel).await);
    }
    // Forget the keys as soon as they are stored and used.
    state.lock().await.new_keys = None;
    Outcome::ok(detail).with_items(items)
}

/// Every node unsealed: with the new keys (Shamir: node 0, then each
/// follower once it joined), or by its seal (auto-unseal: the run only
/// confirms it). `Ok`: the action's detail; `Err`: the failed outcome.
async fn unseal(
    a: &Actions,
    keys: &[crate::secret::Secret],
    seal: SealKind,
    cancel: &CancellationToken,
    items: &mut Vec<Item>,
) -> Result<&'static str, Outcome> {
    if seal == SealKind::Auto {
        a.await_unsealed_by_seal(0, cancel, items)
            .await
            .map_err(|e| Outcome::failed(e.to_string()))?;
        return Ok("cluster initialised; every node unsealed by its seal");
    }
    match unseal_with(
        a.ceremony.as_ref(),
        0,
        keys,
        a.policy.restore.apply_timeout,
        cancel,
    )
    .await
    {
        Ok(s) if !s.sealed => items.push(Item::Unsealed {
            node: "node 0".into(),
            how: Unsealing::New,
        }),
        Ok(_) => {
            return Err(Outcome::failed(
                "node 0 is still sealed after every new key",
            ));
        }
        Err(e) => return Err(Outcome::failed(format!("node 0: {e}"))),
    }
    a.unseal_followers(keys, Unsealing::New, cancel, items)
        .await
        .map_err(|e| Outcome::failed(e.to_string()))?;
    Ok("cluster initialised and unsealed")
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
                "; WARNING: the init root token could not be revoked ({e}): it is stored nowhere but stays valid; revoke it by hand with a token allowed to (a new root token comes from the recovery or unseal keys through `sys/generate-root-token`, OpenBao 2.6 and later; the unauthenticated `bao operator generate-root` is off by default since 2.5.3): find the old one with `bao list auth/token/accessors`, revoke it with `bao token revoke -accessor <accessor>`"
            )
        }
    }
}
