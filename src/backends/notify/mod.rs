//! Notifications (`spec.notify`): the dead-man's-switch ping in the
//! healthchecks.io convention (`POST <url>/start`, then `POST
//! <url>/<exit code>` with the one-line summary as body) and JSON webhooks
//! (`POST` of a body the caller builds from the report).
//!
//! Stage: execute (the edge of a run). Transport only: what is sent is
//! the caller's.
//!
//! Bounded and harmless: each attempt has a timeout (default 10 s), at
//! most `attempts` tries (default 3) with exponential backoff (backon);
//! 4xx answers other than 408/429 are not retried. Nothing here fails the
//! run: every outcome is a [`Delivery`] for the report, failures are a
//! warning in the log.
//!
//! Must never: print a URL beyond its scheme and host (a ping URL's path
//! is its secret), print a header value from `headersFile`, or follow
//! redirects to another host with those headers.

use std::path::PathBuf;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

use crate::policy::model;

/// Per attempt, unless the policy says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts in all, unless the policy says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 3;
const MAX_ATTEMPTS: u32 = 10;

/// What one notification did, for the run report. `endpoint` is the URL's
/// scheme and host only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `ping` or `webhook`.
    pub kind: &'static str,
    /// `start` or `end`.
    pub phase: &'static str,
    pub endpoint: String,
    pub delivered: bool,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One endpoint, ready to send.
#[derive(Debug, Clone)]
struct Endpoint {
    /// Never printed: see [`Endpoint::origin`].
    url: String,
    timeout: Duration,
    attempts: u32,
    headers_file: Option<PathBuf>,
}

impl Endpoint {
    fn new(e: &model::Endpoint) -> Self {
        Self {
            url: e.url.clone(),
            // Validated by lint; a value that does not parse is the default.
            timeout: e
                .timeout
                .as_deref()
                .and_then(|t| humantime::parse_duration(t.trim()).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_TIMEOUT),
            attempts: e
                .attempts
                .unwrap_or(DEFAULT_ATTEMPTS)
                .clamp(1, MAX_ATTEMPTS),
            headers_file: e.headers_file.as_ref().map(PathBuf::from),
        }
    }

    fn origin(&self) -> String {
        crate::secret::url_origin(&self.url)
    }
}

/// Why one attempt failed; `retry` when another attempt may succeed.
#[derive(Debug)]
struct Failed {
    text: String,
    retry: bool,
}

/// The notifications of one run.
#[derive(Debug)]
pub struct Notifier {
    client: reqwest::Client,
    ping: Option<Endpoint>,
    webhooks: Vec<Endpoint>,
}

