//! Restarting one OpenBao pod through its StatefulSet (docs/openbao.md: the
//! server process must restart after a restore whose temporary barrier had
//! another shape) and waiting until the new pod runs.
//!
//! Must never: delete a pod that nothing recreates (not StatefulSet-owned),
//! or delete a pod that was already replaced (uid precondition).

use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, DeleteParams, Preconditions};
use k8s_openapi::api::core::v1::Pod;

use super::KubeError;
use super::discovery::{Readiness, classify};
use super::error::{Op, status_code};

/// How often [`restart_pod`] looks at the pod.
const RESTART_POLL: Duration = Duration::from_millis(500);

/// Restarts pod `namespace/pod_name` (docs/openbao.md: after a restore whose
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
