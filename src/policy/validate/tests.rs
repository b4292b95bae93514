//! What validation makes of a policy: snippet → typed value (or the
//! finding that keeps it from existing).

use std::path::PathBuf;
use std::time::Duration;

use jiff::SignedDuration;
use rstest::rstest;
use serde_json::{Value, json};

use super::parse::{self, check_url, parse_timeout, schedule_interval};
use super::validate;
use crate::diag::{Code, Finding};
use crate::policy::model;
use crate::policy::valid::{
    AuthSettings, KeyLocation, ListedNode, Nodes, S3Settings, S3Timeouts, TargetKind, ValidPolicy,
};
use crate::policy::{StoreId, lint_text};

/// A valid policy with `patch` merged in (objects merge key by key;
/// `null` removes a key; anything else replaces).
fn doc(patch: Value) -> Value {
    let mut base = json!({
        "apiVersion": "snapward.dev/v1alpha1",
        "kind": "SnapshotPolicy",
        "metadata": {"name": "t"},
        "spec": {
            "cluster": {"nodes": [{"address": "https://a.example:8200"}]},
            "local": {"path": "/snapshots", "retention": {"keepLast": 3}},
        }
    });
    merge(&mut base, patch);
    base
}

fn merge(base: &mut Value, patch: Value) {
    if patch.is_object() && !base.is_object() {
        *base = json!({});
    }
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p,
    }
}

fn valid(patch: Value) -> ValidPolicy {
    let (v, findings) = validate(&doc(patch));
    v.unwrap_or_else(|| panic!("expected a valid policy: {findings:#?}"))
}

/// The error findings of an invalid policy, as (code, path).
fn errors(patch: Value) -> Vec<(Code, String)> {
    let (v, findings) = validate(&doc(patch));
    assert!(v.is_none(), "expected an invalid policy");
    findings
        .into_iter()
        .filter(|f: &Finding| f.severity == crate::diag::Severity::Error)
        .map(|f| (f.code, f.path))
        .collect()
}

fn s3_target(name: &str, s3: Value) -> Value {
    let mut s3_base =
        json!({"endpoint": "https://s3.example", "bucket": "snaps", "prefix": format!("{name}/")});
    merge(&mut s3_base, s3);
    json!({"name": name, "retention": {"keepLast": 3}, "s3": s3_base})
}

