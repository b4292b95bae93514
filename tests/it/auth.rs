//! Offline snapshot authentication (`snapshot::auth`) against real OpenBao
//! 2.7.2 servers (`$SNAPWARD_TEST_BAO`, `eval "$(scripts/test-env.sh)"`):
//! real key shares, real snapshots, a real second cluster and a real rekey.
//!
//! Each server is a single raft node on 127.0.0.1 (ephemeral ports, temp
//! dir), killed when its [`Bao`] drops — also when a test panics, which then
//! prints the server's log tail. The small server harness is a trimmed copy
//! of the harness in `support::bao`, with the calls a rekey needs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use snapward::secret::Secret;
use snapward::snapshot::auth::{
    self, AuthError, Authenticity, authenticate, authenticate_file, combine,
};
use snapward::snapshot::{sealed_sums_file, verify_file};

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

// ---- a real server -----------------------------------------------------

/// The shares as `sys/init` / `sys/rekey/update` return them.
#[derive(Clone)]
struct Keys {
    hex: Vec<String>,
    b64: Vec<String>,
}

impl Keys {
    fn from_reply(v: &Value) -> Keys {
        let list = |field: &str| -> Vec<String> {
            v[field]
                .as_array()
                .unwrap_or_else(|| panic!("no `{field}` in the reply"))
                .iter()
                .map(|k| k.as_str().expect("a key string").to_string())
                .collect()
        };
        Keys {
            hex: list("keys"),
            b64: list("keys_base64"),
        }
    }

    /// The shares at `idx`, as stored (base64, as snapward stores them).
    fn stored(&self, idx: &[usize]) -> Vec<Secret> {
        idx.iter()
            .map(|&i| Secret::new(self.b64[i].clone()))
            .collect()
    }

    fn stored_hex(&self, idx: &[usize]) -> Vec<Secret> {
        idx.iter()
            .map(|&i| Secret::new(self.hex[i].clone()))
            .collect()
    }

    fn all(&self) -> Vec<Secret> {
        self.stored(&(0..self.b64.len()).collect::<Vec<_>>())
    }
}

struct Bao {
    addr: String,
    http: reqwest::Client,
    child: Option<Child>,
    log: PathBuf,
    token: Option<String>,
    // last: removed after the process is gone
    dir: tempfile::TempDir,
}

