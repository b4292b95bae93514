//! Kubernetes: the API client, node discovery, the Secret key store, the
//! run Lease, Events, pod restart and the policy read from a ConfigMap.
//!
//! Stage: execute (backend). Everything here talks to the Kubernetes API
//! through `kube` 5 + `k8s-openapi` (rustls with the `aws-lc-rs` provider
//! only: a second provider makes rustls panic at runtime).
//!
//! Must never:
//! - update, patch or replace a Secret (the key store is create-only, and a
//!   created Secret is `immutable`);
//! - report a pod that is not serving as anything but `InitState::Unknown`
//!   ([`DiscoveredOpenBao`] holds that rule in one place);
//! - put key material in an error, a log line or an Event note;
//! - fail a run because an Event could not be written.
//!
//! # Choices
//!
//! - **Readiness.** A pod is *ready* when it is Running, not terminating,
//!   has an IP, and its `Ready` condition is `True`. The OpenBao Helm
//!   chart's default readiness probe is `bao status`, which fails while the
//!   server is **sealed** — so a wiped or freshly restarted (sealed) cluster
//!   has no Ready pod at all. [`Readiness::Ready`] (the strict rule) then
//!   makes every node unknown and nothing can unseal or restore it;
//!   [`Readiness::Running`] trusts the HTTP observation of pods whose
//!   containers all run (the probe is ignored) and still makes pending,
//!   terminating, crash-looping and missing pods unknown. Which one a policy
//!   wants depends on its readiness probe, so callers choose.
//! - **Ordinals.** Pods are ordered by StatefulSet ordinal (the
//!   `apps.kubernetes.io/pod-index` label, else the `-N` name suffix of a
//!   StatefulSet-owned pod). A missing ordinal below the highest one found
//!   becomes a placeholder node that is not ready (unknown), so "node 0"
//!   always means ordinal 0 and never silently shifts to ordinal 1. Two pods
//!   with one ordinal (the selector matches two StatefulSets) are an error.
//!   A missing *highest* ordinal cannot be seen without reading the
//!   StatefulSet's replica count (not done: it needs one more RBAC rule).
//! - **"Absent" keys need proof.** The key store reports "no Secret" only on
//!   the API server's own `NotFound` for that Secret (reason and details
//!   name it). Any other 404 — a proxy, a wrong API URL — is "unavailable",
//!   because "absent" can let a fresh init run.
//! - **Errors are classified by HTTP code.** For a non-JSON error body kube
//!   builds a `Status` with reason "Failed to parse error data", and
//!   kube-core 5's `Status::is_forbidden()`/`is_not_found()` then ignore the
//!   code; this module looks at the code first.
//! - **Lease.** `coordination.k8s.io/v1`, written with the observed
//!   `resourceVersion` every time (optimistic concurrency): a 409 means
//!   someone else wrote first, so the acquirer is "busy" and a renewer has
//!   "lost" it. The holder identity must be unique per process (the pod
//!   name in a Job; `hostname-pid` on a laptop); the same identity re-takes
//!   its own lease at once (a container restarted in the same pod).
//! - **Events** (`events.k8s.io/v1`, through `kube::runtime::events::Recorder`):
//!   a fresh `Recorder` per event. A long-lived `Recorder` folds repeats of
//!   one (type, reason, action) within 6 minutes into a PATCH of the *first*
//!   event's series, keeping the first note — two "TargetSkipped" events for
//!   two targets would show only the first target. A run emits a handful of
//!   events, so every one is created (RBAC: `create` on events only).
//! - **Polling, not watches**, for the pod restart: a few GETs per second
//!   are cheap and survive API-server restarts without watch bookkeeping.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use ::kube::{Client, Config};
use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, Secret as KubeSecret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio_util::sync::CancellationToken;
use url::Url;
use zeroize::Zeroizing;

use crate::backends::keys::{KeyStore, KeyStoreError, StoredKeys};
use crate::backends::{
    BaoError, Ceremony, InitResult, LeaderState, NodeStatus, OpenBao, SealState,
};
use crate::cluster::InitState;
use crate::policy::model::{KubernetesDiscovery, Scheme};
use crate::secret::Secret;

/// The label a StatefulSet puts on each pod with its ordinal (Kubernetes ≥ 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label a StatefulSet puts on each pod with the pod's own name.
const STS_POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Reporting controller on every Event.
pub const CONTROLLER: &str = "snapward";
/// Read timeout of every API request (nothing here watches or streams).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How often [`restart_pod`] looks at the pod.
const RESTART_POLL: Duration = Duration::from_millis(500);
/// An Event that cannot be written within this is dropped (logged).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Errors

/// What a Kubernetes call failed on. Messages name the operation, the
/// object and, on 403, the RBAC verb and resource that are probably missing.
/// They never carry key material (a Secret's body is never quoted).
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable client configuration (kubeconfig or in-cluster).
    #[error("cannot configure the Kubernetes client: {detail}")]
    Config {
        /// What went wrong (file, context, missing service-account token).
        detail: String,
    },
    /// 403: RBAC does not allow the call.
    #[error(
        "{verb} {resource} {target} was forbidden (403): the ServiceAccount probably lacks RBAC verb `{verb}` on `{resource}` in namespace `{namespace}` ({message})"
    )]
    Forbidden {
        /// The RBAC verb of the call (`get`, `list`, `create`, `update`, `delete`).
        verb: &'static str,
        /// The resource, with its API group (`leases.coordination.k8s.io`).
        resource: &'static str,
        /// The object's namespace.
        namespace: String,
        /// `namespace/name`, or `in namespace N` for a list.
        target: String,
        /// The API server's message.
        message: String,
    },
    /// 404 on an object the operation needs.
    #[error("{resource} {namespace}/{name} not found")]
    NotFound {
        /// The resource (`pods`, `configmaps`).
        resource: &'static str,
        /// The namespace looked in.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// Any other failed call: network, timeouts, 5xx, unexpected 4xx.
    #[error("{verb} {resource} {target} failed: {detail}")]
    Api {
        /// The RBAC verb of the call.
        verb: &'static str,
        /// The resource, with its API group.
        resource: &'static str,
        /// `namespace/name`, or `in namespace N` for a list.
        target: String,
        /// The HTTP status, when the server answered.
        code: Option<u16>,
        /// What failed.
        detail: String,
    },
    /// The objects found cannot be used as they are (ambiguous ordinals, a
    /// ConfigMap without a policy key, a malformed reference).
    #[error("{what}: {detail}")]
    Invalid {
        /// What was being read or decided.
        what: String,
        /// Why it cannot be used, and what to do.
        detail: String,
    },
    /// A wait ran out.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        seconds: u64,
    },
}

