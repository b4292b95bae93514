//! Disaster-recovery drills: a real OpenBao cluster ([`BaoCluster`]), an
//! optional real S3 server (moto), a work dir holding the key store, the
//! local snapshot store, policies and run reports — and the real `snapward`
//! binary driven through its CLI, its exit code and its JSON report.
//!
//! Every run is checked for leaked secrets: no key share and no root token
//! known to the drill may appear in stdout, stderr or the report
//! (invariant 9 (README \"Guarantees\")).
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::bao::{BaoCluster, WAIT};
use super::outcome::Outcome;
use super::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use super::work::files_in;

/// Bucket and object prefix of the S3 target (`s3`).
pub const BUCKET: &str = "drills";
pub const S3_PREFIX: &str = "drill/";
/// `local.prefix`: snapshots are `openbao-YYYYMMDD-HHMMSS.snap`.
pub const SNAP_PREFIX: &str = "openbao-";
/// The key shape of every drill cluster (also the temp-init shape).
pub const SHARES: u32 = 3;
pub const THRESHOLD: u32 = 2;
/// The actions of the restore branch.
pub const RESTORE: [&str; 4] = ["fetch", "restore", "restore-unseal", "verify-cluster"];
/// The actions of the init branch.
pub const INIT: [&str; 3] = ["init", "store-keys", "init-unseal"];
/// Longest one `snapward` process may run before the drill fails: above
/// the policies' 300 s apply and join timeouts, so a run that waits them
/// out reports it instead of being killed.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// What a drill policy says. Paths default to the drill's `keys/` and
/// `snapshots/` dirs.
#[derive(Debug, Clone)]
pub struct PolicyOpts {
    /// `auto` | `manual` | `disabled`.
    pub mode: &'static str,
    pub init_allowed: bool,
    pub store_root_token: bool,
    pub keys_dir: PathBuf,
    pub snap_dir: PathBuf,
    /// Add the S3 target `s3` (needs the drill's S3 server).
    pub s3: bool,
    /// `keepLast` of the S3 target.
    pub s3_keep: u32,
    /// The S3 target streams (the policy default); `false` writes
    /// `stream: false` (the upload from the local file).
    pub s3_stream: bool,
    /// Add the filesystem target `nfs` at this directory (keepLast 10).
    pub nfs: Option<PathBuf>,
    /// `restore.applyTimeout` / `restore.joinTimeout`: bounds a healthy
    /// run never reaches, even with six OpenBao processes on two cores.
    pub apply_timeout: &'static str,
    pub join_timeout: &'static str,
}

/// A drill's servers and work dir.
pub struct Drill {
    pub bao: BaoCluster,
    /// The KMS of a transit-sealed `bao` ([`Drill::single_transit`]).
    pub kms: Option<BaoCluster>,
    pub s3: Option<S3Server>,
    dir: tempfile::TempDir,
    reports: AtomicUsize,
    /// Secrets that must never appear in any output.
    secrets: Mutex<Vec<String>>,
}

impl Drill {
    /// One OpenBao node (started, uninitialised); moto if `with_s3`.
    pub async fn single(with_s3: bool) -> Self {
        Self::new(BaoCluster::single().await, with_s3).await
    }

    /// Three raft nodes (started, uninitialised); moto if `with_s3`.
    pub async fn three(with_s3: bool) -> Self {
        Self::new(BaoCluster::three().await, with_s3).await
    }

    /// One `seal "static"` node (started, uninitialised); moto if `with_s3`.
    pub async fn single_static(with_s3: bool) -> Self {
        Self::new(BaoCluster::single_static().await, with_s3).await
    }

    /// Three `seal "static"` raft nodes sharing one seal key (started,
    /// uninitialised); moto if `with_s3`.
    pub async fn three_static(with_s3: bool) -> Self {
        Self::new(BaoCluster::three_static().await, with_s3).await
    }

    /// One `seal "transit"` node (started, uninitialised) and its KMS, a
    /// second OpenBao kept in [`Drill::kms`]; moto if `with_s3`.
    pub async fn single_transit(with_s3: bool) -> Self {
        let kms = BaoCluster::transit_kms().await;
        let bao = BaoCluster::single_transit(&kms).await;
        let mut d = Self::new(bao, with_s3).await;
        d.remember_secret(kms.root_token());
        d.remember_secret(kms.kms_seal_token());
        d.kms = Some(kms);
        d
    }

