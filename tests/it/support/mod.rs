//! What the integration tests share: real servers (`bao`, `s3`), scripted
//! ones (`bao::FakeHttp`, `kube_api`, `fault_proxy`), the one way to start
//! the binary (`cmd`), what a run did (`outcome`), work dirs (`work`,
//! `drill`).

use std::path::PathBuf;

pub mod azurite;
pub mod bao;
pub mod cmd;
pub mod drill;
pub mod fake_gcs;
pub mod fault_proxy;
pub mod kube_api;
pub mod outcome;
pub mod s3;
pub mod surgery;
pub mod work;

/// The package root (`policies/`, `fixtures/`, `schemas/`, `deploy/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real OpenBao 2.7.2 snapshot under `fixtures/`.
pub fn fixture_snapshot() -> PathBuf {
    root().join("fixtures/snapshots/openbao-2.7.2-small.snap")
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
