//! The OpenBao backend (`HttpOpenBao`) against real `bao` servers started by
//! `support::bao` (single node, 3-node raft, TLS), plus a scripted HTTP
//! server for faults a real server does not produce on demand (stalls, cut
//! streams, contradictory answers, redirects).
//!
//! Needs `eval "$(scripts/test-env.sh)"` (sets `SNAPWARD_TEST_BAO`).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use snapward::backends::openbao::{HttpOpenBao, Retry, Timeouts};
use snapward::backends::{BaoError, NodeStatus, OpenBao};
use snapward::cluster::InitState;
use snapward::policy::model::Cluster;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::support::bao::{BaoCluster, FakeHttp, FakeReply};
use crate::support::closed_port;

const SNAPSHOT: &str = "/v1/sys/storage/raft/snapshot";

fn cluster(v: Value) -> Cluster {
    serde_json::from_value(v).expect("cluster config")
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(10),
        stream_idle: Duration::from_secs(10),
    }
}

/// Short backoff so retry paths stay fast.
fn fast_retry() -> Retry {
    Retry {
        attempts: 3,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

fn backend(nodes: Vec<(String, Url)>, cfg: Value) -> HttpOpenBao {
    HttpOpenBao::new(nodes, &cluster(cfg), timeouts())
        .expect("backend")
        .with_retry(fast_retry())
}

async fn snapshot_to(bao: &HttpOpenBao, node: usize, path: &Path) -> Result<u64, BaoError> {
    let mut f = tokio::fs::File::create(path).await.expect("create");
    let r = bao.snapshot(node, &mut f, &CancellationToken::new()).await;
    f.sync_all().await.expect("sync");
    r
}

async fn snapshot_to_vec(bao: &HttpOpenBao, node: usize) -> (Result<u64, BaoError>, Vec<u8>) {
    let mut buf = Vec::new();
    let r = bao
        .snapshot(node, &mut buf, &CancellationToken::new())
        .await;
    (r, buf)
}

fn assert_node(s: &NodeStatus, init: InitState, sealed: Option<bool>, active: bool) {
    assert_eq!(
        (s.init, s.sealed, s.active),
        (init, sealed, active),
        "unexpected state: {s:?}"
    );
}

/// No OpenBao service token (`s.` + 24 characters) anywhere in `text`.
fn has_token_shape(text: &str) -> bool {
    text.match_indices("s.").any(|(i, _)| {
        text[i + 2..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .count()
            >= 24
    })
}

fn unused_port_url() -> Url {
    format!("http://127.0.0.1:{}", closed_port())
        .parse()
        .expect("url")
}

/// The `leader_address` the fake nodes name: on this machine, where nothing
/// listens, so a client that wrongly followed it sends nothing off the host.
fn nowhere_leader() -> &'static str {
    static LEADER: OnceLock<String> = OnceLock::new();
    LEADER.get_or_init(|| format!("http://127.0.0.1:{}", closed_port()))
}

fn leader_json(is_self: bool) -> Value {
    json!({"ha_enabled": true, "is_self": is_self, "leader_address": nowhere_leader(), "raft_committed_index": 7})
}

/// A fake node that is active and answers the snapshot request with `reply`.
async fn fake_active(reply: impl Fn() -> FakeReply + Send + Sync + 'static) -> FakeHttp {
    FakeHttp::start(move |req| match req.path.as_str() {
        "/v1/sys/leader" => FakeReply::Json(200, leader_json(true)),
        SNAPSHOT => reply(),
        _ => FakeReply::Json(404, json!({"errors": []})),
    })
    .await
}

/// One server through its life: fresh, initialised + sealed, active, a valid
/// snapshot, a bad token, a redirect, stopped, restarted sealed.
#[tokio::test]
async fn single_node_lifecycle_observe_and_snapshot() {
    let mut c = BaoCluster::single().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let token_file = tmp.path().join("token");
    let bao = backend(c.node_list(), json!({"auth": {"tokenFile": token_file}}));
    assert_eq!(bao.node_names(), vec!["bao-0".to_string()]);

    // Fresh: uninitialised, and that is a certain answer (no error).
    let s = bao.observe().await;
    assert_eq!(s.len(), 1);
    assert_node(&s[0], InitState::Uninitialized, Some(true), false);
    assert_eq!(s[0].error, None);
    assert_eq!(s[0].address, c.address(0).as_str().trim_end_matches('/'));

    // Initialised, still sealed.
    let (keys, root) = c.init(1, 1).await;
    std::fs::write(&token_file, format!("{root}\n")).expect("token file");
    let s = bao.observe().await;
    assert_node(&s[0], InitState::Initialized, Some(true), false);
    assert_eq!(s[0].error, None);

    // A sealed node gives no snapshot (503 on sys/leader) and nothing is written.
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Failed { detail, .. }) => assert!(detail.contains("sealed"), "{detail}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(buf.is_empty());

    // Unsealed and active.
    c.unseal(0, &keys).await;
    c.wait_active(0).await;
    let s = bao.observe().await;
    assert_node(&s[0], InitState::Initialized, Some(false), true);
    assert_eq!(s[0].error, None);
    assert!(s[0].cluster_id.as_deref().is_some_and(|id| !id.is_empty()));
    let index_before = s[0].raft_index.expect("raft index");
    assert!(index_before > 0);

    c.enable_kv().await;
    c.write_secret("canary", json!({"v": "before"})).await;
    assert_eq!(c.read_secret("canary").await, Some(json!({"v": "before"})));
    assert_eq!(c.read_secret("absent").await, None);

    // A valid archive, covering at least what was committed before.
    let snap = tmp.path().join("a.snap");
    let n = snapshot_to(&bao, 0, &snap).await.expect("snapshot");
    let id = snapward::snapshot::verify_file(&snap).expect("valid snapshot");
    assert_eq!(id.file_size, n);
    assert!(id.index >= index_before, "{id:?} vs {index_before}");

    // Debug output never shows the token.
    let dbg = format!("{bao:?} {:?}", bao.observe().await);
    assert!(!dbg.contains(&root) && !has_token_shape(&dbg), "{dbg}");

    // A 307 to a configured node is followed once, with the token; the
    // redirecting node must itself claim to be active first.
    let real_snapshot = format!("{}v1/sys/storage/raft/snapshot", c.address(0));
    let redirecting = fake_active(move || {
        FakeReply::Raw(
            307,
            vec![("Location".into(), real_snapshot.clone())],
            vec![],
        )
    })
    .await;
    let via = backend(
        vec![
            ("fake".into(), redirecting.url.clone()),
            ("bao-0".into(), c.address(0)),
        ],
        json!({"auth": {"tokenFile": token_file}}),
    );
    let snap2 = tmp.path().join("b.snap");
    snapshot_to(&via, 0, &snap2)
        .await
        .expect("snapshot via redirect");
    snapward::snapshot::verify_file(&snap2).expect("valid snapshot after redirect");
    assert_eq!(redirecting.count(SNAPSHOT), 1);

    // A bad token: 403 → Refused, nothing written, not retried (the real
    // server's answer; the request count is checked in
    // `forbidden_is_refused_without_retry`).
    std::fs::write(&token_file, "s.notavalidtokenatallxxxxx").expect("token file");
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Refused { detail, .. }) => assert!(detail.contains("403"), "{detail}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(buf.is_empty());
    std::fs::write(&token_file, &root).expect("token file");

    // Stopped: unknown with a reason — never uninitialised.
    c.stop(0);
    let s = bao.observe().await;
    assert_node(&s[0], InitState::Unknown, None, false);
    let why = s[0].error.as_deref().expect("a reason");
    assert!(why.contains("cannot connect"), "{why}");
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Failed { .. })), "{r:?}");
    assert!(buf.is_empty());

    // Restarted with its data: initialised and sealed; snapshot fails.
    let old_pid = c.pid(0);
    c.start(0).await;
    assert_ne!(c.pid(0), old_pid);
    let s = bao.observe().await;
    assert_node(&s[0], InitState::Initialized, Some(true), false);
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Failed { .. })), "{r:?}");
    assert!(buf.is_empty());

    // Raft data wiped: uninitialised again, as a certain answer.
    c.wipe(0).await;
    let s = bao.observe().await;
    assert_node(&s[0], InitState::Uninitialized, Some(true), false);
    assert_eq!(s[0].error, None);
}

