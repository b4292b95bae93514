//! The cluster's transport and login settings (`spec.cluster.tls`,
//! `spec.cluster.auth`): plain serde types, part of [`super`]'s schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// PEM bundle that signs the servers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Name to verify in the certificates when nodes are addressed by IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM client certificate (chain) presented to the nodes (mTLS: a
    /// listener with `tls_require_and_verify_client_cert`, or
    /// `auth.cert`). Needs `keyFile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key of `certFile` (unencrypted PKCS#8, RSA or EC).
    /// Read at start; never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// Exactly one auth method: `tokenFile`, `kubernetes`, `appRole`, `jwt` or `cert`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// A file holding a token with `read` on `sys/storage/raft/snapshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role: Option<AppRoleAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CertAuth>,
}

/// OpenBao's AppRole auth method: `POST auth/<mount>/login` with the
/// role_id and secret_id read from files at run time (trimmed).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppRoleAuth {
    #[serde(default = "default_approle_mount")]
    pub mount: String,
    /// A file holding the role_id.
    pub role_id_file: String,
    /// A file holding the secret_id (a mounted Secret).
    pub secret_id_file: String,
}

fn default_approle_mount() -> String {
    "approle".into()
}

/// OpenBao's JWT auth method: `POST auth/<mount>/login` with `role` and
/// the JWT read from `jwtFile` at run time (e.g. a projected
/// service-account token).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtAuth {
    #[serde(default = "default_jwt_mount")]
    pub mount: String,
    pub role: String,
    /// A file holding the JWT.
    pub jwt_file: String,
    /// The audience the JWT must hold in its `aud` claim (the role's
    /// `bound_audiences`): a JWT for another audience is not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

fn default_jwt_mount() -> String {
    "jwt".into()
}

/// OpenBao's TLS certificate auth method: a login with the client
/// certificate of `cluster.tls` (`certFile`/`keyFile`, required).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertAuth {
    #[serde(default = "default_cert_mount")]
    pub mount: String,
    /// The certificate role to log in with; without it OpenBao tries every
    /// role of the mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

fn default_cert_mount() -> String {
    "cert".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesAuth {
    pub role: String,
    #[serde(default = "default_k8s_mount")]
    pub mount: String,
    #[serde(default = "default_jwt_file")]
    pub jwt_file: String,
    /// The audience of the token in `jwtFile`, e.g. `openbao`: a projected
    /// service-account token made for OpenBao (the role's `audience` must
    /// match). snapward reads the token's `aud` claim before the login and
    /// does not send a token for another audience. Without it the pod's
    /// default token (audience: the API server) is sent, which a rogue node
    /// could replay against the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

fn default_k8s_mount() -> String {
    "kubernetes".into()
}
impl KubernetesAuth {
    /// The pod's own service-account token (audience: the API server).
    pub const DEFAULT_JWT_FILE: &'static str =
        "/var/run/secrets/kubernetes.io/serviceaccount/token";
}

fn default_jwt_file() -> String {
    KubernetesAuth::DEFAULT_JWT_FILE.into()
}
