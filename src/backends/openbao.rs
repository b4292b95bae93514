//! OpenBao over HTTP (reqwest + rustls): node observation, finding the
//! active node, streaming raft snapshots. Tokens live only in memory, in
//! [`Secret`]s, and are sent only as `X-Vault-Token` to configured nodes.
//!
//! Stage: execute (backend). Must never log or format a token, never stream
//! a snapshot from a node that is not the active one at request time
//! (OpenBao 2.7.2 standbys answer 200 with their own, possibly stale,
//! snapshot — DESIGN.md §6), and never report an unreadable node as
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
//!   nothing was written to `out`; 403 is never retried.
//! - **Auth** is resolved only when a snapshot is requested (`observe` needs
//!   no token): a token file is re-read each time (mounted Secrets rotate); a
//!   Kubernetes login happens on the node being snapshotted and its token is
//!   cached until the server answers 403.
//!
//! Adding an endpoint (init, unseal, restore-force for the restore path):
//! build the call with `request` (per node, optional token), send it with
//! `exchange` (whole answer within the request timeout) or, for a large
//! body, `send` it yourself, and map unexpected statuses with
//! `status_error` (403 → Refused, 503 retryable, the rest Failed).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use reqwest::header::{HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use url::{Host, Url};

use super::{BaoError, Ceremony, InitResult, LeaderState, NodeStatus, OpenBao, SealState, chain};
use crate::cluster::InitState;
use crate::policy::model::Cluster;
use crate::secret::{Secret, read_secret_file};

const TOKEN_HEADER: &str = "X-Vault-Token";
const SNAPSHOT_PATH: &str = "sys/storage/raft/snapshot";
/// Longest server message quoted in an error.
const MAX_DETAIL: usize = 300;

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

impl Default for Timeouts {
    /// The policy's defaults: 5s / 30s / 60s.
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            stream_idle: Duration::from_secs(60),
        }
    }
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

/// `GET /v1/sys/seal-status` (no token needed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    /// Threshold.
    #[serde(default)]
    pub t: u32,
    /// Shares.
    #[serde(default)]
    pub n: u32,
    /// Unseal keys received so far.
    #[serde(default)]
    pub progress: u32,
    /// Present when unsealed.
    #[serde(default, deserialize_with = "non_empty")]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// `GET /v1/sys/leader` (no token needed; 503 while sealed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Leader {
    pub ha_enabled: bool,
    /// This node is the active one.
    pub is_self: bool,
    #[serde(default, deserialize_with = "non_empty")]
    pub leader_address: Option<String>,
    #[serde(default)]
    pub raft_committed_index: Option<u64>,
    #[serde(default)]
    pub raft_applied_index: Option<u64>,
}

fn non_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

#[derive(Deserialize)]
struct InitResponse {
    initialized: bool,
}

#[derive(Deserialize)]
struct LoginResponse {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
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
    /// The Kubernetes-login token, cached until a 403.
    login_token: tokio::sync::Mutex<Option<Secret>>,
    timeouts: Timeouts,
    retry: Retry,
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
            } => format!(
                "kubernetes (role {role}, mount {mount}, jwt file {})",
                jwt_file.display()
            ),
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

/// A failed step of one snapshot attempt, and whether a retry may help.
struct Attempt {
    err: BaoError,
    retry: bool,
}

impl Attempt {
    fn fatal(err: BaoError) -> Self {
        Self { err, retry: false }
    }
}

impl From<BaoError> for Attempt {
    fn from(err: BaoError) -> Self {
        Self::fatal(err)
    }
}

/// A complete non-streaming answer.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