impl KubeError {
    /// The HTTP status of a failed API call, if the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Forbidden { .. } => Some(403),
            KubeError::NotFound { .. } => Some(404),
            KubeError::Api { code, .. } => *code,
            _ => None,
        }
    }
}

/// One API call, for error messages.
struct Op<'a> {
    verb: &'static str,
    resource: &'static str,
    namespace: &'a str,
    name: Option<&'a str>,
}

impl Op<'_> {
    fn target(&self) -> String {
        match self.name {
            Some(n) => format!("{}/{n}", self.namespace),
            None => format!("in namespace {}", self.namespace),
        }
    }

    fn err(&self, e: ::kube::Error) -> KubeError {
        self.err_with(e, false)
    }

    /// `redact`: the response was a Secret; a decoding error could quote it.
    ///
    /// Classified by HTTP code first: kube builds a `Status` with reason
    /// "Failed to parse error data" for a non-JSON error body (a proxy), and
    /// its `is_forbidden()`/`is_not_found()` then never look at the code.
    fn err_with(&self, e: ::kube::Error, redact: bool) -> KubeError {
        let code = status_code(&e);
        match e {
            ::kube::Error::Api(s) if code == Some(403) => KubeError::Forbidden {
                verb: self.verb,
                resource: self.resource,
                namespace: self.namespace.to_string(),
                target: self.target(),
                message: s.message.clone(),
            },
            ::kube::Error::Api(_) if code == Some(404) && self.name.is_some() => {
                KubeError::NotFound {
                    resource: self.resource,
                    namespace: self.namespace.to_string(),
                    name: self.name.unwrap_or_default().to_string(),
                }
            }
            ::kube::Error::Api(s) => KubeError::Api {
                verb: self.verb,
                resource: self.resource,
                target: self.target(),
                code,
                detail: format!(
                    "{} {}",
                    if s.reason.is_empty() {
                        "error"
                    } else {
                        &s.reason
                    },
                    s.message
                )
                .trim()
                .to_string(),
            },
            ::kube::Error::SerdeError(_) if redact => KubeError::Api {
                verb: self.verb,
                resource: self.resource,
                target: self.target(),
                code: None,
                detail: "the answer could not be decoded (details withheld: it holds secret data)"
                    .into(),
            },
            other => KubeError::Api {
                verb: self.verb,
                resource: self.resource,
                target: self.target(),
                code: None,
                detail: other.to_string(),
            },
        }
    }
}

/// The HTTP status of a failed call: the code when the answer carried one,
/// else what the `Status` reason implies.
fn status_code(e: &::kube::Error) -> Option<u16> {
    let ::kube::Error::Api(s) = e else {
        return None;
    };
    if s.code != 0 {
        return Some(s.code);
    }
    match s.reason.as_str() {
        "Forbidden" => Some(403),
        "NotFound" => Some(404),
        "AlreadyExists" | "Conflict" => Some(409),
        _ => None,
    }
}

/// A 404 that the API server itself gave for exactly this object (reason
/// `NotFound`, details naming it) — not a proxy's or a wrong URL's 404.
fn is_object_not_found(e: &::kube::Error, name: &str) -> bool {
    matches!(e, ::kube::Error::Api(s)
        if s.reason == "NotFound"
            && s.details.as_ref().is_some_and(|d| d.name == name))
}

// ---------------------------------------------------------------------------
// 1. Client

/// A Kubernetes client: from the kubeconfig at `kubeconfig` (its current
/// context), or else kube's standard inference — `$KUBECONFIG` or
/// `~/.kube/config` when present (a laptop), otherwise the in-cluster
/// service account (a Job). Every request gets a 60 s read timeout.
///
/// Errors: [`KubeError::Config`] naming the file or both inference failures.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| KubeError::Config {
                detail: format!("kubeconfig {}: {e}", path.display()),
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Config {
                    detail: format!("kubeconfig {}: {e}", path.display()),
                })?
        }
        None => Config::infer().await.map_err(|e| KubeError::Config {
            detail: format!(
                "neither a kubeconfig ($KUBECONFIG, ~/.kube/config) nor the in-cluster service account is usable: {e}"
            ),
        })?,
    };
    if config.read_timeout.is_none() {
        config.read_timeout = Some(READ_TIMEOUT);
    }
    Client::try_from(config).map_err(|e| KubeError::Config {
        detail: e.to_string(),
    })
}

// ---------------------------------------------------------------------------
// 2. Discovery

/// Which pods' HTTP observation is trusted (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Readiness {
    /// Running, not terminating, with an IP, and the `Ready` condition
    /// `True`. Right when the readiness probe succeeds on a sealed server
    /// (e.g. `sys/health?sealedcode=204&uninitcode=204`).
    #[default]
    Ready,
    /// Running, not terminating, with an IP, every container running; the
    /// readiness probe is ignored. Needed with the Helm chart's default
    /// `bao status` probe, which fails while the server is sealed.
    Running,
}

