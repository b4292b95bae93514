//! The HTTP client of one node (reqwest + rustls) and the request/answer
//! plumbing every call uses: URLs under `/v1/`, the token header, the
//! whole-answer deadline, JSON bodies.
//!
//! Must never: follow a redirect by itself, use a proxy from the
//! environment, pool connections (see the module docs of `openbao`), or
//! let a token show in a request's Debug output (the header is marked
//! sensitive).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::{Host, Url};

use super::error::{Attempt, quote, status_error, transport_error};
use super::{HttpOpenBao, Node, Timeouts};
use crate::backends::BaoError;
use crate::secret::Secret;

const TOKEN_HEADER: &str = "X-Vault-Token";

/// A complete non-streaming answer.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

/// Sends `rb` and reads the whole answer (no timeout: the caller's).
pub(super) async fn send_and_read(rb: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let resp = rb.send().await?;
    let status = resp.status();
    let body = resp.bytes().await?;
    Ok(Reply {
        status,
        body: body.to_vec(),
    })
}

impl HttpOpenBao {
    fn url(&self, node: &Node, path: &str) -> Url {
        let mut url = node.base.clone();
        let prefix = node.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}/v1/{path}"));
        url
    }

    /// A request to one node; the token (if any) goes in `X-Vault-Token`,
    /// marked sensitive so no debug output of the request shows it.
    pub(super) fn request(
        &self,
        node: &Node,
        method: Method,
        path: &str,
        token: Option<&Secret>,
    ) -> Result<reqwest::RequestBuilder, BaoError> {
        let mut rb = node.client.request(method, self.url(node, path));
        if let Some(token) = token {
            // The cause (`InvalidHeaderValue`) says nothing more; it is not
            // kept.
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                BaoError::refused(
                    &node.name,
                    "the token holds characters not allowed in an HTTP header",
                )
            })?;
            value.set_sensitive(true);
            rb = rb.header(TOKEN_HEADER, value);
        }
        Ok(rb)
    }

    /// Send a non-streaming request and read the whole answer, within the
    /// request timeout.
    pub(super) async fn exchange(
        &self,
        node: &Node,
        rb: reqwest::RequestBuilder,
    ) -> Result<Reply, Attempt> {
        let send = send_and_read(rb);
        match tokio::time::timeout(self.timeouts.request, send).await {
            Err(_) => Err(Attempt::fatal(BaoError::failed(
                &node.name,
                format!(
                    "no complete answer within {}s",
                    self.timeouts.request.as_secs_f32()
                ),
            ))),
            Ok(Err(e)) => Err(transport_error(&node.name, e)),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// `GET /v1/<path>` without a token, expecting 200 with JSON `T`.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        node: usize,
        path: &str,
    ) -> Result<T, Attempt> {
        let n = self.node(node)?;
        let rb = self.request(n, Method::GET, path, None)?;
        let reply = self.exchange(n, rb).await?;
        if reply.status != StatusCode::OK {
            return Err(status_error(&n.name, path, &reply));
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            Attempt::fatal(
                BaoError::failed(
                    &n.name,
                    format!(
                        "{path} answered 200 with an unexpected body: {}",
                        quote(&reply.body)
                    ),
                )
                .caused_by(e),
            )
        })
    }

    /// A JSON request with a whole-answer deadline; 200/204 expected.
    pub(super) async fn send_json(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, BaoError> {
        let (name, reply) = self
            .send_json_reply(node, method, path, token, body)
            .await?;
        expect_ok(&name, path, reply)
    }

    /// A JSON request with a whole-answer deadline: the node's name and
    /// the answer, whatever its status (see [`expect_ok`]).
    pub(super) async fn send_json_reply(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<serde_json::Value>,
    ) -> Result<(String, Reply), BaoError> {
        let n = self.node(node)?;
        let mut rb = self.request(n, method, path, token)?;
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let reply = self.exchange(n, rb).await.map_err(|a| a.err)?;
        Ok((n.name.clone(), reply))
    }

    /// The JSON answer of a ceremony call. These answers hold key shares,
    /// tokens or the canary's secret: neither the body nor serde's message
    /// (which can quote a value) goes into the error, only where parsing
    /// stopped ([`Unparsable`]).
    pub(super) fn parse<T: DeserializeOwned>(
        &self,
        node: usize,
        path: &str,
        body: &[u8],
    ) -> Result<T, BaoError> {
        serde_json::from_slice(body).map_err(|e| {
            let name = self.nodes.get(node).map(|n| n.name.as_str());
            BaoError::failed(
                name.unwrap_or_default(),
                format!("{path} answered with an unexpected body"),
            )
            .caused_by(Unparsable::from(&e))
        })
    }
}

