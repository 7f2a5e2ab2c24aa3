//! Man pages and shell completions, generated rather than written: fj-lb(8) and one
//! fj-lb-COMMAND(8) per command from the clap definition (clap_mangen), fj-lb.toml(5) from the
//! README's config reference (the one place the keys are documented), and completion scripts
//! (clap_complete). Pure: the binary writes what these return.
use clap::CommandFactory as _;
use roff::{Roff, bold, italic, roman};

use super::Cli;

/// The README, whose "Config reference" block is the source of fj-lb.toml(5).
const README: &str = include_str!("../../../README.md");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const MANUAL: &str = "fj-lb manual";

/// One man page: its file name (`fj-lb.8`) and its roff text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub file: String,
    pub roff: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualError {
    #[error("the README has no ```toml block under \"## Config reference\" to make fj-lb.toml(5) from")]
    NoConfigReference,
}

/// A completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "fj-lb", &mut out);
    out
}

/// Every man page: fj-lb.8, fj-lb-COMMAND.8 for each command a user sees, fj-lb.toml.5.
pub fn pages() -> Result<Vec<Page>, ManualError> {
    let mut cmd = Cli::command();
    cmd.build();
    let commands: Vec<clap::Command> =
        cmd.get_subcommands().filter(|c| !c.is_hide_set() && c.get_name() != "help").cloned().collect();
    let mut main = render(clap_mangen::Man::new(cmd.clone()).title("FJ-LB"));
    let mut see_also: Vec<String> = vec!["fj-lb.toml(5)".into()];
    see_also.extend(commands.iter().map(|c| format!("fj-lb-{}(8)", c.get_name())));
    see_also.push("systemctl(1)".into());
    main.extend(footer(&see_also).as_bytes());
    let mut pages = vec![Page { file: "fj-lb.8".into(), roff: main }];
    for c in commands {
        let name = format!("fj-lb-{}", c.get_name());
        let page = c.clone().name(name.clone()).bin_name(format!("fj-lb {}", c.get_name()));
        let mut roff = render(clap_mangen::Man::new(page).title(name.to_uppercase()));
        roff.extend(footer(&["fj-lb(8)".into(), "fj-lb.toml(5)".into()]).as_bytes());
        pages.push(Page { file: format!("{name}.8"), roff });
    }
    pages.push(Page { file: "fj-lb.toml.5".into(), roff: config_page()?.into_bytes() });
    Ok(pages)
}

fn render(man: clap_mangen::Man) -> Vec<u8> {
    let mut out = Vec::new();
    man.section("8")
        .source(format!("fj-lb {VERSION}"))
        .manual(MANUAL)
        .render(&mut out)
        .expect("rendering into a Vec cannot fail");
    out
}

/// FILES and SEE ALSO, shared by the command pages.
fn footer(see_also: &[String]) -> String {
    let mut r = Roff::new();
    r.control("SH", ["FILES"]);
    r.control("TP", []).text([bold("/etc/fj-lb/fj-lb.toml")]).text([roman("The configuration; see fj-lb.toml(5).")]);
    r.control("TP", [])
        .text([bold("/run/fj-lb/control.sock")])
        .text([roman("The control socket the inspection commands talk to (mode 0600).")]);
    r.control("TP", []).text([bold("/sys/fs/bpf/fj-lb")]).text([roman("The pinned maps and XDP link.")]);
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(see_also.join(", "))]);
    r.render()
}

/// One key of the config reference: its name, the example value, and what the comment says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    name: String,
    example: String,
    doc: String,
}

/// One table of the reference (`""` for the top level, `[metrics]`, `[[service]]`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Table {
    header: String,
    doc: String,
    keys: Vec<Key>,
}

/// Splits `line` at its first `#` outside a string.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut in_string = false;
    for (i, ch) in line.char_indices() {
        match ch {
            '"' => in_string = !in_string,
            '#' if !in_string => return (line[..i].trim_end(), Some(line[i + 1..].trim())),
            _ => {}
        }
    }
    (line.trim_end(), None)
}

fn append(doc: &mut String, more: &str) {
    if !doc.is_empty() && !more.is_empty() {
        doc.push(' ');
    }
    doc.push_str(more);
}

/// The README's config reference, read as tables of documented keys. A comment line on its own
/// continues the comment above it.
fn config_reference(readme: &str) -> Result<(Vec<Table>, String), ManualError> {
    let section = readme.split("\n## Config reference\n").nth(1).ok_or(ManualError::NoConfigReference)?;
    let section = section.split("\n## ").next().unwrap_or(section);
    let body = section.split("```toml\n").nth(1).ok_or(ManualError::NoConfigReference)?;
    let (block, after) = body.split_once("\n```").ok_or(ManualError::NoConfigReference)?;
    let mut tables = vec![Table { header: String::new(), doc: String::new(), keys: Vec::new() }];
    for line in block.lines() {
        let (code, comment) = split_comment(line.trim());
        let table = tables.last_mut().expect("starts with the top level");
        if code.starts_with('[') {
            tables.push(Table { header: code.to_string(), doc: comment.unwrap_or_default().into(), keys: Vec::new() });
        } else if let Some((name, example)) = code.split_once('=') {
            let doc = comment.unwrap_or_default().to_string();
            table.keys.push(Key { name: name.trim().into(), example: example.trim().into(), doc });
        } else if let Some(more) = comment {
            match table.keys.last_mut() {
                Some(k) => append(&mut k.doc, more),
                None => append(&mut table.doc, more),
            }
        }
    }
    // The prose under the block: what validation refuses and what a reload may change.
    let notes: Vec<String> =
        after.trim().split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    Ok((tables, notes.join("\n")))
}

