//! `fj-lb import` against golden files kept in `tests/import/golden/`: the sample configs
//! Debian ships with keepalived (/usr/share/doc/keepalived/samples) and haproxy
//! (/usr/share/doc/haproxy/examples), and configs shaped like the seed's in
//! `tests/import/seed/` (two LB hosts, one VIP; web, API, streaming and MySQL over two nodes).
//! Each golden pair is the fj-lb.toml printed (`NAME.toml`) and what was reported as not
//! carried over (`NAME.stderr`). Every output must pass the config parser as `fj-lb
//! check-config` runs it (but for interface names, which are the old hosts').
//!
//! `FJ_LB_BLESS=1 cargo test -p fj-lb --test import_golden` rewrites the golden files after an
//! intended change; review the diff.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use fj_lb::{
    import::{self, Imported, Source},
    model::config::{self, HostView},
};

struct Files;

impl Source for Files {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        std::fs::read_dir(dir)?.map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned())).collect()
    }
}

struct AnyInterface;

impl HostView for AnyInterface {
    fn interface_exists(&self, _: &str) -> bool {
        true
    }
}

const KEEPALIVED_SAMPLES: &str = "/usr/share/doc/keepalived/samples";
const HAPROXY_EXAMPLES: &str = "/usr/share/doc/haproxy/examples";

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden(kind: &str) -> PathBuf {
    here().join("tests/import/golden").join(kind)
}

/// The notes as the CLI prints them on stderr (without its summary line).
fn stderr_of(i: &Imported) -> String {
    i.notes.iter().map(|n| format!("not carried over: {n}\n")).collect()
}

/// Compares `imported` with the golden pair `dir/stem.{toml,stderr}` (or writes it, blessing),
/// and checks the TOML passes the config parser. `Err` describes a difference.
fn compare(imported: &Imported, dir: &Path, stem: &str) -> Result<(), String> {
    config::parse(&imported.toml, stem, &AnyInterface).map_err(|e| format!("{stem}: the output does not pass check-config: {e}"))?;
    for n in &imported.notes {
        if n.at.line == 0 || n.why.is_empty() {
            return Err(format!("{stem}: a note without a line or a reason: {n}"));
        }
    }
    let (toml_path, err_path) = (dir.join(format!("{stem}.toml")), dir.join(format!("{stem}.stderr")));
    let stderr = stderr_of(imported);
    if std::env::var_os("FJ_LB_BLESS").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&toml_path, &imported.toml).unwrap();
        std::fs::write(&err_path, &stderr).unwrap();
        return Ok(());
    }
    let want_toml = std::fs::read_to_string(&toml_path).map_err(|e| format!("{}: {e} (bless with FJ_LB_BLESS=1)", toml_path.display()))?;
    let want_err = std::fs::read_to_string(&err_path).map_err(|e| format!("{}: {e} (bless with FJ_LB_BLESS=1)", err_path.display()))?;
    if imported.toml != want_toml {
        return Err(format!("{stem}: the TOML differs from {}:\n{}", toml_path.display(), imported.toml));
    }
    if stderr != want_err {
        return Err(format!("{stem}: the notes differ from {}:\n{stderr}", err_path.display()));
    }
    Ok(())
}

/// The sample inputs in `dir` whose names pass `keep`, sorted; `None` (after a line on
/// stderr) when the directory is missing and the run may skip.
fn inputs(dir: &str, keep: impl Fn(&str) -> bool) -> Option<Vec<PathBuf>> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        // `cargo xtask test` installs the packages and sets this: there, missing is a failure.
        assert!(std::env::var_os("FJT_REQUIRE_PRIVILEGED").is_none(), "{dir} is missing: run `cargo xtask setup`");
        eprintln!("skipping: {dir} is missing (apt-get install keepalived haproxy, or `cargo xtask setup`)");
        return None;
    };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.file_name().is_some_and(|n| keep(&n.to_string_lossy()))).collect();
    v.sort();
    Some(v)
}

/// Runs every input, then checks that each golden file has its input (none left stale).
fn golden_run(kind: &str, files: &[PathBuf], run: impl Fn(&Path) -> Result<Imported, import::ImportError>) {
    let dir = golden(kind);
    let mut failures = Vec::new();
    let mut stems = Vec::new();
    for f in files {
        let stem = f.file_name().unwrap().to_string_lossy().into_owned();
        match run(f) {
            Ok(i) => {
                if let Err(e) = compare(&i, &dir, &stem) {
                    failures.push(e);
                }
            }
            Err(e) => failures.push(format!("{stem}: {e}")),
        }
        stems.push(stem);
    }
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stem = name.trim_end_matches(".toml").trim_end_matches(".stderr");
        if !stems.iter().any(|s| s == stem) {
            failures.push(format!("{}: a golden file with no input", e.path().display()));
        }
    }
    assert!(failures.is_empty(), "{} of {} inputs differ:\n{}", failures.len(), files.len(), failures.join("\n\n"));
}

