//! Client certificates against real OpenBao 2.7.2 (issue 12, items 6 and
//! 7): a listener with `tls_require_and_verify_client_cert` (mTLS), and
//! the TLS certificate auth method (`auth/cert`), both with
//! `cluster.tls.certFile`/`keyFile`. The CAs and certificates are
//! throwaway ones made by `support::bao` (openssl).

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::bao::{BaoCluster, TlsFiles};
use crate::support::work::{Bao, Work, snaps};

const SNAPSHOT_ACL: &str = r#"path "sys/storage/raft/snapshot" { capabilities = ["read"] }"#;

/// `cluster.tls`: the server CA and name, and the client certificate
/// `cert` + `key` when given.
fn tls(files: &TlsFiles, client: Option<(&Path, &Path)>) -> Value {
    let mut t = json!({
        "caFile": files.ca_file.display().to_string(),
        "serverName": files.server_name,
    });
    if let Some((cert, key)) = client {
        t["certFile"] = cert.display().to_string().into();
        t["keyFile"] = key.display().to_string().into();
    }
    t
}

/// A backup policy for `bao` with `tls` and `auth`, written under `name/`.
fn policy(w: &Work, bao: &Bao, name: &str, tls: Value, auth: Value) -> std::path::PathBuf {
    let token = w.file(&format!("{name}/token"), &bao.token);
    let local = w.path(&format!("{name}/snapshots"));
    let mut p = w.policy(
        name,
        bao.nodes(),
        &token,
        &local,
        json!({"keepLast": 3}),
        "20s",
    );
    p["spec"]["cluster"]["tls"] = tls;
    p["spec"]["cluster"]["auth"] = auth;
    w.write_policy(&format!("{name}/policy.yaml"), &p)
}

/// mTLS: with the client certificate the run backs up; without one, or
/// with one from another CA, the TLS handshake is refused and the run
/// fails (exit 4) saying so and what to set — never a snapshot, never a
/// key or key path leaked as content.
#[tokio::test]
async fn mtls_listener_needs_the_client_certificate() {
    let bao = Bao::setup(BaoCluster::single_mtls().await).await;
    let files = bao.cluster.tls().expect("tls");
    let w = Work::new();
    let token = json!({"tokenFile": w.file("token", &bao.token).display().to_string()});

    let good = policy(
        &w,
        &bao,
        "good",
        tls(files, Some((&files.client_cert, &files.client_key))),
        token.clone(),
    );
    let run = w.run(&good, &[]).await;
    run.expect_exit(0);
    assert!(
        w.path("good/snapshots").join(run.snapshot_name()).is_file(),
        "{}",
        run.context()
    );

    let key = std::fs::read_to_string(&files.client_key).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_string();
    for (name, client, want) in [
        (
            "none",
            None,
            "the node refused the TLS handshake: it requires a client certificate and none was presented; set spec.cluster.tls.certFile and keyFile",
        ),
        (
            "rogue",
            Some((&files.rogue_cert, &files.rogue_key)),
            "the node refused the TLS handshake: it rejected the client certificate (spec.cluster.tls.certFile, or none)",
        ),
    ] {
        let p = policy(
            &w,
            &bao,
            name,
            tls(files, client.map(|(c, k)| (c.as_path(), k.as_path()))),
            token.clone(),
        );
        let run = w.run(&p, &[]).await;
        run.expect_exit(4);
        let all = run.everything();
        assert!(
            all.contains(want),
            "{name}: the message must name the client certificate and the fix\n{}",
            run.context()
        );
        assert!(!all.contains(&key_body), "{name}: key material leaked");
        assert!(
            snaps(&w.path(&format!("{name}/snapshots"))).is_empty(),
            "{name}: no snapshot without the right certificate"
        );
    }
}

