//! Reading a node's state without a token: `sys/seal-status`, `sys/init`
//! and `sys/leader`, combined into a [`NodeStatus`].
//!
//! Must never: report an unreadable, timed-out or contradictory node as
//! anything but `InitState::Unknown` (never `Uninitialized`: that would let
//! a fresh init or a restore run over a live cluster).

use serde::Deserialize;

use super::HttpOpenBao;
use super::error::node_error;
use crate::backends::{BaoError, NodeStatus};
use crate::cluster::{InitState, Seal};

/// `GET /v1/sys/seal-status` (no token needed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    /// Threshold.
    #[serde(default)]
    pub t: u32,
    /// Shares.
    #[serde(default)]
    pub n: u32,
    /// Unseal keys received so far.
    #[serde(default)]
    pub progress: u32,
    /// Present when unsealed.
    #[serde(default, deserialize_with = "non_empty")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// `shamir`, `static`, `transit`, … (`None`: the server did not say).
    #[serde(default, rename = "type", deserialize_with = "non_empty")]
    pub seal_type: Option<String>,
    /// Auto-unseal: `sys/init` hands out recovery keys.
    #[serde(default)]
    pub recovery_seal: bool,
}

impl SealStatus {
    /// The seal this answer describes.
    pub fn seal(&self) -> Seal {
        Seal {
            r#type: self
                .seal_type
                .clone()
                .unwrap_or_else(|| if self.recovery_seal { "auto" } else { "shamir" }.into()),
            recovery_seal: self.recovery_seal,
        }
    }
}

/// `GET /v1/sys/leader` (no token needed; 503 while sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Leader {
    pub ha_enabled: bool,
    /// This node is the active one.
    pub is_self: bool,
    #[serde(default, deserialize_with = "non_empty")]
    pub leader_address: Option<String>,
    #[serde(default)]
    pub raft_committed_index: Option<u64>,
    #[serde(default)]
    pub raft_applied_index: Option<u64>,
}

fn non_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

#[derive(Deserialize)]
struct InitResponse {
    initialized: bool,
}

impl HttpOpenBao {
    /// `GET /v1/sys/seal-status` on one node.
    pub async fn seal_status(&self, node: usize) -> Result<SealStatus, BaoError> {
        self.get_json(node, "sys/seal-status")
            .await
            .map_err(|a| a.err)
    }

    /// `GET /v1/sys/init` on one node: is it initialised?
    pub async fn init_status(&self, node: usize) -> Result<bool, BaoError> {
        self.get_json::<InitResponse>(node, "sys/init")
            .await
            .map(|r| r.initialized)
            .map_err(|a| a.err)
    }

    /// `GET /v1/sys/leader` on one node (503 while sealed).
    pub async fn leader(&self, node: usize) -> Result<Leader, BaoError> {
        self.get_json(node, "sys/leader").await.map_err(|a| a.err)
    }

    pub(super) async fn observe_node(&self, i: usize) -> NodeStatus {
        let n = match self.node(i) {
            Ok(n) => n,
            Err(e) => {
                return NodeStatus {
                    name: format!("node-{i}"),
                    address: String::new(),
                    init: InitState::Unknown,
                    sealed: None,
                    active: false,
                    cluster_id: None,
                    raft_index: None,
                    seal: None,
                    error: Some(e.to_string()),
                };
            }
        };
        let mut st = NodeStatus {
            name: n.name.clone(),
            address: n.address.as_str().trim_end_matches('/').to_string(),
            init: InitState::Unknown,
            sealed: None,
            active: false,
            cluster_id: None,
            raft_index: None,
            seal: None,
            error: None,
        };
        let (seal, init) = tokio::join!(self.seal_status(i), self.init_status(i));
        let seal = match seal {
            Ok(s) => s,
            Err(e) => {
                st.error = Some(node_error(&e));
                return st;
            }
        };
        st.sealed = Some(seal.sealed);
        st.cluster_id = seal.cluster_id.clone();
        st.seal = Some(seal.seal());
        match init {
            Err(e) => {
                st.error = Some(node_error(&e));
                return st;
            }
            Ok(init) if init != seal.initialized => {
                st.error = Some(format!(
                    "contradictory answers: sys/seal-status says initialized={}, sys/init says initialized={init}",
                    seal.initialized
                ));
                return st;
            }
            Ok(_) => {}
        }
        if !seal.initialized && !seal.sealed {
            st.error = Some(
                "contradictory answers: sys/seal-status says uninitialised but unsealed".into(),
            );
            return st;
        }
        st.init = if seal.initialized {
            InitState::Initialized
        } else {
            InitState::Uninitialized
        };
        if seal.initialized && !seal.sealed {
            match self.leader(i).await {
                Ok(l) => {
                    st.active = l.is_self;
                    st.raft_index = l.raft_committed_index;
                }
                // Initialised is settled; only leadership is unknown.
                Err(e) => st.error = Some(node_error(&e)),
            }
        }
        st
    }
}
