//! `snapward verify --keys DIR | -f POLICY` and `snapward list -f POLICY`
//! authenticating real OpenBao 2.7.2 snapshots with real key shares: two
//! real servers (3 shares, threshold 2 each) give a snapshot, its own keys
//! and another cluster's keys; a copy with a raised meta.json Index and
//! recomputed SHA256SUMS is the tampered one. Key material must never reach
//! stdout or stderr. Needs `eval "$(scripts/test-env.sh)"`.
//!
//! The stores without key shares need no server: the fixture snapshot and
//! a key dir holding only a root token (what an auto-unseal cluster's store
//! holds).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;
use snapward::snapshot::{Identity, verify_file};

use crate::support::bao::BaoCluster;
use crate::support::fixture_snapshot;
use crate::support::surgery::{entries, entry, entry_mut, resum, write_snapshot};
use crate::support::work::Work;

/// What one `snapward` invocation printed.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn context(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.context()))
    }
}

/// Runs the binary (clean environment, `NO_COLOR`), collecting every output
/// for the secrecy check at the end.
struct Runner {
    work: Work,
    seen: Vec<Out>,
}

impl Runner {
    fn new() -> Self {
        Self {
            work: Work::with("snapward-verify-auth-", crate::support::work::RUN_LIMIT),
            seen: Vec::new(),
        }
    }

    async fn run(&mut self, args: &[&dyn AsRef<OsStr>]) -> &Out {
        self.run_logged(args, None).await
    }

    /// [`Runner::run`] with `SNAPWARD_LOG` set to `log`.
    async fn run_logged(&mut self, args: &[&dyn AsRef<OsStr>], log: Option<&str>) -> &Out {
        let args: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        let mut cmd = self.work.command(&args);
        cmd.env("NO_COLOR", "1");
        if let Some(l) = log {
            cmd.env("SNAPWARD_LOG", l);
        }
        let out = self.work.output(cmd).await;
        self.seen.push(Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
        self.seen.last().expect("just pushed")
    }

    /// No stdout or stderr so far holds any of `secrets`.
    fn assert_never_printed(&self, secrets: &[String]) {
        assert!(self.seen.len() > 3, "only {} runs", self.seen.len());
        for out in &self.seen {
            for s in secrets {
                assert!(
                    !out.stdout.contains(s.as_str()) && !out.stderr.contains(s.as_str()),
                    "key material printed:\n{}",
                    out.context()
                );
            }
        }
    }
}

/// A real server's key shares (hex, as `sys/init` returns `keys`) and root
/// token.
struct Cluster {
    bao: BaoCluster,
    shares: Vec<String>,
    root_token: String,
}

impl Cluster {
    /// One raft node, initialised with 3 shares / threshold 2, unsealed.
    async fn start() -> Self {
        let mut bao = BaoCluster::single().await;
        let (shares, root_token) = bao.init_unsealed(3, 2).await;
        assert_eq!(shares.len(), 3);
        Self {
            bao,
            shares,
            root_token,
        }
    }

    /// `GET sys/storage/raft/snapshot` into `to`.
    async fn snapshot(&self, to: &Path) {
        let url = self
            .bao
            .address(0)
            .join("v1/sys/storage/raft/snapshot")
            .expect("url");
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(url)
            .header("X-Vault-Token", &self.root_token)
            .send()
            .await
            .expect("snapshot request");
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "snapshot");
        fs::write(to, resp.bytes().await.expect("snapshot body")).expect("write snapshot");
    }

    /// A key dir in the file store's layout (`<prefix>0..2`, `root-token`).
    fn key_dir(&self, dir: &Path, prefix: &str) -> PathBuf {
        fs::create_dir_all(dir).expect("mkdir");
        for (i, s) in self.shares.iter().enumerate() {
            write_secret(&dir.join(format!("{prefix}{i}")), s);
        }
        write_secret(&dir.join("root-token"), &self.root_token);
        dir.to_path_buf()
    }

