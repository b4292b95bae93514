//! `snapward run` on Kubernetes (issue 5): the real binary, a real OpenBao
//! server, and the in-test API server of `support::kube_api` (see its module
//! docs for why an HTTP server and not a tower mock). The binary reaches the
//! API through a kubeconfig, as from a laptop; each test asserts on what the
//! API server received and holds (Secret, Lease, Events, pod deletes) and on
//! the real OpenBao server's state.
//!
//! Needs `eval "$(scripts/test-env.sh)"` (SNAPWARD_TEST_BAO).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::bao::BaoCluster;
use crate::support::cmd;
use crate::support::kube_api::{FakeKube, Logged, pending_pod, pod};
use crate::support::outcome::Outcome;

const NS: &str = "openbao";
const POLICY: &str = "kdrill";
const LEASE: &str = "snapward-kdrill";
const SECRET: &str = "openbao-keys";
/// The Job pod Events are about (downward API in a real Job).
const JOB_POD: &str = "snapward-restore-x7k2p";
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// Policy knobs the tests vary.
struct Opts {
    shares: u32,
    threshold: u32,
    trust: &'static str,
    restart_pod: bool,
    /// `local.path` (default: the harness's `snapshots/`).
    snap_dir: Option<PathBuf>,
    /// `timeouts.request`.
    request_timeout: &'static str,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            shares: 3,
            threshold: 2,
            trust: "running",
            restart_pod: false,
            snap_dir: None,
            request_timeout: "30s",
        }
    }
}

/// The work dir, the fake API server and how to run the binary. OpenBao
/// stays outside so a test can restart it while a run is under way.
struct Harness {
    dir: tempfile::TempDir,
    kube: FakeKube,
    kubeconfig: PathBuf,
    bao_port: u16,
}

impl Harness {
    async fn new(bao: &BaoCluster) -> Self {
        Self::with_port(bao.address(0).port().expect("bao port")).await
    }