/// A client certificate file that is missing or holds no key: the run
/// stops before any request with an error naming the file (exit 4, as
/// for an unreadable caFile), and shows no key bytes.
#[tokio::test]
async fn unreadable_client_certificate_files_are_named() {
    let bao = Bao::setup(BaoCluster::single_mtls().await).await;
    let files = bao.cluster.tls().expect("tls");
    let w = Work::new();
    let token = json!({"tokenFile": w.file("token", &bao.token).display().to_string()});
    let missing = w.path("nope/client.key");
    let cases = [
        (
            "missing-key",
            files.client_cert.clone(),
            missing.clone(),
            "cannot read tls.keyFile",
        ),
        // A certificate where the key should be: "no usable private key".
        (
            "cert-as-key",
            files.client_cert.clone(),
            files.client_cert.clone(),
            "holds no usable private key",
        ),
        // The key where the certificate should be.
        (
            "key-as-cert",
            files.client_key.clone(),
            files.client_key.clone(),
            "holds no PEM certificate",
        ),
    ];
    let key = std::fs::read_to_string(&files.client_key).unwrap();
    let key_body = key.lines().nth(1).unwrap().to_string();
    for (name, cert, keyf, want) in cases {
        let p = policy(
            &w,
            &bao,
            name,
            tls(files, Some((&cert, &keyf))),
            token.clone(),
        );
        let run = w.run(&p, &[]).await;
        let all = run.everything();
        assert_eq!(run.code, Some(4), "{name}\n{}", run.context());
        assert!(
            all.contains(want),
            "{name}: want {want:?}\n{}",
            run.context()
        );
        assert!(!all.contains(&key_body), "{name}: key material leaked");
    }
}

/// Enables the cert auth method and registers `ca` as role `name` with
/// `policies`.
async fn cert_role(c: &BaoCluster, name: &str, ca: &Path, policies: &[&str]) {
    let root = c.root_token().to_string();
    let (s, v) = c.call(0, Method::GET, "sys/auth", Some(&root), None).await;
    assert!(s.is_success(), "{s} {v}");
    if v["data"].get("cert/").is_none() {
        let (s, v) = c
            .call(
                0,
                Method::POST,
                "sys/auth/cert",
                Some(&root),
                Some(json!({"type": "cert"})),
            )
            .await;
        assert!(s.is_success(), "{s} {v}");
    }
    let (s, v) = c
        .call(
            0,
            Method::POST,
            &format!("auth/cert/certs/{name}"),
            Some(&root),
            Some(json!({
                "certificate": std::fs::read_to_string(ca).unwrap(),
                "token_policies": policies,
            })),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
}

/// TLS certificate auth: a role whose policy grants only `read` on the
/// snapshot path logs in with the client certificate and snapshots; a
/// certificate the method does not know, and a role without the
/// capability, fail with a clear 4xx message (exit 4, nothing written).
#[tokio::test]
async fn cert_auth_logs_in_and_snapshots() {
    // Not mTLS-only: the listener asks for (but does not require) a client
    // certificate, so a certificate of an unknown CA reaches the method.
    let bao = Bao::setup(BaoCluster::single_tls().await).await;
    let c = &bao.cluster;
    let files = c.tls().expect("tls");
    c.write_policy("snapward-snapshot", SNAPSHOT_ACL).await;
    cert_role(c, "snapward", &files.client_ca_file, &["snapward-snapshot"]).await;
    cert_role(c, "nocap", &files.client_ca_file, &["default"]).await;
    let w = Work::new();
    let mine = Some((files.client_cert.as_path(), files.client_key.as_path()));

    let ok = policy(
        &w,
        &bao,
        "ok",
        tls(files, mine),
        json!({"cert": {"role": "snapward"}}),
    );
    let run = w.run(&ok, &[]).await;
    run.expect_exit(0);
    assert!(
        w.path("ok/snapshots").join(run.snapshot_name()).is_file(),
        "{}",
        run.context()
    );

    let rogue = policy(
        &w,
        &bao,
        "rogue",
        tls(
            files,
            Some((files.rogue_cert.as_path(), files.rogue_key.as_path())),
        ),
        json!({"cert": {"role": "snapward"}}),
    );
    let run = w.run(&rogue, &[]).await;
    run.expect_exit(4);
    let all = run.everything();
    assert!(
        all.contains(
            "TLS certificate login (role snapward, mount cert) refused with 400 Bad Request"
        ) && all.contains("auth/cert/certs/"),
        "{}",
        run.context()
    );

    let nocap = policy(
        &w,
        &bao,
        "nocap",
        tls(files, mine),
        json!({"cert": {"role": "nocap"}}),
    );
    let run = w.run(&nocap, &[]).await;
    run.expect_exit(4);
    assert!(
        run.everything().contains("answered 403")
            && run
                .everything()
                .contains("the token needs `read` on sys/storage/raft/snapshot"),
        "{}",
        run.context()
    );
    for name in ["rogue", "nocap"] {
        assert!(
            snaps(&w.path(&format!("{name}/snapshots"))).is_empty(),
            "{name}: nothing written"
        );
    }
}
