//! S3-compatible target (aws-sdk-s3): AWS, Cloudflare R2, MinIO, Ceph, moto,
//! s3s-fs. Stage: execute (backend). The executor only sees
//! [`Target`]; no aws-sdk type leaves this module.
//!
//! What it guarantees:
//!
//! - **Create-only.** `put` first HEADs the key and returns
//!   [`TargetError::AlreadyExists`] if it exists; PutObject and
//!   CompleteMultipartUpload carry `If-None-Match: *`, so a racing writer
//!   gets HTTP 412 instead of overwriting. A 412 is only accepted as success
//!   when the object holds exactly this upload (an SDK retry of a request
//!   whose first answer was lost); so is a failed CompleteMultipartUpload
//!   retry (the upload is gone: NoSuchUpload, or AccessDenied on s3s-fs)
//!   when the object is there with this size and SHA-256.
//! - **SHA-256 on every request body.** Each body (the whole file, or one
//!   part) is hashed just before it is streamed from the file, and sent with
//!   that `x-amz-checksum-sha256` (computed here, so the SDK never needs
//!   aws-chunked trailers, which some stores reject); a store that checks it
//!   (AWS, s3s-fs) refuses bytes that changed in between (400 BadDigest).
//!   The running hash of the whole file must equal the snapshot's identity
//!   or the upload is aborted. The full-object SHA-256 also goes into user
//!   metadata (`snapward-sha256`, with `snapward-raft-index`/`-term`),
//!   because a multipart object only has a composite checksum.
//! - **Confirmed by read-back.** After the upload a HEAD must report the
//!   local size and `snapward-sha256`, and — where the store returns one —
//!   the SHA-256 checksum it computed from what it received (full, or the
//!   composite `<b64>-<parts>` of the parts; moto omits the `-<parts>`).
//! - **Bounded memory.** Up to [`DEFAULT_MULTIPART_THRESHOLD`] one
//!   PutObject; above it, parts of [`DEFAULT_PART_SIZE`], at most
//!   [`DEFAULT_PARTS_IN_FLIGHT`] uploading at once. Bodies stream from the
//!   file through [`BODY_BUF`]-sized reads, so memory is ≈ parts in flight
//!   × `BODY_BUF` + one 1 MiB hashing buffer, whatever the part size (the
//!   cost: each byte is read twice, the second time from the page cache).
//!   Any error or cancellation aborts the multipart upload before `put`
//!   returns (and a dropped `put` future still spawns the abort).
//! - **Retries** are the SDK's standard strategy (exponential backoff with
//!   jitter, [`MAX_ATTEMPTS`] attempts per request) on connection errors,
//!   timeouts, 5xx and throttling (`SlowDown`), for every request — each one
//!   here is safe to repeat (file bodies are reopened for a retry, writes are
//!   create-only).
//!   A second retry layer (backon) would multiply the attempts, so there is
//!   none. 403/SignatureDoesNotMatch/NoSuchBucket are never retried and
//!   become [`TargetError::Refused`] with what to check.
//! - **Timeouts** (the target's `timeouts`): `connect`, and `request` for
//!   one attempt of one request, its body included; an attempt that runs
//!   out of time is retried like a 5xx, so a stalled store fails the upload
//!   after at most [`MAX_ATTEMPTS`] × `request` plus backoff.
//! - **Secrets** (secret key, session token) are read from their files into
//!   [`SecretString`], handed to the SDK's `Credentials` (whose `Debug`
//!   redacts), and never formatted: `Debug` of [`S3Target`] omits them and
//!   server messages are scrubbed of them before they reach an error.
//!
//! Must never: overwrite an object, delete anything but the named snapshot,
//! bypass Object Lock governance, or log/format a secret.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    Credentials, ProvideCredentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ServerSideEncryption,
};
use aws_smithy_types::byte_stream::Length;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine as _;
use futures::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{
    Cleanup, Confirmed, DeleteOutcome, RemoteSnapshot, Target, TargetError, chain, snapshot_time,
};
use crate::policy::model;
use crate::policy::validate::parse_timeout;
use crate::snapshot::Identity;

/// Files up to this size go up in one PutObject.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Multipart part size (grown for huge files to stay under 10 000 parts).
pub const DEFAULT_PART_SIZE: u64 = 16 * 1024 * 1024;
/// Parts uploading at once. Bodies stream from the file, so memory does not
/// grow with the part size: ≈ this × [`BODY_BUF`] plus one hashing buffer.
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// Read buffer of each streaming request body.
pub const BODY_BUF: usize = 256 * 1024;
/// Read buffer of the checksum pass.
const HASH_BUF: usize = 1024 * 1024;
/// Attempts per request (first try included) for transient failures.
pub const MAX_ATTEMPTS: u32 = 5;
/// Default `timeouts.connect`: TCP + TLS connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `timeouts.request`: one attempt of one request, body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How old an incomplete multipart upload must be before `cleanup` aborts it.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// S3's smallest part (all but the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part count; we stay well below it.
const MAX_PARTS: u64 = 9_000;
/// How long the standard AWS chain may take to find credentials at start.
const CHAIN_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// HEADs run concurrently while listing.
const LIST_HEADS_IN_FLIGHT: usize = 8;

const META_SHA256: &str = "snapward-sha256";
const META_INDEX: &str = "snapward-raft-index";
const META_TERM: &str = "snapward-raft-term";

/// Called with the cumulative number of bytes the store has accepted during
/// a `put` (after each part, or once for a single PutObject). For progress
/// display; it must not block.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Where the credentials come from; the secrets themselves are kept only to
/// scrub them out of server messages.
enum CredentialSource {
    Files {
        access_key_id: SecretString,
        secret_access_key: SecretString,
        session_token: Option<SecretString>,
    },
    Chain,
}

/// What error messages need: names to point at, secrets to scrub.
struct Context {
    target: String,
    bucket: String,
    endpoint: String,
    credentials: CredentialSource,
}

/// One S3 bucket + prefix as a snapshot target.
pub struct S3Target {
    ctx: Arc<Context>,
    client: Client,
    /// Key prefix of the target (`cluster-a/`), may be empty.
    prefix: String,
    /// File-name prefix of snapshots (`openbao-`).
    snapshot_prefix: String,
    sse: Option<model::ServerSideEncryption>,
    object_lock: Option<model::ObjectLock>,
    multipart_threshold: u64,
    part_size: u64,
    parts_in_flight: usize,
    progress: Option<Progress>,
}

