//! `cluster.auth.appRole` and `cluster.auth.jwt` against real OpenBao
//! 2.7.2 (`eval "$(scripts/test-env.sh)"`): each method enabled on the
//! server with a role bound to the snapshot-only policy (`read` on
//! `sys/storage/raft/snapshot`), a `snapward run` that logs in and backs
//! up, the clear refusals (wrong secret_id, a JWT for another audience, a
//! role without the capability), and the login token re-acquired when its
//! lease runs out or it is revoked — asserted on what the server and a
//! proxy saw, never on time.
//!
//! The JWTs are RS256, signed in the test with a fresh RSA key through the
//! openssl CLI (as `support::bao` makes its TLS certificates); the jwt
//! method gets the public key as `jwt_validation_pubkeys` (no discovery).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use snapward::backends::OpenBao;
use snapward::backends::openbao::{HttpOpenBao, Retry, Timeouts};
use tokio_util::sync::CancellationToken;

use crate::support::fault_proxy::FaultProxy;
use crate::support::work::{Bao, Work, poll, snaps};

/// The policy `Bao::setup` writes: `read` on the snapshot path only.
const SNAPSHOT_POLICY: &str = "snapward-snapshot";
const SNAPSHOT: &str = "/v1/sys/storage/raft/snapshot";

/// A root call on the active node that must succeed.
async fn root_call(bao: &Bao, method: Method, path: &str, body: Option<Value>) -> Value {
    let c = &bao.cluster;
    let (status, v) = c.call(0, method, path, Some(c.root_token()), body).await;
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

/// AppRole enabled at `approle`, role `name` with these token policies and
/// TTL; returns (role_id, secret_id).
async fn approle(bao: &Bao, name: &str, policies: &[&str], ttl: &str) -> (String, String) {
    if name == "snapward" {
        root_call(
            bao,
            Method::POST,
            "sys/auth/approle",
            Some(json!({"type": "approle"})),
        )
        .await;
    }
    root_call(
        bao,
        Method::POST,
        &format!("auth/approle/role/{name}"),
        Some(json!({"token_policies": policies, "token_ttl": ttl, "token_max_ttl": ttl})),
    )
    .await;
    let role_id = root_call(
        bao,
        Method::GET,
        &format!("auth/approle/role/{name}/role-id"),
        None,
    )
    .await["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_string();
    let secret_id = root_call(
        bao,
        Method::POST,
        &format!("auth/approle/role/{name}/secret-id"),
        None,
    )
    .await["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_string();
    (role_id, secret_id)
}

/// A fresh RSA key (PEM private, PEM public) made by the openssl CLI.
fn rsa_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("jwt-signer.key");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("the JWT tests need the openssl CLI: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let k = key.to_str().expect("utf-8 path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        k,
    ]);
    let public = run(&["pkey", "-in", k, "-pubout"]);
    (key, String::from_utf8(public).expect("PEM"))
}

/// An RS256 JWT with `claims`, signed with `key` (openssl dgst -sha256:
/// PKCS#1 v1.5, which is RS256).
fn sign_jwt(key: &Path, claims: Value) -> String {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "RS256", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let msg = key.with_extension("msg");
    std::fs::write(&msg, &input).expect("write");
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(&msg)
        .output()
        .expect("openssl dgst");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{input}.{}", b64(&out.stdout))
}

/// Service-account-shaped claims for `aud`, valid for an hour.
fn claims(aud: &str) -> Value {
    let now = jiff::Timestamp::now().as_second();
    json!({
        "iss": "https://issuer.test",
        "sub": "system:serviceaccount:openbao:snapward",
        "aud": [aud],
        "iat": now,
        "nbf": now - 60,
        "exp": now + 3600,
    })
}

/// The jwt method at `jwt` trusting `public_pem`, role `name` bound to
/// audience `openbao` with these policies.
async fn jwt_method(bao: &Bao, public_pem: &str, roles: &[(&str, &[&str])]) {
    root_call(
        bao,
        Method::POST,
        "sys/auth/jwt",
        Some(json!({"type": "jwt"})),
    )
    .await;
    root_call(
        bao,
        Method::POST,
        "auth/jwt/config",
        Some(
            json!({"jwt_validation_pubkeys": [public_pem], "bound_issuer": "https://issuer.test"}),
        ),
    )
    .await;
    for (name, policies) in roles {
        root_call(
            bao,
            Method::POST,
            &format!("auth/jwt/role/{name}"),
            Some(json!({
                "role_type": "jwt",
                "bound_audiences": ["openbao"],
                "user_claim": "sub",
                "token_policies": policies,
                "token_ttl": "10m"
            })),
        )
        .await;
    }
}

/// A backup policy for `bao` with `auth` instead of the token file.
fn policy(work: &Work, bao: &Bao, auth: Value) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let local = work.mkdir("local");
    let mut p = work.policy(
        "auth-methods",
        bao.nodes(),
        &work.path("unused-token"),
        &local,
        json!({"keepLast": 5}),
        "30s",
    );
    p["spec"]["cluster"]["auth"] = auth;
    work.write_policy(&format!("policy-{n}.yaml"), &p)
}

fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into:\n{text}");
    }
}

#[tokio::test]
async fn approle_logs_in_and_backs_up_and_refusals_are_clear() {
    let bao = Bao::single().await;
    let (role_id, secret_id) = approle(&bao, "snapward", &[SNAPSHOT_POLICY], "10m").await;
    let (nocap_role, nocap_secret) = approle(&bao, "nocap", &["default"], "10m").await;
    let work = Work::new();
    let role_file = work.file("approle/role-id", &format!("{role_id}\n"));
    let secret_file = work.file("approle/secret-id", &format!("  {secret_id}\n"));
    let auth = |r: &Path, s: &Path| json!({"appRole": {"roleIdFile": r.display().to_string(), "secretIdFile": s.display().to_string()}});

    let ok = policy(&work, &bao, auth(&role_file, &secret_file));
    let out = work.run(&ok, &[]).await;
    out.expect_exit(0);
    assert_eq!(snaps(&work.path("local")).len(), 1, "{}", out.context());
    assert_no_secret(&out.context(), &[&secret_id, &role_id]);

    // A wrong secret_id: the server's refusal, the files named, exit 4.
    let wrong = work.file("approle/wrong-secret-id", "0000-not-the-secret\n");
    let out = work
        .run(&policy(&work, &bao, auth(&role_file, &wrong)), &[])
        .await;
    out.expect_exit(4);
    let text = out.context();
    assert!(
        text.contains("approle login (mount approle) refused with 400"),
        "{text}"
    );
    assert!(
        text.contains("invalid role or secret ID") || text.contains("invalid secret id"),
        "{text}"
    );
    assert!(text.contains("wrong-secret-id"), "{text}");
    assert_no_secret(&text, &["0000-not-the-secret", &role_id]);

    // A missing secret_id file is named.
    let missing = work.path("approle/nope");
    let out = work
        .run(&policy(&work, &bao, auth(&role_file, &missing)), &[])
        .await;
    out.expect_exit(4);
    assert!(
        out.context().contains(&format!(
            "cannot read the AppRole secretId file {}",
            missing.display()
        )),
        "{}",
        out.context()
    );

    // A role whose token lacks the capability: the 403 says what it needs.
    let r = work.file("approle/nocap-role", &nocap_role);
    let s = work.file("approle/nocap-secret", &nocap_secret);
    let out = work.run(&policy(&work, &bao, auth(&r, &s)), &[]).await;
    out.expect_exit(4);
    let text = out.context();
    assert!(
        text.contains("sys/storage/raft/snapshot answered 403")
            && text.contains("the token needs `read` on sys/storage/raft/snapshot"),
        "{text}"
    );
    assert_no_secret(&text, &[&nocap_secret]);
    assert_eq!(snaps(&work.path("local")).len(), 1);
}

#[tokio::test]
async fn jwt_logs_in_and_backs_up_and_refusals_are_clear() {
    let bao = Bao::single().await;
    let work = Work::new();
    let (key, public) = rsa_key(&work.mkdir("keys"));
    jwt_method(
        &bao,
        &public,
        &[("snapward", &[SNAPSHOT_POLICY]), ("nocap", &["default"])],
    )
    .await;
    let good = sign_jwt(&key, claims("openbao"));
    let jwt_file = work.file("jwt/token", &format!("{good}\n"));
    let auth = |role: &str, file: &Path, audience: Option<&str>| {
        let mut j = json!({"role": role, "jwtFile": file.display().to_string()});
        if let Some(a) = audience {
            j["audience"] = json!(a);
        }
        json!({ "jwt": j })
    };

    let out = work
        .run(
            &policy(&work, &bao, auth("snapward", &jwt_file, Some("openbao"))),
            &[],
        )
        .await;
    out.expect_exit(0);
    assert_eq!(snaps(&work.path("local")).len(), 1, "{}", out.context());
    assert_no_secret(&out.context(), &[&good]);

    // A JWT for another audience, with `audience` set: not sent, exit 4.
    let other = sign_jwt(&key, claims("https://kubernetes.default.svc"));
    let other_file = work.file("jwt/api-server-token", &other);
    let out = work
        .run(
            &policy(&work, &bao, auth("snapward", &other_file, Some("openbao"))),
            &[],
        )
        .await;
    out.expect_exit(4);
    let text = out.context();
    assert!(
        text.contains(r#"is for audience ["https://kubernetes.default.svc"], not `openbao` (cluster.auth.jwt.audience): it is not sent"#),
        "{text}"
    );
    assert_no_secret(&text, &[&other]);

    // Without `audience`, OpenBao refuses it (the role's bound_audiences).
    let out = work
        .run(
            &policy(&work, &bao, auth("snapward", &other_file, None)),
            &[],
        )
        .await;
    out.expect_exit(4);
    let text = out.context();
    assert!(
        text.contains("jwt login (role snapward, mount jwt) refused with 400"),
        "{text}"
    );
    assert!(text.contains("aud"), "{text}");
    assert_no_secret(&text, &[&other]);

    // A role without the capability: the snapshot's 403.
    let out = work
        .run(
            &policy(&work, &bao, auth("nocap", &jwt_file, Some("openbao"))),
            &[],
        )
        .await;
    out.expect_exit(4);
    assert!(
        out.context()
            .contains("the token needs `read` on sys/storage/raft/snapshot"),
        "{}",
        out.context()
    );
    assert_eq!(snaps(&work.path("local")).len(), 1);
}

// ---- token lifetime (the library, through a counting proxy) ------------

fn backend(proxy: &FaultProxy, role_file: &Path, secret_file: &Path) -> HttpOpenBao {
    let cfg = serde_json::from_value(json!({"auth": {"appRole": {
        "roleIdFile": role_file.display().to_string(),
        "secretIdFile": secret_file.display().to_string(),
    }}}))
    .expect("cluster");
    HttpOpenBao::new(
        vec![("bao-0".into(), proxy.url.parse().expect("url"))],
        &cfg,
        Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(20),
            stream_idle: Duration::from_secs(20),
        },
    )
    .expect("backend")
    .with_retry(Retry {
        attempts: 2,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    })
}

