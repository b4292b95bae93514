//! The token a snapshot request carries: none, one given in memory, a token
//! file re-read on every snapshot (mounted Secrets rotate), or a
//! Kubernetes login (`auth/<mount>/login` with the service-account JWT)
//! whose token is cached until the server answers 403.
//!
//! Must never: log, format or persist a token or the JWT, or send either
//! to anything but a configured node.

use reqwest::{Method, StatusCode};
use serde::Deserialize;

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
        let n = self.node(node)?;
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
        let body = serde_json::to_vec(&Body {
            role,
            jwt: jwt.expose(),
        })
        .map_err(|e| {
            Attempt::fatal(
                BaoError::failed(&n.name, "cannot encode the login request").caused_by(e),
            )
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
