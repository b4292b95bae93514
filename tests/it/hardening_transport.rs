//! Issue 18, item 3: plain http to a node that is not loopback, and the
//! Kubernetes login's token audience, as `lint` sees them. (The run-time
//! refusal to send keys or tokens over such a node — listed or discovered —
//! is tested at the client layer with a listener that records what it
//! received: `src/backends/openbao/client.rs`,
//! `secrets_are_not_sent_over_plain_http_to_a_remote_node`.)

use rstest::rstest;
use snapward::diag::Severity;
use snapward::policy;

use crate::support::cmd::snapward;

fn policy_with(cluster: &str) -> String {
    format!(
        "apiVersion: snapward.dev/v1alpha1\n\
         kind: SnapshotPolicy\n\
         metadata: {{name: p}}\n\
         spec:\n\
         \x20 cluster:\n{cluster}\
         \x20 local: {{path: /snap, retention: {{keepLast: 3}}}}\n"
    )
}

/// (code, severity, JSON pointer) of every finding.
fn findings(text: &str) -> Vec<(String, Severity, String)> {
    let r = policy::lint_text("p.yaml", text, true);
    let lines: Vec<&str> = text.lines().collect();
    r.diagnostics
        .iter()
        .map(|d| {
            (
                d.code.as_str().to_string(),
                d.severity,
                lines.get(d.line - 1).unwrap_or(&"").trim().to_string(),
            )
        })
        .collect()
}

const LISTED: &str = "    nodes: [{address: \"http://openbao-0.openbao:8200\"}]\n";
const DISCOVERED: &str =
    "    discovery: {kubernetes: {namespace: o, labelSelector: a=b, scheme: http}}\n";
const ALLOW: &str = "    allowInsecureHttp: true\n";

#[rstest]
#[case::listed(LISTED, "nodes: [{address: \"http://openbao-0.openbao:8200\"}]")]
#[case::discovered(
    DISCOVERED,
    "discovery: {kubernetes: {namespace: o, labelSelector: a=b, scheme: http}}"
)]
fn plain_http_to_a_remote_node_is_an_error_unless_allowed(#[case] nodes: &str, #[case] line: &str) {
    let strict = findings(&policy_with(nodes));
    assert_eq!(
        strict,
        vec![(
            "policy::insecure-http".to_string(),
            Severity::Error,
            line.to_string()
        )]
    );
    let allowed = findings(&policy_with(&format!("{nodes}{ALLOW}")));
    assert_eq!(
        allowed,
        vec![(
            "policy::insecure-http".to_string(),
            Severity::Warning,
            line.to_string()
        )]
    );
}

#[rstest]
#[case::ipv4("http://127.0.0.1:8200")]
#[case::ipv4_range("http://127.0.0.53:8200")]
#[case::ipv6("http://[::1]:8200")]
#[case::name("http://localhost:8200")]
#[case::https("https://openbao-0.openbao:8200")]
fn loopback_or_https_is_clean(#[case] address: &str) {
    let text = policy_with(&format!("    nodes: [{{address: \"{address}\"}}]\n"));
    assert_eq!(findings(&text), vec![]);
}

/// The error fails `snapward lint` (exit 1) and says how to fix it.
#[test]
fn lint_exits_invalid_and_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, policy_with(LISTED)).unwrap();
    let out = snapward().arg("lint").arg(&p).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("policy::insecure-http"), "{all}");
    assert!(
        all.contains("spec.cluster.allowInsecureHttp: true"),
        "{all}"
    );
}

const K8S_AUTH: &str = "    nodes: [{address: \"https://openbao-0.openbao:8200\"}]\n";

#[test]
fn an_audience_needs_a_projected_token_file() {
    let default_token = policy_with(&format!(
        "{K8S_AUTH}    auth: {{kubernetes: {{role: snapward, audience: openbao}}}}\n"
    ));
    assert_eq!(
        findings(&default_token),
        vec![(
            "policy::invalid-value".to_string(),
            Severity::Error,
            "auth: {kubernetes: {role: snapward, audience: openbao}}".to_string()
        )]
    );
    let r = policy::lint_text("p.yaml", &default_token, true);
    assert!(
        r.diagnostics[0]
            .message
            .contains("whose audience is the API server"),
        "{}",
        r.diagnostics[0].message
    );
    let projected = policy_with(&format!(
        "{K8S_AUTH}    auth: {{kubernetes: {{role: snapward, audience: openbao, jwtFile: /var/run/secrets/openbao/token}}}}\n"
    ));
    assert_eq!(findings(&projected), vec![]);
}
