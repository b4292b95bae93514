//! `snapward alert-rules` and the alert rules deploy/ ships.
//!
//! - `promtool check rules` on both files, and `promtool test rules` on
//!   synthetic series: a broken run fires each alert with its labels and
//!   expanded annotations, a healthy one fires none (promtool comes from
//!   Debian's prometheus package, unpacked by scripts/test-env.sh);
//! - every file is read with serde-saphyr into typed structs that refuse
//!   unknown fields (the rules-file and PrometheusRule shapes);
//! - every `expr` parses with `promql-parser` (GreptimeDB's PromQL parser)
//!   and every `for:` as a Prometheus duration;
//! - every metric and label an expression selects or groups by is one that
//!   snapward's own metrics exposition (`backends::metrics::render`) writes;
//! - the shipped files are byte-for-byte the generator's output (drift).
//!
//! The kustomize build of the component (overlays/prod) is checked by
//! tests/it/deploy.rs through [`check_prometheus_rule`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Deserialize;

use crate::support::cmd::snapward;
use crate::support::root;

/// The shipped files and the command that generates each (drift check;
/// README "Alerts" tells how to regenerate them).
const SHIPPED: &[(&str, &[&str])] = &[
    (
        "deploy/components/alerts/prometheusrule.yaml",
        &[
            "alert-rules",
            "--format",
            "prometheus-rule",
            "-f",
            "deploy/overlays/prod/policy.yaml",
        ],
    ),
    (
        "deploy/alerts/snapward.rules.yaml",
        &[
            "alert-rules",
            "--format",
            "rules",
            "-f",
            "deploy/overlays/local/policy.yaml",
            "-f",
            "deploy/overlays/prod/policy.yaml",
        ],
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub groups: Vec<Group>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub for_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusRule {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: RuleFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Every metric snapward writes, with the label names and values it uses:
/// a run's exposition with every optional part present.
fn exported() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    use snapward::backends::metrics::{RunFacts, TargetResult, render};
    let facts = RunFacts {
        policy: "p".into(),
        exit_code: 0,
        success: true,
        refused: false,
        finished_at: 1000,
        duration_seconds: 1.0,
        snapshot: Some((10, 36)),
        authentic: Some(true),
        targets: BTreeMap::from([("r2".to_string(), TargetResult::Failed)]),
        kept: BTreeMap::from([("local".to_string(), 3)]),
        restore_test: Some((true, 2.0)),
    };
    let mut out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for line in render(&facts, None).lines().filter(|l| !l.starts_with('#')) {
        let (name, rest) = line.split_once('{').expect("labels");
        let labels = rest.split_once('}').expect("closing brace").0;
        let entry = out.entry(name.to_string()).or_default();
        for pair in labels.split(',') {
            let (k, v) = pair.split_once('=').expect("k=v");
            entry
                .entry(k.to_string())
                .or_default()
                .insert(v.trim_matches('"').to_string());
        }
    }
    out
}

/// Metric selectors and grouping labels of one expression.
#[derive(Default)]
struct Used {
    selectors: Vec<(String, Vec<(String, String)>)>,
    grouping: Vec<String>,
}

impl ExprVisitor for Used {
    type Error = String;
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
        match e {
            Expr::VectorSelector(vs) => self.selectors.push((
                vs.name.clone().ok_or("a selector without a metric name")?,
                vs.matchers
                    .matchers
                    .iter()
                    .map(|m| (m.name.clone(), m.value.clone()))
                    .collect(),
            )),
            Expr::MatrixSelector(_) => return Err("no range selectors expected".into()),
            Expr::Aggregate(a) => {
                if let Some(m) = &a.modifier {
                    self.grouping.extend(m.labels().labels.iter().cloned());
                }
            }
            _ => {}
        }
        Ok(true)
    }
}

/// The checks every rule of every file must pass; `policy`: the policy the
/// group is for.
fn check_group(what: &str, g: &Group) -> Vec<String> {
    let metrics = exported();
    let mut bad = Vec::new();
    let policy = g.name.strip_prefix("snapward-").unwrap_or("");
    let mut names = BTreeSet::new();
    for r in &g.rules {
        let at = format!("{what}: group {} alert {}", g.name, r.alert);
        if !names.insert(&r.alert) {
            bad.push(format!("{at}: alert name used twice"));
        }
        let expr = match parser::parse(&r.expr) {
            Ok(e) => e,
            Err(e) => {
                bad.push(format!("{at}: expr does not parse: {e}: {}", r.expr));
                continue;
            }
        };
        if let Err(e) = promql_parser::util::parse_duration(&r.for_) {
            bad.push(format!("{at}: `for: {}` is not a duration: {e}", r.for_));
        }
        let mut used = Used::default();
        if let Err(e) = walk_expr(&mut used, &expr) {
            bad.push(format!("{at}: {e}"));
        }
        for (metric, matchers) in &used.selectors {
            let Some(labels) = metrics.get(metric) else {
                bad.push(format!("{at}: snapward exports no metric {metric}"));
                continue;
            };
            for (k, v) in matchers {
                match labels.get(k) {
                    None => bad.push(format!("{at}: {metric} has no label {k}")),
                    Some(_) if k == "policy" && v != policy => {
                        bad.push(format!("{at}: selects policy {v}, not {policy}"))
                    }
                    Some(vals) if k != "policy" && !vals.contains(v) => {
                        bad.push(format!("{at}: {metric} never has {k}=\"{v}\""))
                    }
                    Some(_) => {}
                }
            }
            if !matchers.iter().any(|(k, _)| k == "policy") {
                bad.push(format!("{at}: {metric} is not restricted to the policy"));
            }
            for l in &used.grouping {
                if !labels.contains_key(l) {
                    bad.push(format!("{at}: groups by {l}, which {metric} lacks"));
                }
            }
        }
        if used.selectors.is_empty() {
            bad.push(format!("{at}: selects no metric"));
        }
        for key in ["severity", "policy"] {
            if !r.labels.contains_key(key) {
                bad.push(format!("{at}: no label {key}"));
            }
        }
        if !matches!(
            r.labels.get("severity").map(String::as_str),
            Some("critical" | "warning")
        ) {
            bad.push(format!("{at}: severity must be critical or warning"));
        }
        for key in ["summary", "description", "runbook_url"] {
            if r.annotations.get(key).is_none_or(|v| v.is_empty()) {
                bad.push(format!("{at}: no annotation {key}"));
            }
        }
        let anchor = format!("#{}", r.alert.to_lowercase());
        if !r.annotations["runbook_url"].ends_with(&anchor) {
            bad.push(format!("{at}: runbook_url does not end in {anchor}"));
        }
    }
    bad
}

/// A rendered or shipped PrometheusRule: the Operator's shape, every rule
/// valid. deploy.rs calls this for the kustomize builds.
pub fn check_prometheus_rule(doc: &serde_json::Value) -> Result<(), String> {
    let pr: PrometheusRule = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let mut bad = Vec::new();
    if pr.api_version != "monitoring.coreos.com/v1" || pr.kind != "PrometheusRule" {
        bad.push(format!("{} {}", pr.api_version, pr.kind));
    }
    if pr.metadata.name.is_empty() {
        bad.push("no metadata.name".into());
    }
    if pr
        .metadata
        .labels
        .get("app.kubernetes.io/name")
        .map(String::as_str)
        != Some("snapward")
    {
        bad.push("no label app.kubernetes.io/name: snapward".into());
    }
    for g in &pr.spec.groups {
        bad.extend(check_group(&pr.metadata.name, g));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("\n"))
    }
}

