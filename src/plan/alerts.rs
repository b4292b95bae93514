//! Prometheus alerting rules for the metrics snapward exports
//! (`backends::metrics`), generated from each policy — a `PrometheusRule`
//! (Prometheus Operator) or a plain rules file (`snapward alert-rules`).
//!
//! The "no success" window is twice the longest gap between two scheduled
//! runs (`ValidPolicy::schedule_interval`: the policy's `spec.schedule`, the
//! same cron parser `lint` uses), so a weekday-only schedule counts its
//! weekend gap and a missed run or two never pages.
//!
//! Stage: plan. Pure: no I/O, no clock; `commands::alert_rules` reads the
//! policies and prints. The metric names and labels here are the ones
//! `backends::metrics::render` writes; `tests/it/alerts.rs` checks both
//! against each other and parses every expression.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::policy::ValidPolicy;

/// What `alert-rules` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// A `monitoring.coreos.com/v1` `PrometheusRule` object.
    PrometheusRule,
    /// A plain Prometheus rules file (`rule_files:`).
    Rules,
}

impl AlertFormat {
    pub fn all() -> &'static [AlertFormat] {
        &[AlertFormat::PrometheusRule, AlertFormat::Rules]
    }

    pub fn name(self) -> &'static str {
        match self {
            AlertFormat::PrometheusRule => "prometheus-rule",
            AlertFormat::Rules => "rules",
        }
    }
}

/// Where the generated runbook links point by default: the README's alert
/// sections (`## Day-2 operations` → `### Alerts`), one heading per alert.
pub const DEFAULT_RUNBOOK_BASE: &str = "README.md";

/// The options of one `alert-rules` call.
#[derive(Debug, Clone)]
pub struct AlertOptions {
    pub format: AlertFormat,
    /// The `PrometheusRule`'s namespace (default: the first policy's
    /// `metadata.namespace`, else none).
    pub namespace: Option<String>,
    /// Prefix of every `runbook_url` (`<base>#<alert name in lower case>`).
    pub runbook_base: String,
}

/// A policy the rules cannot be generated for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error(
        "policy `{policy}` has no spec.schedule: the \"no recent success\" alert fires after twice \
         the longest gap between scheduled runs. Add the CronJob's schedule as spec.schedule \
         (5-field cron, e.g. \"15 2 * * *\")"
    )]
    NoSchedule { policy: String },
    #[error(
        "policy `{policy}` is given twice: one rule group per policy (each -f names another policy)"
    )]
    DuplicatePolicy { policy: String },
    #[error("cannot write the rules as YAML: {0}")]
    Yaml(String),
}

/// One rule group per policy: `groups:` of a rules file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// One alerting rule, in Prometheus' field order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusRule {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: RuleFile,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Metadata {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    labels: BTreeMap<String, String>,
}

/// `2 ×` the longest gap between two scheduled runs of `p`.
pub fn no_success_window(p: &ValidPolicy) -> Result<Duration, AlertError> {
    p.schedule_interval
        .map(|i| i.saturating_mul(2))
        .ok_or_else(|| AlertError::NoSchedule {
            policy: p.name().to_string(),
        })
}

/// A duration in Prometheus' notation, in the largest whole unit
/// (`48h`, `15m`, `90s`).
pub fn prometheus_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// A PromQL string literal's content.
fn promql_str(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The anchor GitHub gives a heading `### <name>`.
fn anchor(alert: &str) -> String {
    alert.to_lowercase()
}

struct RuleSpec<'a> {
    alert: &'a str,
    expr: String,
    for_: String,
    severity: &'a str,
    summary: String,
    description: String,
}

