//! `guard-check`: apply the guard table (`plan::guard`) to what observe
//! saw. Its decision is final: no later action rewrites it.

use tokio::sync::Mutex;

use super::Actions;
use crate::exec::Outcome;
use crate::exec::state::RunState;
use crate::plan::guard::{self, NodeObservation, Observation};

pub(super) async fn run(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    let mut s = state.lock().await;
    let obs = Observation {
        nodes: s
            .nodes
            .iter()
            .map(|n| NodeObservation {
                name: n.name.clone(),
                init: n.init,
                sealed: n.sealed.unwrap_or(true),
                active: n.active,
                seal: n.seal.as_ref().map(|s| s.kind()),
            })
            .collect(),
        keys_present: s.keys_present(),
        // Unreadable: the guard retries before it looks at entries.
        key_entries: s.keys.is_none_or(|p| p.any),
        newest_snapshot_in: s.newest_snapshot_in.clone(),
    };
    let mut d = guard::decide(&obs, a.guard);
    if let Some(marker) = &s.interrupted_restore {
        d = guard::interrupted_restore(d, &obs, marker);
    }
    let detail = format!("{}: {}", d.branch.name(), d.explanation);
    s.decision = Some(d);
    Outcome::ok(detail)
}
