//! Requests to the JSON API: the client (timeouts, bearer token), retries
//! of transient failures, the object resource, and HTTP answers →
//! [`TargetError`].
//!
//! Must never: put a token, a session URI or a request body in an error or
//! a log line; send a token anywhere but the configured endpoint.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::MAX_ATTEMPTS;
use super::auth::Auth;
use crate::backends::TargetError;
use crate::policy::valid::S3Timeouts;

/// Longest server message quoted in an error.
const MAX_MESSAGE: usize = 300;

pub(super) struct Client {
    pub(super) target: String,
    pub(super) endpoint: url::Url,
    pub(super) auth: Auth,
    http: reqwest::Client,
}

/// The object resource (the fields snapward reads). Google sends `size` and
/// `generation` as strings; emulators sometimes as numbers.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Object {
    pub(super) name: String,
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default)]
    generation: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) metadata: HashMap<String, String>,
    #[serde(default)]
    pub(super) temporary_hold: Option<bool>,
    #[serde(default)]
    pub(super) event_based_hold: Option<bool>,
    /// Bucket retention policy: when the object may be deleted.
    #[serde(default)]
    pub(super) retention_expiration_time: Option<String>,
    /// Object retention (`retention.retainUntilTime`).
    #[serde(default)]
    pub(super) retention: Option<ObjectRetention>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ObjectRetention {
    #[serde(default)]
    pub(super) retain_until_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Listing {
    #[serde(default)]
    pub(super) items: Vec<Object>,
    #[serde(default)]
    pub(super) next_page_token: Option<String>,
}

fn number(v: Option<&serde_json::Value>) -> Option<u64> {
    match v? {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

impl Object {
    pub(super) fn size(&self) -> Option<u64> {
        number(self.size.as_ref())
    }
    pub(super) fn generation(&self) -> Option<u64> {
        number(self.generation.as_ref())
    }
    pub(super) fn sha256(&self) -> Option<String> {
        self.metadata
            .get(super::META_SHA256)
            .map(|s| s.to_ascii_lowercase())
    }
    /// Held, or retained past now by a bucket policy or object retention.
    pub(super) fn locked(&self) -> bool {
        let now = jiff::Timestamp::now();
        let future = |t: Option<&str>| {
            t.and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t > now)
        };
        self.temporary_hold == Some(true)
            || self.event_based_hold == Some(true)
            || future(self.retention_expiration_time.as_deref())
            || future(
                self.retention
                    .as_ref()
                    .and_then(|r| r.retain_until_time.as_deref()),
            )
    }
}

/// What went wrong with one request, for [`Client::error`].
pub(super) struct Failure {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl Failure {
    pub(super) async fn read(res: Response) -> Self {
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        #[derive(Deserialize)]
        struct Wrapper {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            message: String,
        }
        let message = match serde_json::from_str::<Wrapper>(&body) {
            Ok(w) => w.error.message,
            Err(_) => body,
        };
        let message: String = message.trim().chars().take(MAX_MESSAGE).collect();
        Self { status, message }
    }
}

/// Connection errors, timeouts, 5xx, 429: worth another attempt.
pub(super) fn transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// Backoff before attempt `n` (1-based; the first retry waits 200 ms).
pub(super) fn backoff(n: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << n.min(5))).min(Duration::from_secs(5))
}

impl Client {
    pub(super) fn new(
        target: &str,
        endpoint: &str,
        auth: Auth,
        timeouts: S3Timeouts,
    ) -> Result<Self, TargetError> {
        let endpoint = url::Url::parse(endpoint).map_err(|e| {
            TargetError::refused(target, format!("endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TargetError::failed(target, "building the HTTP client").caused_by(e))?;
        Ok(Self {
            target: target.to_owned(),
            endpoint,
            auth,
            http,
        })
    }

    /// The bare client (no token): for session URIs, which authenticate
    /// by themselves.
    pub(super) fn raw(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `{endpoint}/storage/v1/b/{bucket}/o[/{object}]`, each segment encoded.
    pub(super) fn objects_url(&self, bucket: &str, object: Option<&str>) -> url::Url {
        self.api_url(&["storage", "v1", "b", bucket, "o"], object)
    }

    /// `{endpoint}/upload/storage/v1/b/{bucket}/o`.
    pub(super) fn upload_url(&self, bucket: &str) -> url::Url {
        self.api_url(&["upload", "storage", "v1", "b", bucket, "o"], None)
    }

    fn api_url(&self, segments: &[&str], object: Option<&str>) -> url::Url {
        let mut u = self.endpoint.clone();
        if let Ok(mut p) = u.path_segments_mut() {
            p.pop_if_empty().extend(segments);
            if let Some(o) = object {
                p.push(o);
            }
        }
        u
    }

    /// A session URI as the server gave it, moved onto the configured
    /// endpoint (scheme, host, port): the token and the upload never go to
    /// another host, and an emulator behind a proxy keeps working.
    pub(super) fn on_endpoint(&self, location: &str) -> Option<url::Url> {
        let given = url::Url::parse(location)
            .or_else(|_| self.endpoint.join(location))
            .ok()?;
        let mut u = self.endpoint.clone();
        u.set_path(given.path());
        u.set_query(given.query());
        Some(u)
    }

    /// A request with the bearer token (none for an emulator).
    pub(super) async fn request(
        &self,
        method: Method,
        url: url::Url,
    ) -> Result<RequestBuilder, TargetError> {
        let req = self.http.request(method, url);
        Ok(match self.auth.token(&self.target).await? {
            Some(t) => req.bearer_auth(t.expose_secret()),
            None => req,
        })
    }

    /// Sends a request that is safe to repeat, retrying connection errors,
    /// timeouts, 5xx and 429 ([`MAX_ATTEMPTS`] in all). The answer of the
    /// last attempt, whatever its status.
    pub(super) async fn send_idempotent(
        &self,
        op: &str,
        what: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        method: Method,
        url: &url::Url,
    ) -> Result<Response, TargetError> {
        let mut attempt = 1;
        loop {
            let req = build(self.request(method.clone(), url.clone()).await?);
            match req.send().await {
                Ok(res) if transient(res.status()) && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(target_name = %self.target, op, status = %res.status(), attempt, "retrying");
                }
                Ok(res) => return Ok(res),
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(target_name = %self.target, op, error = %scrub(&e), attempt, "retrying");
                }
                Err(e) => return Err(self.transport(op, what, &e)),
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// A connection-level failure (no answer).
    pub(super) fn transport(&self, op: &str, what: &str, e: &reqwest::Error) -> TargetError {
        TargetError::failed(
            &self.target,
            format!("{op} `{what}` at {}: {}", self.origin(), scrub(e)),
        )
    }

    /// An HTTP answer that is not success.
    pub(super) fn error(&self, op: &str, what: &str, f: &Failure) -> TargetError {
        let msg = if f.message.is_empty() {
            String::new()
        } else {
            format!(": {}", f.message)
        };
        let detail = format!("{op} `{what}`: HTTP {}{msg}", f.status.as_u16());
        match f.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TargetError::refused(
                &self.target,
                format!(
                    "{detail} (check the service account's role on the bucket: roles/storage.objectUser, or objectCreator + objectViewer + delete rights)"
                ),
            ),
            StatusCode::NOT_FOUND => TargetError::refused(
                &self.target,
                format!("{detail} (does the bucket exist, and is it spelled like in the policy?)"),
            ),
            StatusCode::BAD_REQUEST => TargetError::refused(&self.target, detail),
            _ => TargetError::failed(&self.target, detail),
        }
    }

    fn origin(&self) -> String {
        self.endpoint.origin().ascii_serialization()
    }
}

/// A reqwest error without its URL (a session URI is a capability).
pub(super) fn scrub(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() {
        "sending or reading the body failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(s) => format!("{kind}: {}", crate::backends::chain(s)),
        None => kind.to_owned(),
    }
}
