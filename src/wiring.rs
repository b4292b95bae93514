//! The composition root: builds the real backends a policy names (OpenBao
//! nodes, listed or discovered; targets; the local store; the key store)
//! for `run`, `restore` and `list`. The only place that turns policy
//! settings into backend values.
//!
//! Stage: wiring (between commands and backends/exec). No decisions here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backends::filesystem::FsTarget;
use crate::backends::kube::{self as k8s, DiscoveredOpenBao, Readiness};
use crate::backends::local::LocalStore;
use crate::backends::openbao::{HttpOpenBao, Timeouts};
use crate::backends::s3::{S3Target, S3Timeouts};
use crate::backends::{Ceremony, OpenBao, Target, TargetError};
use crate::cli::PolicySource;
use crate::exec::runner::TargetSlot;
use crate::exit::Exit;
use crate::policy::ValidPolicy;
use crate::policy::model::{self, PodTrust};

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
        .doc
        .spec
        .unseal_keys
        .as_ref()
        .is_some_and(|k| k.files.is_none() && k.kubernetes_secret.is_some());
    let needed = p.doc.spec.cluster.discovery.is_some()
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
        connect: p.connect_timeout,
        request: p.request_timeout,
        stream_idle: p.stream_idle_timeout,
    };
    let cluster = &p.doc.spec.cluster;
    if let Some(nodes) = &cluster.nodes {
        let mut list = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let url = url::Url::parse(&n.address)
                .map_err(|e| (Exit::Usage, format!("spec.cluster.nodes[{i}]: {e}")))?;
            list.push((n.name.clone().unwrap_or_else(|| format!("node-{i}")), url));
        }
        let b = Arc::new(
            HttpOpenBao::new(list, cluster, timeouts).map_err(|e| (Exit::Retry, e.to_string()))?,
        );
        return Ok((b.clone(), b));
    }
    let Some(d) = &cluster.discovery else {
        return Err((
            Exit::Invalid,
            "spec.cluster names neither nodes nor discovery".into(),
        ));
    };
    let Some(kube) = kube else {
        return Err((
            Exit::Usage,
            "spec.cluster.discovery needs the Kubernetes API".into(),
        ));
    };
    let d = &d.kubernetes;
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
    if p.doc.spec.restore.restart_pod {
        b = b.with_restart(kube.client.clone(), d, p.apply_timeout);
    }
    let b = Arc::new(b);
    Ok((b.clone(), b))
}

pub async fn build_targets(p: &ValidPolicy) -> Vec<TargetSlot> {
    let mut out = Vec::new();
    for (t, rules) in p.doc.spec.targets.iter().zip(&p.target_rules) {
        let target: Result<Arc<dyn Target>, TargetError> = if let Some(s3) = &t.s3 {
            S3Target::new(&t.name, s3, &p.doc.spec.local.prefix, s3_timeouts(s3))
                .await
                .map(|s| Arc::new(s) as Arc<dyn Target>)
        } else if let Some(fs) = &t.filesystem {
            Ok(Arc::new(FsTarget::new(
                &t.name,
                fs,
                &p.doc.spec.local.prefix,
                p.file_mode,
            )) as Arc<dyn Target>)
        } else {
            Err(TargetError::Refused {
                target: t.name.clone(),
                detail: "no kind".into(),
                source: None,
            })
        };
        out.push(TargetSlot {
            name: t.name.clone(),
            optional: t.optional,
            rules: rules.clone(),
            target,
        });
    }
    out
}

/// The policy model's defaults of an S3 target's `timeouts` (`connect:
/// 10s`, `request: 5m`: `default_s3_connect` / `default_s3_request` in
/// `policy::model`), for a target without a `timeouts` block.
// TODO(policy-typed): the policy branch gives the model typed durations
// and defaults; this and the parsing in `s3_timeouts` go away.
const S3_CONNECT_DEFAULT: Duration = Duration::from_secs(10);
const S3_REQUEST_DEFAULT: Duration = Duration::from_secs(5 * 60);

/// An S3 target's timeouts as the backend takes them. Lint has validated
/// them (positive durations); a value that still does not parse falls back
/// to the default, loudly.
// TODO(policy-typed): parse once, in `policy::validate` (typed fields).
pub fn s3_timeouts(cfg: &model::S3Target) -> S3Timeouts {
    let parse = |field: &str, value: Option<&String>, default: Duration| {
        let Some(value) = value else {
            return default;
        };
        match crate::policy::validate::parse_timeout(value) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                tracing::warn!(
                    field,
                    value = %value,
                    default = ?default,
                    "an S3 timeout that lint should have refused; using the default"
                );
                default
            }
        }
    };
    let t = cfg.timeouts.as_ref();
    S3Timeouts {
        connect: parse("connect", t.map(|t| &t.connect), S3_CONNECT_DEFAULT),
        request: parse("request", t.map(|t| &t.request), S3_REQUEST_DEFAULT),
    }
}

/// The local snapshot store (the PVC).
pub fn local_store(p: &ValidPolicy) -> LocalStore {
    LocalStore::new(
        &p.doc.spec.local.path,
        &p.doc.spec.local.prefix,
        p.file_mode,
    )
}

/// The key store a policy names, if any. A Kubernetes Secret needs `kube`
/// (a client and the namespace to use when the policy names none: the
/// policy's `metadata.namespace`, else the client's default namespace);
/// without one the store is unavailable, so the guard sees the keys as
/// unknown — never as absent.
pub fn key_store(
    p: &crate::policy::ValidPolicy,
    kube: Option<(&::kube::Client, &str)>,
) -> Option<std::sync::Arc<dyn crate::backends::keys::KeyStore>> {
    let k = p.doc.spec.unseal_keys.as_ref()?;
    Some(match (&k.files, &k.kubernetes_secret, kube) {
        (Some(f), _, _) => std::sync::Arc::new(crate::backends::keys::FileKeyStore {
            dir: PathBuf::from(&f.directory),
            key_prefix: k.key_prefix.clone(),
            root_token_key: k.root_token_key.clone(),
        }),
        (None, Some(s), Some((client, default_ns))) => {
            std::sync::Arc::new(crate::backends::keys::SecretKeyStore::new(
                client.clone(),
                s.namespace.as_deref().unwrap_or(default_ns),
                &s.name,
                &k.key_prefix,
                &k.root_token_key,
            ))
        }
        (None, Some(s), None) => std::sync::Arc::new(crate::backends::keys::UnavailableKeyStore {
            location: format!(
                "secret {}/{}",
                s.namespace.as_deref().unwrap_or("<policy namespace>"),
                s.name
            ),
            reason: "no Kubernetes API client (run in a pod with a service account, or pass --kubeconfig)".into(),
        }),
        (None, None, _) => return None,
    })
}