    /// A harness whose pods serve on `bao_port` of 127.0.0.1.
    async fn with_port(bao_port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("snapward-kube-run-")
            .tempdir()
            .expect("work dir");
        let kube = FakeKube::start().await;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\n\
                 clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
                 users: [{{name: fake, user: {{}}}}]\n\
                 contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {NS}}}}}]\n\
                 current-context: fake\n",
                kube.url
            ),
        )
        .expect("write kubeconfig");
        Self {
            dir,
            kube,
            kubeconfig,
            bao_port,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn snap_dir(&self) -> PathBuf {
        self.path("snapshots")
    }

    fn token_file(&self) -> PathBuf {
        self.path("token")
    }

    fn policy_yaml(&self, o: &Opts) -> String {
        format!(
            "apiVersion: snapward.dev/v1alpha1\n\
             kind: SnapshotPolicy\n\
             metadata: {{name: {POLICY}, namespace: {NS}}}\n\
             spec:\n\
             \x20 cluster:\n\
             \x20   discovery:\n\
             \x20     kubernetes:\n\
             \x20       namespace: {NS}\n\
             \x20       labelSelector: app.kubernetes.io/name=openbao\n\
             \x20       port: {port}\n\
             \x20       scheme: http\n\
             \x20       trust: {trust}\n\
             \x20   allowInsecureHttp: true\n\
             \x20   auth: {{tokenFile: {token}}}\n\
             \x20   timeouts: {{connect: 2s, request: {request}, streamIdle: 30s}}\n\
             \x20 local:\n\
             \x20   path: {snaps}\n\
             \x20   prefix: openbao-\n\
             \x20   retention: {{keepLast: 10}}\n\
             \x20 unsealKeys:\n\
             \x20   kubernetesSecret: {{name: {SECRET}}}\n\
             \x20 restore:\n\
             \x20   mode: auto\n\
             \x20   applyTimeout: 90s\n\
             \x20   joinTimeout: 90s\n\
             \x20   restartPod: {restart}\n\
             \x20 init: {{allowed: true, shares: {shares}, threshold: {threshold}, storeRootToken: true}}\n",
            port = self.bao_port,
            trust = o.trust,
            token = self.token_file().display(),
            snaps = o
                .snap_dir
                .clone()
                .unwrap_or_else(|| self.snap_dir())
                .display(),
            request = o.request_timeout,
            restart = o.restart_pod,
            shares = o.shares,
            threshold = o.threshold,
        )
    }

    fn policy(&self, o: &Opts) -> PathBuf {
        self.policy_named("policy.yaml", o)
    }

    fn policy_named(&self, file: &str, o: &Opts) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, self.policy_yaml(o)).expect("write policy");
        p
    }

    /// `snapward <args> --kubeconfig K --report R`, as the Job pod
    /// `JOB_POD` when `as_job` (Events are then about that pod).
    async fn snapward(&self, args: &[&str], as_job: bool) -> Outcome {
        let (mut cmd, all, report) = self.command(args, as_job.then_some(JOB_POD));
        Self::finish(cmd.spawn().expect("start snapward"), all, report).await
    }

    /// The command line of [`Self::snapward`] as pod `pod` (if any),
    /// not started.
    fn command(
        &self,
        args: &[&str],
        pod: Option<&str>,
    ) -> (tokio::process::Command, Vec<String>, PathBuf) {
        let report = self.path(&format!(
            "report-{}.json",
            jiff::Timestamp::now().as_nanosecond()
        ));
        let mut all: Vec<String> = vec!["--log-format".into(), "json".into()];
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend([
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--report".into(),
            report.display().to_string(),
        ]);
        let mut cmd = cmd::snapward_async();
        // Not in a cluster, and in a pod only when `pod` says so.
        cmd.args(&all)
            .env("SNAPWARD_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(pod) = pod {
            cmd.env("POD_NAME", pod).env("POD_NAMESPACE", NS);
        }
        (cmd, all, report)
    }

    async fn finish(child: tokio::process::Child, all: Vec<String>, report: PathBuf) -> Outcome {
        let out = cmd::finish(child, RUN_TIMEOUT).await;
        Outcome::new(&all, &out, &report)
    }

    async fn run(&self, policy: &Path) -> Outcome {
        self.snapward(&["run", "-f", &policy.display().to_string()], true)
            .await
    }

    /// The key Secret's entries, decoded.
    fn secret_entries(&self) -> Option<Vec<(String, String)>> {
        let s = self.kube.get("secrets", NS, SECRET)?;
        let data = s["data"].as_object()?.clone();
        Some(
            data.into_iter()
                .map(|(k, v)| {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str().unwrap_or(""))
                        .expect("base64");
                    (k, String::from_utf8(raw).expect("utf-8"))
                })
                .collect(),
        )
    }

    fn secret_values(&self) -> Vec<String> {
        self.secret_entries()
            .unwrap_or_default()
            .into_iter()
            .map(|(_, v)| v)
            .collect()
    }

    /// `(type, reason, note)` of every Event written, in order.
    fn events(&self) -> Vec<(String, String, String)> {
        self.kube
            .requests_to("events.events.k8s.io")
            .into_iter()
            .filter(|r| r.method == "POST")
            .filter_map(|r| r.body)
            .map(|b| {
                (
                    b["type"].as_str().unwrap_or("").to_string(),
                    b["reason"].as_str().unwrap_or("").to_string(),
                    b["note"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn event_reasons(&self) -> Vec<String> {
        self.events().into_iter().map(|(_, r, _)| r).collect()
    }

    /// No key share or token in any output, report or Event.
    fn assert_no_secret_leaked(&self, outs: &[&Outcome], extra: &[String]) {
        let mut secrets = self.secret_values();
        secrets.extend(extra.iter().cloned());
        let events = format!("{:?}", self.events());
        for s in secrets.iter().filter(|s| s.len() >= 8) {
            for o in outs {
                for (what, text) in [
                    ("stdout", &o.stdout),
                    ("stderr", &o.stderr),
                    ("the report", &o.report.to_string()),
                ] {
                    assert!(
                        !text.contains(s.as_str()),
                        "a secret ({} chars) appears in {what} of snapward {}",
                        s.len(),
                        o.args.join(" ")
                    );
                }
            }
            assert!(
                !events.contains(s.as_str()),
                "a secret appears in an Event note"
            );
        }
    }
}

fn writes_to(requests: &[Logged]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}?{:?} → {}", r.method, r.path, r.query, r.status))
        .collect()
}

/// A Lease as another run would have written it, renewed `age_s` ago.
fn lease(holder: &str, age_s: i64) -> Value {
    let t = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(age_s))
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        .to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": NS},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 60,
            "acquireTime": t,
            "renewTime": t,
            "leaseTransitions": 0,
        },
    })
}

