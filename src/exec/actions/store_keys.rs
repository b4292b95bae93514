//! `store-keys`: write the keys init made to the key store, create-only
//! (never overwrite: the store refuses if any entry exists).

use tokio::sync::Mutex;

use super::{Actions, tri};
use crate::exec::Outcome;
use crate::exec::state::RunState;

pub(super) async fn run(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    let Some(mut keys) = state.lock().await.new_keys.clone() else {
        return Outcome::failed("no keys from init");
    };
    if !a.policy.doc.spec.init.store_root_token {
        keys.root_token = None;
    }
    let ks = tri!(a.key_store());
    match ks.create(&keys).await {
        Ok(()) => Outcome::ok(format!(
            "{} key share(s){} stored in {} (create-only)",
            keys.keys.len(),
            if keys.root_token.is_some() {
                " and the root token"
            } else {
                ""
            },
            ks.location()
        )),
        Err(e) => Outcome::failed(e.to_string()),
    }
}