impl fmt::Debug for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = match self.ctx.credentials {
            CredentialSource::Files { .. } => "files [redacted]",
            CredentialSource::Chain => "standard AWS chain",
        };
        f.debug_struct("S3Target")
            .field("name", &self.ctx.target)
            .field("endpoint", &self.ctx.endpoint)
            .field("bucket", &self.ctx.bucket)
            .field("prefix", &self.prefix)
            .field("snapshot_prefix", &self.snapshot_prefix)
            .field("credentials", &credentials)
            .field("sse", &self.sse.as_ref().map(|s| s.mode))
            .field("object_lock", &self.object_lock)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("parts_in_flight", &self.parts_in_flight)
            .finish_non_exhaustive()
    }
}

/// Reads one credential file, trimmed. Absent or empty ⇒ `CredentialsAbsent`.
async fn read_secret(target: &str, field: &str, path: &str) -> Result<SecretString, TargetError> {
    let absent = |why: &str| TargetError::CredentialsAbsent {
        target: target.to_owned(),
        detail: format!("{field} `{path}` {why}"),
    };
    let raw = match tokio::fs::read_to_string(path).await {
        Ok(s) => SecretString::from(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(absent("does not exist")),
        Err(source) => {
            return Err(TargetError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let trimmed = raw.expose_secret().trim();
    if trimmed.is_empty() {
        return Err(absent("is empty"));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A snapshot name handed in must be a plain file name: the key is
/// `<prefix><name>` and nothing may escape the prefix.
fn check_name(target: &str, name: &str) -> Result<(), TargetError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(TargetError::Failed {
            target: target.to_owned(),
            detail: format!("`{name}` is not a snapshot file name"),
        });
    }
    Ok(())
}

/// What an SDK error boils down to.
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    message: Option<String>,
    /// Full error chain, for failures that carry no service code.
    chain: String,
}

fn failure<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (code, message) = match err {
        SdkError::ServiceError(se) => (
            se.err().code().map(str::to_owned),
            se.err().message().map(str::to_owned),
        ),
        _ => (None, None),
    };
    Failure {
        status,
        code,
        message,
        chain: chain(err),
    }
}

impl Failure {
    fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
    fn not_found(&self) -> bool {
        self.status == Some(404) || self.is("NotFound") || self.is("NoSuchKey")
    }
    fn precondition_failed(&self) -> bool {
        self.status == Some(412) || self.is("PreconditionFailed")
    }
    fn not_implemented(&self) -> bool {
        self.status == Some(501) || self.is("NotImplemented")
    }
    fn access_denied(&self) -> bool {
        self.status == Some(403) || self.is("AccessDenied")
    }
}

/// What to check, per refusal code. Never echoes a credential.
fn refusal_hint(code: &str, bucket: &str) -> Option<String> {
    let hint = match code {
        "SignatureDoesNotMatch" => {
            "the secret access key does not match the access key id (or the request was signed \
             for another region/endpoint): check the file named by `secretAccessKeyFile` holds \
             exactly the secret for the key in `accessKeyIdFile`, and the target's `region` and \
             `endpoint`"
                .to_owned()
        }
        "InvalidAccessKeyId" => "the access key id is unknown to this endpoint: check \
             `accessKeyIdFile` and that `endpoint` points at the store that issued the key"
            .to_owned(),
        "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired" => {
            "the session token is expired or invalid: check `sessionTokenFile` (or the \
             environment's temporary credentials)"
                .to_owned()
        }
        "NoSuchBucket" => format!(
            "bucket `{bucket}` does not exist at this endpoint: check `bucket`, `region`, \
             `endpoint` and `pathStyle`"
        ),
        "AuthorizationHeaderMalformed"
        | "PermanentRedirect"
        | "IllegalLocationConstraintException" => {
            format!(
                "bucket `{bucket}` lives in another region or endpoint: check `region`, \
                 `endpoint` and `pathStyle`"
            )
        }
        "AccessDenied" | "AllAccessDisabled" | "AccountProblem" | "InvalidSecurity" => format!(
            "the credentials are not allowed to do this on bucket `{bucket}`: check the \
             key's policy (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject, \
             s3:DeleteObjectVersion, s3:ListBucketVersions, s3:ListBucketMultipartUploads, \
             s3:AbortMultipartUpload; s3:PutObjectRetention with Object Lock; kms:GenerateDataKey \
             and kms:Decrypt with SSE-KMS)"
        ),
        _ => return None,
    };
    Some(hint)
}

impl Context {
    /// Replaces every credential in a server-supplied text by `[redacted]`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let CredentialSource::Files {
            access_key_id,
            secret_access_key,
            session_token,
        } = &self.credentials
        {
            let secrets = [
                Some(secret_access_key),
                session_token.as_ref(),
                Some(access_key_id),
            ];
            for s in secrets.into_iter().flatten() {
                let s = s.expose_secret();
                if !s.is_empty() {
                    out = out.replace(s, "[redacted]");
                }
            }
        }
        out
    }

    /// Maps a failure of `op` on `what` to a `TargetError`.
    fn error(&self, op: &str, what: &str, f: &Failure) -> TargetError {
        let message = f
            .message
            .as_deref()
            .map(|m| format!(": {}", self.scrub(m)))
            .unwrap_or_default();
        let status = f.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
        let refused_code = f
            .code
            .as_deref()
            .and_then(|c| refusal_hint(c, &self.bucket).map(|h| (c, h)));
        let refused = match refused_code {
            Some((code, hint)) => Some((code.to_owned(), hint)),
            None if matches!(f.status, Some(401 | 403)) && f.code.is_none() => {
                // HEAD answers carry no body, so no error code: say both.
                Some((
                    "refused without an error code".to_owned(),
                    format!(
                        "either the credentials are wrong (check that `secretAccessKeyFile` \
                         holds exactly the secret for the key in `accessKeyIdFile`, and the \
                         target's `region` and `endpoint`) or they lack permission on bucket \
                         `{}` (s3:GetObject/s3:ListBucket)",
                        self.bucket
                    ),
                ))
            }
            None if matches!(f.status, Some(401 | 403)) => {
                let code = f.code.clone().unwrap_or_default();
                refusal_hint("AccessDenied", &self.bucket).map(|h| (code, h))
            }
            _ => None,
        };
        if let Some((code, hint)) = refused {
            return TargetError::Refused {
                target: self.target.clone(),
                detail: format!(
                    "{op} `{what}` in bucket `{}` at {}: {code}{status}{message}; {hint}",
                    self.bucket, self.endpoint
                ),
            };
        }
        let what_failed = match &f.code {
            Some(code) => format!("{code}{status}{message}"),
            None => self.scrub(&f.chain),
        };
        TargetError::Failed {
            target: self.target.clone(),
            detail: format!(
                "{op} `{what}` in bucket `{}` at {}: {what_failed}",
                self.bucket, self.endpoint
            ),
        }
    }

    fn failed(&self, detail: String) -> TargetError {
        TargetError::Failed {
            target: self.target.clone(),
            detail,
        }
    }
}

