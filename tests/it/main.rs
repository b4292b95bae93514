//! Every integration test of snapward, in one test binary: one module per
//! area, one `support` (servers, work dirs, the one way to start the
//! `snapward` binary). One binary links the crate and its dependencies
//! once, and makes a helper that nothing uses a warning.
//!
//! Run one area with `cargo test --features failpoints --test it -- AREA::`
//! (e.g. `backup::`). Most areas start real servers: they need
//! `eval "$(scripts/test-env.sh)"`; `scripts/run-tests.sh` runs them all.

mod support;

mod backup;
mod bad_input;
mod bao_faults;
mod cli;
mod crash;
mod deploy;
mod drills;
mod executor;
mod fuzz_smoke;
mod kube;
mod kube_run;
mod list;
mod openbao;
mod plan_dag;
mod policy_lint;
mod retention;
mod s3_faults;
mod signals;
mod snapshot_verify;
mod targets;
