//! `fetch` (restore branch): try the valid snapshots of the restore
//! sources newest first (`select::restore_candidates`); a remote one is
//! downloaded to the scratch dir; each is verified and authenticated with
//! the stored keys in one pass. A corrupt one, or one the keys do not
//! authenticate (another cluster's, a pre-rekey one, a forged one), is
//! skipped with its reason for the next newest. If none authenticates, the
//! newest valid one is kept as the candidate with its verdict, and the
//! restore's `SnapshotAuthenticated` precondition refuses it.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Actions, tri};
use crate::cluster::SealKind;
use crate::exec::select::restore_candidates;
use crate::exec::state::{RestoreSource, RunState};
use crate::exec::{Item, Outcome};
use crate::snapshot::auth::{self, Authenticity};

/// A fetched copy that will not be restored is removed.
fn drop_fallback(fallback: Option<RestoreSource>) {
    if let Some(f) = fallback
        && f.temp
    {
        let _ = std::fs::remove_file(&f.path);
    }
}
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
    // The stored shares, combined once; they are not kept. Recovery keys
    // cannot open an auto-unseal snapshot's sealed sums: the server's
    // verified restore checks it under the seal (DESIGN.md §8), so the
    // first valid candidate is chosen and no key is read.
    let auto = state.lock().await.seal_kind() == SealKind::Auto;
    let key = std::sync::Arc::new(if auto {
        Err("auto-unseal: the server verifies it under the seal at restore".to_string())
    } else {
        auth::key_from_shares(&tri!(a.read_stored_keys().await).keys).map_err(|e| e.to_string())
    });
    let mut items = Vec::new();
    // The cluster this restore brings back, as recorded at upload (tagged,
    // so not forgeable without the keys). Candidates of several clusters:
    // snapward cannot tell which one this is — a human names the snapshot.
    let clusters: std::collections::BTreeSet<&str> = cands
        .iter()
        .filter_map(|rc| rc.claimed.as_ref().and_then(|c| c.cluster_id.as_deref()))
        .collect();
    if clusters.len() > 1 && a.only_snapshot.is_none() {
        let why = format!(
            "the restore sources hold snapshots of {} clusters (ids {}): snapward cannot tell which one this cluster is. Check `snapward list`, then name the snapshot: `snapward restore --snapshot NAME`. Nothing was changed.",
            clusters.len(),
            clusters.iter().copied().collect::<Vec<_>>().join(", ")
        );
        state.lock().await.refusal = Some(why.clone());
        return Outcome::failed(why);
    }
    // The newest valid snapshot the keys do not authenticate, if none does.
    let mut fallback: Option<RestoreSource> = None;
    for rc in cands {
        let (store, c, claimed) = (rc.store, rc.candidate, rc.claimed);
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
        let key = key.clone();
        // One pass: verify, and (with usable keys) open the sealed sums.
        let limits = crate::snapshot::Limits {
            max_bytes: a.policy.max_snapshot_bytes,
        };
        let checked = tokio::task::spawn_blocking(move || {
            crate::snapshot::sealed_sums_file_with(&p2, limits).map(|s| {
                let verdict = match key.as_deref() {
                    Ok(k) => auth::authenticate_with_key(&s.sealed, &s.sums, k)
                        .map_err(|e| e.to_string()),
                    Err(why) => Err(why.clone()),
                };
                (s.identity, verdict)
            })
        })
        .await;
        let (identity, authenticity, unchecked) = match checked {
            Ok(Ok((identity, Ok(a)))) => (identity, Some(a), None),
            // The snapshot is valid, its authenticity unknown (the keys
            // cannot be used, or its sealed sums are malformed).
            Ok(Ok((identity, Err(why)))) => (identity, None, Some(why)),
            Ok(Err(e)) => {
                items.push(Item::Rejected {
                    store: store.clone(),
                    name: c.id.clone(),
                    reason: e.check().to_string(),
                });
                if temp {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            Err(e) => return Outcome::failed(e.to_string()),
        };
        // The file must be what the listing claimed (the claims are what
        // ranked it, and what its tag authenticated).
        let matches = |cl: &crate::exec::select::Claimed| {
            identity.index == c.index
                && identity.term == c.term
                && identity.sha256 == cl.sha256
                && identity.file_size == cl.size
        };
        if let Some(cl) = &claimed
            && !matches(cl)
        {
            items.push(Item::Rejected {
                store: store.clone(),
                name: c.id.clone(),
                reason: format!(
                    "does not match its listing (listed raft index {} term {}, {} bytes, sha256 {}; fetched index {} term {}, {} bytes, sha256 {})",
                    c.index,
                    c.term,
                    cl.size,
                    cl.sha256,
                    identity.index,
                    identity.term,
                    identity.file_size,
                    identity.sha256
                ),
            });
            if temp {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let source = RestoreSource {
            store: store.clone(),
            name: c.id.clone(),
            path: path.clone(),
            identity,
            time: c.time,
            temp,
            authenticity,
            unchecked: unchecked.clone(),
        };
        if authenticity == Some(Authenticity::Authentic) || auto {
            let chose = Item::Chose {
                store: store.clone(),
                name: c.id.clone(),
                index: source.identity.index,
                term: source.identity.term,
            };
            let detail = chose.to_string();
            items.push(chose);
            drop_fallback(fallback);
            state.lock().await.restore_from = Some(source);
            return Outcome::ok(detail).with_items(items);
        }
        items.push(match (authenticity, unchecked) {
            (Some(authenticity), _) => Item::Authenticity {
                store: store.clone(),
                name: c.id.clone(),
                authenticity,
            },
            (None, reason) => Item::NotCheckable {
                store: store.clone(),
                name: c.id.clone(),
                reason: reason.unwrap_or_default(),
            },
        });
        if fallback.is_none() {
            fallback = Some(source);
        } else if temp {
            let _ = std::fs::remove_file(&path);
        }
    }
    if let Some(src) = fallback {
        let detail = format!(
            "no snapshot is authenticated by the stored keys; the newest valid one is {}/{}",
            src.store, src.name
        );
        state.lock().await.restore_from = Some(src);
        return Outcome::ok(detail).with_items(items);
    }
    Outcome::failed("no valid snapshot could be fetched").with_items(items)
}