/// Aborts a multipart upload if `put` leaves it unfinished: awaited on the
/// error/cancel paths, spawned from `Drop` if the `put` future is dropped.
struct UploadGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl UploadGuard {
    async fn abort(mut self) {
        self.armed = false;
        abort_upload(&self.client, &self.bucket, &self.key, &self.upload_id).await;
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            let (bucket, key, id) = (
                self.bucket.clone(),
                self.key.clone(),
                self.upload_id.clone(),
            );
            handle.spawn(async move { abort_upload(&client, &bucket, &key, &id).await });
        }
    }
}

async fn abort_upload(client: &Client, bucket: &str, key: &str, upload_id: &str) {
    let res = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await;
    match res {
        Ok(_) => tracing::debug!(key, "aborted multipart upload"),
        Err(e) => {
            let f = failure(&e);
            if f.not_found() || f.is("NoSuchUpload") {
                return;
            }
            // Not fatal: `cleanup` aborts it in a later run.
            tracing::warn!(
                key,
                code = f.code.as_deref().unwrap_or("-"),
                status = f.status.unwrap_or(0),
                "could not abort multipart upload; a later run's cleanup will"
            );
        }
    }
}

/// What the store should report for the object after a successful upload:
/// the checksums it may return (base64 SHA-256 of the whole file, and for a
/// multipart upload the composite one, without its `-<parts>` suffix).
/// Empty when unknown.
struct Sent {
    size: u64,
    checksums: Vec<String>,
}

