//! The YAML tree `import` walks: saphyr's marked nodes (YAML 1.2, duplicate keys refused, alias
//! expansion bounded) turned into a small owned tree that keeps each node's line, applies merge
//! keys (`<<: *anchor`) and keeps scalars as written (`1.10` stays `1.10`, not `1.1`).

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// 1-based line in the compose file.
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// `null`, `~`, or nothing after the colon.
    Null,
    /// A scalar as written, and what YAML makes of it.
    Scalar {
        text: String,
        kind: Kind,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Int,
    Float,
    Bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub key: String,
    /// The line of the key.
    pub line: usize,
    pub value: Node,
}

/// Bad YAML, with a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A tag the conversion does not understand (Compose's `!reset`, `!override`), by line.
pub(super) type TagNote = (usize, String);

/// The first document of `src` (`None` when there is none), and the tags met on the way.
pub(super) fn parse(src: &str) -> Result<(Option<Node>, Vec<TagNote>), YamlError> {
    let docs = MarkedYaml::load_from_str(src).map_err(|e| YamlError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: e.info().to_string(),
    })?;
    let mut cx = Convert { src, char_bytes: None, tags: Vec::new() };
    let root = docs.first().map(|d| cx.node(d)).transpose()?;
    if let Some(second) = docs.get(1) {
        cx.tags.push((second.span.start.line(), "a second YAML document (after `---`) is ignored".to_string()));
    }
    Ok((root, cx.tags))
}

struct Convert<'s> {
    src: &'s str,
    /// Byte offset of each character, built on first use (markers count characters).
    char_bytes: Option<Vec<usize>>,
    tags: Vec<TagNote>,
}

impl Convert<'_> {
    fn node(&mut self, n: &MarkedYaml<'_>) -> Result<Node, YamlError> {
        let line = n.span.start.line();
        let value = match &n.data {
            YamlData::Mapping(m) => Value::Map(self.mapping(m.iter())?),
            YamlData::Sequence(s) => Value::Seq(s.iter().map(|item| self.node(item)).collect::<Result<_, _>>()?),
            YamlData::Tagged(tag, inner) => {
                self.tags
                    .push((line, format!("YAML tag `{tag}` is not understood by `stagectl import`; the value is read as if untagged")));
                return self.node(inner);
            }
            YamlData::Value(Scalar::Null) => Value::Null,
            YamlData::Value(Scalar::String(s)) => Value::Scalar { text: s.to_string(), kind: Kind::Str },
            YamlData::Value(scalar) => {
                let kind = match scalar {
                    Scalar::Boolean(_) => Kind::Bool,
                    Scalar::Integer(_) => Kind::Int,
                    _ => Kind::Float,
                };
                let written = self.raw(n).filter(|t| !t.is_empty() && !t.starts_with(['*', '!']));
                let text = written.unwrap_or_else(|| match scalar {
                    Scalar::Boolean(b) => b.to_string(),
                    Scalar::Integer(i) => i.to_string(),
                    Scalar::FloatingPoint(f) => f.to_string(),
                    _ => String::new(),
                });
                Value::Scalar { text, kind }
            }
            YamlData::Representation(text, _, _) => Value::Scalar { text: text.to_string(), kind: Kind::Str },
            YamlData::BadValue | YamlData::Alias(_) => Value::Null,
        };
        Ok(Node { line, value })
    }

    /// Entries in file order; `<<` merges the entries of a mapping (or a list of mappings) that
    /// the mapping does not set itself, earlier merge sources winning, as YAML's merge key says.
    fn mapping<'a, 'i: 'a>(
        &mut self,
        entries: impl Iterator<Item = (&'a MarkedYaml<'i>, &'a MarkedYaml<'i>)>,
    ) -> Result<Vec<Entry>, YamlError> {
        let mut own: Vec<Entry> = Vec::new();
        let mut merged: Vec<(usize, Vec<Entry>)> = Vec::new();
        for (k, v) in entries {
            let key = match &k.data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                YamlData::Value(_) => self.raw(k).unwrap_or_default(),
                _ => {
                    return Err(YamlError {
                        line: k.span.start.line(),
                        col: k.span.start.col() + 1,
                        message: "a mapping key must be a plain value".to_string(),
                    })
                }
            };
            let value = self.node(v)?;
            if key == "<<" {
                let sources = match value.value {
                    Value::Map(entries) => vec![entries],
                    Value::Seq(items) => {
                        items.into_iter().filter_map(|i| if let Value::Map(e) = i.value { Some(e) } else { None }).collect()
                    }
                    _ => {
                        return Err(YamlError {
                            line: value.line,
                            col: 1,
                            message: "the merge key `<<` needs a mapping or a list of mappings".into(),
                        })
                    }
                };
                merged.push((own.len(), sources.into_iter().flatten().collect()));
                continue;
            }
            own.push(Entry { key, line: k.span.start.line(), value });
        }
        if merged.is_empty() {
            return Ok(own);
        }
        // Merged entries go where the `<<` stood, unless the mapping sets the key itself.
        let mut out: Vec<Entry> = Vec::new();
        let mut rest = own.into_iter().enumerate().peekable();
        for (at, sources) in merged {
            while let Some((_, e)) = rest.next_if(|(i, _)| *i < at) {
                out.push(e);
            }
            for e in sources {
                if !out.iter().any(|o| o.key == e.key) && !rest.clone().any(|(_, o)| o.key == e.key) {
                    out.push(e);
                }
            }
        }
        out.extend(rest.map(|(_, e)| e));
        Ok(out)
    }

    /// The source text of a node (its span), as written.
    fn raw(&mut self, n: &MarkedYaml<'_>) -> Option<String> {
        let src = self.src;
        let bytes = self.char_bytes.get_or_insert_with(|| src.char_indices().map(|(b, _)| b).chain([src.len()]).collect());
        let start = *bytes.get(n.span.start.index())?;
        let end = *bytes.get(n.span.end.index())?;
        src.get(start..end).map(|t| t.trim_end().to_string())
    }
}

impl Node {
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    pub fn items(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// A scalar's text (numbers and booleans as written); `None` for null, lists and mappings.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.value == Value::Null
    }

    /// `true`/`false` (and Compose's strings "true"/"false").
    pub fn boolean(&self) -> Option<bool> {
        match self.text()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// What the node is, for messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { kind: Kind::Str, .. } => "a string",
            Value::Scalar { kind: Kind::Int | Kind::Float, .. } => "a number",
            Value::Scalar { kind: Kind::Bool, .. } => "a boolean",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}
