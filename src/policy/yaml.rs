//! YAML with spans: parse once into saphyr's marked nodes, convert to a
//! `serde_json::Value` (what the schema validator and serde see) and keep an
//! index from JSON pointer to source span, so every later problem — schema or
//! semantic — can point at the exact line and column.
//!
//! Stage: load. Pure: no I/O.

use std::collections::BTreeMap;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

/// A byte range in the file being linted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSpan {
    pub offset: usize,
    pub len: usize,
}

/// Where a node's key and value sit in the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeSpans {
    pub key: Option<ByteSpan>,
    pub value: ByteSpan,
}

/// JSON pointer (`/spec/targets/0`) → spans. The root is `""`.
pub type SpanIndex = BTreeMap<String, NodeSpans>;

/// Maps a saphyr marker (line 1-based, column 0-based in characters) of the
/// parsed text to a byte offset in the file being linted.
pub trait PositionMap {
    fn offset(&self, line: usize, col: usize) -> usize;
}

/// Line start offsets of a text: the identity position map.
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { text, starts }
    }

    /// The text of 1-based line `line`, without its newline.
    pub fn line(&self, line: usize) -> Option<&'a str> {
        let start = *self.starts.get(line.checked_sub(1)?)?;
        let end = self
            .starts
            .get(line)
            .map(|e| e.saturating_sub(1))
            .unwrap_or(self.text.len());
        let s = self.text.get(start..end)?;
        Some(s.strip_suffix('\r').unwrap_or(s))
    }

    pub fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// 1-based (line, column in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(idx).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (idx + 1, col + 1)
    }
}

impl PositionMap for Lines<'_> {
    fn offset(&self, line: usize, col: usize) -> usize {
        let Some(&start) = line.checked_sub(1).and_then(|l| self.starts.get(l)) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let mut off = start;
        for (n, (i, ch)) in rest.char_indices().enumerate() {
            if n == col || ch == '\n' {
                return start + i;
            }
            off = start + i + ch.len_utf8();
        }
        off
    }
}

/// A YAML syntax error with its position in the file.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub message: String,
    pub span: ByteSpan,
}

/// One YAML document as JSON, plus where each node is.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    pub spans: SpanIndex,
    /// The whole document's span, for problems with no better place.
    pub span: ByteSpan,
}

/// Parse every document of `text`. Positions are mapped through `map` so a
/// document embedded in another file (a ConfigMap) reports spans in that file.
pub fn parse(text: &str, map: &dyn PositionMap) -> Result<Vec<Document>, SyntaxError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| {
        let m = e.marker();
        let offset = map.offset(m.line(), m.col());
        SyntaxError {
            message: e.info().to_string(),
            span: ByteSpan { offset, len: 1 },
        }
    })?;
    Ok(docs
        .iter()
        .map(|d| {
            let mut spans = SpanIndex::new();
            let value = convert(d, String::new(), None, map, &mut spans);
            let span = spans.get("").map(|s| s.value).unwrap_or_default();
            Document { value, spans, span }
        })
        .collect())
}

fn span_of(node: &MarkedYaml<'_>, map: &dyn PositionMap) -> ByteSpan {
    let s = node.span.start;
    let e = node.span.end;
    let start = map.offset(s.line(), s.col());
    let end = if matches!(node.data, YamlData::Value(_)) && e.line() == s.line() {
        map.offset(e.line(), e.col())
    } else {
        start
    };
    ByteSpan {
        offset: start,
        len: end.saturating_sub(start).max(1),
    }
}

/// Escape a map key as a JSON pointer token (RFC 6901).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn scalar_key(node: &MarkedYaml<'_>) -> String {
    match &node.data {
        YamlData::Value(s) => match s {
            Scalar::String(s) => s.to_string(),
            Scalar::Integer(i) => i.to_string(),
            Scalar::FloatingPoint(f) => f.to_string(),
            Scalar::Boolean(b) => b.to_string(),
            Scalar::Null => "null".into(),
        },
        YamlData::Tagged(_, inner) => scalar_key(inner),
        _ => "<complex key>".into(),
    }
}

fn convert(
    node: &MarkedYaml<'_>,
    path: String,
    key: Option<ByteSpan>,
    map: &dyn PositionMap,
    spans: &mut SpanIndex,
) -> Value {
    spans.insert(
        path.clone(),
        NodeSpans {
            key,
            value: span_of(node, map),
        },
    );
    match &node.data {
        YamlData::Value(s) => match s {
            Scalar::Null => Value::Null,
            Scalar::Boolean(b) => Value::Bool(*b),
            Scalar::Integer(i) => Value::Number((*i).into()),
            Scalar::FloatingPoint(f) => Number::from_f64(f.into_inner())
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Scalar::String(s) => Value::String(s.to_string()),
        },
        YamlData::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, format!("{path}/{i}"), None, map, spans))
                .collect(),
        ),
        YamlData::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let name = scalar_key(k);
                let child = format!("{path}/{}", pointer_token(&name));
                let kspan = span_of(k, map);
                let value = convert(v, child, Some(kspan), map, spans);
                out.insert(name, value);
            }
            Value::Object(out)
        }
        YamlData::Tagged(_, inner) => convert(inner, path, key, map, spans),
        YamlData::Representation(s, _, _) => Value::String(s.to_string()),
        YamlData::Alias(_) | YamlData::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "a:\n  b: hello\n  list:\n    - x: 1\n";
        let lines = Lines::new(text);
        let docs = parse(text, &lines).unwrap();
        let d = &docs[0];
        let b = d.spans["/a/b"];
        assert_eq!(&text[b.value.offset..b.value.offset + b.value.len], "hello");
        let k = b.key.unwrap();
        assert_eq!(&text[k.offset..k.offset + k.len], "b");
        let x = d.spans["/a/list/0/x"];
        assert_eq!(lines.line_col(x.value.offset), (4, 10));
    }

    #[test]
    fn aliases_are_resolved() {
        let text = "base: &r {keepLast: 3}\nother: *r\n";
        let docs = parse(text, &Lines::new(text)).unwrap();
        assert_eq!(docs[0].value["other"]["keepLast"], 3);
    }

    #[test]
    fn syntax_error_has_position() {
        let text = "a: [1, 2\nb: 3\n";
        let err = parse(text, &Lines::new(text)).unwrap_err();
        assert!(err.span.offset <= text.len());
    }
}