/// One pod found by discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredNode {
    /// The pod's name (or, for a missing ordinal, the name it would have).
    pub name: String,
    /// `<scheme>://<pod>.<serviceName>.<namespace>.svc:<port>` when the
    /// policy names a headless Service, else `<scheme>://<podIP>:<port>`.
    pub url: Url,
    /// The StatefulSet ordinal, if the pod has one.
    pub ordinal: Option<u32>,
    /// Running, not terminating, has an IP and `Ready` is `True`.
    pub ready: bool,
    /// Running, not terminating, has an IP and every container runs
    /// (readiness probe ignored). `ready` implies `running`.
    pub running: bool,
    /// Why the pod is not ready (no secrets: pod phase and conditions).
    pub reason: Option<String>,
}

impl DiscoveredNode {
    /// Whether this node's HTTP observation may be trusted under `readiness`.
    pub fn trusted(&self, readiness: Readiness) -> bool {
        match readiness {
            Readiness::Ready => self.ready,
            Readiness::Running => self.running,
        }
    }
}

/// `(name, url)` pairs in discovery order, for `HttpOpenBao::new`.
pub fn addresses(nodes: &[DiscoveredNode]) -> Vec<(String, Url)> {
    nodes
        .iter()
        .map(|n| (n.name.clone(), n.url.clone()))
        .collect()
}

/// The status a pod that is not serving must have: `InitState::Unknown`,
/// never `Uninitialized`, with the pod's reason as the error. Callers that
/// do not use [`DiscoveredOpenBao`] must replace the observation of every
/// untrusted pod with this.
pub fn unready_status(node: &DiscoveredNode) -> NodeStatus {
    NodeStatus {
        name: node.name.clone(),
        address: node.url.as_str().trim_end_matches('/').to_string(),
        init: InitState::Unknown,
        sealed: None,
        active: false,
        cluster_id: None,
        raft_index: None,
        error: Some(format!(
            "pod not serving: {}",
            node.reason.as_deref().unwrap_or("not ready")
        )),
    }
}

/// The OpenBao pods of `d`: listed by namespace + label selector, ordered by
/// StatefulSet ordinal, each with its address and readiness. Needs RBAC
/// `list` on `pods`.
///
/// Errors: the list call; no pod matched; two pods share an ordinal; pods
/// with and without ordinals are mixed (the selector is too wide).
pub async fn discover_nodes(
    client: &Client,
    d: &KubernetesDiscovery,
) -> Result<Vec<DiscoveredNode>, KubeError> {
    let op = Op {
        verb: "list",
        resource: "pods",
        namespace: &d.namespace,
        name: None,
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &d.namespace);
    let list = pods
        .list(&ListParams::default().labels(&d.label_selector))
        .await
        .map_err(|e| op.err(e))?;
    nodes_from_pods(&list.items, d)
}

fn nodes_from_pods(
    pods: &[Pod],
    d: &KubernetesDiscovery,
) -> Result<Vec<DiscoveredNode>, KubeError> {
    let what = || format!("pods `{}` in namespace {}", d.label_selector, d.namespace);
    if pods.is_empty() {
        return Err(KubeError::Invalid {
            what: what(),
            detail: "no pod matches the label selector; check spec.cluster.discovery".into(),
        });
    }
    let mut found: Vec<DiscoveredNode> = Vec::with_capacity(pods.len());
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let (running, ready, reason) = classify(pod);
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let url = node_url(d, &name, ip.as_deref())?;
        found.push(DiscoveredNode {
            ordinal: ordinal(pod),
            name,
            url,
            ready,
            running,
            reason,
        });
    }
    let with = found.iter().filter(|n| n.ordinal.is_some()).count();
    if with == 0 {
        found.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(found);
    }
    if with != found.len() {
        let odd: Vec<&str> = found
            .iter()
            .filter(|n| n.ordinal.is_none())
            .map(|n| n.name.as_str())
            .collect();
        return Err(KubeError::Invalid {
            what: what(),
            detail: format!(
                "{} have no StatefulSet ordinal while others do: narrow the label selector to one StatefulSet",
                odd.join(", ")
            ),
        });
    }
    found.sort_by_key(|n| n.ordinal);
    for w in found.windows(2) {
        if w[0].ordinal == w[1].ordinal {
            return Err(KubeError::Invalid {
                what: what(),
                detail: format!(
                    "{} and {} both have ordinal {}: the selector matches more than one StatefulSet; narrow it",
                    w[0].name,
                    w[1].name,
                    w[0].ordinal.unwrap_or_default()
                ),
            });
        }
    }
    // Fill gaps below the highest ordinal with unknown placeholders.
    let base = found.iter().find_map(|n| {
        let o = n.ordinal?;
        n.name.strip_suffix(&format!("-{o}")).map(|b| b.to_string())
    });
    let max = found.last().and_then(|n| n.ordinal).unwrap_or_default();
    let mut out = Vec::with_capacity(max as usize + 1);
    let mut it = found.into_iter().peekable();
    for o in 0..=max {
        if it.peek().and_then(|n| n.ordinal) == Some(o) {
            if let Some(n) = it.next() {
                out.push(n);
            }
            continue;
        }
        let Some(base) = &base else {
            return Err(KubeError::Invalid {
                what: what(),
                detail: format!("no pod with ordinal {o}, and its name cannot be derived"),
            });
        };
        let name = format!("{base}-{o}");
        out.push(DiscoveredNode {
            url: node_url(d, &name, None)?,
            name,
            ordinal: Some(o),
            ready: false,
            running: false,
            reason: Some(format!(
                "no pod with ordinal {o} exists (deleted or not yet created)"
            )),
        });
    }
    Ok(out)
}

fn node_url(d: &KubernetesDiscovery, pod: &str, ip: Option<&str>) -> Result<Url, KubeError> {
    let scheme = match d.scheme {
        Scheme::Https => "https",
        Scheme::Http => "http",
    };
    let host = match (&d.service_name, ip) {
        (Some(svc), _) => format!("{pod}.{svc}.{}.svc", d.namespace),
        (None, Some(ip)) => match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Err(_) => ip.to_string(),
        },
        // No IP yet: the pod is not running, so it is unknown and this
        // address (reserved, never resolves) is never trusted.
        (None, None) => format!("{pod}.{}.invalid", d.namespace),
    };
    Url::parse(&format!("{scheme}://{host}:{}", d.port)).map_err(|e| KubeError::Invalid {
        what: format!("the address of pod {}/{pod}", d.namespace),
        detail: e.to_string(),
    })
}

