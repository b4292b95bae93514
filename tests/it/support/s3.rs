//! Real S3 servers for integration tests: moto 5.2.5 (`$SNAPWARD_TEST_MOTO`;
//! versioning + Object Lock, signatures unchecked) and s3s-fs 0.14.1
//! (`$SNAPWARD_TEST_S3S_FS`; checks SigV4, no versioning). Both come from
//! `eval "$(scripts/test-env.sh)"`.
//!
//! Each [`S3Server`] listens on 127.0.0.1 on an ephemeral port, keeps its
//! data and log in a temp dir, and is killed (dir removed) when it drops —
//! also when a test panics, in which case the log tail is printed.
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use sha2::{Digest, Sha256};
use snapward::backends::Target;
use snapward::backends::s3::S3Target;
use snapward::policy::model;
use tokio_util::sync::CancellationToken;

use super::work::PREFIX;

/// Longest a server may take to start answering.
pub const START_WAIT: Duration = Duration::from_secs(60);
/// Credentials s3s-fs is started with (moto accepts any).
pub const ACCESS_KEY: &str = "snapward-test-access-key";
pub const SECRET_KEY: &str = "snapward-test-secret-key-5f2c9a";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Moto,
    S3sFs,
}

impl Kind {
    fn env_var(self) -> &'static str {
        match self {
            Kind::Moto => "SNAPWARD_TEST_MOTO",
            Kind::S3sFs => "SNAPWARD_TEST_S3S_FS",
        }
    }

    /// The server binary, or a panic that says how to get it.
    pub fn binary(self) -> PathBuf {
        let var = self.env_var();
        match std::env::var_os(var) {
            Some(p) if !p.is_empty() => {
                let p = PathBuf::from(p);
                assert!(
                    p.is_file(),
                    "{var}={} is not a file; run: eval \"$(scripts/test-env.sh)\"",
                    p.display()
                );
                p
            }
            _ => panic!(
                "{var} is not set: these tests start real S3 servers (moto and s3s-fs). \
                 Run: eval \"$(scripts/test-env.sh)\" (installs them and prints the variables)"
            ),
        }
    }
}

/// A running S3 server.
pub struct S3Server {
    pub kind: Kind,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

/// A free port never handed out before in this test process: tests run in
/// parallel, and two servers given the same port would answer for each
/// other.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        if given.insert(port) {
            return port;
        }
    }
}

impl S3Server {
    pub fn moto() -> Self {
        Self::start(Kind::Moto)
    }

    pub fn s3s_fs() -> Self {
        Self::start(Kind::S3sFs)
    }

    /// Starts a server; retries on another port if the chosen one was taken
    /// between picking and binding.
    pub fn start(kind: Kind) -> Self {
        let bin = kind.binary();
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = dir.path().join("server.log");
            let port = free_port();
            let out = fs::File::create(&log).expect("server log");
            let err = out.try_clone().expect("server log");
            let mut cmd = Command::new(&bin);
            match kind {
                Kind::Moto => {
                    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                }
                Kind::S3sFs => {
                    let data = dir.path().join("data");
                    fs::create_dir(&data).expect("s3s-fs data dir");
                    cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                        .arg(&data);
                }
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut server = S3Server {
                kind,
                endpoint: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                dir,
                log,
            };
            if server.wait_ready(port) {
                return server;
            }
            last_log = server.log_tail();
            server.stop();
        }
        panic!("{kind:?} did not start on 127.0.0.1; log tail:\n{last_log}");
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// True once the port accepts connections and our process still runs
    /// (a process that lost the port to another one exits); false if it
    /// exited.
    fn wait_ready(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            if TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().expect("addr"),
                Duration::from_millis(200),
            )
            .is_ok()
            {
                std::thread::sleep(Duration::from_millis(100));
                return !self.exited();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{:?} did not answer on port {port} within {START_WAIT:?}; log tail:\n{}",
            self.kind,
            self.log_tail()
        );
    }

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A temp dir that lives as long as the server (credential files, ...).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An SDK client with the server's credentials, for setting up and
    /// inspecting what the code under test did.
    pub fn client(&self) -> Client {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }

