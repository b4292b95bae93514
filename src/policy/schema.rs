//! The JSON Schema: generated from the Rust types in `model.rs`, committed as
//! `schemas/snapshot-policy.schema.json` (a test fails when it is stale), and
//! the schema `lint` validates against.
//!
//! Stage: validate. Pure.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::model::PolicyDocument;

/// The committed schema, as shipped in the binary.
pub const COMMITTED: &str = include_str!("../../schemas/snapshot-policy.schema.json");

/// Generate the schema from the types.
pub fn generate() -> Value {
    let schema = schemars::schema_for!(PolicyDocument);
    let mut v = serde_json::to_value(schema).unwrap_or(Value::Null);
    strip_null(&mut v);
    bound_integers(&mut v);
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!("https://snapward.dev/schemas/snapshot-policy.schema.json"),
        );
    }
    v
}

/// The generated schema as the committed file spells it.
pub fn generate_pretty() -> String {
    let mut s = serde_json::to_string_pretty(&generate()).unwrap_or_default();
    s.push('\n');
    s
}

/// `Option<T>` makes schemars allow `null`; a policy never needs to write
/// `null`, and allowing it would route errors in optional sections through
/// `anyOf` and lose their precise location. Strip it.
fn strip_null(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get("type") {
                let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                match kept.as_slice() {
                    [one] => map.insert("type".into(), one.clone()),
                    _ => map.insert("type".into(), Value::Array(kept)),
                };
            }
            if let Some(Value::Array(any)) = map.get("anyOf") {
                let kept: Vec<Value> = any
                    .iter()
                    .filter(|s| s.get("type") != Some(&json!("null")))
                    .cloned()
                    .collect();
                if let [only] = kept.as_slice() {
                    map.remove("anyOf");
                    if let Value::Object(inner) = only {
                        for (k, val) in inner {
                            map.entry(k.clone()).or_insert_with(|| val.clone());
                        }
                    }
                }
            }
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            for val in map.values_mut() {
                strip_null(val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// schemars marks `u32`/`u16` fields with `format: uint32`/`uint16` and
/// `minimum: 0` only; validators ignore such formats, so a count like
/// `99999999999` would pass the schema and fail later with no location.
/// Give those fields their real `maximum`.
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let max = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32") => Some(u64::from(u32::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                map.entry("maximum").or_insert_with(|| json!(max));
            }
            for val in map.values_mut() {
                bound_integers(val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// The committed schema, parsed once.
pub fn committed() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| serde_json::from_str(COMMITTED).unwrap_or(Value::Bool(true)))
}

/// The validator for the committed schema, built once.
pub fn validator() -> Option<&'static jsonschema::Validator> {
    static V: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| jsonschema::validator_for(committed()).ok())
        .as_ref()
}
