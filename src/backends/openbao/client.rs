//! The HTTP client of one node (reqwest + rustls) and the request/answer
//! plumbing every call uses: URLs under `/v1/`, the token header, the
//! whole-answer deadline, JSON bodies.
//!
//! - **Cleartext**: a token, a request body (unseal key shares, the login
//!   JWT) or a `sys/init` (its answer holds the keys and the root token) is
//!   sent over plain `http://` only to a loopback address (127.0.0.0/8,
//!   ::1, `localhost`) unless `spec.cluster.allowInsecureHttp` is true;
//!   otherwise the call is refused ([`InsecureHttp`]) before anything is
//!   sent. Reading a node's state (no token, no body) is always allowed.
//! - **Answers** are read up to [`MAX_BODY`] (1 MiB); a longer one is not
//!   read further and fails the call. Snapshots stream and never come here.
//! - **Secret buffers**: answers and JSON request bodies live in
//!   [`Zeroizing`] buffers that also wipe what they outgrow. Copies inside
//!   hyper and rustls (their I/O buffers) are out of reach.
//!
//! Must never: follow a redirect by itself, use a proxy from the
//! environment, pool connections (see the module docs of `openbao`), or
//! let a token show in a request's Debug output (the header is marked
//! sensitive).

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use url::{Host, Url};
use zeroize::{Zeroize, Zeroizing};

use super::error::{Attempt, quote, status_error, transport_error};
use super::{HttpOpenBao, Node};
use crate::backends::BaoError;
use crate::secret::Secret;

pub(super) use super::connect::{client_identity, node_client, tls_refusal};

const TOKEN_HEADER: &str = "X-Vault-Token";

/// Most bytes of a non-streaming answer that are read: OpenBao's JSON and
/// error answers are a few KiB.
pub(super) const MAX_BODY: usize = 1 << 20;

/// A complete non-streaming answer (or its first [`MAX_BODY`] bytes).
pub(super) struct Reply {
    pub(super) status: StatusCode,
    /// Wiped on drop: init, unseal and login answers hold key shares and
    /// tokens.
    pub(super) body: Zeroizing<Vec<u8>>,
    /// The answer was longer than [`MAX_BODY`]: `body` is its start, the
    /// rest was not read.
    pub(super) cut: bool,
}

/// Sends `rb` and reads the answer, at most [`MAX_BODY`] bytes of it (no
/// timeout: the caller's).
pub(super) async fn send_and_read(rb: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
    let resp = rb.send().await?;
    read_capped(resp).await
}

/// Reads at most [`MAX_BODY`] bytes of `resp`'s body; a longer body is
/// dropped unread past that point (`cut`).
pub(super) async fn read_capped(mut resp: reqwest::Response) -> Result<Reply, reqwest::Error> {
    let status = resp.status();
    let hint = resp.content_length().unwrap_or(0);
    let hint = usize::try_from(hint).unwrap_or(MAX_BODY).min(MAX_BODY);
    let mut body = Zeroizing::new(Vec::with_capacity(hint));
    let mut cut = false;
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY.saturating_sub(body.len());
        if chunk.len() > room {
            push_wiping(&mut body, chunk.get(..room).unwrap_or_default());
            cut = true;
            break;
        }
        push_wiping(&mut body, &chunk);
    }
    Ok(Reply { status, body, cut })
}

/// Appends `data`, moving to a bigger buffer by hand so the one it
/// outgrows is wiped too (`Vec`'s own growth would free it unwiped).
pub(super) fn push_wiping(buf: &mut Zeroizing<Vec<u8>>, data: &[u8]) {
    let need = buf.len().saturating_add(data.len());
    if need > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(need.max(buf.capacity() * 2)));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(data);
}

/// A [`Zeroizing`] buffer to serialize a secret-bearing JSON body into.
struct WipingWriter(Zeroizing<Vec<u8>>);

impl std::io::Write for WipingWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        push_wiping(&mut self.0, data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON in a wiped buffer; every string in `value` is wiped.
pub(super) fn json_body(
    mut value: serde_json::Value,
) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut out = WipingWriter(Zeroizing::new(Vec::with_capacity(256)));
    let written = serde_json::to_writer(&mut out, &value);
    wipe_strings(&mut value);
    written.map(|()| out.0)
}

