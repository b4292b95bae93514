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
    /// The seal as `sys/seal-status` reported it (`None`: not read).
    pub seal: Option<Seal>,
    pub error: Option<String>,
}

/// How a node's barrier is unsealed: with Shamir key shares, or by a seal
/// (transit, static, a KMS) that unseals it by itself. An auto-unseal
/// node's `sys/init` hands out recovery keys instead of unseal keys.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SealKind {
    Shamir,
    Auto,
}

impl SealKind {
    /// `shamir` | `auto`, as policies, key-shape records and reports say it.
    pub fn name(self) -> &'static str {
        match self {
            SealKind::Shamir => "shamir",
            SealKind::Auto => "auto",
        }
    }

    /// What `sys/init` hands out for this seal.
    pub fn keys_word(self) -> &'static str {
        match self {
            SealKind::Shamir => "unseal keys",
            SealKind::Auto => "recovery keys",
        }
    }
}

/// A node's seal as reported: `type` (`shamir`, `static`, `transit`, …)
/// and `recovery_seal` (true for auto-unseal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seal {
    pub r#type: String,
    pub recovery_seal: bool,
}

impl Seal {
    pub fn kind(&self) -> SealKind {
        if self.recovery_seal {
            SealKind::Auto
        } else {
            SealKind::Shamir
        }
    }
}

/// The seal kind every node that reported one agrees on: `Ok(None)` when
/// none reported a seal, `Err(kinds)` when they disagree (a contradiction:
/// the cluster's state is unknown).
pub fn agreed_seal(
    seals: impl IntoIterator<Item = Option<SealKind>>,
) -> Result<Option<SealKind>, Vec<SealKind>> {
    let mut kinds: Vec<SealKind> = seals.into_iter().flatten().collect();
    kinds.sort();
    kinds.dedup();
    match kinds.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(kinds),
    }
}
