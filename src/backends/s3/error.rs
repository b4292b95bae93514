//! What an S3 failure means for the run: [`TargetError::Refused`] (a
//! human must fix credentials, permissions, bucket or region — with what
//! to check) or [`TargetError::Failed`] (a later run may succeed), and the
//! small checks every operation shares.
//!
//! Must never: let a credential reach an error (server messages are
//! scrubbed of every secret the target holds), or retry anything (the
//! SDK's strategy is the only retry layer).

use std::path::Path;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::client::CredentialSource;
use crate::backends::{TargetError, chain};

/// What the store answered to one request (or why no answer came),
/// scrubbed of every credential the target holds: the cause behind an S3
/// [`TargetError::Refused`] or [`TargetError::Failed`]. The SDK's own error
/// is not kept: its Debug holds the raw HTTP response, and a store's error
/// body may quote the access key id (AWS's `SignatureDoesNotMatch` does).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{text}")]
pub struct RequestFailure {
    status: Option<u16>,
    code: Option<String>,
    /// `Code (HTTP n): message[; what to check]`, or the scrubbed chain of
    /// a failure without an answer (connection, timeout).
    text: String,
}

impl RequestFailure {
    /// The HTTP status, when the store answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The S3 error code (`AccessDenied`, `SlowDown`), when the answer had one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}

/// What error messages need: names to point at, secrets to scrub.
pub(super) struct Context {
    pub(super) target: String,
    pub(super) bucket: String,
    pub(super) endpoint: String,
    pub(super) credentials: CredentialSource,
}

/// What an SDK error boils down to.
pub(super) struct Failure {
    pub(super) status: Option<u16>,
    pub(super) code: Option<String>,
    pub(super) message: Option<String>,
    /// Full error chain, for failures that carry no service code.
    pub(super) chain: String,
}

pub(super) fn failure<E>(err: &SdkError<E, HttpResponse>) -> Failure
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
    pub(super) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
    pub(super) fn not_found(&self) -> bool {
        self.status == Some(404) || self.is("NotFound") || self.is("NoSuchKey")
    }
    pub(super) fn precondition_failed(&self) -> bool {
        self.status == Some(412) || self.is("PreconditionFailed")
    }
    pub(super) fn not_implemented(&self) -> bool {
        self.status == Some(501) || self.is("NotImplemented")
    }
    pub(super) fn access_denied(&self) -> bool {
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
    pub(super) fn scrub(&self, text: &str) -> String {
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
    pub(super) fn error(&self, op: &str, what: &str, f: &Failure) -> TargetError {
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
        let request = format!(
            "{op} `{what}` in bucket `{}` at {}",
            self.bucket, self.endpoint
        );
        let failure = |text: String| RequestFailure {
            status: f.status,
            code: f.code.clone(),
            text,
        };
        if let Some((code, hint)) = refused {
            return TargetError::refused(&self.target, request)
                .caused_by(failure(format!("{code}{status}{message}; {hint}")));
        }
        let what_failed = match &f.code {
            Some(code) => format!("{code}{status}{message}"),
            None => self.scrub(&f.chain),
        };
        TargetError::failed(&self.target, request).caused_by(failure(what_failed))
    }

    pub(super) fn failed(&self, detail: String) -> TargetError {
        TargetError::failed(&self.target, detail)
    }
}

/// A snapshot name handed in must be a plain file name: the key is
/// `<prefix><name>` and nothing may escape the prefix.
pub(super) fn check_name(target: &str, name: &str) -> Result<(), TargetError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(TargetError::failed(
            target,
            format!("`{name}` is not a snapshot file name"),
        ));
    }
    Ok(())
}

/// `fut`'s output, unless the run is cancelled first (checked first: a
/// cancelled run starts and waits for nothing more).
pub(super) async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, TargetError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(TargetError::Cancelled),
        v = fut => Ok(v),
    }
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> TargetError {
    TargetError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(super) fn changed(ctx: &Context, file: &Path) -> TargetError {
    ctx.failed(format!(
        "{} does not match its snapshot identity (changed since it was verified?): not uploaded",
        file.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

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
    fn the_answer_is_the_source_and_the_message_keeps_it() {
        let err = ctx().error(
            "PutObject",
            "a/b.snap",
            &service(403, "SignatureDoesNotMatch", "no match"),
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "target `offsite` refused the request: PutObject `a/b.snap` in bucket `snaps` \
                 at https://s3.example: SignatureDoesNotMatch (HTTP 403): no match; the secret \
                 access key does not match"
            ),
            "{text}"
        );
        let source = std::error::Error::source(&err).expect("a source");
        let failure = source
            .downcast_ref::<RequestFailure>()
            .expect("RequestFailure");
        assert_eq!(failure.code(), Some("SignatureDoesNotMatch"));
        assert_eq!(failure.status(), Some(403));
        assert_eq!(chain(&err), text);

        let failed = ctx().error("HeadObject", "k", &service(500, "InternalError", "oops"));
        assert_eq!(
            failed.to_string(),
            "target `offsite` failed: HeadObject `k` in bucket `snaps` at https://s3.example: \
             InternalError (HTTP 500): oops"
        );
    }
}