/// 3-node raft listed standby-first: observe finds exactly one active node,
/// a snapshot request for the standby is refused without writing, and the
/// snapshot from the active node is valid and current.
#[tokio::test]
async fn three_nodes_snapshot_only_from_the_active_node() {
    let mut c = BaoCluster::three().await;
    let (_keys, root) = c.init_unsealed(3, 2).await;
    c.enable_kv().await;
    c.write_secret("canary", json!({"v": 1})).await;
    let active = c.active_node().await;
    let standby = (active + 1) % 3;
    let other = (active + 2) % 3;
    let all = c.node_list();
    let listed = vec![
        all[standby].clone(),
        all[active].clone(),
        all[other].clone(),
    ];

    let tmp = tempfile::tempdir().expect("tmp");
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &root).expect("token file");
    let bao = backend(listed, json!({"auth": {"tokenFile": token_file}}));

    let s = bao.observe().await;
    assert_eq!(s.iter().filter(|n| n.active).count(), 1, "{s:?}");
    assert!(s[1].active, "{s:?}");
    for n in &s {
        assert_node(n, InitState::Initialized, Some(false), n.active);
        assert_eq!(n.error, None, "{n:?}");
    }
    assert!(s.iter().all(|n| n.cluster_id == s[1].cluster_id));
    let leader_index = s[1].raft_index.expect("raft index");

    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Failed { node, detail, .. }) => {
            assert_eq!(node, c.name(standby));
            assert!(detail.contains("not the active node"), "{detail}");
        }
        other => panic!("expected the standby to be refused, got {other:?}"),
    }
    assert!(buf.is_empty(), "nothing may be written from a standby");

    let snap = tmp.path().join("leader.snap");
    snapshot_to(&bao, 1, &snap).await.expect("snapshot");
    let id = snapward::snapshot::verify_file(&snap).expect("valid snapshot");
    assert!(
        id.index >= leader_index,
        "{id:?} vs leader index {leader_index}"
    );
}