fn key_secret(keys: &[String], root: &str) -> Value {
    let mut data = serde_json::Map::new();
    let b64 = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s));
    for (i, k) in keys.iter().enumerate() {
        data.insert(format!("unseal-key-{i}"), b64(k));
    }
    data.insert("root-token".into(), b64(root));
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NS},
        "type": "Opaque",
        "immutable": true,
        "data": data,
    })
}

fn seal(v: &Value) -> (bool, bool) {
    (
        v["initialized"].as_bool().unwrap_or(false),
        v["sealed"].as_bool().unwrap_or(true),
    )
}

/// Issue 5 items 2, 3, 4, 5 on a fresh cluster: discovery finds the sealed
/// (NotReady) pod and trusts it (`trust: running`), init **creates** the
/// key Secret once (a dry-run create first, then one create, never an
/// update), the Lease is taken and released, Events land on the Job's pod;
/// the next run backs up and only reads the Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_init_creates_the_key_secret_once_then_backup_only_reads_it() {
    let bao = BaoCluster::single().await;
    let h = Harness::new(&bao).await;
    // Sealed and uninitialised: the Helm chart's probe fails → NotReady.
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", false));
    let policy = h.policy(&Opts::default());

    let first = h.run(&policy).await;
    first.expect_exit(0);
    assert_eq!(first.branch(), "init", "{}", first.context());
    for id in ["init", "store-keys", "init-unseal"] {
        assert_eq!(first.status(id), "succeeded", "{id}: {}", first.context());
    }
    assert_eq!(seal(&bao.seal_status(0).await), (true, false), "unsealed");

    // The Secret: created once, immutable, every share + the root token,
    // and the key shape (not a secret).
    let secret = h.kube.get("secrets", NS, SECRET).expect("the key Secret");
    assert_eq!(secret["immutable"], json!(true));
    let mut names: Vec<String> = h
        .secret_entries()
        .expect("entries")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "key-shape",
            "root-token",
            "unseal-key-0",
            "unseal-key-1",
            "unseal-key-2"
        ]
    );
    let secret_writes = writes_to(&h.kube.requests_to("secrets"));
    assert_eq!(
        secret_writes.len(),
        2,
        "a dry-run create, then one create: {secret_writes:?}"
    );
    assert!(
        secret_writes[0].contains("dryRun") && !secret_writes[1].contains("dryRun"),
        "{secret_writes:?}"
    );
    assert!(secret_writes.iter().all(|w| w.starts_with("POST")));

    // The Lease: created, then released (no holder).
    let l = h
        .kube
        .get("leases.coordination.k8s.io", NS, LEASE)
        .expect("the run Lease");
    assert!(
        l["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "released: {l}"
    );
    // Events on the Job's pod.
    let ev = h.kube.requests_to("events.events.k8s.io");
    assert!(!ev.is_empty(), "Events were written");
    for e in ev.iter().filter_map(|e| e.body.as_ref()) {
        assert_eq!(e["regarding"]["kind"], "Pod", "{e}");
        assert_eq!(e["regarding"]["name"], JOB_POD, "{e}");
    }
    let reasons = h.event_reasons();
    assert!(
        reasons.contains(&"Initialized".into()) && reasons.contains(&"KeysStored".into()),
        "{reasons:?}"
    );

    // Backup: the operator gives snapward a token (here the root token).
    let root = h
        .secret_entries()
        .expect("entries")
        .into_iter()
        .find(|(k, _)| k == "root-token")
        .map(|(_, v)| v)
        .expect("root token stored");
    std::fs::write(h.token_file(), &root).expect("token file");
    let before = h.kube.requests_to("secrets").len();
    let second = h.run(&policy).await;
    second.expect_exit(0);
    assert_eq!(second.branch(), "backup", "{}", second.context());
    assert_eq!(
        second.status("snapshot"),
        "succeeded",
        "{}",
        second.context()
    );
    let snaps: Vec<_> = std::fs::read_dir(h.snap_dir())
        .expect("snapshots dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .collect();
    assert_eq!(snaps.len(), 1, "one snapshot");
    let later = &h.kube.requests_to("secrets")[before..];
    assert!(
        writes_to(later).is_empty(),
        "a backup never writes the key Secret: {:?}",
        writes_to(later)
    );
    assert!(
        h.event_reasons().contains(&"SnapshotTaken".into()),
        "{:?}",
        h.event_reasons()
    );
    h.assert_no_secret_leaked(&[&first, &second], &[]);
}

/// Issue 5 item 2: a pod that is not trusted is `unknown`, never
/// `uninitialised` — on a fresh server nothing is initialised, no Secret is
/// created, and the run asks to retry. Both rules: a Pending pod under
/// `trust: running`, and a Running-but-NotReady pod under `trust: ready`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_pod_not_serving_is_unknown_so_nothing_destructive_runs() {
    let bao = BaoCluster::single().await;
    for (trust, p) in [
        ("running", pending_pod("openbao-0", 0)),
        ("ready", pod("openbao-0", 0, "127.0.0.1", false)),
    ] {
        let h = Harness::new(&bao).await;
        h.kube.insert("pods", NS, p);
        let policy = h.policy(&Opts {
            trust,
            ..Opts::default()
        });
        let out = h.run(&policy).await;
        out.expect_exit(4);
        assert_eq!(out.branch(), "retry", "trust {trust}: {}", out.context());
        for id in ["init", "store-keys", "init-unseal", "restore"] {
            assert_ne!(out.status(id), "succeeded", "trust {trust}: {id} ran");
        }
        assert!(
            !seal(&bao.seal_status(0).await).0,
            "trust {trust}: the server must stay uninitialised"
        );
        assert!(h.kube.get("secrets", NS, SECRET).is_none());
        assert!(
            writes_to(&h.kube.requests_to("secrets")).is_empty(),
            "trust {trust}: {:?}",
            writes_to(&h.kube.requests_to("secrets"))
        );
        let events = h.events();
        assert!(
            events
                .iter()
                .any(|(t, r, _)| t == "Warning" && r == "GuardWaiting"),
            "trust {trust}: {events:?}"
        );
    }
}

