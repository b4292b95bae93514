//! `restore-test` (backup branch, `spec.restoreTest`): rehearse the restore
//! of this run's snapshot, as stored in the tested store, on a throwaway
//! OpenBao. The rehearsal itself ([`Rehearse`]) is provided by the
//! composition root (it builds a second run on a derived policy); this
//! action only asks for it, records the result and the pass stamp that
//! `spec.restoreTest.every` reads. A failed rehearsal does not undo the
//! backup: the run ends with its own exit code (6).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Actions;
use crate::exec::Outcome;
use crate::exec::state::RunState;

/// How a rehearsal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rehearsal {
    pub passed: bool,
    /// What it proved, or why it failed (no secrets: the rehearsal's own
    /// outcome texts).
    pub detail: String,
}

/// Rehearses a restore of `snapshot` from `store` on a throwaway server.
#[async_trait]
pub trait Rehearse: Send + Sync {
    async fn rehearse(&self, store: &str, snapshot: &str, cancel: &CancellationToken) -> Rehearsal;
}

/// The stamp a passed rehearsal leaves in the local store (a timestamp,
/// no secret): `.snapward-<policy>.restore-test-passed`.
pub fn stamp_name(policy: &str) -> String {
    format!(".snapward-{policy}.restore-test-passed")
}

pub(super) async fn run(
    a: &Actions,
    store: &str,
    state: &Mutex<RunState>,
    cancel: &CancellationToken,
) -> Outcome {
    let Some(snap) = state.lock().await.snapshot.clone() else {
        return Outcome::failed("no snapshot from this run");
    };
    let Some(r) = &a.rehearse else {
        return Outcome::failed("restore tests are not available in this command");
    };
    let started = Instant::now();
    let out = r.rehearse(store, &snap.name, cancel).await;
    let took = started.elapsed();
    state.lock().await.restore_test = Some((out.passed, took));
    if !out.passed {
        return Outcome::failed(format!(
            "the restore test of {store}/{} FAILED after {:.1}s: {}",
            snap.name,
            took.as_secs_f64(),
            out.detail
        ));
    }
    let stamp = a.local.dir().join(stamp_name(a.policy.name()));
    if let Err(e) = std::fs::write(&stamp, jiff::Timestamp::now().to_string()) {
        tracing::warn!(error = %e, path = %stamp.display(), "cannot record the restore test's pass; spec.restoreTest.every will not hold the next one back");
    }
    Outcome::ok(format!(
        "{store}/{} restored on a throwaway OpenBao in {:.1}s: {}",
        snap.name,
        took.as_secs_f64(),
        out.detail
    ))
}

/// When the last rehearsal passed, from its stamp (`None`: never, or
/// unreadable — then the test is due).
pub(super) fn passed_at(a: &Actions) -> Option<jiff::Timestamp> {
    let text = std::fs::read_to_string(a.local.dir().join(stamp_name(a.policy.name()))).ok()?;
    text.trim().parse().ok()
}

/// `spec.restoreTest.every`, parsed (lint checked it).
pub(super) fn every(a: &Actions) -> Option<Duration> {
    let t = a.policy.doc.spec.restore_test.as_ref()?;
    humantime::parse_duration(t.every.as_deref()?.trim()).ok()
}