const FAKE_K8S_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBkTCCATegAwIBAgIUZ2jtGcm8MtkWdDQzjuuGi09I1O4wCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSZmFrZSBrdWJlcm5ldGVzIENBMCAXDTI2MTEyODAyNDcwOFoY
DzIxMjYxMTA0MDI0NzA4WjAdMRswGQYDVQQDDBJmYWtlIGt1YmVybmV0ZXMgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQaKYRFkAjpRErmDGnAbfEbnaGW7oTy
cMpTzokw+YGcTvLpMTFklBMoMnRl1uYVBsVJf/at8/tPkFZ6BKt0aqO6o1MwUTAd
BgNVHQ4EFgQUZzY9F96UzNhqLF//cSvZKHVSYvkwHwYDVR0jBBgwFoAUZzY9F96U
zNhqLF//cSvZKHVSYvkwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBF
AiEAokF6WsR4Wiie2oBqVlXRp+Mwa9metbeZom26O1FL+s8CIBIYWo/+bIdXuwO5
MjYmRueh6kpqW4iIX5hOm22aQZzw
-----END CERTIFICATE-----
";

/// A service-account-shaped JWT (unsigned: the fake API server vouches).
fn fake_jwt() -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        b64(json!({"alg": "RS256", "typ": "JWT"})),
        b64(json!({
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "openbao",
            "kubernetes.io/serviceaccount/service-account.name": "snapward",
            "kubernetes.io/serviceaccount/service-account.uid": "1234-uid",
            "sub": "system:serviceaccount:openbao:snapward"
        }))
    )
}