fn generate(args: &[&str]) -> String {
    let o = snapward().args(args).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "snapward {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn rules_file(text: &str) -> RuleFile {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not a rules file: {e}\n{text}"))
}

fn prometheus_rule(text: &str) -> PrometheusRule {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not a PrometheusRule: {e}\n{text}"))
}

#[test]
fn shipped_rule_files_are_the_generators_output() {
    for (file, args) in SHIPPED {
        let shipped =
            std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let generated = generate(args);
        assert!(
            shipped == generated,
            "{file} is stale: regenerate it with `snapward {} > {file}`",
            args.join(" ")
        );
    }
}

#[test]
fn shipped_rule_files_parse_and_every_expression_is_valid_promql() {
    let plain = std::fs::read_to_string(root().join(SHIPPED[1].0)).unwrap();
    let file = rules_file(&plain);
    let groups: Vec<&str> = file.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups, ["snapward-openbao-local", "snapward-openbao-prod"]);
    let bad: Vec<String> = file
        .groups
        .iter()
        .flat_map(|g| check_group(SHIPPED[1].0, g))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));

    let text = std::fs::read_to_string(root().join(SHIPPED[0].0)).unwrap();
    let pr = prometheus_rule(&text);
    assert_eq!(pr.api_version, "monitoring.coreos.com/v1");
    assert_eq!(pr.kind, "PrometheusRule");
    assert_eq!(pr.metadata.name, "snapward-openbao-prod");
    assert_eq!(pr.metadata.namespace.as_deref(), Some("openbao"));
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    check_prometheus_rule(&v).unwrap();
}

