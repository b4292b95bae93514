//! The token a snapshot request carries: none, one given in memory, a token
//! file re-read on every snapshot (mounted Secrets rotate), or a login
//! (`POST auth/<mount>/login`) whose token is cached:
//!
//! - **TLS certificate** (`cert`): over the connection that presents
//!   `cluster.tls`'s client certificate, `{name: role}`;
//!
//! - **Kubernetes**: `{role, jwt}` with the service-account JWT;
//! - **JWT** (OpenBao's `jwt` method): `{role, jwt}` with the JWT in
//!   `jwtFile` (e.g. a projected service-account token);
//! - **AppRole**: `{role_id, secret_id}` read from two files, trimmed.
//!
//! With `audience` set (`cluster.auth.kubernetes.audience` or
//! `cluster.auth.jwt.audience`, e.g. `openbao`), the JWT's `aud` claim is
//! read (not verified: OpenBao does that) before the login, and a token for
//! another audience (the API server's, which a rogue node could replay
//! against the API) is not sent.
//!
//! # Token lifetime
//!
//! A login token is reused while more than a third of its lease
//! (`auth.lease_duration`, 0 = none) is left ([`still_fresh`]); after that,
//! and after a 403 on a token an earlier request already used (revoked, or
//! expired early), snapward logs in again rather than renewing: the
//! credential files are re-read (rotations are picked up), and
//! `renew-self` is capped by the role's `token_max_ttl` anyway, so a login
//! path is needed either way. A snapshot needs the token only when its
//! request starts, so a long stream does not outlive it; a retry after a
//! stalled stream does, and gets a fresh token.
//!
//! Must never: log, format or persist a token, the JWT, the role_id or the
//! secret_id, or send any of them to anything but a configured node (over
//! plain http only as `client.rs` allows).

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use base64::Engine;
use zeroize::Zeroizing;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::client::wiped_body;
use super::error::{Attempt, quote, status_error};
use super::{Auth, HttpOpenBao};
use crate::backends::BaoError;
use crate::secret::{Secret, read_secret_file};

#[derive(Deserialize)]
struct LoginResponse {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    /// Seconds; 0 (or absent): the token does not expire.
    #[serde(default)]
    lease_duration: u64,
}

/// A cached login token and when it has to be replaced.
pub(super) struct LoginToken {
    token: Secret,
    /// Taken before the login request was sent: the server's lease started
    /// later, so the lease is never overestimated.
    obtained: Instant,
    lease: Option<Duration>,
    /// How many requests were given this token.
    handed_out: u32,
}

/// Whether a login token obtained at `obtained` with `lease` (`None`: no
/// expiry) may still be used at `now`: while more than a third of the lease
/// is left. Pure, so the rule is tested with any clock.
fn still_fresh(obtained: Instant, lease: Option<Duration>, now: Instant) -> bool {
    match lease {
        None => true,
        Some(lease) => now.saturating_duration_since(obtained) < lease - lease / 3,
    }
}

/// Which JWT login, for messages (the body is the same).
#[derive(Clone, Copy)]
enum JwtKind {
    Kubernetes,
    Jwt,
}

impl JwtKind {
    fn method(self) -> &'static str {
        match self {
            JwtKind::Kubernetes => "kubernetes",
            JwtKind::Jwt => "jwt",
        }
    }

    fn token_name(self) -> &'static str {
        match self {
            JwtKind::Kubernetes => "the service-account token",
            JwtKind::Jwt => "the JWT",
        }
    }
}

impl Auth {
    /// `cluster.auth.appRole` or `cluster.auth.jwt` (the caller checked
    /// one is set). Errors when another method is set too.
    pub(super) fn login_method(a: &crate::policy::model::Auth) -> Result<Self, BaoError> {
        let set = [
            a.token_file.is_some(),
            a.kubernetes.is_some(),
            a.app_role.is_some(),
            a.jwt.is_some(),
            a.cert.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(BaoError::refused(
                "cluster",
                "cluster.auth sets more than one of tokenFile, kubernetes, appRole, jwt and cert; use one",
            ));
        }
        if let Some(r) = &a.app_role {
            return Ok(Auth::AppRole {
                mount: r.mount.trim_matches('/').to_string(),
                role_id_file: PathBuf::from(&r.role_id_file),
                secret_id_file: PathBuf::from(&r.secret_id_file),
            });
        }
        match &a.jwt {
            Some(j) => Ok(Auth::Jwt {
                mount: j.mount.trim_matches('/').to_string(),
                role: j.role.clone(),
                jwt_file: PathBuf::from(&j.jwt_file),
                audience: j.audience.clone(),
            }),
            None => Err(BaoError::refused(
                "cluster",
                "cluster.auth names no login method",
            )),
        }
    }

