//! Hardening of what lives on the node (issue 18, item 6): the local
//! store's temp files, symlinks planted in a filesystem target, the
//! process's core dumps, the init root token's lifetime and the policy's
//! `fileMode`. Real files, the real binary, a real OpenBao.
//!
//! Needs `eval "$(scripts/test-env.sh)"` for the OpenBao tests.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use reqwest::Method;
use rstest::rstest;
use snapward::backends::filesystem::FsTarget;
use snapward::backends::{Target, snapshot_name};
use snapward::diag::Severity;
use snapward::policy::{self, model};
use snapward::snapshot;
use tokio_util::sync::CancellationToken;

use crate::support::drill::{Drill, INIT, SNAP_PREFIX};
use crate::support::fault_proxy::{Fault, FaultProxy, Rule};
use crate::support::fixture_snapshot;

#[cfg(feature = "failpoints")]
fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

// ---- the local store's temp file -------------------------------------

/// While a snapshot streams into the local store, its temp file is 0600
/// (whatever the umask lets through): only after it verified does it get
/// the policy's `fileMode` (see the unit tests in src/backends/local for
/// the chmod going through the file descriptor, never a swapped-in link).
#[cfg(feature = "failpoints")]
#[tokio::test]
async fn the_local_temp_file_is_0600_while_the_snapshot_is_written() {
    let mut d = Drill::single(false).await;
    let policy = d.policy("p", &d.opts());
    d.snapward_init(&policy, &d.keys_dir()).await;
    // Aborted right after `snapshot` streamed and fsynced the temp file,
    // before `verify` moves it into place.
    let r = d
        .snapward_env(
            "run",
            &policy,
            &[],
            &[("FAILPOINTS", "action.after.snapshot=return")],
        )
        .await;
    assert!(
        r.stderr
            .contains("crash point action.after.snapshot: aborting"),
        "{}",
        r.context()
    );
    let partials: Vec<_> = fs::read_dir(d.snap_dir())
        .expect("the store")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!(".{SNAP_PREFIX}")) && n.ends_with(".snap.partial")
        })
        .collect();
    assert_eq!(partials.len(), 1, "the streamed temp file: {partials:?}");
    assert_eq!(
        mode(&partials[0]),
        0o600,
        "the temp file of a snapshot being written is readable by its owner only"
    );
}

// ---- symlinks in a filesystem target -----------------------------------

fn name_on(day: u32) -> String {
    let t: jiff::Timestamp = format!("2026-11-{day:02}T02:15:00Z").parse().expect("time");
    snapshot_name(SNAP_PREFIX, t)
}

/// A symlink planted in the target under a snapshot's name — to another
/// snapshot (it would count twice, with a newer date) or to a file outside
/// (`/etc/passwd`: read with snapward's rights) — is neither listed nor
/// fetched; the fetch says why.
#[tokio::test]
async fn a_symlink_in_a_filesystem_target_is_never_followed() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = FsTarget::new(
        "nfs",
        &model::FilesystemTarget {
            path: root.path().display().to_string(),
        },
        SNAP_PREFIX,
        0o640,
    );
    let never = CancellationToken::new();
    let id = snapshot::verify_file(&fixture_snapshot()).expect("fixture verifies");
    let real = name_on(12);
    target
        .put(
            &fixture_snapshot(),
            &real,
            &id,
            &snapward::backends::UploadTag::default(),
            &never,
        )
        .await
        .expect("put");
    symlink(root.path().join(&real), root.path().join(name_on(20))).expect("symlink");
    symlink("/etc/passwd", root.path().join(name_on(21))).expect("symlink");

    let listed: Vec<String> = target
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, vec![real.clone()], "only the real file counts");

    for planted in [name_on(20), name_on(21)] {
        let dest = root.path().join(format!("fetched-{planted}"));
        let err = target
            .fetch(&planted, &dest, &never)
            .await
            .expect_err("a symlink is never fetched");
        assert!(
            format!("{err:#}").contains("symbolic link"),
            "the error says why: {err:#}"
        );
        assert!(!dest.exists(), "nothing was copied");
    }
}

// ---- the process -------------------------------------------------------

