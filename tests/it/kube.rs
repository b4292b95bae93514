//! The Kubernetes backend against an in-test API server that follows the
//! API's semantics (tests/it/support/kube_api.rs says why not tower-test):
//! the Secret key store is create-only, the run Lease gives one run at a
//! time (contention, expiry takeover, stale resourceVersion, renewal, loss),
//! discovery orders pods by ordinal and makes a pod that is not serving
//! `unknown` (so the guard takes no destructive step), Events are written
//! without secrets, the policy can come from a ConfigMap, and a pod restart
//! waits for the new pod.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};
use snapward::backends::keys::{KeyStore, KeyStoreError, SecretKeyStore, StoredKeys};
use snapward::backends::kube::{
    self as k, DiscoveredOpenBao, EventKind, EventSink, KubeError, LeaseLock, Readiness,
};
use snapward::backends::{BaoError, NodeStatus, OpenBao};
use snapward::plan::guard::{Branch, GuardPolicy, InitState, NodeObservation, Observation, decide};
use snapward::policy::model::{KubernetesDiscovery, RestoreMode, Scheme};
use snapward::secret::Secret;
use tokio_util::sync::CancellationToken;

use crate::support::kube_api::{FakeKube, pending_pod, pod};

const NS: &str = "openbao";
const LEASES: &str = "leases.coordination.k8s.io";
const EVENTS: &str = "events.events.k8s.io";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn store(fake: &FakeKube) -> SecretKeyStore {
    SecretKeyStore::new(
        fake.client(),
        NS,
        "openbao-keys",
        "unseal-key-",
        "root-token",
    )
}

fn keys(n: usize, root: bool) -> StoredKeys {
    StoredKeys {
        keys: (0..n)
            .map(|i| Secret::new(format!("share-{i}-SECRET")))
            .collect(),
        root_token: root.then(|| Secret::new("s.ROOT-SECRET")),
        shape: Some(snapward::backends::keys::KeyShape {
            shares: n as u32,
            threshold: 1,
            seal: None,
        }),
    }
}

/// Poll `cond` (no timing assertion: only a cap against hanging forever).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- Secret key store ------------------------------------------------------

#[tokio::test]
async fn secret_store_creates_once_and_never_overwrites() {
    let fake = FakeKube::start().await;
    let ks = store(&fake);
    assert!(!ks.probe().await.unwrap().any, "no Secret yet: keys absent");

    ks.create(&keys(3, true)).await.unwrap();
    let created = fake.get("secrets", NS, "openbao-keys").expect("created");
    assert_eq!(created["immutable"], json!(true));
    assert_eq!(created["type"], json!("Opaque"));
    assert_eq!(
        created["data"]["unseal-key-0"],
        json!(b64("share-0-SECRET"))
    );
    assert_eq!(
        created["data"]["unseal-key-2"],
        json!(b64("share-2-SECRET"))
    );
    assert_eq!(created["data"]["root-token"], json!(b64("s.ROOT-SECRET")));
    assert!(ks.probe().await.unwrap().any);

    // A second init must refuse and leave the stored keys untouched.
    let err = ks.create(&keys(5, false)).await.unwrap_err();
    assert!(
        matches!(err, KeyStoreError::AlreadyExists { ref location } if location == "secret openbao/openbao-keys"),
        "{err:?}"
    );
    let after = fake.get("secrets", NS, "openbao-keys").unwrap();
    assert_eq!(after, created, "the Secret is unchanged");

    let sent = fake.requests_to("secrets");
    assert!(
        sent.iter().all(|r| r.method == "GET" || r.method == "POST"),
        "only GET and POST ever reach a Secret: {:?}",
        sent.iter().map(|r| &r.method).collect::<Vec<_>>()
    );
    let posts: Vec<u16> = sent
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [201, 409]);
    // The error a human sees names the Secret, never a key.
    assert!(!err.to_string().contains("SECRET"));
}