    fn is_login(&self) -> bool {
        matches!(
            self,
            Auth::Kubernetes { .. } | Auth::AppRole { .. } | Auth::Jwt { .. } | Auth::Cert { .. }
        )
    }
}

impl HttpOpenBao {
    /// The token for a snapshot on `node` (see the module docs).
    pub(super) async fn token(&self, node: usize) -> Result<Secret, Attempt> {
        let name = &self.node(node)?.name;
        match &self.auth {
            Auth::None => Err(Attempt::fatal(BaoError::refused(
                name,
                "no auth configured (cluster.auth): a snapshot needs a token with `read` on sys/storage/raft/snapshot",
            ))),
            Auth::Token(t) => Ok(t.clone()),
            Auth::TokenFile(path) => read_secret_file(path).map_err(|e| {
                Attempt::fatal(
                    BaoError::refused(
                        name,
                        format!("cannot read the token file {}", path.display()),
                    )
                    .caused_by(e),
                )
            }),
            Auth::Kubernetes { .. }
            | Auth::AppRole { .. }
            | Auth::Jwt { .. }
            | Auth::Cert { .. } => self.login_token_for(node).await,
        }
    }

    /// The cached login token while [`still_fresh`], else a new login.
    async fn login_token_for(&self, node: usize) -> Result<Secret, Attempt> {
        let mut cached = self.login_token.lock().await;
        if let Some(t) = cached.as_mut() {
            if still_fresh(t.obtained, t.lease, Instant::now()) {
                t.handed_out = t.handed_out.saturating_add(1);
                return Ok(t.token.clone());
            }
            tracing::info!(
                lease_seconds = t.lease.map(|l| l.as_secs()),
                "the login token's lease is running out; logging in again"
            );
        }
        *cached = None;
        let obtained = Instant::now();
        let (token, lease) = self.login(node).await?;
        *cached = Some(LoginToken {
            token: token.clone(),
            obtained,
            lease,
            handed_out: 1,
        });
        Ok(token)
    }

    /// Drops the cached login token after a 403. True when a retry with a
    /// fresh login may help: the refused token came from the cache (an
    /// earlier request used it; it may have been revoked or expired early),
    /// not from a login made for this request.
    pub(super) async fn forget_login(&self) -> bool {
        if !self.auth.is_login() {
            return false;
        }
        self.login_token
            .lock()
            .await
            .take()
            .is_some_and(|t| t.handed_out > 1)
    }

    /// One login with the configured method: its token and lease.
    async fn login(&self, node: usize) -> Result<(Secret, Option<Duration>), Attempt> {
        match &self.auth {
            Auth::Kubernetes {
                role,
                mount,
                jwt_file,
                audience,
            } => {
                self.jwt_login(
                    node,
                    JwtKind::Kubernetes,
                    role,
                    mount,
                    jwt_file,
                    audience.as_deref(),
                )
                .await
            }
            Auth::Jwt {
                role,
                mount,
                jwt_file,
                audience,
            } => {
                self.jwt_login(
                    node,
                    JwtKind::Jwt,
                    role,
                    mount,
                    jwt_file,
                    audience.as_deref(),
                )
                .await
            }
            Auth::AppRole {
                mount,
                role_id_file,
                secret_id_file,
            } => {
                self.approle_login(node, mount, role_id_file, secret_id_file)
                    .await
            }
            Auth::None | Auth::Token(_) | Auth::TokenFile(_) => Err(Attempt::fatal(
                BaoError::refused(&self.node(node)?.name, "no login method configured"),
            )),
            Auth::Cert { mount, role } => self.cert_login(node, mount, role.as_deref()).await,
        }
    }

