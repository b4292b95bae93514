//! The policy's shape: plain serde types, the single source of the JSON
//! Schema in `schemas/`. Pure data: no I/O, no validation beyond types
//! (semantic rules live in `validate.rs`).
//!
//! Field names are camelCase and stable (`apiVersion: snapward.dev/v1alpha1`).
//! Unknown fields are errors everywhere (`deny_unknown_fields` here and
//! `additionalProperties: false` in the generated schema).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod auth;
pub use auth::*;
mod azure;
pub use azure::*;
mod gcs;
pub use gcs::*;
mod notify;
pub use notify::*;

pub const API_VERSION: &str = "snapward.dev/v1alpha1";
pub const KIND: &str = "SnapshotPolicy";

/// A snapward policy: which OpenBao cluster to protect, where its snapshots
/// go, how long they are kept, and when snapward may initialise, unseal or
/// restore it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "SnapshotPolicy")]
pub struct PolicyDocument {
    /// Always `snapward.dev/v1alpha1`.
    #[schemars(extend("const" = "snapward.dev/v1alpha1"))]
    pub api_version: String,
    /// Always `SnapshotPolicy`.
    #[schemars(extend("const" = "SnapshotPolicy"))]
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Names the policy: used for the lock/Lease, metrics labels and events.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// The CronJob's schedule (5-field cron). Used by `lint` only, to check
    /// that retention windows are longer than the interval between runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub cluster: Cluster,
    pub local: LocalStore,
    /// Off-cluster copies. Each has its own retention.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Where the unseal keys live. `init` stores them here (create-only);
    /// `unseal` and `restore` read them. snapward never overwrites them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unseal_keys: Option<KeyStore>,
    #[serde(default)]
    pub restore: Restore,
    #[serde(default)]
    pub init: Init,
    #[serde(default)]
    pub guards: Guards,
    /// Prometheus metrics of each run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Rehearse the restore on a throwaway OpenBao (`snapward
    /// test-restore`): the stored copy is fetched, restored, unsealed with
    /// the stored keys and read, never touching the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<RestoreTest>,
    /// Notifications of each run (not of dry runs): a dead-man's-switch
    /// ping and JSON webhooks. They never change the exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// The most a snapshot may hold once decompressed (its tar archive):
    /// bytes, or with a `Ki`, `Mi`, `Gi` or `Ti` suffix. Default `64Gi`.
    /// Verification stops at this size, and also at 1032 times the bytes
    /// read from the file (more than one layer of deflate can make), so a
    /// small hostile file cannot keep a run busy for hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti)?$"))]
    pub max_snapshot_bytes: Option<String>,
}

/// Where each run's Prometheus metrics go (either or both).
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// A node-exporter textfile-collector file, replaced atomically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile: Option<String>,
    /// A Pushgateway base URL; metrics go to `/metrics/job/snapward/policy/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushgateway: Option<String>,
}

/// The Pushgateway URL may carry basic-auth credentials: never printed.
impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("textfile", &self.textfile)
            .field(
                "pushgateway",
                &self.pushgateway.as_deref().map(crate::secret::redact_url),
            )
            .finish()
    }
}

/// The OpenBao nodes: listed (`nodes`) or discovered (`discovery`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Each node addressed directly (e.g. through a headless Service). Node 0
    /// is the one snapward initialises and restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<Node>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Discovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Auth for the snapshot read. Omit for a cluster you only init/restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Allow plain `http://` to nodes that are not loopback (127.0.0.0/8,
    /// ::1, localhost), for a pod network you trust. Without it such an
    /// address (listed, or discovered with `scheme: http`) is a lint error,
    /// and at run time snapward refuses to send unseal keys, the root
    /// token, the login JWT or any token over it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
    /// How the cluster unseals: `shamir` (unseal keys) or `auto` (a seal —
    /// transit, static, a KMS — unseals it; snapward stores recovery keys).
    /// Optional: a run reads it from `sys/seal-status`; set it so that lint
    /// and `plan` know it offline, and a run refuses when the cluster says
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealMode>,
}