impl S3Target {
    /// Builds the client for one policy target. Credential files are read
    /// now (absent or empty ⇒ [`TargetError::CredentialsAbsent`]); without
    /// `credentials` the standard AWS chain (environment, shared config,
    /// web identity/IRSA, container/instance metadata) must yield
    /// credentials within 20 s, else `CredentialsAbsent` as well.
    pub async fn new(
        name: &str,
        cfg: &model::S3Target,
        snapshot_prefix: &str,
    ) -> Result<Self, TargetError> {
        let credentials = match &cfg.credentials {
            Some(c) => {
                let access_key_id =
                    read_secret(name, "accessKeyIdFile", &c.access_key_id_file).await?;
                let secret_access_key =
                    read_secret(name, "secretAccessKeyFile", &c.secret_access_key_file).await?;
                let session_token = match &c.session_token_file {
                    Some(p) => Some(read_secret(name, "sessionTokenFile", p).await?),
                    None => None,
                };
                CredentialSource::Files {
                    access_key_id,
                    secret_access_key,
                    session_token,
                }
            }
            None => CredentialSource::Chain,
        };
        let retry = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(10));
        let (connect, attempt) = timeouts(cfg.timeouts.as_ref());
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(connect)
            .operation_attempt_timeout(attempt)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let CredentialSource::Files {
            access_key_id,
            secret_access_key,
            session_token,
        } = &credentials
        {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id.expose_secret(),
                secret_access_key.expose_secret(),
                session_token.as_ref().map(|t| t.expose_secret().to_owned()),
                None,
                "snapward-credential-files",
            ));
        }
        let sdk = loader.load().await;
        if matches!(credentials, CredentialSource::Chain) {
            probe_chain(name, &sdk).await?;
        }
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.path_style)
            // We send our own SHA-256 headers; no SDK-chosen CRC headers or
            // aws-chunked trailers, which moto/s3s-fs/older stores reject.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("AWS S3 ({})", cfg.region));
        Ok(Self {
            ctx: Arc::new(Context {
                target: name.to_owned(),
                bucket: cfg.bucket.clone(),
                endpoint,
                credentials,
            }),
            client: Client::from_conf(s3),
            prefix: cfg.prefix.clone(),
            snapshot_prefix: snapshot_prefix.to_owned(),
            sse: cfg.server_side_encryption.clone(),
            object_lock: cfg.object_lock.clone(),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            progress: None,
        })
    }

    /// Tunes multipart uploads: files above `threshold` bytes go in parts of
    /// `part_size` (at least 5 MiB, S3's minimum), `parts_in_flight` at a
    /// time (at least 1).
    pub fn with_multipart(
        mut self,
        threshold: u64,
        part_size: u64,
        parts_in_flight: usize,
    ) -> Self {
        self.part_size = part_size.max(MIN_PART_SIZE);
        self.multipart_threshold = threshold.max(self.part_size);
        self.parts_in_flight = parts_in_flight.max(1);
        self
    }

    /// Reports upload progress (see [`Progress`]).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The snapshot name of a key under the prefix, if it is one.
    fn snapshot_of<'k>(&self, key: &'k str) -> Option<(&'k str, jiff::Timestamp)> {
        let name = key.strip_prefix(&self.prefix)?;
        if name.contains('/') {
            return None;
        }
        snapshot_time(&self.snapshot_prefix, name).map(|t| (name, t))
    }

    /// HEAD with checksums; `None` when the key does not exist.
    async fn head(&self, key: &str) -> Result<Option<HeadObjectOutput>, TargetError> {
        let res = self
            .client
            .head_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match res {
            Ok(out) => Ok(Some(out)),
            Err(e) => {
                let f = failure(&e);
                if f.not_found() {
                    Ok(None)
                } else {
                    Err(self.ctx.error("HeadObject", key, &f))
                }
            }
        }
    }

    fn metadata(&self, identity: &Identity, sha256: &str) -> HashMap<String, String> {
        HashMap::from([
            (META_SHA256.to_owned(), sha256.to_owned()),
            (META_INDEX.to_owned(), identity.index.to_string()),
            (META_TERM.to_owned(), identity.term.to_string()),
        ])
    }

    fn sse(&self) -> (Option<ServerSideEncryption>, Option<String>) {
        match &self.sse {
            None => (None, None),
            Some(s) => match s.mode {
                model::SseMode::Aes256 => (Some(ServerSideEncryption::Aes256), None),
                model::SseMode::AwsKms => {
                    (Some(ServerSideEncryption::AwsKms), s.kms_key_id.clone())
                }
            },
        }
    }

    /// Object Lock mode and retain-until (now + days).
    fn lock(&self) -> (Option<ObjectLockMode>, Option<aws_smithy_types::DateTime>) {
        match &self.object_lock {
            None => (None, None),
            Some(l) => {
                let mode = match l.mode {
                    model::ObjectLockMode::Governance => ObjectLockMode::Governance,
                    model::ObjectLockMode::Compliance => ObjectLockMode::Compliance,
                };
                let until = jiff::Timestamp::now().as_second() + i64::from(l.days) * 86_400;
                (
                    Some(mode),
                    Some(aws_smithy_types::DateTime::from_secs(until)),
                )
            }
        }
    }

    fn report_progress(&self, bytes: u64) {
        if let Some(p) = &self.progress {
            p(bytes);
        }
    }

    /// One PutObject streamed from the (small) file.
    async fn put_single(
        &self,
        file: &Path,
        key: &str,
        identity: &Identity,
        want_sha: &str,
        cancel: &CancellationToken,
    ) -> Result<Sent, TargetError> {
        let size = identity.file_size;
        let whole = Some(Sha256::new());
        let (digest, whole) = self.hash_range(file, 0, size, whole).await?;
        if whole.map(|h| hex::encode(h.finalize())).as_deref() != Some(want_sha) {
            return Err(changed(&self.ctx, file));
        }
        let checksum = b64(&digest);
        let body = self.file_body(file, 0, size).await?;
        let (sse, kms) = self.sse();
        let (lock_mode, lock_until) = self.lock();
        let req = self
            .client
            .put_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .body(body)
            .content_length(size as i64)
            .content_type("application/gzip")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(&checksum)
            .if_none_match("*")
            .set_metadata(Some(self.metadata(identity, want_sha)))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until);
        let res = unless_cancelled(cancel, req.send()).await?;
        match res {
            Ok(_) => {
                self.report_progress(size);
                Ok(Sent {
                    size,
                    checksums: vec![checksum],
                })
            }
            Err(e) => {
                let f = failure(&e);
                if f.precondition_failed() {
                    Err(self.already_exists(key))
                } else {
                    Err(self.ctx.error("PutObject", key, &f))
                }
            }
        }
    }

    /// Does `key` hold an object of this size with this `snapward-sha256`?
    async fn holds(&self, key: &str, size: u64, want_sha: &str) -> Result<bool, TargetError> {
        Ok(self.head(key).await?.is_some_and(|h| {
            h.content_length() == Some(size as i64)
                && h.metadata()
                    .and_then(|m| m.get(META_SHA256))
                    .is_some_and(|s| s == want_sha)
        }))
    }

    fn already_exists(&self, key: &str) -> TargetError {
        TargetError::AlreadyExists {
            target: self.ctx.target.clone(),
            name: key.strip_prefix(&self.prefix).unwrap_or(key).to_owned(),
        }
    }

    /// Multipart upload; the upload is aborted on every path that does not
    /// complete it.
    async fn put_multipart(
        &self,
        file: &Path,
        key: &str,
        size: u64,
        identity: &Identity,
        want_sha: &str,
        cancel: &CancellationToken,
    ) -> Result<Sent, TargetError> {
        let (sse, kms) = self.sse();
        let (lock_mode, lock_until) = self.lock();
        self.abort_crashed_uploads_of(key).await;
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&self.ctx.bucket)
            .key(key)
            .content_type("application/gzip")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .set_metadata(Some(self.metadata(identity, want_sha)))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms)
            .set_object_lock_mode(lock_mode)
            .set_object_lock_retain_until_date(lock_until);
        let created = unless_cancelled(cancel, create.send()).await?;
        let created =
            created.map_err(|e| self.ctx.error("CreateMultipartUpload", key, &failure(&e)))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(self.ctx.failed(format!(
                "CreateMultipartUpload `{key}` returned no upload id"
            )));
        };
        let guard = UploadGuard {
            client: self.client.clone(),
            bucket: self.ctx.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.clone(),
            armed: true,
        };
        crate::crash::crash_point!("s3.multipart.after-create");
        tracing::debug!(
            key,
            size,
            part_size = self.part_size,
            "multipart upload started"
        );

        let parts = match self
            .upload_parts(file, key, &upload_id, size, want_sha, cancel)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        };
        if cancel.is_cancelled() {
            guard.abort().await;
            return Err(TargetError::Cancelled);
        }
        let mut concat = Vec::with_capacity(parts.len() * 32);
        let mut completed = Vec::with_capacity(parts.len());
        for (part, digest) in parts {
            concat.extend_from_slice(&digest);
            completed.push(part);
        }
        let complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.ctx.bucket)
            .key(key)
            .upload_id(&upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            );
        let res = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                guard.abort().await;
                return Err(TargetError::Cancelled);
            }
            r = complete.send() => r,
        };
        let sent = Sent {
            size,
            checksums: vec![b64(&Sha256::digest(&concat)), b64(&hex_to_bytes(want_sha))],
        };
        match res {
            Ok(_) => {
                let mut guard = guard;
                guard.armed = false;
                Ok(sent)
            }
            Err(e) => {
                let f = failure(&e);
                // An SDK retry of a Complete whose answer was lost finds the
                // upload already completed: NoSuchUpload (s3s-fs says
                // AccessDenied). If the object is ours, it is done.
                if !f.precondition_failed()
                    && self.holds(key, size, want_sha).await.unwrap_or(false)
                {
                    let mut guard = guard;
                    guard.armed = false;
                    return Ok(sent);
                }
                guard.abort().await;
                if f.precondition_failed() {
                    Err(self.already_exists(key))
                } else {
                    Err(self.ctx.error("CompleteMultipartUpload", key, &f))
                }
            }
        }
    }

    /// SHA-256 of `len` bytes at `offset` (and feeds them to `whole`), read
    /// through one small buffer on a blocking thread.
    async fn hash_range(
        &self,
        file: &Path,
        offset: u64,
        len: u64,
        mut whole: Option<Sha256>,
    ) -> Result<([u8; 32], Option<Sha256>), TargetError> {
        let path = file.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; HASH_BUF.min(len as usize).max(1)];
            let mut part = Sha256::new();
            let mut at = offset;
            let end = offset + len;
            while at < end {
                let n = buf.len().min((end - at) as usize);
                let chunk = buf.get_mut(..n).unwrap_or_default();
                f.read_exact_at(chunk, at)?;
                part.update(&*chunk);
                if let Some(h) = whole.as_mut() {
                    h.update(&*chunk);
                }
                at += n as u64;
            }
            Ok::<_, std::io::Error>((part.finalize().into(), whole))
        });
        match task.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(source)) => Err(io_err(file, source)),
            Err(e) => Err(self.ctx.failed(format!("reading {}: {e}", file.display()))),
        }
    }

    /// A retryable request body streaming `len` bytes at `offset` from the
    /// file (the SDK reopens it for a retry).
    async fn file_body(
        &self,
        file: &Path,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, TargetError> {
        ByteStream::read_from()
            .path(file)
            .offset(offset)
            .length(Length::Exact(len))
            .buffer_size(BODY_BUF)
            .build()
            .await
            .map_err(|e| {
                self.ctx
                    .failed(format!("reading {}: {}", file.display(), chain(&e)))
            })
    }

    /// Hashes the file part by part (one reader, in order, hashing the whole
    /// file on the way) and uploads up to `parts_in_flight` parts at once,
    /// each streamed from the file with the SHA-256 just computed for it.
    /// Returns the completed parts in order with their SHA-256 digests.
    async fn upload_parts(
        &self,
        file: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
        want_sha: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<(CompletedPart, [u8; 32])>, TargetError> {
        let part_size = self.part_size.max(size.div_ceil(MAX_PARTS));
        let count = size.div_ceil(part_size);
        let slots = Arc::new(Semaphore::new(self.parts_in_flight));
        let uploaded = Arc::new(AtomicU64::new(0));
        let mut tasks: JoinSet<Result<(CompletedPart, [u8; 32]), TargetError>> = JoinSet::new();
        let mut done: Vec<(CompletedPart, [u8; 32])> = Vec::with_capacity(count as usize);
        let mut whole = Some(Sha256::new());

        for number in 1..=count {
            let permit = unless_cancelled(cancel, slots.clone().acquire_owned())
                .await?
                .map_err(|e| self.ctx.failed(format!("part scheduling: {e}")))?;
            while let Some(joined) = tasks.try_join_next() {
                done.push(self.joined(joined)?);
            }
            let offset = (number - 1) * part_size;
            let len = part_size.min(size - offset);
            let (digest, hashed) = self.hash_range(file, offset, len, whole.take()).await?;
            whole = hashed;
            let checksum = b64(&digest);
            let body = self.file_body(file, offset, len).await?;
            let request = self
                .client
                .upload_part()
                .bucket(&self.ctx.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number as i32)
                .content_length(len as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&checksum)
                .body(body);
            let ctx = Arc::clone(&self.ctx);
            let key = key.to_owned();
            let uploaded = Arc::clone(&uploaded);
            let progress = self.progress.clone();
            tasks.spawn(async move {
                let _slot = permit;
                let out = request.send().await.map_err(|e| {
                    ctx.error("UploadPart", &format!("{key} part {number}"), &failure(&e))
                })?;
                crate::crash::crash_point!("s3.multipart.after-part");
                let total = uploaded.fetch_add(len, Ordering::Relaxed) + len;
                if let Some(p) = progress {
                    p(total);
                }
                let part = CompletedPart::builder()
                    .part_number(number as i32)
                    .set_e_tag(out.e_tag().map(str::to_owned))
                    .checksum_sha256(checksum)
                    .build();
                Ok((part, digest))
            });
        }
        while !tasks.is_empty() {
            let joined = unless_cancelled(cancel, tasks.join_next()).await?;
            if let Some(joined) = joined {
                done.push(self.joined(joined)?);
            }
        }
        if whole.map(|h| hex::encode(h.finalize())).as_deref() != Some(want_sha) {
            return Err(changed(&self.ctx, file));
        }
        done.sort_by_key(|(p, _)| p.part_number());
        Ok(done)
    }

    fn joined(
        &self,
        joined: Result<Result<(CompletedPart, [u8; 32]), TargetError>, tokio::task::JoinError>,
    ) -> Result<(CompletedPart, [u8; 32]), TargetError> {
        joined.map_err(|e| self.ctx.failed(format!("part upload task: {e}")))?
    }

    /// HEAD after upload: size, metadata SHA-256 and the store's checksum.
    async fn confirm(
        &self,
        key: &str,
        name: &str,
        want_sha: &str,
        sent: &Sent,
    ) -> Result<Confirmed, TargetError> {
        let not_confirmed = |got: String| TargetError::NotConfirmed {
            target: self.ctx.target.clone(),
            name: name.to_owned(),
            expected: format!("{} bytes, sha256 {want_sha}", sent.size),
            got,
        };
        let Some(head) = self.head(key).await? else {
            return Err(not_confirmed("no such object".to_owned()));
        };
        let size = head.content_length().map(|l| l.max(0) as u64);
        let sha = head
            .metadata()
            .and_then(|m| m.get(META_SHA256))
            .map(|s| s.to_ascii_lowercase());
        if size != Some(sent.size) || sha.as_deref() != Some(want_sha) {
            return Err(not_confirmed(format!(
                "{} bytes, sha256 {}",
                size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                sha.as_deref().unwrap_or("absent")
            )));
        }
        if let Some(cs) = head
            .checksum_sha256()
            .filter(|_| !sent.checksums.is_empty())
        {
            // A store may report the composite (`<b64>-<n>` on AWS, moto
            // drops the `-<n>`) or a full-object checksum for a multipart
            // object; either must be ours.
            let value = cs.split_once('-').map_or(cs, |(v, _)| v);
            if !sent.checksums.iter().any(|c| c == value) {
                return Err(not_confirmed(format!("checksum-sha256 {cs}")));
            }
        }
        Ok(Confirmed {
            size: sent.size,
            sha256: want_sha.to_owned(),
        })
    }

    /// Aborts incomplete multipart uploads of snapshots under the prefix
    /// initiated more than `age` ago. A store without ListMultipartUploads
    /// (HTTP 501, e.g. s3s-fs) has nothing to clean.
    pub async fn cleanup_older_than(&self, age: Duration) -> Result<Cleanup, TargetError> {
        let cutoff = jiff::Timestamp::now().as_second()
            - i64::try_from(age.as_secs()).unwrap_or(i64::MAX / 2);
        let list_prefix = format!("{}{}", self.prefix, self.snapshot_prefix);
        let mut removed = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let res = self
                .client
                .list_multipart_uploads()
                .bucket(&self.ctx.bucket)
                .prefix(&list_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await;
            let page = match res {
                Ok(p) => p,
                Err(e) => {
                    let f = failure(&e);
                    if f.not_implemented() {
                        tracing::debug!(
                            target_name = %self.ctx.target,
                            "store does not implement ListMultipartUploads: nothing to clean"
                        );
                        return Ok(Cleanup::default());
                    }
                    return Err(self.ctx.error("ListMultipartUploads", &list_prefix, &f));
                }
            };
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                if self.snapshot_of(key).is_none() {
                    continue;
                }
                let initiated = upload.initiated().map(|t| t.secs());
                if initiated.is_none_or(|t| t > cutoff) {
                    continue;
                }
                let res = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.ctx.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await;
                match res {
                    Ok(_) => {}
                    Err(e) => {
                        let f = failure(&e);
                        if !(f.not_found() || f.is("NoSuchUpload")) {
                            return Err(self.ctx.error("AbortMultipartUpload", key, &f));
                        }
                    }
                }
                tracing::info!(
                    target_name = %self.ctx.target,
                    key,
                    "aborted a stale incomplete multipart upload"
                );
                removed.push(format!("{key} (multipart upload {id})"));
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(Cleanup { removed })
    }

    /// Aborts incomplete multipart uploads of exactly `key`, whatever their
    /// age: `put` checked the key is absent and holds the run lock, so such
    /// an upload can only be a crashed run's upload of this very snapshot
    /// (the age-based [`Self::cleanup_older_than`] would leave it for a
    /// day). Best effort: a store without ListMultipartUploads, or a denied
    /// listing, leaves it to that cleanup.
    async fn abort_crashed_uploads_of(&self, key: &str) {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.ctx.bucket)
            .prefix(key)
            .send()
            .await;
        let page = match listed {
            Ok(p) => p,
            Err(e) => {
                let f = failure(&e);
                tracing::debug!(
                    key,
                    code = f.code.as_deref().unwrap_or("-"),
                    "cannot list incomplete uploads of the key; the stale-upload cleanup will abort any"
                );
                return;
            }
        };
        for upload in page.uploads() {
            if let (Some(k), Some(id)) = (upload.key(), upload.upload_id())
                && k == key
            {
                tracing::info!(
                    target_name = %self.ctx.target,
                    key,
                    "aborting an incomplete upload of this snapshot left by a crashed run"
                );
                abort_upload(&self.client, &self.ctx.bucket, key, id).await;
            }
        }
    }

    /// Every version id and delete marker of exactly `key`; `None` when the
    /// store cannot list versions (unversioned stores, no permission).
    async fn versions_of(&self, key: &str) -> Result<Option<Vec<String>>, TargetError> {
        let mut ids = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let res = self
                .client
                .list_object_versions()
                .bucket(&self.ctx.bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await;
            let page = match res {
                Ok(p) => p,
                Err(e) => {
                    let f = failure(&e);
                    if f.not_implemented() || f.access_denied() {
                        tracing::debug!(
                            key,
                            code = f.code.as_deref().unwrap_or("-"),
                            "cannot list object versions; deleting the current object only"
                        );
                        return Ok(None);
                    }
                    return Err(self.ctx.error("ListObjectVersions", key, &f));
                }
            };
            let versions = page
                .versions()
                .iter()
                .filter(|v| v.key() == Some(key))
                .filter_map(|v| v.version_id());
            let markers = page
                .delete_markers()
                .iter()
                .filter(|m| m.key() == Some(key))
                .filter_map(|m| m.version_id());
            ids.extend(versions.chain(markers).map(str::to_owned));
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        if ids.iter().all(|id| id == "null") {
            // Unversioned (or never versioned): a plain delete removes it.
            return Ok(None);
        }
        Ok(Some(ids))
    }

    /// Is this refused delete Object Lock's doing? The store says so, or the
    /// version carries a retention date in the future or a legal hold.
    async fn lock_refused(&self, key: &str, version: Option<&str>, f: &Failure) -> bool {
        if !f.access_denied() && !f.is("InvalidRequest") {
            return false;
        }
        let msg = f.message.as_deref().unwrap_or("").to_ascii_lowercase();
        if msg.contains("lock") || msg.contains("retention") || msg.contains("worm") {
            return true;
        }
        let head = self
            .client
            .head_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        let Ok(head) = head else {
            return false;
        };
        let now = jiff::Timestamp::now().as_second();
        let retained = head
            .object_lock_retain_until_date()
            .is_some_and(|t| t.secs() > now);
        let held = head
            .object_lock_legal_hold_status()
            .is_some_and(|s| s.as_str() == "ON");
        retained || held
    }

    async fn delete_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> Result<DeleteOutcome, TargetError> {
        let res = self
            .client
            .delete_object()
            .bucket(&self.ctx.bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        match res {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(e) => {
                let f = failure(&e);
                if f.not_found() {
                    return Ok(DeleteOutcome::Deleted);
                }
                if self.lock_refused(key, version, &f).await {
                    return Ok(DeleteOutcome::RetainedByLock);
                }
                Err(self.ctx.error("DeleteObject", key, &f))
            }
        }
    }

    /// HEADs one listed key into a `RemoteSnapshot` (`None` if it vanished).
    async fn describe(
        &self,
        key: String,
        name: String,
        time: jiff::Timestamp,
    ) -> Result<Option<RemoteSnapshot>, TargetError> {
        let Some(head) = self.head(&key).await? else {
            return Ok(None);
        };
        let meta = head.metadata();
        let get = |k: &str| meta.and_then(|m| m.get(k)).map(|v| v.trim().to_owned());
        let sha256 = get(META_SHA256)
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        Ok(Some(RemoteSnapshot {
            name,
            size: head.content_length().map_or(0, |l| l.max(0) as u64),
            sha256,
            index: get(META_INDEX).and_then(|v| v.parse().ok()),
            term: get(META_TERM).and_then(|v| v.parse().ok()),
            time,
        }))
    }
}

/// (connect, one attempt) from the policy (validated), else the defaults.
/// `fut`'s output, unless the run is cancelled first (checked first: a
/// cancelled run starts and waits for nothing more).
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, TargetError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TargetError::Cancelled),
        v = fut => Ok(v),
    }
}

