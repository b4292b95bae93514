//! [`KubeError`]: what a Kubernetes call failed on, classified by HTTP code
//! first (see the module docs), with the RBAC verb and resource that are
//! probably missing on a 403.
//!
//! Must never: quote a Secret's body (a decoding error of a Secret answer
//! is withheld), or call the API.
//!
//! An API server's answer (a `Status`: code, reason, message) is copied
//! into the variant's fields; a failure without an answer (network, TLS,
//! decoding) keeps kube's error as the `#[source]` of [`KubeError::Request`]
//! and [`KubeError::Config`], and their messages render its chain.

use std::error::Error;

use crate::backends::error::{Cause, with_cause};

/// What a Kubernetes call failed on. Messages name the operation, the
/// object and, on 403, the RBAC verb and resource that are probably missing.
/// They never carry key material (a Secret's body is never quoted).
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No usable client configuration (kubeconfig or in-cluster). The
    /// message is `detail`, then the cause chain.
    #[error("cannot configure the Kubernetes client: {}", with_cause(.detail, Error::source(self)))]
    Config {
        /// What was being configured (file, inference).
        detail: String,
        /// kube's error (a kubeconfig that cannot be read, no service account, …).
        #[source]
        source: Option<Cause>,
    },
    /// 403: RBAC does not allow the call.
    #[error(
        "{verb} {resource} {target} was forbidden (403): the ServiceAccount probably lacks RBAC verb `{verb}` on `{resource}` in namespace `{namespace}` ({message})"
    )]
    Forbidden {
        /// The RBAC verb of the call (`get`, `list`, `create`, `update`, `delete`).
        verb: &'static str,
        /// The resource, with its API group (`leases.coordination.k8s.io`).
        resource: &'static str,
        /// The object's namespace.
        namespace: String,
        /// `namespace/name`, or `in namespace N` for a list.
        target: String,
        /// The API server's message.
        message: String,
    },
    /// 404 on an object the operation needs.
    #[error("{resource} {namespace}/{name} not found")]
    NotFound {
        /// The resource (`pods`, `configmaps`).
        resource: &'static str,
        /// The namespace looked in.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// A call the API server answered with another error: 5xx, unexpected
    /// 4xx (or a Secret's answer that could not be decoded, withheld).
    #[error("{verb} {resource} {target} failed: {detail}")]
    Api {
        /// The RBAC verb of the call.
        verb: &'static str,
        /// The resource, with its API group.
        resource: &'static str,
        /// `namespace/name`, or `in namespace N` for a list.
        target: String,
        /// The HTTP status, when the server answered.
        code: Option<u16>,
        /// The answer's reason and message.
        detail: String,
    },
    /// A call that got no usable answer: network, TLS, timeouts, an answer
    /// that could not be decoded.
    #[error("{verb} {resource} {target} failed: {}", crate::backends::chain(.source))]
    Request {
        /// The RBAC verb of the call.
        verb: &'static str,
        /// The resource, with its API group.
        resource: &'static str,
        /// `namespace/name`, or `in namespace N` for a list.
        target: String,
        /// kube's error.
        #[source]
        source: ::kube::Error,
    },
    /// The objects found cannot be used as they are (ambiguous ordinals, a
    /// ConfigMap without a policy key, a malformed reference).
    #[error("{what}: {detail}")]
    Invalid {
        /// What was being read or decided.
        what: String,
        /// Why it cannot be used, and what to do.
        detail: String,
    },
    /// A wait ran out.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        seconds: u64,
    },
}

impl KubeError {
    /// The HTTP status of a failed API call, if the server answered.
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Forbidden { .. } => Some(403),
            KubeError::NotFound { .. } => Some(404),
            KubeError::Api { code, .. } => *code,
            _ => None,
        }
    }
}

/// One API call, for error messages.
pub(in crate::backends) struct Op<'a> {
    pub(in crate::backends) verb: &'static str,
    pub(in crate::backends) resource: &'static str,
    pub(in crate::backends) namespace: &'a str,
    pub(in crate::backends) name: Option<&'a str>,
}

impl Op<'_> {
    fn target(&self) -> String {
        match self.name {
            Some(n) => format!("{}/{n}", self.namespace),
            None => format!("in namespace {}", self.namespace),
        }
    }

    pub(in crate::backends) fn err(&self, e: ::kube::Error) -> KubeError {
        self.err_with(e, false)
    }

    /// `redact`: the response was a Secret; a decoding error could quote it.
    ///
    /// Classified by HTTP code first: kube builds a `Status` with reason
    /// "Failed to parse error data" for a non-JSON error body (a proxy), and
    /// its `is_forbidden()`/`is_not_found()` then never look at the code.
    pub(in crate::backends) fn err_with(&self, e: ::kube::Error, redact: bool) -> KubeError {
        let code = status_code(&e);
        match e {
            ::kube::Error::Api(s) if code == Some(403) => KubeError::Forbidden {
                verb: self.verb,
                resource: self.resource,
                namespace: self.namespace.to_string(),
                target: self.target(),
                message: s.message.clone(),
            },
            ::kube::Error::Api(_) if code == Some(404) && self.name.is_some() => {
                KubeError::NotFound {
                    resource: self.resource,
                    namespace: self.namespace.to_string(),
                    name: self.name.unwrap_or_default().to_string(),
                }
            }
            ::kube::Error::Api(s) => KubeError::Api {
                verb: self.verb,
                resource: self.resource,
                target: self.target(),
                code,
                detail: format!(
                    "{} {}",
                    if s.reason.is_empty() {
                        "error"
                    } else {
                        &s.reason
                    },
                    s.message
                )
                .trim()
                .to_string(),
            },
            ::kube::Error::SerdeError(_) if redact => KubeError::Api {
                verb: self.verb,
                resource: self.resource,
                target: self.target(),
                code: None,
                detail: "the answer could not be decoded (details withheld: it holds secret data)"
                    .into(),
            },
            other => KubeError::Request {
                verb: self.verb,
                resource: self.resource,
                target: self.target(),
                source: other,
            },
        }
    }
}

/// The HTTP status of a failed call: the code when the answer carried one,
/// else what the `Status` reason implies.
pub(in crate::backends) fn status_code(e: &::kube::Error) -> Option<u16> {
    let ::kube::Error::Api(s) = e else {
        return None;
    };
    if s.code != 0 {
        return Some(s.code);
    }
    match s.reason.as_str() {
        "Forbidden" => Some(403),
        "NotFound" => Some(404),
        "AlreadyExists" | "Conflict" => Some(409),
        _ => None,
    }
}

/// A 404 that the API server itself gave for exactly this object (reason
/// `NotFound`, details naming it) — not a proxy's or a wrong URL's 404.
pub(in crate::backends) fn is_object_not_found(e: &::kube::Error, name: &str) -> bool {
    matches!(e, ::kube::Error::Api(s)
        if s.reason == "NotFound"
            && s.details.as_ref().is_some_and(|d| d.name == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_an_answer_keeps_kubes_error_as_its_source() {
        let op = Op {
            verb: "get",
            resource: "pods",
            namespace: "openbao",
            name: Some("bao-0"),
        };
        let err = op.err(::kube::Error::LinesCodecMaxLineLengthExceeded);
        assert!(matches!(err, KubeError::Request { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "get pods openbao/bao-0 failed: Error finding newline character"
        );
        assert!(
            Error::source(&err)
                .and_then(|s| s.downcast_ref::<::kube::Error>())
                .is_some()
        );
        assert_eq!(err.code(), None);
    }
}
