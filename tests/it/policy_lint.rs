//! Policy lint: every example lints clean, every invalid fixture produces
//! its pinned diagnostics, the committed schema is fresh.

use std::path::Path;

use snapward::commands::lint::{lint_file, render_human};
use snapward::diag::Severity;
use snapward::policy;

use crate::support::root;

#[test]
fn every_example_policy_lints_clean() {
    let files = policy::yaml_files(&root().join("policies")).unwrap();
    assert!(files.len() >= 2, "expected at least two examples");
    for f in files {
        let r = lint_file(&f, true).unwrap();
        assert!(
            r.diagnostics.is_empty(),
            "{}:\n{}",
            f.display(),
            render_human(&r.diagnostics)
        );
        assert_eq!(r.policies.len(), 1, "{}", f.display());
    }
}

#[test]
fn examples_start_with_the_schema_modeline() {
    for f in policy::yaml_files(&root().join("policies")).unwrap() {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with(
                "# yaml-language-server: $schema=../schemas/snapshot-policy.schema.json"
            ),
            "{}",
            f.display()
        );
    }
}

#[test]
fn committed_schema_is_fresh() {
    let committed =
        std::fs::read_to_string(root().join("schemas/snapshot-policy.schema.json")).unwrap();
    let generated = policy::schema::generate_pretty();
    assert!(
        committed == generated,
        "schemas/snapshot-policy.schema.json is stale: run `cargo run -q -- schema > schemas/snapshot-policy.schema.json`"
    );
}

/// Relative path so snapshots do not depend on the checkout location.
fn lint_fixture(name: &str) -> (String, Vec<(String, Severity)>) {
    let rel = Path::new("fixtures/policies/invalid").join(name);
    let text = std::fs::read_to_string(root().join(&rel)).unwrap();
    let r = policy::lint_text(&rel.display().to_string(), &text, true);
    let codes = r
        .diagnostics
        .iter()
        .map(|d| (d.code.as_str().to_string(), d.severity))
        .collect();
    (render_human(&r.diagnostics), codes)
}

macro_rules! invalid_fixture {
    ($test:ident, $file:literal, [$($code:literal),+ $(,)?]) => {
        #[test]
        fn $test() {
            let (rendered, codes) = lint_fixture($file);
            let got: Vec<&str> = codes.iter().map(|(c, _)| c.as_str()).collect();
            let mut want = vec![$($code),+];
            want.sort();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            assert_eq!(got_sorted, want, "{rendered}");
            insta::assert_snapshot!(rendered);
        }
    };
}

invalid_fixture!(
    duplicate_target,
    "duplicate-target.yaml",
    ["policy::duplicate-target"]
);
invalid_fixture!(
    unknown_source,
    "unknown-source.yaml",
    ["policy::unknown-source"]
);
invalid_fixture!(
    retention_keeps_nothing,
    "retention-keeps-nothing.yaml",
    ["policy::retention-keeps-nothing"]
);
invalid_fixture!(
    keep_within_shorter_than_schedule,
    "keep-within-shorter-than-schedule.yaml",
    ["policy::keep-within-shorter-than-schedule"]
);
invalid_fixture!(
    restore_auto_without_keys,
    "restore-auto-without-keys.yaml",
    ["policy::restore-auto-without-keys"]
);
invalid_fixture!(
    restart_pod_needs_discovery,
    "restart-pod-needs-discovery.yaml",
    ["policy::restart-pod-needs-discovery"]
);
invalid_fixture!(
    init_threshold,
    "init-threshold.yaml",
    ["policy::init-threshold"]
);
invalid_fixture!(
    endpoint_not_url,
    "endpoint-not-url.yaml",
    ["policy::endpoint-not-url"]
);
invalid_fixture!(
    insecure_http_and_prefix,
    "insecure-http-and-prefix.yaml",
    [
        "policy::insecure-http",
        "policy::insecure-http",
        "policy::prefix-without-slash"
    ]
);
invalid_fixture!(
    same_bucket_prefix,
    "same-bucket-prefix.yaml",
    ["policy::same-bucket-prefix"]
);
invalid_fixture!(
    file_mode_unreadable,
    "file-mode-unreadable.yaml",
    ["policy::file-mode-unreadable"]
);
invalid_fixture!(
    schema_errors,
    "schema-errors.yaml",
    [
        "policy::wrong-type",
        "policy::unknown-field",
        "policy::missing-field",
        "policy::unknown-field"
    ]
);
invalid_fixture!(yaml_syntax, "yaml-syntax.yaml", ["policy::yaml-syntax"]);
invalid_fixture!(guard_always, "guard-always.yaml", ["policy::guard-always"]);
invalid_fixture!(
    configmap_embedded,
    "configmap.yaml",
    ["policy::unknown-source"]
);
invalid_fixture!(target_kind, "target-kind.yaml", ["policy::target-kind"]);
invalid_fixture!(
    unauthenticated_retention,
    "unauthenticated-retention.yaml",
    ["policy::unauthenticated-retention"]
);