/// `spec.restoreTest`: where and how a restore is rehearsed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreTest {
    /// Path of the `bao` binary the throwaway server runs (the same
    /// version as the cluster).
    pub bao_binary: String,
    /// The store to test from. Default: the last restore source (the
    /// farthest copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// At most one passed rehearsal per this duration (e.g. `7d`,
    /// remembered in the local store). Default: every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Time budget of one rehearsal, e.g. `10m` (default).
    #[serde(default = "default_restore_test_timeout")]
    pub timeout: String,
    /// What the rehearsal reads on the restored copy. Default:
    /// `restore.canary`, else `sys/mounts` with the stored root token (a
    /// file key store that keeps it), else no read (cluster id and raft
    /// index are still checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Auto-unseal clusters: a file holding the `seal "…" { … }` stanza
    /// the throwaway server needs (the same seal as the cluster's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_config_file: Option<String>,
    /// Where the throwaway server's data lives. Default: a
    /// `.snapward-restore-test` directory in the local snapshot directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_dir: Option<String>,
}

fn default_restore_test_timeout() -> String {
    "10m".into()
}

/// `spec.cluster.seal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SealMode {
    Shamir,
    Auto,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Defaults to `node-<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Base URL, e.g. `https://openbao-0.openbao-internal:8200`.
    pub address: String,
}

/// The name of listed node `index` that has none.
pub fn default_node_name(index: usize) -> String {
    format!("node-{index}")
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Discovery {
    pub kubernetes: KubernetesDiscovery,
}

/// Pods by namespace + label selector, ordered by StatefulSet ordinal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesDiscovery {
    pub namespace: String,
    /// e.g. `app.kubernetes.io/name=openbao`.
    pub label_selector: String,
    #[serde(default = "default_port")]
    pub port: u16,
    #[serde(default)]
    pub scheme: Scheme,
    /// Headless Service: pods are addressed as `<pod>.<service>.<namespace>.svc`.
    /// Without it the pod IP is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Which pods' answers are trusted. `running` (default): every container
    /// runs and the pod is not terminating — the readiness probe is ignored,
    /// because the OpenBao Helm chart's default probe fails while a server
    /// is sealed, and a sealed or wiped cluster is exactly what snapward
    /// must see. `ready`: the pod's Ready condition must be True too (use it
    /// when the probe passes on a sealed server, e.g. `sys/health` with
    /// `sealedcode=204&uninitcode=204`). A pod that is not trusted is
    /// `unknown`, never `uninitialised`.
    #[serde(default)]
    pub trust: PodTrust,
}

/// See [`KubernetesDiscovery::trust`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PodTrust {
    #[default]
    Running,
    Ready,
}

fn default_port() -> u16 {
    8200
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Https,
    Http,
}

/// Durations like `5s`, `2m`, `1h`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeouts {
    /// TCP + TLS connect.
    #[serde(default = "default_connect")]
    pub connect: String,
    /// A whole non-streaming request.
    #[serde(default = "default_request")]
    pub request: String,
    /// A snapshot stream that delivers no bytes for this long is aborted.
    #[serde(default = "default_stream_idle")]
    pub stream_idle: String,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: default_connect(),
            request: default_request(),
            stream_idle: default_stream_idle(),
        }
    }
}

fn default_connect() -> String {
    "5s".into()
}
fn default_request() -> String {
    "30s".into()
}
fn default_stream_idle() -> String {
    "60s".into()
}

/// The snapshot directory (usually a PVC).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalStore {
    pub path: String,
    /// Files are `<prefix>YYYYMMDD-HHMMSS.snap` (UTC). A plain file-name
    /// prefix: no `/`, not starting with `.` (temp files are `.<name>.partial`).
    #[serde(default = "default_prefix")]
    #[schemars(regex(pattern = r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$"))]
    pub prefix: String,
    /// Octal, as a string (`"0640"`): the next container (another UID, same
    /// fsGroup) must be able to read it.
    #[serde(default = "default_file_mode")]
    #[schemars(regex(pattern = r"^0?[0-7]{3,4}$"))]
    pub file_mode: String,
    pub retention: Retention,
}