fn ordinal(pod: &Pod) -> Option<u32> {
    let labels = pod.metadata.labels.as_ref();
    if let Some(o) = labels
        .and_then(|l| l.get(POD_INDEX_LABEL))
        .and_then(|v| v.parse().ok())
    {
        return Some(o);
    }
    let sts_owned = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "StatefulSet")
        || labels.is_some_and(|l| l.contains_key(STS_POD_NAME_LABEL));
    if !sts_owned {
        return None;
    }
    let name = pod.metadata.name.as_deref()?;
    let (_, n) = name.rsplit_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return None;
    }
    n.parse().ok()
}

/// `(running, ready, reason when not ready)`.
fn classify(pod: &Pod) -> (bool, bool, Option<String>) {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if pod.metadata.deletion_timestamp.is_some() {
        return (false, false, Some("terminating".into()));
    }
    if phase != "Running" {
        let why = status
            .and_then(|s| s.reason.as_deref().or(s.message.as_deref()))
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        return (false, false, Some(format!("phase {phase}{why}")));
    }
    if status.and_then(|s| s.pod_ip.as_deref()).is_none() {
        return (false, false, Some("no pod IP".into()));
    }
    let containers = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    if containers.is_empty() {
        return (false, false, Some("no container status yet".into()));
    }
    for c in containers {
        let state = c.state.as_ref();
        if state.and_then(|s| s.running.as_ref()).is_none() {
            let why = state
                .and_then(|s| {
                    s.waiting
                        .as_ref()
                        .and_then(|w| w.reason.clone())
                        .or_else(|| s.terminated.as_ref().and_then(|t| t.reason.clone()))
                })
                .unwrap_or_else(|| "not running".into());
            return (
                false,
                false,
                Some(format!("container {} is not running: {why}", c.name)),
            );
        }
    }
    let ready_cond = status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready");
    match ready_cond {
        Some(c) if c.status == "True" => (true, true, None),
        Some(c) => {
            let mut why = String::from("Ready is ");
            why.push_str(&c.status);
            if let Some(r) = &c.reason {
                why.push_str(&format!(" ({r})"));
            }
            if let Some(m) = c.message.as_deref().filter(|m| !m.is_empty()) {
                why.push_str(&format!(": {m}"));
            }
            (true, false, Some(why))
        }
        None => (true, false, Some("no Ready condition".into())),
    }
}

/// An [`OpenBao`] (and [`Ceremony`]) over discovered pods that forces every
/// untrusted pod (see [`Readiness`]) to `InitState::Unknown` and refuses to
/// snapshot from it. The one place the "not serving ⇒ unknown" rule lives.
///
/// Nodes are matched by name, so build the inner backend from
/// [`addresses`] of the same `nodes`.
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
            return Err(BaoError::Failed {
                node: n.name.clone(),
                detail: format!(
                    "pod not serving: {}",
                    n.reason.as_deref().unwrap_or("not ready")
                ),
            });
        }
        self.inner.snapshot(node, out, cancel).await
    }
}