fn s3_timeouts(p: &ValidPolicy, i: usize) -> S3Timeouts {
    match &p.targets[i].kind {
        TargetKind::S3(s3) => s3.timeouts,
        other => panic!("target {i} is not S3: {other:?}"),
    }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---- durations and timeouts ----------------------------------------------

#[rstest]
#[case::defaults(json!(null), [secs(5), secs(30), secs(60)])]
#[case::connect_only(json!({"connect": "2s"}), [secs(2), secs(30), secs(60)])]
#[case::compound(json!({"request": "1m30s"}), [secs(5), secs(90), secs(60)])]
#[case::blanks_around(json!({"streamIdle": " 2h "}), [secs(5), secs(30), secs(7200)])]
#[case::all(json!({"connect": "1s", "request": "2m", "streamIdle": "3m"}), [secs(1), secs(120), secs(180)])]
fn cluster_timeouts(#[case] timeouts: Value, #[case] want: [Duration; 3]) {
    let p = valid(json!({"spec": {"cluster": {"timeouts": timeouts}}}));
    let t = p.cluster.timeouts;
    assert_eq!([t.connect, t.request, t.stream_idle], want);
}

#[rstest]
#[case::defaults(json!({}), secs(120), secs(120))]
#[case::apply(json!({"applyTimeout": "3m"}), secs(180), secs(120))]
#[case::join(json!({"joinTimeout": "300s"}), secs(120), secs(300))]
fn restore_timeouts(#[case] restore: Value, #[case] apply: Duration, #[case] join: Duration) {
    let p = valid(json!({"spec": {"restore": restore}}));
    assert_eq!(
        (p.restore.apply_timeout, p.restore.join_timeout),
        (apply, join)
    );
}

/// No `timeouts`, or one without a field: the model's defaults (10s, 5m).
#[rstest]
#[case::absent(json!({}), secs(10), secs(300))]
#[case::empty(json!({"timeouts": {}}), secs(10), secs(300))]
#[case::connect_only(json!({"timeouts": {"connect": "3s"}}), secs(3), secs(300))]
#[case::request_only(json!({"timeouts": {"request": "2m"}}), secs(10), secs(120))]
#[case::both(json!({"timeouts": {"connect": "1s", "request": "10m"}}), secs(1), secs(600))]
fn s3_target_timeouts(#[case] s3: Value, #[case] connect: Duration, #[case] request: Duration) {
    let p = valid(json!({"spec": {"targets": [s3_target("r2", s3)]}}));
    assert_eq!(s3_timeouts(&p, 0), S3Timeouts { connect, request });
}

#[rstest]
#[case::cluster_word(json!({"spec": {"cluster": {"timeouts": {"connect": "soon"}}}}), "/spec/cluster/timeouts/connect")]
#[case::cluster_zero(json!({"spec": {"cluster": {"timeouts": {"streamIdle": "0s"}}}}), "/spec/cluster/timeouts/streamIdle")]
#[case::restore_negative(json!({"spec": {"restore": {"applyTimeout": "-1s"}}}), "/spec/restore/applyTimeout")]
#[case::restore_empty(json!({"spec": {"restore": {"joinTimeout": ""}}}), "/spec/restore/joinTimeout")]
#[case::s3_zero(json!({"spec": {"targets": [s3_target("r2", json!({"timeouts": {"connect": "0m"}}))]}}), "/spec/targets/0/s3/timeouts/connect")]
#[case::s3_word(json!({"spec": {"targets": [s3_target("r2", json!({"timeouts": {"request": "soon"}}))]}}), "/spec/targets/0/s3/timeouts/request")]
#[case::max_restore_age(json!({"spec": {"guards": {"maxRestoreAge": "7x"}}}), "/spec/guards/maxRestoreAge")]
#[case::keep_within(json!({"spec": {"local": {"retention": {"keepWithin": "3q"}}}}), "/spec/local/retention/keepWithin")]
fn a_bad_duration_is_one_error_on_its_path(#[case] patch: Value, #[case] path: &str) {
    assert_eq!(errors(patch), vec![(Code::BadDuration, path.to_string())]);
}

#[rstest]
#[case::none(json!(null), None)]
#[case::days(json!("7d"), Some(SignedDuration::from_hours(7 * 24)))]
#[case::hours(json!("36h"), Some(SignedDuration::from_hours(36)))]
fn max_restore_age(#[case] age: Value, #[case] want: Option<SignedDuration>) {
    let p = valid(json!({"spec": {"guards": {"maxRestoreAge": age}}}));
    assert_eq!(p.guards.max_restore_age, want);
    assert!(p.guards.keep_unmirrored_local, "default on");
}

#[rstest]
#[case::none(json!(null), None)]
#[case::hourly(json!("0 * * * *"), Some(secs(3600)))]
#[case::daily(json!("30 2 * * *"), Some(secs(86_400)))]
#[case::quarter_hour(json!("*/15 * * * *"), Some(secs(900)))]
#[case::weekly(json!("0 3 * * 1"), Some(secs(7 * 86_400)))]
fn schedule_interval_of_the_policy(#[case] schedule: Value, #[case] want: Option<Duration>) {
    let p = valid(json!({"spec": {"schedule": schedule}}));
    assert_eq!(p.schedule_interval, want);
}

// ---- the local store --------------------------------------------------------

#[rstest]
#[case::default(json!(null), 0o640)]
#[case::quoted_octal(json!("0600"), 0o600)]
#[case::three_digits(json!("644"), 0o644)]
#[case::group_exec(json!("0750"), 0o750)]
// Four digits parse; setuid/setgid/sticky are refused (tests/it/hardening_local.rs).
#[case::four_digits(json!("0775"), 0o775)]
fn local_file_mode(#[case] mode: Value, #[case] want: u32) {
    let p = valid(json!({"spec": {"local": {"fileMode": mode}}}));
    assert_eq!(p.local.file_mode, want);
}

#[test]
fn local_settings_carry_dir_prefix_and_rules() {
    let p = valid(
        json!({"spec": {"local": {"prefix": "vault-", "retention": {"keepDaily": 7, "keepWithin": "2d"}}}}),
    );
    assert_eq!(p.local.dir, PathBuf::from("/snapshots"));
    assert_eq!(p.local.prefix, "vault-");
    assert_eq!(p.local.rules.keep_daily, Some(7));
    assert_eq!(
        p.local.rules.keep_within,
        Some(SignedDuration::from_hours(48))
    );
    let p = valid(json!({}));
    assert_eq!(p.local.prefix, "openbao-", "the default prefix");
}

// ---- targets and restore sources ---------------------------------------------

#[test]
fn targets_keep_their_order_kind_and_rules() {
    let p = valid(json!({"spec": {"targets": [
        s3_target("r2", json!({"region": "auto", "pathStyle": true})),
        {"name": "nfs", "optional": true, "retention": {"keepWithin": "3d"}, "filesystem": {"path": "/mnt/nfs"}},
    ]}}));
    let names: Vec<&str> = p.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["r2", "nfs"]);
    let TargetKind::S3(s3) = &p.targets[0].kind else {
        panic!("r2 is S3")
    };
    assert_eq!(
        (s3.region.as_str(), s3.path_style, s3.bucket.as_str()),
        ("auto", true, "snaps")
    );
    assert_eq!(
        s3.endpoint.as_deref(),
        Some("https://s3.example"),
        "as written"
    );
    assert!(!p.targets[0].optional);
    assert_eq!(
        p.targets[1].kind,
        TargetKind::Filesystem(model::FilesystemTarget {
            path: "/mnt/nfs".into()
        })
    );
    assert!(p.targets[1].optional);
    assert_eq!(
        p.targets[1].rules.keep_within,
        Some(SignedDuration::from_hours(72))
    );
    assert_eq!(p.targets[1].id(), StoreId::Target("nfs".into()));
}

