//! The restore ceremony's calls on one node (docs/openbao.md): `sys/init`,
//! `sys/unseal`, `sys/seal-status`, `sys/leader`, the forced restore
//! (`sys/storage/raft/snapshot-force`), the canary read and the revocation
//! of the init root token (`auth/token/revoke-self`).
//!
//! Must never: quote an init or unseal answer in an error (they hold key
//! shares and the root token), log a key or token, or persist either (they
//! live in [`Secret`]s, in memory only).

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::{expect_ok, send_and_read};
use super::error::{invalid_key_size, status_error, transport_error};
use super::{HttpOpenBao, SealStatus};
use crate::backends::{BaoError, Ceremony, InitResult, LeaderState, SealState};
use crate::secret::Secret;

impl From<SealStatus> for SealState {
    fn from(s: SealStatus) -> Self {
        SealState {
            initialized: s.initialized,
            sealed: s.sealed,
            threshold: s.t,
            shares: s.n,
            progress: s.progress,
            cluster_id: s.cluster_id,
        }
    }
}

#[derive(Deserialize)]
struct InitKeys {
    #[serde(default)]
    keys_base64: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    root_token: String,
}

#[async_trait]
impl Ceremony for HttpOpenBao {
    async fn init(&self, node: usize, shares: u32, threshold: u32) -> Result<InitResult, BaoError> {
        let body = serde_json::json!({"secret_shares": shares, "secret_threshold": threshold});
        let raw = self
            .send_json(node, Method::PUT, "sys/init", None, Some(body))
            .await?;
        let k: InitKeys = self.parse(node, "sys/init", &raw)?;
        let keys = if k.keys_base64.is_empty() {
            k.keys
        } else {
            k.keys_base64
        };
        Ok(InitResult {
            keys: keys.into_iter().map(Secret::from).collect(),
            root_token: Secret::from(k.root_token),
        })
    }

    async fn unseal(&self, node: usize, key: &Secret) -> Result<SealState, BaoError> {
        let body = serde_json::json!({"key": key.expose()});
        let path = "sys/unseal";
        let (name, reply) = self
            .send_json_reply(node, Method::PUT, path, None, Some(body))
            .await?;
        if let Some(e) = invalid_key_size(&name, path, &reply) {
            return Err(e);
        }
        let raw = expect_ok(&name, path, reply)?;
        self.parse::<SealStatus>(node, path, &raw)
            .map(SealState::from)
    }

    async fn seal_status(&self, node: usize) -> Result<SealState, BaoError> {
        HttpOpenBao::seal_status(self, node)
            .await
            .map(SealState::from)
    }

    async fn leader(&self, node: usize) -> Result<LeaderState, BaoError> {
        HttpOpenBao::leader(self, node).await.map(|l| LeaderState {
            is_self: l.is_self,
            leader_address: l.leader_address,
            raft_committed_index: l.raft_committed_index,
            raft_applied_index: l.raft_applied_index,
        })
    }

    async fn restore_force(
        &self,
        node: usize,
        token: &Secret,
        file: &std::path::Path,
    ) -> Result<(), BaoError> {
        let n = self.node(node)?;
        let path = "sys/storage/raft/snapshot-force";
        let f = tokio::fs::File::open(file).await.map_err(BaoError::Io)?;
        let len = f.metadata().await.map_err(BaoError::Io)?.len();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
        let rb = self
            .request(n, Method::POST, path, Some(token))?
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        // The upload of a large snapshot may take longer than a plain request.
        let deadline = self.timeouts.request.max(Duration::from_secs(600));
        let send = send_and_read(rb);
        let reply = match tokio::time::timeout(deadline, send).await {
            Err(_) => {
                return Err(BaoError::failed(
                    &n.name,
                    format!("{path}: no answer within {}s", deadline.as_secs()),
                ));
            }
            Ok(Err(e)) => return Err(transport_error(&n.name, e).err),
            Ok(Ok(r)) => r,
        };
        if reply.status != StatusCode::NO_CONTENT && reply.status != StatusCode::OK {
            return Err(status_error(&n.name, path, &reply).err);
        }
        Ok(())
    }

    async fn revoke_self(&self, node: usize, token: &Secret) -> Result<(), BaoError> {
        self.send_json(
            node,
            Method::POST,
            "auth/token/revoke-self",
            Some(token),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn read(
        &self,
        node: usize,
        token: &Secret,
        path: &str,
    ) -> Result<serde_json::Value, BaoError> {
        let raw = self
            .send_json(
                node,
                Method::GET,
                path.trim_start_matches('/'),
                Some(token),
                None,
            )
            .await?;
        self.parse(node, path, &raw)
    }
}
