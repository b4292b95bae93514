//! `ValidPolicy`: what validation makes of a policy that passed every check.
//! Everything that needed parsing (durations, the file mode, URLs, restore
//! sources, cron) is parsed, every default is applied, and every "exactly
//! one of" is an enum — so nothing downstream re-parses a string or knows a
//! default. `doc` stays for the fields that need no parsing (TLS, metrics,
//! init, metadata).
//!
//! Stage: validate (pure data; built only by `validate`).

use std::path::PathBuf;
use std::time::Duration;

use jiff::SignedDuration;

use super::StoreId;
use super::model::{self, PolicyDocument, RestoreMode};
use crate::retention::Rules;

/// A policy that passed every check. Built only by
/// [`validate`](super::validate::validate).
#[derive(Debug, Clone)]
pub struct ValidPolicy {
    /// The document as written (serde defaults filled in).
    pub doc: PolicyDocument,
    pub cluster: ClusterSettings,
    pub local: LocalSettings,
    /// One per `doc.spec.targets`, same order.
    pub targets: Vec<ValidTarget>,
    /// Restore sources in search order (default: local, then every target).
    pub sources: Vec<StoreId>,
    pub restore: RestoreSettings,
    /// Where the unseal keys live, if the policy says.
    pub unseal_keys: Option<KeyStoreSettings>,
    pub guards: GuardSettings,
    /// Longest gap between two scheduled runs, if a schedule is given.
    pub schedule_interval: Option<Duration>,
    /// `spec.maxSnapshotBytes` in bytes (default 64 GiB): the most a
    /// snapshot may inflate to when verified.
    pub max_snapshot_bytes: u64,
}

impl ValidPolicy {
    pub fn name(&self) -> &str {
        &self.doc.metadata.name
    }
}

/// `spec.cluster`, parsed. TLS stays in `doc.spec.cluster.tls`.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub nodes: Nodes,
    pub auth: Option<AuthSettings>,
    pub timeouts: ClusterTimeouts,
}

/// Exactly one of `nodes` or `discovery`.
#[derive(Debug, Clone)]
pub enum Nodes {
    /// Listed nodes, at least one; node 0 is the one snapward initialises.
    Listed(Vec<ListedNode>),
    Discovered(model::KubernetesDiscovery),
}

/// A listed node: its name (default `node-<index>`) and parsed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNode {
    pub name: String,
    /// An http(s) URL with a host and no credentials.
    pub address: url::Url,
}

/// Exactly one auth method (see `model::Auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSettings {
    TokenFile(PathBuf),
    Kubernetes {
        role: String,
        /// As written (default `kubernetes`).
        mount: String,
        jwt_file: PathBuf,
    },
    AppRole {
        /// As written (default `approle`).
        mount: String,
        role_id_file: PathBuf,
        secret_id_file: PathBuf,
    },
    Jwt {
        /// As written (default `jwt`).
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
    /// TLS certificate login with `cluster.tls` certFile/keyFile.
    Cert {
        /// As written (default `cert`).
        mount: String,
        role: Option<String>,
    },
}

/// `spec.cluster.timeouts`, each positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterTimeouts {
    pub connect: Duration,
    pub request: Duration,
    pub stream_idle: Duration,
}

/// `spec.local`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// The snapshot directory.
    pub dir: PathBuf,
    /// File-name prefix (default `openbao-`).
    pub prefix: String,
    /// Mode of published snapshot files (default 0o640).
    pub file_mode: u32,
    pub rules: Rules,
}

/// One of `spec.targets`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidTarget {
    pub name: String,
    pub optional: bool,
    pub rules: Rules,
    pub kind: TargetKind,
}

impl ValidTarget {
    pub fn id(&self) -> StoreId {
        StoreId::Target(self.name.clone())
    }
}

/// Exactly one of `s3`, `azure`, `gcs` or `filesystem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// Boxed: far larger than the other kinds.
    S3(Box<S3Settings>),
    /// An Azure Blob container (the model as written: endpoint checked).
    Azure(Box<model::AzureTarget>),
    /// A Google Cloud Storage bucket (endpoint checked).
    Gcs(Box<GcsSettings>),
    Filesystem(model::FilesystemTarget),
}

/// An S3 target: `model::S3Target` with its timeouts parsed (defaults
/// applied when the policy gives none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// A validated http(s) URL, as written; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub path_style: bool,
    pub credentials: Option<model::S3Credentials>,
    pub server_side_encryption: Option<model::ServerSideEncryption>,
    pub object_lock: Option<model::ObjectLock>,
    pub timeouts: S3Timeouts,
    /// Stream parts while the snapshot streams (`stream`, default on).
    pub stream: bool,
}

/// A Google Cloud Storage target: `model::GcsTarget` with its timeouts
/// parsed (defaults applied when the policy gives none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsSettings {
    /// A validated http(s) URL, as written; `None` for Google itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub prefix: String,
    pub credentials: Option<model::GcsCredentials>,
    pub timeouts: S3Timeouts,
}

/// `spec.targets[].s3.timeouts` (and `gcs.timeouts`), each positive (defaults `10s`, `5m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Timeouts {
    /// TCP + TLS connect.
    pub connect: Duration,
    /// One attempt of one request, its body included.
    pub request: Duration,
}

/// `spec.restore`, parsed. The sources are [`ValidPolicy::sources`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSettings {
    pub mode: RestoreMode,
    pub apply_timeout: Duration,
    pub join_timeout: Duration,
    pub canary: Option<model::Canary>,
    pub restart_pod: bool,
}

/// `spec.unsealKeys`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStoreSettings {
    pub location: KeyLocation,
    /// Key shares are `<key_prefix>0`, `<key_prefix>1`, ... (default `unseal-key-`).
    pub key_prefix: String,
    /// Default `root-token`.
    pub root_token_key: String,
}

/// Exactly one of `kubernetesSecret` or `files`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Files {
        directory: PathBuf,
    },
    KubernetesSecret {
        name: String,
        /// The Secret's namespace, else the policy's `metadata.namespace`;
        /// `None`: the Kubernetes client's default namespace.
        namespace: Option<String>,
    },
}

/// `spec.guards`, parsed. The "always" guards are always on in a valid
/// policy, so only the switchable ones are here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardSettings {
    pub keep_unmirrored_local: bool,
    /// Auto-restore refuses a newest snapshot older than this.
    pub max_restore_age: Option<SignedDuration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_named_by_its_store_id() {
        let t = ValidTarget {
            name: "r2".into(),
            optional: false,
            rules: Rules::default(),
            kind: TargetKind::Filesystem(model::FilesystemTarget { path: "/m".into() }),
        };
        assert_eq!(t.id(), StoreId::Target("r2".into()));
        assert_eq!(t.id().to_string(), "r2");
    }
}
