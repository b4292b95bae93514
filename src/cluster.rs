//! What snapward knows about an OpenBao cluster's nodes: plain data that
//! the backends produce (observe), the guard reads and the report shows.
//!
//! Stage: core (pure data, no I/O). Imports nothing of the crate.

use serde::Serialize;

/// A node's initialisation state is three-valued: a node we could not read
/// is `Unknown`, never `Uninitialized` (invariant 5, README "Guarantees").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitState {
    Initialized,
    Uninitialized,
    Unknown,
}

/// One node as `observe` saw it. Never an error: a node that could not be
/// read is `InitState::Unknown` with the reason in `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub init: InitState,
    pub sealed: Option<bool>,
    /// `GET /v1/sys/leader` says `is_self` (and the node is unsealed).
    pub active: bool,
    pub cluster_id: Option<String>,
    /// Raft committed index (`sys/leader` `raft_committed_index`), if reported.
    pub raft_index: Option<u64>,
    pub error: Option<String>,
}
