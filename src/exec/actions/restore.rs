//! `restore` (restore branch). Auto-unseal clusters: `restore_auto.rs`.
//! Shamir: temp-initialise node 0 with the stored keys' shape, unseal it with the temporary keys, wait until it is the
//! active node, `snapshot-force` the chosen snapshot to it, and poll until
//! the server applied it and sealed itself. The temporary root token and
//! keys live in memory only (zeroised on drop); the key store is read,
//! never written. Whether this snapshot may be restored at all (age,
//! authorisation) is decided before: by the guard and the preconditions.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::unsealing::{POLL, poll, unseal_with};
use super::{Actions, tri};
use crate::backends::RestoreEndpoint;
use crate::backends::keys::KeyShape;
use crate::cluster::SealKind;
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome};

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let Some(src) = state.lock().await.restore_from.clone() else {
        return Outcome::failed("no snapshot chosen");
    };
    let init = &a.policy.doc.spec.init;
    let seal = state.lock().await.seal_kind();
    let policy_shape = KeyShape {
        shares: init.shares,
        threshold: init.threshold,
        seal: Some(seal),
    };
    if seal == SealKind::Auto {
        return super::restore_auto::run(a, state, cancel, src, policy_shape).await;
    }
    // The stored keys must be readable before anything is changed.
    let stored = tri!(a.read_stored_keys().await);
    let mut items = Vec::new();
    // Same shape as the stored keys — otherwise the restored node refuses
    // them ("invalid key size"): the shape recorded at init wins over the
    // policy's (a typo in spec.init must not break a recovery).
    let (shape, from) = temp_shape(stored.shape, policy_shape, &mut items);
    if (stored.keys.len() as u32) < shape.threshold {
        return Outcome::failed(format!(
            "the key store holds {} key(s), fewer than the threshold {} ({from})",
            stored.keys.len(),
            shape.threshold
        ))
        .with_items(items);
    }
    drop(stored);
    let c = a.ceremony.as_ref();
    tri!(a.mark_restore_started(&src));
    let temp = match c.init(0, shape.shares, shape.threshold, seal).await {
        Ok(t) => t,
        Err(e) => {
            return Outcome::failed(format!("temporary init of node 0 failed: {e}"))
                .with_items(items);
        }
    };
    items.push(Item::step(format!(
        "node 0 temp-initialised ({} shares, threshold {}: {from})",
        shape.shares, shape.threshold
    )));
    crate::crash::crash_point!("restore.after-temp-init");
    match unseal_with(c, 0, &temp.keys, a.policy.restore.apply_timeout, cancel).await {
        Ok(s) if !s.sealed => items.push(Item::step("node 0 unsealed with the temporary keys")),
        Ok(_) => {
            return Outcome::failed("node 0 still sealed after the temporary keys")
                .with_items(items);
        }
        Err(e) => {
            return Outcome::failed(format!("temporary unseal failed: {e}")).with_items(items);
        }
    }
    let leader = poll(
        a.policy.restore.apply_timeout,
        POLL,
        cancel,
        || async move { c.leader(0).await.ok().filter(|l| l.is_self) },
    )
    .await;
    if leader.is_none() {
        return Outcome::failed("node 0 did not become the active node (sys/leader is_self)")
            .with_items(items);
    }
    items.push(Item::step("node 0 is the active node"));
    crate::crash::crash_point!("restore.after-temp-unseal");
    if let Err(e) = c
        .restore(0, &temp.root_token, &src.path, RestoreEndpoint::Force)
        .await
    {
        return Outcome::failed(format!("snapshot-force failed: {e}")).with_items(items);
    }
    a.mark_restore_handed_over();
    crate::crash::crash_point!("restore.after-force");
    drop(temp); // the temporary root token and keys are gone from memory
    items.push(Item::step(format!(
        "snapshot-force sent ({} bytes)",
        src.identity.file_size
    )));
    // The server applies the snapshot in the background, then seals.
    let sealed = poll(
        a.policy.restore.apply_timeout,
        POLL,
        cancel,
        || async move { c.seal_status(0).await.ok().filter(|s| s.sealed) },
    )
    .await;
    if sealed.is_none() {
        return Outcome::failed(format!(
            "node 0 did not seal within {:?} after the restore",
            a.policy.restore.apply_timeout
        ))
        .with_items(items);
    }
    items.push(Item::step("node 0 applied the snapshot and sealed itself"));
    if src.temp {
        let _ = std::fs::remove_file(&src.path);
    }
    state.lock().await.restore_applied = true;
    Outcome::ok(format!("restored {} from {}", src.name, src.store))
        .with_items(items)
        .with_bytes(src.identity.file_size)
}

/// The shape node 0 is temp-initialised with: the one recorded with the
/// keys (a `key-shape-mismatch` item when the policy says otherwise), else
/// the policy's. With where it came from, for the step's text.
pub(super) fn temp_shape(
    recorded: Option<KeyShape>,
    policy: KeyShape,
    items: &mut Vec<Item>,
) -> (KeyShape, &'static str) {
    let Some(s) = recorded else {
        return (policy, "spec.init: no shape is recorded with the keys");
    };
    if (s.shares, s.threshold) != (policy.shares, policy.threshold) {
        items.push(Item::KeyShapeMismatch {
            stored_shares: s.shares,
            stored_threshold: s.threshold,
            policy_shares: policy.shares,
            policy_threshold: policy.threshold,
        });
    }
    (s, "recorded with the keys")
}
