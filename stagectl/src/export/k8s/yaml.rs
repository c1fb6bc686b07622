//! A small YAML emitter for the documents of the export: block mappings and sequences, plain
//! scalars where YAML 1.1 and 1.2 readers both read them back as the same string, JSON-quoted
//! scalars everywhere else (a JSON string is a valid YAML double-quoted scalar). Kept here
//! rather than a dependency: the documents are plain JSON values and need nothing more.

use serde_json::Value;

/// One document as YAML text (no `---` separator), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => sequence(items, 0, &mut out),
        scalar => {
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
    out
}

fn mapping(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        out.push_str(&" ".repeat(indent));
        out.push_str(&string(key));
        out.push(':');
        entry_value(value, indent, true, out);
    }
}

fn sequence(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match item {
            // A mapping item starts on the dash's line: `- key: value`, the rest aligned under it.
            Value::Object(map) if !map.is_empty() => {
                let mut nested = String::new();
                mapping(map, indent + 2, &mut nested);
                out.push(' ');
                out.push_str(&nested[indent + 2..]);
            }
            other => entry_value(other, indent, false, out),
        }
    }
}

/// The value after `key:` or `-`: inline for scalars and empty collections, else on the next lines.
fn entry_value(value: &Value, indent: usize, in_mapping: bool, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            mapping(map, indent + 2, out);
        }
        // Sequences under a key stay at the key's indentation (`key:\n- a`), as kubectl writes them.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            sequence(items, if in_mapping { indent } else { indent + 2 }, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&inline(scalar));
            out.push('\n');
        }
    }
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".to_string(),
        Value::Object(_) => "{}".to_string(),
    }
}

/// A string scalar: plain when unambiguous, else double-quoted.
fn string(s: &str) -> String {
    if plain_is_safe(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// Whether `s` written plain reads back as this string in YAML 1.1 and 1.2 readers alike:
/// no indicator characters, no `: ` / ` #`, and nothing a resolver takes for a bool, null or number.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return false };
    if !(first.is_ascii_alphabetic() || first == '/' || first == '_') {
        return false;
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=+@ ".contains(c)) || s.ends_with(' ') {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    let reserved = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf"];
    !reserved.contains(&lower.as_str()) && !lower.starts_with(".") && s.parse::<f64>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_mappings_and_sequences_are_block_style() {
        let doc = json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "args": ["x", "y"]}], "empty": []}});
        let text = to_yaml(&doc);
        // Keys sorted (serde_json's map); `y` quoted: YAML 1.1 reads it as a bool.
        assert_eq!(text, "kind: Pod\nspec:\n  containers:\n  - args:\n    - x\n    - \"y\"\n    name: a\n  empty: []\n");
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in ["yes", "No", "8080", "1.5", "", " lead", "a: b", "x #y", "*star", "${secret}", "on", "0x1F", "line\nbreak", "~"] {
            let text = to_yaml(&json!({ "k": s }));
            assert!(text.starts_with("k: \""), "{s:?} must be quoted: {text}");
        }
        assert_eq!(to_yaml(&json!({"k": "postgres://db:5432"})), "k: \"postgres://db:5432\"\n");
        assert_eq!(to_yaml(&json!({"k": "/healthz", "m": 3, "b": true})), "b: true\nk: /healthz\nm: 3\n");
    }

    #[test]
    fn the_output_reads_back_as_the_same_value() {
        let doc = json!({
            "metadata": {"name": "app", "labels": {"app.kubernetes.io/name": "app"}, "annotations": {"x": "a\"b\\c\té"}},
            "list": [[1, 2], {"a": [{"b": "c"}]}, "no", null, -3],
            "multi": "line one\nline two\n",
        });
        let text = to_yaml(&doc);
        let parsed = saphyr_to_json(&text);
        assert_eq!(parsed, doc, "{text}");
    }

    fn saphyr_to_json(text: &str) -> Value {
        use saphyr::{LoadableYamlNode, Scalar, Yaml};
        fn convert(y: &Yaml) -> Value {
            match y {
                Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
                Yaml::Value(Scalar::Integer(i)) => json!(i),
                Yaml::Value(Scalar::Boolean(b)) => json!(b),
                Yaml::Value(Scalar::Null) => Value::Null,
                Yaml::Value(Scalar::FloatingPoint(f)) => json!(f.into_inner()),
                Yaml::Sequence(items) => Value::Array(items.iter().map(convert).collect()),
                Yaml::Mapping(map) => {
                    Value::Object(map.iter().map(|(k, v)| (k.as_str().expect("string keys").to_string(), convert(v))).collect())
                }
                other => panic!("unexpected node {other:?}"),
            }
        }
        let docs = Yaml::load_from_str(text).expect("valid YAML");
        convert(&docs[0])
    }
}
