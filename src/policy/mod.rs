//! The policy: load (YAML with spans, ConfigMap-embedded or plain) →
//! validate (committed JSON Schema + semantic rules) → `ValidPolicy`.
//!
//! Pure apart from reading the policy file itself; never opens the paths the
//! policy names (token files, key stores): they exist only where it runs.

pub mod load;
pub mod model;
pub mod schema;
pub mod store_id;
pub mod valid;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

use crate::diag::{Code, Finding, PolicyDiagnostic, Severity};
pub use store_id::StoreId;
pub use valid::{
    AuthSettings, ClusterSettings, ClusterTimeouts, GcsSettings, GuardSettings, KeyLocation,
    KeyStoreSettings, ListedNode, LocalSettings, Nodes, RestoreSettings, S3Settings, S3Timeouts,
    TargetKind, ValidPolicy, ValidTarget,
};
use yaml::{ByteSpan, Lines};

/// Everything `lint` learns from one file.
#[derive(Debug, Default)]
pub struct FileReport {
    pub file: String,
    pub policies: Vec<ValidPolicy>,
    pub diagnostics: Vec<PolicyDiagnostic>,
    /// Documents or ConfigMaps holding a policy (valid or not).
    pub policies_seen: usize,
}

impl FileReport {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    pub fn warnings(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
}

/// Lint the text of one file. `require_policy`: a file with no policy in it
/// is an error (files named explicitly) rather than skipped (directory walk).
pub fn lint_text(file: &str, text: &str, require_policy: bool) -> FileReport {
    let text: Arc<str> = Arc::from(text);
    // Diagnostics quote source lines: never a password written into a URL.
    let shown: Arc<str> = Arc::from(mask_url_passwords(&text));
    let source = Arc::new(NamedSource::new(file, shown).with_language("yaml"));
    let lines = Lines::new(&text);
    let mut report = FileReport {
        file: file.to_string(),
        ..Default::default()
    };
    let resolve = |f: Finding, span: ByteSpan| {
        let (line, column) = lines.line_col(span.offset);
        PolicyDiagnostic {
            code: f.code,
            severity: f.severity,
            message: mask_url_passwords(&f.message),
            help: mask_url_passwords(&f.help),
            file: file.to_string(),
            line,
            column,
            span: SourceSpan::new(span.offset.min(text.len()).into(), span.len),
            source: source.clone(),
        }
    };
    let loaded = load::load(file, &text);
    for (f, span) in loaded.problems {
        report.diagnostics.push(resolve(f, span));
    }
    report.policies_seen = loaded.policies.len();
    if loaded.policies.is_empty() && report.diagnostics.is_empty() && require_policy {
        report.diagnostics.push(resolve(
            Finding::error(Code::NotAPolicy, "", "no SnapshotPolicy in this file")
                .help("a policy starts with `apiVersion: snapward.dev/v1alpha1` and `kind: SnapshotPolicy`"),
            ByteSpan { offset: 0, len: 1 },
        ));
    }
    for p in loaded.policies {
        let (valid, findings) = validate::validate(&p.doc.value);
        for f in findings {
            let span = span_for(&p.doc, &f);
            report.diagnostics.push(resolve(f, span));
        }
        if let Some(v) = valid {
            report.policies.push(v);
        }
    }
    report
        .diagnostics
        .sort_by_key(|d| (d.span.offset(), d.code, d.message.clone()));
    report
}

/// The most precise span for a finding: the node at its path, else the
/// nearest ancestor that exists (a missing field points at its parent).
fn span_for(doc: &yaml::Document, f: &Finding) -> ByteSpan {
    let mut path = f.path.as_str();
    loop {
        if let Some(s) = doc.spans.get(path) {
            return if f.on_key {
                s.key.unwrap_or(s.value)
            } else {
                s.value
            };
        }
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent,
            None => return doc.span,
        }
    }
}

/// Why a policy could not be loaded for `plan`/`run`/`list`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PolicyError {
    #[error("cannot read policy {path}")]
    #[diagnostic(code(policy::io), help("{hint}"))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
        /// How to fix it, for this kind of error.
        hint: &'static str,
    },
    #[error("{path}: found {count} policies; snapward runs one policy at a time")]
    #[diagnostic(
        code(policy::ambiguous),
        help("point -f at a file (or a ConfigMap directory) holding exactly one SnapshotPolicy")
    )]
    Ambiguous { path: PathBuf, count: usize },
    #[error("no SnapshotPolicy in {path}: no *.yaml/*.yml file there holds one")]
    #[diagnostic(
        code("policy::no-policy"),
        help("mount the ConfigMap that holds the policy there, or point -f at the policy file")
    )]
    NoPolicy { path: PathBuf },
    #[error("the policy has {errors} error(s): run `snapward lint {path}` to see them")]
    #[diagnostic(code(policy::invalid))]
    Invalid {
        path: PathBuf,
        errors: usize,
        #[related]
        diagnostics: Vec<PolicyDiagnostic>,
    },
}