    pub fn client_with(&self, access_key: &str, secret_key: &str) -> Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(access_key, secret_key, None, None, "test"))
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Client::from_conf(conf)
    }

    /// Creates a bucket; `object_lock` also enables versioning (moto only).
    pub async fn create_bucket(&self, bucket: &str, object_lock: bool) {
        let mut req = self.client().create_bucket().bucket(bucket);
        if object_lock {
            req = req.object_lock_enabled_for_bucket(true);
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e:?}"));
    }

    /// Turns versioning on (moto only).
    pub async fn enable_versioning(&self, bucket: &str) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.client()
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("enable versioning on {bucket}: {e:?}"));
    }

    /// Writes credential files into the server's temp dir (under `tag`).
    pub fn credential_files(
        &self,
        tag: &str,
        access_key: &str,
        secret_key: &str,
    ) -> model::S3Credentials {
        let dir = self.dir().join(format!("creds-{tag}"));
        fs::create_dir_all(&dir).expect("creds dir");
        let ak = dir.join("access-key-id");
        let sk = dir.join("secret-access-key");
        // Trailing newlines, as in a mounted Secret written by hand.
        fs::write(&ak, format!("{access_key}\n")).expect("write access key");
        fs::write(&sk, format!("  {secret_key}\n")).expect("write secret key");
        model::S3Credentials {
            access_key_id_file: ak.display().to_string(),
            secret_access_key_file: sk.display().to_string(),
            session_token_file: None,
        }
    }

    /// A policy target for `bucket`/`prefix` with the right credentials.
    pub fn target_config(&self, bucket: &str, prefix: &str) -> model::S3Target {
        model::S3Target {
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            path_style: true,
            credentials: Some(self.credential_files("good", ACCESS_KEY, SECRET_KEY)),
            server_side_encryption: None,
            object_lock: None,
            timeouts: None,
            // The product's default: upload from the verified local file.
            // Tests of the streamed path turn it on themselves.
            stream: false,
        }
    }

    // ---- what the bucket holds (straight to the server) ------------------

    /// Key → (ETag, size) of every object in `bucket`.
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, (String, i64)> {
        let mut out = BTreeMap::new();
        let mut pages = self
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
            for o in page.contents() {
                out.insert(
                    o.key().unwrap_or_default().to_string(),
                    (
                        o.e_tag().unwrap_or_default().to_string(),
                        o.size().unwrap_or(-1),
                    ),
                );
            }
        }
        out
    }

    /// Keys of the incomplete multipart uploads in `bucket` (moto).
    pub async fn uploads(&self, bucket: &str) -> Vec<String> {
        self.client()
            .list_multipart_uploads()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list uploads of {bucket}: {e:?}"))
            .uploads()
            .iter()
            .map(|u| u.key().unwrap_or_default().to_string())
            .collect()
    }

    /// SHA-256 (hex) of an object's bytes.
    pub async fn object_sha256(&self, bucket: &str, key: &str) -> String {
        let out = self
            .client()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key}: {e:?}"));
        let bytes = out
            .body
            .collect()
            .await
            .expect("read the object")
            .into_bytes();
        hex::encode(Sha256::digest(&bytes))
    }

    /// Uploads `file` to `bucket`/`prefix` under each of `names` the way
    /// snapward does (identity in the metadata), so a target lists them as
    /// valid snapshots.
    pub async fn seed(&self, bucket: &str, prefix: &str, file: &Path, names: &[&str]) {
        self.seed_tagged(bucket, prefix, file, names, &[]).await
    }

    /// [`Self::seed`], and — given the cluster's unseal key shares — with
    /// the tag snapward writes (`snapward-tag`, no cluster id), so that a
    /// policy with that key store counts them as authentic.
    pub async fn seed_tagged(
        &self,
        bucket: &str,
        prefix: &str,
        file: &Path,
        names: &[&str],
        shares: &[String],
    ) {
        let key = (!shares.is_empty()).then(|| {
            let shares: Vec<snapward::secret::Secret> =
                shares.iter().map(snapward::secret::Secret::new).collect();
            snapward::snapshot::auth::tag::ObjectKey::derive(
                &snapward::snapshot::auth::key_from_shares(&shares).expect("shares combine"),
            )
        });
        let t = S3Target::new(
            "seed",
            &settings(&self.target_config(bucket, prefix)),
            PREFIX,
        )
        .await
        .expect("seed target");
        let identity = snapward::snapshot::verify_file(file).expect("a valid snapshot");
        for n in names {
            let tag = snapward::backends::UploadTag {
                cluster_id: String::new(),
                tag: key.as_ref().map(|k| {
                    k.tag(&snapward::snapshot::auth::tag::Claims {
                        name: n,
                        size: identity.file_size,
                        sha256: &identity.sha256,
                        index: identity.index,
                        term: identity.term,
                        cluster_id: "",
                    })
                }),
            };
            t.put(file, n, &identity, &tag, &CancellationToken::new())
                .await
                .unwrap_or_else(|e| panic!("seed {n}: {e}"));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {:?} at {} log tail ---\n{}",
                self.kind,
                self.endpoint,
                self.log_tail()
            );
        }
        self.stop();
    }
}

/// A policy S3 target as the backend takes it (validated, timeouts parsed).
pub fn settings(cfg: &model::S3Target) -> snapward::policy::S3Settings {
    snapward::policy::S3Settings::try_from(cfg).expect("a valid S3 target")
}
