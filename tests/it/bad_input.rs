//! Bad input, end to end: a table of malformed policies, bad invocations
//! and broken environments, each run through the real `snapward` binary.
//!
//! Every row names the exact invocation, the exit code it must give and
//! the text of the clear error it must print (what is wrong, how to fix it).
//! Every row also asserts that nothing panicked (no `panicked`,
//! `RUST_BACKTRACE` or `stack backtrace` in the output), that no secret the
//! test knows (tokens, S3 secrets, key material) appears in the output, and,
//! where the row names directories, that nothing in them was lost: every
//! file there before the run is still there, byte-identical, and no
//! `.partial` temp file was left behind.
//!
//! Two tables: [`offline_bad_inputs`] needs nothing but the binary;
//! [`bad_environments`] shares one initialised OpenBao node, one fresh
//! (never initialised) node and one s3s-fs server (it checks SigV4) across
//! its rows, which run one after another.
//!
//! Rows that need privileges behave the same as root and not: where root
//! would read a `chmod 000` file, a directory stands in for the file; a full
//! disk is a small tmpfs when mounting works, else a file-size limit
//! (`RLIMIT_FSIZE` via `prlimit`, `SIGXFSZ` ignored) on the child; a
//! read-only store is a read-only tmpfs as root (else a read-only bind
//! mount, else an immutable dir, `chattr +i`), else a `chmod 0555` dir.
//! A row whose mechanism is unavailable is skipped: it is printed
//! (`SKIP`), and the test fails unless every skipped row is in
//! [`MAY_SKIP`] — each named there with the only reason it may skip.
//!
//! Needs `eval "$(scripts/test-env.sh)"`. `BAD_INPUT_VERBOSE=1` prints
//! every row's output.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::bao::BaoCluster;
use crate::support::cmd;
use crate::support::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use crate::support::{closed_port, fixture_snapshot, root};

/// Output that means a panic escaped, or an error was shown as a Debug
/// dump of its internals instead of a sentence.
const PANIC_MARKERS: [&str; 5] = [
    "panicked",
    "RUST_BACKTRACE",
    "stack backtrace",
    "DispatchFailure {",
    "ConnectorError {",
];
/// Longest one row's process may run.
const ROW_TIMEOUT: Duration = Duration::from_secs(180);
const BUCKET: &str = "bad-input";
const PREFIX: &str = "openbao-";
/// A secret access key s3s-fs does not know.
const WRONG_SECRET: &str = "wrong-secret-0d7f3a9c51e8b2";
/// What the fresh node's key store holds (never a real key: the fresh-node
/// rows must refuse before any key is used).
const DUMMY_KEY: &str = "dummy-unseal-key-4b1f9e07c2d8a6";
const SNAPSHOT_ACL: &str = r#"path "sys/storage/raft/snapshot" { capabilities = ["read"] }"#;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

// ---- the row runner -----------------------------------------------------------

/// One bad input: the invocation and everything its outcome must show.
struct Row {
    name: String,
    args: Vec<OsString>,
    /// Extra environment for the child.
    env: Vec<(String, String)>,
    code: i32,
    /// Each must appear in stdout or stderr.
    expect: Vec<String>,
    /// Every file in these dirs before the run must still be there after it,
    /// byte-identical (new files are allowed).
    kept: Vec<PathBuf>,
    /// These dirs must be exactly as they were: no file added either (but
    /// the run lock file).
    untouched: Vec<PathBuf>,
    /// Run with stdout connected to a pipe whose reader is already closed.
    stdout_closed: bool,
    /// Run under this RLIMIT_FSIZE (bytes), SIGXFSZ ignored.
    fsize: Option<u64>,
    /// Why the row cannot run here (printed, not counted as run).
    skip: Option<String>,
}

