//! `upload:<target>`: copy-only mirror. Every valid local snapshot missing
//! on the target that the target's retention would keep is uploaded
//! (create-only) and confirmed by read-back; nothing is ever deleted here.
//! This run's snapshot must end up confirmed on the target, or the action
//! fails (and the target's prune is skipped).
//!
//! A target that received this run's snapshot while it streamed (see
//! `snapshot`) commits that copy instead of uploading it: the same
//! create-only publish and read-back, the same items and progress line.

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Actions, tri};
use crate::backends::{PutOutcome, TargetError};
use crate::exec::select::mirror_plan;
use crate::exec::state::RunState;
use crate::exec::trust;
use crate::exec::{Item, Outcome};

pub(super) async fn run(
    a: &Actions,
    target: &str,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let Some(slot) = a.slot(target) else {
        return Outcome::failed(format!("unknown target `{target}`"));
    };
    let t = match &slot.target {
        Ok(t) => t.clone(),
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let remote = match state.lock().await.remote.get(target).cloned() {
        Some(r) => r,
        None => match a.listing(t.as_ref()).await {
            Ok(r) => r,
            Err(e) => return Outcome::failed(format!("listing failed: {e}")),
        },
    };
    let local = tri!(a.local_valid(state).await);
    let this_run = state.lock().await.snapshot.clone();
    let is_this_run = |name: &str| this_run.as_ref().is_some_and(|t| t.name == name);
    let plan = mirror_plan(&slot.rules, &remote, &local);
    let mut items = Vec::new();
    // What each upload records so that a HEAD can authenticate it later:
    // the tag (under the stored keys) and this cluster's id.
    let keys = a.trust_keys().await;
    let cluster_id = {
        let s = state.lock().await;
        s.active_node()
            .and_then(|i| s.nodes.get(i))
            .and_then(|n| n.cluster_id.clone())
            .unwrap_or_default()
    };
    // This run's snapshot, if it streamed here: committed instead of
    // uploaded (a failed commit falls back to the upload).
    let mut stream = state.lock().await.streams.remove(target);
    let mut bytes = 0;
    let mut failed = None;
    for name in &plan.conflicts {
        items.push(Item::Conflict { name: name.clone() });
    }
    for s in plan.upload {
        if cancel.is_cancelled() {
            failed = Some("cancelled".to_string());
            break;
        }
        // Older local snapshots: their cluster is not recorded locally.
        let cid = if is_this_run(&s.name) {
            cluster_id.as_str()
        } else {
            ""
        };
        let tag = trust::upload_tag(
            &s.name,
            &s.identity,
            cid,
            keys.as_ref().ok().and_then(|k| k.as_deref()),
        );
        if let (Err(reason), None) = (&keys, &tag.tag) {
            items.push(Item::UploadedUntagged {
                name: s.name.clone(),
                reason: reason.clone(),
            });
        }
        let put = match (is_this_run(&s.name), stream.take()) {
            (true, Some(copy)) => match copy.0.commit(&s.identity, &tag, cancel).await {
                Ok(done) => {
                    items.push(Item::StreamCommitted {
                        name: s.name.clone(),
                    });
                    Ok(done)
                }
                Err(e @ TargetError::Cancelled) => Err(e),
                Err(e) => {
                    let reason = crate::backends::chain(&e);
                    tracing::warn!(target_name = %target, error = %reason, "committing the streamed copy failed: uploading from the local file");
                    items.push(Item::StreamDetached {
                        target: target.to_string(),
                        reason,
                    });
                    t.put(&s.path, &s.name, &s.identity, &tag, cancel).await
                }
            },
            (_, copy) => {
                stream = copy;
                t.put(&s.path, &s.name, &s.identity, &tag, cancel).await
            }
        };
        match put {
            Ok(PutOutcome::Confirmed(c))
                if c.size == s.identity.file_size && c.sha256 == s.identity.sha256 =>
            {
                bytes += c.size;
                items.push(Item::Uploaded {
                    name: s.name.clone(),
                    bytes: c.size,
                });
                if is_this_run(&s.name) {
                    state
                        .lock()
                        .await
                        .confirmed
                        .insert(target.to_string(), PutOutcome::Confirmed(c));
                }
            }
            Ok(PutOutcome::Confirmed(c)) => {
                failed = Some(format!(
                    "{} not confirmed: target reports {} bytes sha256 {}",
                    s.name, c.size, c.sha256
                ));
                break;
            }
            Ok(would @ PutOutcome::WouldUpload { size, .. }) => {
                items.push(Item::WouldUpload {
                    name: s.name.clone(),
                    bytes: size,
                });
                if is_this_run(&s.name) {
                    state
                        .lock()
                        .await
                        .confirmed
                        .insert(target.to_string(), would);
                }
            }
            Err(e) => {
                failed = Some(format!("upload of {} failed: {e}", s.name));
                break;
            }
        }
    }
    // Not published (this run's snapshot was not to be uploaded here, or
    // the loop stopped before it): nothing of it may stay.
    if let Some(copy) = stream.take() {
        copy.0.abort().await;
    }
    // Leftovers of crashed runs (incomplete multipart uploads older than a
    // day, stale temp files): never a snapshot. Not fatal. After this
    // run's own copy was committed or aborted: a store whose upload
    // listing misdates uploads (moto reports every one as begun in 2010)
    // must not get this run's open staging upload aborted under it.
    if !cancel.is_cancelled() {
        match t.cleanup().await {
            Ok(c) => items.extend(c.removed.into_iter().map(|what| Item::CleanedUp { what })),
            Err(e) => items.push(Item::CleanupFailed {
                error: e.to_string(),
            }),
        }
    }
    for name in plan.not_uploaded {
        items.push(Item::NotUploaded { name });
    }
    // This run's snapshot may already be there (same name and content).
    if let Some(tr) = &this_run
        && remote
            .iter()
            .any(|r| r.name == tr.name && r.sha256.as_deref() == Some(tr.identity.sha256.as_str()))
    {
        state.lock().await.confirmed.insert(
            target.to_string(),
            PutOutcome::Confirmed(crate::backends::Confirmed {
                size: tr.identity.file_size,
                sha256: tr.identity.sha256.clone(),
            }),
        );
    }
    match a.listing(t.as_ref()).await {
        Ok(list) => {
            state.lock().await.remote.insert(target.to_string(), list);
        }
        Err(e) => failed = failed.or(Some(format!("listing after upload failed: {e}"))),
    }
    // This run's snapshot must end up confirmed here, or the run is not done.
    if failed.is_none()
        && let Some(tr) = &this_run
        && !state.lock().await.confirmed.contains_key(target)
    {
        failed = Some(format!(
            "this run's snapshot {} was not confirmed on `{target}`",
            tr.name
        ));
    }
    match failed {
        Some(f) => Outcome::failed(f).with_items(items).with_bytes(bytes),
        None if items.is_empty() => {
            Outcome::noop("every snapshot retention keeps is already there")
        }
        None => Outcome::ok(format!("{} item(s)", items.len()))
            .with_items(items)
            .with_bytes(bytes),
    }
}
