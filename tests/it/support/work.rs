//! One test's temp dir, policies and runs of the real `snapward` binary
//! (exit code, stdout, stderr and the `--report` JSON), plus what the
//! backup and fault tests (`backup`, `s3_faults`, `bao_faults`) need
//! around them: a real OpenBao cluster with a snapshot-only token, filling
//! it with data, and reading what the local store and an S3 bucket hold.
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::bao::BaoCluster;
use super::outcome::{Outcome, listed};

/// `local.prefix` of every policy here.
pub const PREFIX: &str = "openbao-";
/// The least privilege a backup needs (docs/openbao.md: `read` on the snapshot path).
const SNAPSHOT_ACL: &str = r#"path "sys/storage/raft/snapshot" { capabilities = ["read"] }"#;
/// Longest one `snapward` process may run: the "no hang" bound of every
/// fault test (a run that takes longer fails the test).
pub const RUN_LIMIT: Duration = Duration::from_secs(240);
/// Longest a poll here waits.
pub const WAIT: Duration = Duration::from_secs(300);

/// A running, initialised, unsealed cluster with KV v2, one secret, and a
/// token that may only read `sys/storage/raft/snapshot`.
pub struct Bao {
    pub cluster: BaoCluster,
    pub keys: Vec<String>,
    /// The snapshot-only token snapward authenticates with.
    pub token: String,
}

impl Bao {
    pub async fn setup(mut cluster: BaoCluster) -> Self {
        let (keys, _root) = cluster.init_unsealed(1, 1).await;
        cluster.enable_kv().await;
        cluster
            .write_secret("app/db", json!({"password": "correct horse"}))
            .await;
        cluster
            .write_policy("snapward-snapshot", SNAPSHOT_ACL)
            .await;
        let token = cluster.create_token(&["snapward-snapshot"]).await;
        Self {
            cluster,
            keys,
            token,
        }
    }

    pub async fn single() -> Self {
        Self::setup(BaoCluster::single().await).await
    }

    /// Every node as the policy lists them, in cluster order.
    pub fn nodes(&self) -> Value {
        cluster_nodes(&self.cluster, &(0..self.cluster.len()).collect::<Vec<_>>())
    }

    /// One more raft write, so the next snapshot is newer than the last.
    pub async fn advance(&self, tag: &str) {
        self.cluster
            .write_secret(&format!("app/{tag}"), json!({"at": tag}))
            .await;
    }

    /// Writes at least `mib` MiB of incompressible secrets (512 KiB values,
    /// below raft's 1 MiB entry limit), 4 at a time, so the next snapshot is
    /// at least that large (`state.bin` is encrypted: gzip cannot shrink it).
    pub async fn fill(&self, mib: usize) {
        use base64::Engine as _;
        use futures::StreamExt as _;
        const VALUE: usize = 512 * 1024;
        let count = mib * 1024 * 1024 / VALUE + 1;
        let c = &self.cluster;
        let writes = futures::stream::iter(0..count).map(|i| async move {
            // Deterministic, incompressible, base64 → VALUE bytes.
            let raw = random_bytes(VALUE * 3 / 4, i as u64 + 1);
            let value = base64::engine::general_purpose::STANDARD.encode(&raw);
            c.write_secret(&format!("fill/{i}"), json!({ "v": value }))
                .await;
        });
        writes.buffer_unordered(4).collect::<Vec<()>>().await;
    }
}

/// The policy's `cluster.nodes`: `(name, address)` pairs.
pub fn nodes_json(nodes: &[(&str, &str)]) -> Value {
    Value::Array(
        nodes
            .iter()
            .map(|(n, a)| json!({"name": n, "address": a}))
            .collect(),
    )
}

/// The policy's `cluster.nodes`, listing `c`'s nodes in `order`.
pub fn cluster_nodes(c: &BaoCluster, order: &[usize]) -> Value {
    Value::Array(
        order
            .iter()
            .map(|&i| json!({"name": c.name(i), "address": c.address(i).as_str()}))
            .collect(),
    )
}