fn rule<'a>(g: &'a Group, alert: &str) -> &'a Rule {
    g.rules
        .iter()
        .find(|r| r.alert == alert)
        .unwrap_or_else(|| panic!("no alert {alert} in {}", g.name))
}

#[test]
fn each_policy_gets_the_alerts_its_features_need() {
    let file = rules_file(&std::fs::read_to_string(root().join(SHIPPED[1].0)).unwrap());
    let alerts = |g: &Group| g.rules.iter().map(|r| r.alert.clone()).collect::<Vec<_>>();
    let (local, prod) = (&file.groups[0], &file.groups[1]);
    // prod: targets, a restore test and a key store.
    assert_eq!(
        alerts(prod),
        [
            "SnapwardNoRecentSuccess",
            "SnapwardMetricsAbsent",
            "SnapwardGuardRefused",
            "SnapwardTargetFailed",
            "SnapwardRestoreTestFailed",
            "SnapwardRestoreTestOverdue",
            "SnapwardSnapshotNotAuthentic"
        ]
    );
    assert!(!alerts(local).contains(&"SnapwardRestoreTestFailed".to_string()));
    // Twice the longest gap: nightly ⇒ 48h, hourly ⇒ 2h.
    let stale = rule(prod, "SnapwardNoRecentSuccess");
    assert!(stale.expr.ends_with("> 172800"), "{}", stale.expr);
    assert_eq!(rule(prod, "SnapwardMetricsAbsent").for_, "48h");
    assert!(
        rule(local, "SnapwardNoRecentSuccess")
            .expr
            .ends_with("> 7200")
    );
    assert_eq!(rule(local, "SnapwardMetricsAbsent").for_, "2h");
    // prod rehearses weekly (restoreTest.every 7d): overdue after 14 days.
    assert!(
        rule(prod, "SnapwardRestoreTestOverdue")
            .expr
            .ends_with("> 1209600")
    );
    assert_eq!(
        rule(prod, "SnapwardTargetFailed").expr,
        "max by (policy, target) (snapward_target_result{policy=\"openbao-prod\",result=\"failed\"}) == 1"
    );
    assert_eq!(
        rule(prod, "SnapwardMetricsAbsent").expr,
        "absent(snapward_last_success_timestamp_seconds{policy=\"openbao-prod\"})"
    );
}

/// The checks above catch what they are for.
#[test]
fn the_checks_reject_a_wrong_metric_a_wrong_label_and_bad_promql() {
    let text = generate(&[
        "alert-rules",
        "--format",
        "rules",
        "-f",
        "policies/production-3-node.yaml",
    ]);
    for (from, to, want) in [
        (
            "snapward_guard_refused{",
            "snapward_guard_refusd{",
            "exports no metric snapward_guard_refusd",
        ),
        (
            "result=\"failed\"",
            "result=\"broken\"",
            "never has result=\"broken\"",
        ),
        ("by (policy, target)", "by (policy, tgt)", "groups by tgt"),
        ("== 1", "== == 1", "does not parse"),
    ] {
        assert!(text.contains(from), "{from} not in the output:\n{text}");
        let file = rules_file(&text.replacen(from, to, 1));
        let bad: Vec<String> = file
            .groups
            .iter()
            .flat_map(|g| check_group("t", g))
            .collect();
        assert!(
            bad.iter().any(|b| b.contains(want)),
            "{from} → {to}: {bad:?}"
        );
    }
}

#[test]
fn a_weekday_schedule_counts_its_weekend_gap_and_options_apply() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {name: weekdays}\nspec:\n  schedule: \"0 2 * * 1-5\"\n  cluster: {nodes: [{address: \"http://127.0.0.1:1\"}]}\n  local: {path: /tmp/x, retention: {keepLast: 2, keepWithin: 7d}}\n",
    )
    .unwrap();
    let text = generate(&[
        "alert-rules",
        "-f",
        policy.to_str().unwrap(),
        "--namespace",
        "monitoring",
        "--runbook-base",
        "https://git.example.com/snapward/README.md",
    ]);
    let pr = prometheus_rule(&text);
    assert_eq!(pr.metadata.namespace.as_deref(), Some("monitoring"));
    let g = &pr.spec.groups[0];
    // Friday 02:00 → Monday 02:00 is 72h: twice that.
    assert!(
        rule(g, "SnapwardNoRecentSuccess")
            .expr
            .ends_with("> 518400")
    );
    assert_eq!(rule(g, "SnapwardMetricsAbsent").for_, "144h");
    assert_eq!(
        rule(g, "SnapwardGuardRefused").annotations["runbook_url"],
        "https://git.example.com/snapward/README.md#snapwardguardrefused"
    );
    let v: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    check_prometheus_rule(&v).unwrap();
}

