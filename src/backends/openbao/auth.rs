//! The token a snapshot request carries: none, one given in memory, a token
//! file re-read on every snapshot (mounted Secrets rotate), or a
//! Kubernetes login (`auth/<mount>/login` with the service-account JWT)
//! or a TLS certificate login (`auth/<mount>/login` over the connection
//! that presents `cluster.tls`'s client certificate), whose token is
//! cached until the server answers 403.
//!
//! With `audience` set (`cluster.auth.kubernetes.audience`, e.g. `openbao`),
//! the JWT file must be a projected service-account token for that
//! audience: its `aud` claim is read (not verified: OpenBao does that)
//! before the login, and a token for another audience (the API server's,
//! which a rogue node could replay against the API) is not sent.
//!
//! Must never: log, format or persist a token or the JWT, or send either
//! to anything but a configured node (over plain http only as
//! `client.rs` allows).

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use base64::Engine;
use zeroize::Zeroizing;

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
            Auth::Kubernetes {
                role,
                mount,
                jwt_file,
                audience,
            } => {
                let mut cached = self.login_token.lock().await;
                if let Some(t) = cached.as_ref() {
                    return Ok(t.clone());
                }
                let token = self
                    .kubernetes_login(node, role, mount, jwt_file, audience.as_deref())
                    .await?;
                *cached = Some(token.clone());
                Ok(token)
            }
            Auth::Cert { mount, role } => {
                let mut cached = self.login_token.lock().await;
                if let Some(t) = cached.as_ref() {
                    return Ok(t.clone());
                }
                let token = self.cert_login(node, mount, role.as_deref()).await?;
                *cached = Some(token.clone());
                Ok(token)
            }
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
    ) -> Result<Secret, Attempt> {
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
        let body = match role {
            Some(r) => serde_json::json!({ "name": r }),
            None => serde_json::json!({}),
        };
        let path = format!("auth/{mount}/login");
        let rb = self
            .request(n, Method::POST, &path, None)?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let reply = self.exchange(n, rb).await?;
        let role = role.map_or_else(|| "any role".to_string(), |r| format!("role {r}"));
        match reply.status {
            StatusCode::OK => {
                let parsed: LoginResponse = serde_json::from_slice(&reply.body).map_err(|_| {
                    // serde's message is not kept: the body holds the token.
                    Attempt::fatal(BaoError::failed(
                        &n.name,
                        format!(
                            "cert login (mount {mount}) answered 200 without auth.client_token"
                        ),
                    ))
                })?;
                Ok(Secret::new(parsed.auth.client_token))
            }
            s if s.is_client_error() => Err(Attempt::fatal(BaoError::refused(
                &n.name,
                format!(
                    "TLS certificate login ({role}, mount {mount}) refused with {s}: {}; register the CA of tls.certFile (or the certificate itself) with `bao write auth/{mount}/certs/<role> certificate=@ca.pem token_policies=...`",
                    quote(&reply.body)
                ),
            ))),
            _ => Err(status_error(&n.name, &path, &reply)),
        }
    }

    /// `POST /v1/auth/<mount>/login` with the service-account JWT.
    async fn kubernetes_login(
        &self,
        node: usize,
        role: &str,
        mount: &str,
        jwt_file: &std::path::Path,
        audience: Option<&str>,
    ) -> Result<Secret, Attempt> {
        let n = self.node(node)?;
        self.secret_channel(n, "the service-account token (Kubernetes login)")?;
        let jwt = read_secret_file(jwt_file).map_err(|e| {
            Attempt::fatal(
                BaoError::refused(
                    &n.name,
                    format!(
                        "cannot read the service-account token {}",
                        jwt_file.display()
                    ),
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
                Attempt::fatal(BaoError::refused(
                    &n.name,
                    format!(
                        "the service-account token {} {why}, not `{want}` (cluster.auth.kubernetes.audience): it is not sent; mount a projected serviceAccountToken with `audience: {want}` and point jwtFile at it",
                        jwt_file.display()
                    ),
                ))
            })?;
        }
        // Sized for the JWT: no reallocation leaves a copy behind.
        let mut body = Zeroizing::new(Vec::with_capacity(jwt.expose().len() + role.len() + 64));
        serde_json::to_writer(
            &mut *body,
            &Body {
                role,
                jwt: jwt.expose(),
            },
        )
        .map_err(|e| {
            Attempt::fatal(
                BaoError::failed(&n.name, "cannot encode the login request").caused_by(e),
            )
        })?;
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
                        format!(
                            "kubernetes login (mount {mount}) answered 200 without auth.client_token"
                        ),
                    ))
                })?;
                Ok(Secret::new(parsed.auth.client_token))
            }
            s if s.is_client_error() => Err(Attempt::fatal(BaoError::refused(
                &n.name,
                format!(
                    "kubernetes login (role {role}, mount {mount}) refused with {s}: {}",
                    quote(&reply.body)
                ),
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
    if a.token_file.is_some() || a.kubernetes.is_some() {
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
