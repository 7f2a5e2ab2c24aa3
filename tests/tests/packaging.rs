//! The Debian package, as `dpkg` and `lintian` see it: its control fields, the conffile, every
//! file an operator expects (binary, systemd unit, man pages, completions), the unit matching
//! the binary's path, the shipped completions matching what the binary prints, and lintian
//! without errors or warnings. The package is `$FJ_LB_DEB` (`cargo xtask test` makes one from
//! its debug build), else the newest `target/debian/fj-lb_*_amd64.deb` (`cargo xtask deb`).
//! Needs no root.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use fj_lb_tests::{REQUIRE_PRIVILEGED_ENV, TempDir};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The package under test; `None` (skip) if there is none and nothing requires one.
fn package() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FJ_LB_DEB") {
        return Some(PathBuf::from(p));
    }
    let dir = workspace().join("target/debian");
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fj-lb_") && n.to_string_lossy().ends_with("_amd64.deb")))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    if newest.is_none() {
        assert!(std::env::var_os(REQUIRE_PRIVILEGED_ENV).is_none(), "{REQUIRE_PRIVILEGED_ENV} is set but FJ_LB_DEB is not");
        eprintln!("skipping: no .deb (set FJ_LB_DEB, or run `cargo xtask deb`)");
    }
    newest
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    output(Command::new("dpkg-deb").args(args).arg(deb))
}

fn field<'a>(control: &'a str, name: &str) -> &'a str {
    control
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} field in the control file:\n{control}"))
}

#[test]
fn the_package_holds_what_an_operator_expects() {
    let Some(deb) = package() else { return };
    let version = env!("CARGO_PKG_VERSION");
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name, format!("fj-lb_{version}_amd64.deb"), "{}", deb.display());

    let control = dpkg_deb(&["--field"], &deb);
    assert_eq!(field(&control, "Package"), "fj-lb");
    assert_eq!(field(&control, "Version"), version);
    assert_eq!(field(&control, "Architecture"), "amd64");
    assert!(field(&control, "Depends").contains("libc6"), "{control}");
    assert!(field(&control, "Description").contains("load balancer"), "{control}");
    let conffiles = dpkg_deb(&["--info"], &deb);
    assert!(conffiles.contains("conffiles"), "no conffiles in the control archive:\n{conffiles}");
    let conffiles = output(Command::new("dpkg-deb").arg("--info").arg(&deb).arg("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/fj-lb/fj-lb.toml", "the config must survive upgrades");

    let listing = dpkg_deb(&["--contents"], &deb);
    let entry = |path: &str| listing.lines().find(|l| l.ends_with(&format!(" .{path}"))).map(str::to_string);
    let binary = entry("/usr/sbin/fj-lb").unwrap_or_else(|| panic!("no /usr/sbin/fj-lb in\n{listing}"));
    assert!(binary.starts_with("-rwxr-xr-x"), "{binary}");
    for path in [
        "/etc/fj-lb/fj-lb.toml",
        "/usr/lib/systemd/system/fj-lb.service",
        "/usr/share/man/man8/fj-lb.8.gz",
        "/usr/share/man/man8/fj-lb-run.8.gz",
        "/usr/share/man/man5/fj-lb.toml.5.gz",
        "/usr/share/bash-completion/completions/fj-lb",
        "/usr/share/zsh/vendor-completions/_fj-lb",
        "/usr/share/fish/vendor_completions.d/fj-lb.fish",
        "/usr/share/doc/fj-lb/copyright",
        "/usr/share/doc/fj-lb/changelog.gz",
        "/usr/share/doc/fj-lb/grafana/fj-lb.json",
    ] {
        assert!(entry(path).is_some(), "no {path} in the package:\n{listing}");
    }

    // Unpacked: the unit starts the packaged binary, which runs; the shipped completions are
    // what it prints; the man pages render; the changelog's version is the package's.
    let root = TempDir::new("pkg-root");
    output(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(root.path()));
    let file = |p: &str| root.path().join(p.trim_start_matches('/'));
    let unit = std::fs::read_to_string(file("/usr/lib/systemd/system/fj-lb.service")).expect("the unit");
    for line in ["Type=notify", "ExecStart=/usr/sbin/fj-lb run --config /etc/fj-lb/fj-lb.toml", "ExecReload=/bin/kill -HUP $MAINPID"] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}:\n{unit}");
    }
    let bin = file("/usr/sbin/fj-lb");
    assert_eq!(output(Command::new(&bin).arg("--version")).trim(), format!("fj-lb {version}"));
    let bash = output(Command::new(&bin).args(["completions", "bash"]));
    assert_eq!(std::fs::read_to_string(file("/usr/share/bash-completion/completions/fj-lb")).unwrap(), bash);
    for page in ["/usr/share/man/man8/fj-lb.8.gz", "/usr/share/man/man5/fj-lb.toml.5.gz"] {
        let text = output(Command::new("man").arg("-l").arg(file(page)).env("MANWIDTH", "100").env("MAN_KEEP_FORMATTING", ""));
        assert!(text.contains("fj-lb"), "{page} renders as\n{text}");
    }
    let changelog = output(Command::new("zcat").arg(file("/usr/share/doc/fj-lb/changelog.gz")));
    assert!(changelog.starts_with(&format!("fj-lb ({version}) ")), "deploy/debian/changelog needs an entry for {version}:\n{changelog}");
}

#[test]
fn lintian_finds_no_error_or_warning() {
    let Some(deb) = package() else { return };
    if Command::new("lintian").arg("--version").output().is_err() {
        assert!(std::env::var_os(REQUIRE_PRIVILEGED_ENV).is_none(), "no lintian (cargo xtask setup installs it)");
        eprintln!("skipping: no lintian (apt-get install lintian)");
        return;
    }
    let out = Command::new("lintian").args(["--fail-on", "error,warning"]).arg(&deb).output().expect("running lintian");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "lintian on {}:\n{said}{}", deb.display(), String::from_utf8_lossy(&out.stderr));
}