#[tokio::test]
async fn secret_store_reads_every_share_in_order_and_the_root_token() {
    let fake = FakeKube::start().await;
    let mut data = serde_json::Map::new();
    // 12 shares inserted out of order: 10 and 11 must sort after 9.
    for i in [11, 3, 0, 10, 1, 2, 4, 5, 6, 7, 8, 9] {
        data.insert(format!("unseal-key-{i}"), json!(b64(&format!(" key{i}\n"))));
    }
    data.insert("root-token".into(), json!(b64("s.root\n")));
    data.insert("unrelated".into(), json!(b64("x")));
    fake.insert(
        "secrets",
        NS,
        json!({"metadata": {"name": "openbao-keys"}, "data": data}),
    );
    let got = store(&fake).read().await.unwrap();
    let shares: Vec<&str> = got.keys.iter().map(|k| k.expose()).collect();
    let want: Vec<String> = (0..12).map(|i| format!("key{i}")).collect();
    assert_eq!(shares, want);
    assert_eq!(got.root_token.as_ref().map(|t| t.expose()), Some("s.root"));
    assert!(!format!("{got:?}").contains("key1"), "Debug is redacted");
    // Reading never writes.
    assert!(
        fake.requests_to("secrets")
            .iter()
            .all(|r| r.method == "GET")
    );
}

#[tokio::test]
async fn secret_store_probe_absent_present_and_empty() {
    let fake = FakeKube::start().await;
    let ks = store(&fake);
    assert!(!ks.probe().await.unwrap().any);
    assert!(matches!(
        ks.read().await.unwrap_err(),
        KeyStoreError::Empty { .. }
    ));

    // Exists but holds no key entries: neither "absent" (init would run and
    // then fail to store its keys) nor "present".
    fake.insert(
        "secrets",
        NS,
        json!({"metadata": {"name": "openbao-keys"}, "data": {"other": b64("x")}}),
    );
    let err = ks.probe().await.unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Unavailable { detail, .. } if detail.contains("holds no `unseal-key-N` entries")),
        "{err}"
    );
    assert!(matches!(
        ks.read().await.unwrap_err(),
        KeyStoreError::Empty { .. }
    ));
    assert!(matches!(
        ks.create(&keys(1, false)).await.unwrap_err(),
        KeyStoreError::AlreadyExists { .. }
    ));
    assert!(matches!(
        ks.check_create().await.unwrap_err(),
        KeyStoreError::AlreadyExists { .. }
    ));
    assert_eq!(
        fake.get("secrets", NS, "openbao-keys").unwrap()["data"],
        json!({"other": b64("x")})
    );
}

#[tokio::test]
async fn secret_store_any_other_404_is_unavailable_never_absent() {
    // "Absent" may let a fresh init run: a 404 from a proxy or a wrong API
    // URL must not count as "no Secret".
    let fake = FakeKube::start().await;
    let ks = SecretKeyStore::new(
        fake.misrouted_client(),
        NS,
        "openbao-keys",
        "unseal-key-",
        "root-token",
    );
    let err = ks.probe().await.unwrap_err();
    assert!(
        matches!(&err, KeyStoreError::Unavailable { detail, .. } if detail.contains("not the API server's NotFound")),
        "{err}"
    );
    let r = &fake.requests()[0];
    assert_eq!(
        (r.path.as_str(), r.status),
        (
            "/not-the-api/api/v1/namespaces/openbao/secrets/openbao-keys",
            404
        )
    );
}

#[tokio::test]
async fn secret_store_check_create_is_a_dry_run() {
    let fake = FakeKube::start().await;
    let ks = store(&fake);
    ks.check_create().await.unwrap();
    assert!(
        fake.get("secrets", NS, "openbao-keys").is_none(),
        "nothing stored"
    );
    let post = fake
        .requests_to("secrets")
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.query("dryRun"), Some("All"));
    assert!(!ks.probe().await.unwrap().any);
}

