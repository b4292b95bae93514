//! A fault-injecting HTTP/1.1 proxy for integration tests: it sits between
//! snapward and a real server (S3 or OpenBao) on 127.0.0.1 and forwards
//! every byte unmodified — so SigV4 signatures stay valid (the policy's
//! endpoint is the proxy, and the `Host` header the client signed is what
//! the server sees) — except for the requests a [`Rule`] picks, which get a
//! [`Fault`] instead: an error status with a body, a connection reset in the
//! middle of the request body, a stall, a response lost after the server
//! acted on the request, an edited response head, or a response cut after
//! some bytes.
//!
//! Rules are tried in the order they were added; the first that matches and
//! still has uses left fires (each use counts, see [`Rule::times`]). Every request is logged ([`FaultProxy::seen`]) with the
//! rule that fired, so tests assert on attempts (counts), never on time.
//!
//! Client connections are kept alive, requests handled in turn (no client
//! here pipelines); each forwarded request opens its own server connection. Bodies
//! are framed by Content-Length or chunked encoding, responses also by
//! connection close; a response to HEAD, 1xx, 204 and 304 has no body.
//!
//! Test-only code: panics (with context) instead of returning errors.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Longest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// The request line and headers of one request, as a rule sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/bucket/key?uploadId=…&partNumber=1`.
    pub target: String,
    /// Names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// Whether the query has this parameter (`uploadId`, `partNumber`, …).
    pub fn has_query(&self, param: &str) -> bool {
        self.target
            .split_once('?')
            .map(|(_, q)| q.split('&').any(|kv| kv.split('=').next() == Some(param)))
            .unwrap_or(false)
    }

    /// An S3 UploadPart (`PUT ?partNumber=…&uploadId=…`).
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT" && self.has_query("partNumber") && self.has_query("uploadId")
    }

    /// An S3 PutObject (a `PUT` of an object without multipart parameters).
    pub fn is_put_object(&self) -> bool {
        self.method == "PUT" && !self.has_query("uploadId") && !self.has_query("partNumber")
    }

    /// An S3 CompleteMultipartUpload (`POST ?uploadId=…`).
    pub fn is_complete_multipart(&self) -> bool {
        self.method == "POST" && self.has_query("uploadId")
    }
}

/// The status line and headers of a response, for [`Fault::EditResponse`].
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// Names as the server sent them.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Replaces the value of every header called `name` (case-insensitive);
    /// adds it if there is none.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let mut found = false;
        for (k, v) in &mut self.headers {
            if k.eq_ignore_ascii_case(name) {
                *v = value.to_string();
                found = true;
            }
        }
        if !found {
            self.headers.push((name.to_string(), value.to_string()));
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.version, self.status, self.reason);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        s.push_str("\r\n");
        s.into_bytes()
    }
}

/// A point a [`Cut::Hold`] connection waits at: the proxy says when it got
/// there ([`Gate::reached`]); the test decides when it may go on
/// ([`Gate::release`]). No timing involved.
#[derive(Default)]
pub struct Gate {
    reached: Notify,
    release: Notify,
}

impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Waits (at most `limit`, then panics) until a connection reached the gate.
    pub async fn reached(&self, limit: Duration) {
        tokio::time::timeout(limit, self.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("the proxy did not reach the gate within {limit:?}"));
    }

    /// Lets the connection at the gate (or the next one to reach it) go on.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// What happens to a response cut by [`Fault::CutResponse`].
#[derive(Clone)]
pub enum Cut {
    /// The connection stays open and silent until the client gives up.
    Stall,
    /// Both connections are reset (RST).
    Reset,
    /// Signal the gate, wait until it is released, then reset.
    Hold(Arc<Gate>),
}

/// What a matching request gets instead of plain forwarding.
#[derive(Clone)]
pub enum Fault {
    /// Answered by the proxy with this status, extra headers and body; the
    /// request (body read and dropped) never reaches the server.
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The head and the first `after` bytes of the request body reach the
    /// server, then both connections are reset (RST) mid-body.
    ResetRequestBody { after: u64 },
    /// The request is read and never answered: the connection stays open
    /// and silent until the client gives up.
    Stall,
    /// Forwarded (the server acts on it), but its response is dropped and
    /// the client's connection reset: a response lost on the way back.
    DropResponse,
    /// Forwarded; the response head passes through `edit` on its way back.
    EditResponse(Arc<dyn Fn(&mut ResponseHead) + Send + Sync>),
    /// Forwarded; the response head and its first `after` bytes (counted on
    /// the wire, chunk framing included) reach the client, then `then`.
    CutResponse { after: u64, then: Cut },
}