fn default_prefix() -> String {
    "openbao-".into()
}
fn default_file_mode() -> String {
    "0640".into()
}

/// restic's vocabulary. Durations count back from the newest valid snapshot,
/// never from now. The newest valid snapshot is always kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// restic units: `y`, `m` (months), `w`, `d`, `h`, e.g. `14d`, `1y6m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
}

/// An off-cluster copy: exactly one of `s3`, `azure`, `gcs` or `filesystem`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Unique; `local` is reserved for the local store.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Missing credentials ⇒ skipped with a log line and status, not a failure.
    #[serde(default)]
    pub optional: bool,
    pub retention: Retention,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemTarget>,
}

/// Any S3-compatible store: AWS, Cloudflare R2, MinIO, Ceph.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Target {
    /// Omit for AWS itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix; should end with `/`.
    #[serde(default)]
    pub prefix: String,
    /// Path-style addressing (MinIO, Ceph, most self-hosted stores).
    #[serde(default)]
    pub path_style: bool,
    /// Omit to use the standard AWS chain (env, profile, IRSA, IMDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<S3Credentials>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_side_encryption: Option<ServerSideEncryption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
    /// Limits of every S3 request (defaults: `connect: 10s`, `request: 5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<S3Timeouts>,
    /// Send the parts while the snapshot streams from OpenBao (straight to
    /// the final key, published create-only after verification, with the
    /// identity in an identity object `<prefix>.<name>.identity`). Default
    /// `true`; `false` uploads from the verified local file after the
    /// snapshot (README "S3 streaming").
    #[serde(default = "yes")]
    pub stream: bool,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Durations like `10s`, `5m`. An attempt that runs out of time fails and is
/// retried with backoff, like a 5xx (5 attempts per request in all).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Timeouts {
    /// TCP + TLS connect.
    #[serde(default = "default_s3_connect")]
    pub connect: String,
    /// One attempt of one request, its body included (a whole part: 16 MiB
    /// or more): keep it above the time one part takes on the slowest link.
    #[serde(default = "default_s3_request")]
    pub request: String,
}

impl Default for S3Timeouts {
    fn default() -> Self {
        Self {
            connect: default_s3_connect(),
            request: default_s3_request(),
        }
    }
}

fn default_s3_connect() -> String {
    "10s".into()
}
fn default_s3_request() -> String {
    "5m".into()
}

/// Static credentials read from files (e.g. a mounted Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Credentials {
    pub access_key_id_file: String,
    pub secret_access_key_file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerSideEncryption {
    pub mode: SseMode,
    /// KMS key id or ARN, for `aws:kms`. Omit to use the bucket's default key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SseMode {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// Object Lock retention set on every uploaded snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectLock {
    pub mode: ObjectLockMode,
    #[schemars(range(min = 1))]
    pub days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ObjectLockMode {
    Governance,
    Compliance,
}

/// A mounted path (e.g. NFS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesystemTarget {
    pub path: String,
}

/// Exactly one of `kubernetesSecret` or `files`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<KeyFiles>,
    /// Key shares are stored as `<keyPrefix>0`, `<keyPrefix>1`, ... A plain
    /// name (a file name and a Secret data key): letters, digits, `.`, `_`,
    /// `-`, starting with a letter or digit — so never `/` or `..`, which
    /// would put the keys outside the key directory.
    #[serde(default = "default_key_prefix")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub key_prefix: String,
    /// Where init stores the root token, if `init.storeRootToken` is true.
    /// A plain name, like `keyPrefix`.
    #[serde(default = "default_root_token_key")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub root_token_key: String,
}

