//! [`DiscoveredOpenBao`]: an OpenBao backend over discovered pods that
//! holds the one rule "a pod that is not serving is unknown", and restarts
//! a pod for the restore ceremony when the policy allows it.
//!
//! Must never: report an untrusted pod as anything but
//! `InitState::Unknown`, or snapshot from one.

use std::path::Path;
use std::time::Duration;

use ::kube::Client;
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::discovery::{DiscoveredNode, Readiness, discover_nodes, unready_status};
use super::restart::restart_pod;
use crate::backends::{
    BaoError, Ceremony, InitResult, LeaderState, NodeStatus, OpenBao, RestoreEndpoint, SealKind,
    SealState,
};
use crate::policy::model::KubernetesDiscovery;
use crate::secret::Secret;

/// An [`OpenBao`] (and [`Ceremony`]) over discovered pods that forces every
/// untrusted pod (see [`Readiness`]) to `InitState::Unknown` and refuses to
/// snapshot from it. The one place the "not serving ⇒ unknown" rule lives.
///
/// Nodes are matched by name, so build the inner backend from
/// [`addresses`](super::addresses) of the same `nodes`.
pub struct DiscoveredOpenBao<B> {
    inner: B,
    nodes: Vec<DiscoveredNode>,
    readiness: Readiness,
    restart: Option<PodRestart>,
}

/// What [`DiscoveredOpenBao`] needs to restart a pod and find it again.
struct PodRestart {
    client: Client,
    discovery: KubernetesDiscovery,
    timeout: Duration,
}

impl<B> DiscoveredOpenBao<B> {
    /// Wraps `inner` with the strict rule ([`Readiness::Ready`]).
    pub fn new(inner: B, nodes: Vec<DiscoveredNode>) -> Self {
        Self {
            inner,
            nodes,
            readiness: Readiness::Ready,
            restart: None,
        }
    }

    /// Lets [`Ceremony::restart`] delete a pod found by `discovery` and
    /// wait up to `timeout` for its StatefulSet to bring it back (see
    /// [`restart_pod`]).
    pub fn with_restart(
        mut self,
        client: Client,
        discovery: &KubernetesDiscovery,
        timeout: Duration,
    ) -> Self {
        self.restart = Some(PodRestart {
            client,
            discovery: discovery.clone(),
            timeout,
        });
        self
    }

    /// Chooses which pods are trusted (see [`Readiness`]).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// The discovered pods, in order.
    pub fn nodes(&self) -> &[DiscoveredNode] {
        &self.nodes
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn untrusted(&self, name: &str) -> Option<&DiscoveredNode> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .filter(|n| !n.trusted(self.readiness))
    }
}

impl<B: OpenBao> DiscoveredOpenBao<B> {
    fn untrusted_index(&self, node: usize) -> Option<&DiscoveredNode> {
        let names = self.inner.node_names();
        self.untrusted(names.get(node)?)
    }
}

#[async_trait]
impl<B: OpenBao> OpenBao for DiscoveredOpenBao<B> {
    fn node_names(&self) -> Vec<String> {
        self.inner.node_names()
    }

    async fn observe(&self) -> Vec<NodeStatus> {
        let mut seen = self.inner.observe().await;
        for st in &mut seen {
            if let Some(n) = self.untrusted(&st.name) {
                let answered = match (&st.error, st.init) {
                    (Some(e), _) => format!("; OpenBao: {e}"),
                    (None, s) => format!("; OpenBao answered {}", format!("{s:?}").to_lowercase()),
                };
                let mut forced = unready_status(n);
                forced.address = std::mem::take(&mut st.address);
                if let Some(e) = &mut forced.error {
                    e.push_str(&answered);
                }
                *st = forced;
            }
        }
        seen
    }

    async fn snapshot(
        &self,
        node: usize,
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        cancel: &CancellationToken,
    ) -> Result<u64, BaoError> {
        if let Some(n) = self.untrusted_index(node) {
            return Err(BaoError::failed(
                &n.name,
                format!(
                    "pod not serving: {}",
                    n.reason.as_deref().unwrap_or("not ready")
                ),
            ));
        }
        self.inner.snapshot(node, out, cancel).await
    }
}

/// Delegates every call: destructive steps are gated by the guard, which
/// sees untrusted pods as unknown through [`OpenBao::observe`].
#[async_trait]
impl<B: Ceremony> Ceremony for DiscoveredOpenBao<B> {
    async fn init(
        &self,
        node: usize,
        shares: u32,
        threshold: u32,
        seal: SealKind,
    ) -> Result<InitResult, BaoError> {
        self.inner.init(node, shares, threshold, seal).await
    }
    async fn unseal(&self, node: usize, key: &Secret) -> Result<SealState, BaoError> {
        self.inner.unseal(node, key).await
    }
    async fn seal_status(&self, node: usize) -> Result<SealState, BaoError> {
        self.inner.seal_status(node).await
    }
    async fn leader(&self, node: usize) -> Result<LeaderState, BaoError> {
        self.inner.leader(node).await
    }
    async fn restore(
        &self,
        node: usize,
        token: &Secret,
        file: &Path,
        how: RestoreEndpoint,
    ) -> Result<(), BaoError> {
        self.inner.restore(node, token, file, how).await
    }
    async fn read(
        &self,
        node: usize,
        token: &Secret,
        path: &str,
    ) -> Result<serde_json::Value, BaoError> {
        self.inner.read(node, token, path).await
    }
    async fn revoke_self(&self, node: usize, token: &Secret) -> Result<(), BaoError> {
        self.inner.revoke_self(node, token).await
    }
    /// Deletes the pod, waits for its replacement, then discovers again:
    /// the backend keeps the addresses it was built with, so a replacement
    /// at another address (a new pod IP; `serviceName` avoids that) is an
    /// error — the next run discovers it and unseals it.
    async fn restart(&self, node: usize) -> Result<bool, BaoError> {
        let Some(r) = &self.restart else {
            return Ok(false);
        };
        let Some(old) = self.nodes.get(node) else {
            return Ok(false);
        };
        let failed = |detail: String| BaoError::failed(&old.name, detail);
        let ns = &r.discovery.namespace;
        restart_pod(&r.client, ns, &old.name, self.readiness, r.timeout)
            .await
            .map_err(|e| failed("restarting the pod".into()).caused_by(e))?;
        let again = discover_nodes(&r.client, &r.discovery)
            .await
            .map_err(|e| failed("finding the restarted pod".into()).caused_by(e))?;
        match again.iter().find(|n| n.name == old.name) {
            Some(n) if n.url == old.url => Ok(true),
            Some(n) => Err(failed(format!(
                "the restarted pod serves at {} instead of {}: the next run unseals it there (address pods through cluster.discovery.kubernetes.serviceName to finish in one run)",
                n.url, old.url
            ))),
            None => Err(failed("the restarted pod is not found by discovery".into())),
        }
    }
}
