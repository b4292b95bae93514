//! `init-unseal`: unseal the freshly initialised cluster with the new keys
//! (node 0, then each follower once it joined), then forget the keys.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use super::unsealing::unseal_with;
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
    // Forget the keys as soon as they are stored and used.
    state.lock().await.new_keys = None;
    Outcome::ok("cluster initialised and unsealed").with_items(items)
}
