//! `fj-lb import`: a keepalived.conf or haproxy.cfg read into an fj-lb.toml. Pure: files come
//! through [`Source`] (the binary gives it the file system, the tests a fixture), so every
//! mapping is a unit or golden test. What cannot be carried over becomes a [`Note`] with the
//! file and line it came from and why; nothing is dropped without one. The TOML is checked by
//! the config's own parser before it is handed out.
mod emit;
mod haproxy;
mod keepalived;
mod words;

use std::{fmt, path::Path};

pub use haproxy::import as haproxy;
pub use keepalived::import as keepalived;

/// Where the configs come from: read a file, list a directory (for `include` globs).
pub trait Source {
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// The names of the entries of `dir` (not paths), in any order.
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>>;
}

/// A place in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One construct not carried over (or not exactly), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub at: Origin,
    /// The construct as the input has it, e.g. `lb_kind NAT`.
    pub construct: String,
    pub why: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.construct, self.why)
    }
}

/// What an import gives: the fj-lb.toml, and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub toml: String,
    pub notes: Vec<Note>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    Syntax { at: Origin, message: String },
    /// A bug of the importer's own: the TOML it wrote is refused by the config parser.
    #[error("the generated config is invalid (a bug of `fj-lb import`): {0}")]
    Generated(#[source] crate::model::config::ConfigError),
}

/// Notes as they are collected while mapping.
#[derive(Debug, Default)]
struct Notes(Vec<Note>);

impl Notes {
    /// In reading order: by file (in the order first met), then line.
    fn sorted(mut self) -> Vec<Note> {
        let mut files: Vec<String> = Vec::new();
        for n in &self.0 {
            if !files.contains(&n.at.file) {
                files.push(n.at.file.clone());
            }
        }
        self.0.sort_by_key(|n| (files.iter().position(|f| *f == n.at.file), n.at.line));
        self.0
    }

    fn add(&mut self, at: &Origin, construct: impl Into<String>, why: impl Into<String>) {
        self.0.push(Note { at: at.clone(), construct: construct.into(), why: why.into() });
    }
}

/// Matches a file name against a glob pattern of `*`, `?` and `[...]` (with `!` or `^` to
/// negate, and ranges), as glob(3) does within one path component.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let mut set = &p[1..close];
                let negate = matches!(set.first(), Some('!') | Some('^'));
                if negate {
                    set = &set[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[close + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    // Hidden files only match a pattern that names the dot, as with glob(3).
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    go(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>())
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// What the importers' unit tests share: files in memory, a host with every interface.
#[cfg(test)]
mod testing {
    use std::{collections::HashMap, path::Path};

    pub(super) struct Mem(pub(super) HashMap<&'static str, &'static str>);

    impl super::Source for Mem {
        fn read(&self, path: &Path) -> std::io::Result<String> {
            // `..` resolved as the kernel would.
            let mut parts: Vec<&str> = Vec::new();
            for c in path.to_str().unwrap().split('/').filter(|c| !c.is_empty()) {
                if c == ".." {
                    parts.pop();
                } else {
                    parts.push(c);
                }
            }
            let p = format!("/{}", parts.join("/"));
            self.0.get(p.as_str()).map(|s| s.to_string()).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
        fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
            let d = format!("{}/", dir.display());
            Ok(self.0.keys().filter_map(|k| k.strip_prefix(&d)).filter(|r| !r.contains('/')).map(str::to_string).collect())
        }
    }

    pub(super) struct Any;

    impl crate::model::config::HostView for Any {
        fn interface_exists(&self, _: &str) -> bool {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_glob_3_does() {
        assert!(glob_match("*.conf", "web.conf") && !glob_match("*.conf", "web.conf.bak"));
        assert!(glob_match("vs-?.conf", "vs-1.conf") && !glob_match("vs-?.conf", "vs-10.conf"));
        assert!(glob_match("[a-c]*", "beta") && !glob_match("[!a-c]*", "beta") && glob_match("[^a-c]*", "delta"));
        assert!(!glob_match("*", ".hidden") && glob_match(".*", ".hidden"));
        assert!(glob_match("a[b", "a[b"), "an unclosed bracket is a character");
        assert!(has_glob("conf.d/*.conf") && !has_glob("/etc/keepalived/extra.conf"));
    }
}
