//! Streaming a raft snapshot from the active node: the active-node check
//! right before the request, one hand-followed redirect to a configured
//! node, the stream-idle deadline, and bounded retries while nothing was
//! written.
//!
//! Must never: stream from a node that is not the active one at request
//! time (a standby serves its own, possibly stale, snapshot with 200),
//! send the token to a host that is not a configured node, or retry after
//! a byte reached `out`.

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::StreamExt;
use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::{Reply, read_capped};
use super::error::{Attempt, quote, status_error, transport_error};
use super::{Auth, HttpOpenBao, Leader};
use crate::backends::BaoError;
use crate::secret::Secret;

const SNAPSHOT_PATH: &str = "sys/storage/raft/snapshot";

impl HttpOpenBao {
    /// [`OpenBao::snapshot`](crate::backends::OpenBao::snapshot): attempts
    /// with backoff (see [`Retry`](super::Retry)) until one succeeds, one
    /// fails for good, or the run is cancelled.
    pub(super) async fn snapshot_retrying(
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

    /// Fails unless `node` says it is the active node right now.
    async fn ensure_active(&self, node: usize) -> Result<(), Attempt> {
        let leader: Leader = self.get_json(node, "sys/leader").await?;
        if leader.is_self {
            return Ok(());
        }
        let name = self.node(node)?.name.clone();
        let leader_is = leader
            .leader_address
            .map(|a| format!("the active node is {a}"))
            .unwrap_or_else(|| "no active node is known yet".into());
        Err(Attempt::fatal(BaoError::failed(
            &name,
            format!(
                "not the active node ({leader_is}); snapshots are taken from the active node only, because a standby serves its own possibly stale snapshot"
            ),
        )))
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
            let from = self.node(node)?;
            let Some(location) = location else {
                return Err(Attempt::fatal(BaoError::failed(
                    &from.name,
                    format!("answered {} without a Location", resp.status()),
                )));
            };
            target = self.redirect_target(node, &location)?;
            tracing::info!(
                node = %from.name,
                to = %self.node(target)?.name,
                "snapshot request redirected; following it once"
            );
            self.ensure_active(target).await?;
            resp = self.snapshot_request(target, &token).await?;
            if resp.status().is_redirection() {
                return Err(Attempt::fatal(BaoError::failed(
                    &self.node(target)?.name,
                    format!("redirected again ({}); not following", resp.status()),
                )));
            }
        }
        let name = self.node(target)?.name.clone();
        let status = resp.status();
        if status != StatusCode::OK {
            // At most MAX_BODY bytes of an error answer are read.
            let reply = tokio::time::timeout(self.timeouts.request, read_capped(resp))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(Reply {
                    status,
                    body: Default::default(),
                    cut: false,
                });
            if status == StatusCode::FORBIDDEN {
                if matches!(self.auth, Auth::Kubernetes { .. } | Auth::Cert { .. }) {
                    *self.login_token.lock().await = None;
                }
                return Err(Attempt::fatal(BaoError::refused(
                    &name,
                    format!(
                        "{SNAPSHOT_PATH} answered 403 ({}); the token needs `read` on {SNAPSHOT_PATH}",
                        quote(&reply.body)
                    ),
                )));
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
                    return Err(Attempt::fatal(
                        BaoError::failed(
                            &name,
                            format!("the snapshot stream broke after {written} bytes"),
                        )
                        .caused_by(e),
                    ));
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
            return Err(Attempt::fatal(BaoError::failed(
                &name,
                "the server sent an empty snapshot",
            )));
        }
        Ok(*written)
    }

    /// Send the snapshot GET and wait (at most `streamIdle`) for the headers.
    async fn snapshot_request(
        &self,
        node: usize,
        token: &Secret,
    ) -> Result<reqwest::Response, Attempt> {
        let n = self.node(node)?;
        let rb = self.request(n, Method::GET, SNAPSHOT_PATH, Some(token))?;
        let idle = self.timeouts.stream_idle;
        match tokio::time::timeout(idle, rb.send()).await {
            Err(_) => Err(Attempt::fatal(BaoError::Stalled {
                node: n.name.clone(),
                seconds: idle.as_secs(),
            })),
            Ok(Err(e)) => Err(transport_error(&n.name, e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// The configured node a redirect `location` points at, if any.
    fn redirect_target(&self, from: usize, location: &str) -> Result<usize, Attempt> {
        let n = self.node(from)?;
        let fail = |detail: String| BaoError::failed(&n.name, detail);
        let to = n.address.join(location).map_err(|e| {
            Attempt::fatal(
                fail(format!("redirected to an invalid Location {location:?}")).caused_by(e),
            )
        })?;
        let same_origin = |u: &Url| {
            u.scheme() == to.scheme()
                && u.host() == to.host()
                && u.port_or_known_default() == to.port_or_known_default()
        };
        match self.nodes.iter().position(|m| same_origin(&m.address)) {
            Some(j) if j != from => Ok(j),
            Some(_) => Err(Attempt::fatal(fail(
                "redirected to itself; not following".into(),
            ))),
            None => Err(Attempt::fatal(fail(format!(
                "redirected to {}, which is not a configured node; not sending the token there",
                to.origin().ascii_serialization()
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::openbao::Timeouts;
    use crate::policy::model::Cluster;

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
}
