//! The errors of the backend traits ([`TargetError`], [`BaoError`]) and
//! how a cause chain is rendered for people ([`chain`]).
//!
//! Stage: execute (backend). Pure: no I/O. An error here must never carry
//! a secret (token, key share, S3 secret): implementations put names,
//! paths, statuses and server messages (scrubbed) in them, nothing else.

use std::error::Error;

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
    #[error("target `{target}` refused the request: {detail}")]
    Refused { target: String, detail: String },
    /// Network, 5xx, timeouts: a later run may succeed.
    #[error("target `{target}` failed: {detail}")]
    Failed { target: String, detail: String },
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
    /// 403, or a missing/unreadable token: retrying will not help.
    #[error("node `{node}` refused: {detail}")]
    Refused { node: String, detail: String },
    /// Connection errors, 5xx, 503 sealed, 429 standby, timeouts.
    #[error("node `{node}` failed: {detail}")]
    Failed { node: String, detail: String },
    /// `sys/unseal` rejected the key share with "invalid key size": the
    /// shares do not fit the barrier the server process holds in memory
    /// (after a restore whose temporary barrier had another shape, the
    /// process must restart — DESIGN.md §6). `detail` quotes the answer.
    #[error("node `{node}` failed: {detail}")]
    InvalidKeySize { node: String, detail: String },
    #[error("the snapshot stream from `{node}` stalled for {seconds}s")]
    Stalled { node: String, seconds: u64 },
    #[error("cancelled")]
    Cancelled,
    /// The cause is part of the message: the executor prints only this error.
    #[error("writing the snapshot to the local store failed: {0}")]
    Io(#[source] std::io::Error),
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
}