fn wipe_strings(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(wipe_strings),
        _ => {}
    }
}

/// A request body that is wiped when reqwest (hyper) drops it.
pub(super) fn wiped_body(bytes: Zeroizing<Vec<u8>>) -> reqwest::Body {
    reqwest::Body::from(bytes::Bytes::from_owner(bytes))
}

/// Why a secret is not sent to a node: plain http to an address that is
/// not loopback, without `spec.cluster.allowInsecureHttp`.
#[derive(Debug, thiserror::Error)]
#[error(
    "will not send {what} over plain http to {address} (not a loopback address): use https:// (with tls.caFile), or set spec.cluster.allowInsecureHttp: true if the network to the node is trusted"
)]
pub(super) struct InsecureHttp {
    pub(super) what: String,
    pub(super) address: String,
}

/// Is `url`'s host 127.0.0.0/8, ::1 (also as ::ffff:127.x) or `localhost`?
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(Host::Domain(d)) => d.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl HttpOpenBao {
    fn url(&self, node: &Node, path: &str) -> Url {
        let mut url = node.base.clone();
        let prefix = node.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}/v1/{path}"));
        url
    }

    /// Refuses to send `what` (a secret) to `node` over plain http to an
    /// address that is not loopback, unless the policy allows it (see the
    /// module docs).
    pub(super) fn secret_channel(&self, node: &Node, what: &str) -> Result<(), BaoError> {
        if node.address.scheme() != "http" || self.allow_insecure_http || is_loopback(&node.address)
        {
            return Ok(());
        }
        Err(BaoError::refused(&node.name, "").caused_by(InsecureHttp {
            what: what.to_string(),
            address: node.address.as_str().trim_end_matches('/').to_string(),
        }))
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
        if token.is_some() {
            self.secret_channel(node, &format!("a token ({path})"))?;
        }
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
            Ok(Ok(reply)) if reply.cut => Err(Attempt::fatal(BaoError::failed(
                &node.name,
                format!(
                    "the answer ({}) is longer than {} bytes, the limit for anything but a snapshot; not read further",
                    reply.status, MAX_BODY
                ),
            ))),
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
    ) -> Result<Zeroizing<Vec<u8>>, BaoError> {
        let (name, reply) = self
            .send_json_reply(node, method, path, token, body)
            .await?;
        expect_ok(&name, path, reply)
    }

    /// A JSON request with a whole-answer deadline: the node's name and
    /// the answer, whatever its status (see [`expect_ok`]). A request with
    /// a body (unseal key shares, `sys/init`, whose answer holds the keys)
    /// is secret-bearing: see [`HttpOpenBao::secret_channel`]; the body is
    /// serialized into a wiped buffer and its strings are wiped.
    pub(super) async fn send_json_reply(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&Secret>,
        body: Option<serde_json::Value>,
    ) -> Result<(String, Reply), BaoError> {
        let n = self.node(node)?;
        if body.is_some() {
            self.secret_channel(n, &format!("the {path} request (key shares or tokens)"))?;
        }
        let mut rb = self.request(n, method, path, token)?;
        if let Some(b) = body {
            let bytes = json_body(b).map_err(|e| {
                BaoError::failed(&n.name, format!("cannot encode the {path} request")).caused_by(e)
            })?;
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(wiped_body(bytes));
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
pub(super) fn expect_ok(
    node: &str,
    path: &str,
    reply: Reply,
) -> Result<Zeroizing<Vec<u8>>, BaoError> {
    if reply.status != StatusCode::OK && reply.status != StatusCode::NO_CONTENT {
        return Err(status_error(node, path, &reply).err);
    }
    Ok(reply.body)
}

#[cfg(test)]
mod tests {
    use super::super::Timeouts;
    use super::super::connect::ClientError;
    use super::*;
    use crate::backends::Ceremony;
    use crate::policy::model::Cluster;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What a listener on 127.0.0.1 received and how much it wrote.
    #[derive(Default)]
    struct Recorded {
        received: Mutex<Vec<u8>>,
        connections: AtomicU64,
        written: AtomicU64,
    }

    impl Recorded {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
        }
    }

    /// A listener that records every byte of each request and answers
    /// `head`, then (with `endless`) writes `a`s until the client goes.
    async fn listener(head: &'static str, endless: bool) -> (u16, Arc<Recorded>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let rec = Arc::new(Recorded::default());
        let r = Arc::clone(&rec);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = l.accept().await {
                r.connections.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    // Read the request: up to the blank line and then any body.
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        r.received.lock().unwrap().extend_from_slice(&buf[..n]);
                        let got = r.text();
                        let Some(end) = got.find("\r\n\r\n") else {
                            continue;
                        };
                        let len = got
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if !endless {
                        return;
                    }
                    let chunk = vec![b'a'; 64 * 1024];
                    loop {
                        match conn.write(&chunk).await {
                            Ok(n) if n > 0 => r.written.fetch_add(n as u64, Ordering::SeqCst),
                            _ => return,
                        };
                    }
                });
            }
        });
        (port, rec)
    }

    /// A backend whose one node is `http://openbao.internal:<port>` (not
    /// loopback by name), resolved to the listener on 127.0.0.1.
    fn remote_http_node(port: u16, cfg: serde_json::Value) -> HttpOpenBao {
        let cfg: Cluster = serde_json::from_value(cfg).unwrap();
        let address: Url = format!("http://openbao.internal:{port}").parse().unwrap();
        let mut bao =
            HttpOpenBao::new(vec![("bao-0".into(), address)], &cfg, Timeouts::default()).unwrap();
        bao.nodes[0].client = reqwest::Client::builder()
            .resolve("openbao.internal", SocketAddr::from(([127, 0, 0, 1], port)))
            .no_proxy()
            .build()
            .unwrap();
        bao
    }

    fn insecure(e: &BaoError) -> Option<&InsecureHttp> {
        std::error::Error::source(e).and_then(|s| s.downcast_ref::<InsecureHttp>())
    }

    /// Issue 18, item 3: over plain http to a node that is not loopback,
    /// no unseal key, init, token or login JWT is sent unless the policy
    /// allows it; the listener proves nothing left (and, when allowed, that
    /// it would have seen the key).
    #[tokio::test]
    async fn secrets_are_not_sent_over_plain_http_to_a_remote_node() {
        let (port, rec) = listener("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false).await;
        let dir = tempfile::tempdir().unwrap();
        let jwt = dir.path().join("jwt");
        std::fs::write(&jwt, "JWT-SECRET").unwrap();
        let k8s = serde_json::json!({"auth": {"kubernetes": {"role": "r", "jwtFile": jwt}}});
        let bao = remote_http_node(port, k8s.clone());

        let key = Secret::new("KEY-SHARE-SECRET");
        let token = Secret::new("s.TOKEN-SECRET");
        let address = format!("http://openbao.internal:{port}");
        let unseal = bao.unseal(0, &key).await.unwrap_err();
        let init = bao
            .init(0, 1, 1, crate::cluster::SealKind::Shamir)
            .await
            .unwrap_err();
        let read = bao.read(0, &token, "secret/canary").await.unwrap_err();
        let login = bao.token(0).await.err().unwrap().err;
        for e in [&unseal, &init, &read, &login] {
            assert!(matches!(e, BaoError::Refused { .. }), "{e:?}");
            let why = insecure(e).unwrap_or_else(|| panic!("not InsecureHttp: {e:?}"));
            assert_eq!(why.address, address);
            let text = e.to_string();
            assert!(
                text.contains("spec.cluster.allowInsecureHttp: true"),
                "{text}"
            );
            assert!(!text.contains("SECRET"), "{text}");
        }
        assert_eq!(
            unseal.to_string(),
            format!(
                "node `bao-0` refused: will not send the sys/unseal request (key shares or tokens) over plain http to {address} (not a loopback address): use https:// (with tls.caFile), or set spec.cluster.allowInsecureHttp: true if the network to the node is trusted"
            )
        );
        assert!(
            login
                .to_string()
                .contains("will not send the service-account token (Kubernetes login)"),
            "{login}"
        );
        assert_eq!(rec.connections.load(Ordering::SeqCst), 0, "{}", rec.text());

        // Reading state carries no secret: allowed.
        bao.get_json::<serde_json::Value>(0, "sys/seal-status")
            .await
            .map_err(|a| a.err)
            .unwrap();
        assert!(
            rec.text().starts_with("GET /v1/sys/seal-status"),
            "{}",
            rec.text()
        );

        // With allowInsecureHttp the same calls reach the node: this is what
        // left before the check.
        let mut allowed = k8s;
        allowed["allowInsecureHttp"] = true.into();
        let bao = remote_http_node(port, allowed);
        let _ = bao.unseal(0, &key).await;
        let _ = bao.token(0).await;
        let seen = rec.text();
        assert!(seen.contains("KEY-SHARE-SECRET"), "{seen}");
        assert!(seen.contains("JWT-SECRET"), "{seen}");
    }

    /// Loopback stays allowed (tests, the demo): 127.0.0.0/8, ::1, localhost.
    #[test]
    fn loopback_addresses_are_recognised() {
        for ok in [
            "http://127.0.0.1:8200",
            "http://127.9.9.9",
            "http://[::1]:8200",
            "http://localhost:1",
            "http://LOCALHOST.",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(&ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "http://10.0.0.1",
            "http://openbao.internal",
            "http://localhost.example",
            "http://[fd00::1]",
            "http://0.0.0.0",
        ] {
            assert!(!is_loopback(&no.parse().unwrap()), "{no}");
        }
    }

    /// Issue 18, item 4: an answer that never ends is read up to 1 MiB,
    /// then refused — not buffered until memory or the deadline runs out.
    #[tokio::test]
    async fn an_endless_answer_is_cut_at_one_mib() {
        let (port, rec) = listener(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n",
            true,
        )
        .await;
        let cfg: Cluster = serde_json::from_value(serde_json::json!({})).unwrap();
        let address: Url = format!("http://127.0.0.1:{port}").parse().unwrap();
        let bao =
            HttpOpenBao::new(vec![("bao-0".into(), address)], &cfg, Timeouts::default()).unwrap();
        let err = bao.seal_status(0).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "node `bao-0` failed: the answer (200 OK) is longer than 1048576 bytes, the limit for anything but a snapshot; not read further"
        );
        // The server could push its socket buffers' worth past the cap, no more.
        let written = rec.written.load(Ordering::SeqCst);
        assert!(written < 64 << 20, "the client took {written} bytes");
    }

    /// Item 6 (part): the buffers around key shares and tokens wipe
    /// themselves. This pins the types (a test cannot watch freed memory).
    #[test]
    fn secret_bearing_buffers_are_zeroizing() {
        fn zeroizing(_: &Zeroizing<Vec<u8>>) {}
        let reply = Reply {
            status: StatusCode::OK,
            body: Zeroizing::new(Vec::new()),
            cut: false,
        };
        zeroizing(&reply.body);
        let body = json_body(serde_json::json!({"key": "abc"})).unwrap();
        zeroizing(&body);
        assert_eq!(&body[..], br#"{"key":"abc"}"#);
        let mut v = serde_json::json!({"a": ["x", {"b": "yy"}], "n": 1});
        wipe_strings(&mut v);
        assert_eq!(v, serde_json::json!({"a": ["", {"b": ""}], "n": 1}));
        let mut buf = Zeroizing::new(Vec::with_capacity(1));
        push_wiping(&mut buf, b"hello");
        push_wiping(&mut buf, b" world");
        assert_eq!(&buf[..], b"hello world");
    }

    #[test]
    fn server_name_replaces_the_host_of_https_nodes_only() {
        let t = Timeouts::default();
        let ip: Url = "https://10.1.2.3:8200".parse().unwrap();
        let (base, _) = node_client(&ip, Some("openbao.svc"), &[], None, t).unwrap();
        assert_eq!(base.as_str(), "https://openbao.svc:8200/");

        let plain: Url = "http://10.1.2.3:8200".parse().unwrap();
        let (base, _) = node_client(&plain, Some("openbao.svc"), &[], None, t).unwrap();
        assert_eq!(base.as_str(), "http://10.1.2.3:8200/");

        let same: Url = "https://OpenBao.svc:8200".parse().unwrap();
        let (base, _) = node_client(&same, Some("openbao.svc"), &[], None, t).unwrap();
        assert_eq!(base.as_str(), "https://openbao.svc:8200/");

        let ftp: Url = "ftp://10.1.2.3".parse().unwrap();
        assert!(node_client(&ftp, None, &[], None, t).is_err());
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
