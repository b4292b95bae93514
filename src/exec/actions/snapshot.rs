//! `snapshot`: stream a raft snapshot from the active node into a temp file
//! of the local store, verified while it streams (the verdict is kept for
//! `verify`), then fsynced. On any failure the temp file is removed.
//!
//! Stream once (DESIGN.md §10): the same bytes go at the same time to
//! every target that streams ([`crate::backends::Target::begin_stream`]):
//! written to it through [`super::fanout::Fanout`] (a filesystem target),
//! or read back from the temp file as it grows, through a
//! [`crate::backends::tail::Tail`] (S3: it never holds the local copy up). Their copies are kept for their
//! `upload:<target>` actions to commit after `verify` linked the local
//! file; if the stream, the verification or the fsync failed, every
//! target's copy is aborted here.

use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use super::fanout::Streamed;
use crate::backends::snapshot_name;
use crate::exec::state::{OpenStream, RunState};
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
    let (feed, tail) = match crate::backends::tail::follow(&begun.file) {
        Ok((feed, tail)) => (Some(feed), Some(tail)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot follow the temp file: every target uploads from the local file afterwards");
            (None, None)
        }
    };
    let node_name = state
        .lock()
        .await
        .nodes
        .get(node)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let mut items = Vec::new();
    let mut targets = match &tail {
        Some(tail) => begin_streams(a, state, &name, tail, &mut items).await,
        None => Vec::new(),
    };
    drop(tail);
    // The local file's pages leave the page cache once written back,
    // CACHED_WINDOWS windows behind the writer, whether or not every target
    // streams (README "Performance"): a streaming target reads its parts
    // while they are still cached; one that uploads from the file
    // afterwards (`stream: false`, a detached stream) reads it from disk.
    // A backup job should not fill the node's page cache (charged to the
    // pod's memory cgroup) with a file it reads at most once more.
    let mut out = crate::backends::local::SnapshotWriter::new(begun.file, limits, feed);
    // Followers read the temp file themselves; the others are written to.
    let followers: Vec<_> = targets
        .extract_if(.., |(_, put)| put.follows_file())
        .collect();
    let mut fan = super::fanout::Fanout::new(&mut out, targets);
    let shown = crate::progress::start(format!("snapshot {name}"), None);
    let streamed = a
        .bao
        .snapshot(
            node,
            &mut crate::progress::Writer::new(&mut fan, &shown),
            cancel,
        )
        .await;
    if streamed.is_ok() {
        shown.finish();
    }
    let flushed = fan.flush().await;
    let (_, mut copies) = fan.finish().await;
    copies.extend(
        followers
            .into_iter()
            .map(|(target, put)| (target, Streamed::Ready(put))),
    );
    // Writes the rest, fsyncs (the writer's thread), returns the verdict.
    let (synced, verdict) = out.finish().await;
    let synced = flushed.and(synced);
    let mut ready = std::collections::BTreeMap::new();
    for (target, copy) in copies {
        match copy {
            Streamed::Ready(put) => {
                ready.insert(target, OpenStream(put));
            }
            Streamed::Detached(reason) => items.push(Item::StreamDetached { target, reason }),
        }
    }
    match (streamed, synced) {
        (Ok(bytes), Ok(())) => {
            let mut s = state.lock().await;
            if verdict.is_ok() {
                crate::crash::crash_point!("stream.after-verify");
                s.streams = ready;
            } else {
                // Not a snapshot: no target ever publishes it.
                for (_, put) in ready {
                    put.0.abort().await;
                }
            }
            s.partial = Some((path, name.clone(), verdict));
            items.insert(
                0,
                Item::Streamed {
                    name: name.clone(),
                    node: node_name.clone(),
                    bytes,
                },
            );
            Outcome::ok(format!("streamed {name} from active node {node_name}"))
                .with_bytes(bytes)
                .with_items(items)
        }
        (streamed, synced) => {
            for (_, put) in ready {
                put.0.abort().await;
            }
            let _ = std::fs::remove_file(&path);
            match (streamed, synced) {
                (Err(e), _) => Outcome::failed(format!("snapshot from {node_name} failed: {e}")),
                (_, Err(e)) => Outcome::failed(format!(
                    "snapshot from {node_name} failed: writing or fsyncing the local file: {e}"
                )),
                _ => Outcome::failed("snapshot failed"),
            }
            .with_items(items)
        }
    }
}

/// Opens a streamed copy on every usable target that streams. A target
/// that cannot begin one is reported and uploads from the local file.
async fn begin_streams(
    a: &Actions,
    state: &Mutex<RunState>,
    name: &str,
    tail: &crate::backends::tail::Tail,
    items: &mut Vec<Item>,
) -> Vec<(String, Box<dyn crate::backends::StreamingPut>)> {
    let skipped = {
        let s = state.lock().await;
        s.skipped_targets
            .iter()
            .chain(s.unavailable.keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    let mut out = Vec::new();
    for slot in &a.targets {
        let Ok(t) = &slot.target else { continue };
        if skipped.contains(&slot.name) {
            continue;
        }
        match t.begin_stream(name, tail).await {
            Ok(Some(put)) => {
                items.push(Item::StreamedTo {
                    target: slot.name.clone(),
                });
                out.push((slot.name.clone(), put));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target_name = %slot.name, error = %crate::backends::chain(&e), "cannot stream to the target: it uploads from the local file afterwards");
                items.push(Item::StreamDetached {
                    target: slot.name.clone(),
                    reason: crate::backends::chain(&e),
                });
            }
        }
    }
    out
}