fn t(name: &str) -> StoreId {
    StoreId::Target(name.into())
}

#[rstest]
#[case::default_no_targets(&[], json!(null), vec![StoreId::Local])]
#[case::default_local_then_targets(&["a", "b"], json!(null), vec![StoreId::Local, t("a"), t("b")])]
#[case::explicit_order(&["a", "b"], json!(["b", "local"]), vec![t("b"), StoreId::Local])]
#[case::explicit_subset(&["a", "b"], json!(["a"]), vec![t("a")])]
fn restore_sources(#[case] targets: &[&str], #[case] sources: Value, #[case] want: Vec<StoreId>) {
    let targets: Vec<Value> = targets.iter().map(|n| s3_target(n, json!({}))).collect();
    let p = valid(json!({"spec": {"targets": targets, "restore": {"sources": sources}}}));
    assert_eq!(p.sources, want);
    let shown: Vec<String> = p.sources.iter().map(ToString::to_string).collect();
    let written: Vec<&str> = p.sources.iter().map(StoreId::as_str).collect();
    assert_eq!(shown, written, "Display is the policy's spelling");
}

// ---- cluster, keys ----------------------------------------------------------

#[test]
fn listed_nodes_are_named_and_parsed() {
    let p = valid(json!({"spec": {"cluster": {"nodes": [
        {"address": "https://a.example:8200"},
        {"name": "bao-b", "address": "https://b.example:8200/"},
    ]}}}));
    let Nodes::Listed(nodes) = &p.cluster.nodes else {
        panic!("listed")
    };
    let want = |name: &str, url: &str| ListedNode {
        name: name.into(),
        address: url::Url::parse(url).expect("url"),
    };
    assert_eq!(
        nodes,
        &[
            want("node-0", "https://a.example:8200"),
            want("bao-b", "https://b.example:8200/")
        ]
    );
    assert_eq!(p.cluster.auth, None);
}