/// Issue 5 item 3: before `sys/init`, a server-side dry-run create proves
/// the key Secret can be created. Without RBAC `create` on secrets (403)
/// init refuses while the server is still uninitialised — otherwise the new
/// keys would exist only in this process's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_init_refuses_before_initialising_when_the_secret_cannot_be_created() {
    let bao = BaoCluster::single().await;
    let h = Harness::new(&bao).await;
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", false));
    h.kube.forbid("POST", "secrets");
    let out = h.run(&h.policy(&Opts::default())).await;
    out.expect_exit(4);
    assert_eq!(out.branch(), "init", "{}", out.context());
    assert_eq!(out.status("init"), "failed", "{}", out.context());
    let reason = out.action("init")["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("could not be stored") && reason.contains("secrets"),
        "the reason names the store and the RBAC rule: {reason}"
    );
    assert!(
        !seal(&bao.seal_status(0).await).0,
        "the server must stay uninitialised"
    );
    assert!(h.kube.get("secrets", NS, SECRET).is_none());
    let reasons = h.event_reasons();
    assert!(reasons.contains(&"InitFailed".into()), "{reasons:?}");
}

/// Discovery that finds no pod is a clear "retry" (exit 4) naming the
/// selector, and the Lease is given back at once (the next run does not
/// wait for it to expire).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_no_pod_found_is_retry_and_the_lease_is_released() {
    let h = Harness::with_port(8200).await;
    let out = h.run(&h.policy(&Opts::default())).await;
    // Discovery runs before the run itself: no report.
    out.expect_exit_without_report(4);
    assert!(
        out.stderr.contains("no pod matches the label selector")
            && out.stderr.contains("app.kubernetes.io/name=openbao"),
        "{}",
        out.context()
    );
    let l = h
        .kube
        .get("leases.coordination.k8s.io", NS, LEASE)
        .expect("the Lease was taken before discovery");
    assert!(
        l["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "released: {l}"
    );
}