    async fn new(bao: BaoCluster, with_s3: bool) -> Self {
        let s3 = if with_s3 {
            let s = S3Server::moto();
            s.create_bucket(BUCKET, false).await;
            Some(s)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("snapward-drill-")
            .tempdir()
            .expect("drill dir");
        Self {
            bao,
            kms: None,
            s3,
            dir,
            reports: AtomicUsize::new(0),
            secrets: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The default key store dir (`keys/`; not created).
    pub fn keys_dir(&self) -> PathBuf {
        self.path("keys")
    }

    /// The default local snapshot store (`snapshots/`; not created).
    pub fn snap_dir(&self) -> PathBuf {
        self.path("snapshots")
    }

    /// Defaults: restore `auto`, init allowed with the root token stored,
    /// the default dirs, the S3 target if the drill has a server.
    pub fn opts(&self) -> PolicyOpts {
        PolicyOpts {
            mode: "auto",
            init_allowed: true,
            store_root_token: true,
            keys_dir: self.keys_dir(),
            snap_dir: self.snap_dir(),
            s3: self.s3.is_some(),
            s3_keep: 10,
            s3_stream: false,
            nfs: None,
            apply_timeout: "300s",
            join_timeout: "300s",
        }
    }

    /// Writes a policy file (`<name>.yaml` in the work dir) and returns it.
    pub fn policy(&self, name: &str, o: &PolicyOpts) -> PathBuf {
        let nodes: String = (0..self.bao.len())
            .map(|i| {
                format!(
                    "      - {{name: {}, address: \"{}\"}}\n",
                    self.bao.name(i),
                    self.bao.address(i).as_str().trim_end_matches('/')
                )
            })
            .collect();
        let targets = if o.s3 {
            let s3 = self
                .s3
                .as_ref()
                .expect("the policy names S3 but the drill has no server");
            let creds = s3.credential_files("drill", ACCESS_KEY, SECRET_KEY);
            format!(
                "  targets:\n\
                 \x20   - name: s3\n\
                 \x20     s3:\n\
                 \x20       endpoint: {endpoint}\n\
                 \x20       region: us-east-1\n\
                 \x20       bucket: {BUCKET}\n\
                 \x20       prefix: {S3_PREFIX}\n\
                 \x20       pathStyle: true\n\
                 {stream}\
                 \x20       credentials:\n\
                 \x20         accessKeyIdFile: {ak}\n\
                 \x20         secretAccessKeyFile: {sk}\n\
                 \x20     retention: {{keepLast: {keep}}}\n",
                endpoint = s3.endpoint,
                ak = creds.access_key_id_file,
                sk = creds.secret_access_key_file,
                keep = o.s3_keep,
                stream = if o.s3_stream {
                    ""
                } else {
                    "        stream: false\n"
                },
            )
        } else {
            String::new()
        };
        let targets = match &o.nfs {
            None => targets,
            Some(dir) => format!(
                "{}    - name: nfs\n      filesystem: {{path: {}}}\n      retention: {{keepLast: 10}}\n",
                if o.s3 {
                    targets
                } else {
                    "  targets:\n".to_owned()
                },
                dir.display()
            ),
        };
        let yaml = format!(
            "apiVersion: snapward.dev/v1alpha1\n\
             kind: SnapshotPolicy\n\
             metadata: {{name: drill}}\n\
             spec:\n\
             \x20 cluster:\n\
             \x20   nodes:\n{nodes}\
             \x20   auth: {{tokenFile: {keys}/root-token}}\n\
             \x20   timeouts: {{connect: 2s, request: 30s, streamIdle: 30s}}\n\
             \x20 local:\n\
             \x20   path: {snaps}\n\
             \x20   prefix: {SNAP_PREFIX}\n\
             \x20   retention: {{keepLast: 10}}\n\
             {targets}\
             \x20 unsealKeys:\n\
             \x20   files: {{directory: {keys}}}\n\
             \x20 restore:\n\
             \x20   mode: {mode}\n\
             \x20   applyTimeout: {apply}\n\
             \x20   joinTimeout: {join}\n\
             \x20 init: {{allowed: {init}, shares: {SHARES}, threshold: {THRESHOLD}, storeRootToken: {root}}}\n",
            keys = o.keys_dir.display(),
            snaps = o.snap_dir.display(),
            mode = o.mode,
            init = o.init_allowed,
            root = o.store_root_token,
            apply = o.apply_timeout,
            join = o.join_timeout,
        );
        let path = self.path(&format!("{name}.yaml"));
        fs::write(&path, yaml).expect("write policy");
        path
    }

    /// Never let this string appear in any output of a run.
    pub fn remember_secret(&self, s: &str) {
        let s = s.trim();
        if !s.is_empty() {
            self.secrets.lock().expect("lock").push(s.to_owned());
        }
    }

    /// Every key share and root token in any key dir under the work dir,
    /// plus what [`Self::remember_secret`] was given.
    fn known_secrets(&self) -> Vec<String> {
        let mut out = self.secrets.lock().expect("lock").clone();
        for d in fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if !d.path().is_dir() {
                continue;
            }
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if (name.starts_with("unseal-key-") || name == "root-token")
                    && let Ok(v) = fs::read_to_string(f.path())
                    && !v.trim().is_empty()
                {
                    out.push(v.trim().to_owned());
                }
            }
        }
        out
    }

    /// `snapward <subcommand> -f POLICY --report FILE [extra...]`; checks
    /// that no known secret leaked into its output.
    pub async fn snapward(&self, subcommand: &str, policy: &Path, extra: &[&str]) -> Outcome {
        self.snapward_env(subcommand, policy, extra, &[]).await
    }

    /// [`Self::snapward`] with extra environment variables (e.g.
    /// `FAILPOINTS`, which is otherwise never passed on).
    pub async fn snapward_env(
        &self,
        subcommand: &str,
        policy: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Outcome {
        let n = self.reports.fetch_add(1, Ordering::SeqCst);
        let report_path = self.path(&format!("report-{n}-{subcommand}.json"));
        let mut args: Vec<String> = vec![
            "--log-format".into(),
            "json".into(),
            subcommand.into(),
            "-f".into(),
            policy.display().to_string(),
            "--report".into(),
            report_path.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let before = self.known_secrets();
        let child = super::cmd::snapward_async()
            .args(&args)
            .env("SNAPWARD_LOG", "info")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start snapward");
        let out = super::cmd::finish(child, RUN_TIMEOUT).await;
        let outcome = Outcome::new(&args, &out, &report_path);
        let report_text = outcome.report.to_string();
        let mut secrets = before;
        secrets.extend(self.known_secrets());
        for s in &secrets {
            for (what, text) in [
                ("stdout", &outcome.stdout),
                ("stderr", &outcome.stderr),
                ("the report", &report_text),
            ] {
                assert!(
                    !text.contains(s.as_str()),
                    "a secret (key share or token, {} chars) appears in {what} of snapward {}",
                    s.len(),
                    outcome.args.join(" ")
                );
            }
        }
        outcome
    }

    pub async fn run(&self, policy: &Path) -> Outcome {
        self.snapward("run", policy, &[]).await
    }

    /// A fresh cluster initialised by `snapward run` (branch `init`); the
    /// stored root token becomes the harness's token; KV v2 is mounted at
    /// `secret/`. Returns the run and the root token.
    pub async fn snapward_init(&mut self, policy: &Path, keys_dir: &Path) -> (Outcome, String) {
        let r = self.run(policy).await;
        r.expect_exit(0).expect_branch("init");
        for id in ["init", "store-keys", "init-unseal"] {
            r.expect_status(id, "succeeded");
        }
        let token = fs::read_to_string(keys_dir.join("root-token"))
            .expect("init stored the root token")
            .trim()
            .to_owned();
        self.remember_secret(&token);
        self.bao.set_root_token(&token);
        self.bao.enable_kv().await;
        (r, token)
    }

    /// Waits (polling) until the wall-clock second differs from that of
    /// every snapshot in `dir`: names have one-second resolution.
    pub async fn wait_for_a_fresh_second(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let name = format!(
                "{SNAP_PREFIX}{}.snap",
                jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S")
            );
            if !dir.join(&name).exists() {
                return;
            }
            assert!(Instant::now() < deadline, "the clock does not move");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A `snapward run` that must take a backup: exit 0, branch `backup`,
    /// exactly one new valid `.snap` in `snap_dir`. Returns the run and the
    /// new file's name.
    pub async fn backup(&self, policy: &Path, snap_dir: &Path) -> (Outcome, String) {
        self.wait_for_a_fresh_second(snap_dir).await;
        let before = snap_files(snap_dir);
        let r = self.run(policy).await;
        r.expect_exit(0).expect_branch("backup");
        r.expect_status("snapshot", "succeeded")
            .expect_status("verify", "succeeded");
        let after = snap_files(snap_dir);
        let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        assert_eq!(
            new.len(),
            1,
            "expected exactly one new snapshot file, got {new:?}\n{}",
            r.context()
        );
        let name = new[0].clone();
        assert!(
            name.starts_with(SNAP_PREFIX) && name.ends_with(".snap"),
            "unexpected file {name}"
        );
        snapward::snapshot::verify_file(&snap_dir.join(&name))
            .unwrap_or_else(|e| panic!("the new snapshot {name} is invalid: {e}"));
        (r, name)
    }

    // ---- cluster facts ----------------------------------------------

    pub async fn initialized(&self, node: usize) -> bool {
        self.bao.seal_status(node).await["initialized"] == json!(true)
    }

    pub async fn cluster_id(&self, node: usize) -> String {
        self.bao.seal_status(node).await["cluster_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Writes the marker `drill/<name>` (`{"v": name}`) into KV v2.
    pub async fn write_marker(&self, name: &str) {
        self.bao
            .write_secret(&format!("drill/{name}"), marker(name))
            .await;
    }

    /// Markers written before the snapshot (`present`) are back, read with
    /// `token` (the original root token) on the active node; those written
    /// after it (`gone`) are not.
    pub async fn expect_data(&self, token: &str, present: &[&str], gone: &[&str]) {
        self.wait_token_works(token).await;
        for p in present {
            assert_eq!(
                self.read(token, &format!("drill/{p}")).await,
                Some(marker(p)),
                "secret drill/{p} (written before the snapshot) must be readable with the original root token"
            );
        }
        for p in gone {
            assert_eq!(
                self.read(token, &format!("drill/{p}")).await,
                None,
                "secret drill/{p} (written after the snapshot) must be gone"
            );
        }
    }

    /// Reads `secret/data/<path>` on the active node with `token`.
    pub async fn read(&self, token: &str, path: &str) -> Option<Value> {
        let n = self.bao.active_node().await;
        self.bao.read_secret_with(n, token, path).await
    }

    /// Polls until `token` is accepted again on the active node (e.g. a
    /// token lookup-self returns 200), failing after [`WAIT`].
    pub async fn wait_token_works(&self, token: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let n = self.bao.active_node().await;
            let (status, _) = self
                .bao
                .call(n, Method::GET, "auth/token/lookup-self", Some(token), None)
                .await;
            if status.is_success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the token is not accepted on the active node: {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // ---- S3 ------------------------------------------------------------

    pub fn s3(&self) -> &S3Server {
        self.s3.as_ref().expect("the drill has no S3 server")
    }

    /// Every object in the bucket: key → (ETag, size).
    pub async fn s3_objects(&self) -> BTreeMap<String, (String, i64)> {
        self.s3().objects(BUCKET).await
    }

    /// Replaces the object of snapshot `name` with a copy that has one byte
    /// flipped in the middle, keeping snapward's metadata (raft index and
    /// term) but with the SHA-256 of the corrupt bytes: the download is
    /// self-consistent, and without the tag check (no key store) only
    /// verifying the archive finds it out; with it, the tag no longer
    /// verifies and the object is foreign.
    pub async fn corrupt_s3_snapshot(&self, name: &str) {
        let client = self.s3().client();
        let key = format!("{S3_PREFIX}{name}");
        let got = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
        let mut meta = got.metadata().cloned().unwrap_or_default();
        let mut bytes = got.body.collect().await.expect("read body").to_vec();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        meta.insert(
            "snapward-sha256".into(),
            hex::encode(Sha256::digest(&bytes)),
        );
        client
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .set_metadata(Some(meta))
            .body(bytes.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }
}

/// The value of the marker `name`.
fn marker(name: &str) -> Value {
    json!({ "v": name })
}

// ---- files -------------------------------------------------------------

/// Every file in a snapshot store (name → bytes), the run lock and the
/// verification cache excepted.
pub fn snap_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files_in(dir)
        .into_iter()
        .filter(|(n, _)| !(n.starts_with(".snapward-") && n.ends_with(".lock")))
        .filter(|(n, _)| n != snapward::backends::verify_cache::FILE_NAME)
        .collect()
}

/// Names of the `.snap` files in a store.
pub fn snap_names(dir: &Path) -> Vec<String> {
    snap_files(dir)
        .into_keys()
        .filter(|n| n.ends_with(".snap"))
        .collect()
}

/// The permission bits of a path.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Writes key-store entries as an operator (or an earlier tool) would.
pub fn write_keys(dir: &Path, keys: &[String], root_token: Option<&str>) {
    fs::create_dir_all(dir).expect("key dir");
    for (i, k) in keys.iter().enumerate() {
        fs::write(dir.join(format!("unseal-key-{i}")), format!("{k}\n")).expect("write key");
    }
    if let Some(t) = root_token {
        fs::write(dir.join("root-token"), format!("{t}\n")).expect("write token");
    }
}

/// Cuts a file to half its length (a torn write / truncated copy).
pub fn truncate_half(path: &Path) {
    let len = fs::metadata(path).expect("stat").len();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for truncation");
    f.set_len(len / 2).expect("truncate");
    f.sync_all().expect("sync");
}
