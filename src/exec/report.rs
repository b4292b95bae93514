//! The run report: one entry per action with status, reason, timings and
//! bytes. Written as JSON (`--report FILE`, `--format json`). Holds no
//! secrets: only names, sizes, hashes and reasons.

use std::time::Duration;

use serde::Serialize;

use super::{Outcome, ReportItem};
use crate::backends::metrics::{RunFacts, TargetResult};
use crate::exit::Exit;
use crate::plan::compile::Step;
use crate::plan::guard::Decision;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Succeeded,
    /// Ran and found nothing to do (counts as success for dependents).
    NothingToDo,
    Skipped,
    Failed,
}

impl Status {
    pub fn is_success(self) -> bool {
        matches!(self, Status::Succeeded | Status::NothingToDo)
    }
    pub fn word(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::NothingToDo => "had nothing to do",
            Status::Skipped => "was skipped",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReport {
    pub id: String,
    pub kind: &'static str,
    pub status: Status,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ReportItem>,
}

impl ActionReport {
    pub fn skipped(step: &Step, reason: String) -> Self {
        Self {
            id: step.id.clone(),
            kind: step.action.label(),
            status: Status::Skipped,
            reason,
            started_at: None,
            duration_ms: None,
            bytes: 0,
            items: Vec::new(),
        }
    }

    pub fn from_outcome(
        step: &Step,
        o: Outcome,
        started_at: jiff::Timestamp,
        took: Duration,
    ) -> Self {
        Self {
            id: step.id.clone(),
            kind: step.action.label(),
            status: o.status,
            reason: o.detail,
            started_at: Some(started_at),
            duration_ms: Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
            bytes: o.bytes,
            items: o.items.into_iter().map(ReportItem::from).collect(),
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub policy: String,
    pub dry_run: bool,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub exit: Exit,
    pub exit_code: u8,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    pub cancelled: bool,
    pub actions: Vec<ActionReport>,
    /// `spec.notify`: what each ping and webhook did (never the URL, only
    /// its scheme and host). A failed one does not change the exit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::backends::notify::Delivery>,
}

impl RunReport {
    /// What this run contributes to the metrics.
    pub fn metrics_facts(
        &self,
        snapshot: Option<(u64, u64)>,
        authentic: Option<bool>,
        kept: std::collections::BTreeMap<String, usize>,
    ) -> RunFacts {
        let targets = self
            .actions
            .iter()
            .filter_map(|a| {
                let result = match a.status {
                    Status::Succeeded => TargetResult::Succeeded,
                    Status::NothingToDo => TargetResult::NothingToDo,
                    Status::Skipped => TargetResult::Skipped,
                    Status::Failed => TargetResult::Failed,
                };
                a.id.strip_prefix("upload:")
                    .map(|t| (t.to_string(), result))
            })
            .collect();
        RunFacts {
            policy: self.policy.clone(),
            exit_code: self.exit_code,
            success: self.exit == Exit::Success && !self.dry_run,
            refused: self.exit == Exit::Refused,
            finished_at: self.finished_at.as_second(),
            duration_seconds: self
                .finished_at
                .duration_since(self.started_at)
                .as_secs_f64(),
            snapshot,
            authentic,
            targets,
            kept,
            restore_test: None,
        }
    }
}