async fn snapshot(bao: &HttpOpenBao) {
    let mut buf = Vec::new();
    bao.snapshot(0, &mut buf, &CancellationToken::new())
        .await
        .expect("snapshot");
    assert!(!buf.is_empty());
}

/// The accessors of live tokens that AppRole logins created.
async fn approle_tokens(bao: &Bao) -> Vec<String> {
    let c = &bao.cluster;
    let (_, list) = c
        .call(
            0,
            Method::from_bytes(b"LIST").expect("LIST"),
            "auth/token/accessors",
            Some(c.root_token()),
            None,
        )
        .await;
    let mut found = Vec::new();
    for a in list["data"]["keys"].as_array().cloned().unwrap_or_default() {
        let (status, v) = c
            .call(
                0,
                Method::POST,
                "auth/token/lookup-accessor",
                Some(c.root_token()),
                Some(json!({"accessor": a})),
            )
            .await;
        if status.is_success()
            && v["data"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("auth/approle/login"))
        {
            found.push(a.as_str().expect("accessor").to_string());
        }
    }
    found
}

fn logins(proxy: &FaultProxy) -> usize {
    proxy.count(|s| s.target == "/v1/auth/approle/login")
}

fn forbidden(proxy: &FaultProxy) -> usize {
    proxy.count(|s| s.target == SNAPSHOT && s.status == Some(403))
}

/// A role whose tokens live 3 s: after the first token expired on the
/// server (polled, not slept), the next snapshot logs in again *before*
/// using it (no 403 on the way).
#[tokio::test]
async fn an_expired_login_token_is_replaced_before_it_is_used() {
    let bao = Bao::single().await;
    let (role_id, secret_id) = approle(&bao, "snapward", &[SNAPSHOT_POLICY], "3s").await;
    let work = Work::new();
    let r = work.file("role-id", &role_id);
    let s = work.file("secret-id", &secret_id);
    let proxy = FaultProxy::start(bao.cluster.address(0).as_str()).await;
    let client = backend(&proxy, &r, &s);

    snapshot(&client).await;
    assert_eq!(logins(&proxy), 1);
    poll("the first login token to expire on the server", || async {
        approle_tokens(&bao).await.is_empty().then_some(())
    })
    .await;
    snapshot(&client).await;
    assert_eq!(logins(&proxy), 2, "{}", proxy.log());
    assert_eq!(forbidden(&proxy), 0, "{}", proxy.log());
}

/// A cached token revoked on the server: the 403 drops it and the retry
/// logs in again; a fresh token's 403 is not retried.
#[tokio::test]
async fn a_revoked_login_token_is_re_acquired_once() {
    let bao = Bao::single().await;
    let (role_id, secret_id) = approle(&bao, "snapward", &[SNAPSHOT_POLICY], "10m").await;
    let work = Work::new();
    let r = work.file("role-id", &role_id);
    let s = work.file("secret-id", &secret_id);
    let proxy = FaultProxy::start(bao.cluster.address(0).as_str()).await;
    let client = backend(&proxy, &r, &s);

    snapshot(&client).await;
    let live = approle_tokens(&bao).await;
    assert_eq!(live.len(), 1);
    root_call(
        &bao,
        Method::POST,
        "auth/token/revoke-accessor",
        Some(json!({"accessor": live[0]})),
    )
    .await;
    snapshot(&client).await;
    assert_eq!(logins(&proxy), 2, "{}", proxy.log());
    assert_eq!(forbidden(&proxy), 1, "{}", proxy.log());
}
