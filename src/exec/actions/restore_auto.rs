//! `restore` on an auto-unseal cluster (DESIGN.md §8): temp-initialise
//! node 0 with recovery shares (its seal unseals it), wait until it is the
//! active node, send the snapshot to the **verified** endpoint
//! (`POST sys/storage/raft/snapshot`), then wait until node 0 serves the
//! snapshot's cluster. No unseal key is needed: the seal opens the
//! restored barrier. A snapshot taken under another seal key is refused by
//! the server and nothing is restored; snapward refuses too (exit 3) and
//! never falls back to `snapshot-force`, which would install a barrier the
//! seal cannot open.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::unsealing::{POLL, poll};
use super::{Actions, tri};
use crate::backends::keys::{KeyShape, KeyStoreError};
use crate::backends::{BaoError, RestoreEndpoint};
use crate::cluster::SealKind;
use crate::exec::state::{RestoreSource, RunState};
use crate::exec::{Item, Outcome};

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
    src: RestoreSource,
    policy_shape: KeyShape,
) -> Outcome {
    let mut items = Vec::new();
    // The recovery shape recorded at init, else the policy's. The stored
    // recovery keys are not needed, only their shape (an empty store or a
    // lone root token restores too).
    let recorded = match stored_shape(a).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    let (shape, from) = super::restore::temp_shape(recorded, policy_shape, &mut items);
    let c = a.ceremony.as_ref();
    tri!(a.mark_restore_started(&src));
    let temp = match c
        .init(0, shape.shares, shape.threshold, SealKind::Auto)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return Outcome::failed(format!("temporary init of node 0 failed: {e}"))
                .with_items(items);
        }
    };
    items.push(Item::step(format!(
        "node 0 temp-initialised with recovery shares ({} shares, threshold {}: {from})",
        shape.shares, shape.threshold
    )));
    crate::crash::crash_point!("restore.after-temp-init");
    let timeout = a.policy.restore.apply_timeout;
    let Some(temp_id) = poll(timeout, POLL, cancel, || async move {
        c.seal_status(0)
            .await
            .ok()
            .filter(|s| s.initialized && !s.sealed)
            .and_then(|s| s.cluster_id)
    })
    .await
    else {
        return Outcome::failed(format!(
            "node 0 was not unsealed by its seal within {timeout:?} after the temporary init: check that the seal (KMS, transit server, key file) is reachable"
        ))
        .with_items(items);
    };
    items.push(Item::step("node 0 unsealed by its seal"));
    if poll(timeout, POLL, cancel, || async move {
        c.leader(0).await.ok().filter(|l| l.is_self)
    })
    .await
    .is_none()
    {
        return Outcome::failed("node 0 did not become the active node (sys/leader is_self)")
            .with_items(items);
    }
    items.push(Item::step("node 0 is the active node"));
    // Followers join a temporary auto-unseal node 0 by themselves: one
    // still joining when the snapshot is applied stays sealed for good.
    match super::followers::joined_temporary(a, &temp_id, cancel).await {
        Ok(step) => items.extend(step),
        Err(failed) => return failed.with_items(items),
    }
    crate::crash::crash_point!("restore.after-temp-unseal");
    match c
        .restore(0, &temp.root_token, &src.path, RestoreEndpoint::Verified)
        .await
    {
        Ok(()) => {}
        Err(BaoError::SealMismatch { detail, .. }) => {
            let why = format!(
                "the snapshot {}/{} was taken under another seal key (the server verified it and answered: {detail}). Nothing was restored; node 0 holds only a temporary, empty barrier. Check that every node's seal is the one the snapshot's cluster used (the same static key, transit key or KMS key, and that the KMS grants this cluster access to it), then wipe node 0's raft data and rerun. snapward never uses snapshot-force here: the seal could not open that barrier.",
                src.store, src.name
            );
            items.push(Item::SealMismatch {
                store: src.store.clone(),
                name: src.name.clone(),
                detail,
            });
            let mut s = state.lock().await;
            s.refusal.get_or_insert(why.clone());
            return Outcome::failed(why).with_items(items);
        }
        Err(e) => {
            return Outcome::failed(format!("the verified restore failed: {e}")).with_items(items);
        }
    }
    a.mark_restore_handed_over();
    crate::crash::crash_point!("restore.after-force");
    drop(temp); // the temporary root token and keys are gone from memory
    items.push(Item::step(format!(
        "snapshot sent to the verified endpoint ({} bytes) and accepted",
        src.identity.file_size
    )));
    // The server installs the snapshot in the background; node 0 then
    // reports the snapshot's cluster and stays unsealed (its seal opens it).
    let restored = poll(timeout, POLL, cancel, || {
        let temp_id = temp_id.clone();
        async move {
            c.seal_status(0)
                .await
                .ok()
                .filter(|s| !s.sealed && s.cluster_id.as_ref().is_some_and(|id| *id != temp_id))
        }
    })
    .await;
    if restored.is_none() {
        return Outcome::failed(format!(
            "node 0 did not serve the restored cluster within {timeout:?} (its cluster_id stayed the temporary one, or it sealed)"
        ))
        .with_items(items);
    }
    items.push(Item::step(
        "node 0 serves the restored cluster, unsealed by its seal",
    ));
    // The followers were standbys of the temporary cluster: they serve its
    // in-memory state until restarted (openbao-operator#658).
    if let Err(failed) = super::followers::restart_stale(a, &mut items).await {
        return failed.with_items(items);
    }
    if src.temp {
        let _ = std::fs::remove_file(&src.path);
    }
    state.lock().await.restore_applied = true;
    Outcome::ok(format!("restored {} from {}", src.name, src.store))
        .with_items(items)
        .with_bytes(src.identity.file_size)
}

/// The recovery-key shape recorded in the key store, if there is one.
/// An empty store, or one without a record, is not an error here.
async fn stored_shape(a: &Actions) -> Result<Option<KeyShape>, Outcome> {
    let Some(ks) = &a.key_store else {
        return Ok(None);
    };
    match ks.read().await {
        Ok(stored) => Ok(stored.shape.filter(|s| s.seal != Some(SealKind::Shamir))),
        Err(KeyStoreError::Empty { .. }) => Ok(None),
        Err(e) => Err(Outcome::failed(e.to_string())),
    }
}