#[test]
fn discovery_keeps_its_defaults() {
    let p = valid(json!({"spec": {"cluster": {
        "nodes": null,
        "discovery": {"kubernetes": {"namespace": "openbao", "labelSelector": "app=openbao"}},
        "auth": {"kubernetes": {"role": "snapward"}},
    }}}));
    let Nodes::Discovered(d) = &p.cluster.nodes else {
        panic!("discovered")
    };
    assert_eq!((d.port, d.scheme), (8200, model::Scheme::Https));
    assert_eq!(
        p.cluster.auth,
        Some(AuthSettings::Kubernetes {
            role: "snapward".into(),
            mount: "kubernetes".into(),
            jwt_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
        })
    );
}

#[test]
fn token_file_auth() {
    let p = valid(json!({"spec": {"cluster": {"auth": {"tokenFile": "/run/token"}}}}));
    assert_eq!(
        p.cluster.auth,
        Some(AuthSettings::TokenFile("/run/token".into()))
    );
}

#[test]
fn approle_and_jwt_auth_keep_their_defaults() {
    let p = valid(json!({"spec": {"cluster": {"auth": {"appRole": {
        "roleIdFile": "/run/approle/role-id", "secretIdFile": "/run/approle/secret-id"
    }}}}}));
    assert_eq!(
        p.cluster.auth,
        Some(AuthSettings::AppRole {
            mount: "approle".into(),
            role_id_file: "/run/approle/role-id".into(),
            secret_id_file: "/run/approle/secret-id".into(),
        })
    );
    let p = valid(json!({"spec": {"cluster": {"auth": {"jwt": {
        "role": "snapward", "jwtFile": "/var/run/secrets/openbao/token", "audience": "openbao"
    }}}}}));
    assert_eq!(
        p.cluster.auth,
        Some(AuthSettings::Jwt {
            mount: "jwt".into(),
            role: "snapward".into(),
            jwt_file: "/var/run/secrets/openbao/token".into(),
        })
    );
}

/// Exactly one auth method; the error names the ones that are set.
#[rstest]
#[case::two(json!({"tokenFile": "/t", "appRole": {"roleIdFile": "/r", "secretIdFile": "/s"}}), "tokenFile and appRole are set")]
#[case::jwt_and_kubernetes(json!({"kubernetes": {"role": "a"}, "jwt": {"role": "a", "jwtFile": "/j"}}), "kubernetes and jwt are set")]
#[case::none(json!({}), "none is set")]
fn exactly_one_auth_method(#[case] auth: Value, #[case] names: &str) {
    let (v, findings) = validate(&doc(json!({"spec": {"cluster": {"auth": auth}}})));
    assert!(v.is_none());
    assert!(
        findings.iter().any(|f| f.code == Code::AuthKind
            && f.path == "/spec/cluster/auth"
            && f.message.contains(names)),
        "{findings:#?}"
    );
}

#[rstest]
#[case::secret_names_it(Some("vault"), Some("policy-ns"), Some("vault"))]
#[case::policy_namespace(None, Some("policy-ns"), Some("policy-ns"))]
#[case::client_default(None, None, None)]
fn key_secret_namespace(
    #[case] secret_ns: Option<&str>,
    #[case] policy_ns: Option<&str>,
    #[case] want: Option<&str>,
) {
    let p = valid(json!({
        "metadata": {"namespace": policy_ns},
        "spec": {"unsealKeys": {"kubernetesSecret": {"name": "keys", "namespace": secret_ns}}},
    }));
    let keys = p.unseal_keys.expect("a key store");
    assert_eq!(
        keys.location,
        KeyLocation::KubernetesSecret {
            name: "keys".into(),
            namespace: want.map(str::to_owned)
        }
    );
    assert_eq!(
        (keys.key_prefix.as_str(), keys.root_token_key.as_str()),
        ("unseal-key-", "root-token")
    );
}