/// The policy files in a directory (a mounted ConfigMap): `*.yaml`/`*.yml`,
/// skipping the `..data` bookkeeping entries Kubernetes adds.
pub fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            out.extend(yaml_files(&path)?);
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Load exactly one valid policy from a file or a ConfigMap-mounted directory.
pub fn load_policy(path: &Path) -> Result<ValidPolicy, PolicyError> {
    let io = |path: &Path, source: std::io::Error| {
        let hint = match source.kind() {
            std::io::ErrorKind::InvalidData => {
                "the file is not UTF-8 text: save the policy as UTF-8 YAML (is -f pointing at the right file?)"
            }
            std::io::ErrorKind::IsADirectory => {
                "point -f at the policy file or at a directory of *.yaml files"
            }
            _ => "check the path and that this user can read it",
        };
        PolicyError::Io {
            path: path.to_path_buf(),
            source,
            hint,
        }
    };
    let files = if path.is_dir() {
        yaml_files(path).map_err(|e| io(path, e))?
    } else {
        vec![path.to_path_buf()]
    };
    let mut texts = Vec::with_capacity(files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| io(f, e))?;
        texts.push((f.display().to_string(), text));
    }
    one_policy(path, texts, !path.is_dir())
}

/// Load exactly one valid policy from text read elsewhere (a ConfigMap
/// through the API). `origin` names the source in every diagnostic.
pub fn load_policy_text(origin: &str, text: &str) -> Result<ValidPolicy, PolicyError> {
    one_policy(
        Path::new(origin),
        vec![(origin.to_string(), text.to_string())],
        true,
    )
}

/// `require_policy`: the texts were named one by one (a file, a ConfigMap
/// key), so each must hold a policy; otherwise (a directory) at least one
/// of them must.
fn one_policy(
    path: &Path,
    texts: Vec<(String, String)>,
    require_policy: bool,
) -> Result<ValidPolicy, PolicyError> {
    let mut found = Vec::new();
    let mut diagnostics = Vec::new();
    let mut seen = 0;
    for (origin, text) in &texts {
        let r = lint_text(origin, text, require_policy);
        seen += r.policies_seen;
        found.extend(r.policies);
        diagnostics.extend(
            r.diagnostics
                .into_iter()
                .filter(|d| d.severity == Severity::Error),
        );
    }
    if !diagnostics.is_empty() {
        return Err(PolicyError::Invalid {
            path: path.to_path_buf(),
            errors: diagnostics.len(),
            diagnostics,
        });
    }
    if seen == 0 && !require_policy {
        return Err(PolicyError::NoPolicy {
            path: path.to_path_buf(),
        });
    }
    if found.len() != 1 {
        return Err(PolicyError::Ambiguous {
            path: path.to_path_buf(),
            count: found.len(),
        });
    }
    Ok(found.remove(0))
}

/// `text` with the password of every `scheme://user:password@host` replaced
/// by `*`, byte for byte (so every span and line/column stays valid): the
/// source lines diagnostics quote must not show it (lint flags such URLs as
/// `policy::credentials-in-url`).
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text.get(from..).and_then(|t| t.find("://")) {
        let start = from + at + 3;
        // The authority ends at a path, whitespace, a double quote or a bracket.
        let end = b
            .get(start..)
            .unwrap_or_default()
            .iter()
            .position(|c| {
                // not `,` or `'`: RFC 3986 allows them raw in a password
                matches!(c, b'/' | b'?' | b'#' | b'"' | b'[' | b']' | b'{' | b'}')
                    || c.is_ascii_whitespace()
            })
            .map_or(b.len(), |n| start + n);
        if let Some(auth) = text.get(start..end)
            && let Some(at_sign) = auth.rfind('@')
            && let Some(colon) = auth.get(..at_sign).and_then(|u| u.find(':'))
        {
            for c in out.iter_mut().take(start + at_sign).skip(start + colon + 1) {
                *c = b'*';
            }
        }
        from = end.max(start);
    }
    // Only ASCII bytes were written over whole UTF-8 sequences' bytes.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
