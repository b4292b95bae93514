//! `verify`: the verdict of the verification that ran while the snapshot
//! streamed decides; a valid snapshot is moved into place (no-replace
//! link, mode, directory fsync), an invalid one is removed and never
//! becomes "the newest". Then, when the key store holds shares, this run's
//! snapshot is authenticated with them (its sealed sums, already in memory:
//! ~1 ms): a cluster rekeyed since the keys were stored shows today, not on
//! the day of the restore. Not authentic is reported, not a failure: the
//! snapshot is real, the stored keys are the problem.

use tokio::sync::Mutex;

use super::Actions;
use crate::backends::local::Committed;
use crate::cluster::SealKind;
use crate::exec::state::{RunState, TakenSnapshot};
use crate::exec::{Item, Outcome};
use crate::policy::StoreId;
use crate::snapshot::auth::Authenticity;

pub(super) async fn run(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    let Some((partial, name, verdict)) = state.lock().await.partial.take() else {
        return Outcome::failed("no snapshot was streamed");
    };
    let sums = verdict
        .as_ref()
        .ok()
        .map(|s| (s.sums.clone(), s.sealed.clone()));
    let local = a.local.clone();
    let n2 = name.clone();
    let committed =
        match tokio::task::spawn_blocking(move || local.commit(&partial, &n2, verdict)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                // Not committed locally: no target publishes it either.
                state.lock().await.abort_streams().await;
                return Outcome::failed(format!("{e}; the partial file was removed"));
            }
            Err(e) => {
                state.lock().await.abort_streams().await;
                return Outcome::failed(e.to_string());
            }
        };
    let identity = committed.identity().clone();
    let detail = match &committed {
        Committed::Saved { .. } => format!(
            "{name}: raft index {} term {}, sha256 {}",
            identity.index, identity.term, identity.sha256
        ),
        Committed::WouldSave { at, .. } => format!("verified; would save as {}", at.display()),
    };
    let size = identity.file_size;
    let time = crate::backends::snapshot_time(a.local.prefix(), &name)
        .unwrap_or_else(jiff::Timestamp::now);
    let mut items = Vec::new();
    // Recovery keys cannot open an auto-unseal snapshot's sealed sums: the
    // server's verified restore checks them (DESIGN.md §8).
    let keys_present = {
        let s = state.lock().await;
        s.keys_present() == Some(true) && s.seal_kind() == SealKind::Shamir
    };
    let authentic = match (&sums, keys_present) {
        (Some((sums, sealed)), true) => authenticate(a, &name, sums, sealed, &mut items).await,
        _ => None,
    };
    let mut s = state.lock().await;
    s.snapshot_authentic = authentic;
    s.snapshot = Some(TakenSnapshot {
        name,
        path: committed.path().to_path_buf(),
        identity,
        time,
    });
    Outcome::ok(detail).with_bytes(size).with_items(items)
}

/// This run's snapshot under the stored keys; `None` (with the reason as
/// an item) when they cannot be read or used.
async fn authenticate(
    a: &Actions,
    name: &str,
    sums: &[u8],
    sealed: &[u8],
    items: &mut Vec<Item>,
) -> Option<Authenticity> {
    let store = StoreId::LOCAL.to_string();
    let not_checkable = |reason: String| Item::NotCheckable {
        store: store.clone(),
        name: name.to_string(),
        reason,
    };
    let keys = match a.read_stored_keys().await {
        Ok(k) => k,
        Err(o) => {
            items.push(not_checkable(o.detail));
            return None;
        }
    };
    match crate::snapshot::auth::authenticate(sealed, sums, &keys.keys) {
        Ok(v) => {
            if !v.is_authentic() {
                tracing::warn!(snapshot = %name, verdict = ?v, "the stored keys do not authenticate this run's snapshot: they would not unseal a restore of it");
            }
            items.push(Item::Authenticity {
                store: store.clone(),
                name: name.to_string(),
                authenticity: v,
            });
            Some(v)
        }
        Err(e) => {
            items.push(not_checkable(e.to_string()));
            None
        }
    }
}