#[tokio::test]
async fn secret_store_forbidden_is_unavailable_with_the_rbac_hint() {
    let fake = FakeKube::start().await;
    fake.forbid("GET", "secrets");
    fake.forbid("POST", "secrets");
    let ks = store(&fake);
    let err = ks.probe().await.unwrap_err();
    assert!(matches!(err, KeyStoreError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("RBAC verb `get` on `secrets` in namespace `openbao`"),
        "{text}"
    );
    let err = ks.create(&keys(1, false)).await.unwrap_err();
    assert!(err.to_string().contains("RBAC verb `create`"), "{err}");
}

// --- Lease -----------------------------------------------------------------

fn lease(holder: &str, renewed: &str, seconds: i32) -> Value {
    json!({
        "metadata": {"name": "snapward-prod"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "acquireTime": renewed,
            "renewTime": renewed,
            "leaseTransitions": 3,
        },
    })
}

#[tokio::test]
async fn lease_first_run_acquires_second_is_busy_and_touches_nothing() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    let d = Duration::from_secs(60);
    let first = LeaseLock::acquire(&client, NS, "snapward-prod", "job-a", d)
        .await
        .unwrap()
        .expect("free lease is acquired");
    assert!(!first.lost());
    let stored = fake.get(LEASES, NS, "snapward-prod").unwrap();
    assert_eq!(stored["spec"]["holderIdentity"], json!("job-a"));
    assert_eq!(stored["spec"]["leaseDurationSeconds"], json!(60));

    let writes_before = fake
        .requests_to(LEASES)
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    let second = LeaseLock::acquire(&client, NS, "snapward-prod", "job-b", d)
        .await
        .unwrap();
    assert!(
        second.is_none(),
        "a live lease of another holder means busy"
    );
    let writes_after = fake
        .requests_to(LEASES)
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes_before, writes_after, "the busy run wrote nothing");
    assert_eq!(
        fake.get(LEASES, NS, "snapward-prod").unwrap()["spec"]["holderIdentity"],
        json!("job-a")
    );
    first.release().await.unwrap();
}

#[tokio::test]
async fn lease_expired_is_taken_over_with_the_observed_resource_version() {
    let fake = FakeKube::start().await;
    let stored = fake.insert(
        LEASES,
        NS,
        lease("job-crashed", "2020-01-01T00:00:00.000000Z", 60),
    );
    let rv = stored["metadata"]["resourceVersion"].clone();
    let guard = LeaseLock::acquire(
        &fake.client(),
        NS,
        "snapward-prod",
        "job-b",
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .expect("expired lease is taken over");
    let now = fake.get(LEASES, NS, "snapward-prod").unwrap();
    assert_eq!(now["spec"]["holderIdentity"], json!("job-b"));
    assert_eq!(now["spec"]["leaseTransitions"], json!(4));
    let put = fake
        .requests_to(LEASES)
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("takeover is a replace");
    assert_eq!(put.body.unwrap()["metadata"]["resourceVersion"], rv);
    assert_eq!(put.status, 200);
    drop(guard);
}

#[tokio::test]
async fn lease_stale_resource_version_conflict_means_busy() {
    let fake = FakeKube::start().await;
    fake.insert(
        LEASES,
        NS,
        lease("job-crashed", "2020-01-01T00:00:00.000000Z", 60),
    );
    // Another run takes the expired lease between our GET and our PUT.
    fake.after_next_get(LEASES, NS, "snapward-prod", |l| {
        l["spec"]["holderIdentity"] = json!("job-c");
        l["spec"]["renewTime"] = json!(jiff::Timestamp::now().to_string());
    });
    let got = LeaseLock::acquire(
        &fake.client(),
        NS,
        "snapward-prod",
        "job-b",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(got.is_none(), "lost the race: busy");
    let puts: Vec<u16> = fake
        .requests_to(LEASES)
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.status)
        .collect();
    assert_eq!(puts, [409]);
    assert_eq!(
        fake.get(LEASES, NS, "snapward-prod").unwrap()["spec"]["holderIdentity"],
        json!("job-c")
    );
}

#[tokio::test]
async fn lease_create_race_means_busy() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    // Both find no lease; the second POST gets 409 AlreadyExists.
    let (a, b) = tokio::join!(
        LeaseLock::acquire(
            &client,
            NS,
            "snapward-prod",
            "job-a",
            Duration::from_secs(60)
        ),
        LeaseLock::acquire(
            &client,
            NS,
            "snapward-prod",
            "job-b",
            Duration::from_secs(60)
        ),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.is_some() != b.is_some(),
        "exactly one run holds the lease"
    );
}

