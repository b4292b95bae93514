//! Azure Blob Storage target: a container + prefix of a storage account
//! (public cloud, a sovereign cloud or Azurite through `endpoint`), on
//! Apache Arrow's `object_store`. Stage: execute (backend). The contract
//! (create-only, metadata identity, read-back, retention, immutability,
//! cleanup) is [`CloudTarget`]'s; this file holds what is Azure's own:
//! credentials, the client, and the metadata names.
//!
//! Credentials: an account key file, a SAS token file, or — when the policy
//! names neither — the standard Azure chain: workload identity
//! (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, as
//! AKS injects them) else the managed identity (IMDS). The chain is probed
//! when the target is built; nothing found within 20 s ⇒
//! [`TargetError::CredentialsAbsent`] (an `optional` target is skipped).
//!
//! Metadata names are C# identifiers on real Azure (`x-ms-meta-<name>`:
//! letters, digits, `_`): `snapward-sha256` is refused there (Azurite
//! does not check), so every name uses `_` ([`META`]).
//!
//! Deletes go through object_store's blob batch (one blob per batch),
//! except with a SAS token, which may not authorise a batch: then a plain
//! `DELETE` per blob (`sas_delete.rs`).
//!
//! Must never: format or log the account key or SAS token (they are kept
//! only in the client and in the [`Scrubber`]).

mod sas_delete;

use std::sync::Arc;
use std::time::Duration;

use object_store::azure::{MicrosoftAzureBuilder, split_sas};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use secrecy::{ExposeSecret, SecretString};

use super::TargetError;
use super::cloud::{CloudParts, CloudTarget, MetaNames, Scrubber};
use crate::policy::model;

/// The identity's metadata names (C# identifiers: `_`, never `-`).
pub const META: MetaNames = MetaNames {
    sha256: "snapward_sha256",
    index: "snapward_raft_index",
    term: "snapward_raft_term",
    cluster_id: "snapward_cluster_id",
    tag: "snapward_tag",
};

/// How long the standard chain may take to yield a token at start.
const CHAIN_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Retries per request after the first attempt (connection errors, 5xx, 429).
const MAX_RETRIES: usize = 4;

const REFUSED_HINT: &str = "check the account key or SAS token (read, write, list and delete permission on the container, not expired) or the identity's role (Storage Blob Data Contributor)";

/// Reads one credential file, trimmed. Absent or empty ⇒ `CredentialsAbsent`.
async fn read_secret(target: &str, field: &str, path: &str) -> Result<SecretString, TargetError> {
    let absent = |why: &str| TargetError::CredentialsAbsent {
        target: target.to_owned(),
        detail: format!("{field} `{path}` {why}"),
    };
    let raw = match tokio::fs::read_to_string(path).await {
        Ok(s) => SecretString::from(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(absent("does not exist")),
        Err(source) => {
            return Err(TargetError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let trimmed = raw.expose_secret().trim().trim_start_matches('?');
    if trimmed.is_empty() {
        return Err(absent("is empty"));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// Builds the target for one policy target (`snapshot_prefix`: the file
/// name prefix of snapshots).
pub async fn target(
    name: &str,
    cfg: &model::AzureTarget,
    snapshot_prefix: &str,
) -> Result<CloudTarget, TargetError> {
    let failed = |detail: String| TargetError::Failed {
        target: name.to_owned(),
        detail,
        source: None,
    };
    let http = cfg
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300))
        .with_allow_http(http);
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: Duration::from_secs(180),
    };
    let chain = cfg.credentials.is_none();
    let mut b = if chain {
        MicrosoftAzureBuilder::from_env()
    } else {
        MicrosoftAzureBuilder::new()
    };
    b = b
        .with_account(&cfg.account)
        .with_container_name(&cfg.container)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(ep) = &cfg.endpoint {
        b = b.with_endpoint(ep.trim_end_matches('/').to_owned());
    }
    let mut secrets = Vec::new();
    let mut sas_token = None;
    if let Some(c) = &cfg.credentials {
        if let Some(p) = &c.account_key_file {
            let key = read_secret(name, "accountKeyFile", p).await?;
            b = b.with_access_key(key.expose_secret());
            secrets.push(key);
        } else if let Some(p) = &c.sas_token_file {
            let sas = read_secret(name, "sasTokenFile", p).await?;
            let pairs = split_sas(sas.expose_secret()).map_err(|_| {
                failed(format!(
                    "sasTokenFile `{p}` does not hold a SAS token (`sv=...&sig=...`)"
                ))
            })?;
            for (k, v) in &pairs {
                if k == "sig" {
                    secrets.push(SecretString::from(v.clone()));
                }
            }
            b = b.with_sas_authorization(pairs);
            sas_token = Some(SecretString::from(sas.expose_secret().to_owned()));
            secrets.push(sas);
        }
    }
    let scrub = Scrubber::new(secrets);
    let store = b.build().map_err(|e| {
        failed(format!(
            "cannot set up the Azure client: {}",
            scrub.scrub(&super::chain(&e))
        ))
    })?;
    if chain {
        let probe =
            tokio::time::timeout(CHAIN_PROBE_TIMEOUT, store.credentials().get_credential()).await;
        let why = match probe {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(scrub.scrub(&super::chain(&e))),
            Err(_) => Some(format!(
                "no answer within {}s",
                CHAIN_PROBE_TIMEOUT.as_secs()
            )),
        };
        if let Some(why) = why {
            return Err(TargetError::CredentialsAbsent {
                target: name.to_owned(),
                detail: format!(
                    "no credentials in the policy and the Azure chain (workload identity, managed identity) found none: {why}"
                ),
            });
        }
    }
    let account_url = match &cfg.endpoint {
        Some(ep) => ep.trim_end_matches('/').to_owned(),
        None => format!("https://{}.blob.core.windows.net", cfg.account),
    };
    let location = format!("{account_url}/{}", cfg.container);
    let one_delete = match sas_token {
        None => None,
        Some(sas) => {
            let http = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(300))
                .build()
                .map_err(|e| failed(format!("cannot set up the HTTP client: {e}")))?;
            Some(Arc::new(sas_delete::SasDelete {
                http,
                container_url: location.clone(),
                sas,
            }) as Arc<dyn super::cloud::OneDelete>)
        }
    };
    Ok(CloudTarget::new(CloudParts {
        name: name.to_owned(),
        kind: "Azure Blob",
        refused_hint: REFUSED_HINT,
        store: Arc::new(store),
        prefix: cfg.prefix.clone(),
        snapshot_prefix: snapshot_prefix.to_owned(),
        meta: META,
        scrub,
        location,
        one_delete,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real Azure accepts only C# identifiers as metadata names (Azurite
    /// does not check): a `-` would make every upload fail there.
    #[test]
    fn metadata_names_are_csharp_identifiers() {
        for n in [
            META.sha256,
            META.index,
            META.term,
            META.cluster_id,
            META.tag,
        ] {
            let mut chars = n.chars();
            assert!(
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
                "{n}"
            );
            assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{n}");
        }
    }
}