fn timeouts(cfg: Option<&model::S3Timeouts>) -> (Duration, Duration) {
    let parse = |v: Option<&String>, default: Duration| {
        v.and_then(|v| parse_timeout(v).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    (
        parse(cfg.map(|t| &t.connect), DEFAULT_CONNECT_TIMEOUT),
        parse(cfg.map(|t| &t.request), DEFAULT_REQUEST_TIMEOUT),
    )
}

/// The standard chain must produce credentials now, or the target counts
/// as having none (an `optional` target is then skipped).
async fn probe_chain(name: &str, sdk: &aws_config::SdkConfig) -> Result<(), TargetError> {
    let absent = |detail: String| TargetError::CredentialsAbsent {
        target: name.to_owned(),
        detail,
    };
    let Some(provider) = sdk.credentials_provider() else {
        return Err(absent(
            "the standard AWS chain has no credentials provider".to_owned(),
        ));
    };
    match tokio::time::timeout(CHAIN_PROBE_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(absent(format!(
            "the standard AWS chain (environment, shared config, web identity, container or \
             instance metadata) found none: {}",
            chain(&e)
        ))),
        Err(_) => Err(absent(format!(
            "the standard AWS chain found none within {}s",
            CHAIN_PROBE_TIMEOUT.as_secs()
        ))),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> TargetError {
    TargetError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn changed(ctx: &Context, file: &Path) -> TargetError {
    ctx.failed(format!(
        "{} does not match its snapshot identity (changed since it was verified?): not uploaded",
        file.display()
    ))
}

fn hex_to_bytes(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).unwrap_or_default()
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[async_trait]
impl Target for S3Target {
    fn name(&self) -> &str {
        &self.ctx.target
    }

    async fn list(&self) -> Result<Vec<RemoteSnapshot>, TargetError> {
        let list_prefix = format!("{}{}", self.prefix, self.snapshot_prefix);
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.ctx.bucket)
            .prefix(&list_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| self.ctx.error("ListObjectsV2", &list_prefix, &failure(&e)))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if let Some((name, time)) = self.snapshot_of(key) {
                    keys.push((key.to_owned(), name.to_owned(), time));
                }
            }
        }
        let described: Vec<_> = futures::stream::iter(keys)
            .map(|(key, name, time)| self.describe(key, name, time))
            .buffer_unordered(LIST_HEADS_IN_FLIGHT)
            .collect()
            .await;
        let mut out = Vec::with_capacity(described.len());
        for d in described {
            if let Some(s) = d? {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn put(
        &self,
        file: &Path,
        name: &str,
        identity: &Identity,
        cancel: &CancellationToken,
    ) -> Result<Confirmed, TargetError> {
        check_name(&self.ctx.target, name)?;
        let want_sha = identity.sha256.to_ascii_lowercase();
        if !is_sha256_hex(&want_sha) {
            return Err(self.ctx.failed(format!(
                "the identity of `{name}` has no valid SHA-256: not uploaded"
            )));
        }
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|source| io_err(file, source))?
            .len();
        if size != identity.file_size {
            return Err(changed(&self.ctx, file));
        }
        let key = self.key(name);
        if self.head(&key).await?.is_some() {
            return Err(self.already_exists(&key));
        }
        if cancel.is_cancelled() {
            return Err(TargetError::Cancelled);
        }
        tracing::info!(target_name = %self.ctx.target, key, size, "uploading snapshot");
        let sent = if size <= self.multipart_threshold {
            self.put_single(file, &key, identity, &want_sha, cancel)
                .await
        } else {
            self.put_multipart(file, &key, size, identity, &want_sha, cancel)
                .await
        };
        let sent = match sent {
            Ok(s) => s,
            Err(TargetError::AlreadyExists { target, name }) => {
                // 412 after our HEAD said absent: either a racing writer or
                // an SDK retry whose first attempt succeeded. Only the
                // latter is ours: same size and SHA-256.
                if !self.holds(&key, size, &want_sha).await? {
                    return Err(TargetError::AlreadyExists { target, name });
                }
                // The parts of that attempt are unknown: confirm by size
                // and metadata only.
                Sent {
                    size,
                    checksums: Vec::new(),
                }
            }
            Err(e) => return Err(e),
        };
        crate::crash::crash_point!("s3.after-complete");
        let confirmed = self.confirm(&key, name, &want_sha, &sent).await?;
        tracing::info!(target_name = %self.ctx.target, key, size, "upload confirmed");
        Ok(confirmed)
    }

    /// Deletes every version of the snapshot's key (and any delete marker),
    /// by version id, so a versioned bucket does not keep the data behind a
    /// delete marker and Object Lock gets its say: a version under
    /// retention or legal hold refuses, the snapshot stays listed, and the
    /// outcome is [`DeleteOutcome::RetainedByLock`] (governance retention
    /// is never bypassed). Unversioned stores, or credentials without
    /// s3:ListBucketVersions, get a plain DeleteObject (which, on a
    /// versioned bucket, leaves a delete marker; an AccessDenied caused by
    /// a lock is still `RetainedByLock`).
    async fn delete(&self, name: &str) -> Result<DeleteOutcome, TargetError> {
        check_name(&self.ctx.target, name)?;
        let key = self.key(name);
        let Some(versions) = self.versions_of(&key).await? else {
            return self.delete_version(&key, None).await;
        };
        let mut outcome = DeleteOutcome::Deleted;
        for id in versions {
            if self.delete_version(&key, Some(&id)).await? == DeleteOutcome::RetainedByLock {
                outcome = DeleteOutcome::RetainedByLock;
            }
        }
        if outcome == DeleteOutcome::RetainedByLock {
            tracing::info!(target_name = %self.ctx.target, key, "delete refused by Object Lock: retained");
        }
        Ok(outcome)
    }

    async fn fetch(
        &self,
        name: &str,
        dest: &Path,
        cancel: &CancellationToken,
    ) -> Result<u64, TargetError> {
        check_name(&self.ctx.target, name)?;
        let key = self.key(name);
        let get = self.client.get_object().bucket(&self.ctx.bucket).key(&key);
        let res = unless_cancelled(cancel, get.send()).await?;
        let out = res.map_err(|e| self.ctx.error("GetObject", &key, &failure(&e)))?;
        let expected_size = out.content_length().map(|l| l.max(0) as u64);
        let expected_sha = out
            .metadata()
            .and_then(|m| m.get(META_SHA256))
            .map(|s| s.to_ascii_lowercase());
        let mut body = out.body;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|source| io_err(dest, source))?;
        let result: Result<u64, TargetError> = async {
            let mut hasher = Sha256::new();
            let mut written = 0u64;
            loop {
                let chunk = unless_cancelled(cancel, body.next()).await?;
                let Some(chunk) = chunk else { break };
                let chunk = chunk.map_err(|e| {
                    self.ctx.failed(format!(
                        "GetObject `{key}`: reading the body: {}",
                        chain(&e)
                    ))
                })?;
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|source| io_err(dest, source))?;
                written += chunk.len() as u64;
                crate::crash::crash_point!("fetch.mid-download");
            }
            file.flush().await.map_err(|source| io_err(dest, source))?;
            file.sync_all()
                .await
                .map_err(|source| io_err(dest, source))?;
            let sha = hex::encode(hasher.finalize());
            let size_ok = expected_size.is_none_or(|s| s == written);
            let sha_ok = expected_sha.as_deref().is_none_or(|s| s == sha);
            if !size_ok || !sha_ok {
                return Err(TargetError::NotConfirmed {
                    target: self.ctx.target.clone(),
                    name: name.to_owned(),
                    expected: format!(
                        "{} bytes, sha256 {}",
                        expected_size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                        expected_sha.as_deref().unwrap_or("?")
                    ),
                    got: format!("{written} bytes, sha256 {sha}"),
                });
            }
            Ok(written)
        }
        .await;
        if result.is_err() {
            drop(file);
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn cleanup(&self) -> Result<Cleanup, TargetError> {
        self.cleanup_older_than(STALE_UPLOAD_AGE).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            target: "offsite".to_owned(),
            bucket: "snaps".to_owned(),
            endpoint: "https://s3.example".to_owned(),
            credentials: CredentialSource::Files {
                access_key_id: SecretString::from("AKIDEXAMPLE"),
                secret_access_key: SecretString::from("s3cr3t/value"),
                session_token: Some(SecretString::from("tok3n")),
            },
        }
    }

    fn service(status: u16, code: &str, message: &str) -> Failure {
        Failure {
            status: Some(status),
            code: Some(code.to_owned()),
            message: Some(message.to_owned()),
            chain: String::new(),
        }
    }

    #[test]
    fn server_messages_are_scrubbed_of_every_credential() {
        let f = service(
            403,
            "SignatureDoesNotMatch",
            "signed with AKIDEXAMPLE / s3cr3t/value / tok3n",
        );
        let err = ctx().error("PutObject", "a/b.snap", &f);
        let text = format!("{err} {err:?}");
        assert!(matches!(err, TargetError::Refused { .. }), "{text}");
        for secret in ["AKIDEXAMPLE", "s3cr3t/value", "tok3n"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(
            text.contains("[redacted]") && text.contains("`snaps`"),
            "{text}"
        );
    }

    #[test]
    fn refusals_and_transient_failures_are_told_apart() {
        let c = ctx();
        let refused = |f: Failure| matches!(c.error("op", "k", &f), TargetError::Refused { .. });
        assert!(refused(service(404, "NoSuchBucket", "")));
        assert!(refused(service(403, "AccessDenied", "")));
        assert!(refused(service(403, "InvalidAccessKeyId", "")));
        assert!(refused(Failure {
            status: Some(403),
            code: None,
            message: None,
            chain: String::new(),
        }));
        assert!(!refused(service(503, "SlowDown", "")));
        assert!(!refused(service(500, "InternalError", "")));
    }

    #[test]
    fn debug_shows_no_credentials() {
        let cfg = model::S3Target {
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            region: "us-east-1".to_owned(),
            bucket: "snaps".to_owned(),
            prefix: String::new(),
            path_style: true,
            credentials: None,
            server_side_encryption: None,
            object_lock: None,
            timeouts: None,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let (ak, sk) = (dir.path().join("ak"), dir.path().join("sk"));
        std::fs::write(&ak, "AKIDEXAMPLE\n").expect("write");
        std::fs::write(&sk, "s3cr3t/value\n").expect("write");
        let cfg = model::S3Target {
            credentials: Some(model::S3Credentials {
                access_key_id_file: ak.display().to_string(),
                secret_access_key_file: sk.display().to_string(),
                session_token_file: None,
            }),
            ..cfg
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let target = rt
            .block_on(S3Target::new("offsite", &cfg, "openbao-"))
            .expect("target");
        let debug = format!("{target:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("AKIDEXAMPLE"),
            "{debug}"
        );
        assert!(debug.contains("redacted"), "{debug}");
    }
}
