//! The fj-lb.toml an import writes: tables of keys in order, each with a comment saying where
//! it came from, rendered as TOML text (values quoted by the toml crate) and checked by the
//! config's own parser before anyone sees it.
use std::fmt::Write as _;

use super::{ImportError, Origin};
use crate::model::config::{self, HostView};

/// One `key = value`, with an optional comment after it.
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
    comment: Option<String>,
}

/// A table: `[[vrrp]]`, `[service.health]`, ... with what it says it came from.
#[derive(Debug, Clone)]
pub(super) struct Table {
    pub(super) header: &'static str,
    from: Option<String>,
    entries: Vec<Entry>,
}

impl Table {
    /// A table headed `header`, commented as coming from `what` at `at`.
    pub(super) fn new(header: &'static str, at: &Origin, what: &str) -> Table {
        Table { header, from: Some(format!("from {at}: {what}")), entries: Vec::new() }
    }

    pub(super) fn put(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        self.entries.push(Entry { key: key.to_string(), value: value.into().to_string(), comment: None });
        self
    }

    /// Like [`Table::put`], with a comment after the value.
    pub(super) fn put_c(&mut self, key: &str, value: impl Into<toml::Value>, comment: impl Into<String>) -> &mut Self {
        self.entries.push(Entry { key: key.to_string(), value: value.into().to_string(), comment: Some(comment.into()) });
        self
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// The value of `key` as TOML writes it (`"G1"`, `0`), if set.
    pub(super) fn value(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.value.as_str())
    }

    /// Whether the two set the same keys to the same values (wherever they came from).
    pub(super) fn same_keys(&self, other: &Table) -> bool {
        self.header == other.header
            && self.entries.len() == other.entries.len()
            && self.entries.iter().zip(&other.entries).all(|(a, b)| a.key == b.key && a.value == b.value)
    }

    /// Moves `other`'s keys to the end of this table.
    pub(super) fn append(&mut self, other: Table) {
        self.entries.extend(other.entries);
    }

    fn nested(&self) -> bool {
        self.header.starts_with("[service.") || self.header.starts_with("[[service.")
    }
}

/// A whole document: comment lines, top-level keys, then the tables in order.
#[derive(Debug, Clone, Default)]
pub(super) struct Doc {
    pub(super) head: Vec<String>,
    pub(super) top: Vec<(String, String, Option<String>)>,
    pub(super) tables: Vec<Table>,
}

impl Doc {
    pub(super) fn top(&mut self, key: &str, value: impl Into<toml::Value>, comment: Option<String>) {
        self.top.push((key.to_string(), value.into().to_string(), comment));
    }

    pub(super) fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.head {
            writeln!(s, "# {h}").unwrap();
        }
        let line = |s: &mut String, indent: &str, key: &str, value: &str, comment: &Option<String>| {
            match comment {
                Some(c) => writeln!(s, "{indent}{:<31} # {c}", format!("{key} = {value}")).unwrap(),
                None => writeln!(s, "{indent}{key} = {value}").unwrap(),
            }
        };
        if !self.top.is_empty() {
            s.push('\n');
        }
        for (k, v, c) in &self.top {
            line(&mut s, "", k, v, c);
        }
        for t in &self.tables {
            let indent = if t.nested() { "  " } else { "" };
            s.push('\n');
            if let Some(from) = &t.from {
                writeln!(s, "{indent}# {from}").unwrap();
            }
            writeln!(s, "{indent}{}", t.header).unwrap();
            for e in &t.entries {
                line(&mut s, indent, &e.key, &e.value, &e.comment);
            }
        }
        s
    }
}

/// Any interface name passes: the imported config names the old host's interfaces, which need
/// not exist where the import runs. Everything else is checked as `fj-lb check-config` does.
struct AnyInterface;

impl HostView for AnyInterface {
    fn interface_exists(&self, _: &str) -> bool {
        true
    }
}

/// The rendered document, once the config parser accepts it.
pub(super) fn checked(doc: &Doc) -> Result<String, ImportError> {
    let text = doc.render();
    config::parse(&text, "imported fj-lb.toml", &AnyInterface).map_err(ImportError::Generated)?;
    Ok(text)
}

/// A list of strings as a TOML value.
pub(super) fn strings<S: AsRef<str>>(v: &[S]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::String(s.as_ref().to_string())).collect())
}

/// A service or instance name fj-lb accepts, from one that may hold other characters.
pub(super) fn name(raw: &str) -> String {
    let n: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).take(64).collect();
    if n.is_empty() { "unnamed".to_string() } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_with_their_origin_and_comments() {
        let at = Origin { file: "k.conf".into(), line: 3 };
        let mut doc = Doc { head: vec!["imported".into()], ..Default::default() };
        doc.top("interface", "eth0", Some("XDP attaches here".into()));
        let mut t = Table::new("[[service]]", &at, "virtual_server 10.0.0.1 80");
        t.put("name", "a\"b").put_c("port", 80, "the virtual port");
        doc.tables.push(t);
        let mut b = Table::new("[[service.backend]]", &at, "real_server");
        b.put("address", "10.0.0.2");
        doc.tables.push(b);
        let text = doc.render();
        assert!(text.starts_with("# imported\n\ninterface = \"eth0\""), "{text}");
        assert!(text.contains("# from k.conf:3: virtual_server 10.0.0.1 80\n[[service]]\nname = 'a\"b'\nport = 80   "), "quoted by toml: {text}");
        assert!(text.contains("port = 80                       # the virtual port\n"), "{text}");
        assert!(text.contains("\n  [[service.backend]]\n  address = \"10.0.0.2\"\n"), "{text}");
        assert_eq!(name("VI 1/ä"), "VI_1__");
    }
}
