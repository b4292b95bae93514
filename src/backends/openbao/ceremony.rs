//! The restore ceremony's calls on one node (docs/openbao.md): `sys/init`,
//! `sys/unseal`, `sys/seal-status`, `sys/leader`, the restore (forced for
//! Shamir, verified for auto-unseal: `sys/storage/raft/snapshot[-force]`), the canary read and the revocation
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
use super::error::{invalid_key_size, seal_mismatch, status_error, transport_error};
use super::{HttpOpenBao, SealStatus};
use crate::backends::{
    BaoError, Ceremony, InitResult, LeaderState, RestoreEndpoint, SealKind, SealState,
};
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
    #[serde(default)]
    recovery_keys_base64: Vec<String>,
    #[serde(default)]
    recovery_keys: Vec<String>,
    root_token: String,
}

impl InitKeys {
    /// The shares this seal hands out (base64 preferred): unseal keys for
    /// Shamir, recovery keys for auto-unseal.
    fn shares(self, seal: SealKind) -> (Vec<String>, String) {
        let (b64, hex) = match seal {
            SealKind::Shamir => (self.keys_base64, self.keys),
            SealKind::Auto => (self.recovery_keys_base64, self.recovery_keys),
        };
        (if b64.is_empty() { hex } else { b64 }, self.root_token)
    }
}

#[async_trait]
impl Ceremony for HttpOpenBao {
    async fn init(
        &self,
        node: usize,
        shares: u32,
        threshold: u32,
        seal: SealKind,
    ) -> Result<InitResult, BaoError> {
        let body = match seal {
            SealKind::Shamir => {
                serde_json::json!({"secret_shares": shares, "secret_threshold": threshold})
            }
            SealKind::Auto => {
                serde_json::json!({"recovery_shares": shares, "recovery_threshold": threshold})
            }
        };
        let raw = self
            .send_json(node, Method::PUT, "sys/init", None, Some(body))
            .await?;
        let k: InitKeys = self.parse(node, "sys/init", &raw)?;
        let (keys, root_token) = k.shares(seal);
        if keys.is_empty() {
            let n = self.node(node)?;
            return Err(BaoError::failed(
                &n.name,
                format!("sys/init answered without {}", seal.keys_word()),
            ));
        }
        Ok(InitResult {
            keys: keys.into_iter().map(Secret::from).collect(),
            root_token: Secret::from(root_token),
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

    async fn restore(
        &self,
        node: usize,
        token: &Secret,
        file: &std::path::Path,
        how: RestoreEndpoint,
    ) -> Result<(), BaoError> {
        let n = self.node(node)?;
        let path = how.path();
        let f = tokio::fs::File::open(file).await.map_err(BaoError::Io)?;
        let len = f.metadata().await.map_err(BaoError::Io)?.len();
        let f = crate::progress::Reader::new(
            f,
            crate::progress::start(format!("restore {}", n.name), Some(len)),
        );
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
            if how == RestoreEndpoint::Verified
                && let Some(e) = seal_mismatch(&n.name, path, &reply)
            {
                return Err(e);
            }
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
