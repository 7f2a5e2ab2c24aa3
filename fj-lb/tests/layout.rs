//! The architecture's one rule, checked: the pure core never imports I/O (aya, tokio, libc,
//! netlink, futures) nor the rooms that do it. A file that needs the kernel belongs at an edge.
use std::path::{Path, PathBuf};

/// The pure core, relative to `fj-lb/src`: folders (every file in them) and single files.
const PURE: &[&str] = &[
    "model",
    "cli",
    "report/status.rs",
    "report/tables.rs",
    "report/metrics.rs",
    "report/page.rs",
    "report/trace.rs",
    "control/protocol.rs",
    "vrrp/machine.rs",
    "vrrp/packet.rs",
    "vrrp/status.rs",
    "vrrp/validate.rs",
    "vrrp/sync.rs",
    "vrrp/hooks.rs",
    "import",
];

/// Crates that do I/O.
const IO_CRATES: &[&str] = &["aya", "tokio", "libc", "netlink_packet_route", "rtnetlink", "futures"];
/// Rooms of this crate that do I/O; the pure core may not reach into them.
const IO_ROOMS: &[&str] = &["datapath", "net", "announce", "health", "daemon", "control::server", "control::client", "report::serve", "vrrp::socket", "vrrp::announce", "vrrp::addresses", "vrrp::vmac", "vrrp::runner", "vrrp::notify", "vrrp::group"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())) {
            rust_files(&e.expect("directory entry").path(), out);
        }
    } else if p.extension().is_some_and(|x| x == "rs") {
        out.push(p.to_path_buf());
    }
}

/// The code of a file without its comments (line comments and doc comments), so that a
/// sentence naming a crate does not count.
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn mentions(code: &str, name: &str) -> bool {
    let bytes = code.as_bytes();
    code.match_indices(name).any(|(i, _)| {
        let before = if i == 0 { b' ' } else { bytes[i - 1] };
        let after = bytes.get(i + name.len()).copied().unwrap_or(b' ');
        !(before.is_ascii_alphanumeric() || before == b'_' || before == b':') && after == b':'
    })
}

/// Every path a `use` item names, flattened: `use crate::{a::{b, c}, d};` gives `crate::a::b`,
/// `crate::a::c`, `crate::d`.
fn use_paths(code: &str) -> Vec<String> {
    fn flatten(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        match tree.find('{') {
            None => out.push(format!("{prefix}{}", tree.split(" as ").next().unwrap_or(tree).trim())),
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
                let (mut depth, mut start) = (0, 0);
                for (i, ch) in inner.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            flatten(&format!("{prefix}{head}"), &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                if !inner[start..].trim().is_empty() {
                    flatten(&format!("{prefix}{head}"), &inner[start..], out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for item in code.split(';') {
        if let Some(pos) = item.find("use ") {
            let tree = item[pos + 4..].trim();
            if !tree.is_empty() {
                flatten("", tree, &mut out);
            }
        }
    }
    out
}

/// A `super::` path of a file under `src/` written as a `crate::` path.
fn absolute(path: &str, file: &Path) -> String {
    let module: Vec<String> = file
        .strip_prefix(src())
        .expect("under src")
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    match path.strip_prefix("super::") {
        Some(rest) if !module.is_empty() => {
            let mut m = module[..module.len() - 1].to_vec();
            m.push(rest.to_string());
            format!("crate::{}", m.join("::"))
        }
        _ => path.to_string(),
    }
}

#[test]
fn the_pure_core_imports_no_io() {
    let mut files = Vec::new();
    for p in PURE {
        let path = src().join(p);
        assert!(path.exists(), "{} is listed as pure but does not exist: update PURE", path.display());
        rust_files(&path, &mut files);
    }
    assert!(files.len() >= PURE.len(), "found {files:?}");
    let mut offences = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let code = code(&text);
        for c in IO_CRATES {
            if mentions(&code, c) {
                offences.push(format!("{} uses the crate {c}", f.display()));
            }
        }
        let paths: Vec<String> = use_paths(&code).iter().map(|p| absolute(p, f)).chain(
            // Paths written inline, not imported.
            code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).filter(|w| w.starts_with("crate::")).map(str::to_string),
        ).collect();
        for room in IO_ROOMS {
            let room = format!("crate::{room}");
            if paths.iter().any(|p| p == &room || p.starts_with(&format!("{room}::"))) {
                offences.push(format!("{} reaches into {room}", f.display()));
            }
        }
    }
    assert!(offences.is_empty(), "the pure core must stay free of I/O:\n{}", offences.join("\n"));
}

#[test]
fn the_check_catches_an_import() {
    assert!(mentions("use tokio::sync::mpsc;", "tokio"));
    assert!(mentions("let x = libc::IFNAMSIZ;", "libc"));
    assert!(!mentions("let tokio_like = 1;", "tokio"));
    assert!(!mentions("use std::net::IpAddr;", "net"), "a std path is not ours");
    assert!(!mentions(&code("// tokio:: is not used here"), "tokio"));
    let paths = use_paths("use crate::{\n    datapath::{Dataplane, self},\n    model::addr::Mac,\n};\nuse super::io as x;");
    assert_eq!(paths, ["crate::datapath::Dataplane", "crate::datapath::self", "crate::model::addr::Mac", "super::io"]);
    let f = src().join("vrrp/status.rs");
    assert_eq!(absolute("super::socket", &f), "crate::vrrp::socket");
    assert_eq!(absolute("super::machine::State", &src().join("vrrp/mod.rs")), "crate::machine::State");
}