    /// Each share as hex and as base64, and the root token.
    fn secrets(&self) -> Vec<String> {
        let mut out = vec![self.root_token.clone()];
        for s in &self.shares {
            out.push(s.clone());
            let bytes = hex::decode(s).expect("hex share");
            out.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        out
    }
}

fn write_secret(path: &Path, value: &str) {
    fs::write(path, format!("{value}\n")).expect("write key file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `snapshot` with meta.json's Index raised by 1000 and SHA256SUMS
/// recomputed: a consistent archive whose sealed sums no longer match.
fn raised_copy(snapshot: &Path, to: &Path) -> u64 {
    let mut es = entries(snapshot);
    let text = String::from_utf8(entry(&es, "meta.json").to_vec()).expect("utf-8 meta");
    let meta: Value = serde_json::from_str(&text).expect("meta.json");
    let index = meta["Index"].as_u64().expect("Index");
    let raised = text.replacen(
        &format!("\"Index\":{index},"),
        &format!("\"Index\":{},", index + 1000),
        1,
    );
    assert_ne!(raised, text, "meta.json: {text}");
    *entry_mut(&mut es, "meta.json") = raised.into_bytes();
    resum(&mut es);
    write_snapshot(&es, to);
    index + 1000
}

/// Today's human line of a valid snapshot.
fn valid_line(file: &Path, id: &Identity) -> String {
    format!(
        "{}: valid  index={} term={} size={} sha256={}",
        file.display(),
        id.index,
        id.term,
        id.file_size,
        id.sha256
    )
}

/// A policy (JSON is YAML) with a local store and a file key store.
fn policy(
    work: &Work,
    name: &str,
    local: &Path,
    keys: Option<&Path>,
    nfs: Option<&Path>,
) -> PathBuf {
    let mut p = serde_json::json!({
        "apiVersion": "snapward.dev/v1alpha1",
        "kind": "SnapshotPolicy",
        "metadata": {"name": name},
        "spec": {
            "cluster": {"nodes": [{"address": "http://127.0.0.1:1"}]},
            "local": {"path": local.display().to_string(), "retention": {"keepLast": 5}},
        }
    });
    if let Some(k) = keys {
        p["spec"]["unsealKeys"] =
            serde_json::json!({"files": {"directory": k.display().to_string()}});
    }
    if let Some(n) = nfs {
        p["spec"]["targets"] = serde_json::json!([
            {"name": "nfs", "filesystem": {"path": n.display().to_string()}, "retention": {"keepLast": 5}}
        ]);
    }
    work.write_policy(&format!("{name}.yaml"), &p)
}

#[tokio::test]
async fn verify_tells_authentic_from_other_keys_and_tampered_with_a_key_dir_or_a_policy() {
    let (a, b) = tokio::join!(Cluster::start(), Cluster::start());
    let mut r = Runner::new();
    let snap = r.work.path("a.snap");
    a.snapshot(&snap).await;
    let keys_a = a.key_dir(&r.work.path("keys-a"), "unseal-key-");
    let keys_b = b.key_dir(&r.work.path("keys-b"), "unseal-key-");
    let tampered = r.work.path("tampered.snap");
    let raised = raised_copy(&snap, &tampered);
    let id = verify_file(&snap).expect("the real snapshot verifies");
    let id_t = verify_file(&tampered).expect("the tampered copy is a consistent archive");
    assert_eq!(id_t.index, raised);

    // its own keys: authentic, exit 0 — today's line plus the verdict
    let o = r.run(&[&"verify", &snap, &"--keys", &keys_a]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert_eq!(o.stdout, format!("{}  authentic\n", valid_line(&snap, &id)));

    // the second server's keys: sealed with other keys, exit 1
    let o = r.run(&[&"verify", &snap, &"--keys", &keys_b]).await;
    assert_eq!(o.code, Some(1), "{}", o.context());
    assert_eq!(
        o.stdout,
        format!("{}  sealed with other keys\n", valid_line(&snap, &id))
    );

    // raised Index, SHA256SUMS recomputed: valid as an archive, tampered
    let o = r.run(&[&"verify", &tampered, &"--keys", &keys_a]).await;
    assert_eq!(o.code, Some(1), "{}", o.context());
    assert_eq!(
        o.stdout,
        format!(
            "{}  tampered: SHA256SUMS differs from the sealed sums\n",
            valid_line(&tampered, &id_t)
        )
    );

    // no keys: exactly today's output and exit code (the tampered copy too:
    // only the keys can tell)
    let o = r.run(&[&"verify", &snap, &tampered]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert_eq!(
        o.stdout,
        format!(
            "{}\n{}\n",
            valid_line(&snap, &id),
            valid_line(&tampered, &id_t)
        )
    );
    let o = r.run(&[&"verify", &"--format", &"json", &snap]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    let rows = o.json();
    assert_eq!(rows[0]["valid"], true);
    assert_eq!(rows[0]["identity"]["index"], id.index);
    assert!(rows[0].get("authenticity").is_none(), "{rows}");

    // JSON, several files, one pass each: every verdict, in argument order
    let fixture = fixture_snapshot();
    let o = r
        .run(&[
            &"verify",
            &"--format",
            &"json",
            &"--keys",
            &keys_a,
            &snap,
            &tampered,
            &fixture,
        ])
        .await;
    assert_eq!(o.code, Some(1), "{}", o.context());
    let rows = o.json();
    let verdicts: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["authenticity"].as_str().expect("authenticity"))
        .collect();
    assert_eq!(
        verdicts,
        ["authentic", "sums-mismatch", "other-keys"],
        "{rows}"
    );
    assert_eq!(rows[0]["file"], snap.display().to_string());
    assert_eq!(rows[0]["identity"]["sha256"], id.sha256);
    assert!(rows[0].get("reason").is_none(), "{rows}");

    // -f POLICY with a file key store: the same verdicts
    let local = r.work.mkdir("snapshots");
    let pol_a = policy(&r.work, "keys-a", &local, Some(&keys_a), None);
    let pol_b = policy(&r.work, "keys-b", &local, Some(&keys_b), None);
    let o = r.run(&[&"verify", &"-f", &pol_a, &snap]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert_eq!(o.stdout, format!("{}  authentic\n", valid_line(&snap, &id)));
    let o = r.run(&[&"verify", &"-f", &pol_b, &snap]).await;
    assert_eq!(o.code, Some(1), "{}", o.context());
    assert!(
        o.stdout.ends_with("  sealed with other keys\n"),
        "{}",
        o.context()
    );
    let o = r.run(&[&"verify", &"-f", &pol_a, &tampered]).await;
    assert_eq!(o.code, Some(1), "{}", o.context());
    assert!(o.stdout.contains("  tampered: "), "{}", o.context());

    // another prefix, and any two of the three shares
    let two = r.work.mkdir("two-shares");
    for (n, i) in [(0, 2), (1, 0)] {
        write_secret(&two.join(format!("key-{n}")), &a.shares[i]);
    }
    let o = r
        .run(&[&"verify", &"--keys", &two, &"--key-prefix", &"key-", &snap])
        .await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert!(o.stdout.ends_with("  authentic\n"), "{}", o.context());
    // ... but with the default prefix that dir holds no shares
    let o = r.run(&[&"verify", &"--keys", &two, &snap]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(
        o.stdout.contains("not checkable: the key store files:"),
        "{}",
        o.context()
    );
    assert!(
        o.stdout
            .contains(" is missing or empty: no key shares (unseal-key-0, "),
        "{}",
        o.context()
    );

    // a lone share is below any split key's threshold: the store is unusable
    let one = r.work.mkdir("one-share");
    write_secret(&one.join("unseal-key-0"), &a.shares[1]);
    let o = r.run(&[&"verify", &"--keys", &one, &snap]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(
        o.stdout
            .contains("  not checkable: the key shares in files:"),
        "{}",
        o.context()
    );
    assert!(
        o.stderr.contains("one key share of 33 bytes is not enough"),
        "{}",
        o.context()
    );

    // not at the most verbose log level either
    let o = r
        .run_logged(&[&"verify", &"--keys", &keys_a, &snap], Some("trace"))
        .await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    let o = r
        .run_logged(&[&"verify", &"-f", &pol_b, &snap], Some("trace"))
        .await;
    assert_eq!(o.code, Some(1), "{}", o.context());

    let mut secrets = a.secrets();
    secrets.extend(b.secrets());
    r.assert_never_printed(&secrets);
}

#[tokio::test]
async fn list_shows_each_local_snapshots_authenticity_when_the_keys_are_readable() {
    let (a, b) = tokio::join!(Cluster::start(), Cluster::start());
    let mut r = Runner::new();
    let local = r.work.mkdir("snapshots");
    let nfs = r.work.mkdir("nfs");
    let genuine = local.join("openbao-20261120-020000.snap");
    let foreign = local.join("openbao-20261121-020000.snap");
    let tampered = local.join("openbao-20261122-020000.snap");
    a.snapshot(&genuine).await;
    b.snapshot(&foreign).await;
    raised_copy(&genuine, &tampered);
    let bytes = fs::read(&genuine).expect("read");
    fs::write(
        local.join("openbao-20261123-020000.snap"),
        &bytes[..bytes.len() / 2],
    )
    .expect("write truncated");
    fs::copy(&genuine, nfs.join("openbao-20261120-020000.snap")).expect("copy to nfs");
    let keys_a = a.key_dir(&r.work.path("keys-a"), "unseal-key-");
    let pol = policy(&r.work, "list-a", &local, Some(&keys_a), Some(&nfs));

    let o = r.run(&[&"list", &"--format", &"json", &"-f", &pol]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    let v = o.json();
    assert_eq!(v[0]["store"], "local");
    let row = |name: &str| -> Value {
        v[0]["snapshots"]
            .as_array()
            .expect("local rows")
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    assert_eq!(
        row("openbao-20261120-020000.snap")["authenticity"],
        "authentic"
    );
    assert_eq!(
        row("openbao-20261121-020000.snap")["authenticity"],
        "other-keys"
    );
    assert_eq!(
        row("openbao-20261122-020000.snap")["authenticity"],
        "sums-mismatch"
    );
    let broken = row("openbao-20261123-020000.snap");
    assert_eq!(broken["valid"], false);
    assert!(broken.get("authenticity").is_none(), "{broken}");
    // a filesystem target's rows: read in full on listing, so judged by
    // their sealed sums too (exec::trust)
    assert_eq!(v[1]["store"], "nfs");
    let remote = &v[1]["snapshots"][0];
    assert_eq!(remote["valid"], true, "{v}");
    assert_eq!(remote["authenticity"], "authentic", "{remote}");
    assert!(o.stderr.is_empty(), "{}", o.context());

    // human: a column in the local store only
    let o = r.run(&[&"list", &"-f", &pol]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    let line = |name: &str| -> String {
        o.stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", o.stdout))
            .to_string()
    };
    assert!(
        line("openbao-20261120-020000.snap").contains(" authentic "),
        "{}",
        o.stdout
    );
    assert!(
        line("openbao-20261121-020000.snap").contains(" other-keys "),
        "{}",
        o.stdout
    );
    // the filesystem target's files are judged by their sealed sums too
    let nfs_part = o.stdout.split("nfs:\n").nth(1).expect("the nfs store");
    assert!(nfs_part.contains(" authentic "), "{}", o.stdout);

    // keys unreadable (a store holding only the root token): a note on
    // stderr, the rows without authenticity, the exit code unchanged
    let token_only = r.work.mkdir("token-only");
    write_secret(&token_only.join("root-token"), &a.root_token);
    let pol = policy(
        &r.work,
        "list-token-only",
        &local,
        Some(&token_only),
        Some(&nfs),
    );
    let o = r.run(&[&"list", &"--format", &"json", &"-f", &pol]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert!(
        o.stderr
            .contains("note: authenticity not shown: the key store files:")
            && o.stderr.contains("holds no unseal key shares"),
        "{}",
        o.context()
    );
    let v = o.json();
    for s in v[0]["snapshots"].as_array().expect("rows") {
        assert!(s.get("authenticity").is_none(), "{s}");
    }
    // and a policy without a key store: exactly as before, no note
    let pol = policy(&r.work, "list-no-keys", &local, None, None);
    let o = r.run(&[&"list", &"--format", &"json", &"-f", &pol]).await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert!(o.stderr.is_empty(), "{}", o.context());
    assert!(!o.stdout.contains("authenticity"), "{}", o.context());

    let pol = policy(&r.work, "list-a-traced", &local, Some(&keys_a), Some(&nfs));
    let o = r.run_logged(&[&"list", &"-f", &pol], Some("trace")).await;
    assert_eq!(o.code, Some(0), "{}", o.context());

    let mut secrets = a.secrets();
    secrets.extend(b.secrets());
    r.assert_never_printed(&secrets);
}

#[tokio::test]
async fn a_key_store_without_shares_makes_every_snapshot_not_checkable() {
    let mut r = Runner::new();
    let fixture = fixture_snapshot();
    let id = verify_file(&fixture).expect("fixture");
    let token = "s.only-a-root-token-here".to_string();
    let token_only = r.work.mkdir("token-only");
    write_secret(&token_only.join("root-token"), &token);
    let corrupt = r.work.file("corrupt.snap", "not a snapshot");

    // an auto-unseal cluster's store: only the root token
    let o = r
        .run(&[&"verify", &"--keys", &token_only, &fixture, &corrupt])
        .await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    let mut lines = o.stdout.lines();
    let first = lines.next().expect("a line per file");
    assert!(
        first.starts_with(&format!(
            "{}  not checkable: the key store files:",
            valid_line(&fixture, &id)
        )),
        "{}",
        o.context()
    );
    assert!(first.contains("holds no unseal key shares"), "{first}");
    // an invalid archive is still named as such
    assert!(
        lines
            .next()
            .is_some_and(|l| l.contains(": INVALID  check=")),
        "{}",
        o.context()
    );
    assert!(
        o.stderr.contains("error: cannot authenticate: "),
        "{}",
        o.context()
    );

    let o = r
        .run(&[
            &"verify",
            &"--format",
            &"json",
            &"--keys",
            &token_only,
            &fixture,
        ])
        .await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    let row = &o.json()[0];
    assert_eq!(row["valid"], true);
    assert_eq!(row["authenticity"], "not-checkable");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|s| s.contains("auto-unseal")),
        "{row}"
    );

    // the same through a policy
    let local = r.work.mkdir("snapshots");
    let pol = policy(&r.work, "token-only", &local, Some(&token_only), None);
    let o = r.run(&[&"verify", &"-f", &pol, &fixture]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(
        o.stdout.contains("  not checkable: the key store files:"),
        "{}",
        o.context()
    );

    // a policy without a key store, a missing key dir, a policy that does
    // not load: usage errors (2)
    let pol = policy(&r.work, "no-keys", &local, None, None);
    let o = r.run(&[&"verify", &"-f", &pol, &fixture]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(
        o.stdout.contains("names no key store (spec.unsealKeys)"),
        "{}",
        o.context()
    );
    let missing = r.work.path("missing-keys");
    let o = r.run(&[&"verify", &"--keys", &missing, &fixture]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(
        o.stdout
            .contains("not checkable: cannot read the key directory"),
        "{}",
        o.context()
    );
    let nope = r.work.path("nope.yaml");
    let o = r.run(&[&"verify", &"-f", &nope, &fixture]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(o.stdout.is_empty(), "{}", o.context());
    // flags that make no sense alone or together
    let o = r.run(&[&"verify", &"--key-prefix", &"k-", &fixture]).await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    let o = r
        .run(&[&"verify", &"--keys", &token_only, &"-f", &pol, &fixture])
        .await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(o.stderr.contains("cannot be used with"), "{}", o.context());

    r.assert_never_printed(&[token]);
}

/// The key Secret the file layout maps to: `<prefix>N` and `root-token`,
/// each value base64 in `data`.
fn key_secret(c: &Cluster, namespace: &str, name: &str) -> Value {
    let b64 = |s: &str| Value::from(base64::engine::general_purpose::STANDARD.encode(s));
    let mut data = serde_json::Map::new();
    for (i, k) in c.shares.iter().enumerate() {
        data.insert(format!("unseal-key-{i}"), b64(k));
    }
    data.insert("root-token".into(), b64(&c.root_token));
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "immutable": true,
        "data": data,
    })
}

#[tokio::test]
async fn verify_and_list_read_a_kubernetes_secret_key_store_read_only() {
    let a = Cluster::start().await;
    let mut r = Runner::new();
    let kube = crate::support::kube_api::FakeKube::start().await;
    // the policy names the namespace; the kubeconfig's context another one
    kube.insert("secrets", "openbao", key_secret(&a, "openbao", "bao-keys"));
    let kubeconfig = r.work.file(
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\n\
             clusters: [{{name: fake, cluster: {{server: \"{}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: elsewhere}}}}]\n\
             current-context: fake\n",
            kube.url
        ),
    );
    let local = r.work.mkdir("snapshots");
    let snap = local.join("openbao-20261120-020000.snap");
    a.snapshot(&snap).await;
    let id = verify_file(&snap).expect("verifies");
    let pol = r.work.write_policy(
        "secret.yaml",
        &serde_json::json!({
            "apiVersion": "snapward.dev/v1alpha1",
            "kind": "SnapshotPolicy",
            "metadata": {"name": "k", "namespace": "openbao"},
            "spec": {
                "cluster": {"nodes": [{"address": "http://127.0.0.1:1"}]},
                "local": {"path": local.display().to_string(), "retention": {"keepLast": 5}},
                "unsealKeys": {"kubernetesSecret": {"name": "bao-keys"}},
            }
        }),
    );

    let o = r
        .run(&[&"verify", &"-f", &pol, &"--kubeconfig", &kubeconfig, &snap])
        .await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert_eq!(o.stdout, format!("{}  authentic\n", valid_line(&snap, &id)));

    let o = r
        .run(&[
            &"list",
            &"--format",
            &"json",
            &"-f",
            &pol,
            &"--kubeconfig",
            &kubeconfig,
        ])
        .await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert_eq!(
        o.json()[0]["snapshots"][0]["authenticity"],
        "authentic",
        "{}",
        o.context()
    );

    // read, never written
    let secrets = kube.requests_to("secrets");
    assert!(!secrets.is_empty());
    for q in &secrets {
        assert_eq!(q.method, "GET", "{q:?}");
        assert!(q.path.contains("/namespaces/openbao/"), "{q:?}");
    }

    // the Secret gone: verify is a usage error (2), list only notes it
    let missing = r.work.write_policy(
        "missing.yaml",
        &serde_json::json!({
            "apiVersion": "snapward.dev/v1alpha1",
            "kind": "SnapshotPolicy",
            "metadata": {"name": "k", "namespace": "openbao"},
            "spec": {
                "cluster": {"nodes": [{"address": "http://127.0.0.1:1"}]},
                "local": {"path": local.display().to_string(), "retention": {"keepLast": 5}},
                "unsealKeys": {"kubernetesSecret": {"name": "no-such-secret"}},
            }
        }),
    );
    let o = r
        .run(&[
            &"verify",
            &"-f",
            &missing,
            &"--kubeconfig",
            &kubeconfig,
            &snap,
        ])
        .await;
    assert_eq!(o.code, Some(2), "{}", o.context());
    assert!(
        o.stdout.contains(
            "  not checkable: the key store secret openbao/no-such-secret is missing or empty"
        ),
        "{}",
        o.context()
    );
    let o = r
        .run(&[&"list", &"-f", &missing, &"--kubeconfig", &kubeconfig])
        .await;
    assert_eq!(o.code, Some(0), "{}", o.context());
    assert!(
        o.stderr.contains("note: authenticity not shown: "),
        "{}",
        o.context()
    );

    let mut secrets = a.secrets();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    secrets.extend(a.shares.iter().map(|s| b64(s)));
    secrets.push(b64(&a.root_token));
    r.assert_never_printed(&secrets);
}