/// The real Kubernetes auth method in `bao`, pointed at a fake TokenReview
/// API: login happens lazily, once, and its token is used and never shown.
#[tokio::test]
async fn kubernetes_auth_login_then_snapshot() {
    let token_review = FakeHttp::start(|_| {
        FakeReply::Json(
            201,
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "status": {"authenticated": true, "user": {
                    "username": "system:serviceaccount:openbao:snapward",
                    "uid": "1234-uid",
                    "groups": ["system:serviceaccounts"]
                }}
            }),
        )
    })
    .await;
    let mut c = BaoCluster::single().await;
    let (_keys, root) = c.init_unsealed(1, 1).await;
    let call = |path: &'static str, body: Value| {
        let c = &c;
        let root = root.clone();
        async move {
            let (status, v) = c.call(0, Method::POST, path, Some(&root), Some(body)).await;
            assert!(status.is_success(), "{path}: {status} {v}");
        }
    };
    call("sys/auth/kubernetes", json!({"type": "kubernetes"})).await;
    call(
        "auth/kubernetes/config",
        json!({
            "kubernetes_host": token_review.url.as_str().trim_end_matches('/'),
            "kubernetes_ca_cert": FAKE_K8S_CA,
            "token_reviewer_jwt": "reviewer",
            "disable_local_ca_jwt": true
        }),
    )
    .await;
    c.write_policy(
        "snapshot",
        r#"path "sys/storage/raft/snapshot" { capabilities = ["read"] }"#,
    )
    .await;
    call(
        "auth/kubernetes/role/snapward",
        json!({
            "bound_service_account_names": ["snapward"],
            "bound_service_account_namespaces": ["openbao"],
            "token_policies": ["snapshot"],
            "token_ttl": "10m"
        }),
    )
    .await;

    let tmp = tempfile::tempdir().expect("tmp");
    let jwt_file = tmp.path().join("sa-token");
    let jwt = fake_jwt();
    std::fs::write(&jwt_file, &jwt).expect("jwt");
    let auth = |role: &str| json!({"auth": {"kubernetes": {"role": role, "mount": "kubernetes", "jwtFile": jwt_file}}});
    let bao = backend(c.node_list(), auth("snapward"));

    // observe needs no token: no login yet.
    assert!(bao.observe().await[0].active);
    assert_eq!(token_review.seen().len(), 0);

    for name in ["a.snap", "b.snap"] {
        let snap = tmp.path().join(name);
        snapshot_to(&bao, 0, &snap).await.expect("snapshot");
        snapward::snapshot::verify_file(&snap).expect("valid snapshot");
    }
    // One login, reused: the fake API server reviewed the JWT exactly once.
    let reviews = token_review.seen();
    assert_eq!(reviews.len(), 1);
    assert!(String::from_utf8_lossy(&reviews[0].body).contains(&jwt));

    let dbg = format!("{bao:?}");
    assert!(dbg.contains("[redacted]"), "{dbg}");
    assert!(!has_token_shape(&dbg) && !dbg.contains(&jwt), "{dbg}");

    // An unknown role is refused (400 from the server), nothing written.
    let wrong = backend(c.node_list(), auth("nope"));
    let (r, buf) = snapshot_to_vec(&wrong, 0).await;
    match r {
        Err(BaoError::Refused { detail, .. }) => assert!(detail.contains("role"), "{detail}"),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(buf.is_empty());
}

/// `tls.caFile` + `tls.serverName` with a node addressed by IP whose
/// certificate names only `openbao.test`; without either, verification
/// fails and the node is Unknown (never uninitialised).
#[tokio::test]
async fn tls_ca_file_and_server_name() {
    let c = BaoCluster::single_tls().await;
    let tls = c.tls().expect("tls");
    let ca = tls.ca_file.clone();
    let name = tls.server_name.clone();

    let ok = backend(
        c.node_list(),
        json!({"tls": {"caFile": ca, "serverName": name}}),
    );
    let s = ok.observe().await;
    assert_node(&s[0], InitState::Uninitialized, Some(true), false);
    assert_eq!(s[0].error, None);
    assert!(s[0].address.starts_with("https://127.0.0.1:"), "{s:?}");

    let no_name = backend(c.node_list(), json!({"tls": {"caFile": ca}}));
    let s = no_name.observe().await;
    assert_node(&s[0], InitState::Unknown, None, false);
    assert!(s[0].error.is_some());

    let no_ca = backend(c.node_list(), json!({"tls": {"serverName": name}}));
    let s = no_ca.observe().await;
    assert_node(&s[0], InitState::Unknown, None, false);
    assert!(s[0].error.is_some());

    let missing = HttpOpenBao::new(
        c.node_list(),
        &cluster(json!({"tls": {"caFile": "/nonexistent/ca.pem"}})),
        timeouts(),
    );
    assert!(
        matches!(missing, Err(BaoError::Refused { .. })),
        "{missing:?}"
    );
}

// ---- faults from a scripted server ---------------------------------------