/// A running `snapward run` cannot leave a core dump (hard limit 0, so no
/// child and no later `ulimit -c` raises it) and is not dumpable: its
/// `/proc/<pid>` files belong to root, not to the user it runs as, so
/// another process of that user cannot read its memory or environment. It
/// runs as `nobody` (a user who would otherwise own them) against an
/// OpenBao address that accepts and never answers, so it is observed
/// while it waits.
#[tokio::test]
async fn a_running_snapward_is_not_dumpable_and_cannot_dump_core() {
    const NOBODY: u32 = 65534;
    let dir = tempfile::Builder::new()
        .prefix("snapward-dumpable-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    // The test binary's directory is not open to `nobody`: a link (or a
    // copy) of the binary is.
    let bin = dir.path().join("snapward");
    if fs::hard_link(env!("CARGO_BIN_EXE_snapward"), &bin).is_err() {
        fs::copy(env!("CARGO_BIN_EXE_snapward"), &bin).expect("copy the binary");
    }
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let policy = dir.path().join("p.yaml");
    fs::write(
        &policy,
        format!(
            "apiVersion: snapward.dev/v1alpha1\n\
             kind: SnapshotPolicy\n\
             metadata: {{name: p}}\n\
             spec:\n\
             \x20 cluster:\n\
             \x20   nodes: [{{name: n0, address: \"http://127.0.0.1:{port}\"}}]\n\
             \x20   timeouts: {{connect: 5s, request: 120s}}\n\
             \x20 local:\n\
             \x20   path: {d}/snaps\n\
             \x20   retention: {{keepLast: 3}}\n\
             \x20 unsealKeys:\n\
             \x20   files: {{directory: {d}/keys}}\n",
            d = dir.path().display()
        ),
    )
    .expect("policy");
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o644)).expect("chmod");

    let mut cmd = std::process::Command::new(&bin);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"SNAPWARD_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("KUBECONFIG")
        .env_remove("FAILPOINTS")
        .args(["--log-format", "json", "run", "-f"])
        .arg(&policy)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
    std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
    let mut child = cmd.spawn().expect("start snapward as nobody");
    // Blocks until the run connects to "OpenBao": it is under way.
    let (_conn, _) = silent.accept().expect("the run connects");
    let proc_dir = Path::new("/proc").join(child.id().to_string());
    let limits = fs::read_to_string(proc_dir.join("limits")).expect("limits");
    let environ_owner = fs::metadata(proc_dir.join("environ"))
        .expect("environ")
        .uid();
    let status_uid = fs::read_to_string(proc_dir.join("status")).expect("status");
    child.kill().expect("kill");
    child.wait().expect("wait");

    assert!(
        status_uid
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&NOBODY.to_string())),
        "the run is `nobody`:\n{status_uid}"
    );
    let core: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit")
        .split_whitespace()
        .collect();
    assert_eq!(
        &core[4..6],
        &["0", "0"],
        "soft and hard core size limits are 0:\n{limits}"
    );
    assert_eq!(
        environ_owner, 0,
        "not dumpable: /proc/<pid>/environ belongs to root, not to the user the run is"
    );
}

// ---- the init root token -----------------------------------------------