impl Bao {
    /// A single raft node, started, not initialised. `storage_extra` goes
    /// into the `storage "raft"` block.
    async fn start(storage_extra: &str) -> Bao {
        let bin = std::env::var_os("SNAPWARD_TEST_BAO")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .expect(
                "SNAPWARD_TEST_BAO is not set: these tests start real OpenBao servers. \
                 Run: eval \"$(scripts/test-env.sh)\"",
            );
        let dir = tempfile::Builder::new()
            .prefix("snapward-auth-")
            .tempdir()
            .expect("temp dir");
        let listeners: Vec<TcpListener> = (0..2)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        drop(listeners);
        let (api, cluster) = (ports[0], ports[1]);
        let raft = dir.path().join("raft");
        fs::create_dir_all(&raft).expect("raft dir");
        let config = dir.path().join("config.hcl");
        fs::write(
            &config,
            format!(
                "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"n0\"\n  performance_multiplier = 1\n{storage_extra}}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{api}\"\n  cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{api}\"\n\
                 cluster_addr = \"https://127.0.0.1:{cluster}\"\n\
                 disable_mlock = true\n\
                 ui = false\n",
                raft.display()
            ),
        )
        .expect("write config");
        let log = dir.path().join("server.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log");
        let child = Command::new(&bin)
            .arg("server")
            .arg(format!("-config={}", config.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let bao = Bao {
            addr: format!("http://127.0.0.1:{api}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .no_proxy()
                .build()
                .expect("HTTP client"),
            child: Some(child),
            log,
            token: None,
            dir,
        };
        bao.poll("the server to listen", || async {
            bao.http
                .get(format!("{}/v1/sys/seal-status", bao.addr))
                .send()
                .await
                .ok()
                .map(drop)
        })
        .await;
        bao
    }

    async fn poll<T, F, Fut>(&self, what: &str, mut check: F) -> T
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
            tokio::time::sleep(POLL).await;
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr));
        if let Some(t) = &self.token {
            rb = rb.header("X-Vault-Token", t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {v}");
        v
    }

    /// Init with `n` shares / threshold `t`, unseal with `t` of them, wait
    /// until active, mount KV v2 at `secret/` and write one secret.
    async fn init_unsealed(&mut self, n: u32, t: u32) -> Keys {
        let v = self
            .ok(
                Method::PUT,
                "sys/init",
                Some(json!({"secret_shares": n, "secret_threshold": t})),
            )
            .await;
        let keys = Keys::from_reply(&v);
        self.token = Some(v["root_token"].as_str().expect("root_token").to_string());
        for k in keys.b64.iter().take(t as usize) {
            self.ok(Method::PUT, "sys/unseal", Some(json!({ "key": k })))
                .await;
        }
        self.poll("the node to be active", || async {
            let (s, v) = self.call(Method::GET, "sys/leader", None).await;
            (s == StatusCode::OK && v["is_self"] == json!(true)).then_some(())
        })
        .await;
        self.ok(
            Method::POST,
            "sys/mounts/secret",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
        self.poll("KV v2 to finish its upgrade", || async {
            let (s, _) = self.call(Method::GET, "secret/config", None).await;
            s.is_success().then_some(())
        })
        .await;
        self.write("app/db", json!({"user": "app", "password": "not-a-secret"}))
            .await;
        keys
    }

    async fn write(&self, path: &str, data: Value) {
        self.ok(
            Method::POST,
            &format!("secret/data/{path}"),
            Some(json!({ "data": data })),
        )
        .await;
    }

    /// `GET sys/storage/raft/snapshot` streamed into `to`.
    async fn snapshot(&self, to: &Path) {
        let resp = self
            .http
            .get(format!("{}/v1/sys/storage/raft/snapshot", self.addr))
            .header("X-Vault-Token", self.token.as_deref().expect("token"))
            .send()
            .await
            .expect("snapshot request");
        assert_eq!(resp.status(), StatusCode::OK, "snapshot");
        let mut f = File::create(to).expect("create snapshot file");
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            f.write_all(&chunk.expect("snapshot stream"))
                .expect("write snapshot");
        }
        f.sync_all().expect("sync snapshot");
    }

    /// Rekeys the barrier: new unseal key shares, from `t` old ones
    /// (`bao operator rekey`). OpenBao 2.x serves this as the authenticated
    /// `sys/rotate/root/{init,update}`; the unauthenticated `sys/rekey/*` of
    /// Vault is off by default (405 "unsupported operation").
    async fn rekey(&self, old: &Keys, n: u32, t: usize) -> Keys {
        let v = self
            .ok(
                Method::PUT,
                "sys/rotate/root/init",
                Some(json!({"secret_shares": n, "secret_threshold": t})),
            )
            .await;
        // a logical endpoint: the answer is under `data`
        let nonce = v["data"]["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("rekey nonce: {v}"))
            .to_string();
        let mut last = Value::Null;
        for k in old.b64.iter().take(t) {
            last = self
                .ok(
                    Method::PUT,
                    "sys/rotate/root/update",
                    Some(json!({"key": k, "nonce": nonce})),
                )
                .await;
        }
        assert_eq!(last["data"]["complete"], json!(true), "rekey: {last}");
        Keys::from_reply(&last["data"])
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- server log tail ({}) ---\n{}",
                self.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

use crate::support::surgery::{entries, entry, entry_mut, resum, write_snapshot};

fn verdict(path: &Path, shares: &[Secret]) -> Result<Authenticity, AuthError> {
    authenticate_file(path, shares).map(|a| a.authenticity)
}

/// The subsets of `0..n` with at least `t` members.
fn subsets(n: usize, t: usize) -> Vec<Vec<usize>> {
    (0u32..1 << n)
        .map(|m| (0..n).filter(|i| m & (1 << i) != 0).collect::<Vec<_>>())
        .filter(|s| s.len() >= t)
        .collect()
}

/// The plaintext of `SHA256SUMS.sealed` (for the line-order observation).
fn open_sealed(sealed: &[u8], keys: &Keys) -> Vec<u8> {
    let shares: Vec<Vec<u8>> = keys
        .b64
        .iter()
        .map(|k| base64::engine::general_purpose::STANDARD.decode(k).unwrap())
        .collect();
    let parts: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
    let key = combine(&parts).expect("combine");
    let ct = auth::blob::parse(sealed).expect("blob").ciphertext;
    let (nonce, body) = ct.split_at(auth::NONCE_LEN);
    Aes256Gcm::new_from_slice(&key)
        .expect("AES-256 key")
        .decrypt(&Nonce::try_from(nonce).expect("nonce"), body)
        .expect("the sealed sums open")
}

// ---- tests -------------------------------------------------------------

#[tokio::test]
async fn real_snapshots_authenticate_with_their_own_keys_only() {
    let (mut a, mut b) = tokio::join!(Bao::start(""), Bao::start(""));
    let (keys, other) = tokio::join!(a.init_unsealed(3, 2), b.init_unsealed(3, 2));
    let snap = a.path("a.snap");
    a.snapshot(&snap).await;

    // the archive as OpenBao 2.7.2 writes it
    let es = entries(&snap);
    let names: Vec<&str> = es.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["meta.json", "state.bin", "SHA256SUMS", "SHA256SUMS.sealed"]
    );
    let sealed = entry(&es, "SHA256SUMS.sealed");
    let blob = auth::blob::parse(sealed).expect("a BlobInfo");
    assert_eq!(sealed.first(), Some(&0x0a), "field 1 first");
    assert!(sealed.ends_with(&[0x2a, 0x00]), "an empty KeyInfo last");
    assert_eq!(
        blob.ciphertext.len(),
        auth::NONCE_LEN + entry(&es, "SHA256SUMS").len() + auth::TAG_LEN
    );
    assert_eq!(
        sealed_sums_file(&snap).expect("verifies").sealed,
        sealed.to_vec()
    );

    // every subset of ≥ 2 shares, stored as base64 or hex, authenticates
    for s in subsets(3, 2) {
        for shares in [keys.stored(&s), keys.stored_hex(&s)] {
            assert_eq!(
                verdict(&snap, &shares).expect("a verdict"),
                Authenticity::Authentic,
                "shares {s:?}"
            );
        }
    }
    let reversed = keys.stored(&[2, 0]);
    assert!(verdict(&snap, &reversed).unwrap().is_authentic());
    // one share is not enough
    for i in 0..3 {
        let e = verdict(&snap, &keys.stored(&[i])).unwrap_err();
        assert_eq!(e.check(), "too-few-shares");
    }
    // the other cluster's keys (any ≥ 2 of them), or a mix
    for s in subsets(3, 2) {
        assert_eq!(
            verdict(&snap, &other.stored(&s)).unwrap(),
            Authenticity::OtherKeys
        );
    }
    let mixed = vec![keys.stored(&[0]).remove(0), other.stored(&[1]).remove(0)];
    assert_eq!(verdict(&snap, &mixed).unwrap(), Authenticity::OtherKeys);
    // and b's own snapshot is authentic with b's keys, not with a's
    let snap_b = b.path("b.snap");
    b.snapshot(&snap_b).await;
    assert!(verdict(&snap_b, &other.all()).unwrap().is_authentic());
    assert_eq!(
        verdict(&snap_b, &keys.all()).unwrap(),
        Authenticity::OtherKeys
    );

    // meta.json's Index raised: refused by the archive check, and with
    // SHA256SUMS recomputed the archive is consistent but not authentic
    let mut raised = es.clone();
    let meta: Value = serde_json::from_slice(entry(&es, "meta.json")).unwrap();
    let index = meta["Index"].as_u64().expect("Index");
    let text = String::from_utf8(entry(&es, "meta.json").to_vec()).unwrap();
    let new = text.replacen(
        &format!("\"Index\":{index},"),
        &format!("\"Index\":{},", index + 1000),
        1,
    );
    assert_ne!(new, text);
    *entry_mut(&mut raised, "meta.json") = new.into_bytes();
    let p = a.path("raised.snap");
    write_snapshot(&raised, &p);
    assert_eq!(
        verdict(&p, &keys.all()).unwrap_err().check(),
        "sha256-mismatch-meta"
    );
    resum(&mut raised);
    write_snapshot(&raised, &p);
    assert_eq!(verify_file(&p).expect("consistent").index, index + 1000);
    assert_eq!(
        verdict(&p, &keys.all()).unwrap(),
        Authenticity::SumsMismatch
    );

    // one byte of state.bin flipped, sums recomputed
    let mut flipped = es.clone();
    let state = entry_mut(&mut flipped, "state.bin");
    let mid = state.len() / 2;
    state[mid] ^= 0x01;
    resum(&mut flipped);
    let p = a.path("flipped.snap");
    write_snapshot(&flipped, &p);
    assert!(verify_file(&p).is_ok());
    assert_eq!(
        verdict(&p, &keys.all()).unwrap(),
        Authenticity::SumsMismatch
    );

    // one bit of the sealed ciphertext flipped
    let mut resealed = es.clone();
    let sealed = entry_mut(&mut resealed, "SHA256SUMS.sealed");
    sealed[40] ^= 0x08;
    let p = a.path("sealed.snap");
    write_snapshot(&resealed, &p);
    assert_eq!(verdict(&p, &keys.all()).unwrap(), Authenticity::OtherKeys);

    // a rebuilt but unchanged archive still authenticates (the check is on
    // the contents, not the gzip bytes)
    let p = a.path("rebuilt.snap");
    write_snapshot(&es, &p);
    assert!(verdict(&p, &keys.stored(&[1, 2])).unwrap().is_authentic());
}

#[tokio::test]
async fn the_sealed_lines_come_in_either_order_and_still_authenticate() {
    let mut a = Bao::start("").await;
    let keys = a.init_unsealed(3, 2).await;
    let mut swapped = 0;
    const N: usize = 12;
    for i in 0..N {
        let p = a.path(&format!("s{i}.snap"));
        a.snapshot(&p).await;
        let s = sealed_sums_file(&p).expect("verifies");
        if open_sealed(&s.sealed, &keys) != s.sums {
            swapped += 1;
        }
        assert_eq!(
            authenticate(&s.sealed, &s.sums, &keys.stored(&[0, 2])).unwrap(),
            Authenticity::Authentic,
            "snapshot {i}"
        );
    }
    eprintln!("{swapped} of {N} snapshots seal their sums in the other line order");
}

#[tokio::test]
async fn a_rekey_changes_which_keys_authenticate() {
    let mut a = Bao::start("").await;
    let old = a.init_unsealed(3, 2).await;
    let before = a.path("before.snap");
    a.snapshot(&before).await;

    // a root key rotation alone (`sys/rotate/root`, no shares) keeps the
    // unseal key: snapshots still authenticate with the same shares
    a.ok(Method::PUT, "sys/rotate/root", None).await;
    let rotated = a.path("rotated.snap");
    a.snapshot(&rotated).await;
    assert!(verdict(&rotated, &old.all()).unwrap().is_authentic());

    let new = a.rekey(&old, 3, 2).await;
    assert_ne!(new.b64, old.b64);
    a.write("app/after", json!({"k": "v"})).await;
    let after = a.path("after.snap");
    a.snapshot(&after).await;

    for s in subsets(3, 2) {
        assert_eq!(
            verdict(&before, &old.stored(&s)).unwrap(),
            Authenticity::Authentic
        );
        assert_eq!(
            verdict(&before, &new.stored(&s)).unwrap(),
            Authenticity::OtherKeys
        );
        assert_eq!(
            verdict(&after, &new.stored(&s)).unwrap(),
            Authenticity::Authentic
        );
        assert_eq!(
            verdict(&after, &old.stored(&s)).unwrap(),
            Authenticity::OtherKeys
        );
    }
    // OpenBao agrees: a plain restore of the pre-rekey snapshot is refused
    let body = fs::read(&before).unwrap();
    let resp = a
        .http
        .post(format!("{}/v1/sys/storage/raft/snapshot", a.addr))
        .header("X-Vault-Token", a.token.as_deref().unwrap())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    eprintln!("plain restore of the pre-rekey snapshot: {status} {text}");
}
