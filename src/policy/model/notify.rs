//! Notifications of each run (`spec.notify`): a dead-man's-switch ping in
//! the healthchecks.io convention and JSON webhooks carrying the run's
//! summary. Plain serde types, part of [`super`]'s schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where each run reports that it started and how it ended. Never changes
/// the run's exit code: a notification that cannot be delivered is a
/// warning in the log and an entry in the report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    /// A ping URL in the healthchecks.io convention: `POST <url>/start`
    /// when the run starts, `POST <url>/<exit code>` when it ends (`/0`
    /// is success, any other code a failure; the body is the one-line
    /// summary). Works with healthchecks.io (`https://hc-ping.com/<uuid>`)
    /// and self-hosted Healthchecks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<Endpoint>,
    /// URLs that receive a `POST` of the run's summary as JSON when it
    /// ends (policy, outcome, exit code, times, the actions' results; never
    /// a secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Endpoint>,
}

/// One notification endpoint.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    /// An http:// or https:// URL without credentials (`user:pass@` is
    /// refused: put an `Authorization` header in `headersFile`). Logs show
    /// only its scheme and host: a ping URL's path is its secret.
    pub url: String,
    /// Longest one attempt may take, e.g. `10s` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Attempts in all, with exponential backoff between them (default 3,
    /// at most 10). A 4xx answer other than 408/429 is not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub attempts: Option<u32>,
    /// A file of `Name: value` lines sent as request headers (e.g.
    /// `Authorization: Bearer ...`); read at each run, never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_file: Option<String>,
}

/// The URL's path may be a secret (a ping UUID, a webhook token): only its
/// scheme and host are printed.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &crate::secret::url_origin(&self.url))
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("headers_file", &self.headers_file)
            .finish()
    }
}