impl Row {
    fn new(name: impl Into<String>, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Self {
        Row {
            name: name.into(),
            args: args.iter().map(|a| a.as_ref().to_os_string()).collect(),
            env: Vec::new(),
            code: -1,
            expect: Vec::new(),
            kept: Vec::new(),
            untouched: Vec::new(),
            stdout_closed: false,
            fsize: None,
            skip: None,
        }
    }
    fn code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
    fn expect(mut self, text: impl Into<String>) -> Self {
        self.expect.push(text.into());
        self
    }
    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    fn kept(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kept.push(dir.into());
        self
    }
    fn untouched(mut self, dir: impl Into<PathBuf>) -> Self {
        self.untouched.push(dir.into());
        self
    }
    fn stdout_closed(mut self) -> Self {
        self.stdout_closed = true;
        self
    }
    fn fsize(mut self, bytes: u64) -> Self {
        self.fsize = Some(bytes);
        self
    }
    fn skip(mut self, why: impl Into<String>) -> Self {
        self.skip = Some(why.into());
        self
    }

    fn invocation(&self) -> String {
        let mut s = String::from("snapward");
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// Relative path → SHA-256 of every file under `dir` (recursively).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => walk(root, &p, out),
                Ok(_) => {
                    let sum = fs::read(&p)
                        .map(|b| hex::encode(Sha256::digest(&b)))
                        .unwrap_or_else(|e| format!("unreadable: {e}"));
                    out.insert(rel, sum);
                }
                Err(e) => {
                    out.insert(rel, format!("no metadata: {e}"));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `text` with every run of whitespace and miette's wrap marks (`│`) as
/// one space.
fn flatten(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the binary for `row`; stdout and stderr go to files (no pipe can
/// fill up), the process is killed after [`ROW_TIMEOUT`].
fn spawn(row: &Row, scratch: &Path) -> (Option<i32>, String, String) {
    let out_path = scratch.join("stdout");
    let err_path = scratch.join("stderr");
    let _ = fs::remove_file(&out_path);
    let mut cmd = match row.fsize {
        None => cmd::snapward(),
        // An ignored SIGXFSZ stays ignored across exec: writes past the
        // limit fail with EFBIG instead of killing the process.
        Some(limit) => cmd::snapward_under(
            "sh",
            &[
                "-c".to_string(),
                r#"trap '' XFSZ; exec prlimit --fsize="$0" -- "$@""#.to_string(),
                limit.to_string(),
            ],
        ),
    };
    cmd.args(&row.args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stderr(fs::File::create(&err_path).expect("stderr file"));
    for (k, v) in &row.env {
        cmd.env(k, v);
    }
    if row.stdout_closed {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        cmd.stdout(writer);
    } else {
        cmd.stdout(fs::File::create(&out_path).expect("stdout file"));
    }
    let mut child = cmd.spawn().expect("start snapward");
    drop(cmd); // closes our copy of the pipe's write end
    let deadline = Instant::now() + ROW_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for snapward") {
            Some(s) => break Some(s),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let code = match status {
        None => Some(-2), // timed out
        Some(s) => s.code(),
    };
    (code, read(&out_path), read(&err_path))
}

/// The rows that may skip, and the one situation each may skip in. Any
/// other skip fails the test (see [`expect_no_other_skips`]).
const MAY_SKIP: &[(&str, &str)] = &[
    (
        "local.path read-only",
        "root without CAP_SYS_ADMIN (no tmpfs, no bind mount) and without CAP_LINUX_IMMUTABLE (no chattr +i)",
    ),
    (
        "disk full",
        "root without CAP_SYS_ADMIN (no tmpfs) and no prlimit",
    ),
];

/// Fails naming every skipped row (and why) unless each one is in
/// [`MAY_SKIP`].
fn expect_no_other_skips(table: &str, ran: usize, skipped: &[(String, String)]) {
    for (name, why) in skipped {
        eprintln!("[{table}] SKIPPED {name}: {why}");
    }
    let unexpected: Vec<&(String, String)> = skipped
        .iter()
        .filter(|(n, _)| !MAY_SKIP.iter().any(|(m, _)| m == n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "[{table}] {ran} rows ran, {} skipped; these may not skip: {unexpected:?} (allowed: {MAY_SKIP:?})",
        skipped.len()
    );
}

/// Runs every row; returns how many ran and the skipped rows (name, why).
/// Fails (after running them all) naming each row that did not behave.
fn run_rows(table: &str, rows: Vec<Row>, secrets: &[String]) -> (usize, Vec<(String, String)>) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut skipped = Vec::new();
    for row in &rows {
        if let Some(why) = &row.skip {
            eprintln!("[{table}] SKIP {}: {why}", row.name);
            skipped.push((row.name.clone(), why.clone()));
            continue;
        }
        assert!(
            row.code >= 0,
            "row `{}` has no expected exit code",
            row.name
        );
        assert!(
            !row.expect.is_empty(),
            "row `{}` names no expected message",
            row.name
        );
        ran += 1;
        let before: Vec<BTreeMap<String, String>> = row
            .kept
            .iter()
            .chain(&row.untouched)
            .map(|d| tree(d))
            .collect();
        let (code, stdout, stderr) = spawn(row, scratch.path());
        let after: Vec<BTreeMap<String, String>> = row
            .kept
            .iter()
            .chain(&row.untouched)
            .map(|d| tree(d))
            .collect();
        let both = format!("{stdout}\n{stderr}");
        // miette wraps long lines (`\n  │ `): match across the wraps.
        let flat = flatten(&both);
        let mut problems = Vec::new();
        if code != Some(row.code) {
            problems.push(format!("exit code {code:?}, expected {}", row.code));
        }
        for e in &row.expect {
            if !flat.contains(&flatten(e)) {
                problems.push(format!("output lacks {e:?}"));
            }
        }
        for m in PANIC_MARKERS {
            if both.contains(m) {
                problems.push(format!("output contains {m:?}"));
            }
        }
        for s in secrets {
            if both.contains(s.as_str()) {
                problems.push(format!(
                    "a secret ({} chars) appears in the output",
                    s.len()
                ));
            }
        }
        let dirs: Vec<&PathBuf> = row.kept.iter().chain(&row.untouched).collect();
        for (i, dir) in dirs.iter().enumerate() {
            let exact = i >= row.kept.len();
            for (rel, sum) in &before[i] {
                match after[i].get(rel) {
                    None => problems.push(format!("{}/{rel} was lost", dir.display())),
                    Some(s) if s != sum => {
                        problems.push(format!("{}/{rel} changed", dir.display()))
                    }
                    Some(_) => {}
                }
            }
            for rel in after[i].keys().filter(|r| !before[i].contains_key(*r)) {
                // The run lock (`.snapward-<policy>.lock`) is bookkeeping.
                // So is the verification cache (`.snapward-verified.json`).
                let lock = rel.starts_with(".snapward-") && rel.ends_with(".lock");
                let cache = rel.as_str() == ".snapward-verified.json";
                if (exact && !lock && !cache) || rel.ends_with(".partial") {
                    problems.push(format!("{}/{rel} appeared", dir.display()));
                }
            }
        }
        let verdict = if problems.is_empty() { "ok  " } else { "FAIL" };
        eprintln!(
            "[{table}] {verdict} {} → exit {code:?}: {}",
            row.name,
            row.invocation()
        );
        if std::env::var_os("BAD_INPUT_VERBOSE").is_some() {
            eprintln!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
        }
        if !problems.is_empty() {
            let tail = |s: &str| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(25)..].join("\n")
            };
            failures.push(format!(
                "row `{}`: {}\n  invocation: {}\n  problems: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
                row.name,
                row.expect.join(" | "),
                row.invocation(),
                problems.join("; "),
                tail(&stdout),
                tail(&stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "[{table}] {} of {ran} rows failed ({} skipped: {skipped:?}):\n\n{}",
        failures.len(),
        skipped.len(),
        failures.join("\n")
    );
    expect_no_other_skips(table, ran, &skipped);
    (ran, skipped)
}

// ---- offline rows ---------------------------------------------------------------

/// A valid policy; each policy row breaks exactly one thing in it.
const BASE: &str = "\
apiVersion: snapward.dev/v1alpha1
kind: SnapshotPolicy
metadata:
  name: bad-input
spec:
  schedule: \"0 * * * *\"
  cluster:
    nodes:
      - name: openbao-0
        address: http://127.0.0.1:8200
    auth:
      tokenFile: /var/run/snapward/token
    timeouts:
      connect: 5s
  local:
    path: /var/lib/snapward/snapshots
    fileMode: \"0640\"
    retention:
      keepLast: 3
      keepWithin: 2d
  targets:
    - name: minio
      s3:
        endpoint: http://127.0.0.1:9000
        bucket: openbao-snapshots
        prefix: local/
        pathStyle: true
      retention:
        keepDaily: 14
  unsealKeys:
    files:
      directory: /var/lib/snapward/keys
  restore:
    mode: auto
    sources: [local, minio]
  init:
    shares: 3
    threshold: 2
  guards:
    maxRestoreAge: 7d
";

/// Writes policies into a temp dir.
struct Policies {
    dir: tempfile::TempDir,
}

impl Policies {
    fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("snapward-bad-input-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, content).expect("write policy");
        p
    }

    /// [`BASE`] with `from` replaced by `to` (which must change it).
    fn variant(&self, name: &str, from: &str, to: &str) -> PathBuf {
        assert!(BASE.contains(from), "{name}: BASE holds no {from:?}");
        self.write(name, BASE.replacen(from, to, 1))
    }
}

fn offline_rows(p: &Policies) -> Vec<Row> {
    let plan = |name: &str, file: &Path| Row::new(name, &[&"plan", &"-f", &file]);
    let good = p.write("good.yaml", BASE);
    let empty_dir = p.path("empty-configmap");
    fs::create_dir_all(&empty_dir).expect("mkdir");
    let not_policy_dir = p.path("policy-dir-without-policy");
    fs::create_dir_all(&not_policy_dir).expect("mkdir");
    p.write(
        "policy-dir-without-policy/service.yaml",
        "apiVersion: v1\nkind: Service\n",
    );
    let laughs: String = {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let items = vec![format!("*{}", w[0]); 9].join(",");
            s.push_str(&format!("{}: &{} [{items}]\n", w[1], w[1]));
        }
        s
    };
    vec![
        // -- malformed policies (plan -f / lint) --
        plan("yaml syntax error", &p.variant("syntax.yaml", "sources: [local, minio]", "sources: [local, minio"))
            .code(1)
            .expect("YAML syntax error")
            .expect("fix the YAML syntax"),
        plan("tab indentation", &p.variant("tabs.yaml", "    path: /var/lib/snapward/snapshots", "\tpath: /var/lib/snapward/snapshots"))
            .code(1)
            .expect("policy::yaml-syntax"),
        plan("alias bomb (billion laughs)", &p.write("laughs.yaml", &laughs))
            .code(1)
            .expect("alias expansion exceeded"),
        plan("wrong type: string for a count", &p.variant("wrong-type.yaml", "keepLast: 3", "keepLast: ten"))
            .code(1)
            .expect("expected an integer, found string \"ten\""),
        plan("wrong type: mapping expected", &p.variant("wrong-type-map.yaml", "    files:\n      directory: /var/lib/snapward/keys", "    files: /var/lib/snapward/keys"))
            .code(1)
            .expect("expected a mapping, found string"),
        plan("unquoted octal fileMode", &p.variant("file-mode.yaml", "fileMode: \"0640\"", "fileMode: 0640"))
            .code(1)
            .expect("quote octal modes"),
        plan("unknown field (typo)", &p.variant("unknown-field.yaml", "pathStyle: true", "pathStlye: true"))
            .code(1)
            .expect("unknown field `pathStlye`")
            .expect("did you mean `pathStyle`?"),
        plan("negative count", &p.variant("negative.yaml", "keepDaily: 14", "keepDaily: -1"))
            .code(1)
            .expect("-1 is less than the minimum of 0"),
        plan("count too large for u32", &p.variant("huge.yaml", "keepLast: 3", "keepLast: 99999999999"))
            .code(1)
            .expect("99999999999 is greater than the maximum of 4294967295")
            .expect("keepLast"),
        plan("local.prefix escaping the store", &p.variant("prefix.yaml", "    fileMode:", "    prefix: ../openbao-\n    fileMode:"))
            .code(1)
            .expect("string \"../openbao-\" has the wrong form"),
        plan("unsealKeys.keyPrefix escaping the key directory", &p.variant("key-prefix.yaml", "      directory: /var/lib/snapward/keys\n", "      directory: /var/lib/snapward/keys\n    keyPrefix: ../unseal-key-\n"))
            .code(1)
            .expect("string \"../unseal-key-\" has the wrong form")
            .expect("keyPrefix"),
        plan("unsealKeys.rootTokenKey escaping the key directory", &p.variant("root-token-key.yaml", "      directory: /var/lib/snapward/keys\n", "      directory: /var/lib/snapward/keys\n    rootTokenKey: ../../etc/token\n"))
            .code(1)
            .expect("string \"../../etc/token\" has the wrong form")
            .expect("rootTokenKey"),
        plan("bad retention duration", &p.variant("keep-within.yaml", "keepWithin: 2d", "keepWithin: 2 days"))
            .code(1)
            .expect("policy::bad-duration")
            .expect("use restic units"),
        plan("bad timeout", &p.variant("timeout.yaml", "connect: 5s", "connect: fast"))
            .code(1)
            .expect("bad duration \"fast\"")
            .expect("write a positive duration"),
        plan("zero timeout", &p.variant("timeout-zero.yaml", "connect: 5s", "connect: 0s"))
            .code(1)
            .expect("bad duration \"0s\""),
        plan("bad maxRestoreAge", &p.variant("max-age.yaml", "maxRestoreAge: 7d", "maxRestoreAge: a week"))
            .code(1)
            .expect("invalid duration \"a week\"")
            .expect("e.g. 7d"),
        plan("bad cron schedule", &p.variant("schedule.yaml", "schedule: \"0 * * * *\"", "schedule: \"every hour\""))
            .code(1)
            .expect("bad cron schedule"),
        plan("threshold above shares", &p.variant("threshold.yaml", "threshold: 2", "threshold: 5"))
            .code(1)
            .expect("threshold 5 with 3 shares is impossible"),
        plan("zero shares", &p.variant("shares.yaml", "shares: 3", "shares: 0"))
            .code(1)
            .expect("policy::init-threshold"),
        plan("duplicate target names", &p.variant("dup-target.yaml", "  unsealKeys:", "    - name: minio\n      filesystem: {path: /mnt/nfs}\n      retention: {keepLast: 3}\n  unsealKeys:"))
            .code(1)
            .expect("target name `minio` is already used by target 0"),
        plan("target with two kinds", &p.variant("two-kinds.yaml", "      retention:\n        keepDaily: 14", "      filesystem: {path: /mnt/nfs}\n      retention:\n        keepDaily: 14"))
            .code(1)
            .expect("needs exactly one of `s3`, `azure`, `gcs` or `filesystem`"),
        plan("missing required field", &p.variant("missing-path.yaml", "    path: /var/lib/snapward/snapshots\n", ""))
            .code(1)
            .expect("missing required field `path`"),
        plan("missing spec", &p.write("no-spec.yaml", "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {name: x}\n"))
            .code(1)
            .expect("missing required field `spec`"),
        plan("no nodes and no discovery", &p.variant("no-nodes.yaml", "    nodes:\n      - name: openbao-0\n        address: http://127.0.0.1:8200\n", ""))
            .code(1)
            .expect("give exactly one of `nodes` or `discovery`"),
        plan("node address without scheme", &p.variant("node-url.yaml", "address: http://127.0.0.1:8200", "address: openbao-0:8200"))
            .code(1)
            .expect("\"openbao-0:8200\" must use http:// or https://"),
        plan("S3 endpoint not a URL", &p.variant("endpoint.yaml", "endpoint: http://127.0.0.1:9000", "endpoint: \"minio:9000/\""))
            .code(1)
            .expect("policy::endpoint-not-url"),
        plan("S3 endpoint with user:password@", &p.variant("endpoint-creds.yaml", "endpoint: http://127.0.0.1:9000", "endpoint: http://minio:hunter2@127.0.0.1:9000"))
            .code(1)
            .expect("the endpoint holds credentials (`user:password@`)")
            .expect("S3 credentials come from credentials.accessKeyIdFile"),
        Row::new("Pushgateway URL with a password (lint --deny-warnings)", &[&"lint", &"--deny-warnings", &p.variant("push-creds.yaml", "  guards:", "  metrics:\n    pushgateway: https://push:hunter2@pushgateway.example:9091\n  guards:")])
            .code(1)
            .expect("policy::credentials-in-url")
            .expect("the Pushgateway URL holds credentials"),
        plan("unknown restore source", &p.variant("source.yaml", "sources: [local, minio]", "sources: [local, mini0]"))
            .code(1)
            .expect("restore source `mini0` is not a store of this policy")
            .expect("did you mean `minio`?"),
        plan("always-on guard switched off", &p.variant("guard.yaml", "maxRestoreAge: 7d", "maxRestoreAge: 7d\n    refuseInitOverKeys: false"))
            .code(1)
            .expect("cannot be switched off"),
        plan("wrong apiVersion", &p.variant("api-version.yaml", "snapward.dev/v1alpha1", "snapward.dev/v1"))
            .code(1)
            .expect("must be \"snapward.dev/v1alpha1\""),
        plan("metadata.name not a DNS label", &p.variant("name.yaml", "name: bad-input", "name: Bad_Input"))
            .code(1)
            .expect("string \"Bad_Input\" has the wrong form"),
        plan("empty file", &p.write("empty.yaml", ""))
            .code(1)
            .expect("no SnapshotPolicy in this file"),
        plan("two policies in one file", &p.write("two.yaml", format!("{BASE}---\n{BASE}")))
            .code(1)
            .expect("found 2 policies; snapward runs one policy at a time"),
        plan("not UTF-8", &p.write("binary.yaml", b"\xff\xfe\x00\x01garbage\x80"))
            .code(2)
            .expect("is not UTF-8 text")
            .expect("save the policy as UTF-8"),
        plan("ConfigMap with broken embedded policy", &p.write("configmap.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\ndata:\n  policy.yaml: |\n    kind: SnapshotPolicy\n    spec: [\n"))
            .code(1)
            .expect("YAML syntax error in ConfigMap key `policy.yaml`"),
        plan("directory without a policy", &not_policy_dir)
            .code(1)
            .expect("no SnapshotPolicy in")
            .expect("*.yaml"),
        plan("empty directory (ConfigMap not mounted)", &empty_dir)
            .code(1)
            .expect("no SnapshotPolicy in"),
        Row::new("lint: every problem of a file", &[&"lint", &p.variant("many.yaml", "keepLast: 3", "keepLast: -3\n      keepHourly: x")])
            .code(1)
            .expect("2 error(s)"),
        // -- bad invocations --
        Row::new("unknown flag", &[&"plan", &"--frobnicate", &"-f", &good])
            .code(2)
            .expect("unexpected argument '--frobnicate'"),
        Row::new("missing -f", &[&"run"])
            .code(2)
            .expect("the following required arguments were not provided")
            .expect("--file <POLICY>"),
        Row::new("-f given twice", &[&"plan", &"-f", &good, &"-f", &good])
            .code(2)
            .expect("cannot be used multiple times"),
        Row::new("unknown scenario", &[&"plan", &"-f", &good, &"--scenario", &"meteor"])
            .code(2)
            .expect("invalid value 'meteor' for '--scenario <SCENARIO>'"),
        Row::new("unknown subcommand", &[&"backup", &"-f", &good])
            .code(2)
            .expect("unrecognized subcommand 'backup'"),
        Row::new("bad log format from the environment", &[&"plan", &"-f", &good])
            .env("SNAPWARD_LOG_FORMAT", "xml")
            .code(2)
            .expect("invalid value 'xml'"),
        Row::new("nonexistent policy file", &[&"run", &"-f", &"/nonexistent/policy.yaml"])
            .code(2)
            .expect("cannot read policy /nonexistent/policy.yaml")
            .expect("No such file or directory"),
        Row::new("lint a nonexistent file", &[&"lint", &"does/not/exist.yaml"])
            .code(2)
            .expect("cannot read does/not/exist.yaml"),
        Row::new("verify a directory", &[&"verify", &p.path("empty-configmap")])
            .code(2)
            .expect("Is a directory"),
        Row::new("verify a policy instead of a snapshot", &[&"verify", &good])
            .code(1)
            .expect("not a gzip file"),
        Row::new("verify a nonexistent snapshot", &[&"verify", &"/nonexistent/openbao-20260101-000000.snap"])
            .code(2)
            .expect("No such file or directory"),
        Row::new("restore --snapshot with a path", &[&"restore", &"-f", &good, &"--snapshot", &"../keys/unseal-key-0"])
            .code(2)
            .expect("`../keys/unseal-key-0` is not a snapshot name")
            .expect("openbao-YYYYMMDD-HHMMSS.snap"),
        Row::new("plan into a closed stdout", &[&"plan", &"-f", &good])
            .stdout_closed()
            .code(2)
            .expect("cannot write to stdout"),
        Row::new("verify into a closed stdout", &[&"verify", &fixture_snapshot()])
            .stdout_closed()
            .code(2)
            .expect("cannot write to stdout"),
    ]
}

#[test]
fn offline_bad_inputs() {
    let p = Policies::new();
    // The base policy itself is fine: each row breaks one thing.
    let o = cmd::snapward()
        .args(["lint", "--deny-warnings"])
        .arg(p.write("base.yaml", BASE))
        .output()
        .expect("run snapward");
    assert_eq!(
        o.status.code(),
        Some(0),
        "BASE must lint clean:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The rows with `user:hunter2@` URLs: lint names them, never quotes them.
    let (ran, skipped) = run_rows("offline", offline_rows(&p), &["hunter2".to_string()]);
    assert!(
        ran >= 40 && skipped.is_empty(),
        "only {ran} offline rows ran, {} skipped: {skipped:?}",
        skipped.len()
    );
}

/// A broken stderr (its reader gone: `snapward … 2>&1 | head` after head
/// quit) loses the messages, never the exit code: every invocation exits as
/// it does with a working stderr — never 101, a panic on the failed write.
/// `run` against a refused OpenBao also logs (tracing) on the way.
#[test]
fn a_broken_stderr_loses_the_message_not_the_exit_code() {
    let p = Policies::new();
    let token = p.write("token", "s.not-a-real-token\n");
    let port = closed_port();
    let run_policy = p.write(
        "run.yaml",
        BASE.replacen(
            "http://127.0.0.1:8200",
            &format!("http://127.0.0.1:{port}"),
            1,
        )
        .replacen("/var/run/snapward/token", &token.to_string_lossy(), 1)
        .replacen(
            "/var/lib/snapward/snapshots",
            &p.path("snapshots").to_string_lossy(),
            1,
        )
        .replacen(
            "/var/lib/snapward/keys",
            &p.path("keys").to_string_lossy(),
            1,
        ),
    );
    let bad = p.variant("bad.yaml", "keepLast: 3", "keepLast: -3");
    let missing = p.path("missing.yaml");
    let corrupt = p.write("openbao-20260101-000000.snap", b"not a snapshot");
    let cases: Vec<Vec<std::ffi::OsString>> = vec![
        vec!["lint".into(), bad.clone().into()],
        vec!["lint".into(), missing.clone().into()],
        vec!["plan".into(), "-f".into(), missing.into()],
        vec!["plan".into(), "-f".into(), bad.into()],
        vec!["verify".into(), corrupt.into()],
        vec!["run".into(), "-f".into(), run_policy.into()],
        vec!["no-such-command".into()],
    ];
    for args in cases {
        let spawn = |broken: bool| {
            let mut cmd = cmd::snapward();
            cmd.args(&args)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            if broken {
                let (reader, writer) = std::io::pipe().expect("pipe");
                drop(reader);
                cmd.stderr(writer);
            } else {
                cmd.stderr(Stdio::null());
            }
            cmd.status().expect("run snapward").code()
        };
        let normal = spawn(false);
        let broken = spawn(true);
        assert_ne!(normal, Some(0), "{args:?}: meant to fail");
        assert_ne!(broken, Some(101), "{args:?}: panicked on the broken stderr");
        assert_eq!(broken, normal, "{args:?}");
    }
}

// ---- rows that need real servers ------------------------------------------------------

/// What a row changed about the machine, undone on drop (also when the
/// test fails): a tmpfs mounted (full disk, read-only store), or a dir made
/// read-only with chmod.
enum Mount {
    /// A tmpfs or a bind mount: unmounted on drop.
    Tmpfs(PathBuf),
    Writable(PathBuf),
    /// `chattr +i`: `chattr -i` on drop.
    Immutable(PathBuf),
}

impl Mount {
    /// Mounts a `size_kib` tmpfs on `dir` (root only; `Err` says why not).
    fn tmpfs(dir: &Path, size_kib: u64) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(Mount::Tmpfs(dir.to_path_buf()))
    }

    /// Bind-mounts `dir` onto itself, read-only (root only).
    fn bind_read_only(dir: &Path) -> Result<Self, String> {
        let sh = |args: &[&str]| -> Result<(), String> {
            let o = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .output()
                .map_err(|e| format!("mount: {e}"))?;
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&o.stderr).trim().to_string())
        };
        sh(&["--bind"]).map_err(|e| format!("mount --bind failed: {e}"))?;
        let m = Mount::Tmpfs(dir.to_path_buf());
        let o = Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "mount -o remount,ro,bind failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(m)
    }

    /// `chattr +i dir` (root with CAP_LINUX_IMMUTABLE; `Err` says why not).
    fn immutable(dir: &Path) -> Result<Self, String> {
        let o = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output()
            .map_err(|e| format!("chattr: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "chattr +i failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Ok(Mount::Immutable(dir.to_path_buf()))
    }

    fn remount_read_only(&self) -> Result<(), String> {
        let Mount::Tmpfs(dir) = self else {
            return Err("not a mount".into());
        };
        let o = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        o.status
            .success()
            .then_some(())
            .ok_or_else(|| String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        match self {
            Mount::Tmpfs(dir) => {
                let _ = Command::new("umount").arg("-l").arg(&*dir).status();
            }
            Mount::Writable(dir) => {
                let _ = fs::set_permissions(&*dir, fs::Permissions::from_mode(0o755));
            }
            Mount::Immutable(dir) => {
                let _ = Command::new("chattr").arg("-i").arg(&*dir).status();
            }
        }
    }
}

fn has_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The servers and files the environment rows share.
struct Env {
    work: tempfile::TempDir,
    /// Initialised, unsealed, KV v2 with a secret.
    bao: BaoCluster,
    /// Never initialised: the wiped-cluster rows.
    fresh: BaoCluster,
    s3: S3Server,
    /// A token that may only read `sys/storage/raft/snapshot`, in a file.
    token_file: PathBuf,
    /// A token without that capability, in a file.
    weak_token_file: PathBuf,
    /// A real snapshot of `bao`.
    real: PathBuf,
    /// `bao`'s unseal key (1 share): it authenticates `real`.
    unseal_key: String,
    secrets: Vec<String>,
    root: bool,
}

impl Env {
    async fn start() -> Self {
        let mut bao = BaoCluster::single().await;
        let (keys, root_token) = bao.init_unsealed(1, 1).await;
        bao.enable_kv().await;
        bao.write_secret("app/db", json!({"password": "correct horse battery"}))
            .await;
        bao.write_policy("snapward-snapshot", SNAPSHOT_ACL).await;
        let token = bao.create_token(&["snapward-snapshot"]).await;
        let weak = bao.create_token(&["default"]).await;
        let fresh = BaoCluster::single().await;
        let s3 = S3Server::s3s_fs();
        s3.create_bucket(BUCKET, false).await;
        let work = tempfile::Builder::new()
            .prefix("snapward-bad-env-")
            .tempdir()
            .expect("temp dir");
        let token_file = work.path().join("token");
        fs::write(&token_file, format!("{token}\n")).expect("token file");
        let weak_token_file = work.path().join("weak-token");
        fs::write(&weak_token_file, format!("{weak}\n")).expect("token file");
        let unseal_key = keys.first().cloned().expect("one unseal key");
        let mut secrets = keys;
        secrets.extend([
            root_token,
            token,
            weak,
            SECRET_KEY.to_string(),
            WRONG_SECRET.to_string(),
            DUMMY_KEY.to_string(),
        ]);

        let mut env = Env {
            work,
            bao,
            fresh,
            s3,
            token_file,
            weak_token_file,
            real: PathBuf::new(),
            unseal_key,
            secrets,
            root: is_root(),
        };
        env.real = env.seed();
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// The control row: the base policy backs up and uploads. Its snapshot
    /// is the real one later rows copy.
    fn seed(&self) -> PathBuf {
        let dir = self.path("seed/snapshots");
        let p = self.policy("seed", &dir, |_| {});
        let row = Row::new("control: the base policy backs up", &[&"run", &"-f", &p])
            .code(0)
            .expect("done");
        run_rows("control", vec![row], &self.secrets);
        let snap = fs::read_dir(&dir)
            .expect("seed dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "snap"))
            .expect("the control run wrote a snapshot");
        fs::copy(&snap, self.path("real.snap")).expect("copy");
        self.path("real.snap")
    }

    /// `rows/<slug>/snapshots` holding a copy of the real snapshot (the
    /// snapshot that must survive the row).
    fn store(&self, slug: &str) -> PathBuf {
        let dir = self.path(&format!("rows/{slug}/snapshots"));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::copy(
            &self.real,
            dir.join(format!("{PREFIX}20000101-000000.snap")),
        )
        .expect("copy");
        dir
    }

    /// The base policy (the initialised node, the snapshot token, `local`
    /// at `local`, the S3 target under `rows/<slug>/`), edited by `edit`.
    fn policy(&self, slug: &str, local: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let creds = self.s3.credential_files("good", ACCESS_KEY, SECRET_KEY);
        let mut v = json!({
            "apiVersion": "snapward.dev/v1alpha1",
            "kind": "SnapshotPolicy",
            "metadata": {"name": "bad-input"},
            "spec": {
                "cluster": {
                    "nodes": [{"name": "bao-0", "address": self.bao.address(0).as_str()}],
                    "auth": {"tokenFile": self.token_file.display().to_string()},
                    "timeouts": {"connect": "2s", "request": "20s", "streamIdle": "20s"}
                },
                "local": {"path": local.display().to_string(), "retention": {"keepLast": 5}},
                "targets": [{
                    "name": "s3",
                    "retention": {"keepLast": 5},
                    "s3": {
                        "endpoint": self.s3.endpoint,
                        "region": "us-east-1",
                        "bucket": BUCKET,
                        "prefix": format!("rows/{slug}/"),
                        "pathStyle": true,
                        "credentials": serde_json::to_value(creds).expect("json")
                    }
                }]
            }
        });
        edit(&mut v);
        let p = self.path(&format!("rows/{slug}/policy.yaml"));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, serde_json::to_string_pretty(&v).expect("json")).expect("policy");
        p
    }

    /// A wiped-cluster policy: the fresh node, a key store holding `bao`'s
    /// unseal key (the real snapshot authenticates under it, so the guards
    /// after that check are reached), restore `mode`, maxRestoreAge 7d, no
    /// target.
    fn wiped_policy(&self, slug: &str, local: &Path, mode: &str) -> (PathBuf, PathBuf) {
        self.wiped_policy_with_key(slug, local, mode, &self.unseal_key)
    }

    fn wiped_policy_with_key(
        &self,
        slug: &str,
        local: &Path,
        mode: &str,
        key: &str,
    ) -> (PathBuf, PathBuf) {
        let keys = self.path(&format!("rows/{slug}/keys"));
        fs::create_dir_all(&keys).expect("mkdir");
        fs::write(keys.join("unseal-key-0"), format!("{key}\n")).expect("key");
        let p = self.policy(slug, local, |v| {
            let spec = &mut v["spec"];
            spec["cluster"]["nodes"] =
                json!([{"name": "fresh-0", "address": self.fresh.address(0).as_str()}]);
            spec["targets"] = json!([]);
            spec["unsealKeys"] = json!({"files": {"directory": keys.display().to_string()}});
            spec["restore"] = json!({"mode": mode});
            spec["init"] = json!({"allowed": false, "shares": 1, "threshold": 1});
            spec["guards"] = json!({"maxRestoreAge": "7d"});
        });
        (p, keys)
    }

    /// Names every second from 5 s ago to 30 min ahead in `dir` with the
    /// real snapshot (hard links: no space), as a clock that was ahead
    /// would have.
    fn future_names(&self, dir: &Path) {
        let now = jiff::Timestamp::now();
        for s in -5..1800 {
            let t = now + jiff::SignedDuration::from_secs(s);
            let name = format!("{PREFIX}{}.snap", t.strftime("%Y%m%d-%H%M%S"));
            let _ = fs::hard_link(&self.real, dir.join(name));
        }
    }
}

fn env_rows(env: &Env, mounts: &mut Vec<Mount>) -> Vec<Row> {
    let mut rows = Vec::new();
    let run = |name: &str, p: &Path| Row::new(name, &[&"run", &"-f", &p]);

    // -- OpenBao side --
    let s = env.store("token-missing");
    let p = env.policy("token-missing", &s, |v| {
        v["spec"]["cluster"]["auth"]["tokenFile"] = json!("/nonexistent/snapward/token");
    });
    rows.push(
        run("token file missing", &p)
            .code(4)
            .expect("cannot read the token file /nonexistent/snapward/token")
            .expect("No such file or directory")
            .kept(&s),
    );

    let s = env.store("token-dir");
    let dir = env.path("rows/token-dir/token");
    fs::create_dir_all(&dir).expect("mkdir");
    let p = env.policy("token-dir", &s, |v| {
        v["spec"]["cluster"]["auth"]["tokenFile"] = json!(dir.display().to_string());
    });
    rows.push(
        run("token file is a directory", &p)
            .code(4)
            .expect(format!("cannot read the token file {}", dir.display()))
            .expect("Is a directory")
            .kept(&s),
    );

    let s = env.store("token-empty");
    let empty = env.path("rows/token-empty/token");
    fs::write(&empty, "\n").expect("write");
    let p = env.policy("token-empty", &s, |v| {
        v["spec"]["cluster"]["auth"]["tokenFile"] = json!(empty.display().to_string());
    });
    rows.push(
        run("token file empty", &p)
            .code(4)
            .expect("is empty")
            .kept(&s),
    );

    let s = env.store("token-weak");
    let p = env.policy("token-weak", &s, |v| {
        v["spec"]["cluster"]["auth"]["tokenFile"] =
            json!(env.weak_token_file.display().to_string());
    });
    rows.push(
        run("token without the snapshot capability", &p)
            .code(4)
            .expect("403")
            .expect("the token needs `read` on sys/storage/raft/snapshot")
            .kept(&s),
    );

    let s = env.store("bao-refused");
    let port = closed_port();
    let p = env.policy("bao-refused", &s, |v| {
        v["spec"]["cluster"]["nodes"] =
            json!([{"name": "bao-0", "address": format!("http://127.0.0.1:{port}")}]);
    });
    rows.push(
        run("OpenBao address refuses connections", &p)
            .code(4)
            .expect("Connection refused")
            .expect("some node's state is unknown")
            .kept(&s),
    );

    // -- S3 side --
    let s = env.store("s3-refused");
    let port = closed_port();
    let p = env.policy("s3-refused", &s, |v| {
        v["spec"]["targets"][0]["s3"]["endpoint"] = json!(format!("http://127.0.0.1:{port}"));
    });
    rows.push(
        run("S3 endpoint refuses connections", &p)
            .code(4)
            .expect("target `s3` failed")
            .kept(&s),
    );

    let s = env.store("s3-wrong-secret");
    let p = env.policy("s3-wrong-secret", &s, |v| {
        v["spec"]["targets"][0]["s3"]["credentials"] =
            serde_json::to_value(env.s3.credential_files("wrong", ACCESS_KEY, WRONG_SECRET))
                .expect("json");
    });
    rows.push(
        run("wrong S3 secret access key", &p)
            .code(4)
            .expect("the secret access key does not match the access key id")
            .kept(&s),
    );

    let s = env.store("s3-unreadable");
    let creds = env
        .s3
        .credential_files("unreadable", ACCESS_KEY, SECRET_KEY);
    let secret_file = PathBuf::from(&creds.secret_access_key_file);
    if env.root {
        // root reads a chmod 000 file: a directory where the file should be.
        fs::remove_file(&secret_file).expect("rm");
        fs::create_dir(&secret_file).expect("mkdir");
    } else {
        fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    let p = env.policy("s3-unreadable", &s, |v| {
        v["spec"]["targets"][0]["s3"]["credentials"] = serde_json::to_value(&creds).expect("json");
    });
    rows.push(
        run("S3 secret key file unreadable", &p)
            .code(4)
            .expect(format!("cannot read or write {}", secret_file.display()))
            .expect(if env.root {
                "Is a directory"
            } else {
                "Permission denied"
            })
            .kept(&s),
    );

    let s = env.store("s3-no-bucket");
    let p = env.policy("s3-no-bucket", &s, |v| {
        v["spec"]["targets"][0]["s3"]["bucket"] = json!("no-such-bucket");
    });
    rows.push(
        run("S3 bucket does not exist", &p)
            .code(4)
            .expect("bucket `no-such-bucket` does not exist")
            .kept(&s),
    );

    // -- the local store --
    let file = env.path("rows/local-file/snapshots");
    fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    fs::write(&file, "not a directory").expect("write");
    let p = env.policy("local-file", &file, |_| {});
    rows.push(
        run("local.path is a file", &p)
            .code(4)
            .expect("cannot take the run lock in")
            .expect("not a directory"),
    );

    let ro = env.path("rows/local-read-only/snapshots");
    let p = env.policy("local-read-only", &ro, |_| {});
    let row = run("local.path read-only", &p)
        .code(4)
        .expect("cannot take the run lock in");
    if env.root {
        // root ignores permission bits: a read-only tmpfs, else a
        // read-only bind mount, else an immutable dir.
        let tmpfs = Mount::tmpfs(&ro, 1024).and_then(|m| {
            fs::copy(&env.real, ro.join(format!("{PREFIX}20000101-000000.snap"))).expect("copy");
            let done = m.remount_read_only();
            mounts.push(m);
            done.map_err(|e| format!("remount read-only: {e}"))
        });
        let ro_row = match tmpfs {
            Ok(()) => Ok(row.expect("Read-only file system").kept(&ro)),
            Err(t) => {
                env.store("local-read-only");
                match Mount::bind_read_only(&ro) {
                    Ok(m) => {
                        mounts.push(m);
                        Ok(row.expect("Read-only file system").kept(&ro))
                    }
                    Err(b) => match Mount::immutable(&ro) {
                        Ok(m) => {
                            mounts.push(m);
                            Ok(row.expect("Operation not permitted").kept(&ro))
                        }
                        Err(i) => Err(row.skip(format!(
                            "root, and no read-only store possible: {t}; {b}; {i}"
                        ))),
                    },
                }
            }
        };
        rows.push(ro_row.unwrap_or_else(|skipped| skipped));
    } else {
        env.store("local-read-only");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).expect("chmod");
        mounts.push(Mount::Writable(ro.clone()));
        rows.push(row.expect("Permission denied").kept(&ro));
    }

    let full = env.path("rows/disk-full/snapshots");
    let p = env.policy("disk-full", &full, |_| {});
    let row = run("disk full", &p)
        .code(4)
        .expect("snapshot from bao-0 failed");
    let mounted = if env.root {
        Mount::tmpfs(&full, 256).ok()
    } else {
        None
    };
    match mounted {
        Some(m) => {
            fs::copy(
                &env.real,
                full.join(format!("{PREFIX}20000101-000000.snap")),
            )
            .expect("copy");
            // Fill the rest.
            let mut f = fs::File::create(full.join("filler")).expect("filler");
            let chunk = vec![0u8; 4096];
            while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
            drop(f);
            rows.push(row.expect("No space left on device").kept(&full));
            mounts.push(m);
        }
        None if has_prlimit() => {
            env.store("disk-full");
            rows.push(row.fsize(4096).expect("File too large").kept(&full));
        }
        None => rows.push(row.skip("no tmpfs (not root) and no prlimit")),
    }

    let s = env.store("future-collide");
    env.future_names(&s);
    let p = env.policy("future-collide", &s, |_| {});
    rows.push(
        run("clock set back: this second's name is taken", &p)
            .code(4)
            .expect("already exists in the local store and is never replaced")
            .expect("check the clocks")
            .kept(&s),
    );

    let s = env.store("future-dated");
    fs::copy(&env.real, s.join(format!("{PREFIX}20991231-235959.snap"))).expect("copy");
    let p = env.policy("future-dated", &s, |_| {});
    rows.push(
        run("a snapshot dated in the future", &p)
            .code(0)
            .expect("done")
            .kept(&s),
    );

    let s = env.store("report-dir");
    let p = env.policy("report-dir", &s, |_| {});
    rows.push(
        Row::new(
            "--report into a missing directory",
            &[
                &"run",
                &"-f",
                &p,
                &"--report",
                &"/nonexistent/dir/report.json",
            ],
        )
        .code(0)
        .expect("cannot write the report to /nonexistent/dir/report.json")
        .kept(&s),
    );

    let s = env.store("closed-stdout");
    let p = env.policy("closed-stdout", &s, |_| {});
    rows.push(
        run("run into a closed stdout", &p)
            .stdout_closed()
            .code(0)
            .expect("cannot write to stdout")
            .expect("the run itself ended: done")
            .kept(&s),
    );

    let s = env.store("restore-healthy");
    let p = env.policy("restore-healthy", &s, |_| {});
    rows.push(
        Row::new("restore on a healthy cluster", &[&"restore", &"-f", &p])
            .code(3)
            .expect("restores only a wiped cluster")
            .untouched(&s),
    );

    // -- a wiped cluster (the fresh node), keys stored --
    let s = env.path("rows/max-age-future/snapshots");
    fs::create_dir_all(&s).expect("mkdir");
    fs::copy(&env.real, s.join(format!("{PREFIX}20991231-235959.snap"))).expect("copy");
    let (p, keys) = env.wiped_policy("max-age-future", &s, "auto");
    rows.push(
        run("maxRestoreAge with a snapshot from the future", &p)
            .code(3)
            .expect("years in the future")
            .expect("a clock is wrong")
            .untouched(&s)
            .untouched(&keys),
    );

    let s = env.path("rows/max-age-old/snapshots");
    fs::create_dir_all(&s).expect("mkdir");
    fs::copy(&env.real, s.join(format!("{PREFIX}20010101-000000.snap"))).expect("copy");
    let (p, keys) = env.wiped_policy("max-age-old", &s, "auto");
    rows.push(
        run("maxRestoreAge with an old snapshot", &p)
            .code(3)
            .expect("more than guards.maxRestoreAge")
            .expect("restore it by hand with `snapward restore`")
            .untouched(&s)
            .untouched(&keys),
    );
    rows.push(
        Row::new(
            "restore --dry-run of that old snapshot (a human decided)",
            &[&"restore", &"-f", &p, &"--dry-run"],
        )
        .code(0)
        .expect("would temp-initialise node 0")
        .untouched(&s)
        .untouched(&keys),
    );

    // The stored key is not the one that sealed the snapshot: refused
    // before anything is written (invariant 11).
    let s = env.path("rows/foreign-key/snapshots");
    fs::create_dir_all(&s).expect("mkdir");
    fs::copy(&env.real, s.join(format!("{PREFIX}20260101-000000.snap"))).expect("copy");
    let (p, keys) = env.wiped_policy_with_key("foreign-key", &s, "auto", DUMMY_KEY);
    rows.push(
        run(
            "wiped cluster, the stored key did not seal the snapshot",
            &p,
        )
        .code(3)
        .expect("do not belong together")
        .expect("snapward restore --allow-unauthenticated")
        .untouched(&s)
        .untouched(&keys),
    );

    let s = env.path("rows/restore-unknown/snapshots");
    fs::create_dir_all(&s).expect("mkdir");
    fs::copy(&env.real, s.join(format!("{PREFIX}20260101-000000.snap"))).expect("copy");
    let (p, keys) = env.wiped_policy("restore-unknown", &s, "manual");
    rows.push(
        Row::new(
            "restore --snapshot that no store holds",
            &[&"restore", &"-f", &p, &"--snapshot", &"openbao-20250101-000000.snap"],
        )
        .code(4)
        .expect("snapshot `openbao-20250101-000000.snap` is not a valid snapshot in any restore source (local)")
        .untouched(&s)
        .untouched(&keys),
    );

    let s = env.path("rows/corrupt-only/snapshots");
    fs::create_dir_all(&s).expect("mkdir");
    let bytes = fs::read(&env.real).expect("read");
    fs::write(
        s.join(format!("{PREFIX}20260101-000000.snap")),
        &bytes[..bytes.len() / 2],
    )
    .expect("write");
    let (p, keys) = env.wiped_policy("corrupt-only", &s, "auto");
    rows.push(
        run("wiped cluster, the only snapshot truncated", &p)
            .code(3)
            .expect("no valid snapshot exists")
            .expect("never initialises over surviving keys")
            .untouched(&s)
            .untouched(&keys),
    );

    let s = env.path("rows/keys-file/snapshots");
    fs::create_dir_all(&s).expect("mkdir");
    fs::copy(&env.real, s.join(format!("{PREFIX}20260101-000000.snap"))).expect("copy");
    let (p, keys) = env.wiped_policy("keys-file", &s, "auto");
    let not_dir = env.path("rows/keys-file/keys-is-a-file");
    fs::write(&not_dir, "x").expect("write");
    let text = fs::read_to_string(&p)
        .expect("policy")
        .replace(&keys.display().to_string(), &not_dir.display().to_string());
    fs::write(&p, text).expect("policy");
    rows.push(
        run("key store directory is a file", &p)
            .code(4)
            .expect("the unseal-key store could not be read")
            .expect(format!(
                "the key store files:{} cannot be read",
                not_dir.display()
            ))
            .expect("Not a directory")
            .untouched(&s),
    );
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_environments() {
    let env = Env::start().await;
    let before = env.s3.objects(BUCKET).await;
    assert!(!before.is_empty(), "the control run uploaded nothing");
    let mut mounts = Vec::new();
    let rows = env_rows(&env, &mut mounts);
    let total = rows.len();
    let env_ref = &env;
    let (ran, skipped) =
        tokio::task::block_in_place(|| run_rows("environment", rows, &env_ref.secrets));
    drop(mounts);
    // Nothing any row did removed or changed an object that was there.
    let after = env.s3.objects(BUCKET).await;
    for (k, object) in &before {
        assert_eq!(after.get(k), Some(object), "object {k} was lost or changed");
    }
    assert!(
        ran + skipped.len() == total && skipped.len() <= MAY_SKIP.len() && ran >= 20,
        "{ran} of {total} environment rows ran, {} skipped: {skipped:?}",
        skipped.len()
    );
}

// ---- Debug redaction --------------------------------------------------------------

/// invariant 9 (README \"Guarantees\") for every type that can hold a secret (a token, an
/// unseal key, an S3 secret, a URL password): `Debug` — plain and `{:#?}` —
/// and `Display`/`Serialize` where they exist never show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_never_shows_a_secret() {
    use snapward::backends::InitResult;
    use snapward::backends::keys::SecretKeyStore;
    use snapward::backends::keys::{FileKeyStore, KeyStore, StoredKeys};
    use snapward::backends::openbao::{HttpOpenBao, Timeouts};
    use snapward::backends::s3::S3Target;
    use snapward::exec::RunState;
    use snapward::policy::model;
    use snapward::secret::Secret;

    // Distinct values: a leak names which one.
    let secret = |what: &str| format!("{what}-8c41e07b2d9f53a6");
    let all: Vec<String> = [
        "unseal-key-a",
        "unseal-key-b",
        "root-token",
        "bao-token",
        "access-key-id",
        "secret-access-key",
        "session-token",
        "push-password",
    ]
    .iter()
    .map(|w| secret(w))
    .collect();
    let mut shown: Vec<(String, String)> = Vec::new();
    let mut show = |what: &str, text: String| shown.push((what.to_string(), text));

    let s = Secret::new(secret("bao-token"));
    show("Secret {:?}", format!("{s:?}"));
    show("Secret {:#?}", format!("{s:#?}"));
    show("Secret Display", format!("{s}"));
    show("Secret Serialize", serde_json::to_string(&s).expect("json"));
    show("Option<Secret>", format!("{:?}", Some(s.clone())));

    let keys = StoredKeys {
        keys: vec![
            Secret::new(secret("unseal-key-a")),
            Secret::new(secret("unseal-key-b")),
        ],
        root_token: Some(Secret::new(secret("root-token"))),
        shape: None,
    };
    show("StoredKeys", format!("{keys:?}"));
    show("StoredKeys {:#?}", format!("{keys:#?}"));

    let init = InitResult {
        keys: keys.keys.clone(),
        root_token: Secret::new(secret("root-token")),
    };
    show("InitResult", format!("{init:?}"));

    let state = RunState {
        new_keys: Some(keys.clone()),
        ..RunState::default()
    };
    show("RunState", format!("{state:?}"));

    // The file key store, after storing and reading back the keys.
    let dir = tempfile::tempdir().expect("temp dir");
    let fks = FileKeyStore {
        dir: dir.path().join("keys"),
        key_prefix: "unseal-key-".into(),
        root_token_key: "root-token".into(),
    };
    fks.create(&keys).await.expect("create keys");
    let read = fks.read().await.expect("read keys");
    assert_eq!(
        read.keys[0].expose(),
        secret("unseal-key-a"),
        "the keys round-trip"
    );
    show("FileKeyStore", format!("{fks:?}"));
    show("StoredKeys read back", format!("{read:?}"));

    // The Kubernetes Secret key store, same round trip (in-test API server).
    let kube = crate::support::kube_api::FakeKube::start().await;
    let sks = SecretKeyStore::new(
        kube.client(),
        "openbao",
        "openbao-keys",
        "unseal-key-",
        "root-token",
    );
    sks.create(&keys).await.expect("create the Secret");
    let read = sks.read().await.expect("read the Secret");
    assert_eq!(read.keys.len(), 2);
    show("SecretKeyStore", format!("{sks:?}"));
    show("StoredKeys from the Secret", format!("{read:?}"));

    // The OpenBao client holding a token in memory.
    let cluster: model::Cluster = serde_json::from_value(json!({})).expect("cluster");
    let bao = HttpOpenBao::new(
        vec![(
            "bao-0".into(),
            "http://127.0.0.1:8200".parse().expect("url"),
        )],
        &cluster,
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            stream_idle: Duration::from_secs(60),
        },
    )
    .expect("client")
    .with_token(Secret::new(secret("bao-token")));
    show("HttpOpenBao", format!("{bao:?}"));
    show("HttpOpenBao {:#?}", format!("{bao:#?}"));

    // An S3 target built from credential files (read into memory).
    let creds = dir.path().join("creds");
    fs::create_dir_all(&creds).expect("mkdir");
    for (f, w) in [
        ("ak", "access-key-id"),
        ("sk", "secret-access-key"),
        ("st", "session-token"),
    ] {
        fs::write(creds.join(f), format!("{}\n", secret(w))).expect("write");
    }
    let cfg = model::S3Target {
        endpoint: Some("http://127.0.0.1:9".into()),
        region: "us-east-1".into(),
        bucket: "b".into(),
        prefix: "p/".into(),
        path_style: true,
        credentials: Some(model::S3Credentials {
            access_key_id_file: creds.join("ak").display().to_string(),
            secret_access_key_file: creds.join("sk").display().to_string(),
            session_token_file: Some(creds.join("st").display().to_string()),
        }),
        server_side_encryption: None,
        object_lock: None,
        timeouts: None,
        stream: true,
    };
    let target = S3Target::new("s3", &crate::support::s3::settings(&cfg), PREFIX)
        .await
        .expect("S3 target");
    show("S3Target", format!("{target:?}"));
    show("S3Target {:#?}", format!("{target:#?}"));

    // A valid policy whose Pushgateway URL carries a password.
    let text = BASE.replacen(
        "  guards:",
        &format!(
            "  metrics:\n    pushgateway: https://push:{}@pushgateway.example:9091\n  guards:",
            secret("push-password")
        ),
        1,
    );
    let report = snapward::policy::lint_text("p.yaml", &text, true);
    let policy = report
        .policies
        .first()
        .expect("a valid policy (the password is a warning)");
    show("ValidPolicy", format!("{policy:?}"));
    show("ValidPolicy {:#?}", format!("{policy:#?}"));

    let mut leaks = Vec::new();
    for (what, text) in &shown {
        for s in &all {
            if text.contains(s.as_str()) {
                leaks.push(format!("{what} shows {s}:\n{text}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in Debug/Display:\n{}",
        leaks.join("\n\n")
    );
    // Each type was printed, and printed something.
    assert!(shown.iter().all(|(_, t)| !t.is_empty()));
    assert_eq!(shown.len(), 19, "every printed form is checked");
}
