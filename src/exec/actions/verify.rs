//! `verify`: the verdict of the verification that ran while the snapshot
//! streamed decides; a valid snapshot is moved into place (no-replace
//! link, mode, directory fsync), an invalid one is removed and never
//! becomes "the newest".

use tokio::sync::Mutex;

use super::Actions;
use crate::backends::local::Committed;
use crate::exec::Outcome;
use crate::exec::state::{RunState, TakenSnapshot};

pub(super) async fn run(a: &Actions, state: &Mutex<RunState>) -> Outcome {
    let Some((partial, name, verdict)) = state.lock().await.partial.take() else {
        return Outcome::failed("no snapshot was streamed");
    };
    let local = a.local.clone();
    let n2 = name.clone();
    let committed =
        match tokio::task::spawn_blocking(move || local.commit(&partial, &n2, verdict)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Outcome::failed(format!("{e}; the partial file was removed")),
            Err(e) => return Outcome::failed(e.to_string()),
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
    state.lock().await.snapshot = Some(TakenSnapshot {
        name,
        path: committed.path().to_path_buf(),
        identity,
        time,
    });
    Outcome::ok(detail).with_bytes(size)
}