/// Issue 5 item 4 (and issue 6 item 7 on Kubernetes): a live Lease held by
/// another run → exit 5 "busy" before anything is read or written (no pod
/// list, no Secret, no Event; the fresh server stays uninitialised). Once
/// that Lease has expired, the next run takes it over and proceeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_live_lease_makes_a_second_run_busy_and_an_expired_one_is_taken_over() {
    let bao = BaoCluster::single().await;
    let h = Harness::new(&bao).await;
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", true));
    h.kube.insert(
        "leases.coordination.k8s.io",
        NS,
        lease("snapward-backup-111", 5),
    );
    let policy = h.policy(&Opts::default());

    let busy = h.run(&policy).await;
    busy.expect_exit_without_report(5);
    assert!(busy.stderr.contains("busy"), "{}", busy.context());
    assert!(
        h.kube.requests_to("pods").is_empty(),
        "no discovery while busy"
    );
    assert!(h.kube.requests_to("secrets").is_empty());
    assert!(h.kube.requests_to("events.events.k8s.io").is_empty());
    assert!(!seal(&bao.seal_status(0).await).0, "untouched");
    let l = h
        .kube
        .get("leases.coordination.k8s.io", NS, LEASE)
        .expect("lease");
    assert_eq!(l["spec"]["holderIdentity"], "snapward-backup-111");

    // The other run crashed 10 minutes ago: its Lease expired.
    h.kube.modify("leases.coordination.k8s.io", NS, LEASE, |l| {
        *l = lease("snapward-backup-111", 600);
    });
    let next = h.run(&policy).await;
    next.expect_exit(0);
    assert_eq!(next.branch(), "init", "{}", next.context());
    let l = h
        .kube
        .get("leases.coordination.k8s.io", NS, LEASE)
        .expect("lease");
    assert_eq!(l["spec"]["leaseTransitions"], json!(1), "{l}");
    assert!(
        l["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "released after the run: {l}"
    );
    h.assert_no_secret_leaked(&[&busy, &next], &[]);
}

/// Issue 6 item 7 on Kubernetes: two runs of one policy at once, in two
/// pods (each with its own snapshot volume, so only the Lease keeps them
/// apart). Run A holds the Lease while it waits on a node that never
/// answers; run B, started once the Lease shows A as holder, exits 5 and
/// writes nothing. No timing decides the outcome: B starts only after the
/// API server holds A's Lease, and A is killed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_two_runs_at_once_one_holds_the_lease_and_the_other_is_busy() {
    // A "node" that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let h = Harness::with_port(port).await;
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", true));
    let a_policy = h.policy_named(
        "a.yaml",
        &Opts {
            snap_dir: Some(h.path("a-snapshots")),
            request_timeout: "600s",
            ..Opts::default()
        },
    );
    let b_policy = h.policy_named(
        "b.yaml",
        &Opts {
            snap_dir: Some(h.path("b-snapshots")),
            ..Opts::default()
        },
    );
    let (mut a_cmd, _, _) = h.command(
        &["run", "-f", &a_policy.display().to_string()],
        Some("run-a"),
    );
    let mut a = a_cmd.spawn().expect("start run A");
    // Wait until the API server holds A's Lease (an upper bound, not a race).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let holder = h
            .kube
            .get("leases.coordination.k8s.io", NS, LEASE)
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from));
        if holder.as_deref() == Some("run-a") {
            break;
        }
        assert!(
            a.try_wait().expect("poll run A").is_none(),
            "run A ended before it held the Lease"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "run A never took the Lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (b_cmd, b_all, b_report) = h.command(
        &["run", "-f", &b_policy.display().to_string()],
        Some("run-b"),
    );
    let mut b_cmd = b_cmd;
    let b = Harness::finish(b_cmd.spawn().expect("start run B"), b_all, b_report).await;
    b.expect_exit_without_report(5);
    assert!(
        b.stderr.contains("holds the Lease"),
        "B names the Lease: {}",
        b.context()
    );
    let b_files: Vec<String> = std::fs::read_dir(h.path("b-snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        b_files.iter().all(|f| f == ".snapward-kdrill.lock"),
        "B wrote nothing but its (empty) lock file: {b_files:?}"
    );
    let l = h
        .kube
        .get("leases.coordination.k8s.io", NS, LEASE)
        .expect("lease");
    assert_eq!(
        l["spec"]["holderIdentity"], "run-a",
        "B did not take A's Lease"
    );
    assert!(
        a.try_wait().expect("poll run A").is_none(),
        "run A is still under way (holding the Lease)"
    );
    a.kill().await.expect("kill run A");
    hold.abort();
}