impl Fault {
    /// An S3 error answer (`<Error><Code>…`), e.g. `(503, "SlowDown", …)`.
    pub fn s3_error(status: u16, code: &str, message: &str) -> Self {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault-proxy</RequestId><HostId>fault-proxy</HostId></Error>"
        );
        Fault::Reply {
            status,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: body.into_bytes(),
        }
    }

    /// An OpenBao error answer (`{"errors": [...]}`).
    pub fn bao_error(status: u16, message: &str) -> Self {
        Fault::Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::json!({ "errors": [message] })
                .to_string()
                .into_bytes(),
        }
    }
}

type Matcher = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// Which requests get a fault, and how often.
pub struct Rule {
    name: String,
    when: Matcher,
    times: Option<usize>,
    fault: Fault,
}

impl Rule {
    /// Fires on every request `when` accepts (see [`Rule::times`]).
    pub fn new(
        name: &str,
        when: impl Fn(&Request) -> bool + Send + Sync + 'static,
        fault: Fault,
    ) -> Self {
        Self {
            name: name.to_string(),
            when: Arc::new(when),
            times: None,
            fault,
        }
    }

    /// Fires on at most `n` matching requests, then lets them through.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }
}

/// One request the proxy handled.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// The rule that fired, if any.
    pub rule: Option<String>,
    /// The status the client got (forwarded or injected), if any.
    pub status: Option<u16>,
    /// The forwarded response body as it went to the client (framing
    /// included), when a [`FaultProxy::record_bodies`] matcher picked it.
    pub body: Option<Vec<u8>>,
}

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    record: Mutex<Vec<Matcher>>,
}

impl Shared {
    /// The fault for this request (consuming one use of its rule), logged.
    fn decide(&self, req: &Request) -> (usize, Option<Fault>) {
        let mut rules = self.rules.lock().expect("rules");
        let mut fired = None;
        for rule in rules.iter_mut() {
            if !(rule.when)(req) || rule.times == Some(0) {
                continue;
            }
            if let Some(t) = rule.times.as_mut() {
                *t -= 1;
            }
            fired = Some((rule.name.clone(), rule.fault.clone()));
            break;
        }
        let mut seen = self.seen.lock().expect("seen");
        seen.push(Seen {
            method: req.method.clone(),
            target: req.target.clone(),
            rule: fired.as_ref().map(|(n, _)| n.clone()),
            status: None,
            body: None,
        });
        (seen.len() - 1, fired.map(|(_, f)| f))
    }

    fn records(&self, req: &Request) -> bool {
        self.record.lock().expect("record").iter().any(|m| m(req))
    }

    fn body(&self, at: usize, body: Vec<u8>) {
        if let Some(s) = self.seen.lock().expect("seen").get_mut(at) {
            s.body = Some(body);
        }
    }

    fn status(&self, at: usize, status: u16) {
        if let Some(s) = self.seen.lock().expect("seen").get_mut(at) {
            s.status = Some(status);
        }
    }
}

