//! Credentials of one GCS target and the access tokens they give.
//!
//! Must never: format, log or put in an error a token or any part of a
//! service-account key (only the file's path and which field is wrong).

use std::sync::Arc;

use gcp_auth::{CustomServiceAccount, TokenProvider};
use secrecy::{ExposeSecret, SecretString};

use crate::backends::TargetError;
use crate::policy::valid::GcsSettings;

/// Read and write objects, nothing else.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

pub(super) enum Auth {
    /// An emulator (endpoint set, no credentials): no Authorization header.
    Anonymous,
    /// A service-account file, or the standard chain.
    Tokens {
        provider: Arc<dyn TokenProvider>,
        from: &'static str,
    },
}

impl Auth {
    pub(super) async fn new(target: &str, cfg: &GcsSettings) -> Result<Self, TargetError> {
        if let Some(c) = &cfg.credentials {
            let provider = service_account(target, &c.service_account_file).await?;
            return Ok(Auth::Tokens {
                provider: Arc::new(provider),
                from: "service-account file",
            });
        }
        if cfg.endpoint.is_some() {
            return Ok(Auth::Anonymous);
        }
        match gcp_auth::provider().await {
            Ok(provider) => Ok(Auth::Tokens {
                provider,
                from: "standard Google chain",
            }),
            Err(e) => Err(TargetError::CredentialsAbsent {
                target: target.to_owned(),
                detail: format!(
                    "no `credentials.serviceAccountFile` and the standard Google chain found none \
                     (GKE workload identity / metadata server, GOOGLE_APPLICATION_CREDENTIALS, \
                     gcloud application-default login): {e}"
                ),
            }),
        }
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            Auth::Anonymous => "none (emulator)",
            Auth::Tokens { from, .. } => from,
        }
    }

    /// A bearer token for the next request (cached and refreshed by the
    /// provider); `None` for an emulator.
    pub(super) async fn token(&self, target: &str) -> Result<Option<SecretString>, TargetError> {
        match self {
            Auth::Anonymous => Ok(None),
            Auth::Tokens { provider, from } => match provider.token(&[SCOPE]).await {
                Ok(t) => Ok(Some(SecretString::from(t.as_str().to_owned()))),
                Err(e) => Err(TargetError::refused(
                    target,
                    format!(
                        "could not get an access token from the {from} ({}): check that the service account exists, \
                         its key is not revoked, and the token endpoint is reachable",
                        token_error(&e)
                    ),
                )),
            },
        }
    }
}

/// A token error without anything a server or a key could have put in it:
/// its static description only.
fn token_error(e: &gcp_auth::Error) -> String {
    match e {
        gcp_auth::Error::NoAuthMethod(..) => "no available authentication method".into(),
        gcp_auth::Error::Http(what, _)
        | gcp_auth::Error::Io(what, _)
        | gcp_auth::Error::Json(what, _)
        | gcp_auth::Error::Other(what, _)
        | gcp_auth::Error::Str(what) => (*what).to_owned(),
    }
}

/// Reads and checks a service-account key file. The errors name the file
/// and the field, never a value from it.
async fn service_account(target: &str, path: &str) -> Result<CustomServiceAccount, TargetError> {
    let raw = match tokio::fs::read_to_string(path).await {
        Ok(s) => SecretString::from(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(TargetError::CredentialsAbsent {
                target: target.to_owned(),
                detail: format!("serviceAccountFile `{path}` does not exist"),
            });
        }
        Err(source) => {
            return Err(TargetError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if raw.expose_secret().trim().is_empty() {
        return Err(TargetError::CredentialsAbsent {
            target: target.to_owned(),
            detail: format!("serviceAccountFile `{path}` is empty"),
        });
    }
    let bad = |what: String| {
        TargetError::refused(
            target,
            format!(
                "serviceAccountFile `{path}` is not a usable service-account key: {what}; \
                 download a JSON key for the service account (IAM → Service accounts → Keys → Add key → JSON) \
                 and mount it unchanged"
            ),
        )
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(raw.expose_secret()) else {
        return Err(bad("it is not JSON".into()));
    };
    let field = |k: &str| {
        doc.get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    match field("type") {
        Some("service_account") => {}
        Some(other) if other.len() <= 40 && other.bytes().all(|b| b.is_ascii_graphic()) => {
            return Err(bad(format!(
                "its `type` is {other:?}, not \"service_account\" (a user's ADC file or an external-account \
                 configuration belongs in GOOGLE_APPLICATION_CREDENTIALS, with `credentials` omitted)"
            )));
        }
        _ => return Err(bad("it has no `type: service_account`".into())),
    }
    for k in ["client_email", "private_key", "token_uri"] {
        if field(k).is_none() {
            return Err(bad(format!("the field `{k}` is missing or empty")));
        }
    }
    if !field("private_key").is_some_and(|k| k.contains("-----BEGIN PRIVATE KEY-----")) {
        return Err(bad("`private_key` is not a PEM PKCS#8 private key".into()));
    }
    CustomServiceAccount::from_json(raw.expose_secret())
        .map_err(|_| bad("`private_key` does not parse as an RSA private key".into()))
}
