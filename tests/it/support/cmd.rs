//! The one way a test starts the `snapward` binary.
//!
//! The binary reads its environment: `SNAPWARD_*` (policy, report, log
//! level and format), `KUBECONFIG` and `FAILPOINTS` (an armed crash point).
//! Whatever the developer's shell or the test process holds there must not
//! reach a run, so every command starts with all of them removed; a test
//! then sets exactly what it means to (`.env("SNAPWARD_LOG", "info")`,
//! `.env("FAILPOINTS", ...)`).

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

/// The binary under test (built by cargo for the integration tests).
const SNAPWARD: &str = env!("CARGO_BIN_EXE_snapward");

/// Removes every variable of the test process that the binary reads.
fn scrub(cmd: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"SNAPWARD_") {
            cmd.env_remove(&name);
        }
    }
    cmd.env_remove("KUBECONFIG").env_remove("FAILPOINTS")
}

/// `snapward` with a clean environment (see the module docs).
pub fn snapward() -> Command {
    let mut cmd = Command::new(SNAPWARD);
    scrub(&mut cmd);
    cmd
}

/// [`snapward`] for async tests.
pub fn snapward_async() -> tokio::process::Command {
    snapward().into()
}

/// `program ARGS... <snapward>` with the same clean environment: for a
/// wrapper that ends by exec'ing the binary with the rest of its arguments
/// (e.g. `sh -c '...; exec prlimit ... -- "$@"'`). Add snapward's own
/// arguments with `.args(...)`.
pub fn snapward_under<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Command {
    let mut cmd = Command::new(program);
    scrub(&mut cmd);
    cmd.args(args).arg(SNAPWARD);
    cmd
}

/// Waits for a started `snapward` (stdout and stderr piped) to end, at
/// most `limit`: a run that takes longer fails the test (a hang).
pub async fn finish(child: tokio::process::Child, limit: Duration) -> Output {
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("snapward did not finish within {limit:?} (a hang)"))
        .expect("wait for snapward")
}