/// A running proxy (see the module docs); stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of `upstream` (`http://host:port`, plain HTTP).
    pub async fn start(upstream: &str) -> Self {
        let addr = upstream
            .trim_end_matches('/')
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("the proxy forwards plain http only, not {upstream}"));
        let upstream: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .unwrap_or_else(|e| panic!("resolve {addr}: {e}"))
            .next()
            .unwrap_or_else(|| panic!("{addr} resolves to nothing"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            record: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                // Dropped (aborted) with the accept loop.
                conns.spawn(async move {
                    let _ = serve(sock, &s).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}"),
            shared,
            task,
        }
    }

    /// Adds a rule (after the ones already there).
    pub fn add(&self, rule: Rule) {
        self.shared.rules.lock().expect("rules").push(rule);
    }

    /// Keeps a copy of the forwarded response body of every request `when`
    /// accepts (in [`Seen::body`]); the client gets it unchanged.
    pub fn record_bodies(&self, when: impl Fn(&Request) -> bool + Send + Sync + 'static) {
        self.shared
            .record
            .lock()
            .expect("record")
            .push(Arc::new(when));
    }

    /// Removes every rule: from now on everything is forwarded.
    pub fn clear(&self) {
        self.shared.rules.lock().expect("rules").clear();
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("seen").clone()
    }

    /// How many requests `pred` accepts.
    pub fn count(&self, pred: impl Fn(&Seen) -> bool) -> usize {
        self.seen().iter().filter(|s| pred(s)).count()
    }

    /// How many times the rule called `name` fired.
    pub fn fired(&self, name: &str) -> usize {
        self.count(|s| s.rule.as_deref() == Some(name))
    }

    /// The log as text, for assertion messages.
    pub fn log(&self) -> String {
        self.seen()
            .iter()
            .map(|s| {
                format!(
                    "{} {} → {}{}",
                    s.method,
                    s.target,
                    s.status.map_or("-".to_string(), |c| c.to_string()),
                    s.rule
                        .as_ref()
                        .map(|r| format!(" [fault: {r}]"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// How a body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

fn framing(headers: &[(String, String)], is_request: bool) -> std::io::Result<Framing> {
    if let Some(te) = header(headers, "transfer-encoding") {
        return if te.to_ascii_lowercase().contains("chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(bad(format!("unsupported transfer-encoding {te}")))
        };
    }
    match header(headers, "content-length") {
        Some(v) => v
            .parse()
            .map(Framing::Length)
            .map_err(|_| bad(format!("bad content-length {v}"))),
        None if is_request => Ok(Framing::None),
        None => Ok(Framing::UntilClose),
    }
}

/// Reads one head (through the empty line): raw bytes, or `None` at a clean
/// EOF before any byte.
async fn read_head<R: AsyncBufReadExt + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let n = r.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(bad("EOF inside a head"))
            };
        }
        if head.len() > MAX_HEAD {
            return Err(bad("head too large"));
        }
        let line = &head[start..];
        if line == b"\r\n" || line == b"\n" {
            if start == 0 {
                // A stray empty line between messages.
                head.clear();
                continue;
            }
            return Ok(Some(head));
        }
    }
}

/// (first line, headers) of a raw head.
fn parse_head(raw: &[u8]) -> std::io::Result<(String, Vec<(String, String)>)> {
    let text = std::str::from_utf8(raw).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((first, headers))
}

/// Copies one body from `from` to `to` (or drops it when `to` is `None`).
async fn copy_body<R, W>(
    from: &mut R,
    mut to: Option<&mut W>,
    framing: Framing,
) -> std::io::Result<()>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    async fn copy_exact<R, W>(from: &mut R, to: &mut Option<&mut W>, n: u64) -> std::io::Result<()>
    where
        R: AsyncBufReadExt + Unpin,
        W: AsyncWriteExt + Unpin,
    {
        let mut take = from.take(n);
        let copied = match to {
            Some(w) => tokio::io::copy(&mut take, w).await?,
            None => tokio::io::copy(&mut take, &mut tokio::io::sink()).await?,
        };
        if copied != n {
            return Err(bad(format!("body ended after {copied} of {n} bytes")));
        }
        Ok(())
    }
    async fn put<W: AsyncWriteExt + Unpin>(
        to: &mut Option<&mut W>,
        b: &[u8],
    ) -> std::io::Result<()> {
        match to {
            Some(w) => w.write_all(b).await,
            None => Ok(()),
        }
    }
    match framing {
        Framing::None => {}
        Framing::Length(n) => copy_exact(from, &mut to, n).await?,
        Framing::UntilClose => match &mut to {
            Some(w) => {
                tokio::io::copy(from, w).await?;
            }
            None => {
                tokio::io::copy(from, &mut tokio::io::sink()).await?;
            }
        },
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if from.read_until(b'\n', &mut line).await? == 0 {
                return Err(bad("EOF inside a chunked body"));
            }
            put(&mut to, &line).await?;
            let text = String::from_utf8_lossy(&line);
            let size = text.trim().split(';').next().unwrap_or_default();
            let size = u64::from_str_radix(size.trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {size:?}")))?;
            if size == 0 {
                // Trailers, through the empty line.
                loop {
                    let mut t = Vec::new();
                    if from.read_until(b'\n', &mut t).await? == 0 {
                        return Err(bad("EOF inside chunk trailers"));
                    }
                    put(&mut to, &t).await?;
                    if t == b"\r\n" || t == b"\n" {
                        break;
                    }
                }
                break;
            }
            // The chunk and its CRLF.
            copy_exact(from, &mut to, size + 2).await?;
        },
    }
    if let Some(w) = to {
        w.flush().await?;
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Whatever")
}

/// Reads from the client until it closes (the client gave up).
async fn wait_for_close<R: AsyncReadExt + Unpin>(client: &mut R) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = client.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

type Reader = BufReader<OwnedReadHalf>;

/// Closes a connection with a reset (RST), not a FIN.
fn reset(r: Reader, w: OwnedWriteHalf) {
    let _ = w.as_ref().set_zero_linger();
    w.forget();
    drop(r);
}

/// The final response head from the server (interim 1xx ones are passed
/// on to the client): parsed, and as raw bytes.
async fn read_response(
    up: &mut Reader,
    client: &mut OwnedWriteHalf,
) -> std::io::Result<(ResponseHead, Vec<u8>)> {
    loop {
        let Some(raw) = read_head(up).await? else {
            return Err(bad("the server closed without answering"));
        };
        let (status_line, headers) = parse_head(&raw)?;
        let mut sp = status_line.splitn(3, ' ');
        let head = ResponseHead {
            version: sp.next().unwrap_or("HTTP/1.1").to_string(),
            status: sp
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?,
            reason: sp.next().unwrap_or_default().to_string(),
            headers,
        };
        if (100..200).contains(&head.status) && head.status != 101 {
            client.write_all(&raw).await?;
            continue;
        }
        return Ok((head, raw));
    }
}

/// One client connection, request by request. Each forwarded request gets
/// a fresh server connection, closed after its response: a kept-alive one
/// the server had closed would turn into a failure the server never caused.
async fn serve(sock: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (r, mut cw) = sock.into_split();
    let mut cr = BufReader::new(r);
    loop {
        let Some(raw) = read_head(&mut cr).await? else {
            return Ok(());
        };
        let (line, headers) = parse_head(&raw)?;
        let mut parts = line.split_whitespace();
        let req = Request {
            method: parts.next().unwrap_or_default().to_string(),
            target: parts.next().unwrap_or_default().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        };
        let req_framing = framing(&req.headers, true)?;
        let client_close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (at, fault) = shared.decide(&req);

        match &fault {
            Some(Fault::Reply {
                status,
                headers,
                body,
            }) => {
                copy_body(&mut cr, None::<&mut OwnedWriteHalf>, req_framing).await?;
                let mut head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
                    reason(*status),
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                cw.write_all(head.as_bytes()).await?;
                if req.method != "HEAD" {
                    cw.write_all(body).await?;
                }
                cw.flush().await?;
                shared.status(at, *status);
                if client_close {
                    return Ok(());
                }
                continue;
            }
            Some(Fault::Stall) => {
                copy_body(&mut cr, None::<&mut OwnedWriteHalf>, req_framing).await?;
                wait_for_close(&mut cr).await;
                return Ok(());
            }
            _ => {}
        }

        let (ur, mut uw) = TcpStream::connect(shared.upstream).await?.into_split();
        let mut ur = BufReader::new(ur);

        if let Some(Fault::ResetRequestBody { after }) = &fault {
            uw.write_all(&raw).await?;
            let mut take = (&mut cr).take(*after);
            tokio::io::copy(&mut take, &mut uw).await?;
            uw.flush().await?;
            reset(cr, cw);
            reset(ur, uw);
            return Ok(());
        }

        let sent = async {
            uw.write_all(&raw).await?;
            copy_body(&mut cr, Some(&mut uw), req_framing).await
        }
        .await;
        if sent.is_err() {
            // The server may have answered early (and stopped reading): its
            // answer still goes back; no more body goes out.
            let _ = uw.shutdown().await;
        }
        let (mut head, resp_raw) = read_response(&mut ur, &mut cw).await?;
        let body_framing = if req.method == "HEAD" || matches!(head.status, 204 | 304) {
            Framing::None
        } else {
            framing(&head.headers, false)?
        };
        if let Some(Fault::DropResponse) = &fault {
            copy_body(&mut ur, None::<&mut OwnedWriteHalf>, body_framing).await?;
            reset(cr, cw);
            return Ok(());
        }
        let server_close = head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let out = match &fault {
            Some(Fault::EditResponse(edit)) => {
                edit(&mut head);
                head.to_bytes()
            }
            _ => resp_raw,
        };
        shared.status(at, head.status);
        cw.write_all(&out).await?;

        if let Some(Fault::CutResponse { after, then }) = &fault {
            let mut take = (&mut ur).take(*after);
            tokio::io::copy(&mut take, &mut cw).await?;
            cw.flush().await?;
            match then {
                Cut::Stall => wait_for_close(&mut cr).await,
                Cut::Reset => {}
                Cut::Hold(gate) => {
                    gate.reached.notify_one();
                    gate.release.notified().await;
                }
            }
            reset(cr, cw);
            reset(ur, uw);
            return Ok(());
        }

        if shared.records(&req) {
            let mut copy = Vec::new();
            copy_body(&mut ur, Some(&mut copy), body_framing).await?;
            cw.write_all(&copy).await?;
            cw.flush().await?;
            shared.body(at, copy);
        } else {
            copy_body(&mut ur, Some(&mut cw), body_framing).await?;
        }
        if sent.is_err()
            || client_close
            || server_close
            || matches!(body_framing, Framing::UntilClose)
        {
            return Ok(());
        }
    }
}
