//! `spec.notify` around a run: the start ping once the run holds its lock,
//! the end ping and webhooks once the report exists (or with the exit code
//! alone when the run stopped before it had one). Never in a dry run or a
//! rehearsal; never for a run that found another one holding the lock
//! (exit 5: that run notifies).

use serde_json::{Value, json};

use super::RunOptions;
use crate::backends::notify::{Delivery, Notifier};
use crate::exec::report::RunReport;
use crate::exit::Exit;
use crate::policy::ValidPolicy;

pub(super) fn notifier(p: &ValidPolicy, opts: &RunOptions) -> Option<Notifier> {
    if opts.dry_run || opts.rehearsal {
        return None;
    }
    Notifier::new(p.doc.spec.notify.as_ref())
}

/// The webhook body: the report's summary, never a secret (the report
/// holds none, invariant 9) — no items, only each action's result.
pub(super) fn body(report: &RunReport) -> Value {
    let actions: Vec<Value> = report
        .actions
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "kind": a.kind,
                "status": a.status,
                "reason": a.reason,
                "bytes": a.bytes,
            })
        })
        .collect();
    json!({
        "policy": report.policy,
        "outcome": report.exit,
        "exitCode": report.exit_code,
        "startedAt": report.started_at,
        "finishedAt": report.finished_at,
        "summary": {
            "text": report.summary,
            "branch": report.decision.as_ref().map(|d| d.branch),
            "cancelled": report.cancelled,
            "actions": actions,
        },
    })
}

/// The end of a run that stopped before it had a report.
pub(super) async fn not_started(
    n: &Notifier,
    p: &ValidPolicy,
    started_at: jiff::Timestamp,
    exit: Exit,
) -> Vec<Delivery> {
    let summary = format!(
        "stopped before running (exit {}): see the run's log",
        exit.code()
    );
    let body = json!({
        "policy": p.name(),
        "outcome": exit,
        "exitCode": exit.code(),
        "startedAt": started_at,
        "finishedAt": jiff::Timestamp::now(),
        "summary": {"text": summary, "branch": null, "cancelled": false, "actions": []},
    });
    n.end(exit.code(), &summary, &body).await
}