/// Issue 5 item 7: `--policy-configmap NAMESPACE/NAME[:KEY]` reads the
/// policy through the API (no file), and Events then land on that
/// ConfigMap when the run is not in a pod. A missing ConfigMap is a clear
/// usage error (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_policy_is_read_from_a_configmap() {
    let bao = BaoCluster::single().await;
    let h = Harness::new(&bao).await;
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", false));
    h.kube.insert(
        "configmaps",
        NS,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "snapward-policy", "namespace": NS},
            "data": {"policy.yaml": h.policy_yaml(&Opts::default()), "README": "not a policy"},
        }),
    );
    let missing = h
        .snapward(&["run", "--policy-configmap", "openbao/nope"], false)
        .await;
    missing.expect_exit_without_report(2);
    assert!(
        missing.stderr.contains("configmaps") && missing.stderr.contains("nope"),
        "{}",
        missing.context()
    );

    let out = h
        .snapward(
            &["run", "--policy-configmap", "openbao/snapward-policy"],
            false,
        )
        .await;
    out.expect_exit(0);
    assert_eq!(out.branch(), "init", "{}", out.context());
    assert!(
        !h.path("policy.yaml").exists(),
        "no policy file was written: the policy came from the API"
    );
    let ev: Vec<Value> = h
        .kube
        .requests_to("events.events.k8s.io")
        .into_iter()
        .filter_map(|e| e.body)
        .collect();
    assert!(!ev.is_empty());
    for e in &ev {
        assert_eq!(e["regarding"]["kind"], "ConfigMap", "{e}");
        assert_eq!(e["regarding"]["name"], "snapward-policy", "{e}");
    }
    h.assert_no_secret_leaked(&[&missing, &out], &[]);
}

/// Issue 5 items 3 and 6: a wiped cluster is restored with the keys from
/// the Secret, which the restore only reads. The policy's `init` shape
/// (1/1) differs from the stored keys (3/2), so node 0 rejects them after
/// the restore ("invalid key size", docs/openbao.md): snapward deletes the
/// node-0 pod (uid precondition), waits for the StatefulSet to bring it
/// back — here the deletion restarts the real server process — unseals it
/// and verifies the data written before the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_restore_reads_keys_from_the_secret_and_restarts_node0_when_they_do_not_fit() {
    let mut bao = BaoCluster::single().await;
    let (keys, root) = bao.init_unsealed(3, 2).await;
    bao.enable_kv().await;
    bao.write_secret("before", json!({"v": "kept"})).await;
    let h = Harness::new(&bao).await;
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", true));
    h.kube.insert("secrets", NS, key_secret(&keys, &root));
    std::fs::write(h.token_file(), &root).expect("token file");
    let policy = h.policy(&Opts {
        restart_pod: true,
        shares: 1,
        threshold: 1,
        ..Opts::default()
    });
    let backup = h.run(&policy).await;
    backup.expect_exit(0);
    assert_eq!(backup.branch(), "backup", "{}", backup.context());

    bao.write_secret("after", json!({"v": "gone"})).await;
    bao.wipe(0).await;
    assert!(!seal(&bao.seal_status(0).await).0, "wiped");

    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    h.kube.recreate_on_delete(NS, "openbao-0");
    h.kube.on_delete("pods", NS, "openbao-0", move || {
        let _ = tx.send(());
    });
    let secret_requests = h.kube.requests_to("secrets").len();
    let run = h.run(&policy);
    tokio::pin!(run);
    let mut restarted = false;
    let restore = tokio::select! {
        out = &mut run => out,
        _ = &mut rx => {
            // What the StatefulSet does: a new server process on the same data.
            bao.stop(0);
            bao.start(0).await;
            restarted = true;
            run.await
        }
    };
    restore.expect_exit(0);
    assert_eq!(restore.branch(), "restore", "{}", restore.context());
    assert!(
        restarted,
        "the node-0 pod was deleted: {}",
        restore.context()
    );
    assert!(
        !restore.items_of("restore-unseal", "restarted").is_empty(),
        "{}",
        restore.context()
    );
    assert_eq!(restore.status("verify-cluster"), "succeeded");
    let deletes: Vec<Logged> = h
        .kube
        .requests_to("pods")
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "exactly one pod delete");
    assert!(deletes[0].path.ends_with("/pods/openbao-0"));
    assert!(
        deletes[0]
            .body
            .as_ref()
            .is_some_and(|b| b["preconditions"]["uid"].is_string()),
        "the delete carries the old pod's uid"
    );
    // The restore only read the Secret.
    let during = &h.kube.requests_to("secrets")[secret_requests..];
    assert!(!during.is_empty(), "the keys were read from the Secret");
    assert!(writes_to(during).is_empty(), "{:?}", writes_to(during));
    // Data from before the backup, read with the original root token.
    bao.set_root_token(&root);
    assert_eq!(
        bao.read_secret("before").await.map(|d| d["v"].clone()),
        Some(json!("kept"))
    );
    assert_eq!(bao.read_secret("after").await, None);
    let reasons = h.event_reasons();
    assert!(
        reasons.contains(&"RestoreStarted".into()) && reasons.contains(&"RestoreFinished".into()),
        "{reasons:?}"
    );
    let mut secrets = keys.clone();
    secrets.push(root.clone());
    h.assert_no_secret_leaked(&[&backup, &restore], &secrets);
}