/// fj-lb.toml(5).
fn config_page() -> Result<String, ManualError> {
    let (tables, notes) = config_reference(README)?;
    let mut r = Roff::new();
    r.control("TH", ["FJ-LB.TOML", "5", "", &format!("fj-lb {VERSION}"), MANUAL]);
    r.control("SH", ["NAME"]).text([roman("fj-lb.toml - configuration of the fj-lb load balancer")]);
    r.control("SH", ["SYNOPSIS"]).text([bold("/etc/fj-lb/fj-lb.toml")]);
    r.control("SH", ["DESCRIPTION"]).text([roman(
        "A TOML file read by fj-lb run, fj-lb check-config and on every reload (SIGHUP or fj-lb reload). \
         Every key is listed below with an example value; the top-level keys come first, then each table.",
    )]);
    for t in &tables {
        let title = if t.header.is_empty() { "TOP-LEVEL KEYS".to_string() } else { t.header.clone() };
        r.control("SH", [title.as_str()]);
        if !t.doc.is_empty() {
            r.text([roman(t.doc.clone())]);
        }
        for k in &t.keys {
            r.control("TP", []).text([bold(k.name.clone()), roman(" = "), italic(k.example.clone())]);
            r.text([roman(if k.doc.is_empty() { "(see the example)".to_string() } else { k.doc.clone() })]);
        }
    }
    r.control("SH", ["VALIDATION"]);
    for p in notes.lines() {
        r.control("PP", []).text([roman(p.to_string())]);
    }
    r.control("SH", ["SEE ALSO"]).text([roman("fj-lb(8), fj-lb-run(8), fj-lb-check-config(8)")]);
    Ok(r.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_reference_is_read_key_by_key() {
        let (tables, notes) = config_reference(README).expect("the README has the reference");
        let headers: Vec<&str> = tables.iter().map(|t| t.header.as_str()).collect();
        assert_eq!(headers, ["", "[metrics]", "[vrrp]", "[announce]", "[[service]]", "[service.health]", "[[service.backend]]"]);
        let key = |t: usize, name: &str| tables[t].keys.iter().find(|k| k.name == name).cloned();
        let seed = key(0, "hash_seed").expect("hash_seed");
        assert!(seed.doc.contains("same on every LB host"), "{seed:?}");
        // A comment on a line of its own continues the key above it.
        let accept = key(2, "accept_mode").expect("accept_mode");
        assert!(accept.doc.contains("RFC 5798") && accept.doc.contains("owner (255) always accepts"), "{accept:?}");
        assert_eq!(key(5, "path").map(|k| k.example), Some("\"/healthz\"".into()));
        assert!(notes.contains("unknown keys"), "{notes}");
    }

    #[test]
    fn a_hash_in_a_string_is_not_a_comment() {
        assert_eq!(split_comment(r#"path = "/a#b"  # why"#), (r#"path = "/a#b""#, Some("why")));
        assert_eq!(split_comment("x = 1"), ("x = 1", None));
    }

    #[test]
    fn every_command_has_a_page_and_the_config_its_own() {
        let pages = pages().expect("pages");
        let files: Vec<&str> = pages.iter().map(|p| p.file.as_str()).collect();
        for f in ["fj-lb.8", "fj-lb-run.8", "fj-lb-status.8", "fj-lb-drain.8", "fj-lb-completions.8", "fj-lb.toml.5"] {
            assert!(files.contains(&f), "no {f} in {files:?}");
        }
        assert!(!files.contains(&"fj-lb-manual.8") && !files.contains(&"fj-lb-generate.8"), "hidden commands: {files:?}");
        let text = |f: &str| String::from_utf8(pages.iter().find(|p| p.file == f).unwrap().roff.clone()).unwrap();
        assert!(text("fj-lb.8").contains("\n.TH FJ-LB 8 "), "{}", text("fj-lb.8"));
        assert!(text("fj-lb-run.8").contains("assume\\-healthy"), "{}", text("fj-lb-run.8"));
        let toml = text("fj-lb.toml.5");
        for key in ["maglev_table_size", "track_priority_delta", "when_all_down", "weight"] {
            assert!(toml.contains(key), "fj-lb.toml.5 lacks {key}");
        }
    }

    #[test]
    fn completions_know_the_commands() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let script = String::from_utf8(completions(shell)).unwrap();
            assert!(script.contains("drain") && script.contains("socket"), "{shell}: {script}");
        }
    }
}