#[tokio::test]
async fn lease_is_renewed_and_release_frees_it_at_once() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    // 3 s: renewed every second. Short enough to see two renewals soon,
    // long enough that a late renewal on a loaded machine is not a loss.
    let guard = LeaseLock::acquire(
        &client,
        NS,
        "snapward-prod",
        "job-a",
        Duration::from_secs(3),
    )
    .await
    .unwrap()
    .unwrap();
    let renewals = || {
        fake.requests_to(LEASES)
            .iter()
            .filter(|r| r.method == "PUT" && r.status == 200)
            .count()
    };
    eventually("two renewals", || renewals() >= 2).await;
    assert!(!guard.lost());
    // Every renewal carried the resourceVersion of the previous write.
    let puts: Vec<_> = fake
        .requests_to(LEASES)
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert!(
        puts.iter()
            .all(|p| p.body.as_ref().unwrap()["metadata"]["resourceVersion"].is_string())
    );

    guard.release().await.unwrap();
    let l = fake.get(LEASES, NS, "snapward-prod").unwrap();
    assert!(l["spec"]["holderIdentity"].is_null(), "released: {l}");
    let next = LeaseLock::acquire(
        &client,
        NS,
        "snapward-prod",
        "job-b",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(next.is_some(), "a released lease is free before it expires");
}

#[tokio::test]
async fn lease_taken_by_another_holder_is_reported_lost() {
    let fake = FakeKube::start().await;
    let guard = LeaseLock::acquire(
        &fake.client(),
        NS,
        "snapward-prod",
        "job-a",
        Duration::from_secs(3),
    )
    .await
    .unwrap()
    .unwrap();
    let lost = guard.lost_token();
    fake.modify(LEASES, NS, "snapward-prod", |l| {
        l["spec"]["holderIdentity"] = json!("job-z");
    });
    tokio::time::timeout(Duration::from_secs(30), lost.cancelled())
        .await
        .expect("loss is noticed at the next renewal");
    assert!(guard.lost());
    // The renewal that noticed used the stale resourceVersion and got 409;
    // the loser never overwrote the new holder, not even on release.
    guard.release().await.unwrap();
    assert_eq!(
        fake.get(LEASES, NS, "snapward-prod").unwrap()["spec"]["holderIdentity"],
        json!("job-z")
    );
    assert!(
        fake.requests_to(LEASES)
            .iter()
            .any(|r| r.method == "PUT" && r.status == 409)
    );
}

#[test]
fn lease_holder_is_the_pod_name_or_host_and_pid() {
    let pod = |k: &str| (k == "POD_NAME").then(|| "snapward-123-abcde".to_string());
    assert_eq!(k::holder_identity(pod), "snapward-123-abcde");
    let host = |k: &str| (k == "HOSTNAME").then(|| "laptop".to_string());
    assert_eq!(
        k::holder_identity(host),
        format!("laptop-{}", std::process::id())
    );
    assert_eq!(
        k::holder_identity(|_| None),
        format!("snapward-{}", std::process::id())
    );
}

