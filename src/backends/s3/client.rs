//! Building the SDK client of one target: credentials from files (or the
//! standard AWS chain, probed now), region, endpoint, path style, the
//! retry strategy and the timeouts, and our own SHA-256 checksums instead
//! of the SDK's.
//!
//! Must never: format or log a credential (the secrets go to the SDK's
//! `Credentials`, whose Debug redacts, and into [`CredentialSource`] only
//! to scrub server messages).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{
    Credentials, ProvideCredentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use secrecy::{ExposeSecret, SecretString};

use super::error::Context;
use super::{
    DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, DEFAULT_PARTS_IN_FLIGHT, MAX_ATTEMPTS, S3Target,
};
use crate::backends::{TargetError, chain};
use crate::policy::valid::S3Settings;

/// How long the standard AWS chain may take to find credentials at start.
const CHAIN_PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the credentials come from; the secrets themselves are kept only to
/// scrub them out of server messages.
pub(super) enum CredentialSource {
    Files {
        access_key_id: SecretString,
        secret_access_key: SecretString,
        session_token: Option<SecretString>,
    },
    Chain,
}

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
    let trimmed = raw.expose_secret().trim();
    if trimmed.is_empty() {
        return Err(absent("is empty"));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

impl S3Target {
    /// Builds the client for one policy target. Credential files are read
    /// now (absent or empty ⇒ [`TargetError::CredentialsAbsent`]); without
    /// `credentials` the standard AWS chain (environment, shared config,
    /// web identity/IRSA, container/instance metadata) must yield
    /// credentials within 20 s, else `CredentialsAbsent` as well.
    /// `cfg` is the validated target (timeouts parsed and defaulted).
    pub async fn new(
        name: &str,
        cfg: &S3Settings,
        snapshot_prefix: &str,
    ) -> Result<Self, TargetError> {
        let credentials = match &cfg.credentials {
            Some(c) => {
                let access_key_id =
                    read_secret(name, "accessKeyIdFile", &c.access_key_id_file).await?;
                let secret_access_key =
                    read_secret(name, "secretAccessKeyFile", &c.secret_access_key_file).await?;
                let session_token = match &c.session_token_file {
                    Some(p) => Some(read_secret(name, "sessionTokenFile", p).await?),
                    None => None,
                };
                CredentialSource::Files {
                    access_key_id,
                    secret_access_key,
                    session_token,
                }
            }
            None => CredentialSource::Chain,
        };
        let retry = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(10));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(cfg.timeouts.connect)
            .operation_attempt_timeout(cfg.timeouts.request)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let CredentialSource::Files {
            access_key_id,
            secret_access_key,
            session_token,
        } = &credentials
        {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id.expose_secret(),
                secret_access_key.expose_secret(),
                session_token.as_ref().map(|t| t.expose_secret().to_owned()),
                None,
                "snapward-credential-files",
            ));
        }
        let sdk = loader.load().await;
        if matches!(credentials, CredentialSource::Chain) {
            probe_chain(name, &sdk).await?;
        }
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.path_style)
            // We send our own SHA-256 headers; no SDK-chosen CRC headers or
            // aws-chunked trailers, which moto/s3s-fs/older stores reject.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", cfg.region));
        Ok(Self {
            ctx: Arc::new(Context {
                target: name.to_owned(),
                bucket: cfg.bucket.clone(),
                endpoint,
                credentials,
            }),
            client: Client::from_conf(s3),
            prefix: cfg.prefix.clone(),
            snapshot_prefix: snapshot_prefix.to_owned(),
            sse: cfg.server_side_encryption.clone(),
            object_lock: cfg.object_lock.clone(),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            progress: None,
            streaming: cfg.stream,
        })
    }
}

/// The standard chain must produce credentials now, or the target counts
/// as having none (an `optional` target is then skipped).
async fn probe_chain(name: &str, sdk: &aws_config::SdkConfig) -> Result<(), TargetError> {
    let absent = |detail: String| TargetError::CredentialsAbsent {
        target: name.to_owned(),
        detail,
    };
    let Some(provider) = sdk.credentials_provider() else {
        return Err(absent(
            "the standard AWS chain has no credentials provider".to_owned(),
        ));
    };
    match tokio::time::timeout(CHAIN_PROBE_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(absent(format!(
            "the standard AWS chain (environment, shared config, web identity, container or \
             instance metadata) found none: {}",
            chain(&e)
        ))),
        Err(_) => Err(absent(format!(
            "the standard AWS chain found none within {}s",
            CHAIN_PROBE_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model;

    #[test]
    fn debug_shows_no_credentials() {
        let cfg = model::S3Target {
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            region: "us-east-1".to_owned(),
            bucket: "snaps".to_owned(),
            prefix: String::new(),
            path_style: true,
            credentials: None,
            server_side_encryption: None,
            object_lock: None,
            timeouts: None,
            stream: true,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (ak, sk) = (dir.path().join("ak"), dir.path().join("sk"));
        std::fs::write(&ak, "AKIDEXAMPLE\n").expect("write");
        std::fs::write(&sk, "s3cr3t/value\n").expect("write");
        let cfg = model::S3Target {
            credentials: Some(model::S3Credentials {
                access_key_id_file: ak.display().to_string(),
                secret_access_key_file: sk.display().to_string(),
                session_token_file: None,
            }),
            ..cfg
        };
        let cfg = S3Settings::try_from(&cfg).expect("valid settings");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let target = rt
            .block_on(S3Target::new("offsite", &cfg, "openbao-"))
            .expect("target");
        let debug = format!("{target:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("AKIDEXAMPLE"),
            "{debug}"
        );
        assert!(debug.contains("redacted"), "{debug}");
    }
}