/// Delegates every call: destructive steps are gated by the guard, which
/// sees untrusted pods as unknown through [`OpenBao::observe`].
#[async_trait]
impl<B: Ceremony> Ceremony for DiscoveredOpenBao<B> {
    async fn init(&self, node: usize, shares: u32, threshold: u32) -> Result<InitResult, BaoError> {
        self.inner.init(node, shares, threshold).await
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
    async fn restore_force(
        &self,
        node: usize,
        token: &Secret,
        file: &Path,
    ) -> Result<(), BaoError> {
        self.inner.restore_force(node, token, file).await
    }
    async fn read(
        &self,
        node: usize,
        token: &Secret,
        path: &str,
    ) -> Result<serde_json::Value, BaoError> {
        self.inner.read(node, token, path).await
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
        let failed = |detail: String| BaoError::Failed {
            node: old.name.clone(),
            detail,
        };
        let ns = &r.discovery.namespace;
        restart_pod(&r.client, ns, &old.name, self.readiness, r.timeout)
            .await
            .map_err(|e| failed(format!("restarting the pod: {e}")))?;
        let again = discover_nodes(&r.client, &r.discovery)
            .await
            .map_err(|e| failed(format!("finding the restarted pod: {e}")))?;
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

// ---------------------------------------------------------------------------
// 3. Secret key store

/// Unseal keys in one Kubernetes Secret: entries `<keyPrefix>0`,
/// `<keyPrefix>1`, … (any number of shares) and optionally the root token.
///
/// - `read` returns every `<keyPrefix>N` entry in ordinal order (values
///   trimmed, UTF-8); a missing Secret or one without key entries is
///   [`KeyStoreError::Empty`].
/// - `create` **creates** the Secret (POST, `immutable: true`); if a Secret
///   of that name exists in any form — even empty — the API answers 409 and
///   this is [`KeyStoreError::AlreadyExists`]. It never updates, patches or
///   replaces a Secret.
/// - `probe`: 404 → `Ok(false)`; key entries present → `Ok(true)`; a Secret
///   that exists but holds **no** key entries → `Err(Unavailable)`. Not
///   `Ok(false)`: "absent" lets a fresh init run, and init would then
///   create the barrier and fail to store its keys (the Secret exists), so
///   the keys would live only in this process's memory. Delete the empty
///   Secret (or put the keys in it) and rerun.
/// - any other failure (403, network) → [`KeyStoreError::Unavailable`] with
///   the RBAC hint.
///
/// RBAC: `get` on the named Secret; `create` on secrets for init.
///
/// Key material is held in [`Secret`]s and the decoded buffers are
/// zeroised; the HTTP response/request buffers inside kube/hyper are not
/// under snapward's control and are not zeroised.
#[derive(Clone)]
pub struct SecretKeyStore {
    api: Api<KubeSecret>,
    namespace: String,
    name: String,
    key_prefix: String,
    root_token_key: String,
}

impl std::fmt::Debug for SecretKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeyStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("key_prefix", &self.key_prefix)
            .field("root_token_key", &self.root_token_key)
            .finish()
    }
}

impl SecretKeyStore {
    /// The store for Secret `namespace/name` with the policy's entry names.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        key_prefix: &str,
        root_token_key: &str,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            key_prefix: key_prefix.to_string(),
            root_token_key: root_token_key.to_string(),
        }
    }

    fn op(&self, verb: &'static str) -> Op<'_> {
        Op {
            verb,
            resource: "secrets",
            namespace: &self.namespace,
            name: Some(&self.name),
        }
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> KeyStoreError {
        KeyStoreError::Unavailable {
            location: self.location(),
            detail: detail.to_string(),
        }
    }

    /// The Secret, or `None` on 404.
    async fn fetch(&self) -> Result<Option<KubeSecret>, KeyStoreError> {
        match self.api.get(&self.name).await {
            Ok(s) => Ok(Some(s)),
            // "Absent" may let a fresh init run: only the API server's own
            // NotFound for this Secret counts, never any 404.
            Err(e) if is_object_not_found(&e, &self.name) => Ok(None),
            Err(e) if status_code(&e) == Some(404) => Err(self.unavailable(format!(
                "a 404 that is not the API server's NotFound for this Secret (a proxy or a wrong API URL?): {}",
                self.op("get").err_with(e, true)
            ))),
            Err(e) => Err(self.unavailable(self.op("get").err_with(e, true))),
        }
    }

    /// `<keyPrefix>N` → N, for canonical decimals only.
    fn share_index(&self, entry: &str) -> Option<u32> {
        let n = entry.strip_prefix(&self.key_prefix)?;
        if n.is_empty()
            || !n.bytes().all(|b| b.is_ascii_digit())
            || (n.len() > 1 && n.starts_with('0'))
        {
            return None;
        }
        n.parse().ok()
    }

    fn decode(&self, entry: &str, raw: &[u8]) -> Result<Secret, KeyStoreError> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| self.unavailable(format!("entry `{entry}` is not UTF-8 text")))?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(self.unavailable(format!("entry `{entry}` is empty")));
        }
        Ok(Secret::new(trimmed))
    }

    async fn post(&self, keys: &StoredKeys, dry_run: bool) -> Result<(), KeyStoreError> {
        if keys.keys.is_empty() {
            return Err(self.unavailable("no key shares to store"));
        }
        let mut data = BTreeMap::new();
        for (i, k) in keys.keys.iter().enumerate() {
            data.insert(
                format!("{}{i}", self.key_prefix),
                ByteString(k.expose().as_bytes().to_vec()),
            );
        }
        if let Some(t) = &keys.root_token {
            data.insert(
                self.root_token_key.clone(),
                ByteString(t.expose().as_bytes().to_vec()),
            );
        }
        let mut secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    CONTROLLER.to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    "snapward.dev/note".to_string(),
                    "Created once by snapward at init; never updated. Deleting it loses the unseal keys.".to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            immutable: Some(true),
            data: Some(data),
            ..KubeSecret::default()
        };
        let pp = PostParams {
            dry_run,
            field_manager: Some(CONTROLLER.into()),
        };
        let res = self.api.create(&pp, &secret).await;
        // Zeroise our copies of the values (kube's serialised body is not ours).
        if let Some(d) = secret.data.as_mut() {
            for v in d.values_mut() {
                zeroize::Zeroize::zeroize(&mut v.0);
            }
        }
        match res {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Err(KeyStoreError::AlreadyExists {
                location: self.location(),
            }),
            Err(e) => Err(self.unavailable(self.op("create").err_with(e, true))),
        }
    }
}

#[async_trait]
impl KeyStore for SecretKeyStore {
    fn location(&self) -> String {
        format!("secret {}/{}", self.namespace, self.name)
    }

    async fn probe(&self) -> Result<bool, KeyStoreError> {
        let Some(s) = self.fetch().await? else {
            return Ok(false);
        };
        let has_share = s
            .data
            .iter()
            .flatten()
            .any(|(k, _)| self.share_index(k).is_some());
        if has_share {
            return Ok(true);
        }
        Err(self.unavailable(format!(
            "the Secret exists but holds no `{}N` entries; snapward creates this Secret itself at init and never writes into an existing one: delete the empty Secret (or put the keys into it) and rerun",
            self.key_prefix
        )))
    }

    async fn read(&self) -> Result<StoredKeys, KeyStoreError> {
        let Some(s) = self.fetch().await? else {
            return Err(KeyStoreError::Empty {
                location: self.location(),
            });
        };
        // Own every value in a zeroising buffer first, so an early return
        // below still wipes them all.
        let entries: Vec<(String, Zeroizing<Vec<u8>>)> = s
            .data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, Zeroizing::new(v.0)))
            .collect();
        let mut shares: Vec<(u32, Secret)> = Vec::new();
        let mut root_token = None;
        for (entry, value) in &entries {
            if let Some(i) = self.share_index(entry) {
                shares.push((i, self.decode(entry, value)?));
            } else if *entry == self.root_token_key {
                root_token = Some(self.decode(entry, value)?);
            }
        }
        if shares.is_empty() {
            return Err(KeyStoreError::Empty {
                location: self.location(),
            });
        }
        shares.sort_by_key(|(i, _)| *i);
        let expected = shares.len() as u32;
        if shares.last().map(|(i, _)| *i + 1) != Some(expected) {
            tracing::warn!(
                location = %self.location(),
                shares = shares.len(),
                "the key Secret's share numbers have gaps; using the shares present"
            );
        }
        Ok(StoredKeys {
            keys: shares.into_iter().map(|(_, k)| k).collect(),
            root_token,
        })
    }

    async fn create(&self, keys: &StoredKeys) -> Result<(), KeyStoreError> {
        self.post(keys, false).await
    }

    /// Server-side dry run of `create` (`?dryRun=All`): proves, before a
    /// fresh init creates a barrier, that the Secret does not exist yet and
    /// that RBAC allows creating it. Nothing is stored.
    ///
    /// Errors: [`KeyStoreError::AlreadyExists`] on 409, `Unavailable` else.
    async fn check_create(&self) -> Result<(), KeyStoreError> {
        let probe = StoredKeys {
            keys: vec![Secret::new("dry-run")],
            root_token: None,
        };
        self.post(&probe, true).await
    }
}