#[tokio::test]
async fn lease_forbidden_names_the_rbac_verb() {
    let fake = FakeKube::start().await;
    fake.forbid("POST", LEASES);
    let err = LeaseLock::acquire(
        &fake.client(),
        NS,
        "snapward-prod",
        "job-a",
        Duration::from_secs(60),
    )
    .await
    .err()
    .expect("403 is an error, not busy");
    assert!(
        matches!(err, KubeError::Forbidden { verb: "create", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("`leases.coordination.k8s.io`"),
        "{err}"
    );
}

// --- Discovery -------------------------------------------------------------

fn discovery(service: Option<&str>) -> KubernetesDiscovery {
    KubernetesDiscovery {
        namespace: NS.into(),
        label_selector: "app.kubernetes.io/name=openbao".into(),
        port: 8200,
        scheme: Scheme::Https,
        service_name: service.map(String::from),
        trust: Default::default(),
    }
}

/// Every node answers "uninitialised": what a wiped cluster looks like, and
/// what a half-started pod might wrongly look like.
struct AllUninitialised(Vec<String>);

#[async_trait]
impl OpenBao for AllUninitialised {
    fn node_names(&self) -> Vec<String> {
        self.0.clone()
    }
    async fn observe(&self) -> Vec<NodeStatus> {
        self.0
            .iter()
            .map(|n| NodeStatus {
                name: n.clone(),
                address: format!("https://{n}:8200"),
                init: InitState::Uninitialized,
                sealed: Some(true),
                active: false,
                cluster_id: None,
                raft_index: None,
                seal: None,
                error: None,
            })
            .collect()
    }
    async fn snapshot(
        &self,
        _node: usize,
        _out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        _cancel: &CancellationToken,
    ) -> Result<u64, BaoError> {
        Ok(0)
    }
}

fn wiped_with_keys_and_snapshot(nodes: &[NodeStatus]) -> Observation {
    Observation {
        nodes: nodes
            .iter()
            .map(|n| NodeObservation {
                name: n.name.clone(),
                init: n.init,
                sealed: n.sealed.unwrap_or(true),
                active: n.active,
                seal: None,
            })
            .collect(),
        keys_present: Some(true),
        key_entries: true,
        newest_snapshot_in: Some("local".into()),
    }
}

const AUTO: GuardPolicy = GuardPolicy {
    restore_mode: RestoreMode::Auto,
    init_allowed: true,
    explicit_restore: false,
    expected_seal: None,
};

#[tokio::test]
async fn discovery_orders_by_ordinal_and_addresses_by_service_or_ip() {
    let fake = FakeKube::start().await;
    for (name, o, ip) in [
        ("openbao-10", 10, "10.0.0.20"),
        ("openbao-2", 2, "10.0.0.12"),
        ("openbao-0", 0, "fd00::10"),
    ] {
        fake.insert("pods", NS, pod(name, o, ip, true));
    }
    for o in [1, 3, 4, 5, 6, 7, 8, 9] {
        let name = format!("openbao-{o}");
        fake.insert(
            "pods",
            NS,
            pod(&name, o, &format!("10.0.0.{}", 10 + o), true),
        );
    }
    let mut other = pod("postgres-0", 0, "10.0.9.9", true);
    other["metadata"]["labels"]["app.kubernetes.io/name"] = json!("postgres");
    fake.insert("pods", NS, other);

    let client = fake.client();
    let nodes = k::discover_nodes(&client, &discovery(Some("openbao-internal")))
        .await
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    let want: Vec<String> = (0..=10).map(|i| format!("openbao-{i}")).collect();
    assert_eq!(
        names, want,
        "numeric ordinal order, other apps filtered out"
    );
    assert_eq!(
        nodes[0].url.as_str(),
        "https://openbao-0.openbao-internal.openbao.svc:8200/"
    );
    assert!(
        nodes
            .iter()
            .all(|n| n.ready && n.running && n.reason.is_none())
    );

    let by_ip = k::discover_nodes(&client, &discovery(None)).await.unwrap();
    assert_eq!(by_ip[0].url.as_str(), "https://[fd00::10]:8200/");
    assert_eq!(by_ip[2].url.as_str(), "https://10.0.0.12:8200/");
    assert_eq!(by_ip[10].ordinal, Some(10));

    let list = fake
        .requests_to("pods")
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(
        list.query("labelSelector"),
        Some("app.kubernetes.io/name=openbao")
    );
}

#[tokio::test]
async fn not_ready_pod_is_unknown_and_the_guard_takes_no_destructive_step() {
    let fake = FakeKube::start().await;
    fake.insert("pods", NS, pod("openbao-0", 0, "10.0.0.10", true));
    fake.insert("pods", NS, pod("openbao-1", 1, "10.0.0.11", false));
    fake.insert("pods", NS, pod("openbao-2", 2, "10.0.0.12", true));
    let nodes = k::discover_nodes(&fake.client(), &discovery(None))
        .await
        .unwrap();
    assert!(!nodes[1].ready);
    assert!(
        nodes[1]
            .reason
            .as_deref()
            .unwrap()
            .contains("Ready is False"),
        "{:?}",
        nodes[1].reason
    );

    let inner = AllUninitialised(k::addresses(&nodes).into_iter().map(|(n, _)| n).collect());
    // Without the wrapper the guard would restore over a pod it cannot trust.
    let raw = inner.observe().await;
    assert_eq!(
        decide(&wiped_with_keys_and_snapshot(&raw), AUTO).branch,
        Branch::Restore
    );

    let bao = DiscoveredOpenBao::new(inner, nodes.clone());
    let seen = bao.observe().await;
    assert_eq!(
        seen.iter().map(|s| s.init).collect::<Vec<_>>(),
        [
            InitState::Uninitialized,
            InitState::Unknown,
            InitState::Uninitialized
        ]
    );
    assert_eq!(seen[1], {
        let mut u = k::unready_status(&nodes[1]);
        u.error = u.error.map(|e| e + "; OpenBao answered uninitialized");
        u.address = "https://openbao-1:8200".into();
        u
    });
    let d = decide(&wiped_with_keys_and_snapshot(&seen), AUTO);
    assert_eq!(d.branch, Branch::Retry, "{}", d.explanation);

    // A snapshot is never taken from an untrusted pod.
    let mut sink = Vec::new();
    let err = bao
        .snapshot(1, &mut sink, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, BaoError::Failed { .. }), "{err}");
}

#[tokio::test]
async fn pending_and_missing_pods_are_unknown_even_when_running_is_enough() {
    let fake = FakeKube::start().await;
    // openbao-1 is missing (deleted, not recreated yet); openbao-2 is sealed
    // (running, readiness probe failing); openbao-3 is still being created.
    fake.insert("pods", NS, pod("openbao-0", 0, "10.0.0.10", true));
    fake.insert("pods", NS, pod("openbao-2", 2, "10.0.0.12", false));
    fake.insert("pods", NS, pending_pod("openbao-3", 3));
    let nodes = k::discover_nodes(&fake.client(), &discovery(Some("openbao-internal")))
        .await
        .unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["openbao-0", "openbao-1", "openbao-2", "openbao-3"]);
    assert!(
        !nodes[1].running
            && nodes[1]
                .reason
                .as_deref()
                .unwrap()
                .contains("no pod with ordinal 1")
    );
    assert_eq!(
        nodes[1].url.as_str(),
        "https://openbao-1.openbao-internal.openbao.svc:8200/"
    );
    assert!(nodes[2].running && !nodes[2].ready);
    assert!(!nodes[3].running);
    assert!(nodes[3].reason.as_deref().unwrap().contains("Pending"));

    let inner = AllUninitialised(names.iter().map(|s| s.to_string()).collect());
    let strict = DiscoveredOpenBao::new(inner, nodes.clone());
    let st: Vec<InitState> = strict.observe().await.iter().map(|s| s.init).collect();
    assert_eq!(
        st,
        [
            InitState::Uninitialized,
            InitState::Unknown,
            InitState::Unknown,
            InitState::Unknown
        ]
    );

    let inner = AllUninitialised(names.iter().map(|s| s.to_string()).collect());
    let running = DiscoveredOpenBao::new(inner, nodes).with_readiness(Readiness::Running);
    let seen = running.observe().await;
    let st: Vec<InitState> = seen.iter().map(|s| s.init).collect();
    assert_eq!(
        st,
        [
            InitState::Uninitialized,
            InitState::Unknown,
            InitState::Uninitialized,
            InitState::Unknown
        ],
        "a sealed (running, not Ready) pod is observed; missing and pending pods stay unknown"
    );
    assert_eq!(
        decide(&wiped_with_keys_and_snapshot(&seen), AUTO).branch,
        Branch::Retry
    );
}

