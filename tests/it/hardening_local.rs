//! Hardening of what lives on the node (issue 18, item 6): the local
//! store's temp files, symlinks planted in a filesystem target, the
//! process's core dumps, the init root token's lifetime and the policy's
//! `fileMode`. Real files, the real binary, a real OpenBao.
//!
//! Needs `eval "$(scripts/test-env.sh)"` for the OpenBao tests.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use snapward::backends::filesystem::FsTarget;
use snapward::backends::{Target, snapshot_name};
use snapward::policy::model;
use snapward::snapshot;
use tokio_util::sync::CancellationToken;

#[cfg(feature = "failpoints")]
use crate::support::drill::Drill;
use crate::support::drill::SNAP_PREFIX;
use crate::support::fixture_snapshot;

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
        .put(&fixture_snapshot(), &real, &id, &never)
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