/// The rule group of one policy.
pub fn group(p: &ValidPolicy, runbook_base: &str) -> Result<Group, AlertError> {
    let window = no_success_window(p)?;
    let w = prometheus_duration(window);
    let name = p.name();
    let sel = format!("policy=\"{}\"", promql_str(name));
    let schedule = p.doc.spec.schedule.as_deref().unwrap_or("");
    let mut specs = vec![
        RuleSpec {
            alert: "SnapwardNoRecentSuccess",
            expr: format!(
                "time() - max by (policy) (snapward_last_success_timestamp_seconds{{{sel}}}) > {}",
                window.as_secs()
            ),
            for_: "5m".into(),
            severity: "critical",
            summary: format!("snapward policy {name}: no successful run in {w}"),
            description: format!(
                "The last run of policy {name} that ended with exit 0 was {{{{ $value | humanizeDuration }}}} ago: \
                 more than twice the longest gap between runs of its schedule \"{schedule}\" ({w}). \
                 Backups may have stopped: check the CronJob's last Jobs and their logs, and the other snapward alerts."
            ),
        },
        RuleSpec {
            alert: "SnapwardMetricsAbsent",
            expr: format!("absent(snapward_last_success_timestamp_seconds{{{sel}}})"),
            for_: w.clone(),
            severity: "warning",
            summary: format!("snapward policy {name}: no success recorded in {w}"),
            description: format!(
                "Prometheus has had no snapward_last_success_timestamp_seconds for policy {name} for {w}: \
                 the job never ran, never succeeded, or its metrics do not reach Prometheus \
                 (spec.metrics: the textfile collector or the Pushgateway)."
            ),
        },
        RuleSpec {
            alert: "SnapwardGuardRefused",
            expr: format!("max by (policy) (snapward_guard_refused{{{sel}}}) == 1"),
            for_: "5m".into(),
            severity: "critical",
            summary: format!("snapward policy {name}: a guard refused the last run"),
            description: format!(
                "The last run of policy {name} was refused by a guard (exit 3): nothing destructive was done \
                 and a human must act. Its run report and logs name the rule and how to go on."
            ),
        },
    ];
    if !p.targets.is_empty() {
        specs.push(RuleSpec {
            alert: "SnapwardTargetFailed",
            expr: format!(
                "max by (policy, target) (snapward_target_result{{{sel},result=\"failed\"}}) == 1"
            ),
            for_: "5m".into(),
            severity: "warning",
            summary: format!(
                "snapward policy {name}: the upload to target {{{{ $labels.target }}}} failed"
            ),
            description: format!(
                "The last run of policy {name} could not upload to or confirm its snapshot on target \
                 {{{{ $labels.target }}}}. Nothing was pruned there; the next run retries. \
                 snapward_target_last_upload_timestamp_seconds shows its last good upload."
            ),
        });
    }
    if p.doc.spec.restore_test.is_some() {
        specs.push(RuleSpec {
            alert: "SnapwardRestoreTestFailed",
            expr: format!("min by (policy) (snapward_restore_test_result{{{sel}}}) == 0"),
            for_: "5m".into(),
            severity: "critical",
            summary: format!("snapward policy {name}: the restore test failed"),
            description: format!(
                "The last restore test of policy {name} (spec.restoreTest) did not restore the stored copy \
                 on a throwaway OpenBao (exit 6): the backup may not be restorable. Its run report says which step failed."
            ),
        });
    }
    if let Some(t) = &p.doc.spec.restore_test {
        // A passed rehearsal holds the next one back for `every` (default:
        // every run); it can only happen on a scheduled run.
        let every = t
            .every
            .as_deref()
            .and_then(|e| humantime::parse_duration(e.trim()).ok())
            .unwrap_or_default();
        let due = every.max(window / 2).saturating_mul(2);
        let d = prometheus_duration(due);
        specs.push(RuleSpec {
            alert: "SnapwardRestoreTestOverdue",
            expr: format!(
                "time() - max by (policy) (snapward_restore_test_last_success_timestamp_seconds{{{sel}}}) > {}",
                due.as_secs()
            ),
            for_: "5m".into(),
            severity: "warning",
            summary: format!("snapward policy {name}: no restore test passed in {d}"),
            description: format!(
                "The last restore test of policy {name} that passed was {{{{ $value | humanizeDuration }}}} ago: \
                 more than twice spec.restoreTest.every (or the schedule's longest gap, if longer) ({d}). \
                 Rehearsals fail, or do not run (the backup fails before them)."
            ),
        });
    }
    if p.unseal_keys.is_some() {
        specs.push(RuleSpec {
            alert: "SnapwardSnapshotNotAuthentic",
            expr: format!("min by (policy) (snapward_snapshot_authentic{{{sel}}}) == 0"),
            for_: "5m".into(),
            severity: "critical",
            summary: format!(
                "snapward policy {name}: the stored unseal keys do not authenticate the last snapshot"
            ),
            description: format!(
                "The unseal keys policy {name} stores (spec.unsealKeys) do not open the last snapshot's sealed sums: \
                 a restore of it would not unseal with them (a rekey, or the wrong key store)."
            ),
        });
    }
    let rules = specs
        .into_iter()
        .map(|s| {
            let labels = BTreeMap::from([
                ("severity".to_string(), s.severity.to_string()),
                ("policy".to_string(), name.to_string()),
            ]);
            let annotations = BTreeMap::from([
                ("summary".to_string(), s.summary),
                ("description".to_string(), s.description),
                (
                    "runbook_url".to_string(),
                    format!("{runbook_base}#{}", anchor(s.alert)),
                ),
            ]);
            Rule {
                alert: s.alert.to_string(),
                expr: s.expr,
                for_: s.for_,
                labels,
                annotations,
            }
        })
        .collect();
    Ok(Group {
        name: format!("snapward-{name}"),
        rules,
    })
}