#[tokio::test]
async fn discovery_refuses_ambiguous_selectors_and_an_empty_match() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    let err = k::discover_nodes(&client, &discovery(None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no pod matches"), "{err}");

    fake.insert("pods", NS, pod("openbao-0", 0, "10.0.0.10", true));
    let mut twin = pod("vault-0", 0, "10.0.0.20", true);
    twin["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!("vault-0");
    fake.insert("pods", NS, twin);
    let err = k::discover_nodes(&client, &discovery(None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("both have ordinal 0"), "{err}");
}

// --- Events ----------------------------------------------------------------

#[tokio::test]
async fn events_are_written_on_the_job_pod_without_secrets() {
    let fake = FakeKube::start().await;
    let env = |k: &str| match k {
        "POD_NAME" => Some("snapward-29000000-abcde".to_string()),
        "POD_NAMESPACE" => Some(NS.to_string()),
        _ => None,
    };
    let target = k::event_target(env, Some((NS, "snapward-policy"))).unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    let sink = EventSink::new(
        fake.client(),
        target,
        Some("snapward-29000000-abcde".into()),
    );
    let secret = Secret::new("s.TOKEN-THAT-MUST-NOT-LEAK");
    sink.emit(
        EventKind::Normal,
        "SnapshotTaken",
        &format!("openbao-20261128-021500.snap, 1234 bytes, index 42 (token {secret})"),
    )
    .await;
    sink.emit(
        EventKind::Warning,
        "TargetSkipped",
        "target `r2`: credentials absent",
    )
    .await;
    sink.emit(
        EventKind::Warning,
        "TargetSkipped",
        "target `nfs`: not mounted",
    )
    .await;

    let posts: Vec<Value> = fake
        .requests_to(EVENTS)
        .into_iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(posts.len(), 3, "every event is its own object, none folded");
    assert_eq!(posts[0]["type"], json!("Normal"));
    assert_eq!(posts[0]["reason"], json!("SnapshotTaken"));
    assert_eq!(posts[0]["regarding"]["kind"], json!("Pod"));
    assert_eq!(
        posts[0]["regarding"]["name"],
        json!("snapward-29000000-abcde")
    );
    assert_eq!(posts[0]["reportingController"], json!("snapward"));
    assert_eq!(posts[1]["type"], json!("Warning"));
    assert_eq!(posts[2]["note"], json!("target `nfs`: not mounted"));
    for r in fake.requests() {
        let text = r.body.map(|b| b.to_string()).unwrap_or_default();
        assert!(!text.contains("TOKEN-THAT-MUST-NOT-LEAK"), "{text}");
    }
}

#[tokio::test]
async fn events_fall_back_to_the_policy_configmap_and_failures_are_not_fatal() {
    let none = |_: &str| None;
    assert!(k::event_target(none, None).is_none());
    let cm = k::event_target(none, Some((NS, "snapward-policy"))).unwrap();
    assert_eq!(cm.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(cm.name.as_deref(), Some("snapward-policy"));

    let fake = FakeKube::start().await;
    fake.forbid("POST", EVENTS);
    let sink = EventSink::new(fake.client(), cm, None);
    // Returns (logs a warning) instead of failing the run.
    sink.emit(
        EventKind::Warning,
        "GuardRefused",
        "keys present, no snapshot",
    )
    .await;
    assert_eq!(fake.requests_to(EVENTS)[0].status, 403);
}

// --- Policy from a ConfigMap ----------------------------------------------

#[tokio::test]
async fn policy_is_read_from_a_configmap() {
    let fake = FakeKube::start().await;
    let client = fake.client();
    fake.insert(
        "configmaps",
        NS,
        json!({"metadata": {"name": "one"}, "data": {"policy.yaml": "kind: SnapshotPolicy\n", "README": "x"}}),
    );
    fake.insert(
        "configmaps",
        NS,
        json!({"metadata": {"name": "two"}, "data": {"a.yaml": "a", "b.yml": "b"}}),
    );
    let (origin, text) = k::read_policy_configmap(&client, "openbao/one")
        .await
        .unwrap();
    assert_eq!(origin, "configmap openbao/one:policy.yaml");
    assert_eq!(text, "kind: SnapshotPolicy\n");

    let (origin, text) = k::read_policy_configmap(&client, "openbao/two:b.yml")
        .await
        .unwrap();
    assert_eq!(
        (origin.as_str(), text.as_str()),
        ("configmap openbao/two:b.yml", "b")
    );

    let err = k::read_policy_configmap(&client, "openbao/two")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("several YAML keys (keys: a.yaml, b.yml)"),
        "{err}"
    );
    let err = k::read_policy_configmap(&client, "openbao/one:nope.yaml")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no data key `nope.yaml`"), "{err}");
    let err = k::read_policy_configmap(&client, "openbao/missing")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            KubeError::NotFound {
                resource: "configmaps",
                ..
            }
        ),
        "{err}"
    );
    let err = k::read_policy_configmap(&client, "no-slash")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NAMESPACE/NAME[:KEY]"), "{err}");
}

// --- Pod restart -----------------------------------------------------------

#[tokio::test]
async fn restart_pod_waits_for_a_new_uid_that_is_ready() {
    let fake = FakeKube::start().await;
    let old = fake.insert("pods", NS, pod("openbao-0", 0, "10.0.0.10", true));
    fake.recreate_on_delete(NS, "openbao-0");
    k::restart_pod(
        &fake.client(),
        NS,
        "openbao-0",
        Readiness::Ready,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let now = fake.get("pods", NS, "openbao-0").unwrap();
    assert_ne!(now["metadata"]["uid"], old["metadata"]["uid"]);
    assert_eq!(now["status"]["conditions"][0]["status"], json!("True"));
    let delete = fake
        .requests_to("pods")
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(
        delete.body.unwrap()["preconditions"]["uid"],
        old["metadata"]["uid"],
        "deletes exactly the pod it looked at"
    );
    let statuses: Vec<u16> = fake
        .requests_to("pods")
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.status)
        .collect();
    assert!(
        statuses.contains(&404),
        "waited through the gap: {statuses:?}"
    );
}

#[tokio::test]
async fn restart_pod_running_is_enough_for_a_sealed_server() {
    let fake = FakeKube::start().await;
    let old = fake.insert("pods", NS, pod("openbao-0", 0, "10.0.0.10", true));
    fake.recreate_on_delete(NS, "openbao-0");
    k::restart_pod(
        &fake.client(),
        NS,
        "openbao-0",
        Readiness::Running,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let now = fake.get("pods", NS, "openbao-0").unwrap();
    assert_ne!(now["metadata"]["uid"], old["metadata"]["uid"]);
    assert_eq!(now["status"]["phase"], json!("Running"));
    assert_eq!(
        now["status"]["conditions"][0]["status"],
        json!("False"),
        "returned as soon as the new server runs, before it is Ready"
    );
}

#[tokio::test]
async fn restart_pod_refuses_a_pod_nothing_would_recreate() {
    let fake = FakeKube::start().await;
    let mut bare = pod("openbao-0", 0, "10.0.0.10", true);
    bare["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    fake.insert("pods", NS, bare);
    let err = k::restart_pod(
        &fake.client(),
        NS,
        "openbao-0",
        Readiness::Ready,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("not owned by a StatefulSet"),
        "{err}"
    );
    assert!(fake.requests_to("pods").iter().all(|r| r.method == "GET"));
    assert!(fake.get("pods", NS, "openbao-0").is_some());
}

// --- Client ----------------------------------------------------------------

#[tokio::test]
async fn client_from_an_explicit_kubeconfig() {
    let fake = FakeKube::start().await;
    fake.insert(
        "configmaps",
        "team-a",
        json!({"metadata": {"name": "p"}, "data": {"p.yaml": "x"}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: laptop\n\
             clusters:\n- name: fake\n  cluster:\n    server: {}\n\
             contexts:\n- name: laptop\n  context:\n    cluster: fake\n    user: me\n    namespace: team-a\n\
             users:\n- name: me\n  user:\n    token: t0ken\n",
            fake.url
        ),
    )
    .unwrap();
    let client = k::client(Some(&path)).await.unwrap();
    assert_eq!(client.default_namespace(), "team-a");
    let (_, text) = k::read_policy_configmap(&client, "team-a/p").await.unwrap();
    assert_eq!(text, "x");

    let err = k::client(Some(&dir.path().join("missing")))
        .await
        .err()
        .expect("a missing kubeconfig is an error");
    assert!(matches!(err, KubeError::Config { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn one_rustls_provider_kube_tls_and_reqwest_coexist() {
    // DEPENDENCIES.md: kube's default `ring` next to reqwest's/aws-sdk's
    // `aws-lc-rs` makes building a TLS client panic. Build both TLS stacks
    // in one process.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
         clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
         users:\n- name: u\n  user: {}\n",
    )
    .unwrap();
    k::client(Some(&path)).await.expect("kube https client");
    reqwest::Client::builder()
        .build()
        .expect("reqwest rustls client");
}