#[test]
fn warnings_only_policy_is_still_valid() {
    let (_, codes) = lint_fixture("file-mode-unreadable.yaml");
    assert!(codes.iter().all(|(_, s)| *s == Severity::Warning));
    let text =
        std::fs::read_to_string(root().join("fixtures/policies/invalid/file-mode-unreadable.yaml"))
            .unwrap();
    assert_eq!(policy::lint_text("x.yaml", &text, true).policies.len(), 1);
}

#[test]
fn configmap_spans_point_into_the_configmap_file() {
    let text =
        std::fs::read_to_string(root().join("fixtures/policies/invalid/configmap.yaml")).unwrap();
    let r = policy::lint_text("configmap.yaml", &text, true);
    let d = &r.diagnostics[0];
    let line = text.lines().nth(d.line - 1).unwrap();
    assert!(
        line.contains("sources: [local, fss]"),
        "line {}: {line}",
        d.line
    );
    let col_text: String = line.chars().skip(d.column - 1).take(3).collect();
    assert_eq!(col_text, "fss");
}

#[test]
fn every_problem_of_a_file_is_reported_in_one_run() {
    let (_, codes) = lint_fixture("schema-errors.yaml");
    assert!(codes.len() >= 4, "{codes:?}");
}

#[test]
fn a_non_policy_file_is_an_error_when_named() {
    let r = policy::lint_text("other.yaml", "apiVersion: v1\nkind: Service\n", true);
    assert_eq!(r.diagnostics[0].code.as_str(), "policy::not-a-policy");
    let r = policy::lint_text("other.yaml", "apiVersion: v1\nkind: Service\n", false);
    assert!(r.diagnostics.is_empty());
}

/// A password written into a URL is masked byte for byte wherever lint
/// quotes the policy (source lines, messages): the lengths — and so every
/// span, line and column — stay as they were; nothing else changes.
#[test]
fn lint_never_quotes_a_password_written_into_a_url() {
    use policy::mask_url_passwords;
    for (text, masked) in [
        (
            "endpoint: http://minio:hunter2@127.0.0.1:9000/x",
            "endpoint: http://minio:*******@127.0.0.1:9000/x",
        ),
        (
            "p: \"https://push:s3cr€t@push.example:9091\"\nq: x",
            "p: \"https://push:********@push.example:9091\"\nq: x",
        ),
        (
            "a: http://user@host:80 b: https://host:443/p@x",
            "a: http://user@host:80 b: https://host:443/p@x",
        ),
        ("u: s3://a:b:c@h", "u: s3://a:***@h"),
        (
            "{e: 'http://a:p,w'd@h', x: y}",
            "{e: 'http://a:*****@h', x: y}",
        ),
        ("no urls here: a:b@c", "no urls here: a:b@c"),
        ("cut: http://a:", "cut: http://a:"),
    ] {
        assert_eq!(mask_url_passwords(text), masked, "{text}");
        assert_eq!(mask_url_passwords(text).len(), text.len());
    }
    let text = std::fs::read_to_string(root().join("policies/local-ci.yaml"))
        .expect("example policy")
        .replacen(
            "spec:\n",
            "spec:\n  metrics:\n    pushgateway: https://push:hunter2@push.example:9091\n",
            1,
        );
    let report = policy::lint_text("p.yaml", &text, true);
    assert!(
        report
            .diagnostics
            .iter()
            .any(|d| d.code.as_str().ends_with("credentials-in-url")),
        "{:?}",
        report
            .diagnostics
            .iter()
            .map(|d| &d.message)
            .collect::<Vec<_>>()
    );
    let shown = render_human(&report.diagnostics);
    assert!(
        shown.contains("pushgateway: https://push:*******@push.example"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}
