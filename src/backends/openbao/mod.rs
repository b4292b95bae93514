//! OpenBao over HTTP (reqwest + rustls): node observation, finding the
//! active node, streaming raft snapshots. Tokens live only in memory, in
//! [`Secret`]s, and are sent only as `X-Vault-Token` to configured nodes.
//!
//! Stage: execute (backend). Must never log or format a token, never stream
//! a snapshot from a node that is not the active one at request time
//! (OpenBao 2.7.2 standbys answer 200 with their own, possibly stale,
//! snapshot — docs/openbao.md), and never report an unreadable node as
//! uninitialised.
//!
//! # Choices
//!
//! - **One HTTP client per node, no connection reuse.** Each node is
//!   addressed directly (a pod behind a headless Service); proxies from the
//!   environment are ignored. Every request opens a fresh connection (a few
//!   requests per run): a pooled connection to a pod that restarted would
//!   fail mid-request and misreport a node that is up.
//! - **`tls.serverName`**: for an `https` node whose host differs from the
//!   server name, requests go to `https://<serverName>:<port>/...` (so SNI and
//!   certificate verification use the server name) and that node's client
//!   resolves the server name to the node's *configured* host (an IP literal
//!   as is, a DNS name looked up at connect time). reqwest has no SNI
//!   override; this gives the same effect without a second TLS stack.
//! - **`tls.caFile`** replaces the built-in roots: only that bundle is
//!   trusted (it is "the CA that signs the servers' certificates").
//! - **Redirects** are not followed automatically. A 307/308 from the
//!   snapshot endpoint is followed once, by hand, and only when its
//!   `Location` is one of the configured nodes (by scheme, host and port of
//!   the configured address); that node must pass the same active-node check
//!   and is sent the same token. A redirect anywhere else fails without
//!   sending the token.
//! - **Timeouts**: `connect` for TCP + TLS; `request` for every non-streaming
//!   call; the snapshot response must produce its headers and then bytes at
//!   least every `streamIdle`, or the call fails with [`BaoError::Stalled`].
//! - **Retries**: the snapshot call retries (exponential backoff with jitter,
//!   bounded by [`Retry`]) only on connection errors and 503, and only while
//!   nothing was written to `out`; 403 is retried only when the refused
//!   token was a login token an earlier request used (with a new login).
//! - **Cleartext**: key shares, `sys/init`, tokens and the login JWT go over
//!   plain http only to loopback nodes unless `cluster.allowInsecureHttp`
//!   (listed and discovered nodes alike: the check is per request, in
//!   `client.rs`); non-snapshot answers are read up to 1 MiB.
//! - **Auth** is resolved only when a snapshot is requested (`observe` needs
//!   no token): a token file is re-read each time (mounted Secrets rotate); a
//!   login (Kubernetes, AppRole, JWT) happens on the node being snapshotted
//!   and its token is cached until a third of its lease is left or the
//!   server answers 403; then snapward logs in again.
//!
//! Adding an endpoint (init, unseal, restore-force for the restore path):
//! build the call with `request` (per node, optional token), send it with
//! `exchange` (whole answer within the request timeout) or, for a large
//! body, `send` it yourself, and map unexpected statuses with
//! `status_error` (403 → Refused, 503 retryable, the rest Failed).
//!
//! # Files
//!
//! - `client.rs`: the per-node HTTP client (TLS, `tls.serverName`, no
//!   proxies, no pooling) and the request/answer plumbing;
//! - `auth.rs`: the token for a snapshot (token file; Kubernetes, AppRole
//!   or JWT login, and when a login token is re-acquired);
//! - `observe.rs`: `sys/seal-status`, `sys/init`, `sys/leader` and the
//!   three-valued node state;
//! - `snapshot.rs`: the active-node check, redirects, streaming, retries;
//! - `ceremony.rs`: init / unseal / seal-status / leader / restore / read;
//! - `error.rs`: how answers and transport failures become [`BaoError`]s.

mod auth;
mod ceremony;
mod client;
mod connect;
mod error;
mod observe;
mod snapshot;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use observe::{Leader, SealStatus};

use client::node_client;

use super::{BaoError, NodeStatus, OpenBao};
use crate::policy::model::Cluster;
use crate::secret::Secret;