/// Where a secret-bearing JSON answer stopped parsing, without serde's
/// message (which can quote the offending value).
#[derive(Debug, thiserror::Error)]
#[error("{category} error at line {line} column {column}")]
pub(super) struct Unparsable {
    category: &'static str,
    line: usize,
    column: usize,
}

impl From<&serde_json::Error> for Unparsable {
    fn from(e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let category = match e.classify() {
            Category::Io => "I/O",
            Category::Syntax => "syntax",
            Category::Data => "data",
            Category::Eof => "end-of-input",
        };
        Self {
            category,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// The body of a 200/204 answer, else the status as an error.
pub(super) fn expect_ok(node: &str, path: &str, reply: Reply) -> Result<Vec<u8>, BaoError> {
    if reply.status != StatusCode::OK && reply.status != StatusCode::NO_CONTENT {
        return Err(status_error(node, path, &reply).err);
    }
    Ok(reply.body)
}

/// Why a node's client cannot be built. Each message says only its own
/// part; the cause follows when the error is shown (see
/// [`chain`](crate::backends::chain)).
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    #[error("{address} must use http:// or https://")]
    Scheme { address: Url },
    #[error("{address} has no host")]
    NoHost { address: Url },
    #[error("tls.serverName {name:?} is not a host name")]
    ServerName {
        name: String,
        #[source]
        source: url::ParseError,
    },
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// The client for one node, and the base URL its requests use.
pub(super) fn node_client(
    address: &Url,
    server_name: Option<&str>,
    roots: &[reqwest::Certificate],
    timeouts: Timeouts,
) -> Result<(Url, reqwest::Client), ClientError> {
    if !matches!(address.scheme(), "http" | "https") {
        return Err(ClientError::Scheme {
            address: address.clone(),
        });
    }
    let host = address
        .host()
        .map(|h| h.to_owned())
        .ok_or_else(|| ClientError::NoHost {
            address: address.clone(),
        })?;
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
            .map_err(|source| ClientError::ServerName {
                name: name.to_string(),
                source,
            })?;
        builder = builder.dns_resolver(Arc::new(PinnedResolver {
            server_name: name.to_string(),
            host,
        }));
    }
    let client = builder.build().map_err(ClientError::Build)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Cluster;

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
    fn configuration_errors_keep_their_cause_and_their_message() {
        let cfg: Cluster = serde_json::from_value(serde_json::json!({})).unwrap();
        let ftp = vec![("a".to_string(), "ftp://10.1.2.3".parse().unwrap())];
        let err = HttpOpenBao::new(ftp, &cfg, Timeouts::default()).unwrap_err();
        assert!(matches!(err, BaoError::Refused { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "node `a` refused: ftp://10.1.2.3/ must use http:// or https://"
        );
        let err = std::error::Error::source(&err).expect("a source");
        assert!(matches!(
            err.downcast_ref::<ClientError>(),
            Some(ClientError::Scheme { .. })
        ));

        let cfg: Cluster =
            serde_json::from_value(serde_json::json!({"tls": {"caFile": "/nonexistent/ca.pem"}}))
                .unwrap();
        let node = vec![("a".to_string(), "https://10.1.2.3".parse().unwrap())];
        let err = HttpOpenBao::new(node, &cfg, Timeouts::default()).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "node `cluster` refused: cannot read tls.caFile /nonexistent/ca.pem: No such file"
            ),
            "{err}"
        );
        let io = std::error::Error::source(&err).expect("a source");
        assert!(io.downcast_ref::<std::io::Error>().is_some());
    }
}