#[test]
fn a_policy_without_a_schedule_is_a_clear_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {name: nosched}\nspec:\n  cluster: {nodes: [{address: \"http://127.0.0.1:1\"}]}\n  local: {path: /tmp/x, retention: {keepLast: 2}}\n",
    )
    .unwrap();
    let o = snapward()
        .args(["alert-rules", "-f"])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("policy `nosched` has no spec.schedule")
            && err.contains("Add the CronJob's schedule"),
        "{err}"
    );
    // A missing file: exit 2 naming it; an invalid policy: exit 1.
    let o = snapward()
        .args(["alert-rules", "-f", "no/such/policy.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no/such/policy.yaml"));
    let o = snapward()
        .args([
            "alert-rules",
            "-f",
            "fixtures/policies/invalid/duplicate-target.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn every_example_policy_gets_valid_rules() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap_or(Path::new(f));
        let text = generate(&[
            "alert-rules",
            "--format",
            "rules",
            "-f",
            rel.to_str().unwrap(),
        ]);
        let file = rules_file(&text);
        let bad: Vec<String> = file
            .groups
            .iter()
            .flat_map(|g| check_group(&rel.display().to_string(), g))
            .collect();
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

// ---------------------------------------------------------------------------
// promtool: the rules evaluated on synthetic series

fn promtool() -> std::path::PathBuf {
    let p = std::env::var_os("SNAPWARD_TEST_PROMTOOL")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "SNAPWARD_TEST_PROMTOOL is not set: run `eval \"$(scripts/test-env.sh)\"` \
                 (it unpacks promtool from Debian's prometheus package)"
            )
        });
    std::path::PathBuf::from(p)
}

fn run_promtool(args: &[&std::ffi::OsStr]) -> String {
    let o = std::process::Command::new(promtool())
        .args(args)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "promtool {args:?}:\n{out}");
    out
}

/// Prometheus' `humanizeDuration` for whole seconds ≥ 1 minute.
fn humanize(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else {
        format!("{h}h {m}m {s}s")
    }
}

/// One expected alert: the rule's labels and annotations, expanded.
fn expected(g: &Group, alert: &str, value: Option<u64>, target: Option<&str>) -> Value {
    let r = rule(g, alert);
    let expand = |s: &str| {
        let mut s = s.to_string();
        if let Some(v) = value {
            s = s.replace("{{ $value | humanizeDuration }}", &humanize(v));
        }
        if let Some(t) = target {
            s = s.replace("{{ $labels.target }}", t);
        }
        assert!(!s.contains("{{"), "unexpanded template in {s}");
        s
    };
    let mut labels = serde_json::Map::new();
    for (k, v) in &r.labels {
        labels.insert(k.clone(), Value::from(v.clone()));
    }
    if let Some(t) = target {
        labels.insert("target".into(), Value::from(t));
    }
    let annotations: serde_json::Map<String, Value> = r
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(expand(v))))
        .collect();
    serde_json::json!({"exp_labels": labels, "exp_annotations": annotations})
}

use serde_json::Value;