/// With `storeRootToken: false` the root token `sys/init` answered is
/// revoked once the new cluster is unsealed and its keys are stored: it
/// lives only while the run needs it. With `true` it is stored and works.
/// A revocation OpenBao refuses leaves the run successful (the keys are
/// stored, the cluster is up) with a warning that says what to do.
#[rstest]
#[case::not_stored_is_revoked(false, false)]
#[case::stored_keeps_working(true, false)]
#[case::failed_revocation_is_a_warning(false, true)]
#[tokio::test]
async fn the_init_root_token_lives_only_as_long_as_the_policy_says(
    #[case] store: bool,
    #[case] revoke_fails: bool,
) {
    let d = Drill::single(false).await;
    let policy = d.policy(
        "p",
        &crate::support::drill::PolicyOpts {
            store_root_token: store,
            ..d.opts()
        },
    );
    let proxy = FaultProxy::start(d.bao.address(0).as_str()).await;
    proxy.record_bodies(|r| r.method == "PUT" && r.path() == "/v1/sys/init");
    if revoke_fails {
        proxy.add(Rule::new(
            "revoke-fails",
            |r| r.path() == "/v1/auth/token/revoke-self",
            Fault::bao_error(500, "internal error"),
        ));
    }
    let node0 = d.bao.address(0).as_str().trim_end_matches('/').to_owned();
    let yaml = fs::read_to_string(&policy).expect("read the policy");
    let proxied = d.path("proxied.yaml");
    fs::write(&proxied, yaml.replace(&node0, &proxy.url)).expect("write the policy");

    let r = d.run(&proxied).await;
    r.expect_exit(0).expect_branch("init");
    for id in INIT {
        r.expect_status(id, "succeeded");
    }
    let init = proxy
        .seen()
        .into_iter()
        .find(|s| s.method == "PUT" && s.target == "/v1/sys/init")
        .expect("sys/init went through the proxy");
    let body = String::from_utf8_lossy(init.body.as_deref().expect("recorded")).into_owned();
    let json = &body[body.find('{').expect("JSON")..=body.rfind('}').expect("JSON")];
    let answer: serde_json::Value = serde_json::from_str(json).expect("the sys/init answer");
    let token = answer["root_token"]
        .as_str()
        .expect("root_token")
        .to_owned();
    assert!(
        !r.everything().contains(&token),
        "the root token is in no output"
    );

    d.bao.wait_active(0).await;
    let (status, _) = d
        .bao
        .call(0, Method::GET, "auth/token/lookup-self", Some(&token), None)
        .await;
    if revoke_fails {
        assert_eq!(proxy.fired("revoke-fails"), 1, "{}", proxy.log());
        assert!(status.is_success(), "not revoked, still valid: {status}");
        assert!(
            r.reason("init-unseal").contains("could not be revoked")
                && r.reason("init-unseal").contains("generate-root"),
            "the run warns and says how to revoke it by hand: {}",
            r.reason("init-unseal")
        );
    } else if store {
        assert!(status.is_success(), "a stored root token works: {status}");
        assert_eq!(
            fs::read_to_string(d.keys_dir().join("root-token"))
                .expect("stored")
                .trim(),
            token
        );
    } else {
        assert_eq!(
            status.as_u16(),
            403,
            "the unstored root token was revoked\n{}",
            r.context()
        );
        assert!(
            r.reason("init-unseal").contains("root token was revoked"),
            "the run says so: {}",
            r.reason("init-unseal")
        );
        assert!(!d.keys_dir().join("root-token").exists());
    }
}

// ---- fileMode ------------------------------------------------------------

/// `local.fileMode` (also the mode of files published to filesystem
/// targets): world access is a warning, setuid/setgid/sticky an error.
#[rstest]
#[case::group_read("0640", None)]
#[case::owner_only("0600", Some(("policy::file-mode-unreadable", Severity::Warning)))]
#[case::world_readable("0644", Some(("policy::file-mode-world-accessible", Severity::Warning)))]
#[case::world_writable("0662", Some(("policy::file-mode-world-accessible", Severity::Warning)))]
#[case::setuid("4640", Some(("policy::file-mode-special-bits", Severity::Error)))]
#[case::setgid("02640", Some(("policy::file-mode-special-bits", Severity::Error)))]
#[case::sticky("1640", Some(("policy::file-mode-special-bits", Severity::Error)))]
fn file_mode_lint(#[case] mode: &str, #[case] want: Option<(&str, Severity)>) {
    let text = format!(
        "apiVersion: snapward.dev/v1alpha1\n\
         kind: SnapshotPolicy\n\
         metadata: {{name: m}}\n\
         spec:\n\
         \x20 cluster:\n\
         \x20   nodes: [{{address: \"http://127.0.0.1:8200\"}}]\n\
         \x20 local:\n\
         \x20   path: /snap\n\
         \x20   fileMode: \"{mode}\"\n\
         \x20   retention: {{keepLast: 3}}\n"
    );
    let r = policy::lint_text("m.yaml", &text, true);
    let got: Vec<(&str, Severity)> = r
        .diagnostics
        .iter()
        .map(|d| (d.code.as_str(), d.severity))
        .collect();
    assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{mode}");
    if let Some((_, severity)) = want {
        let d = &r.diagnostics[0];
        assert!(
            d.message.contains(mode.trim_start_matches('0')) && !d.help.is_empty(),
            "names the mode and the fix: {} / {}",
            d.message,
            d.help
        );
        assert_eq!(
            r.policies.len(),
            usize::from(severity == Severity::Warning),
            "an error rejects the policy, a warning does not"
        );
    }
}
