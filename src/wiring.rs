//! The composition root: builds the real backends a policy names (OpenBao
//! nodes, listed or discovered; targets; the local store; the key store)
//! for `run`, `restore` and `list`. The only place that turns policy
//! settings into backend values.
//!
//! Stage: wiring (between commands and backends/exec). No decisions here.

use std::sync::Arc;

use crate::backends::dry_run::{DryRunCeremony, DryRunKeyStore, DryRunLocal, DryRunTarget};
use crate::backends::filesystem::FsTarget;
use crate::backends::gcs::GcsTarget;
use crate::backends::keys::{FileKeyStore, KeyStore, SecretKeyStore, UnavailableKeyStore};
use crate::backends::kube::{self as k8s, DiscoveredOpenBao, Readiness};
use crate::backends::local::{LocalStore, SnapshotStore};
use crate::backends::openbao::{HttpOpenBao, Timeouts};
use crate::backends::s3::S3Target;
use crate::backends::verify_cache::CacheUse;
use crate::backends::{Ceremony, OpenBao, Target, TargetError};
use crate::cli::PolicySource;
use crate::exec::actions::TargetSlot;
use crate::exit::Exit;
use crate::policy::model::PodTrust;
use crate::policy::{KeyLocation, Nodes, TargetKind, ValidPolicy};

/// The Kubernetes side of a run: a client and the namespace used when the
/// policy names none (its `metadata.namespace`, else the client's default:
/// the pod's own namespace in a Job, the kubeconfig context's on a laptop).
pub struct Kube {
    pub client: ::kube::Client,
    pub namespace: String,
}

pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Does this run need the Kubernetes API? (Discovery, a Secret key store,
/// a policy ConfigMap, an explicit kubeconfig.) In a pod (the service
/// account is mounted) the API is used anyway, for the Lease and Events.
pub fn wants_kube(p: &ValidPolicy, source: &PolicySource) -> (bool, bool) {
    let keys_in_secret = p
        .unseal_keys
        .as_ref()
        .is_some_and(|k| matches!(k.location, KeyLocation::KubernetesSecret { .. }));
    let needed = matches!(p.cluster.nodes, Nodes::Discovered(_))
        || keys_in_secret
        || source.policy_configmap.is_some()
        || source.kubeconfig.is_some();
    let in_cluster = env("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty());
    (needed, in_cluster)
}

/// The OpenBao backend: the policy's nodes, or the pods discovery finds
/// (wrapped so that a pod that is not serving is `unknown`).
pub async fn cluster(
    p: &ValidPolicy,
    kube: Option<&Kube>,
) -> Result<(Arc<dyn OpenBao>, Arc<dyn Ceremony>), (Exit, String)> {
    let timeouts = Timeouts {
        connect: p.cluster.timeouts.connect,
        request: p.cluster.timeouts.request,
        stream_idle: p.cluster.timeouts.stream_idle,
    };
    let cluster = &p.doc.spec.cluster;
    let d = match &p.cluster.nodes {
        Nodes::Listed(nodes) => {
            let list = nodes
                .iter()
                .map(|n| (n.name.clone(), n.address.clone()))
                .collect();
            let b = Arc::new(
                HttpOpenBao::new(list, cluster, timeouts)
                    .map_err(|e| (Exit::Retry, e.to_string()))?,
            );
            return Ok((b.clone(), b));
        }
        Nodes::Discovered(d) => d,
    };
    let Some(kube) = kube else {
        return Err((
            Exit::Usage,
            "spec.cluster.discovery needs the Kubernetes API".into(),
        ));
    };
    let found = k8s::discover_nodes(&kube.client, d)
        .await
        .map_err(|e| (Exit::Retry, format!("node discovery: {e}")))?;
    for n in &found {
        tracing::info!(pod = %n.name, address = %n.url, running = n.running, ready = n.ready, reason = n.reason.as_deref().unwrap_or(""), "discovered");
    }
    let http = HttpOpenBao::new(k8s::addresses(&found), cluster, timeouts)
        .map_err(|e| (Exit::Retry, e.to_string()))?;
    let readiness = match d.trust {
        PodTrust::Running => Readiness::Running,
        PodTrust::Ready => Readiness::Ready,
    };
    let mut b = DiscoveredOpenBao::new(http, found).with_readiness(readiness);
    if p.restore.restart_pod {
        b = b.with_restart(kube.client.clone(), d, p.restore.apply_timeout);
    }
    let b = Arc::new(b);
    Ok((b.clone(), b))
}

pub async fn build_targets(p: &ValidPolicy) -> Vec<TargetSlot> {
    build_targets_with(p, CacheUse::ReadWrite).await
}

/// [`build_targets`], filesystem targets using the verification cache as
/// `cache` says (see [`crate::backends::verify_cache`]).
pub async fn build_targets_with(p: &ValidPolicy, cache: CacheUse) -> Vec<TargetSlot> {
    let mut out = Vec::new();
    for t in &p.targets {
        let target: Result<Arc<dyn Target>, TargetError> = match &t.kind {
            TargetKind::S3(s3) => S3Target::new(&t.name, s3, &p.local.prefix)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Target>),
            TargetKind::Azure(az) => crate::backends::azure::target(&t.name, az, &p.local.prefix)
                .await
                .map(|s| Arc::new(s) as Arc<dyn Target>),
            TargetKind::Gcs(gcs) => GcsTarget::new(&t.name, gcs, &p.local.prefix)
                .await
                .map(|g| Arc::new(g) as Arc<dyn Target>),
            TargetKind::Filesystem(fs) => Ok(Arc::new(
                FsTarget::new(&t.name, fs, &p.local.prefix, p.local.file_mode).with_cache(cache),
            ) as Arc<dyn Target>),
        };
        out.push(TargetSlot {
            name: t.name.clone(),
            optional: t.optional,
            rules: t.rules.clone(),
            target,
        });
    }
    out
}

/// The local snapshot store (the PVC).
pub fn local_store(p: &ValidPolicy) -> LocalStore {
    LocalStore::new(&p.local.dir, &p.local.prefix, p.local.file_mode)
}

/// [`local_store`] using the verification cache as `cache` says.
pub fn local_store_with(p: &ValidPolicy, cache: CacheUse) -> LocalStore {
    local_store(p).with_cache(cache)
}

/// The key store a policy names, if any. A Kubernetes Secret needs `kube`
/// (a client and the namespace to use when the policy names none: the
/// policy's `metadata.namespace`, else the client's default namespace);
/// without one the store is unavailable, so the guard sees the keys as
/// unknown — never as absent.
pub fn key_store(
    p: &ValidPolicy,
    kube: Option<(&::kube::Client, &str)>,
) -> Option<Arc<dyn KeyStore>> {
    let k = p.unseal_keys.as_ref()?;
    Some(match (&k.location, kube) {
        (KeyLocation::Files { directory }, _) => Arc::new(FileKeyStore {
            dir: directory.clone(),
            key_prefix: k.key_prefix.clone(),
            root_token_key: k.root_token_key.clone(),
        }),
        (KeyLocation::KubernetesSecret { name, namespace }, Some((client, default_ns))) => {
            Arc::new(SecretKeyStore::new(
                client.clone(),
                namespace.as_deref().unwrap_or(default_ns),
                name,
                &k.key_prefix,
                &k.root_token_key,
            ))
        }
        (KeyLocation::KubernetesSecret { name, namespace }, None) => Arc::new(UnavailableKeyStore {
            location: format!(
                "secret {}/{name}",
                namespace.as_deref().unwrap_or("<policy namespace>"),
            ),
            reason: "no Kubernetes API client (run in a pod with a service account, or pass --kubeconfig)".into(),
        }),
    })
}

/// The backends a run writes through. In a dry run each is wrapped in its
/// dry-run decorator (`backends::dry_run`): reads pass, writes become
/// "would ..." answers, and new snapshots go to `scratch`.
pub struct Writers {
    pub targets: Vec<TargetSlot>,
    pub local: Arc<dyn SnapshotStore>,
    pub key_store: Option<Arc<dyn KeyStore>>,
    pub ceremony: Arc<dyn Ceremony>,
}

impl Writers {
    pub fn dry_run(self, scratch: &std::path::Path, node_names: Vec<String>) -> Self {
        Writers {
            targets: self
                .targets
                .into_iter()
                .map(|slot| TargetSlot {
                    target: slot
                        .target
                        .map(|inner| Arc::new(DryRunTarget { inner }) as Arc<dyn Target>),
                    ..slot
                })
                .collect(),
            local: Arc::new(DryRunLocal {
                inner: self.local,
                scratch: scratch.to_path_buf(),
            }),
            key_store: self
                .key_store
                .map(|inner| Arc::new(DryRunKeyStore { inner }) as Arc<dyn KeyStore>),
            ceremony: Arc::new(DryRunCeremony {
                inner: self.ceremony,
                node_names,
            }),
        }
    }
}
