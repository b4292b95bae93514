//! `snapshot`: stream a raft snapshot from the active node into a temp file
//! of the local store, verified while it streams (the verdict is kept for
//! `verify`), then fsynced. On any failure the temp file is removed.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use crate::backends::snapshot_name;
use crate::exec::state::RunState;
use crate::exec::{Item, Outcome};

pub(super) async fn run(
    a: &Actions,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let Some(node) = state.lock().await.active_node() else {
        return Outcome::failed("no active, unsealed node");
    };
    let name = snapshot_name(a.local.prefix(), jiff::Timestamp::now());
    let local = a.local.clone();
    let n2 = name.clone();
    let begun = match tokio::task::spawn_blocking(move || local.begin(&n2)).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            return Outcome::failed(format!(
                "cannot create the temp file in {}: {e}",
                a.local.dir().display()
            ));
        }
        Err(e) => return Outcome::failed(e.to_string()),
    };
    for r in &begun.removed_stale {
        tracing::info!(file = %r, "removed a stale partial snapshot from a crashed run");
    }
    let path = begun.path;
    // Verified while it streams: the verify action need not read it back.
    let limits = crate::snapshot::Limits {
        max_bytes: a.policy.max_snapshot_bytes,
    };
    let mut out = crate::backends::local::SnapshotWriter::new(begun.file, limits);
    let node_name = state
        .lock()
        .await
        .nodes
        .get(node)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let shown = crate::progress::start(format!("snapshot {name}"), None);
    let streamed = a
        .bao
        .snapshot(
            node,
            &mut crate::progress::Writer::new(&mut out, &shown),
            cancel,
        )
        .await;
    if streamed.is_ok() {
        shown.finish();
    }
    // Writes the rest, fsyncs (the writer's thread), returns the verdict.
    let (synced, verdict) = out.finish().await;
    match (streamed, synced) {
        (Ok(bytes), Ok(())) => {
            state.lock().await.partial = Some((path, name.clone(), verdict));
            Outcome::ok(format!("streamed {name} from active node {node_name}"))
                .with_bytes(bytes)
                .with_items(vec![Item::Streamed {
                    name,
                    node: node_name,
                    bytes,
                }])
        }
        (Err(e), _) => {
            let _ = std::fs::remove_file(&path);
            Outcome::failed(format!("snapshot from {node_name} failed: {e}"))
        }
        (_, Err(e)) => {
            let _ = std::fs::remove_file(&path);
            Outcome::failed(format!("fsync of the snapshot failed: {e}"))
        }
    }
}
