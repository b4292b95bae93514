//! Azurite (the Azure Blob emulator, npm `azurite`, `$SNAPWARD_TEST_AZURITE`
//! from `eval "$(scripts/test-env.sh)"`) for integration tests.
//!
//! Each [`Azurite`] listens on 127.0.0.1 on an ephemeral port, keeps its data
//! and log in a temp dir, and is killed (dir removed) when it drops — also
//! when a test panics, in which case the log tail is printed. The account is
//! the emulator's well-known `devstoreaccount1` with its published key;
//! blobs are addressed path-style (`http://127.0.0.1:<port>/devstoreaccount1`).
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::TryStreamExt as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use sha2::Sha256;
use snapward::policy::model;

/// Longest Azurite may take to start answering.
pub const START_WAIT: Duration = Duration::from_secs(60);
/// The emulator's well-known account and key (published by Microsoft).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const API_VERSION: &str = "2021-08-06";

pub fn binary() -> PathBuf {
    match std::env::var_os("SNAPWARD_TEST_AZURITE") {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SNAPWARD_TEST_AZURITE={} is not a file; run: eval \"$(scripts/test-env.sh)\"",
                p.display()
            );
            p
        }
        _ => panic!(
            "SNAPWARD_TEST_AZURITE is not set: these tests start Azurite. \
             Run: eval \"$(scripts/test-env.sh)\" (installs it and prints the variable)"
        ),
    }
}

pub struct Azurite {
    /// `http://127.0.0.1:<port>/devstoreaccount1`
    pub endpoint: String,
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Azurite {
    pub fn start() -> Self {
        let bin = binary();
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = dir.path().join("azurite.log");
            let data = dir.path().join("data");
            fs::create_dir(&data).expect("azurite data dir");
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
                l.local_addr().expect("addr").port()
            };
            let out = fs::File::create(&log).expect("azurite log");
            let err = out.try_clone().expect("azurite log");
            let child = Command::new(&bin)
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .arg("--location")
                .arg(&data)
                .args(["--skipApiVersionCheck", "--loose", "--disableTelemetry"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
            let mut a = Azurite {
                endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
                port,
                child: Some(child),
                dir,
                log,
            };
            if a.wait_ready() {
                return a;
            }
            last_log = a.log_tail();
            a.stop();
        }
        panic!("Azurite did not start on 127.0.0.1; log tail:\n{last_log}");
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    /// True once Azurite says it listens on our port (its own log line, so
    /// another process on the port never passes); false if it exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_WAIT;
        let ready = format!("successfully listens on http://127.0.0.1:{}", self.port);
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            if fs::read_to_string(&self.log)
                .unwrap_or_default()
                .contains(&ready)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "Azurite did not answer on port {} within {START_WAIT:?}; log tail:\n{}",
            self.port,
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

    /// Creates a container (Shared Key signed `PUT ?restype=container`).
    pub async fn create_container(&self, container: &str) {
        let date = httpdate();
        let path = format!("/{ACCOUNT}/{container}");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{ACCOUNT}{path}\nrestype:container"
        );
        let sig = b64(&hmac_sha256(&key_bytes(), to_sign.as_bytes()));
        let res = reqwest::Client::new()
            .put(format!(
                "http://127.0.0.1:{}{path}?restype=container",
                self.port
            ))
            .header("x-ms-date", &date)
            .header("x-ms-version", API_VERSION)
            .header("content-length", "0")
            .header("authorization", format!("SharedKey {ACCOUNT}:{sig}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create container {container}: {e}"));
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "create container {container}: {status} {body}\nlog:\n{}",
            self.log_tail()
        );
    }

    /// An account SAS (blob service; read, write, delete, list, add,
    /// create) valid until 2099.
    pub fn account_sas(&self) -> String {
        let (sp, ss, srt, se, spr, sv) = (
            "rwdlac",
            "b",
            "sco",
            "2099-01-01T00:00:00Z",
            "https,http",
            "2019-12-12",
        );
        let to_sign = format!("{ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{se}\n\n{spr}\n{sv}\n");
        let sig = b64(&hmac_sha256(&key_bytes(), to_sign.as_bytes()));
        let sig: String = url_encode(&sig);
        format!("sv={sv}&ss={ss}&srt={srt}&sp={sp}&se={se}&spr={spr}&sig={sig}")
    }

    /// An object_store client with the account key, for setting up and
    /// inspecting what the code under test did.
    pub fn store(&self, container: &str) -> MicrosoftAzure {
        MicrosoftAzureBuilder::new()
            .with_account(ACCOUNT)
            .with_access_key(ACCOUNT_KEY)
            .with_container_name(container)
            .with_endpoint(self.endpoint.clone())
            .with_allow_http(true)
            .build()
            .expect("azure test client")
    }

    /// Blob name → size of every blob in `container`.
    pub async fn blobs(&self, container: &str) -> BTreeMap<String, u64> {
        self.store(container)
            .list(None)
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .unwrap_or_else(|e| panic!("list {container}: {e}"))
    }

    /// Puts raw bytes as a blob (no snapward metadata).
    pub async fn put_raw(&self, container: &str, name: &str, bytes: Vec<u8>) {
        self.store(container)
            .put(&object_store::path::Path::from(name), bytes.into())
            .await
            .unwrap_or_else(|e| panic!("put {name}: {e}"));
    }

    /// The bytes of a blob.
    pub async fn get_raw(&self, container: &str, name: &str) -> Vec<u8> {
        self.store(container)
            .get(&object_store::path::Path::from(name))
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"))
            .bytes()
            .await
            .expect("read blob")
            .to_vec()
    }

    /// A file holding `content` (with a trailing newline, as a mounted
    /// Secret written by hand), in the server's temp dir.
    pub fn secret_file(&self, name: &str, content: &str) -> String {
        let p = self.dir().join(name);
        fs::write(&p, format!("{content}\n")).expect("write secret file");
        p.display().to_string()
    }

    /// A policy target for `container`/`prefix` with the account key.
    pub fn target_config(&self, container: &str, prefix: &str) -> model::AzureTarget {
        self.target_config_at(&self.endpoint, container, prefix)
    }

    /// [`Self::target_config`] through another endpoint (a fault proxy).
    pub fn target_config_at(
        &self,
        endpoint: &str,
        container: &str,
        prefix: &str,
    ) -> model::AzureTarget {
        model::AzureTarget {
            account: ACCOUNT.to_owned(),
            container: container.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: Some(endpoint.to_owned()),
            credentials: Some(model::AzureCredentials {
                account_key_file: Some(self.secret_file("account-key", ACCOUNT_KEY)),
                sas_token_file: None,
            }),
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- Azurite at {} log tail ---\n{}",
                self.endpoint,
                self.log_tail()
            );
        }
        self.stop();
    }
}

fn key_bytes() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(ACCOUNT_KEY)
        .expect("the emulator key is base64")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// RFC 1123 date, as `x-ms-date` wants it.
fn httpdate() -> String {
    jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}