// ---------------------------------------------------------------------------
// 4. Lease (single flight)

/// One run at a time per policy, through a `coordination.k8s.io/v1` Lease.
/// RBAC: `get`, `create`, `update` on `leases`.
pub struct LeaseLock;

impl LeaseLock {
    /// Takes the Lease `namespace/name` for `holder` for `duration`:
    /// creates it if absent; takes it over if it is free (no holder), held
    /// by `holder` itself, or expired (`renewTime + leaseDurationSeconds`
    /// in the past) — with a replace that carries the observed
    /// `resourceVersion`. `Ok(None)` means busy: another holder's lease is
    /// live, or another writer won a race (409). Nothing else is touched.
    ///
    /// The guard renews every `duration / 3` until released or dropped.
    ///
    /// Errors: any API failure other than 409 (403 names the RBAC verb).
    pub async fn acquire(
        client: &Client,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
    ) -> Result<Option<LeaseGuard>, KubeError> {
        let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
        let op = |verb| Op {
            verb,
            resource: "leases.coordination.k8s.io",
            namespace,
            name: Some(name),
        };
        let seconds = lease_seconds(duration);
        let now = jiff::Timestamp::now();
        let existing = match api.get(name).await {
            Ok(l) => Some(l),
            Err(e) if status_code(&e) == Some(404) => None,
            Err(e) => return Err(op("get").err(e)),
        };
        let written = match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(namespace.to_string()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_string(),
                            CONTROLLER.to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(holder.to_string()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(l) => l,
                    Err(e) if status_code(&e) == Some(409) => return Ok(None),
                    Err(e) => return Err(op("create").err(e)),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                let current = spec.holder_identity.clone().unwrap_or_default();
                if !current.is_empty() && current != holder && !expired(spec, now) {
                    tracing::info!(lease = %name, holder = %current, "the run lease is held by another run");
                    return Ok(None);
                }
                if current != holder {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.holder_identity = Some(holder.to_string());
                spec.lease_duration_seconds = Some(seconds);
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                match api.replace(name, &PostParams::default(), &lease).await {
                    Ok(l) => l,
                    Err(e) if status_code(&e) == Some(409) => return Ok(None),
                    Err(e) => return Err(op("update").err(e)),
                }
            }
        };
        Ok(Some(LeaseGuard::start(
            api, namespace, name, holder, duration, written,
        )))
    }
}

/// A Lease holder identity unique per process: `POD_NAME` (downward API;
/// unique per Job pod), else `$HOSTNAME-<pid>`, else `snapward-<pid>`.
/// `env` looks a variable up (pass `|k| std::env::var(k).ok()`).
pub fn holder_identity(env: impl Fn(&str) -> Option<String>) -> String {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(pod) = nonempty("POD_NAME") {
        return pod;
    }
    let pid = std::process::id();
    match nonempty("HOSTNAME") {
        Some(h) => format!("{h}-{pid}"),
        None => format!("{CONTROLLER}-{pid}"),
    }
}

fn lease_seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s.max(1)).unwrap_or(i32::MAX)
}

fn expired(spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
    let Some(last) = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0)
    else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0));
    match last.checked_add(jiff::SignedDuration::from_secs(secs)) {
        Ok(until) => until <= now,
        Err(_) => false,
    }
}

