//! `init` (fresh cluster only): initialise node 0 (unseal shares for a
//! Shamir seal, recovery shares for auto-unseal); the new keys stay in
//! memory (zeroised on drop) until `store-keys` stored them create-only.

use tokio::sync::Mutex;

use super::{Actions, tri};
use crate::backends::keys::{KeyShape, KeyStoreError, StoredKeys};
use crate::cluster::SealKind;
use crate::exec::Outcome;
use crate::exec::state::RunState;

pub(super) async fn run(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    let init = &a.policy.doc.spec.init;
    // Re-check right before the destructive step: keys must still be
    // absent, and storing the new ones must be possible (a barrier whose
    // keys cannot be stored would be lost with this process).
    let ks = tri!(a.key_store());
    match ks.check_create().await {
        Ok(()) => {}
        Err(KeyStoreError::AlreadyExists { location }) => {
            return Outcome::failed(format!("{location} now holds keys: refusing to initialise"));
        }
        Err(e) => {
            return Outcome::failed(format!(
                "refusing to initialise: the new keys could not be stored: {e}"
            ));
        }
    }
    let seal = state.lock().await.seal_kind();
    match a.ceremony.init(0, init.shares, init.threshold, seal).await {
        Ok(r) => {
            crate::crash::crash_point!("init.after-init");
            let stored = StoredKeys {
                keys: r.keys,
                root_token: Some(r.root_token),
                shape: Some(KeyShape {
                    shares: init.shares,
                    threshold: init.threshold,
                    seal: Some(seal),
                }),
            };
            state.lock().await.new_keys = Some(stored);
            Outcome::ok(match seal {
                SealKind::Shamir => format!(
                    "node 0 initialised ({} shares, threshold {})",
                    init.shares, init.threshold
                ),
                SealKind::Auto => format!(
                    "node 0 initialised with recovery keys ({} shares, threshold {}); its seal unseals it",
                    init.shares, init.threshold
                ),
            })
        }
        Err(e) => Outcome::failed(format!("init failed: {e}")),
    }
}
