//! A strict JSON reader for policy documents.
//!
//! serde_json's `Value` keeps only the last of two equal object keys, and AWS
//! refuses a policy with duplicate keys, so objects here keep every pair in
//! order and the validator reports duplicates with their location. Nesting
//! is measured on the raw text before serde_json recurses, so hostile input
//! is refused before it can use much stack.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{PolicyError, PolicyErrorKind, MAX_NESTING_DEPTH};

/// A JSON value whose objects keep duplicate keys (in document order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Compact JSON text of the value, for quoting it in messages.
    pub(crate) fn to_compact(&self) -> String {
        serde_json::to_string(&self.to_value()).unwrap_or_default()
    }

    /// Converts to serde_json's value (duplicates collapse; only used for
    /// quoting values in messages, after duplicates were refused).
    pub(crate) fn to_value(&self) -> serde_json::Value {
        match self {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::Number(n) => serde_json::Value::Number(n.clone()),
            Json::String(s) => serde_json::Value::String(s.clone()),
            Json::Array(items) => {
                serde_json::Value::Array(items.iter().map(Json::to_value).collect())
            }
            Json::Object(pairs) => serde_json::Value::Object(
                pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// Reads `text` as one JSON value, refusing nesting deeper than
/// [`MAX_NESTING_DEPTH`] and duplicate object keys at any level.
pub(crate) fn read(text: &str) -> Result<Json, PolicyError> {
    check_depth(text)?;
    let value: Json = serde_json::from_str(text)
        .map_err(|e| PolicyError::new("", PolicyErrorKind::Syntax(e.to_string())))?;
    check_duplicates(&value, &mut String::new())?;
    Ok(value)
}

/// Measures the nesting of `[`/`{` outside strings in one linear pass. The
/// text need not be valid JSON here: serde_json judges that afterwards, and
/// it never nests deeper than the brackets counted here.
fn check_depth(text: &str) -> Result<(), PolicyError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(PolicyError::new(
                        "",
                        PolicyErrorKind::TooDeep(MAX_NESTING_DEPTH),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn check_duplicates(value: &Json, path: &mut String) -> Result<(), PolicyError> {
    match value {
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_duplicates(item, path)?;
                path.truncate(len);
            }
        }
        Json::Object(pairs) => {
            let mut seen = std::collections::HashSet::with_capacity(pairs.len());
            for (key, _) in pairs {
                if !seen.insert(key.as_str()) {
                    return Err(PolicyError::new(
                        path.clone(),
                        PolicyErrorKind::DuplicateKey(key.clone()),
                    ));
                }
            }
            for (key, item) in pairs {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                check_duplicates(item, path)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        // serde_json never produces a non-finite number from text.
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Json>()? {
            pairs.push((key, value));
        }
        Ok(Json::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_found_at_any_level_with_their_location() {
        let err = read(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert_eq!(err.kind, PolicyErrorKind::DuplicateKey("a".into()));
        assert_eq!(err.location, "");
        let err = read(r#"{"S": [{"x": {"k": 1, "k": 1}}]}"#).unwrap_err();
        assert_eq!(err.kind, PolicyErrorKind::DuplicateKey("k".into()));
        assert_eq!(err.location, "S[0].x");
    }

    #[test]
    fn nesting_is_bounded_before_serde_recurses() {
        let deep = "[".repeat(MAX_NESTING_DEPTH + 1);
        assert_eq!(
            read(&deep).unwrap_err().kind,
            PolicyErrorKind::TooDeep(MAX_NESTING_DEPTH)
        );
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_NESTING_DEPTH),
            "]".repeat(MAX_NESTING_DEPTH)
        );
        assert!(read(&ok).is_ok());
        // Brackets inside strings (and escaped quotes) do not count.
        let text = format!(r#"["\"{}"]"#, "[".repeat(100));
        assert!(read(&text).is_ok());
        // A million brackets are refused, not a stack overflow.
        assert!(read(&"{\"a\":".repeat(1_000_000)).is_err());
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = read("{\"a\": }").unwrap_err();
        assert!(matches!(err.kind, PolicyErrorKind::Syntax(ref m) if m.contains("line 1")));
    }
}