#[tokio::test]
async fn stalled_stream_is_reported_as_stalled() {
    let fake = fake_active(|| FakeReply::Stall(b"\x1f\x8b\x08partial".to_vec())).await;
    let bao = HttpOpenBao::new(
        vec![("fake".into(), fake.url.clone())],
        &cluster(json!({"auth": {"tokenFile": "/dev/null"}})),
        Timeouts {
            stream_idle: Duration::from_secs(1),
            ..timeouts()
        },
    )
    .expect("backend")
    .with_token(snapward::secret::Secret::new("s.test"))
    .with_retry(fast_retry());
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Stalled { node, seconds }) => {
            assert_eq!((node.as_str(), seconds), ("fake", 1));
        }
        other => panic!("expected Stalled, got {other:?}"),
    }
    assert_eq!(buf, b"\x1f\x8b\x08partial");
    assert_eq!(fake.count(SNAPSHOT), 1, "bytes went out: no retry");
}

#[tokio::test]
async fn cancel_stops_a_stream() {
    let fake = fake_active(|| FakeReply::Stall(b"\x1f\x8b".to_vec())).await;
    let bao = backend(vec![("fake".into(), fake.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let mut buf = Vec::new();
    let r = bao.snapshot(0, &mut buf, &cancel).await;
    assert!(matches!(r, Err(BaoError::Cancelled)), "{r:?}");
}

#[tokio::test]
async fn cut_stream_fails_without_retry() {
    let fake = fake_active(|| FakeReply::Cut(b"\x1f\x8b\x08cut".to_vec())).await;
    let bao = backend(vec![("fake".into(), fake.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Failed { .. })), "{r:?}");
    assert_eq!(buf, b"\x1f\x8b\x08cut");
    assert_eq!(fake.count(SNAPSHOT), 1);
}

#[tokio::test]
async fn forbidden_is_refused_without_retry() {
    let fake = fake_active(|| FakeReply::Json(403, json!({"errors": ["permission denied"]}))).await;
    let bao = backend(vec![("fake".into(), fake.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Refused { .. })), "{r:?}");
    assert!(buf.is_empty());
    assert_eq!(fake.count(SNAPSHOT), 1);
    let sent = &fake.seen()[1];
    assert_eq!(sent.header("x-vault-token"), Some("s.test"));
}

#[tokio::test]
async fn unavailable_is_retried_then_fails() {
    let fake = fake_active(|| FakeReply::Json(503, json!({"errors": ["Vault is sealed"]}))).await;
    let bao = backend(vec![("fake".into(), fake.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Failed { .. })), "{r:?}");
    assert!(buf.is_empty());
    assert_eq!(fake.count(SNAPSHOT), fast_retry().attempts);

    // A standby's 429 is not retried.
    let standby = fake_active(|| FakeReply::Json(429, json!({"errors": ["standby"]}))).await;
    let bao = backend(vec![("fake".into(), standby.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, _) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Failed { .. })), "{r:?}");
    assert_eq!(standby.count(SNAPSHOT), 1);
}

#[tokio::test]
async fn unreachable_node_is_retried_then_fails() {
    let bao = backend(vec![("gone".into(), unused_port_url())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Failed { detail, .. }) => assert!(detail.contains("connect"), "{detail}"),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(buf.is_empty());
}

/// A node that says it is a standby is never asked for a snapshot, even
/// though it would answer 200 (as OpenBao 2.7.2 standbys do).
#[tokio::test]
async fn standby_is_never_asked_for_a_snapshot() {
    let fake = FakeHttp::start(|req| match req.path.as_str() {
        "/v1/sys/leader" => FakeReply::Json(200, leader_json(false)),
        _ => FakeReply::Raw(200, vec![], b"\x1f\x8bstale".to_vec()),
    })
    .await;
    let bao = backend(vec![("standby".into(), fake.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Failed { detail, .. }) => {
            assert!(detail.contains("not the active node"), "{detail}");
            assert!(detail.contains(nowhere_leader()), "{detail}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(buf.is_empty());
    assert_eq!(fake.count(SNAPSHOT), 0);
}

/// A redirect to an address that is not a configured node is not followed
/// and the token goes nowhere new.
#[tokio::test]
async fn redirect_to_an_unknown_host_is_not_followed() {
    let elsewhere = FakeHttp::start(|_| FakeReply::Json(200, leader_json(true))).await;
    let target = format!("{}v1/sys/storage/raft/snapshot", elsewhere.url);
    let fake =
        fake_active(move || FakeReply::Raw(307, vec![("Location".into(), target.clone())], vec![]))
            .await;
    let bao = backend(vec![("fake".into(), fake.url.clone())], json!({}))
        .with_token(snapward::secret::Secret::new("s.test"));
    let (r, buf) = snapshot_to_vec(&bao, 0).await;
    match r {
        Err(BaoError::Failed { detail, .. }) => {
            assert!(detail.contains("not a configured node"), "{detail}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(buf.is_empty());
    assert!(
        elsewhere.seen().is_empty(),
        "nothing may reach an unlisted host"
    );
}

#[tokio::test]
async fn missing_auth_is_refused() {
    let fake = fake_active(|| FakeReply::Raw(200, vec![], b"x".to_vec())).await;
    let bao = backend(vec![("fake".into(), fake.url.clone())], json!({}));
    let (r, _) = snapshot_to_vec(&bao, 0).await;
    assert!(matches!(r, Err(BaoError::Refused { .. })), "{r:?}");
    let unreadable = backend(
        vec![("fake".into(), fake.url.clone())],
        json!({"auth": {"tokenFile": "/nonexistent/token"}}),
    );
    let (r, _) = snapshot_to_vec(&unreadable, 0).await;
    assert!(matches!(r, Err(BaoError::Refused { .. })), "{r:?}");
    assert_eq!(fake.count(SNAPSHOT), 0);
}

/// Unreachable, 5xx, unparseable and contradictory answers are all
/// Unknown with a reason — never uninitialised.
#[tokio::test]
async fn unreadable_or_contradictory_nodes_are_unknown() {
    let sealed_uninit =
        json!({"type": "shamir", "initialized": false, "sealed": true, "t": 0, "n": 0});
    let s1 = sealed_uninit.clone();
    let contradicts = FakeHttp::start(move |req| match req.path.as_str() {
        "/v1/sys/seal-status" => FakeReply::Json(200, s1.clone()),
        "/v1/sys/init" => FakeReply::Json(200, json!({"initialized": true})),
        _ => FakeReply::Json(404, json!({})),
    })
    .await;
    let server_error =
        FakeHttp::start(|_| FakeReply::Json(500, json!({"errors": ["internal error"]}))).await;
    let garbage =
        FakeHttp::start(|_| FakeReply::Raw(200, vec![], b"<html>not openbao</html>".to_vec()))
            .await;
    let unsealed_uninit = FakeHttp::start(|req| match req.path.as_str() {
        "/v1/sys/seal-status" => {
            FakeReply::Json(200, json!({"initialized": false, "sealed": false}))
        }
        _ => FakeReply::Json(200, json!({"initialized": false})),
    })
    .await;
    let s2 = sealed_uninit.clone();
    let fresh = FakeHttp::start(move |req| match req.path.as_str() {
        "/v1/sys/seal-status" => FakeReply::Json(200, s2.clone()),
        _ => FakeReply::Json(200, json!({"initialized": false})),
    })
    .await;
    let bao = backend(
        vec![
            ("contradicts".into(), contradicts.url.clone()),
            ("server-error".into(), server_error.url.clone()),
            ("garbage".into(), garbage.url.clone()),
            ("unsealed-uninit".into(), unsealed_uninit.url.clone()),
            ("unreachable".into(), unused_port_url()),
            ("fresh".into(), fresh.url.clone()),
        ],
        json!({}),
    );
    let s = bao.observe().await;
    let names: Vec<&str> = s.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "contradicts",
            "server-error",
            "garbage",
            "unsealed-uninit",
            "unreachable",
            "fresh"
        ]
    );
    for (n, needle) in s[..5].iter().zip([
        "contradictory",
        "500",
        "unexpected body",
        "contradictory",
        "connect",
    ]) {
        assert_eq!(n.init, InitState::Unknown, "{n:?}");
        assert!(!n.active);
        let why = n.error.as_deref().unwrap_or_default();
        assert!(why.contains(needle), "{}: {why}", n.name);
    }
    assert_node(&s[5], InitState::Uninitialized, Some(true), false);
    assert_eq!(s[5].error, None);
}