#[test]
fn keepalived_samples_match_their_golden_files() {
    let Some(files) = inputs(KEEPALIVED_SAMPLES, |n| n.starts_with("keepalived.conf")) else { return };
    assert!(files.len() >= 20, "only {} samples in {KEEPALIVED_SAMPLES}", files.len());
    golden_run("keepalived", &files, |f| import::keepalived(f, &Files, None));
}

#[test]
fn haproxy_examples_match_their_golden_files() {
    let Some(files) = inputs(HAPROXY_EXAMPLES, |n| n.ends_with(".cfg")) else { return };
    assert!(files.len() >= 5, "only {} examples in {HAPROXY_EXAMPLES}", files.len());
    golden_run("haproxy", &files, |f| import::haproxy(f, &Files));
}

/// The seed's configs, by relative path (cargo runs tests from the crate's directory) so the golden
/// files name them the same on every checkout.
fn seed(name: &str) -> PathBuf {
    PathBuf::from("tests/import/seed").join(name)
}

#[test]
fn the_seed_configs_match_their_golden_files() {
    let files = [seed("keepalived.conf"), seed("exact.conf"), seed("haproxy.cfg")];
    golden_run("seed", &files, |f| {
        if f.extension().is_some_and(|e| e == "cfg") { import::haproxy(f, &Files) } else { import::keepalived(f, &Files, None) }
    });
}

#[test]
fn the_seed_import_carries_its_vip_and_four_services_over_two_nodes() {
    for i in [import::keepalived(&seed("keepalived.conf"), &Files, None).unwrap(), import::haproxy(&seed("haproxy.cfg"), &Files).unwrap()] {
        let c = config::parse(&i.toml, "seed", &AnyInterface).unwrap();
        let ports: Vec<u16> = c.services.iter().map(|s| s.port).collect();
        assert_eq!(ports, [80, 8080, 1935, 3306], "web, API, streaming, MySQL");
        for s in &c.services {
            assert_eq!(s.vip.to_string(), "10.0.0.100");
            assert!(s.backends.iter().any(|b| b.address.to_string() == "10.0.0.11"), "{}: {:?}", s.name, s.backends);
        }
        // Every note points into the seed's files, the included ones too.
        assert!(i.notes.iter().all(|n| n.at.file.starts_with("tests/import/seed/")), "{:?}", i.notes);
    }
    let k = import::keepalived(&seed("keepalived.conf"), &Files, None).unwrap();
    let c = config::parse(&k.toml, "seed", &AnyInterface).unwrap();
    assert_eq!((c.vrrp.len(), c.vrrp[0].vrid, c.vrrp[0].priority), (1, 51, 150));
    assert_eq!(c.vrrp[0].unicast_peers, vec!["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]);
    assert!(k.notes.iter().any(|n| n.at.file.ends_with("services.d/40-mysql.conf") && n.construct == "MISC_CHECK"), "{:?}", k.notes);
    let h = import::haproxy(&seed("haproxy.cfg"), &Files).unwrap();
    let stats = h.notes.iter().find(|n| n.construct == "listen stats").expect("the HTTP stats section is reported");
    assert!(stats.why.contains("not expressible at layer 4"), "{stats}");
}

fn fj_lb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fj-lb")).args(args).current_dir(here()).output().expect("running fj-lb")
}

#[test]
fn the_cli_exits_3_naming_what_it_left_out_and_its_output_passes_check_config() {
    let out = fj_lb(&["import", "keepalived", "tests/import/seed/keepalived.conf"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stdout, std::fs::read_to_string(golden("seed").join("keepalived.conf.toml")).unwrap());
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() > 3, "{stderr}");
    for l in &lines[..lines.len() - 1] {
        let rest = l.strip_prefix("not carried over: tests/import/seed/").unwrap_or_else(|| panic!("{l}"));
        let line_no = rest.split(':').nth(1).unwrap_or_default();
        assert!(line_no.parse::<usize>().is_ok(), "no line number in {l}");
    }
    assert!(lines.last().unwrap().contains("not carried over"), "{stderr}");
    // On a host that has the interface (here: lo), `fj-lb check-config` takes the output as is.
    let path = std::env::temp_dir().join(format!("fj-lb-import-{}.toml", std::process::id()));
    std::fs::write(&path, stdout.replace("\"eth0\"", "\"lo\"")).unwrap();
    let check = fj_lb(&["check-config", "--config", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(check.status.success(), "check-config refused the import: {}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("valid (4 services, 8 backends)"), "{check:?}");
}

#[test]
fn the_cli_exits_0_when_everything_maps() {
    let out = fj_lb(&["import", "keepalived", "tests/import/seed/exact.conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_cli_refuses_a_broken_config_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("fj-lb-import-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, "vrrp_instance VI_1 {\n    interface eth0\n").unwrap();
    let out = fj_lb(&["import", "keepalived", path.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keepalived.conf:1: the block of `vrrp_instance VI_1` is not closed"), "{err}");
}
