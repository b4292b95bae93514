//! Load: find the policy documents in a file — a plain `SnapshotPolicy`, or
//! one embedded in a `kind: ConfigMap` manifest (how it is kubectl-applied) —
//! with spans that point into the file as written.
//!
//! Stage: load. Pure apart from the caller reading the file.

use std::sync::Arc;

use serde_json::Value;

use super::yaml::{self, ByteSpan, Document, Lines, PositionMap};
use crate::diag::{Code, Finding};

/// One policy document found in a file.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// Where it came from: `file` or `file[data.policy.yaml]`.
    pub origin: String,
    pub doc: Document,
}

/// What loading a file produced: policies, and problems that stop a policy
/// from being read at all (with their spans already resolved).
#[derive(Debug, Default)]
pub struct Loaded {
    pub policies: Vec<PolicySource>,
    pub problems: Vec<(Finding, ByteSpan)>,
    /// Documents that are neither a policy nor a ConfigMap holding one.
    pub other_documents: usize,
}

/// Find every policy in `text` (the content of `file`).
pub fn load(file: &str, text: &Arc<str>) -> Loaded {
    let lines = Lines::new(text);
    let mut out = Loaded::default();
    let docs = match yaml::parse(text, &lines) {
        Ok(d) => d,
        Err(e) => {
            out.problems.push((
                Finding::error(
                    Code::YamlSyntax,
                    "",
                    format!("YAML syntax error: {}", e.message),
                )
                .help("fix the YAML syntax; every later check needs a parseable file"),
                e.span,
            ));
            return out;
        }
    };
    for doc in docs {
        match doc.value.get("kind").and_then(Value::as_str) {
            Some("ConfigMap") => load_configmap(file, text, &lines, &doc, &mut out),
            Some(super::model::KIND) => out.policies.push(PolicySource {
                origin: file.to_string(),
                doc,
            }),
            _ if doc.value.get("apiVersion").and_then(Value::as_str)
                == Some(super::model::API_VERSION) =>
            {
                // Our apiVersion with a wrong kind: lint it so the schema names the problem.
                out.policies.push(PolicySource {
                    origin: file.to_string(),
                    doc,
                })
            }
            _ if doc.value.is_null() => {}
            _ => out.other_documents += 1,
        }
    }
    out
}

fn load_configmap(file: &str, text: &str, lines: &Lines<'_>, cm: &Document, out: &mut Loaded) {
    let Some(data) = cm.value.get("data").and_then(Value::as_object) else {
        out.other_documents += 1;
        return;
    };
    let mut found = false;
    for (key, value) in data {
        let Some(inner) = value.as_str() else {
            continue;
        };
        if !inner.contains(super::model::KIND) {
            continue;
        }
        found = true;
        let ptr = format!("/data/{}", yaml::pointer_token(key));
        let scalar = cm.spans.get(&ptr).map(|s| s.value).unwrap_or(cm.span);
        let map = EmbeddedMap::new(text, lines, scalar, inner);
        let origin = format!("{file}[data.{key}]");
        match yaml::parse(inner, &map) {
            Ok(docs) => {
                for doc in docs {
                    if doc.value.get("kind").and_then(Value::as_str) == Some(super::model::KIND) {
                        out.policies.push(PolicySource {
                            origin: origin.clone(),
                            doc,
                        });
                    }
                }
            }
            Err(e) => out.problems.push((
                Finding::error(
                    Code::YamlSyntax,
                    "",
                    format!("YAML syntax error in ConfigMap key `{key}`: {}", e.message),
                )
                .help("fix the YAML syntax of the embedded policy"),
                e.span,
            )),
        }
    }
    if !found {
        out.problems.push((
            Finding::error(
                Code::ConfigMapWithoutPolicy,
                "",
                "this ConfigMap holds no SnapshotPolicy",
            )
            .help("put the policy under `data.<name>.yaml: |` as a literal block, or lint the policy file itself"),
            cm.spans.get("/data").map(|s| s.value).unwrap_or(cm.span),
        ));
    }
}

/// Maps positions inside a literal block scalar (`key: |`) back to the file.
/// If the block cannot be matched line by line (folded or quoted styles),
/// every position maps to the scalar's start: less precise, never wrong.
struct EmbeddedMap<'a> {
    outer: &'a Lines<'a>,
    /// 1-based outer line holding the first content line, and its indent.
    first_line: Option<(usize, usize)>,
    fallback: usize,
}

impl<'a> EmbeddedMap<'a> {
    fn new(text: &str, outer: &'a Lines<'a>, scalar: ByteSpan, inner: &str) -> Self {
        let fallback = scalar.offset;
        let (indicator_line, _) = outer.line_col(scalar.offset);
        let at = text.get(scalar.offset..).unwrap_or("");
        // saphyr's span of a block scalar starts at the `|` indicator or at
        // the first content line, depending on the version: accept both.
        let prev_is_indicator = indicator_line > 1
            && outer
                .line(indicator_line - 1)
                .map(|l| {
                    let t = l.trim_end();
                    t.ends_with('|') || t.ends_with("|-") || t.ends_with("|+")
                })
                .unwrap_or(false);
        let first_line = if at.starts_with('|') {
            Self::match_block(outer, indicator_line + 1, inner)
        } else if prev_is_indicator {
            Self::match_block(outer, indicator_line, inner)
        } else {
            None
        };
        Self {
            outer,
            first_line,
            fallback,
        }
    }

    fn match_block(outer: &Lines<'_>, start: usize, inner: &str) -> Option<(usize, usize)> {
        // The indent is that of the first non-blank content line.
        let indent = (start..=outer.line_count())
            .filter_map(|l| outer.line(l))
            .find(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())?;
        for (i, inner_line) in inner.lines().enumerate() {
            let o = outer.line(start + i)?;
            let stripped = o.get(indent.min(o.len())..).unwrap_or("");
            if stripped != inner_line && !(inner_line.is_empty() && o.trim().is_empty()) {
                return None;
            }
        }
        Some((start, indent))
    }
}

impl PositionMap for EmbeddedMap<'_> {
    fn offset(&self, line: usize, col: usize) -> usize {
        match self.first_line {
            Some((start, indent)) if line >= 1 => self.outer.offset(start + line - 1, indent + col),
            _ => self.fallback,
        }
    }
}