#[test]
fn key_files() {
    let p = valid(
        json!({"spec": {"unsealKeys": {"files": {"directory": "/keys"}, "keyPrefix": "k-"}}}),
    );
    let keys = p.unseal_keys.expect("a key store");
    assert_eq!(
        keys.location,
        KeyLocation::Files {
            directory: "/keys".into()
        }
    );
    assert_eq!(keys.key_prefix, "k-");
    assert!(valid(json!({})).unseal_keys.is_none());
}

// ---- the defaults and the parsers --------------------------------------------

/// Every default duration of the model parses: validation never reports
/// a default as a bad duration.
#[rstest]
#[case::cluster_connect(model::Timeouts::default().connect, secs(5))]
#[case::cluster_request(model::Timeouts::default().request, secs(30))]
#[case::cluster_stream_idle(model::Timeouts::default().stream_idle, secs(60))]
#[case::s3_connect(model::S3Timeouts::default().connect, secs(10))]
#[case::s3_request(model::S3Timeouts::default().request, secs(300))]
#[case::apply(model::Restore::default().apply_timeout, secs(120))]
#[case::join(model::Restore::default().join_timeout, secs(120))]
fn default_durations_parse(#[case] text: String, #[case] want: Duration) {
    assert_eq!(parse_timeout(&text), Ok(want));
}

#[test]
fn s3_settings_from_a_bare_target() {
    let cfg = model::S3Target {
        endpoint: Some("http://127.0.0.1:9000".into()),
        region: "us-east-1".into(),
        bucket: "snaps".into(),
        prefix: String::new(),
        path_style: true,
        credentials: None,
        server_side_encryption: None,
        object_lock: None,
        timeouts: None,
        stream: true,
    };
    let s = S3Settings::try_from(&cfg).expect("defaults parse");
    assert_eq!(
        s.timeouts,
        S3Timeouts {
            connect: secs(10),
            request: secs(300)
        }
    );
    let cfg = model::S3Target {
        timeouts: Some(model::S3Timeouts {
            connect: "3s".into(),
            request: "soon".into(),
        }),
        ..cfg
    };
    let e = S3Settings::try_from(&cfg).expect_err("a bad request timeout");
    assert_eq!(e.to_string(), "bad duration \"soon\"");
}

/// The typed errors print what the diagnostics have always said.
#[rstest]
#[case::word(parse_timeout("soon").map(|_| ()).map_err(|e| e.to_string()), "bad duration \"soon\"")]
#[case::zero(parse_timeout("0s").map(|_| ()).map_err(|e| e.to_string()), "bad duration \"0s\"")]
#[case::not_a_url(check_url("nope").map(|_| ()).map_err(|e| e.to_string()), "\"nope\" is not a URL: relative URL without a base")]
#[case::scheme(check_url("ftp://x.example").map(|_| ()).map_err(|e| e.to_string()), "\"ftp://x.example\" must use http:// or https://")]
#[case::empty_host(check_url("http://").map(|_| ()).map_err(|e| e.to_string()), "\"http://\" is not a URL: empty host")]
#[case::never(schedule_interval("0 0 31 2 *").map(|_| ()).map_err(|e| e.to_string()), "\"0 0 31 2 *\" never runs")]
#[case::cron(schedule_interval("nope").map(|_| ()).map_err(|e| e.to_string()), "Invalid pattern: Pattern must have between 5 and 7 fields.")]
#[case::file_mode(parse::file_mode("9").map(|_| ()).map_err(|e| e.to_string()), "\"9\" is not an octal file mode")]
fn error_texts(#[case] got: Result<(), String>, #[case] want: &str) {
    assert_eq!(got, Err(want.to_string()));
}