/// Connect, request and stream-idle timeouts (the policy's
/// `cluster.timeouts`, built by `wiring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// A whole non-streaming request.
    pub request: Duration,
    /// The snapshot response delivering no bytes for this long is aborted.
    pub stream_idle: Duration,
}

/// Bounded retries of the snapshot request (before any byte was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Total attempts, the first included (1 = no retry).
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    /// 3 attempts, backoff from 1 s up to 8 s (plus jitter).
    fn default() -> Self {
        Self {
            attempts: 3,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// How the snapshot read authenticates.
enum Auth {
    None,
    /// A token given in memory (e.g. a temporary root token during restore).
    Token(Secret),
    /// Re-read on every snapshot (mounted Secrets rotate).
    TokenFile(PathBuf),
    Kubernetes {
        role: String,
        mount: String,
        jwt_file: PathBuf,
        /// The `aud` the JWT must hold (see `auth.rs`).
        audience: Option<String>,
    },
    /// `cluster.auth.appRole` (see `auth.rs`).
    AppRole {
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    /// `cluster.auth.jwt` (see `auth.rs`).
    Jwt {
        mount: String,
        role: String,
        jwt_file: PathBuf,
        audience: Option<String>,
    },
    /// TLS certificate login with the nodes' client certificate
    /// (`cluster.tls` certFile/keyFile).
    Cert {
        mount: String,
        role: Option<String>,
    },
}

struct Node {
    name: String,
    /// As configured: shown in reports, matched against redirect targets.
    address: Url,
    /// Where requests go: `address`, with the host replaced by
    /// `tls.serverName` when that is set (see the module docs).
    base: Url,
    client: reqwest::Client,
}

/// The real [`OpenBao`] backend. See the module docs for TLS, redirect,
/// timeout, retry and auth behaviour.
pub struct HttpOpenBao {
    nodes: Vec<Node>,
    auth: Auth,
    /// The token of the last login (Kubernetes, AppRole, JWT), cached
    /// while its lease has time left and until a 403 (see `auth.rs`).
    login_token: tokio::sync::Mutex<Option<auth::LoginToken>>,
    timeouts: Timeouts,
    retry: Retry,
    /// `spec.cluster.allowInsecureHttp`: secrets may go over plain http to
    /// a non-loopback node (see `client.rs`).
    allow_insecure_http: bool,
}

impl fmt::Debug for HttpOpenBao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<(&str, &str)> = self
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.address.as_str()))
            .collect();
        let auth = match &self.auth {
            Auth::None => "none".to_string(),
            Auth::Token(t) => format!("token {t}"),
            Auth::TokenFile(p) => format!("token file {}", p.display()),
            Auth::Kubernetes {
                role,
                mount,
                jwt_file,
                ..
            } => format!(
                "kubernetes (role {role}, mount {mount}, jwt file {})",
                jwt_file.display()
            ),
            Auth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => format!(
                "approle (mount {mount}, role_id file {}, secret_id file {})",
                role_id_file.display(),
                secret_id_file.display()
            ),
            Auth::Jwt {
                mount,
                role,
                jwt_file,
                ..
            } => format!(
                "jwt (role {role}, mount {mount}, jwt file {})",
                jwt_file.display()
            ),
            Auth::Cert { mount, role } => format!("cert (role {role:?}, mount {mount})"),
        };
        let cached = self
            .login_token
            .try_lock()
            .map(|g| g.is_some())
            .unwrap_or(true);
        f.debug_struct("HttpOpenBao")
            .field("nodes", &nodes)
            .field("auth", &auth)
            .field("login_token", &if cached { "[redacted]" } else { "none" })
            .field("timeouts", &self.timeouts)
            .field("retry", &self.retry)
            .finish()
    }
}