/// A held Lease. Renewed in the background every `duration / 3` with the
/// last written `resourceVersion`; a 409 whose re-read shows another holder,
/// a deleted Lease, or no successful renewal for a whole `duration` marks it
/// lost ([`LeaseGuard::lost`], [`LeaseGuard::lost_token`]) and stops
/// renewing. [`LeaseGuard::release`] clears the holder; dropping the guard
/// only stops renewing (the Lease then expires by itself).
pub struct LeaseGuard {
    api: Api<Lease>,
    namespace: String,
    name: String,
    holder: String,
    current: Arc<Mutex<Lease>>,
    lost: CancellationToken,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    fn start(
        api: Api<Lease>,
        namespace: &str,
        name: &str,
        holder: &str,
        duration: Duration,
        written: Lease,
    ) -> Self {
        let current = Arc::new(Mutex::new(written));
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(renew_loop(
            api.clone(),
            name.to_string(),
            holder.to_string(),
            duration,
            current.clone(),
            lost.clone(),
            stop.clone(),
        ));
        Self {
            api,
            namespace: namespace.to_string(),
            name: name.to_string(),
            holder: holder.to_string(),
            current,
            lost,
            stop,
            task: Some(task),
        }
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This run's holder identity.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// `true` once another holder took the Lease or renewing failed for a
    /// whole lease duration. The run should then stop destructive work.
    pub fn lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Cancelled when the Lease is lost (link it to the run's cancellation).
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops renewing and clears the holder (a replace with the last
    /// `resourceVersion`), so the next run need not wait for expiry. A Lease
    /// already taken by someone else is left alone.
    ///
    /// Errors: API failures other than 404/409 (the Lease then expires by
    /// itself).
    pub async fn release(mut self) -> Result<(), KubeError> {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        if self.lost() {
            return Ok(());
        }
        let op = Op {
            verb: "update",
            resource: "leases.coordination.k8s.io",
            namespace: &self.namespace,
            name: Some(&self.name),
        };
        let mut lease = self
            .current
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        for _ in 0..2 {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if status_code(&e) == Some(404) => return Ok(()),
                Err(e) if status_code(&e) == Some(409) => {
                    lease = match self.api.get(&self.name).await {
                        Ok(l) => l,
                        Err(e) if status_code(&e) == Some(404) => return Ok(()),
                        Err(e) => return Err(op.err(e)),
                    };
                }
                Err(e) => return Err(op.err(e)),
            }
        }
        Ok(())
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn renew_loop(
    api: Api<Lease>,
    name: String,
    holder: String,
    duration: Duration,
    current: Arc<Mutex<Lease>>,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let every = (duration / 3).max(Duration::from_millis(50));
    let mut last_ok = tokio::time::Instant::now();
    let set = |l: Lease| match current.lock() {
        Ok(mut c) => *c = l,
        Err(p) => *p.into_inner() = l,
    };
    let get = || match current.lock() {
        Ok(c) => c.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let lose = |why: &str| {
        tracing::warn!(lease = %name, "the run lease was lost: {why}");
        lost.cancel();
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let mut lease = get();
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        let pp = PostParams::default();
        let res = tokio::select! {
            _ = stop.cancelled() => return,
            r = api.replace(&name, &pp, &lease) => r,
        };
        match res {
            Ok(l) => {
                set(l);
                last_ok = tokio::time::Instant::now();
                continue;
            }
            Err(e) if status_code(&e) == Some(404) => return lose("the Lease was deleted"),
            Err(e) if status_code(&e) == Some(409) => {
                // Someone wrote first — or our own last write landed but its
                // answer was lost. Re-read and decide.
                match api.get(&name).await {
                    Ok(l)
                        if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                            == Some(holder.as_str()) =>
                    {
                        set(l);
                        continue;
                    }
                    Ok(l) => {
                        let other = l
                            .spec
                            .and_then(|s| s.holder_identity)
                            .unwrap_or_else(|| "nobody".into());
                        return lose(&format!("it is now held by {other}"));
                    }
                    Err(e) if status_code(&e) == Some(404) => {
                        return lose("the Lease was deleted");
                    }
                    Err(e) => {
                        tracing::warn!(lease = %name, error = %e, "cannot re-read the run lease")
                    }
                }
            }
            Err(e) => tracing::warn!(lease = %name, error = %e, "cannot renew the run lease"),
        }
        if last_ok.elapsed() >= duration {
            return lose("no renewal succeeded for a whole lease duration");
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Events

/// An Event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Something went as planned (snapshot taken, uploaded, pruned, restored).
    Normal,
    /// Something a human should look at (target skipped, guard refused,
    /// restore failed).
    Warning,
}

/// The object Events are attached to: the Job's pod when `POD_NAME` and
/// `POD_NAMESPACE` are set (downward API; `POD_UID` too if set), else the
/// policy ConfigMap `(namespace, name)` if known. `env` looks a variable up
/// (pass `|k| std::env::var(k).ok()`).
pub fn event_target(
    env: impl Fn(&str) -> Option<String>,
    policy_configmap: Option<(&str, &str)>,
) -> Option<ObjectReference> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(name), Some(namespace)) = (nonempty("POD_NAME"), nonempty("POD_NAMESPACE")) {
        return Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name),
            namespace: Some(namespace),
            uid: nonempty("POD_UID"),
            ..ObjectReference::default()
        });
    }
    policy_configmap.map(|(namespace, name)| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectReference::default()
    })
}

/// Writes Kubernetes Events (`events.k8s.io/v1`) about one object through
/// `kube::runtime::events::Recorder`. Emitting never fails a run: errors
/// are logged and dropped. Notes must never contain secrets — pass only
/// names, sizes, counts and reasons. RBAC: `create` on
/// `events.events.k8s.io`.
#[derive(Clone)]
pub struct EventSink {
    client: Client,
    reporter: Reporter,
    regarding: ObjectReference,
}

impl EventSink {
    /// Events about `regarding` (see [`event_target`]), reported by
    /// `snapward` from `instance` (the pod name, if known).
    pub fn new(client: Client, regarding: ObjectReference, instance: Option<String>) -> Self {
        Self {
            client,
            reporter: Reporter {
                controller: CONTROLLER.into(),
                instance,
            },
            regarding,
        }
    }

    /// The object the Events are about.
    pub fn regarding(&self) -> &ObjectReference {
        &self.regarding
    }

