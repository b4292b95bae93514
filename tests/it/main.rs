//! Every integration test of snapward, in one test binary: one module per
//! area, one `support` (servers, work dirs, the one way to start the
//! `snapward` binary). One binary links the crate and its dependencies
//! once, and makes a helper that nothing uses a warning.
//!
//! Run one area with `cargo test --features failpoints --test it -- AREA::`
//! (e.g. `backup::`). Most areas start real servers: they need
//! `eval "$(scripts/test-env.sh)"`; `scripts/run-tests.sh` runs them all.

// Tests and their helpers may panic on a broken expectation: that is how
// they fail. Library code may not (Cargo.toml [lints]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod alerts;
mod auth;
mod auth_methods;
mod auto_unseal;
mod azure;
mod backup;
mod bad_input;
mod bao_faults;
mod ci_examples;
mod cli;
// The crash points exist only in a `--features failpoints` build.
#[cfg(feature = "failpoints")]
mod crash;
mod deploy;
mod drills;
mod executor;
mod fuzz_smoke;
mod gcs;
mod hardening_dos;
mod hardening_local;
mod hardening_transport;
mod key_shape;
mod kube;
mod kube_run;
mod list;
mod mtls;
mod multi_node_restore;
mod notify;
mod openbao;
mod plan_dag;
mod plan_inventory;
mod policy_lint;
mod progress;
mod restore_auth;
mod restore_test;
mod retention;
mod retention_auth;
mod s3_faults;
mod signals;
mod snapshot_verify;
mod stream_once;
mod targets;
mod verify_auth;
mod verify_cache;

/// Without `--features failpoints` the `crash` module is compiled away:
/// fail loudly instead of passing without its tests.
#[cfg(not(feature = "failpoints"))]
#[test]
fn crash_tests_need_the_failpoints_feature() {
    panic!(
        "the crash tests (tests/it/crash.rs) exist only with the failpoints feature: \
         run `cargo test --features failpoints` (scripts/run-tests.sh and `make test` do)"
    );
}