/// The YAML `alert-rules` prints for these policies.
pub fn render(policies: &[ValidPolicy], o: &AlertOptions) -> Result<String, AlertError> {
    let mut groups = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        if policies.iter().take(i).any(|q| q.name() == p.name()) {
            return Err(AlertError::DuplicatePolicy {
                policy: p.name().to_string(),
            });
        }
        groups.push(group(p, &o.runbook_base)?);
    }
    let names: Vec<&str> = policies.iter().map(ValidPolicy::name).collect();
    let header = format!(
        "# Generated by `snapward alert-rules --format {}` from polic{} {}.\n\
         # Do not edit: regenerate it when the policy changes (README \"Alerts\").\n",
        o.format.name(),
        if names.len() == 1 { "y" } else { "ies" },
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let file = RuleFile { groups };
    let yaml = match o.format {
        AlertFormat::Rules => serde_saphyr::to_string(&file),
        AlertFormat::PrometheusRule => {
            let name = match names.as_slice() {
                [one] => format!("snapward-{one}"),
                _ => "snapward".to_string(),
            };
            let namespace = o.namespace.clone().or_else(|| {
                policies
                    .first()
                    .and_then(|p| p.doc.metadata.namespace.clone())
            });
            serde_saphyr::to_string(&PrometheusRule {
                api_version: "monitoring.coreos.com/v1",
                kind: "PrometheusRule",
                metadata: Metadata {
                    name,
                    namespace,
                    labels: BTreeMap::from([(
                        "app.kubernetes.io/name".to_string(),
                        "snapward".to_string(),
                    )]),
                },
                spec: file,
            })
        }
    }
    .map_err(|e| AlertError::Yaml(e.to_string()))?;
    Ok(format!("{header}{yaml}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn policy(schedule: Option<&str>) -> ValidPolicy {
        let schedule = schedule
            .map(|s| format!("  schedule: \"{s}\"\n"))
            .unwrap_or_default();
        let text = format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: p}}\nspec:\n{schedule}  \
             cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n  local: {{path: /tmp/x, retention: {{keepLast: 2}}}}\n"
        );
        crate::policy::load_policy_text("p.yaml", &text).unwrap()
    }

    #[rstest]
    #[case::daily("15 2 * * *", 48 * 3600, "48h")]
    #[case::hourly("0 * * * *", 2 * 3600, "2h")]
    // Friday 02:00 → Monday 02:00: the weekend gap (72h) counts.
    #[case::weekdays_only("0 2 * * 1-5", 2 * 72 * 3600, "144h")]
    #[case::every_15_minutes("*/15 * * * *", 30 * 60, "30m")]
    #[case::twice_a_day_uneven("0 6,9 * * *", 2 * 21 * 3600, "42h")]
    fn the_window_is_twice_the_longest_gap(
        #[case] schedule: &str,
        #[case] secs: u64,
        #[case] shown: &str,
    ) {
        let w = no_success_window(&policy(Some(schedule))).unwrap();
        assert_eq!(w, Duration::from_secs(secs));
        assert_eq!(prometheus_duration(w), shown);
    }

    #[test]
    fn no_schedule_is_an_error_that_says_what_to_add() {
        let e = no_success_window(&policy(None)).unwrap_err();
        assert!(e.to_string().contains("spec.schedule"), "{e}");
    }

    #[test]
    fn the_threshold_is_in_the_expression_and_the_group_is_per_policy() {
        let g = group(&policy(Some("0 2 * * 1-5")), "README.md").unwrap();
        assert_eq!(g.name, "snapward-p");
        let stale = &g.rules[0];
        assert_eq!(stale.alert, "SnapwardNoRecentSuccess");
        assert!(stale.expr.ends_with("> 518400"), "{}", stale.expr);
        assert!(stale.expr.contains("policy=\"p\""), "{}", stale.expr);
        // No targets, no restore test, no key store: no rules for them.
        let names: Vec<&str> = g.rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(
            names,
            [
                "SnapwardNoRecentSuccess",
                "SnapwardMetricsAbsent",
                "SnapwardGuardRefused"
            ]
        );
        assert_eq!(g.rules[1].for_, "144h");
        assert_eq!(
            stale.annotations["runbook_url"],
            "README.md#snapwardnorecentsuccess"
        );
    }

    #[test]
    fn a_restore_test_is_overdue_after_twice_its_every() {
        let mut p = policy(Some("15 2 * * *"));
        let t: crate::policy::model::RestoreTest = serde_json::from_value(serde_json::json!({
            "baoBinary": "/bin/bao", "every": "7d"
        }))
        .unwrap();
        p.doc.spec.restore_test = Some(t.clone());
        let g = group(&p, "README.md").unwrap();
        let overdue = g
            .rules
            .iter()
            .find(|r| r.alert == "SnapwardRestoreTestOverdue")
            .unwrap();
        assert!(overdue.expr.ends_with("> 1209600"), "{}", overdue.expr);
        // Without `every` (a rehearsal each run): twice the schedule's gap.
        p.doc.spec.restore_test = Some(crate::policy::model::RestoreTest { every: None, ..t });
        let g = group(&p, "README.md").unwrap();
        let overdue = g
            .rules
            .iter()
            .find(|r| r.alert == "SnapwardRestoreTestOverdue")
            .unwrap();
        assert!(overdue.expr.ends_with("> 172800"), "{}", overdue.expr);
    }

    #[test]
    fn a_policy_given_twice_is_refused() {
        let p = policy(Some("0 * * * *"));
        let o = AlertOptions {
            format: AlertFormat::Rules,
            namespace: None,
            runbook_base: DEFAULT_RUNBOOK_BASE.into(),
        };
        let e = render(&[p.clone(), p], &o).unwrap_err();
        assert!(matches!(e, AlertError::DuplicatePolicy { .. }), "{e}");
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(prometheus_duration(Duration::from_secs(90)), "90s");
        assert_eq!(prometheus_duration(Duration::from_secs(0)), "0s");
        assert_eq!(prometheus_duration(Duration::from_secs(5400)), "90m");
    }
}
