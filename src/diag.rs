//! Diagnostic codes and the miette types users read.
//!
//! Every user-facing policy problem has a stable code (`policy::<kebab>`), a
//! label on the exact span and help text. Codes are part of the interface:
//! never rename one, add new ones instead.

use std::fmt;
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

macro_rules! codes {
    ($($variant:ident => $code:literal),+ $(,)?) => {
        /// Every lint code. `as_str` is stable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant),+ }
        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => concat!("policy::", $code)),+ }
            }
        }
    };
}

codes! {
    Io => "io",
    YamlSyntax => "yaml-syntax",
    NotAPolicy => "not-a-policy",
    ConfigMapWithoutPolicy => "configmap-without-policy",
    UnknownField => "unknown-field",
    MissingField => "missing-field",
    WrongType => "wrong-type",
    InvalidValue => "invalid-value",
    Schema => "schema",
    DuplicateTarget => "duplicate-target",
    ReservedTargetName => "reserved-target-name",
    TargetKind => "target-kind",
    UnknownSource => "unknown-source",
    DuplicateSource => "duplicate-source",
    RetentionKeepsNothing => "retention-keeps-nothing",
    KeepWithinShorterThanSchedule => "keep-within-shorter-than-schedule",
    BadDuration => "bad-duration",
    BadSchedule => "bad-schedule",
    RestoreAutoWithoutKeys => "restore-auto-without-keys",
    InitWithoutKeys => "init-without-keys",
    UnauthenticatedRetention => "unauthenticated-retention",
    InitThreshold => "init-threshold",
    EndpointNotUrl => "endpoint-not-url",
    InsecureHttp => "insecure-http",
    PrefixWithoutSlash => "prefix-without-slash",
    SameBucketPrefix => "same-bucket-prefix",
    SamePath => "same-path",
    FileModeUnreadable => "file-mode-unreadable",
    FileModeWorldAccessible => "file-mode-world-accessible",
    FileModeSpecialBits => "file-mode-special-bits",
    NodesOrDiscovery => "nodes-or-discovery",
    DuplicateNode => "duplicate-node",
    AuthKind => "auth-kind",
    KeyStoreKind => "key-store-kind",
    GuardAlways => "guard-always",
    NodeAddress => "node-address",
    RestartPodNeedsDiscovery => "restart-pod-needs-discovery",
    RestoreTestStore => "restore-test-store",
    CredentialsInUrl => "credentials-in-url",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A problem found in a policy, before it is tied to a source position.
/// `path` is a JSON pointer into the policy document (`/spec/targets/0/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub path: String,
    /// Point at the mapping key rather than its value (unknown fields).
    pub on_key: bool,
    pub message: String,
    pub help: String,
}

impl Finding {
    pub fn error(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            path: path.into(),
            on_key: false,
            message: message.into(),
            help: String::new(),
        }
    }
    pub fn warning(code: Code, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, path, message)
        }
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = help.into();
        self
    }
    pub fn on_key(mut self) -> Self {
        self.on_key = true;
        self
    }
}

/// A finding tied to a file position: what `lint` prints (miette) or emits
/// as JSON.
#[derive(Debug, Clone)]
pub struct PolicyDiagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub help: String,
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub span: SourceSpan,
    pub source: Arc<NamedSource<Arc<str>>>,
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyDiagnostic {}

impl miette::Diagnostic for PolicyDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        if self.help.is_empty() {
            None
        } else {
            Some(Box::new(&self.help))
        }
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.as_ref())
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".into()),
            self.span,
        ))))
    }
}

/// The JSON form of a diagnostic (`lint --format json`).
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic<'a> {
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub code: &'static str,
    pub severity: Severity,
    pub message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub help: &'a str,
}

impl PolicyDiagnostic {
    pub fn to_json(&self) -> JsonDiagnostic<'_> {
        JsonDiagnostic {
            file: &self.file,
            line: self.line,
            column: self.column,
            code: self.code.as_str(),
            severity: self.severity,
            message: &self.message,
            help: &self.help,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            let s = c.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            let tail = s.strip_prefix("policy::").expect("prefix");
            assert!(
                tail.chars().all(|ch| ch.is_ascii_lowercase() || ch == '-'),
                "{s} is not kebab-case"
            );
        }
    }
}
