//! `fetch` (restore branch): try the valid snapshots of the restore
//! sources newest first (`select::restore_candidates`); a remote one is
//! downloaded to the scratch dir; each is verified, and a corrupt one is
//! skipped with its reason for the next newest.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Actions, tri};
use crate::exec::select::restore_candidates;
use crate::exec::state::{RestoreSource, RunState};
use crate::exec::{Item, Outcome};
use crate::policy::StoreId;

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    // An unreadable local store holds no candidate (observe reported why).
    let local = a.local_inventory().await.unwrap_or_default();
    let remote = state.lock().await.remote.clone();
    let cands = tri!(
        restore_candidates(
            &a.policy.sources,
            &local,
            &remote,
            a.only_snapshot.as_deref()
        )
        .map_err(|e| Outcome::failed(e.to_string()))
    );
    let mut items = Vec::new();
    for rc in cands {
        let (store, c) = (rc.store, rc.candidate);
        if cancel.is_cancelled() {
            return Outcome::failed("cancelled").with_items(items);
        }
        let (path, temp) = if StoreId::from_name(&store).is_local() {
            (a.local.path_of(&c.id), false)
        } else {
            let Some(slot) = a.slot(&store) else {
                continue;
            };
            let Ok(t) = &slot.target else { continue };
            let dest = a.scratch.join(format!("fetch-{store}-{}", c.id));
            let _ = std::fs::remove_file(&dest);
            if let Err(e) = t.fetch(&c.id, &dest, cancel).await {
                items.push(Item::FetchFailed {
                    store: store.clone(),
                    name: c.id.clone(),
                    error: e.to_string(),
                });
                continue;
            }
            (dest, true)
        };
        let p2 = path.clone();
        match tokio::task::spawn_blocking(move || crate::snapshot::verify_file(&p2)).await {
            Ok(Ok(identity)) => {
                let chose = Item::Chose {
                    store: store.clone(),
                    name: c.id.clone(),
                    index: identity.index,
                    term: identity.term,
                };
                let detail = chose.to_string();
                items.push(chose);
                state.lock().await.restore_from = Some(RestoreSource {
                    store,
                    name: c.id,
                    path,
                    identity,
                    time: c.time,
                    temp,
                });
                return Outcome::ok(detail).with_items(items);
            }
            Ok(Err(e)) => {
                items.push(Item::Rejected {
                    store: store.clone(),
                    name: c.id.clone(),
                    reason: e.check().to_string(),
                });
                if temp {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err(e) => return Outcome::failed(e.to_string()),
        }
    }
    Outcome::failed("no valid snapshot could be fetched").with_items(items)
}
