//! `spec.notify` (issue 15 item 3) against a local HTTP server this test
//! starts on 127.0.0.1: a real backup (real OpenBao, filesystem target)
//! pings `start` and `0` and posts its summary to a webhook (with the
//! header from `headersFile`, without any secret in the body or the logs);
//! a failing run pings its exit code; a webhook that hangs and one that
//! answers 500 are retried within their bounds and never change the exit.
//! Plus the lint rules of the new fields.
//!
//! Needs `eval "$(scripts/test-env.sh)"`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::root;
use crate::support::work::{Bao, Work};
use snapward::commands::lint::render_human;
use snapward::policy;

/// How the test server answers a path.
#[derive(Clone, Copy)]
enum Reply {
    Ok,
    Status500,
    /// Reads the request, never answers (until the client gives up).
    Hang,
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 server: one request per connection, answered by the
/// first route whose prefix matches the path (`Ok` when none does).
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(routes: &[(&str, Reply)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes: Vec<(String, Reply)> =
            routes.iter().map(|(p, r)| (p.to_string(), *r)).collect();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (log, routes) = (log.clone(), routes.clone());
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    let mut headers = Vec::new();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some((n, v)) = h.split_once(':') {
                            if n.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                            headers.push((n.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let reply = routes
                        .iter()
                        .find(|(p, _)| path.starts_with(p.as_str()))
                        .map_or(Reply::Ok, |(_, r)| *r);
                    log.lock().unwrap().push(Seen {
                        method,
                        path,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let status = match reply {
                        Reply::Ok => "200 OK",
                        Reply::Status500 => "500 Internal Server Error",
                        Reply::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    };
                    let _ = w
                        .write_all(
                            format!(
                                "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK"
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Self { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self, prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

/// The ping UUID: the secret part of a healthchecks.io URL.
const PING_ID: &str = "6f1c0b52-9d0e-4c1a-8f3e-2b7a5d9c4e10";
/// The webhook's bearer token, in `headersFile`.
const HOOK_TOKEN: &str = "whk-8Jq2vN5xR7tL0pZ3";

fn work() -> Work {
    Work::with("snapward-notify-", Duration::from_secs(240))
}

/// A local-store-plus-filesystem-target policy with `notify`.
fn policy(work: &Work, bao: &Bao, token: &Path, notify: Value) -> std::path::PathBuf {
    let mut p = work.policy(
        "notified",
        bao.nodes(),
        token,
        &work.path("snapshots"),
        json!({"keepLast": 5}),
        "20s",
    );
    p["spec"]["targets"] = json!([{
        "name": "nfs",
        "filesystem": {"path": work.path("nfs").display().to_string()},
        "retention": {"keepLast": 5},
    }]);
    p["spec"]["notify"] = notify;
    work.write_policy("policy.yaml", &p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_pings_start_and_success_and_posts_its_summary_without_secrets() {
    let (bao, server) = tokio::join!(Bao::single(), Server::start(&[]));
    let work = work();
    let token = work.file("token", &bao.token);
    let headers = work.file(
        "hook-headers",
        &format!("Authorization: Bearer {HOOK_TOKEN}\n"),
    );
    let policy = policy(
        &work,
        &bao,
        &token,
        json!({
            "ping": {"url": server.url(&format!("/ping/{PING_ID}"))},
            "webhooks": [{"url": server.url("/hook"), "headersFile": headers.display().to_string()}],
        }),
    );
    let run = work.run_logged(&policy, &[], "json", Some("debug")).await;
    run.expect_exit(0);

    let pings = server.seen("/ping/");
    let paths: Vec<&str> = pings.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{PING_ID}/start"),
            format!("/ping/{PING_ID}/0")
        ],
        "{}",
        run.context()
    );
    assert!(pings.iter().all(|s| s.method == "POST"));
    assert_eq!(pings[1].body, "done", "the end ping carries the summary");
    let hooks = server.seen("/hook");
    assert_eq!(hooks.len(), 1, "one webhook call at the end");
    let hook = &hooks[0];
    assert_eq!(hook.method, "POST");
    assert_eq!(hook.header("content-type"), Some("application/json"));
    assert_eq!(
        hook.header("authorization"),
        Some(format!("Bearer {HOOK_TOKEN}").as_str()),
        "the header from headersFile"
    );
    let body: Value = serde_json::from_str(&hook.body).expect("JSON body");
    assert_eq!(body["policy"], "notified");
    assert_eq!(body["outcome"], "success");
    assert_eq!(body["exitCode"], 0);
    assert_eq!(body["summary"]["text"], "done");
    assert!(body["startedAt"].is_string() && body["finishedAt"].is_string());
    let actions = body["summary"]["actions"].as_array().expect("actions");
    assert!(
        actions
            .iter()
            .any(|a| a["id"] == "upload:nfs" && a["status"] == "succeeded"),
        "{body:#}"
    );
    // No secret in what was sent, logged or reported.
    let mut secrets = vec![bao.token.as_str(), HOOK_TOKEN];
    secrets.extend(bao.keys.iter().map(String::as_str));
    for s in &secrets {
        assert!(!hook.body.contains(s), "a secret in the webhook body");
        assert!(
            !run.everything().contains(s),
            "a secret in the run's output"
        );
    }
    assert!(
        !run.stderr.contains(PING_ID) && !run.report.to_string().contains(PING_ID),
        "the ping URL's id must never be logged or reported:\n{}",
        run.stderr
    );
    // The report lists each delivery by scheme and host only.
    let sent = run.report["notifications"]
        .as_array()
        .expect("notifications");
    assert_eq!(sent.len(), 3, "{sent:?}");
    for d in sent {
        assert_eq!(d["delivered"], true, "{d}");
        assert_eq!(d["endpoint"], format!("http://127.0.0.1:{}", server.port));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_pings_fail_with_its_exit_code_and_a_busy_one_sends_nothing() {
    let (bao, server) = tokio::join!(Bao::single(), Server::start(&[]));
    let work = work();
    // OpenBao refuses this token: the snapshot fails, the run says retry.
    let token = work.file("token", "s.NotAValidTokenAtAll0000");
    let policy = policy(
        &work,
        &bao,
        &token,
        json!({
            "ping": {"url": server.url(&format!("/ping/{PING_ID}"))},
            "webhooks": [{"url": server.url("/hook")}],
        }),
    );
    let run = work.run(&policy, &[]).await;
    run.expect_exit(4);
    let paths: Vec<String> = server.seen("/ping/").into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            format!("/ping/{PING_ID}/start"),
            format!("/ping/{PING_ID}/4")
        ],
        "{}",
        run.context()
    );
    let hooks = server.seen("/hook");
    assert_eq!(hooks.len(), 1);
    let body: Value = serde_json::from_str(&hooks[0].body).expect("JSON body");
    assert_eq!(body["outcome"], "retry");
    assert_eq!(body["exitCode"], 4);
    assert!(
        body["summary"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("failed — retry")),
        "{body:#}"
    );

    // Another run holds the lock (exit 5): that run notifies, this one
    // sends nothing at all.
    let before = server.seen("/").len();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(work.path("snapshots").join(".snapward-notified.lock"))
        .expect("open the lock file");
    lock.lock().expect("take the lock");
    let busy = work.run(&policy, &[]).await;
    busy.expect_exit_without_report(5);
    assert_eq!(
        server.seen("/").len(),
        before,
        "a busy run notified: {:?}",
        server.seen("/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_that_hang_or_answer_500_are_retried_within_bounds_and_never_fail_the_run() {
    let (bao, server) = tokio::join!(
        Bao::single(),
        Server::start(&[("/hang", Reply::Hang), ("/broken", Reply::Status500)])
    );
    let work = work();
    let token = work.file("token", &bao.token);
    let policy = policy(
        &work,
        &bao,
        &token,
        json!({
            "ping": {"url": server.url(&format!("/ping/{PING_ID}"))},
            "webhooks": [
                {"url": server.url("/hang"), "timeout": "1s", "attempts": 2},
                {"url": server.url("/broken"), "attempts": 3},
                // A headers file that is not there: not sent, said so.
                {"url": server.url("/unsent"), "headersFile": work.path("no-such-headers").display().to_string()},
            ],
        }),
    );
    // Bounded: the hanging webhook cannot hold the run past the work
    // dir's run limit (a run that does not end fails the test as a hang).
    let run = work.run(&policy, &[]).await;
    // The run's own outcome stands.
    run.expect_exit(0);
    assert_eq!(
        server.seen("/hang").len(),
        2,
        "the hanging webhook: 2 attempts"
    );
    assert_eq!(
        server.seen("/broken").len(),
        3,
        "the 500 webhook: 3 attempts"
    );
    assert_eq!(server.seen("/ping/").len(), 2, "the ping still went out");
    let sent = run.report["notifications"]
        .as_array()
        .expect("notifications");
    let failed: Vec<&Value> = sent.iter().filter(|d| d["delivered"] == false).collect();
    assert_eq!(failed.len(), 3, "{sent:?}");
    assert!(server.seen("/unsent").is_empty());
    assert!(
        failed.iter().any(|d| d["attempts"] == 0
            && d["error"]
                .as_str()
                .is_some_and(|e| e.contains("headersFile") && e.contains("no-such-headers"))),
        "{sent:?}"
    );
    assert!(
        failed.iter().any(|d| d["attempts"] == 2
            && d["error"]
                .as_str()
                .is_some_and(|e| e.contains("no answer within 1s"))),
        "{sent:?}"
    );
    assert!(
        failed
            .iter()
            .any(|d| d["attempts"] == 3 && d["error"].as_str().is_some_and(|e| e.contains("500"))),
        "{sent:?}"
    );
    assert!(
        run.stderr.contains("notification failed"),
        "a warning in the log:\n{}",
        run.stderr
    );
}

/// The lint rules of `spec.notify`: http(s) only, no credentials inside
/// the URL (with the way out: headersFile), timeouts that parse.
#[test]
fn notify_urls_and_timeouts_are_linted() {
    let text = std::fs::read_to_string(root().join("policies/local-ci.yaml"))
        .expect("example policy")
        .replacen(
            "spec:\n",
            "spec:\n  notify:\n    ping: {url: 'ftp://hc.example/abc'}\n    webhooks:\n      - {url: 'https://bot:hunter2@hooks.example/x', timeout: soon}\n      - {url: 'https://hooks.example/ok', timeout: 5s, attempts: 3}\n",
            1,
        );
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .expect("line")
    };
    let report = policy::lint_text("p.yaml", &text, true);
    let codes: Vec<(&str, usize)> = report
        .diagnostics
        .iter()
        .map(|d| (d.code.as_str(), d.line))
        .collect();
    let has = |code: &str, line: usize| codes.iter().any(|(c, l)| c.ends_with(code) && *l == line);
    assert!(has("endpoint-not-url", line_of("ftp://")), "{codes:?}");
    assert!(has("credentials-in-url", line_of("bot:")), "{codes:?}");
    assert!(has("bad-duration", line_of("timeout: soon")), "{codes:?}");
    let good = line_of("hooks.example/ok");
    assert!(
        !codes.iter().any(|(_, l)| *l == good),
        "a good webhook lints clean: {codes:?}"
    );
    let shown = render_human(&report.diagnostics);
    assert!(
        shown.contains("headersFile"),
        "the help names the way out:\n{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    // Schema: attempts are bounded.
    let text = text.replacen("attempts: 3", "attempts: 50", 1);
    let report = policy::lint_text("p.yaml", &text, true);
    assert!(
        report.diagnostics.iter().any(|d| d.line == good),
        "{:?}",
        report
            .diagnostics
            .iter()
            .map(|d| (d.line, &d.message))
            .collect::<Vec<_>>()
    );
}
