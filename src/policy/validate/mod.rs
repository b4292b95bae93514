//! Validate: JSON Schema (the committed one) plus semantic rules, every
//! problem a `Finding` with a stable code and a JSON pointer; a clean policy
//! becomes a `ValidPolicy`, the only thing the compiler accepts.
//!
//! One file per section of the policy, each a function over its section
//! that pushes its findings and returns its parsed settings (`None` when it
//! reported an error); this file runs them and assembles the `ValidPolicy`.
//!
//! Stage: validate. Pure: no I/O (file paths in the policy are not opened
//! here — they may only exist inside the Job's pod).

mod azure;
mod cluster;
mod gcs;
mod guards;
mod json_schema;
mod keys;
mod limits;
mod metrics;
mod notify;
mod parse;
mod restore;
mod stores;

use std::time::Duration;

use serde_json::Value;

use super::model::PolicyDocument;
use super::valid::{GuardSettings, ValidPolicy};
use crate::diag::{Code, Finding, Severity};
use json_schema::schema_findings;
/// `spec.maxSnapshotBytes` sizes (`64Gi`), also `verify --max-snapshot-bytes`.
pub use limits::parse_bytes;
/// Still named by `backends/s3.rs`, which re-parses its target's timeouts;
/// once it takes `S3Settings` (`TargetKind::S3`) this need not be public.
pub use parse::{TimeoutError, parse_timeout};

/// Validate a JSON value (from YAML). Returns the policy if there are no
/// errors, and every finding (warnings included) either way.
pub fn validate(value: &Value) -> (Option<ValidPolicy>, Vec<Finding>) {
    let mut findings = schema_findings(value);
    // Unknown fields alone must not hide semantic problems: drop them and
    // try the typed view anyway.
    let mut pruned = value.clone();
    for f in &findings {
        if f.code == Code::UnknownField {
            remove_pointer(&mut pruned, &f.path);
        }
    }
    let typed = if findings.iter().all(|f| f.code == Code::UnknownField) {
        Some(serde_json::from_value::<PolicyDocument>(pruned))
    } else {
        None
    };
    let mut valid = None;
    let mut type_error = None;
    let typed = match typed {
        Some(Ok(doc)) => Some(doc),
        Some(Err(e)) => {
            type_error = Some(e.to_string());
            None
        }
        None => None,
    };
    if let Some(doc) = typed {
        let mut sem = Vec::new();
        let v = semantic(doc, &mut sem);
        findings.extend(sem);
        if !findings.iter().any(|f| f.severity == Severity::Error) {
            if v.is_none() {
                // Every section reports the error that keeps its settings
                // from existing; reaching this is a bug, never a silent no.
                findings.push(Finding::error(
                    Code::Schema,
                    "",
                    "internal: the policy passed every check but could not be assembled",
                ));
            }
            valid = v;
        }
    } else if findings.is_empty() {
        // The schema should catch every such problem with its location;
        // if one slips through, at least say what serde saw.
        findings.push(
            Finding::error(
                Code::Schema,
                "",
                format!(
                    "the policy does not match snapward's types: {}",
                    type_error.as_deref().unwrap_or("unknown reason")
                ),
            )
            .help("compare the policy with `snapward schema`"),
        );
    }
    (valid, findings)
}

fn remove_pointer(v: &mut Value, ptr: &str) {
    let Some((parent, last)) = ptr.rsplit_once('/') else {
        return;
    };
    let key = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(&key);
    }
}

/// Has no error been pushed to `out` since `start`? (A section's settings
/// exist only if it reported no error.)
fn clean_since(out: &[Finding], start: usize) -> bool {
    !out.get(start..)
        .unwrap_or_default()
        .iter()
        .any(|f| f.severity == Severity::Error)
}

/// A positive timeout, or a `bad-duration` error at `path`; `example`
/// starts the help's list of examples.
fn timeout(val: &str, path: &str, example: &str, out: &mut Vec<Finding>) -> Option<Duration> {
    match parse_timeout(val) {
        Ok(d) => Some(d),
        Err(e) => {
            out.push(
                Finding::error(Code::BadDuration, path, e.to_string()).help(format!(
                    "write a positive duration such as {example}, 2m or 1h"
                )),
            );
            None
        }
    }
}

/// `spec.schedule`: the longest gap between two runs (retention windows
/// must cover it). `Some(None)`: no schedule; `None`: an error was reported.
fn schedule(schedule: Option<&str>, out: &mut Vec<Finding>) -> Option<Option<Duration>> {
    let Some(s) = schedule else {
        return Some(None);
    };
    match parse::schedule_interval(s) {
        Ok(i) => Some(Some(i)),
        Err(e) => {
            out.push(
                Finding::error(
                    Code::BadSchedule,
                    "/spec/schedule",
                    format!("bad cron schedule: {e}"),
                )
                .help("use the CronJob's 5-field form, e.g. \"0 2 * * *\""),
            );
            None
        }
    }
}

/// The semantic rules, section by section. The order of the calls is the
/// order of the findings, as it has always been (so the restore timeouts
/// are checked right after the cluster's).
fn semantic(doc: PolicyDocument, out: &mut Vec<Finding>) -> Option<ValidPolicy> {
    let spec = &doc.spec;
    let interval = schedule(spec.schedule.as_deref(), out);
    let cluster = cluster::check(&spec.cluster, out);
    let restore_timeouts = restore::timeouts(&spec.restore, out);
    // A bad schedule has been reported; the retention checks that need
    // its interval are skipped.
    let iv = interval.flatten();
    let local = stores::local(&spec.local, iv, out);
    let targets = stores::targets(&spec.targets, &spec.local.path, iv, out);
    let unseal_keys = keys::unseal_keys(
        spec.unseal_keys.as_ref(),
        doc.metadata.namespace.as_deref(),
        out,
    );
    let restore = restore::check(spec, restore_timeouts, out);
    let max_restore_age = guards::max_restore_age(&spec.guards, out);
    keys::init(&spec.init, spec.unseal_keys.is_some(), out);
    keys::authenticity(spec.unseal_keys.is_some(), spec.targets.len(), out);
    metrics::check(spec.metrics.as_ref(), out);
    notify::check(spec.notify.as_ref(), out);
    guards::always_on(&spec.guards, out);
    let max_snapshot_bytes = limits::max_snapshot_bytes(spec.max_snapshot_bytes.as_deref(), out);

    let (sources, restore) = restore?;
    let guards = GuardSettings {
        keep_unmirrored_local: spec.guards.keep_unmirrored_local,
        max_restore_age: max_restore_age?,
    };
    Some(ValidPolicy {
        cluster: cluster?,
        local: local?,
        targets: targets?,
        sources,
        restore,
        unseal_keys: unseal_keys?,
        guards,
        schedule_interval: interval?,
        max_snapshot_bytes: max_snapshot_bytes?,
        doc,
    })
}

#[cfg(test)]
mod tests;