    /// `POST /v1/auth/<mount>/login` (`{"name": role}`): OpenBao's TLS
    /// certificate method reads the client certificate of the TLS
    /// connection (`cluster.tls` certFile/keyFile), so only https works.
    async fn cert_login(
        &self,
        node: usize,
        mount: &str,
        role: Option<&str>,
    ) -> Result<(Secret, Option<Duration>), Attempt> {
        let n = self.node(node)?;
        if n.base.scheme() != "https" {
            return Err(Attempt::fatal(BaoError::refused(
                &n.name,
                format!(
                    "TLS certificate login (cluster.auth.cert) needs https, but the node is addressed as {}: no client certificate is presented over plain http",
                    n.address
                ),
            )));
        }
        #[derive(serde::Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
        }
        let body = wiped_json(&n.name, &Body { name: role }, 0)?;
        let label = format!(
            "TLS certificate login ({}, mount {mount})",
            role.map_or_else(|| "any role".to_string(), |r| format!("role {r}"))
        );
        let hint = format!(
            "; register the CA of tls.certFile (or the certificate itself) with `bao write auth/{mount}/certs/<role> certificate=@ca.pem token_policies=...`"
        );
        self.post_login(node, mount, body, &label, &hint).await
    }

    /// `POST /v1/auth/<mount>/login` with `{role, jwt}` (Kubernetes or JWT).
    async fn jwt_login(
        &self,
        node: usize,
        kind: JwtKind,
        role: &str,
        mount: &str,
        jwt_file: &Path,
        audience: Option<&str>,
    ) -> Result<(Secret, Option<Duration>), Attempt> {
        let n = self.node(node)?;
        let method = kind.method();
        let what = kind.token_name();
        match kind {
            JwtKind::Kubernetes => {
                self.secret_channel(n, "the service-account token (Kubernetes login)")?
            }
            JwtKind::Jwt => self.secret_channel(n, "the JWT (jwt login)")?,
        }
        let jwt = read_secret_file(jwt_file).map_err(|e| {
            Attempt::fatal(
                BaoError::refused(
                    &n.name,
                    format!("cannot read {what} {}", jwt_file.display()),
                )
                .caused_by(e),
            )
        })?;
        #[derive(serde::Serialize)]
        struct Body<'a> {
            role: &'a str,
            jwt: &'a str,
        }
        if let Some(want) = audience {
            check_audience(jwt.expose(), want).map_err(|why| {
                let fix = match kind {
                    JwtKind::Kubernetes => {
                        "mount a projected serviceAccountToken with `audience: {want}` and point jwtFile at it"
                    }
                    JwtKind::Jwt => "point jwtFile at a JWT issued for that audience",
                }
                .replace("{want}", want);
                Attempt::fatal(BaoError::refused(
                    &n.name,
                    format!(
                        "{what} {} {why}, not `{want}` (cluster.auth.{method}.audience): it is not sent; {fix}",
                        jwt_file.display()
                    ),
                ))
            })?;
        }
        let body = wiped_json(
            &n.name,
            &Body {
                role,
                jwt: jwt.expose(),
            },
            jwt.expose().len() + role.len(),
        )?;
        let label = format!("{method} login (role {role}, mount {mount})");
        self.post_login(node, mount, body, &label, "").await
    }

    /// `POST /v1/auth/<mount>/login` with `{role_id, secret_id}` read from
    /// their files (trimmed) right now.
    async fn approle_login(
        &self,
        node: usize,
        mount: &str,
        role_id_file: &Path,
        secret_id_file: &Path,
    ) -> Result<(Secret, Option<Duration>), Attempt> {
        let n = self.node(node)?;
        self.secret_channel(n, "the AppRole secret_id (approle login)")?;
        let read = |what: &str, path: &Path| {
            read_secret_file(path).map_err(|e| {
                Attempt::fatal(
                    BaoError::refused(
                        &n.name,
                        format!(
                            "cannot read the AppRole {what} file {} (cluster.auth.appRole.{what}File)",
                            path.display()
                        ),
                    )
                    .caused_by(e),
                )
            })
        };
        let role_id = read("roleId", role_id_file)?;
        let secret_id = read("secretId", secret_id_file)?;
        #[derive(serde::Serialize)]
        struct Body<'a> {
            role_id: &'a str,
            secret_id: &'a str,
        }
        let body = wiped_json(
            &n.name,
            &Body {
                role_id: role_id.expose(),
                secret_id: secret_id.expose(),
            },
            role_id.expose().len() + secret_id.expose().len(),
        )?;
        let label = format!("approle login (mount {mount})");
        let hint = format!(
            "; check {} and {} (a secret_id expires with its secret_id_ttl and is used up after secret_id_num_uses logins)",
            role_id_file.display(),
            secret_id_file.display()
        );
        self.post_login(node, mount, body, &label, &hint).await
    }

    /// Sends a login `body` (wiped when sent) to `auth/<mount>/login` and
    /// reads the token and its lease. `label` names the login in errors;
    /// `hint` is appended to a refusal.
    async fn post_login(
        &self,
        node: usize,
        mount: &str,
        body: Zeroizing<Vec<u8>>,
        label: &str,
        hint: &str,
    ) -> Result<(Secret, Option<Duration>), Attempt> {
        let n = self.node(node)?;
        let path = format!("auth/{mount}/login");
        let rb = self
            .request(n, Method::POST, &path, None)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(wiped_body(body));
        let reply = self.exchange(n, rb).await?;
        match reply.status {
            StatusCode::OK => {
                let parsed: LoginResponse = serde_json::from_slice(&reply.body).map_err(|_| {
                    // serde's message is not kept: the body holds the token.
                    Attempt::fatal(BaoError::failed(
                        &n.name,
                        format!("{label} answered 200 without auth.client_token"),
                    ))
                })?;
                let lease = (parsed.auth.lease_duration > 0)
                    .then(|| Duration::from_secs(parsed.auth.lease_duration));
                Ok((Secret::new(parsed.auth.client_token), lease))
            }
            s if s.is_client_error() => Err(Attempt::fatal(BaoError::refused(
                &n.name,
                format!("{label} refused with {s}: {}{hint}", quote(&reply.body)),
            ))),
            _ => Err(status_error(&n.name, &path, &reply)),
        }
    }
}

