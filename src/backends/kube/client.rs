//! The Kubernetes API client: from an explicit kubeconfig, else kube's
//! standard inference (`$KUBECONFIG`, `~/.kube/config`, the in-cluster
//! service account), with a read timeout on every request.
//!
//! Must never: watch or stream (nothing here needs to; the read timeout
//! assumes it), or log the credentials a kubeconfig holds.

use std::path::Path;
use std::time::Duration;

use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};

use super::KubeError;

/// Read timeout of every API request (nothing here watches or streams).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

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
                detail: format!("kubeconfig {}", path.display()),
                source: Some(e.into()),
            })?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| KubeError::Config {
                    detail: format!("kubeconfig {}", path.display()),
                    source: Some(e.into()),
                })?
        }
        None => Config::infer().await.map_err(|e| KubeError::Config {
            detail:
                "neither a kubeconfig ($KUBECONFIG, ~/.kube/config) nor the in-cluster service account is usable"
                    .into(),
            source: Some(e.into()),
        })?,
    };
    if config.read_timeout.is_none() {
        config.read_timeout = Some(READ_TIMEOUT);
    }
    Client::try_from(config).map_err(|e| KubeError::Config {
        detail: String::new(),
        source: Some(e.into()),
    })
}