/// Sends `rb` and reads the whole answer (no timeout: the caller's).
async fn send_and_read(rb: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let resp = rb.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
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
        let config_err = |detail: String| BaoError::Refused {
            node: "cluster".into(),
            detail,
        };
        if nodes.is_empty() {
            return Err(config_err("no OpenBao nodes configured".into()));
        }
        let tls = cfg.tls.as_ref();
        let roots = match tls.and_then(|t| t.ca_file.as_deref()) {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| config_err(format!("cannot read tls.caFile {path}: {e}")))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    config_err(format!("tls.caFile {path} is not a PEM bundle: {e}"))
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

        let mut built = Vec::with_capacity(nodes.len());
        for (name, address) in nodes {
            let (base, client) = node_client(&address, server_name.as_deref(), &roots, timeouts)
                .map_err(|detail| BaoError::Refused {
                    node: name.clone(),
                    detail,
                })?;
            built.push(Node {
                name,
                address,
                base,
                client,
            });
        }

        let auth = match cfg.auth.as_ref() {
            None => Auth::None,
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

    /// `GET /v1/sys/seal-status` on one node.
    pub async fn seal_status(&self, node: usize) -> Result<SealStatus, BaoError> {
        self.get_json(node, "sys/seal-status")
            .await
            .map_err(|a| a.err)
    }

    /// `GET /v1/sys/init` on one node: is it initialised?
    pub async fn init_status(&self, node: usize) -> Result<bool, BaoError> {
        self.get_json::<InitResponse>(node, "sys/init")
            .await
            .map(|r| r.initialized)
            .map_err(|a| a.err)
    }

    /// `GET /v1/sys/leader` on one node (503 while sealed).
    pub async fn leader(&self, node: usize) -> Result<Leader, BaoError> {
        self.get_json(node, "sys/leader").await.map_err(|a| a.err)
    }

    fn node(&self, node: usize) -> Result<&Node, BaoError> {
        self.nodes.get(node).ok_or_else(|| BaoError::Refused {
            node: format!("#{node}"),
            detail: format!("no such node (the cluster has {})", self.nodes.len()),
        })
    }

    fn url(&self, node: &Node, path: &str) -> Url {
        let mut url = node.base.clone();
        let prefix = node.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}/v1/{path}"));
        url
    }

    /// A request to one node; the token (if any) goes in `X-Vault-Token`,
    /// marked sensitive so no debug output of the request shows it.
    fn request(
        &self,
        node: &Node,
        method: Method,
        path: &str,
        token: Option<&Secret>,
    ) -> Result<reqwest::RequestBuilder, BaoError> {
        let mut rb = node.client.request(method, self.url(node, path));
        if let Some(token) = token {
            let mut value =
                HeaderValue::from_str(token.expose()).map_err(|_| BaoError::Refused {
                    node: node.name.clone(),
                    detail: "the token holds characters not allowed in an HTTP header".into(),
                })?;
            value.set_sensitive(true);
            rb = rb.header(TOKEN_HEADER, value);
        }
        Ok(rb)
    }

    /// Send a non-streaming request and read the whole answer, within the
    /// request timeout.
    async fn exchange(&self, node: &Node, rb: reqwest::RequestBuilder) -> Result<Reply, Attempt> {
        let send = send_and_read(rb);
        match tokio::time::timeout(self.timeouts.request, send).await {
            Err(_) => Err(Attempt::fatal(BaoError::Failed {
                node: node.name.clone(),
                detail: format!(
                    "no complete answer within {}s",
                    self.timeouts.request.as_secs_f32()
                ),
            })),
            Ok(Err(e)) => Err(transport_error(&node.name, &e)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// `GET /v1/<path>` without a token, expecting 200 with JSON `T`.
    async fn get_json<T: DeserializeOwned>(&self, node: usize, path: &str) -> Result<T, Attempt> {
        let n = self.node(node)?;
        let rb = self.request(n, Method::GET, path, None)?;
        let reply = self.exchange(n, rb).await?;
        if reply.status != StatusCode::OK {
            return Err(status_error(&n.name, path, &reply));
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            Attempt::fatal(BaoError::Failed {
                node: n.name.clone(),
                detail: format!(
                    "{path} answered 200 with an unexpected body ({e}): {}",
                    quote(&reply.body)
                ),
            })
        })
    }

    async fn observe_node(&self, i: usize) -> NodeStatus {
        let n = &self.nodes[i];
        let mut st = NodeStatus {
            name: n.name.clone(),
            address: n.address.as_str().trim_end_matches('/').to_string(),
            init: InitState::Unknown,
            sealed: None,
            active: false,
            cluster_id: None,
            raft_index: None,
            error: None,
        };
        let (seal, init) = tokio::join!(self.seal_status(i), self.init_status(i));
        let seal = match seal {
            Ok(s) => s,
            Err(e) => {
                st.error = Some(detail(&e));
                return st;
            }
        };
        st.sealed = Some(seal.sealed);
        st.cluster_id = seal.cluster_id.clone();
        match init {
            Err(e) => {
                st.error = Some(detail(&e));
                return st;
            }
            Ok(init) if init != seal.initialized => {
                st.error = Some(format!(
                    "contradictory answers: sys/seal-status says initialized={}, sys/init says initialized={init}",
                    seal.initialized
                ));
                return st;
            }
            Ok(_) => {}
        }
        if !seal.initialized && !seal.sealed {
            st.error = Some(
                "contradictory answers: sys/seal-status says uninitialised but unsealed".into(),
            );
            return st;
        }
        st.init = if seal.initialized {
            InitState::Initialized
        } else {
            InitState::Uninitialized
        };
        if seal.initialized && !seal.sealed {
            match self.leader(i).await {
                Ok(l) => {
                    st.active = l.is_self;
                    st.raft_index = l.raft_committed_index;
                }
                // Initialised is settled; only leadership is unknown.
                Err(e) => st.error = Some(detail(&e)),
            }
        }
        st
    }

    /// Fails unless `node` says it is the active node right now.
    async fn ensure_active(&self, node: usize) -> Result<(), Attempt> {
        let leader: Leader = self.get_json(node, "sys/leader").await?;
        if leader.is_self {
            return Ok(());
        }
        let name = self.nodes[node].name.clone();
        let leader_is = leader
            .leader_address
            .map(|a| format!("the active node is {a}"))
            .unwrap_or_else(|| "no active node is known yet".into());
        Err(Attempt::fatal(BaoError::Failed {
            node: name,
            detail: format!(
                "not the active node ({leader_is}); snapshots are taken from the active node only, because a standby serves its own possibly stale snapshot"
            ),
        }))
    }

    /// The token for a snapshot on `node` (see the module docs).
    async fn token(&self, node: usize) -> Result<Secret, Attempt> {
        let name = &self.nodes[node].name;
        match &self.auth {
            Auth::None => Err(Attempt::fatal(BaoError::Refused {
                node: name.clone(),
                detail: "no auth configured (cluster.auth): a snapshot needs a token with `read` on sys/storage/raft/snapshot".into(),
            })),
            Auth::Token(t) => Ok(t.clone()),
            Auth::TokenFile(path) => read_secret_file(path).map_err(|e| {
                Attempt::fatal(BaoError::Refused {
                    node: name.clone(),
                    detail: format!("cannot read the token file {}: {e}", path.display()),
                })
            }),
            Auth::Kubernetes {
                role,
                mount,
                jwt_file,
            } => {
                let mut cached = self.login_token.lock().await;
                if let Some(t) = cached.as_ref() {
                    return Ok(t.clone());
                }
                let token = self.kubernetes_login(node, role, mount, jwt_file).await?;
                *cached = Some(token.clone());
                Ok(token)
            }
        }
    }

    /// `POST /v1/auth/<mount>/login` with the service-account JWT.
    async fn kubernetes_login(
        &self,
        node: usize,
        role: &str,
        mount: &str,
        jwt_file: &std::path::Path,
    ) -> Result<Secret, Attempt> {
        let n = &self.nodes[node];
        let jwt = read_secret_file(jwt_file).map_err(|e| {
            Attempt::fatal(BaoError::Refused {
                node: n.name.clone(),
                detail: format!(
                    "cannot read the service-account token {}: {e}",
                    jwt_file.display()
                ),
            })
        })?;
        #[derive(serde::Serialize)]
        struct Body<'a> {
            role: &'a str,
            jwt: &'a str,
        }
        let body = serde_json::to_vec(&Body {
            role,
            jwt: jwt.expose(),
        })
        .map_err(|e| {
            Attempt::fatal(BaoError::Failed {
                node: n.name.clone(),
                detail: format!("cannot encode the login request: {e}"),
            })
        })?;
        let path = format!("auth/{mount}/login");
        let rb = self
            .request(n, Method::POST, &path, None)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let reply = self.exchange(n, rb).await?;
        match reply.status {
            StatusCode::OK => {
                let parsed: LoginResponse = serde_json::from_slice(&reply.body).map_err(|_| {
                    Attempt::fatal(BaoError::Failed {
                        node: n.name.clone(),
                        detail: format!(
                            "kubernetes login (mount {mount}) answered 200 without auth.client_token"
                        ),
                    })
                })?;
                Ok(Secret::new(parsed.auth.client_token))
            }
            s if s.is_client_error() => Err(Attempt::fatal(BaoError::Refused {
                node: n.name.clone(),
                detail: format!(
                    "kubernetes login (role {role}, mount {mount}) refused with {s}: {}",
                    quote(&reply.body)
                ),
            })),
            _ => Err(status_error(&n.name, &path, &reply)),
        }
    }

    /// One snapshot attempt: active-node check, token, request, stream.
    /// `written` counts bytes that reached `out` (a retry needs it at 0).
    /// Cancellation is the caller's (it drops this future).
    async fn snapshot_attempt(
        &self,
        node: usize,
        out: &mut (dyn AsyncWrite + Unpin + Send),
        written: &mut u64,
    ) -> Result<u64, Attempt> {
        self.ensure_active(node).await?;
        let token = self.token(node).await?;
        let mut target = node;
        let mut resp = self.snapshot_request(target, &token).await?;
        if matches!(
            resp.status(),
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        ) {
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let from = &self.nodes[node];
            let Some(location) = location else {
                return Err(Attempt::fatal(BaoError::Failed {
                    node: from.name.clone(),
                    detail: format!("answered {} without a Location", resp.status()),
                }));
            };
            target = self.redirect_target(node, &location)?;
            tracing::info!(
                node = %from.name,
                to = %self.nodes[target].name,
                "snapshot request redirected; following it once"
            );
            self.ensure_active(target).await?;
            resp = self.snapshot_request(target, &token).await?;
            if resp.status().is_redirection() {
                return Err(Attempt::fatal(BaoError::Failed {
                    node: self.nodes[target].name.clone(),
                    detail: format!("redirected again ({}); not following", resp.status()),
                }));
            }
        }
        let name = self.nodes[target].name.clone();
        let status = resp.status();
        if status != StatusCode::OK {
            let body = tokio::time::timeout(self.timeouts.request, resp.bytes())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_vec())
                .unwrap_or_default();
            let reply = Reply { status, body };
            if status == StatusCode::FORBIDDEN {
                if matches!(self.auth, Auth::Kubernetes { .. }) {
                    *self.login_token.lock().await = None;
                }
                return Err(Attempt::fatal(BaoError::Refused {
                    node: name,
                    detail: format!(
                        "{SNAPSHOT_PATH} answered 403 ({}); the token needs `read` on {SNAPSHOT_PATH}",
                        quote(&reply.body)
                    ),
                }));
            }
            return Err(status_error(&name, SNAPSHOT_PATH, &reply));
        }

        let idle = self.timeouts.stream_idle;
        let mut body = resp.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => {
                    return Err(Attempt::fatal(BaoError::Stalled {
                        node: name,
                        seconds: idle.as_secs(),
                    }));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    return Err(Attempt::fatal(BaoError::Failed {
                        node: name,
                        detail: format!(
                            "the snapshot stream broke after {written} bytes: {}",
                            chain(&e)
                        ),
                    }));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            out.write_all(&chunk)
                .await
                .map_err(|e| Attempt::fatal(BaoError::Io(e)))?;
            *written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|e| Attempt::fatal(BaoError::Io(e)))?;
        if *written == 0 {
            return Err(Attempt::fatal(BaoError::Failed {
                node: name,
                detail: "the server sent an empty snapshot".into(),
            }));
        }
        Ok(*written)
    }

    /// Send the snapshot GET and wait (at most `streamIdle`) for the headers.
    async fn snapshot_request(
        &self,
        node: usize,
        token: &Secret,
    ) -> Result<reqwest::Response, Attempt> {
        let n = &self.nodes[node];
        let rb = self.request(n, Method::GET, SNAPSHOT_PATH, Some(token))?;
        let idle = self.timeouts.stream_idle;
        match tokio::time::timeout(idle, rb.send()).await {
            Err(_) => Err(Attempt::fatal(BaoError::Stalled {
                node: n.name.clone(),
                seconds: idle.as_secs(),
            })),
            Ok(Err(e)) => Err(transport_error(&n.name, &e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The configured node a redirect `location` points at, if any.
    fn redirect_target(&self, from: usize, location: &str) -> Result<usize, Attempt> {
        let n = &self.nodes[from];
        let fail = |detail: String| {
            Attempt::fatal(BaoError::Failed {
                node: n.name.clone(),
                detail,
            })
        };
        let to = n.address.join(location).map_err(|e| {
            fail(format!(
                "redirected to an invalid Location {location:?}: {e}"
            ))
        })?;
        let same_origin = |u: &Url| {
            u.scheme() == to.scheme()
                && u.host() == to.host()
                && u.port_or_known_default() == to.port_or_known_default()
        };
        match self.nodes.iter().position(|m| same_origin(&m.address)) {
            Some(j) if j != from => Ok(j),
            Some(_) => Err(fail("redirected to itself; not following".into())),
            None => Err(fail(format!(
                "redirected to {}, which is not a configured node; not sending the token there",
                to.origin().ascii_serialization()
            ))),
        }
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
        let name = self.node(node)?.name.clone();
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.attempts.saturating_sub(1))
            .with_jitter()
            .build();
        loop {
            if cancel.is_cancelled() {
                return Err(BaoError::Cancelled);
            }
            let mut written = 0;
            let attempt = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(BaoError::Cancelled),
                r = self.snapshot_attempt(node, &mut *out, &mut written) => r,
            };
            let err = match attempt {
                Ok(n) => return Ok(n),
                Err(a) if a.retry && written == 0 => a.err,
                Err(a) => return Err(a.err),
            };
            let Some(delay) = delays.next() else {
                return Err(err);
            };
            tracing::warn!(
                node = %name,
                error = %err,
                retry_in = ?delay,
                "snapshot attempt failed; retrying"
            );
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(BaoError::Cancelled),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// The client for one node, and the base URL its requests use.
impl From<SealStatus> for SealState {
    fn from(s: SealStatus) -> Self {
        SealState {
            initialized: s.initialized,
            sealed: s.sealed,
            threshold: s.t,
            shares: s.n,
            progress: s.progress,
            cluster_id: s.cluster_id,
        }
    }
}

#[derive(Deserialize)]
struct InitKeys {
    #[serde(default)]
    keys_base64: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    root_token: String,
}

impl HttpOpenBao {
    /// A JSON request with a whole-answer deadline; 200/204 expected.
    async fn send_json(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, BaoError> {
        let n = self.node(node)?;
        let mut rb = self.request(n, method, path, token)?;
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let reply = self.exchange(n, rb).await.map_err(|a| a.err)?;
        if reply.status != StatusCode::OK && reply.status != StatusCode::NO_CONTENT {
            return Err(status_error(&n.name, path, &reply).err);
        }
        Ok(reply.body)
    }

    fn parse<T: DeserializeOwned>(
        &self,
        node: usize,
        path: &str,
        body: &[u8],
    ) -> Result<T, BaoError> {
        serde_json::from_slice(body).map_err(|e| BaoError::Failed {
            node: self
                .nodes
                .get(node)
                .map(|n| n.name.clone())
                .unwrap_or_default(),
            detail: format!("{path} answered with an unexpected body ({e})"),
        })
    }
}

#[async_trait]
impl Ceremony for HttpOpenBao {
    async fn init(&self, node: usize, shares: u32, threshold: u32) -> Result<InitResult, BaoError> {
        let body = serde_json::json!({"secret_shares": shares, "secret_threshold": threshold});
        let raw = self
            .send_json(node, Method::PUT, "sys/init", None, Some(body))
            .await?;
        let k: InitKeys = self.parse(node, "sys/init", &raw)?;
        let keys = if k.keys_base64.is_empty() {
            k.keys
        } else {
            k.keys_base64
        };
        Ok(InitResult {
            keys: keys.into_iter().map(Secret::from).collect(),
            root_token: Secret::from(k.root_token),
        })
    }

    async fn unseal(&self, node: usize, key: &Secret) -> Result<SealState, BaoError> {
        let body = serde_json::json!({"key": key.expose()});
        let raw = self
            .send_json(node, Method::PUT, "sys/unseal", None, Some(body))
            .await?;
        self.parse::<SealStatus>(node, "sys/unseal", &raw)
            .map(SealState::from)
    }

    async fn seal_status(&self, node: usize) -> Result<SealState, BaoError> {
        HttpOpenBao::seal_status(self, node)
            .await
            .map(SealState::from)
    }

    async fn leader(&self, node: usize) -> Result<LeaderState, BaoError> {
        HttpOpenBao::leader(self, node).await.map(|l| LeaderState {
            is_self: l.is_self,
            leader_address: l.leader_address,
            raft_committed_index: l.raft_committed_index,
        })
    }

    async fn restore_force(
        &self,
        node: usize,
        token: &Secret,
        file: &std::path::Path,
    ) -> Result<(), BaoError> {
        let n = self.node(node)?;
        let path = "sys/storage/raft/snapshot-force";
        let f = tokio::fs::File::open(file).await.map_err(BaoError::Io)?;
        let len = f.metadata().await.map_err(BaoError::Io)?.len();
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
        let rb = self
            .request(n, Method::POST, path, Some(token))?
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        // The upload of a large snapshot may take longer than a plain request.
        let deadline = self.timeouts.request.max(Duration::from_secs(600));
        let send = send_and_read(rb);
        let reply = match tokio::time::timeout(deadline, send).await {
            Err(_) => {
                return Err(BaoError::Failed {
                    node: n.name.clone(),
                    detail: format!("{path}: no answer within {}s", deadline.as_secs()),
                });
            }
            Ok(Err(e)) => return Err(transport_error(&n.name, &e).err),
            Ok(Ok(r)) => r,
        };
        if reply.status != StatusCode::NO_CONTENT && reply.status != StatusCode::OK {
            return Err(status_error(&n.name, path, &reply).err);
        }
        Ok(())
    }

    async fn read(
        &self,
        node: usize,
        token: &Secret,
        path: &str,
    ) -> Result<serde_json::Value, BaoError> {
        let raw = self
            .send_json(
                node,
                Method::GET,
                path.trim_start_matches('/'),
                Some(token),
                None,
            )
            .await?;
        self.parse(node, path, &raw)
    }
}

fn node_client(
    address: &Url,
    server_name: Option<&str>,
    roots: &[reqwest::Certificate],
    timeouts: Timeouts,
) -> Result<(Url, reqwest::Client), String> {
    if !matches!(address.scheme(), "http" | "https") {
        return Err(format!("{address} must use http:// or https://"));
    }
    let host = address
        .host()
        .map(|h| h.to_owned())
        .ok_or_else(|| format!("{address} has no host"))?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        // A fresh connection per request: a pooled connection to a node
        // that restarted fails mid-request and would read as a failure of
        // the node that is now up.
        .pool_max_idle_per_host(0)
        .no_proxy()
        .user_agent(concat!("snapward/", env!("CARGO_PKG_VERSION")));
    if !roots.is_empty() {
        builder = builder.tls_certs_only(roots.iter().cloned());
    }
    let mut base = address.clone();
    if let Some(name) = server_name
        && address.scheme() == "https"
        && !matches!(&host, Host::Domain(d) if d.eq_ignore_ascii_case(name))
    {
        base.set_host(Some(name))
            .map_err(|e| format!("tls.serverName {name:?} is not a host name: {e}"))?;
        builder = builder.dns_resolver(Arc::new(PinnedResolver {
            server_name: name.to_string(),
            host,
        }));
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
    Ok((base, client))
}

/// Resolves `server_name` to the node's configured host (see module docs);
/// any other name normally.
struct PinnedResolver {
    server_name: String,
    host: Host<String>,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup: Result<String, IpAddr> =
            if name.as_str().eq_ignore_ascii_case(&self.server_name) {
                match &self.host {
                    Host::Ipv4(ip) => Err(IpAddr::V4(*ip)),
                    Host::Ipv6(ip) => Err(IpAddr::V6(*ip)),
                    Host::Domain(d) => Ok(d.clone()),
                }
            } else {
                Ok(name.as_str().to_string())
            };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match lookup {
                // Port 0: reqwest uses the URL's port.
                Err(ip) => vec![SocketAddr::new(ip, 0)],
                Ok(domain) => tokio::net::lookup_host((domain.as_str(), 0))
                    .await?
                    .collect(),
            };
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// A transport failure: connection errors may be retried, the rest not.
fn transport_error(node: &str, e: &reqwest::Error) -> Attempt {
    let (what, retry) = if e.is_connect() {
        ("cannot connect", true)
    } else if e.is_timeout() {
        ("timed out", false)
    } else {
        ("request failed", false)
    };
    Attempt {
        err: BaoError::Failed {
            node: node.to_string(),
            detail: format!("{what}: {}", chain(e)),
        },
        retry,
    }
}

/// An unexpected status: 403 is a refusal; 503 (sealed) may be retried;
/// everything else (429 standby, other 5xx, 4xx) fails without retry.
fn status_error(node: &str, path: &str, reply: &Reply) -> Attempt {
    let detail = format!("{path} answered {}: {}", reply.status, quote(&reply.body));
    if reply.status == StatusCode::FORBIDDEN {
        return Attempt::fatal(BaoError::Refused {
            node: node.to_string(),
            detail,
        });
    }
    Attempt {
        err: BaoError::Failed {
            node: node.to_string(),
            detail,
        },
        retry: reply.status == StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The server's `errors` list, or the start of the body.
fn quote(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        _ if body.is_empty() => "(empty body)".to_string(),
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.chars().count() > MAX_DETAIL {
        let cut: String = text.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The part of an error worth showing next to the node's name.
fn detail(e: &BaoError) -> String {
    match e {
        BaoError::Refused { detail, .. } | BaoError::Failed { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_prefers_the_errors_list() {
        assert_eq!(
            quote(br#"{"errors":["Vault is sealed"]}"#),
            "Vault is sealed"
        );
        assert_eq!(quote(b""), "(empty body)");
        assert_eq!(quote(b"<html>oops</html>\n"), "<html>oops</html>");
        assert!(quote("x".repeat(1000).as_bytes()).ends_with('…'));
    }

    #[test]
    fn server_name_replaces_the_host_of_https_nodes_only() {
        let t = Timeouts::default();
        let ip: Url = "https://10.1.2.3:8200".parse().unwrap();
        let (base, _) = node_client(&ip, Some("openbao.svc"), &[], t).unwrap();
        assert_eq!(base.as_str(), "https://openbao.svc:8200/");

        let plain: Url = "http://10.1.2.3:8200".parse().unwrap();
        let (base, _) = node_client(&plain, Some("openbao.svc"), &[], t).unwrap();
        assert_eq!(base.as_str(), "http://10.1.2.3:8200/");

        let same: Url = "https://OpenBao.svc:8200".parse().unwrap();
        let (base, _) = node_client(&same, Some("openbao.svc"), &[], t).unwrap();
        assert_eq!(base.as_str(), "https://openbao.svc:8200/");

        let ftp: Url = "ftp://10.1.2.3".parse().unwrap();
        assert!(node_client(&ftp, None, &[], t).is_err());
    }

    #[test]
    fn urls_keep_a_base_path() {
        let cfg: Cluster = serde_json::from_value(serde_json::json!({})).unwrap();
        let bao = HttpOpenBao::new(
            vec![("a".into(), "http://127.0.0.1:8200/prefix/".parse().unwrap())],
            &cfg,
            Timeouts::default(),
        )
        .unwrap();
        let n = &bao.nodes[0];
        assert_eq!(
            bao.url(n, "sys/leader").as_str(),
            "http://127.0.0.1:8200/prefix/v1/sys/leader"
        );
    }

    #[test]
    fn redirects_only_to_configured_nodes() {
        let cfg: Cluster = serde_json::from_value(serde_json::json!({})).unwrap();
        let bao = HttpOpenBao::new(
            vec![
                ("a".into(), "http://10.0.0.1:8200".parse().unwrap()),
                ("b".into(), "http://10.0.0.2:8200/".parse().unwrap()),
            ],
            &cfg,
            Timeouts::default(),
        )
        .unwrap();
        let to = |loc: &str| bao.redirect_target(0, loc).map_err(|a| a.err.to_string());
        assert_eq!(
            to("http://10.0.0.2:8200/v1/sys/storage/raft/snapshot").ok(),
            Some(1)
        );
        assert!(
            to("http://10.0.0.3:8200/v1/sys/storage/raft/snapshot")
                .unwrap_err()
                .contains("not a configured node")
        );
        assert!(
            to("/v1/sys/storage/raft/snapshot")
                .unwrap_err()
                .contains("itself")
        );
        assert!(to("https://10.0.0.2:8200/x").is_err());
    }

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
