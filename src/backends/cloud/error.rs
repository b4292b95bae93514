//! Store errors → [`TargetError`]: rendered to text, scrubbed of every
//! secret the target holds (and of any `sig=` query value), so no cause
//! object that could print a credential is kept.
//!
//! Must never: let a credential through into a message.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::CloudTarget;
use crate::backends::TargetError;

/// The secrets to remove from any text that leaves the target.
#[derive(Default)]
pub struct Scrubber {
    secrets: Vec<SecretString>,
}

impl Scrubber {
    pub fn new(secrets: Vec<SecretString>) -> Self {
        Self { secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            let s = s.expose_secret();
            if s.len() >= 4 {
                out = out.replace(s, "[redacted]");
            }
        }
        redact_query_value(&out, "sig=")
    }
}

/// Replaces the value after every `key` (up to `&`, whitespace or a quote).
fn redact_query_value(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        if end > 0 {
            out.push_str("[redacted]");
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Does the store's answer say an immutability policy or a legal hold
/// keeps the blob (Azure: 409 `BlobImmutableDueToPolicy`,
/// `BlobImmutableDueToLegalHold`)?
pub(super) fn is_immutable(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("immutable") || t.contains("legal hold") || t.contains("legalhold")
}

impl CloudTarget {
    pub(super) fn failed(&self, detail: String) -> TargetError {
        TargetError::Failed {
            target: self.name.clone(),
            detail,
            source: None,
        }
    }

    /// One failed request: 401/403 and a missing container are
    /// [`TargetError::Refused`] (retrying will not help) with what to
    /// check; everything else [`TargetError::Failed`].
    pub(super) fn error(&self, op: &str, what: &str, e: &object_store::Error) -> TargetError {
        let text = self.scrub.scrub(&crate::backends::chain(e));
        let refused = |status: &str, hint: &str| TargetError::Refused {
            target: self.name.clone(),
            detail: format!("{} {op} `{what}`: {status}: {hint} ({text})", self.kind),
            source: None,
        };
        // Some operations (list) wrap the status in a generic error: the
        // status line is in the text.
        let says = |status: &str| text.contains(&format!("status code: {status}"));
        match e {
            object_store::Error::PermissionDenied { .. } => {
                refused("HTTP 403 (access denied)", self.refused_hint)
            }
            object_store::Error::Unauthenticated { .. } => {
                refused("HTTP 401 (not authenticated)", self.refused_hint)
            }
            _ if says("403") => refused("HTTP 403 (access denied)", self.refused_hint),
            _ if says("401") => refused("HTTP 401 (not authenticated)", self.refused_hint),
            _ if text.contains("ContainerNotFound") => refused(
                "the container does not exist",
                "create it, or fix `container`/`endpoint`",
            ),
            _ => self.failed(format!("{} {op} `{what}`: {text}", self.kind)),
        }
    }
}

/// A snapshot name is one plain file name.
pub(super) fn check_name(target: &str, name: &str) -> Result<(), TargetError> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(TargetError::Failed {
            target: target.to_owned(),
            detail: format!("`{name}` is not a snapshot file name"),
            source: None,
        });
    }
    Ok(())
}

pub(super) fn io_err(path: &Path, source: std::io::Error) -> TargetError {
    TargetError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_secrets_and_sas_signatures() {
        let s = Scrubber::new(vec![SecretString::from("c2VjcmV0a2V5".to_owned())]);
        let out = s.scrub("key c2VjcmV0a2V5 url ?sv=2022&sig=abc%2Fdef&se=x end sig=zz");
        assert!(!out.contains("c2VjcmV0a2V5"), "{out}");
        assert!(!out.contains("abc%2Fdef"), "{out}");
        assert!(!out.contains("zz"), "{out}");
        assert!(out.contains("sv=2022") && out.contains("se=x"), "{out}");
    }

    #[test]
    fn immutability_refusals_are_recognised() {
        assert!(is_immutable(
            "409 BlobImmutableDueToPolicy: This operation is not permitted as the blob is immutable due to a policy."
        ));
        assert!(is_immutable("BlobImmutableDueToLegalHold"));
        assert!(!is_immutable("500 InternalError"));
    }
}
