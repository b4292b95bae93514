//! `observe`: read-only. Every node's state (three-valued), whether the key
//! store holds keys, every store's inventory (which hold a valid snapshot),
//! the marker of an interrupted restore, and which targets can be used.

use std::collections::BTreeMap;

use tokio::sync::Mutex;

use super::Actions;
use crate::backends::TargetError;
use crate::exec::select::{newest_source, remote_valid};
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome};
use crate::policy::StoreId;
use crate::policy::model::RestoreMode;

pub(super) async fn run(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    let nodes = a.bao.observe().await;
    let mut items: Vec<Item> = nodes
        .iter()
        .map(|n| Item::Node {
            name: n.name.clone(),
            init: n.init,
            sealed: n.sealed,
            active: n.active,
            seal: n.seal.as_ref().map(|s| s.r#type.clone()),
            error: n.error.clone(),
        })
        .collect();
    let seal = crate::cluster::agreed_seal(nodes.iter().map(|n| n.seal.as_ref().map(|s| s.kind())))
        .ok()
        .flatten();
    if let Some(k) = seal {
        let _ = a.seal.set(k);
    }
    let keys = match &a.key_store {
        None => Some(crate::backends::keys::Presence::default()),
        Some(ks) => match ks.probe().await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "the key store cannot be read");
                // In the report too: the guard's "could not be read" needs
                // the reason next to it.
                items.push(Item::KeyStoreUnreadable {
                    error: e.to_string(),
                });
                None
            }
        },
    };
    // With keys present, every stored snapshot's claims are authenticated
    // before anything counts them (exec::trust).
    if keys.is_some_and(|p| p.shares > 0)
        && let Err(reason) = a.trust_keys().await
    {
        items.push(Item::CannotAuthenticate { reason });
    }
    // Inventory: which stores hold a valid snapshot.
    let mut holders: BTreeMap<String, bool> = BTreeMap::new();
    match a.local_inventory().await {
        Ok(inv) => {
            for s in inv.iter().filter(|s| s.invalid.is_some()) {
                items.push(Item::Invalid {
                    store: StoreId::LOCAL.into(),
                    name: s.name.clone(),
                    reason: s.invalid.clone().unwrap_or_default(),
                });
            }
            for s in &inv {
                if let (Some(_), Some(reason)) = (&s.identity, s.trust.reason()) {
                    items.push(Item::Foreign {
                        store: StoreId::LOCAL.into(),
                        name: s.name.clone(),
                        reason: reason.to_owned(),
                    });
                }
            }
            holders.insert(
                StoreId::LOCAL.into(),
                inv.iter().any(crate::exec::select::local_valid),
            );
        }
        Err(o) => items.push(Item::StoreUnreadable {
            store: StoreId::LOCAL.into(),
            error: o.detail,
        }),
    }
    let mut remote = BTreeMap::new();
    let mut unavailable = BTreeMap::new();
    let mut unlisted = std::collections::BTreeSet::new();
    for slot in &a.targets {
        match &slot.target {
            Ok(t) => match a.listing(t.as_ref()).await {
                Ok(list) => {
                    for r in &list {
                        if let Some(reason) = r.trust.reason() {
                            items.push(Item::Foreign {
                                store: slot.name.clone(),
                                name: r.name.clone(),
                                reason: reason.to_owned(),
                            });
                        }
                    }
                    holders.insert(slot.name.clone(), list.iter().any(remote_valid));
                    remote.insert(slot.name.clone(), list);
                }
                Err(e) => {
                    unlisted.insert(slot.name.clone());
                    items.push(Item::ListingFailed {
                        store: slot.name.clone(),
                        error: e.to_string(),
                    })
                }
            },
            Err(e) => {
                if let (true, TargetError::CredentialsAbsent { detail, .. }) = (slot.optional, e) {
                    tracing::warn!(target = %slot.name, %detail, "optional target skipped: credentials absent");
                    unavailable.insert(slot.name.clone(), detail.clone());
                } else {
                    unlisted.insert(slot.name.clone());
                }
                items.push(Item::TargetUnavailable {
                    store: slot.name.clone(),
                    error: e.to_string(),
                })
            }
        }
    }
    let interrupted = match a.local.read_restore_marker(a.policy.name()) {
        Ok(m) => m,
        Err(e) => {
            items.push(Item::RestoreMarkerUnreadable {
                error: e.to_string(),
            });
            None
        }
    };
    if let Some(m) = &interrupted {
        items.push(Item::RestoreInterrupted { marker: m.clone() });
    }
    let mut s = state.lock().await;
    s.nodes = nodes;
    s.keys = keys;
    s.seal = seal;
    s.remote = remote;
    s.skipped_targets = unavailable.keys().cloned().collect();
    s.unavailable = unavailable;
    s.unlisted = unlisted;
    s.init_allowed = a.policy.doc.spec.init.allowed;
    s.restore_authorized = a.guard.restore_mode == RestoreMode::Auto || a.guard.explicit_restore;
    s.max_restore_age = a.policy.guards.max_restore_age;
    s.explicit_restore = a.guard.explicit_restore;
    s.allow_unauthenticated = a.allow_unauthenticated && a.guard.explicit_restore;
    s.newest_snapshot_in = newest_source(&a.policy.sources, &holders);
    s.interrupted_restore = interrupted;
    Outcome::ok(format!("{} node(s) observed", s.nodes.len())).with_items(items)
}
