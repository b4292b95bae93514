//! Crash injection for tests: named crash points that abort the process
//! (SIGABRT: no destructor, no flush, no cleanup — like `kill -9` or a lost
//! node), so tests can prove invariant 10 (README "Guarantees"): a crash at any point
//! leaves a state from which the next run converges.
//!
//! Compiled in only with the cargo feature `failpoints` (the test runner
//! builds with it; release builds do not, and there [`crash_point!`]
//! expands to nothing and the `fail` crate is not even a dependency). With
//! the feature, the `FAILPOINTS` environment variable arms points by name,
//! in the `fail` crate's syntax:
//!
//! ```text
//! FAILPOINTS='local.after-link=return' snapward run -f policy.yaml   # aborts there
//! FAILPOINTS='s3.multipart.after-part=1*off->return' ...             # on the 2nd hit
//! ```
//!
//! `return` aborts; the other actions (`off`, `sleep(ms)`, `print`) do
//! what the `fail` crate says and never abort. A point reports itself on
//! stderr (`crash point <name>: aborting`) right before it aborts.
//!
//! The points (stable names):
//!
//! | name | where |
//! |---|---|
//! | `action.before.<id>` / `action.after.<id>` | the executor, around every action (`<id>` as in the plan: `observe`, `snapshot`, `upload:<target>`, `prune:local`, `init`, `restore`, …); `after` is after the action returned, before its outcome is recorded |
//! | `local.before-link` | local store: temp file written, fsynced and verified, not yet linked to its `.snap` name |
//! | `local.after-link` | local store: `.snap` linked, temp name not yet removed, directory not fsynced |
//! | `s3.multipart.after-create` | S3 upload (from the file, or streamed while the snapshot is written): multipart upload created, no part sent |
//! | `s3.multipart.after-part` | S3 upload: a part was accepted (others may be in flight; streamed: read back from the growing temp file) |
//! | `s3.stream.after-identity` | S3 streamed upload: identity object written, the upload not yet completed (no snapshot object) |
//! | `s3.after-complete` | S3 upload: object complete (PutObject / CompleteMultipartUpload), not yet confirmed by HEAD |
//! | `fs.before-publish` | filesystem target: temp copy (uploaded or streamed) written and fsynced, not yet linked/renamed |
//! | `fs.after-publish` | filesystem target: linked and the directory fsynced, not yet read back |
//! | `stream.after-verify` | snapshot action: streamed to the local temp file and every streaming target's temp file, verified, local file fsynced; nothing linked or committed |
//! | `prune.after-delete` | target prune: one snapshot deleted, the next not yet |
//! | `fetch.mid-download` | S3 fetch for a restore: part of the body written to the scratch file |
//! | `restore.after-temp-init` | restore: node 0 temp-initialised, temporary keys only in memory |
//! | `restore.after-temp-unseal` | restore: node 0 unsealed with the temporary keys, snapshot not sent |
//! | `restore.after-force` | restore: `snapshot-force` accepted, seal not yet observed |
//! | `init.after-init` | init: `sys/init` answered, keys only in memory (the data-loss window) |
//!
//! "Keys stored, cluster not yet unsealed" is `action.after.store-keys`.
//!
//! Fault points ([`fault`]) make one operation fail instead of aborting
//! (armed with `return` like a crash point):
//!
//! | name | where |
//! |---|---|
//! | `fs.stream-write` | filesystem target: a write of a streamed copy fails (the target is detached and uploads from the local file) |
//!
//! Stage: test support, compiled into the library only with the feature.

/// Abort the process here if the crash point `name` is armed (feature
/// `failpoints` only; otherwise expands to nothing and `name` is not
/// evaluated).
#[cfg(feature = "failpoints")]
macro_rules! crash_point {
    ($name:expr) => {
        $crate::crash::hit($name)
    };
}

#[cfg(not(feature = "failpoints"))]
macro_rules! crash_point {
    ($name:expr) => {{}};
}

pub(crate) use crash_point;

/// Evaluate the crash point `name`: abort if `FAILPOINTS` armed it with
/// `return`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    fail::fail_point!(name, |_| {
        crate::ewriteln!("crash point {name}: aborting");
        std::process::abort()
    });
}

/// Whether the fault point `name` is armed (feature `failpoints`; always
/// `false` without it): the caller then fails the operation.
#[cfg(feature = "failpoints")]
pub fn fault(name: &str) -> bool {
    fail::fail_point!(name, |_| true);
    false
}

#[cfg(not(feature = "failpoints"))]
pub fn fault(_name: &str) -> bool {
    false
}

/// Arms the points named in `FAILPOINTS` for the life of the returned
/// guard (call once, at the start of `main`).
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}