    /// Emits one Event. `reason` is a short PascalCase word
    /// (`SnapshotTaken`, `TargetSkipped`, `GuardRefused`), also used as the
    /// Event's action; `note` is human text (cut to 1 kB). Failures are
    /// logged, never returned.
    pub async fn emit(&self, kind: EventKind, reason: &str, note: &str) {
        let event = RecorderEvent {
            type_: match kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: truncate(reason, 128).to_string(),
            note: Some(truncate(note, 1024).to_string()),
            action: truncate(reason, 128).to_string(),
            secondary: None,
        };
        // A fresh Recorder: see the module docs (no series folding).
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        match tokio::time::timeout(EVENT_TIMEOUT, recorder.publish(&event, &self.regarding)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let ns = self.regarding.namespace.as_deref().unwrap_or("default");
                let err = Op {
                    verb: "create",
                    resource: "events.events.k8s.io",
                    namespace: ns,
                    name: None,
                }
                .err(e);
                tracing::warn!(reason, error = %err, "cannot write a Kubernetes Event");
            }
            Err(_) => tracing::warn!(reason, "writing a Kubernetes Event timed out"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------
// 6. Pod restart

/// Restarts pod `namespace/pod_name` (DESIGN.md §6: after a restore whose
/// temporary barrier had another shape, the server process must restart):
/// reads its uid, deletes it with that uid as a precondition (so a pod that
/// was already replaced is not deleted again), and waits until a pod with
/// that name and a **new** uid satisfies `readiness`. Use
/// [`Readiness::Running`] when the readiness probe fails while sealed (the
/// Helm chart's default): a restarted server comes back sealed.
///
/// Refuses a pod not owned by a StatefulSet (nothing would recreate it).
/// RBAC: `get` and `delete` on `pods`.
///
/// Errors: the pod is missing, not StatefulSet-owned, an API call failed,
/// or [`KubeError::Timeout`].
pub async fn restart_pod(
    client: &Client,
    namespace: &str,
    pod_name: &str,
    readiness: Readiness,
    timeout: Duration,
) -> Result<(), KubeError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let op = |verb| Op {
        verb,
        resource: "pods",
        namespace,
        name: Some(pod_name),
    };
    let old = pods.get(pod_name).await.map_err(|e| op("get").err(e))?;
    let owned = old
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "StatefulSet");
    if !owned {
        return Err(KubeError::Invalid {
            what: format!("restarting pod {namespace}/{pod_name}"),
            detail: "the pod is not owned by a StatefulSet: deleting it would not bring it back"
                .into(),
        });
    }
    let Some(old_uid) = old.metadata.uid.clone() else {
        return Err(KubeError::Invalid {
            what: format!("restarting pod {namespace}/{pod_name}"),
            detail: "the pod has no uid".into(),
        });
    };
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(old_uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(pod_name, &dp).await {
        Ok(_) => {}
        // Gone already, or already replaced (uid precondition failed).
        Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
        Err(e) => return Err(op("delete").err(e)),
    }
    tracing::info!(pod = %pod_name, namespace, "pod deleted; waiting for the StatefulSet to recreate it");
    let wait = async {
        loop {
            tokio::time::sleep(RESTART_POLL).await;
            match pods.get_opt(pod_name).await {
                Ok(Some(p)) if p.metadata.uid.as_deref() != Some(old_uid.as_str()) => {
                    let (running, ready, _) = classify(&p);
                    let ok = match readiness {
                        Readiness::Ready => ready,
                        Readiness::Running => running,
                    };
                    if ok {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) if status_code(&e) == Some(403) => return Err(op("get").err(e)),
                Err(e) => tracing::debug!(error = %e, "polling the restarted pod"),
            }
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => Err(KubeError::Timeout {
            what: format!(
                "pod {namespace}/{pod_name} to come back with a new uid and {}",
                match readiness {
                    Readiness::Ready => "Ready",
                    Readiness::Running => "running",
                }
            ),
            seconds: timeout.as_secs(),
        }),
    }
}

// ---------------------------------------------------------------------------
// 7. Policy from a ConfigMap

/// A parsed `NAMESPACE/NAME[:KEY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapRef {
    /// The ConfigMap's namespace.
    pub namespace: String,
    /// The ConfigMap's name.
    pub name: String,
    /// The data key holding the policy; `None`: the only `*.yaml`/`*.yml` key.
    pub key: Option<String>,
}

impl std::str::FromStr for ConfigMapRef {
    type Err = KubeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |detail: &str| KubeError::Invalid {
            what: format!("policy ConfigMap `{s}`"),
            detail: format!("{detail}; expected NAMESPACE/NAME[:KEY]"),
        };
        let (namespace, rest) = s.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let (name, key) = match rest.split_once(':') {
            Some((n, k)) => (n, Some(k)),
            None => (rest, None),
        };
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return Err(bad("empty or malformed namespace or name"));
        }
        if key.is_some_and(str::is_empty) {
            return Err(bad("empty key after `:`"));
        }
        Ok(Self {
            namespace: namespace.into(),
            name: name.into(),
            key: key.map(String::from),
        })
    }
}

/// Reads a policy from ConfigMap `NAMESPACE/NAME[:KEY]` through the API.
/// Without KEY the ConfigMap must have exactly one `data` entry ending in
/// `.yaml` or `.yml`. Returns `(origin, text)`; the origin
/// (`configmap NAMESPACE/NAME:KEY`) names the source in diagnostics.
/// RBAC: `get` on that ConfigMap.
///
/// Errors: malformed reference, 404/403/other API failures, the key is
/// missing, or no/several YAML keys without KEY.
pub async fn read_policy_configmap(
    client: &Client,
    reference: &str,
) -> Result<(String, String), KubeError> {
    let r: ConfigMapRef = reference.parse()?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &r.namespace);
    let cm = api.get(&r.name).await.map_err(|e| {
        Op {
            verb: "get",
            resource: "configmaps",
            namespace: &r.namespace,
            name: Some(&r.name),
        }
        .err(e)
    })?;
    let mut data = cm.data.unwrap_or_default();
    let what = || format!("policy ConfigMap {}/{}", r.namespace, r.name);
    let listing = if data.is_empty() {
        "it has no data".to_string()
    } else {
        format!(
            "keys: {}",
            data.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    let keys = || listing.clone();
    let key = match &r.key {
        Some(k) => k.clone(),
        None => {
            let yaml: Vec<&String> = data
                .keys()
                .filter(|k| k.ends_with(".yaml") || k.ends_with(".yml"))
                .collect();
            match yaml.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(KubeError::Invalid {
                        what: what(),
                        detail: format!(
                            "no data key ends in .yaml or .yml ({}); name the key: NAMESPACE/NAME:KEY",
                            keys()
                        ),
                    });
                }
                _ => {
                    return Err(KubeError::Invalid {
                        what: what(),
                        detail: format!(
                            "several YAML keys ({}); name one: NAMESPACE/NAME:KEY",
                            keys()
                        ),
                    });
                }
            }
        }
    };
    let Some(text) = data.remove(&key) else {
        return Err(KubeError::Invalid {
            what: what(),
            detail: format!("no data key `{key}` ({})", keys()),
        });
    };
    Ok((format!("configmap {}/{}:{key}", r.namespace, r.name), text))
}

#[async_trait]
impl super::Notifier for EventSink {
    async fn notify(&self, severity: super::Severity, reason: &str, note: &str) {
        let kind = match severity {
            super::Severity::Normal => EventKind::Normal,
            super::Severity::Warning => EventKind::Warning,
        };
        self.emit(kind, reason, note).await;
    }
}
