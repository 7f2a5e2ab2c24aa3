//! The daemon's log as the journal or a log file gets it: no ANSI colour codes when stderr is
//! not a terminal, one event a line; colours only at a terminal (and not with NO_COLOR). Needs
//! no privileges: `fj-lb run` logs its first event (the open-file limit) before it reads the
//! config, which here does not exist.
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_fj-lb");

/// What `fj-lb run` with a missing config writes on stderr, stderr being a pipe.
fn piped_stderr() -> String {
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/fj-lb.toml"])
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("running fj-lb");
    assert_eq!(out.status.code(), Some(2), "a missing config is a config error: {out:?}");
    String::from_utf8(out.stderr).expect("the log is UTF-8")
}

/// "2026-01-01T00:00:00.000000Z  INFO target: message fields": a timestamp, a level, a target.
fn is_event(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or("");
    let level = words.next().unwrap_or("");
    stamp.len() >= 20
        && stamp.ends_with('Z')
        && stamp.as_bytes()[10] == b'T'
        && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
        && words.next().is_some_and(|t| t.ends_with(':'))
}

#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_and_one_event_a_line() {
    let log = piped_stderr();
    assert!(!log.contains('\x1b'), "escape sequences in a piped log:\n{log:?}");
    let events: Vec<&str> = log.lines().filter(|l| is_event(l)).collect();
    assert!(!events.is_empty(), "no log event at all (the open-file limit is logged first):\n{log}");
    for line in log.lines() {
        // The one line that is not an event: the error the CLI prints on its way out.
        assert!(is_event(line) || line.starts_with("error: "), "a line that is neither an event nor the error:\n{line:?}\nin\n{log}");
    }
    assert!(events.iter().any(|l| l.contains("open_files=")), "fields ride on the event's line:\n{log}");
}

/// `script` (util-linux) runs the command with a pseudo-terminal as its stderr.
fn at_a_terminal(no_color: bool) -> Option<String> {
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{BIN} run --config /nonexistent/fj-lb.toml"), "/dev/null"]).env("RUST_LOG", "info");
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let out = c.stdin(Stdio::null()).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_terminal_gets_colour_unless_no_color() {
    let Some(coloured) = at_a_terminal(false) else {
        eprintln!("skipping: no `script` (util-linux) to make a terminal");
        return;
    };
    assert!(coloured.contains("\x1b["), "no colour at a terminal:\n{coloured:?}");
    let plain = at_a_terminal(true).expect("script ran once already");
    assert!(!plain.contains('\x1b'), "NO_COLOR=1 at a terminal still coloured:\n{plain:?}");
}