fn default_key_prefix() -> String {
    "unseal-key-".into()
}
fn default_root_token_key() -> String {
    "root-token".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
    /// Defaults to the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyFiles {
    /// One file per entry (`unseal-key-0`, ...), created 0600.
    pub directory: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restore {
    /// `auto` restores a wiped cluster by itself; `manual` plans it and
    /// refuses until `snapward restore` is run; `disabled` never restores.
    #[serde(default)]
    pub mode: RestoreMode,
    /// Stores searched for the newest valid snapshot, by name (`local` or a
    /// target's name). Default: `local`, then every target in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// How long to wait for the server to apply a restore and seal.
    #[serde(default = "default_apply_timeout")]
    pub apply_timeout: String,
    /// How long to wait for followers to join before unsealing them.
    #[serde(default = "default_join_timeout")]
    pub join_timeout: String,
    /// After a restore, read this path with this token to prove data is back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// When node 0 rejects the stored keys after a restore ("invalid key
    /// size": the policy's `init` shape differs from the stored keys'),
    /// delete the node-0 pod, wait until its StatefulSet brings it back,
    /// and unseal again. Needs `cluster.discovery` and RBAC `delete` on that
    /// pod (deploy/components/pod-restart). With `serviceName` the run
    /// finishes at once; addressed by pod IP, the pod comes back at a new
    /// IP and the next run unseals it. Off: the run fails with a message
    /// saying to restart the pod by hand. On an auto-unseal cluster it also
    /// restarts every follower once node 0 serves the restored cluster
    /// (they joined the temporary cluster first and keep its in-memory
    /// state until restarted): RBAC `delete` on those pods too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_pod: bool,
}

impl Default for Restore {
    fn default() -> Self {
        Self {
            mode: RestoreMode::default(),
            sources: Vec::new(),
            apply_timeout: default_apply_timeout(),
            join_timeout: default_join_timeout(),
            canary: None,
            restart_pod: false,
        }
    }
}

fn default_apply_timeout() -> String {
    "120s".into()
}
fn default_join_timeout() -> String {
    "120s".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    Auto,
    #[default]
    Manual,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Canary {
    /// API path, e.g. `secret/data/snapward-canary`.
    pub path: String,
    pub token_file: String,
}

/// Fresh-cluster initialisation, and the key shape of this cluster: a
/// restore temp-initialises with the same shares/threshold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Init {
    /// May snapward initialise a genuinely fresh cluster?
    #[serde(default)]
    pub allowed: bool,
    #[serde(default = "default_shares")]
    pub shares: u32,
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Store the initial root token next to the keys (create-only).
    #[serde(default)]
    pub store_root_token: bool,
}

impl Default for Init {
    fn default() -> Self {
        Self {
            allowed: false,
            shares: default_shares(),
            threshold: default_threshold(),
            store_root_token: false,
        }
    }
}

fn default_shares() -> u32 {
    5
}
fn default_threshold() -> u32 {
    3
}

/// Safety rules. The ones marked "always" cannot be switched off: setting
/// them to false is a lint error.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guards {
    /// Always: prune a target only after this run's snapshot was uploaded and
    /// confirmed there (size + SHA-256 read back).
    #[serde(default = "yes")]
    pub require_confirmed_upload: bool,
    /// Always: mirroring only copies; remote deletions come from retention only.
    #[serde(default = "yes")]
    pub copy_only_mirror: bool,
    /// Always: any node in an unknown state ⇒ no init, no restore.
    #[serde(default = "yes")]
    pub refuse_on_unknown_node: bool,
    /// Always: never initialise while unseal keys survive.
    #[serde(default = "yes")]
    pub refuse_init_over_keys: bool,
    /// Keep a local snapshot that exists on no enabled target, whatever local
    /// retention says.
    #[serde(default = "yes")]
    pub keep_unmirrored_local: bool,
    /// Auto-restore refuses a newest snapshot older than this (e.g. `7d`);
    /// a human then restores with `snapward restore`. Omit for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restore_age: Option<String>,
}

fn yes() -> bool {
    true
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            require_confirmed_upload: true,
            copy_only_mirror: true,
            refuse_on_unknown_node: true,
            refuse_init_over_keys: true,
            keep_unmirrored_local: true,
            max_restore_age: None,
        }
    }
}
