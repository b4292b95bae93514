//! The JSON Schema half of validation: each schema error as a `Finding`
//! in YAML words, with a JSON pointer and help.
//!
//! Stage: validate. Pure.

use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::parse::closest;
use crate::diag::{Code, Finding};
use crate::policy::schema;

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// A schema `type` (`"integer"`, `["string", "integer"]`) in YAML words
/// with an article: `an integer`, `a string or an integer`.
fn expected_type(t: &Value) -> String {
    let one = |name: &str| match name {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "an integer".to_string(),
        "boolean" => "true or false".to_string(),
        other => format!("a {other}"),
    };
    match t {
        Value::String(name) => one(name),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(one)
            .collect::<Vec<_>>()
            .join(" or "),
        other => other.to_string(),
    }
}

fn schema_at<'a>(schema_path: &str) -> Option<&'a Value> {
    schema::committed().pointer(schema_path)
}

pub(super) fn schema_findings(value: &Value) -> Vec<Finding> {
    let Some(validator) = schema::validator() else {
        return vec![Finding::error(
            Code::Schema,
            "",
            "internal: the built-in schema did not compile",
        )];
    };
    let mut out = Vec::new();
    for err in validator.iter_errors(value) {
        let path = err.instance_path().as_str().to_string();
        let spath = err.schema_path().as_str().to_string();
        let instance = value.pointer(&path).cloned().unwrap_or(Value::Null);
        let f = match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed: Vec<String> = spath
                    .strip_suffix("/additionalProperties")
                    .and_then(|p| schema_at(&format!("{p}/properties")))
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for name in unexpected {
                    let mut help = format!("allowed here: {}", allowed.join(", "));
                    if let Some(c) = closest(name, allowed.iter().map(String::as_str)) {
                        help = format!("did you mean `{c}`? {help}");
                    }
                    out.push(
                        Finding::error(
                            Code::UnknownField,
                            format!("{path}/{}", crate::policy::yaml::pointer_token(name)),
                            format!("unknown field `{name}`"),
                        )
                        .help(help)
                        .on_key(),
                    );
                }
                continue;
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or("?");
                Finding::error(
                    Code::MissingField,
                    path.clone(),
                    format!("missing required field `{name}`"),
                )
                .help(format!("add `{name}:` here; see `snapward schema`"))
                .on_key()
            }
            ValidationErrorKind::Type { .. } => {
                let expected = schema_at(&spath)
                    .map(expected_type)
                    .unwrap_or_else(|| "another type".into());
                let mut help = format!("write {expected} here");
                if path.ends_with("/fileMode") {
                    help = "quote octal modes, e.g. fileMode: \"0640\" (unquoted 0640 is the number 640)".into();
                }
                Finding::error(
                    Code::WrongType,
                    path.clone(),
                    format!("expected {expected}, found {}", describe(&instance)),
                )
                .help(help)
            }
            ValidationErrorKind::Enum { options } => Finding::error(
                Code::InvalidValue,
                path.clone(),
                format!("{} is not one of the allowed values", describe(&instance)),
            )
            .help(format!("use one of: {options}")),
            ValidationErrorKind::Constant { expected_value } => Finding::error(
                Code::InvalidValue,
                path.clone(),
                format!("{} must be {expected_value}", describe(&instance)),
            )
            .help(format!("write {expected_value}")),
            ValidationErrorKind::Pattern { pattern } => Finding::error(
                Code::InvalidValue,
                path.clone(),
                format!("{} has the wrong form", describe(&instance)),
            )
            .help(format!("it must match `{pattern}`")),
            _ => Finding::error(Code::InvalidValue, path.clone(), err.to_string())
                .help("see `snapward schema` for what this field accepts"),
        };
        out.push(f);
    }
    out
}
