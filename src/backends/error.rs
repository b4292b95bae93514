//! The errors of the backend traits ([`TargetError`], [`BaoError`]) and
//! how a cause chain is rendered for people ([`chain`]).
//!
//! Causes are kept as `#[source]` values ([`Cause`]), never stringified
//! into a field. The errors the executor shows (`to_string()` only, one
//! line per failure) render their cause chain in their own message, so
//! that line loses nothing; a caller that walks `source()` itself should
//! print with [`chain`], which leaves out the repeated segments.
//!
//! Stage: execute (backend). Pure: no I/O. An error here must never carry
//! a secret (token, key share, S3 secret): implementations put names,
//! paths, statuses and server messages (scrubbed) in them, nothing else.

use std::error::Error;

/// The cause of a backend error, kept as a value (`#[source]`) for code
/// that inspects it (`downcast_ref::<std::io::Error>()`, …).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// `detail` followed by the cause chain: `detail: a: b`; just the chain
/// without a detail, just the detail without a cause.
pub(in crate::backends) fn with_cause(
    detail: &str,
    cause: Option<&(dyn Error + 'static)>,
) -> String {
    match (detail.is_empty(), cause) {
        (_, None) => detail.to_string(),
        (true, Some(c)) => chain(c),
        (false, Some(c)) => format!("{detail}: {}", chain(c)),
    }
}

/// An error and its causes as one line, `a: b: c`: each segment once (a
/// segment already contained in an earlier one is left out, so an error
/// whose message quotes its source is not repeated). Empty segments are
/// skipped. What people read: the executor prints one line per failure.
/// (The SDK's `DisplayErrorContext` appends a Debug dump of the whole
/// error tree, which says nothing more and may quote a raw response.)
pub fn chain(e: &dyn Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |text: String| {
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    push(e.to_string());
    let mut cur = e.source();
    while let Some(err) = cur {
        push(err.to_string());
        cur = err.source();
    }
    parts.join(": ")
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Credentials (files) for the target are absent. For an `optional`
    /// target the executor reports "skipped: credentials absent".
    #[error("credentials for target `{target}` are absent: {detail}")]
    CredentialsAbsent { target: String, detail: String },
    /// The object already exists; snapward never overwrites one.
    #[error("`{name}` already exists on target `{target}`; snapward never overwrites")]
    AlreadyExists { target: String, name: String },
    /// Read-back after upload disagreed with the local file.
    #[error(
        "upload of `{name}` to `{target}` not confirmed: expected {expected}, target reports {got}"
    )]
    NotConfirmed {
        target: String,
        name: String,
        expected: String,
        got: String,
    },
    /// Access denied / bad signature / missing bucket: retrying won't help.
    /// The message is `detail` and then the cause chain.
    #[error("target `{target}` refused the request: {}", with_cause(.detail, Error::source(self)))]
    Refused {
        target: String,
        detail: String,
        #[source]
        source: Option<Cause>,
    },
    /// Network, 5xx, timeouts: a later run may succeed. The message is
    /// `detail` and then the cause chain.
    #[error("target `{target}` failed: {}", with_cause(.detail, Error::source(self)))]
    Failed {
        target: String,
        detail: String,
        #[source]
        source: Option<Cause>,
    },
    #[error("cancelled")]
    Cancelled,
    /// The cause is part of the message: the executor prints only this error.
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BaoError {
    /// 403, a missing/unreadable token, a configuration that cannot work:
    /// retrying will not help. The message is `detail` and then the cause
    /// chain.
    #[error("node `{node}` refused: {}", with_cause(.detail, Error::source(self)))]
    Refused {
        node: String,
        detail: String,
        #[source]
        source: Option<Cause>,
    },
    /// Connection errors, 5xx, 503 sealed, 429 standby, timeouts. The
    /// message is `detail` and then the cause chain.
    #[error("node `{node}` failed: {}", with_cause(.detail, Error::source(self)))]
    Failed {
        node: String,
        detail: String,
        #[source]
        source: Option<Cause>,
    },
    /// `sys/unseal` rejected the key share with "invalid key size": the
    /// shares do not fit the barrier the server process holds in memory
    /// (after a restore whose temporary barrier had another shape, the
    /// process must restart — docs/openbao.md). `detail` quotes the answer.
    #[error("node `{node}` failed: {detail}")]
    InvalidKeySize { node: String, detail: String },
    /// The verified restore (`POST sys/storage/raft/snapshot`) answered
    /// that the snapshot's hash file cannot be verified: it was taken under
    /// another seal key (DESIGN.md §8). Nothing was restored. `detail`
    /// quotes the answer.
    #[error("node `{node}` refused the snapshot: {detail}")]
    SealMismatch { node: String, detail: String },
    #[error("the snapshot stream from `{node}` stalled for {seconds}s")]
    Stalled { node: String, seconds: u64 },
    #[error("cancelled")]
    Cancelled,
    /// The cause is part of the message: the executor prints only this error.
    #[error("writing the snapshot to the local store failed: {0}")]
    Io(#[source] std::io::Error),
}

impl TargetError {
    /// [`TargetError::Refused`] without a cause (see [`Self::caused_by`]).
    pub(in crate::backends) fn refused(target: &str, detail: impl Into<String>) -> Self {
        Self::Refused {
            target: target.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    /// [`TargetError::Failed`] without a cause (see [`Self::caused_by`]).
    pub(in crate::backends) fn failed(target: &str, detail: impl Into<String>) -> Self {
        Self::Failed {
            target: target.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    /// The same refusal or failure, with `cause` as its source. Other
    /// variants are returned unchanged.
    pub(in crate::backends) fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        if let Self::Refused { source, .. } | Self::Failed { source, .. } = &mut self {
            *source = Some(cause.into());
        }
        self
    }
}

impl BaoError {
    /// [`BaoError::Refused`] without a cause (see [`Self::caused_by`]).
    pub(in crate::backends) fn refused(node: &str, detail: impl Into<String>) -> Self {
        Self::Refused {
            node: node.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    /// [`BaoError::Failed`] without a cause (see [`Self::caused_by`]).
    pub(in crate::backends) fn failed(node: &str, detail: impl Into<String>) -> Self {
        Self::Failed {
            node: node.to_owned(),
            detail: detail.into(),
            source: None,
        }
    }

    /// The same refusal or failure, with `cause` as its source. Other
    /// variants are returned unchanged.
    pub(in crate::backends) fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        if let Self::Refused { source, .. } | Self::Failed { source, .. } = &mut self {
            *source = Some(cause.into());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str, #[source] Option<Box<E>>);

    fn e(parts: &[&'static str]) -> E {
        parts
            .iter()
            .rev()
            .fold(None, |src, p| Some(E(p, src.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn chain_joins_causes_once() {
        assert_eq!(chain(&e(&["a", "b", "c"])), "a: b: c");
        // A message that already quotes its cause does not repeat it.
        assert_eq!(chain(&e(&["a: b", "b", "c"])), "a: b: c");
        assert_eq!(chain(&e(&["a", "", "c"])), "a: c");
        assert_eq!(chain(&e(&["only"])), "only");
    }

    #[test]
    fn a_cause_is_kept_and_shown_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = BaoError::refused("cluster", "cannot read tls.caFile /ca.pem").caused_by(io);
        assert_eq!(
            err.to_string(),
            "node `cluster` refused: cannot read tls.caFile /ca.pem: No such file"
        );
        let source = Error::source(&err).expect("a source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        // Walking the chain adds nothing the message already says.
        assert_eq!(chain(&err), err.to_string());
        assert_eq!(
            TargetError::failed("t", "no kind").to_string(),
            "target `t` failed: no kind"
        );
        let no_detail = TargetError::failed("t", "").caused_by(e(&["a", "b"]));
        assert_eq!(no_detail.to_string(), "target `t` failed: a: b");
    }
}