/// `spec.restoreTest` in a Kubernetes run: the rehearsal reads the key
/// Secret through the API and never writes it, takes no Lease of its own,
/// and emits no Events of its own; the run announces `RestoreTestPassed`.
/// A rehearsal that fails (the throwaway server cannot start: a broken
/// seal stanza) is a Warning `RestoreTestFailed` and exit 6, the backup
/// kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_restore_test_reads_the_secret_and_announces_its_result() {
    let bao = BaoCluster::single().await;
    let h = Harness::new(&bao).await;
    h.kube
        .insert("pods", NS, pod("openbao-0", 0, "127.0.0.1", false));
    let policy = h.policy(&Opts::default());
    h.run(&policy).await.expect_exit(0);
    let root = h
        .secret_entries()
        .expect("entries")
        .into_iter()
        .find(|(k, _)| k == "root-token")
        .map(|(_, v)| v)
        .expect("root token stored");
    std::fs::write(h.token_file(), &root).expect("token file");
    let yaml = format!(
        "{}  restoreTest: {{baoBinary: {}, from: local, workDir: {}}}\n",
        h.policy_yaml(&Opts::default()),
        crate::support::bao::bao_binary().display(),
        h.path("rehearsal").display()
    );
    let rehearsing = h.path("rehearsing.yaml");
    std::fs::write(&rehearsing, yaml).expect("write policy");
    let before = h.kube.requests_to("secrets").len();
    let events_before = h.events().len();

    let r = h.run(&rehearsing).await;
    r.expect_exit(0);
    assert_eq!(
        r.status("restore-test:local"),
        "succeeded",
        "{}",
        r.context()
    );
    let later = &h.kube.requests_to("secrets")[before..];
    assert!(!later.is_empty(), "the rehearsal read the key Secret");
    assert!(writes_to(later).is_empty(), "{:?}", writes_to(later));
    assert!(
        h.kube
            .get(
                "leases.coordination.k8s.io",
                NS,
                &format!("{LEASE}-restore-test")
            )
            .is_none(),
        "a rehearsal takes no Lease"
    );
    let new: Vec<String> = h.events()[events_before..]
        .iter()
        .map(|(_, reason, _)| reason.clone())
        .collect();
    assert!(new.contains(&"RestoreTestPassed".into()), "{new:?}");
    for nested in ["RestoreFinished", "GuardRefused", "Initialized"] {
        assert!(
            !new.contains(&nested.into()),
            "the rehearsal's own Event {nested}: {new:?}"
        );
    }

    // A rehearsal that cannot start: Warning RestoreTestFailed, exit 6.
    let broken = h.path("broken.hcl");
    std::fs::write(
        &broken,
        "seal \"static\" {\n  current_key = \"file:///nonexistent\"\n}\n",
    )
    .expect("write");
    let yaml = std::fs::read_to_string(&rehearsing).expect("read").replace(
        "from: local,",
        &format!("from: local, sealConfigFile: {},", broken.display()),
    );
    std::fs::write(&rehearsing, yaml).expect("write");
    let events_before = h.events().len();
    let r = h.run(&rehearsing).await;
    r.expect_exit(6);
    assert_eq!(r.status("snapshot"), "succeeded", "{}", r.context());
    let failed: Vec<(String, String, String)> = h.events()[events_before..]
        .iter()
        .filter(|(_, reason, _)| reason == "RestoreTestFailed")
        .cloned()
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", h.events());
    assert_eq!(failed[0].0, "Warning");
    h.assert_no_secret_leaked(&[&r], &[]);
}