#[test]
fn promtool_checks_the_shipped_rules_and_evaluates_them_on_synthetic_series() {
    let dir = tempfile::tempdir().unwrap();
    let plain = root().join(SHIPPED[1].0);
    let out = run_promtool(&["check".as_ref(), "rules".as_ref(), plain.as_os_str()]);
    assert!(out.contains("SUCCESS"), "{out}");
    // The PrometheusRule's spec is a rules file (JSON is YAML).
    let pr: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root().join(SHIPPED[0].0)).unwrap())
            .unwrap();
    let spec = dir.path().join("spec.rules.json");
    std::fs::write(&spec, serde_json::to_string(&pr["spec"]).unwrap()).unwrap();
    run_promtool(&["check".as_ref(), "rules".as_ref(), spec.as_os_str()]);

    let file = rules_file(&std::fs::read_to_string(&plain).unwrap());
    let prod = file
        .groups
        .iter()
        .find(|g| g.name == "snapward-openbao-prod")
        .unwrap();
    let local = file
        .groups
        .iter()
        .find(|g| g.name == "snapward-openbao-local")
        .unwrap();
    let series = |s: &str, v: &str| serde_json::json!({"series": s, "values": v});
    let p = "policy=\"openbao-prod\",job=\"snapward\"";
    // 50 hours of samples, one a minute. Broken: the last success at t=0,
    // a refused run, r2 failing, a failed restore test, keys that do not
    // authenticate; openbao-local never pushed anything.
    let broken = vec![
        series(
            &format!("snapward_last_success_timestamp_seconds{{{p}}}"),
            "0x3000",
        ),
        series(&format!("snapward_guard_refused{{{p}}}"), "1x3000"),
        series(
            &format!("snapward_target_result{{{p},target=\"r2\",result=\"failed\"}}"),
            "1x3000",
        ),
        series(
            &format!("snapward_target_result{{{p},target=\"r2\",result=\"succeeded\"}}"),
            "0x3000",
        ),
        series(
            &format!("snapward_target_result{{{p},target=\"nfs\",result=\"failed\"}}"),
            "0x3000",
        ),
        series(&format!("snapward_restore_test_result{{{p}}}"), "0x3000"),
        series(
            &format!("snapward_restore_test_last_success_timestamp_seconds{{{p}}}"),
            "0x3000",
        ),
        series(&format!("snapward_snapshot_authentic{{{p}}}"), "0x3000"),
    ];
    // Healthy: each run succeeds (the last success follows the clock), for
    // both policies.
    let healthy = vec![
        series(
            &format!("snapward_last_success_timestamp_seconds{{{p}}}"),
            "0+60x3000",
        ),
        series(
            "snapward_last_success_timestamp_seconds{policy=\"openbao-local\",job=\"snapward\"}",
            "0+60x3000",
        ),
        series(&format!("snapward_guard_refused{{{p}}}"), "0x3000"),
        series(
            &format!("snapward_target_result{{{p},target=\"r2\",result=\"failed\"}}"),
            "0x3000",
        ),
        series(&format!("snapward_restore_test_result{{{p}}}"), "1x3000"),
        series(
            &format!("snapward_restore_test_last_success_timestamp_seconds{{{p}}}"),
            "0+60x3000",
        ),
        series(&format!("snapward_snapshot_authentic{{{p}}}"), "1x3000"),
    ];
    let at = 48 * 3600 + 600; // 48h10m
    let check = |eval: &str, alert: &str, exp: Vec<Value>| serde_json::json!({"eval_time": eval, "alertname": alert, "exp_alerts": exp});
    let broken_checks = vec![
        // 47h: within the 48h window.
        check("47h", "SnapwardNoRecentSuccess", vec![]),
        check(
            "48h10m",
            "SnapwardNoRecentSuccess",
            vec![expected(prod, "SnapwardNoRecentSuccess", Some(at), None)],
        ),
        check(
            "48h10m",
            "SnapwardGuardRefused",
            vec![expected(prod, "SnapwardGuardRefused", None, None)],
        ),
        check(
            "48h10m",
            "SnapwardTargetFailed",
            vec![expected(prod, "SnapwardTargetFailed", None, Some("r2"))],
        ),
        check(
            "48h10m",
            "SnapwardRestoreTestFailed",
            vec![expected(prod, "SnapwardRestoreTestFailed", None, None)],
        ),
        // 14 days (restoreTest.every 7d): not overdue after two days.
        check("48h10m", "SnapwardRestoreTestOverdue", vec![]),
        check(
            "48h10m",
            "SnapwardSnapshotNotAuthentic",
            vec![expected(prod, "SnapwardSnapshotNotAuthentic", None, None)],
        ),
        // openbao-local pushed nothing: absent for more than its 2h.
        check("1h", "SnapwardMetricsAbsent", vec![]),
        check(
            "2h10m",
            "SnapwardMetricsAbsent",
            vec![expected(local, "SnapwardMetricsAbsent", None, None)],
        ),
    ];
    let healthy_checks: Vec<Value> = prod
        .rules
        .iter()
        .map(|r| check("48h10m", &r.alert, vec![]))
        .collect();
    let tests = serde_json::json!({
        "rule_files": [plain],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": broken, "alert_rule_test": broken_checks},
            {"interval": "1m", "input_series": healthy, "alert_rule_test": healthy_checks},
        ]
    });
    let t = dir.path().join("tests.json");
    std::fs::write(&t, serde_json::to_string_pretty(&tests).unwrap()).unwrap();
    let out = run_promtool(&["test".as_ref(), "rules".as_ref(), t.as_os_str()]);
    assert!(out.contains("SUCCESS"), "{out}");
}