impl Notifier {
    /// `None` when the policy asks for no notification.
    pub fn new(n: Option<&model::Notify>) -> Option<Self> {
        let n = n?;
        if n.ping.is_none() && n.webhooks.is_empty() {
            return None;
        }
        // No redirects: headers from `headersFile` must not reach another
        // host, and a ping service does not redirect.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("snapward/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %crate::backends::chain(&e), "no notifications this run: cannot build the HTTP client");
                return None;
            }
        };
        Some(Self {
            client,
            ping: n.ping.as_ref().map(Endpoint::new),
            webhooks: n.webhooks.iter().map(Endpoint::new).collect(),
        })
    }

    /// `POST <ping>/start` (webhooks hear only the end).
    pub async fn start(&self) -> Vec<Delivery> {
        let Some(p) = &self.ping else {
            return Vec::new();
        };
        vec![
            self.send(
                "ping",
                "start",
                p,
                format!("{}/start", p.url.trim_end_matches('/')),
                None,
            )
            .await,
        ]
    }

    /// `POST <ping>/<exit code>` with `summary` as the body, and every
    /// webhook `POST`ed `body` (JSON), all at once.
    pub async fn end(
        &self,
        exit_code: u8,
        summary: &str,
        body: &serde_json::Value,
    ) -> Vec<Delivery> {
        let ping = self.ping.as_ref().map(|p| {
            self.send(
                "ping",
                "end",
                p,
                format!("{}/{exit_code}", p.url.trim_end_matches('/')),
                Some(Body::Text(summary.to_string())),
            )
        });
        let hooks = self.webhooks.iter().map(|w| {
            self.send(
                "webhook",
                "end",
                w,
                w.url.clone(),
                Some(Body::Json(body.clone())),
            )
        });
        let (ping, mut hooks) = tokio::join!(
            async {
                match ping {
                    Some(p) => Some(p.await),
                    None => None,
                }
            },
            futures::future::join_all(hooks)
        );
        let mut out: Vec<Delivery> = ping.into_iter().collect();
        out.append(&mut hooks);
        out
    }

    async fn send(
        &self,
        kind: &'static str,
        phase: &'static str,
        e: &Endpoint,
        url: String,
        body: Option<Body>,
    ) -> Delivery {
        let origin = e.origin();
        let headers = match e.headers_file.as_deref().map(read_headers).transpose() {
            Ok(h) => h.unwrap_or_default(),
            Err(text) => {
                tracing::warn!(kind, phase, endpoint = %origin, error = %text, "notification not sent");
                return Delivery {
                    kind,
                    phase,
                    endpoint: origin,
                    delivered: false,
                    attempts: 0,
                    error: Some(text),
                };
            }
        };
        let mut tries = 0u32;
        let attempt = || {
            tries += 1;
            self.attempt(&url, e.timeout, &headers, body.as_ref())
        };
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(e.attempts.saturating_sub(1) as usize)
            .with_jitter();
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|f: &Failed| f.retry)
            .await;
        let (delivered, error) = match result {
            Ok(()) => {
                tracing::debug!(kind, phase, endpoint = %origin, "notification sent");
                (true, None)
            }
            Err(f) => {
                tracing::warn!(
                    kind,
                    phase,
                    endpoint = %origin,
                    attempts = tries,
                    error = %f.text,
                    "notification failed (the run's outcome stands)"
                );
                (false, Some(f.text))
            }
        };
        Delivery {
            kind,
            phase,
            endpoint: origin,
            delivered,
            attempts: tries,
            error,
        }
    }

    async fn attempt(
        &self,
        url: &str,
        timeout: Duration,
        headers: &HeaderMap,
        body: Option<&Body>,
    ) -> Result<(), Failed> {
        let mut rb = self
            .client
            .post(url)
            .timeout(timeout)
            .headers(headers.clone());
        rb = match body {
            Some(Body::Text(t)) => rb
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(t.clone()),
            Some(Body::Json(v)) => rb
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(v).unwrap_or_default()),
            None => rb,
        };
        let resp = rb.send().await.map_err(|e| {
            // reqwest's error quotes the URL: never shown.
            let e = e.without_url();
            let text = if e.is_timeout() {
                format!("no answer within {}", humantime::format_duration(timeout))
            } else {
                crate::backends::chain(&e)
            };
            Failed { text, retry: true }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let retry = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        Err(Failed {
            text: format!("answered {status}"),
            retry,
        })
    }
}

enum Body {
    Text(String),
    Json(serde_json::Value),
}

/// `Name: value` lines (blank lines and `#` comments skipped). Errors name
/// the file and line, never a value.
fn read_headers(path: &std::path::Path) -> Result<HeaderMap, String> {
    let text = crate::secret::read_secret_file(path)
        .map_err(|e| format!("cannot read headersFile {}: {e}", path.display()))?;
    let mut map = HeaderMap::new();
    for (i, line) in text.expose().lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| {
            format!(
                "headersFile {} line {}: {what}; write `Name: value` lines",
                path.display(),
                i + 1
            )
        };
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad("no `:`"));
        };
        let name =
            HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad("not a header name"))?;
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| bad("the value holds characters a header cannot"))?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_files_parse_and_errors_never_quote_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("h");
        std::fs::write(&f, "# token\nAuthorization: Bearer s3cr3t\n\nX-Team: ops\n").unwrap();
        let h = read_headers(&f).unwrap();
        assert_eq!(h.get("authorization").unwrap(), "Bearer s3cr3t");
        assert!(h.get("authorization").unwrap().is_sensitive());
        assert_eq!(h.get("x-team").unwrap(), "ops");
        std::fs::write(&f, "Authorization Bearer s3cr3t\n").unwrap();
        let e = read_headers(&f).unwrap_err();
        assert!(e.contains("line 1") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn endpoints_default_and_bound_their_attempts() {
        let e = Endpoint::new(&model::Endpoint {
            url: "https://hc-ping.com/0b6a1f3e-uuid/".into(),
            timeout: None,
            attempts: Some(99),
            headers_file: None,
        });
        // Kept as written (a webhook may need its trailing slash); the
        // ping's `/start` and `/<code>` are appended without a double one.
        assert_eq!(e.url, "https://hc-ping.com/0b6a1f3e-uuid/");
        assert_eq!(e.timeout, DEFAULT_TIMEOUT);
        assert_eq!(e.attempts, MAX_ATTEMPTS);
        assert_eq!(e.origin(), "https://hc-ping.com");
    }
}