/// A test's temp dir; runs in it never share a snapshot name.
pub struct Work {
    dir: tempfile::TempDir,
    /// Longest one process may run (the "no hang" bound).
    run_limit: Duration,
    runs: Mutex<usize>,
    /// The UTC second the previous run ended in: the next run starts in a
    /// later one, so two runs never name a snapshot alike.
    last_second: Mutex<Option<i64>>,
}

impl Default for Work {
    fn default() -> Self {
        Self::new()
    }
}

impl Work {
    /// A fault test's dir: runs limited to [`RUN_LIMIT`].
    pub fn new() -> Self {
        Self::with("snapward-faults-", RUN_LIMIT)
    }

    /// A temp dir named `prefix...` whose runs may take `run_limit`.
    pub fn with(prefix: &str, run_limit: Duration) -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("temp dir"),
            run_limit,
            runs: Mutex::new(0),
            last_second: Mutex::new(None),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `rel` as a created directory.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// A file holding `content`.
    pub fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
        p
    }

    /// A policy with one cluster (short connect/request timeouts, the given
    /// stream idle timeout), a token file and a local store; tests add
    /// targets, guards, key stores.
    pub fn policy(
        &self,
        name: &str,
        nodes: Value,
        token: &Path,
        local: &Path,
        keep: Value,
        stream_idle: &str,
    ) -> Value {
        json!({
            "apiVersion": "snapward.dev/v1alpha1",
            "kind": "SnapshotPolicy",
            "metadata": {"name": name},
            "spec": {
                "cluster": {
                    "nodes": nodes,
                    "auth": {"tokenFile": token.display().to_string()},
                    "timeouts": {"connect": "2s", "request": "20s", "streamIdle": stream_idle}
                },
                "local": {"path": local.display().to_string(), "retention": keep},
            }
        })
    }

    /// Writes `policy` (JSON is YAML) under `rel`.
    pub fn write_policy(&self, rel: &str, policy: &Value) -> PathBuf {
        self.file(
            rel,
            &serde_json::to_string_pretty(policy).expect("policy json"),
        )
    }

    /// A `snapward` command with `args`, logs as JSON at the default level.
    pub fn command(&self, args: &[OsString]) -> tokio::process::Command {
        let mut cmd = super::cmd::snapward_async();
        cmd.args(args).kill_on_drop(true);
        cmd
    }

    /// Runs a command to its end, at most the run limit.
    pub async fn output(&self, mut cmd: tokio::process::Command) -> Output {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn snapward");
        super::cmd::finish(child, self.run_limit).await
    }

    /// Runs the binary with `args` (`SNAPWARD_LOG` from `log`).
    pub async fn snapward(
        &self,
        args: &[OsString],
        log: Option<&str>,
    ) -> (Option<i32>, String, String) {
        let mut cmd = self.command(args);
        if let Some(l) = log {
            cmd.env("SNAPWARD_LOG", l);
        }
        let out = self.output(cmd).await;
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `snapward --log-format json run -f POLICY --report FILE EXTRA...`.
    pub async fn run(&self, policy: &Path, extra: &[&str]) -> Outcome {
        self.run_logged(policy, extra, "json", None).await
    }

    /// [`Work::run`] with logs in `log_format`, at level `log`.
    pub async fn run_logged(
        &self,
        policy: &Path,
        extra: &[&str],
        log_format: &str,
        log: Option<&str>,
    ) -> Outcome {
        let (args, report) = self.run_args(policy, extra, log_format).await;
        let mut cmd = self.command(&args);
        if let Some(l) = log {
            cmd.env("SNAPWARD_LOG", l);
        }
        let out = self.output(cmd).await;
        self.finish(&args, &out, &report)
    }

    /// The arguments of the next run
    /// (`--log-format FORMAT run -f POLICY --report FILE EXTRA...`) and its
    /// report path (waits for a new UTC second first); pair with
    /// [`Work::finish`].
    pub async fn run_args(
        &self,
        policy: &Path,
        extra: &[&str],
        log_format: &str,
    ) -> (Vec<OsString>, PathBuf) {
        self.wait_for_a_new_second().await;
        let report = {
            let mut n = self.runs.lock().expect("lock");
            *n += 1;
            self.path(&format!("report-{n}.json"))
        };
        let mut args: Vec<OsString> = vec![
            "--log-format".into(),
            log_format.into(),
            "run".into(),
            "-f".into(),
            policy.into(),
            "--report".into(),
            report.clone().into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        (args, report)
    }

    /// The outcome of the run with `args` (from [`Work::run_args`]).
    pub fn finish(&self, args: &[OsString], out: &Output, report: &Path) -> Outcome {
        *self.last_second.lock().expect("lock") = Some(jiff::Timestamp::now().as_second());
        Outcome::new(args, out, report)
    }

    async fn wait_for_a_new_second(&self) {
        let Some(last) = *self.last_second.lock().expect("lock") else {
            return;
        };
        poll("the next UTC second", || async {
            (jiff::Timestamp::now().as_second() > last).then_some(())
        })
        .await;
    }

    /// `snapward list --format json -f POLICY`: store → snapshot names.
    pub async fn list(&self, policy: &Path) -> BTreeMap<String, BTreeSet<String>> {
        let args: Vec<OsString> = vec![
            "list".into(),
            "--format".into(),
            "json".into(),
            "-f".into(),
            policy.into(),
        ];
        let (code, stdout, stderr) = self.snapward(&args, None).await;
        assert_eq!(code, Some(0), "list: {stdout}{stderr}");
        listed(stdout.as_bytes())
            .into_iter()
            .map(|(store, rows)| {
                let valid = rows
                    .into_iter()
                    .filter(|(_, valid)| *valid)
                    .map(|(name, _)| name)
                    .collect();
                (store, valid)
            })
            .collect()
    }

    /// A real snapshot of `bao`'s cluster (a local-only run into a scratch
    /// dir), then one more raft write so later snapshots are newer.
    pub async fn real_snapshot(&self, bao: &Bao) -> PathBuf {
        let token = self.file("seed/token", &bao.token);
        let local = self.path("seed/snapshots");
        let p = self.policy(
            "seed",
            bao.nodes(),
            &token,
            &local,
            json!({"keepLast": 5}),
            "20s",
        );
        let policy = self.write_policy("seed/policy.yaml", &p);
        let run = self.run(&policy, &[]).await;
        run.expect_exit(0);
        let snap = local.join(run.snapshot_name());
        assert!(snap.is_file(), "{}", run.context());
        bao.advance("after-seed").await;
        snap
    }
}

/// Polls `check` every 50 ms until it returns `Some`, at most [`WAIT`].
pub async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- stores -------------------------------------------------------------------

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).expect("read"))
}

/// `len` deterministic pseudo-random bytes (xorshift64*): incompressible,
/// fast.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `openbao-<stamp>.snap` for a `YYYYMMDD-HHMMSS` stamp.
pub fn snap(stamp: &str) -> String {
    format!("{PREFIX}{stamp}.snap")
}

/// Every entry name in `dir` (empty if it is missing).
pub fn names(dir: &Path) -> BTreeSet<String> {
    match std::fs::read_dir(dir) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// Every file in a directory (name → bytes); empty if it does not exist.
pub fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
            out.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read file"),
            );
        }
    }
    out
}

/// The `.snap` files in `dir`.
pub fn snaps(dir: &Path) -> BTreeSet<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".snap"))
        .collect()
}

/// Temp files of a snapshot stream (`.<name>.partial`) in `dir`.
pub fn partials(dir: &Path) -> BTreeSet<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".partial") || n.starts_with(&format!(".{PREFIX}")))
        .collect()
}

/// Copies `src` into `dir` under each of `names`.
pub fn copy_as(src: &Path, dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for n in names {
        std::fs::copy(src, dir.join(n)).expect("copy snapshot");
    }
}