impl HttpOpenBao {
    /// `nodes` are (name, base URL) in policy order, node 0 first (listed or
    /// discovered by the caller). `cfg` supplies TLS and auth; its `nodes`
    /// and `timeouts` fields are not read (`wiring` passes `timeouts`).
    ///
    /// Errors (as [`BaoError::Refused`], since retrying cannot help): no
    /// nodes, an unreadable or empty `tls.caFile`, both auth methods set, or
    /// a client that cannot be built.
    pub fn new(
        nodes: Vec<(String, Url)>,
        cfg: &Cluster,
        timeouts: Timeouts,
    ) -> Result<Self, BaoError> {
        let config_err = |detail: String| BaoError::refused("cluster", detail);
        if nodes.is_empty() {
            return Err(config_err("no OpenBao nodes configured".into()));
        }
        let tls = cfg.tls.as_ref();
        let roots = match tls.and_then(|t| t.ca_file.as_deref()) {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    config_err(format!("cannot read tls.caFile {path}")).caused_by(e)
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    config_err(format!("tls.caFile {path} is not a PEM bundle")).caused_by(e)
                })?;
                if certs.is_empty() {
                    return Err(config_err(format!(
                        "tls.caFile {path} holds no certificate"
                    )));
                }
                certs
            }
        };
        let server_name = tls
            .and_then(|t| t.server_name.as_deref())
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty());

        let identity = client::client_identity(tls)?;

        let mut built = Vec::with_capacity(nodes.len());
        for (name, address) in nodes {
            let (base, client) = node_client(
                &address,
                server_name.as_deref(),
                &roots,
                identity.as_ref(),
                timeouts,
            )
            .map_err(|e| BaoError::refused(&name, "").caused_by(e))?;
            built.push(Node {
                name,
                address,
                base,
                client,
            });
        }

        let auth = match cfg.auth.as_ref() {
            None => Auth::None,
            Some(a) if a.cert.is_some() => auth::cert_auth(a, identity.is_some())?,
            Some(a) if a.app_role.is_some() || a.jwt.is_some() => Auth::login_method(a)?,
            Some(a) => match (&a.token_file, &a.kubernetes) {
                (Some(_), Some(_)) => {
                    return Err(config_err(
                        "cluster.auth sets both tokenFile and kubernetes; use one".into(),
                    ));
                }
                (Some(file), None) => Auth::TokenFile(PathBuf::from(file)),
                (None, Some(k)) => Auth::Kubernetes {
                    role: k.role.clone(),
                    mount: k.mount.trim_matches('/').to_string(),
                    jwt_file: PathBuf::from(&k.jwt_file),
                    audience: k.audience.clone(),
                },
                (None, None) => Auth::None,
            },
        };

        Ok(Self {
            nodes: built,
            auth,
            login_token: tokio::sync::Mutex::new(None),
            timeouts,
            retry: Retry::default(),
            allow_insecure_http: cfg.allow_insecure_http,
        })
    }

    /// Use this token for snapshots instead of `cluster.auth` (e.g. the
    /// temporary root token during a restore; never persisted).
    pub fn with_token(mut self, token: Secret) -> Self {
        self.auth = Auth::Token(token);
        self
    }

    /// Replace the default snapshot retry bounds.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    fn node(&self, node: usize) -> Result<&Node, BaoError> {
        self.nodes.get(node).ok_or_else(|| {
            BaoError::refused(
                &format!("#{node}"),
                format!("no such node (the cluster has {})", self.nodes.len()),
            )
        })
    }
}

#[async_trait]
impl OpenBao for HttpOpenBao {
    fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    async fn observe(&self) -> Vec<NodeStatus> {
        futures::future::join_all((0..self.nodes.len()).map(|i| self.observe_node(i))).await
    }

    async fn snapshot(
        &self,
        node: usize,
        out: &mut (dyn AsyncWrite + Unpin + Send),
        cancel: &CancellationToken,
    ) -> Result<u64, BaoError> {
        self.snapshot_retrying(node, out, cancel).await
    }
}

/// For unit tests only: the policy's defaults (5s / 30s / 60s) are
/// defined once, in `policy::model`, and reach the backend through
/// `wiring`. (Kept at the end of the file: `architecture` reads the code
/// before the first `#[cfg(test)]`.)
#[cfg(test)]
impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            stream_idle: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_token() {
        let cfg: Cluster = serde_json::from_value(serde_json::json!({})).unwrap();
        let bao = HttpOpenBao::new(
            vec![("a".into(), "http://127.0.0.1:8200".parse().unwrap())],
            &cfg,
            Timeouts::default(),
        )
        .unwrap()
        .with_token(Secret::new("s.verysecret"));
        let dbg = format!("{bao:?}");
        assert!(!dbg.contains("verysecret"), "{dbg}");
        assert!(dbg.contains("[redacted]"), "{dbg}");
    }
}