/// `cluster.auth.cert` as the backend's [`Auth`]: no other method next to
/// it, and a client certificate to log in with (`cluster.tls`).
pub(super) fn cert_auth(
    a: &crate::policy::model::Auth,
    has_identity: bool,
) -> Result<Auth, BaoError> {
    let config_err = |detail: &str| BaoError::refused("cluster", detail);
    let Some(cert) = &a.cert else {
        return Err(config_err("cluster.auth.cert is not set"));
    };
    if a.token_file.is_some() || a.kubernetes.is_some() || a.app_role.is_some() || a.jwt.is_some() {
        return Err(config_err(
            "cluster.auth sets cert together with another method; use one",
        ));
    }
    if !has_identity {
        return Err(config_err(
            "cluster.auth.cert logs in with the client certificate of cluster.tls: set tls.certFile and tls.keyFile",
        ));
    }
    Ok(Auth::Cert {
        mount: cert.mount.trim_matches('/').to_string(),
        role: cert.role.clone(),
    })
}

/// A login request body as JSON in a wiped buffer, sized up front for the
/// `secret_len` bytes of secrets it carries (plus the JSON around them), so
/// no reallocation leaves a copy behind.
fn wiped_json(
    node: &str,
    value: &impl serde::Serialize,
    secret_len: usize,
) -> Result<Zeroizing<Vec<u8>>, Attempt> {
    let mut body = Zeroizing::new(Vec::with_capacity(secret_len + 64));
    serde_json::to_writer(&mut *body, value).map_err(|e| {
        Attempt::fatal(BaoError::failed(node, "cannot encode the login request").caused_by(e))
    })?;
    Ok(body)
}

/// Why a JWT's `aud` claim does not hold `want` ("is for audience […]"),
/// read without verifying the signature (OpenBao verifies it). The claim
/// values are audiences, not secrets; nothing else of the token is shown.
fn check_audience(jwt: &str, want: &str) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    #[derive(Deserialize)]
    struct Claims {
        aud: Option<Aud>,
    }
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| "is not a JWT (no payload part)".to_string())?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| "is not a JWT (its payload is not base64url)".to_string())?,
    );
    let claims: Claims = serde_json::from_slice(&bytes)
        .map_err(|_| "is not a JWT (its payload is not a JSON object)".to_string())?;
    let auds = match claims.aud {
        None => Vec::new(),
        Some(Aud::One(a)) => vec![a],
        Some(Aud::Many(a)) => a,
    };
    if auds.iter().any(|a| a == want) {
        Ok(())
    } else {
        Err(format!("is for audience {auds:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(claims))
    }

    /// The re-login rule against an injected clock: a token is reused
    /// while more than a third of its lease is left, forever without one.
    #[rstest::rstest]
    #[case::just_obtained(Some(90), 0, true)]
    #[case::half_gone(Some(90), 45, true)]
    #[case::a_third_left(Some(90), 60, false)]
    #[case::expired(Some(90), 91, false)]
    #[case::short_lease(Some(3), 2, false)]
    #[case::no_expiry(None, 1_000_000, true)]
    fn a_login_token_is_reused_while_a_third_of_its_lease_is_left(
        #[case] lease: Option<u64>,
        #[case] elapsed: u64,
        #[case] fresh: bool,
    ) {
        let obtained = Instant::now();
        let now = obtained + Duration::from_secs(elapsed);
        assert_eq!(
            still_fresh(obtained, lease.map(Duration::from_secs), now),
            fresh
        );
    }

    #[test]
    fn the_audience_claim_must_hold_the_configured_audience() {
        assert!(check_audience(&jwt(r#"{"aud":["openbao"]}"#), "openbao").is_ok());
        assert!(check_audience(&jwt(r#"{"aud":"openbao","sub":"x"}"#), "openbao").is_ok());
        assert_eq!(
            check_audience(
                &jwt(r#"{"aud":["https://kubernetes.default.svc.cluster.local"]}"#),
                "openbao"
            ),
            Err(r#"is for audience ["https://kubernetes.default.svc.cluster.local"]"#.into())
        );
        assert_eq!(
            check_audience(&jwt(r#"{"sub":"x"}"#), "openbao"),
            Err("is for audience []".into())
        );
        assert!(check_audience("not-a-jwt", "openbao").is_err());
        assert!(check_audience("a.%%%.c", "openbao").is_err());
    }
}
