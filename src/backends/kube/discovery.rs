//! Finding the OpenBao pods: listed by label selector, ordered by
//! StatefulSet ordinal (gaps become not-ready placeholders), each with its
//! address and whether it is running / ready.
//!
//! Must never: let "node 0" shift to another ordinal, or call a pod ready
//! that is pending, terminating, crash-looping or has no IP.

use std::net::IpAddr;

use ::kube::Client;
use ::kube::api::{Api, ListParams};
use k8s_openapi::api::core::v1::Pod;
use url::Url;

use super::KubeError;
use super::error::Op;
use crate::backends::NodeStatus;
use crate::cluster::InitState;
use crate::policy::model::{KubernetesDiscovery, Scheme};

/// The label a StatefulSet puts on each pod with its ordinal (Kubernetes ≥ 1.28).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The label a StatefulSet puts on each pod with the pod's own name.
const STS_POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

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
/// do not use [`DiscoveredOpenBao`](super::DiscoveredOpenBao) must replace the observation of every
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
        seal: None,
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
        if let [a, b] = w
            && a.ordinal == b.ordinal
        {
            return Err(KubeError::Invalid {
                what: what(),
                detail: format!(
                    "{} and {} both have ordinal {}: the selector matches more than one StatefulSet; narrow it",
                    a.name,
                    b.name,
                    a.ordinal.unwrap_or_default()
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
pub(super) fn classify(pod: &Pod) -> (bool, bool, Option<String>) {
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
