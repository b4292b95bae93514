//! How OpenBao's answers and transport failures become [`BaoError`]s, and
//! whether a snapshot attempt may be retried after one.
//!
//! Must never: quote more of a server answer than [`MAX_DETAIL`]
//! characters, or a request (its token header) at all.

use reqwest::StatusCode;
use serde::Deserialize;

use super::client::Reply;
use crate::backends::BaoError;
use crate::backends::error::with_cause;

/// Longest server message quoted in an error.
const MAX_DETAIL: usize = 300;

/// A failed step of one snapshot attempt, and whether a retry may help.
pub(super) struct Attempt {
    pub(super) err: BaoError,
    pub(super) retry: bool,
}

impl Attempt {
    pub(super) fn fatal(err: BaoError) -> Self {
        Self { err, retry: false }
    }
}

impl From<BaoError> for Attempt {
    fn from(err: BaoError) -> Self {
        Self::fatal(err)
    }
}

/// A transport failure: connection errors may be retried, the rest not.
pub(super) fn transport_error(node: &str, e: reqwest::Error) -> Attempt {
    let (what, retry) = if let Some(hint) = super::client::tls_refusal(&e) {
        // A refused client certificate: the same on every retry.
        (hint, false)
    } else if e.is_connect() {
        ("cannot connect", true)
    } else if e.is_timeout() {
        ("timed out", false)
    } else {
        ("request failed", false)
    };
    Attempt {
        err: BaoError::failed(node, what).caused_by(e),
        retry,
    }
}

/// An unexpected status: 403 is a refusal; 503 (sealed) may be retried;
/// everything else (429 standby, other 5xx, 4xx) fails without retry.
pub(super) fn status_error(node: &str, path: &str, reply: &Reply) -> Attempt {
    let mut detail = format!("{path} answered {}: {}", reply.status, quote(&reply.body));
    if reply.cut {
        detail.push_str(" (the answer is longer than 1 MiB; not read further)");
    }
    if reply.status == StatusCode::FORBIDDEN {
        return Attempt::fatal(BaoError::refused(node, detail));
    }
    Attempt {
        err: BaoError::failed(node, detail),
        retry: reply.status == StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// A rejected unseal key share: the answer says "invalid key size" (a 400
/// from OpenBao 2.7.2; docs/openbao.md). The message is what `status_error`
/// would say; only the variant differs, so callers branch on it.
pub(super) fn invalid_key_size(node: &str, path: &str, reply: &Reply) -> Option<BaoError> {
    let text = quote(&reply.body);
    (!reply.status.is_success() && text.contains("invalid key size")).then(|| {
        BaoError::InvalidKeySize {
            node: node.to_string(),
            detail: format!("{path} answered {}: {text}", reply.status),
        }
    })
}

/// A 400 from the verified restore that says the snapshot is sealed under
/// another key ("could not verify hash file, possibly the snapshot is using
/// a different autoseal key"), as its own variant.
pub(super) fn seal_mismatch(node: &str, path: &str, reply: &Reply) -> Option<BaoError> {
    let text = quote(&reply.body);
    (reply.status == reqwest::StatusCode::BAD_REQUEST
        && (text.contains("different autoseal key") || text.contains("could not verify hash file")))
    .then(|| BaoError::SealMismatch {
        node: node.to_string(),
        detail: format!("{path} answered {}: {text}", reply.status),
    })
}

/// The server's `errors` list, or the start of the body.
pub(super) fn quote(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        _ if body.is_empty() => "(empty body)".to_string(),
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    if text.chars().count() > MAX_DETAIL {
        let cut: String = text.chars().take(MAX_DETAIL).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The part of an error worth showing next to the node's name (its
/// message without the `node … failed:` prefix, cause chain included).
pub(super) fn node_error(e: &BaoError) -> String {
    match e {
        BaoError::Refused { detail, .. } | BaoError::Failed { detail, .. } => {
            with_cause(detail, std::error::Error::source(e))
        }
        BaoError::InvalidKeySize { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_prefers_the_errors_list() {
        assert_eq!(
            quote(br#"{"errors":["Vault is sealed"]}"#),
            "Vault is sealed"
        );
        assert_eq!(quote(b""), "(empty body)");
        assert_eq!(quote(b"<html>oops</html>\n"), "<html>oops</html>");
        assert!(quote("x".repeat(1000).as_bytes()).ends_with('…'));
    }

    #[test]
    fn invalid_key_size_is_its_own_variant_with_the_same_message() {
        let reply = |status: u16, body: &[u8]| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: zeroize::Zeroizing::new(body.to_vec()),
            cut: false,
        };
        let rejected = reply(400, br#"{"errors":["invalid key size"]}"#);
        let e = invalid_key_size("bao-0", "sys/unseal", &rejected).expect("recognised");
        assert!(matches!(e, BaoError::InvalidKeySize { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "node `bao-0` failed: sys/unseal answered 400 Bad Request: invalid key size"
        );
        assert_eq!(
            e.to_string(),
            status_error("bao-0", "sys/unseal", &rejected)
                .err
                .to_string()
        );
        let other = reply(400, br#"{"errors":["invalid key"]}"#);
        assert!(invalid_key_size("bao-0", "sys/unseal", &other).is_none());
        let ok = reply(200, b"invalid key size");
        assert!(invalid_key_size("bao-0", "sys/unseal", &ok).is_none());
    }

    #[test]
    fn a_snapshot_under_another_seal_key_is_its_own_variant() {
        let reply = |status: u16, body: &[u8]| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: zeroize::Zeroizing::new(body.to_vec()),
            cut: false,
        };
        // The answer of OpenBao 2.7.2 (static seal, another key).
        let mismatch = reply(
            400,
            br#"{"errors":["could not verify hash file, possibly the snapshot is using a different autoseal key; use the snapshot-force API to bypass this check"]}"#,
        );
        let e = seal_mismatch("bao-0", "sys/storage/raft/snapshot", &mismatch).expect("recognised");
        assert!(matches!(e, BaoError::SealMismatch { .. }), "{e:?}");
        assert!(e.to_string().contains("different autoseal key"), "{e}");
        let other = reply(400, br#"{"errors":["unsupported snapshot version"]}"#);
        assert!(seal_mismatch("bao-0", "sys/storage/raft/snapshot", &other).is_none());
        let server = reply(500, br#"{"errors":["could not verify hash file"]}"#);
        assert!(seal_mismatch("bao-0", "sys/storage/raft/snapshot", &server).is_none());
    }
}