/// A policy file's typed values, end to end (YAML → lint → ValidPolicy).
#[test]
fn the_local_ci_example_is_fully_parsed() {
    let text = include_str!("../../../policies/local-ci.yaml");
    let r = lint_text("local-ci.yaml", text, true);
    let p = r.policies.first().expect("valid");
    assert_eq!(p.sources, vec![StoreId::Local, t("minio")]);
    assert_eq!(p.schedule_interval, Some(secs(3600)));
    assert_eq!(
        s3_timeouts(p, 0),
        S3Timeouts {
            connect: secs(10),
            request: secs(300)
        }
    );
    assert_eq!(p.local.file_mode, 0o640);
}

/// The parsed settings hold no secret: a ValidPolicy prints no password.
#[test]
fn debug_hides_the_pushgateway_password() {
    let p = valid(
        json!({"spec": {"metrics": {"pushgateway": "https://push:s3cr3t@push.example:9091"}}}),
    );
    let shown = format!("{p:?} {p:#?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

/// Issue 12 item 7: a client certificate needs its key and the key its
/// certificate (the files themselves are read at run time).
#[rstest]
#[case::cert_without_key(json!({"certFile": "/tls/client.pem"}), "/spec/cluster/tls/certFile")]
#[case::key_without_cert(json!({"keyFile": "/tls/client.key"}), "/spec/cluster/tls/keyFile")]
fn tls_client_identity_needs_cert_and_key(#[case] tls: Value, #[case] path: &str) {
    assert_eq!(
        errors(json!({"spec": {"cluster": {"tls": tls}}})),
        vec![(Code::InvalidValue, path.to_string())]
    );
}

#[test]
fn tls_client_identity_and_cert_auth() {
    let tls = json!({"caFile": "/tls/ca.pem", "certFile": "/tls/c.pem", "keyFile": "/tls/c.key"});
    let p = valid(json!({"spec": {"cluster": {"tls": tls.clone()}}}));
    assert_eq!(p.cluster.auth, None);
    let p = valid(json!({"spec": {"cluster": {"tls": tls.clone(), "auth": {"cert": {}}}}}));
    assert_eq!(
        p.cluster.auth,
        Some(AuthSettings::Cert {
            mount: "cert".into(),
            role: None
        })
    );
    let auth = json!({"cert": {"mount": "tls-certs", "role": "snapward"}});
    let p = valid(json!({"spec": {"cluster": {"tls": tls.clone(), "auth": auth}}}));
    assert_eq!(
        p.cluster.auth,
        Some(AuthSettings::Cert {
            mount: "tls-certs".into(),
            role: Some("snapward".into())
        })
    );
}

/// `auth.cert` logs in with the client certificate: without one, over
/// plain http, or next to another method it is an error.
#[rstest]
#[case::no_tls(json!({"auth": {"cert": {}}}), Code::InvalidValue, "/spec/cluster/auth/cert")]
#[case::no_key(
    json!({"tls": {"certFile": "/c.pem"}, "auth": {"cert": {}}}),
    Code::InvalidValue,
    "/spec/cluster/tls/certFile"
)]
#[case::plain_http(
    json!({"nodes": [{"address": "http://127.0.0.1:8200"}], "tls": {"certFile": "/c.pem", "keyFile": "/c.key"}, "auth": {"cert": {}}}),
    Code::InvalidValue,
    "/spec/cluster/auth/cert"
)]
#[case::two_methods(
    json!({"tls": {"certFile": "/c.pem", "keyFile": "/c.key"}, "auth": {"cert": {}, "tokenFile": "/t"}}),
    Code::AuthKind,
    "/spec/cluster/auth"
)]
fn cert_auth_needs_a_client_certificate_over_https(
    #[case] cluster: Value,
    #[case] code: Code,
    #[case] path: &str,
) {
    let errs = errors(json!({"spec": {"cluster": cluster}}));
    assert!(errs.contains(&(code, path.to_string())), "{errs:?}");
}
