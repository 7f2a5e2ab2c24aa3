//! Namespaces, commands and child processes, each behind a guard that cleans up on Drop.
use std::{
    ffi::{CString, OsStr},
    fs::File,
    os::{
        fd::AsRawFd,
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

/// Every name this harness creates (namespaces, temp dirs, bpffs dirs) starts with this,
/// followed by the creating pid: `fjt-<pid>-<seq>[-<role>]`.
pub const PREFIX: &str = "fjt-";
/// One marker file per live harness process, holding its start time, so that a recycled pid
/// is not mistaken for the process that created a leftover.
pub const MARKER_DIR: &str = "/run/fj-lb-tests";
const NETNS_DIR: &str = "/run/netns";
const BPFFS: &str = "/sys/fs/bpf";

static INIT: Once = Once::new();
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Once per process: records this process as a live owner and sweeps leftovers of dead runs.
pub fn init() {
    INIT.call_once(|| {
        crate::assert_root();
        std::fs::create_dir_all(MARKER_DIR).unwrap_or_else(|e| panic!("creating {MARKER_DIR}: {e}"));
        let me = std::process::id();
        let start = process_start_time(me).expect("/proc/self/stat is readable");
        std::fs::write(Path::new(MARKER_DIR).join(me.to_string()), start.to_string())
            .unwrap_or_else(|e| panic!("writing the marker in {MARKER_DIR}: {e}"));
        sweep_stale();
    });
}

/// A name unique to this process and call: `fjt-<pid>-<seq>`.
pub fn unique_id() -> String {
    init();
    format!("{PREFIX}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. `None` if
/// there is no such process or it is a zombie (dead, waiting to be reaped).
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let mut rest = stat[stat.rfind(')')? + 2..].split_whitespace();
    if matches!(rest.next()?, "Z" | "X" | "x") {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

/// The pid encoded in a harness name, if `name` is one.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Whether the harness process `pid` still runs (and is the same process, not a recycled pid).
fn owner_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Some(start) = process_start_time(pid) else {
        return false;
    };
    match std::fs::read_to_string(Path::new(MARKER_DIR).join(pid.to_string())) {
        Ok(recorded) => recorded.trim() == start.to_string(),
        // No marker: cannot tell, so assume it is alive rather than break someone's run.
        Err(_) => true,
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Deletes the namespaces, temp dirs, bpffs dirs and markers left by harness processes that
/// are gone (a crashed or killed run), and kills whatever still runs in those namespaces.
/// Leftovers of live processes are not touched, so concurrent runs do not disturb each other.
pub fn sweep_stale() {
    for name in dir_names(Path::new(NETNS_DIR)) {
        if owner_pid(&name).is_some_and(|pid| !owner_alive(pid)) {
            eprintln!("fj-lb-tests: removing stale namespace {name}");
            delete_netns(&name);
        }
    }
    for base in [PathBuf::from(BPFFS), std::env::temp_dir()] {
        for name in dir_names(&base) {
            if owner_pid(&name).is_some_and(|pid| !owner_alive(pid)) {
                eprintln!("fj-lb-tests: removing stale {}", base.join(&name).display());
                let _ = std::fs::remove_dir_all(base.join(&name));
            }
        }
    }
    for name in dir_names(Path::new(MARKER_DIR)) {
        if let Ok(pid) = name.parse::<u32>()
            && process_start_time(pid).is_none_or(|start| {
                std::fs::read_to_string(Path::new(MARKER_DIR).join(&name)).is_ok_and(|r| r.trim() != start.to_string())
            })
        {
            let _ = std::fs::remove_file(Path::new(MARKER_DIR).join(&name));
        }
    }
}

/// Kills every process left in namespace `name`, then deletes it. Never panics.
fn delete_netns(name: &str) {
    let me = std::process::id();
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            if pid != me {
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
    match Command::new("ip").args(["netns", "delete", name]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!("fj-lb-tests: ip netns delete {name}: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => eprintln!("fj-lb-tests: ip netns delete {name}: {e}"),
    }
}

/// `program arg...`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; `Err` names the command, its exit status and its stderr.
pub fn try_run(cmd: &mut Command) -> Result<String, String> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{what}` could not be started: {e}"))?;
    output_result(&what, &out)
}

/// A finished command `what`'s stdout, or `Err` with its exit status, stderr and stdout.
pub fn output_result(what: &str, out: &Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{what}` failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// Runs `cmd` to completion and returns its stdout; panics naming the command and its stderr.
pub fn run(cmd: &mut Command) -> String {
    try_run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// A system program the harness runs: `$ENV` if set, else `name` from /usr/sbin, /usr/bin or
/// /usr/local/sbin; panics saying which Debian package to install.
pub fn system_binary(name: &str, env: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no {name}: install it (`apt-get install {package}`, or `cargo xtask setup`) or set {env}"))
}

/// For the lab binaries: on a terminal, prints `intro` and the lab's namespaces and waits for
/// SIGINT or SIGTERM (blocked beforehand with [`block_stop_signals`]), so the lab stays up to
/// be looked at; returns at once when not on a terminal.
pub fn hold_on_terminal(signals: &libc::sigset_t, intro: &str, topo: &crate::Topology, try_lines: &str) {
    if unsafe { libc::isatty(0) != 1 || libc::isatty(1) != 1 } {
        return;
    }
    println!("\n{intro} Namespaces:");
    for h in topo.hosts() {
        println!("  {:<7} {:<18} {}", h.name, h.ns.name(), h.ip);
    }
    println!("  switch  {}", topo.switch().name());
    println!("Try: {try_lines}\nCtrl-C tears everything down.");
    let mut sig = 0;
    unsafe { libc::sigwait(signals, &mut sig) };
    println!("\nsignal {sig}: tearing down");
}

/// A network namespace, deleted on Drop (with whatever still runs in it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `<id>-<role>`, where `id` comes from [`unique_id`].
    pub fn new(id: &str, role: &str) -> Netns {
        init();
        let name = format!("{id}-{role}");
        assert!(name.starts_with(PREFIX) && owner_pid(&name).is_some(), "{name}: not a harness name");
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NS ARGS...`; returns stdout, panics with the command and stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NS ARGS...`; `Err` carries the command and its stderr.
    pub fn try_exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String, String> {
        try_run(Command::new("ip").args(["netns", "exec", &self.name]).args(args))
    }

    /// `ip netns exec NS ARGS...`; returns stdout, panics with the command and stderr on failure.
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        self.try_exec(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sets a sysctl inside the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Turns TX checksum offload of `ifname` on or off (`ethtool -K IF tx off`, without
    /// needing ethtool).
    pub fn set_tx_checksum(&self, ifname: &str, on: bool) {
        const ETHTOOL_STXCSUM: u32 = 0x17;
        #[repr(C)]
        struct EthtoolValue {
            cmd: u32,
            data: u32,
        }
        assert!(ifname.len() < libc::IFNAMSIZ);
        let r = self.run_in(|| {
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut value = EthtoolValue { cmd: ETHTOOL_STXCSUM, data: on as u32 };
            let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
                *d = s as libc::c_char;
            }
            ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
            let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL as _, &mut ifr) };
            let err = std::io::Error::last_os_error();
            unsafe { libc::close(fd) };
            if rc < 0 { Err(err) } else { Ok(()) }
        });
        if let Err(e) = r {
            panic!("setting TX checksum offload of {ifname} in {} to {on}: {e}", self.name);
        }
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens live here and
    /// stay here even when handed back to another thread.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.name, f)
    }

    /// Starts a long-lived `program args...` inside this namespace, stdout and stderr appended
    /// to `log`. Unlike `ip netns exec`, the child keeps the host's bpffs at /sys/fs/bpf: it
    /// gets a private mount namespace with this namespace's sysfs on /sys and the host's
    /// /sys/fs/bpf bound back on top. It is killed (PR_SET_PDEATHSIG) when the thread that
    /// spawned it exits, so spawn from a thread that outlives the guard (the test's own).
    pub fn spawn<S: AsRef<OsStr>>(&self, label: &str, program: impl AsRef<OsStr>, args: &[S], log: &Path) -> ChildGuard {
        let mut cmd = Command::new(program);
        cmd.args(args);
        self.spawn_command(label, cmd, log)
    }

    /// Like [`Netns::spawn`] for a prepared command (env, cwd...).
    pub fn spawn_command(&self, label: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        let what = describe(&cmd);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening log {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        self.enter_on_exec(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting `{what}` in namespace {}: {e}", self.name));
        ChildGuard {
            label: format!("{label} ({what}) in {}", self.name),
            child,
            log: Some(log.to_path_buf()),
            exited: None,
        }
    }

    /// Runs `cmd` to completion inside this namespace with the host's bpffs (as
    /// [`Netns::spawn`] does), for one-shot commands that pin BPF objects; its output.
    pub fn output(&self, mut cmd: Command) -> Output {
        let what = describe(&cmd);
        cmd.stdin(Stdio::null());
        self.enter_on_exec(&mut cmd);
        cmd.output().unwrap_or_else(|e| panic!("running `{what}` in namespace {}: {e}", self.name))
    }

    /// Makes `cmd`, once forked, enter this namespace: a private mount namespace with this
    /// namespace's sysfs on /sys and the host's /sys/fs/bpf bound back on top; killed when the
    /// spawning thread exits.
    fn enter_on_exec(&self, cmd: &mut Command) {
        let netns = File::open(Path::new(NETNS_DIR).join(&self.name))
            .unwrap_or_else(|e| panic!("opening namespace {}: {e}", self.name));
        let stash = CString::new(Path::new(MARKER_DIR).join("bpf-stash").as_os_str().as_bytes()).unwrap();
        std::fs::create_dir_all(Path::new(MARKER_DIR).join("bpf-stash")).expect("creating the bpffs stash dir");
        let sysfs_name = CString::new(self.name.as_bytes()).unwrap();
        let parent = std::process::id() as libc::pid_t;
        // The descriptor lives in the closure (and so in `cmd`) until the child has entered.
        let netns = std::sync::Arc::new(netns);
        // SAFETY: only async-signal-safe syscalls between fork and exec; every string was
        // allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                // A clean signal mask: the caller may block signals it takes with sigwait.
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                check(libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()))?;
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0))?;
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                check(libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET))?;
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ))?;
                let bpf = libc::mount(
                    c"/sys/fs/bpf".as_ptr(),
                    stash.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) == 0;
                check(libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH))?;
                check(libc::mount(sysfs_name.as_ptr(), c"/sys".as_ptr(), c"sysfs".as_ptr(), 0, std::ptr::null()))?;
                if bpf {
                    check(libc::mount(
                        stash.as_ptr(),
                        c"/sys/fs/bpf".as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    check(libc::umount2(stash.as_ptr(), libc::MNT_DETACH))?;
                }
                Ok(())
            });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it starts later) and
/// returns that set, for a thread to take them with `sigwait`: a binary that does this first
/// turns Ctrl-C into an orderly return, so the guards tear its lab down. (Children get a clean
/// mask: see [`Netns::spawn`].)
pub fn block_stop_signals() -> libc::sigset_t {
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    set
}

/// Runs `f` on a thread that has `setns()` into /run/netns/NAME; returns its result and
/// re-raises its panic. Sockets opened by `f` belong to that namespace for their whole life.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new(NETNS_DIR).join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn_scoped(s, move || {
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!("setns into {}: {}", path.display(), std::io::Error::last_os_error());
                }
                drop(file);
                f()
            })
            .expect("spawning a thread");
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Mounts bpffs at /sys/fs/bpf in the host's mount namespace if nothing is mounted there,
/// as systemd would: the daemon pins its maps below it and the harness removes them.
///
/// The daemon has its own (`fj_lb::datapath::ensure_bpffs`), but this one must run first and in
/// the harness's mount namespace: [`Netns::spawn`] binds the host's /sys/fs/bpf into each
/// child, and a bpffs the daemon mounted itself would stay inside the child's private mount
/// namespace, out of the harness's reach. (The tests crate does not depend on the daemon's.)
pub fn ensure_bpffs() {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c"/sys/fs/bpf".as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return;
    }
    let rc = unsafe { libc::mount(c"bpf".as_ptr(), c"/sys/fs/bpf".as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        panic!("mounting bpffs at /sys/fs/bpf: {}", std::io::Error::last_os_error());
    }
}

/// A child process, stopped on Drop: SIGTERM, then SIGKILL after a bounded wait.
#[derive(Debug)]
pub struct ChildGuard {
    label: String,
    child: Child,
    log: Option<PathBuf>,
    exited: Option<ExitStatus>,
}

impl ChildGuard {
    /// Takes ownership of an already spawned child.
    pub fn new(label: impl Into<String>, child: Child, log: Option<PathBuf>) -> ChildGuard {
        ChildGuard { label: label.into(), child, log, exited: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The exit status if the child has exited (reaps it), `None` while it runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Sends `sig` unless the child is known to have exited (and been reaped).
    pub fn signal(&self, sig: libc::c_int) {
        if self.exited.is_none() {
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(s) = self.try_status() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("fj-lb-tests: {} ignored SIGTERM for {grace:?}; killing it", self.label);
        let _ = self.child.kill();
        let s = self.child.wait().expect("waiting for a killed child");
        self.exited = Some(s);
        s
    }

    /// [`ChildGuard::stop`], and while the thread panics (a failing test), prints the log under
    /// `title`.
    pub fn stop_and_report(&mut self, grace: Duration, title: &str) -> ExitStatus {
        let status = self.stop(grace);
        if std::thread::panicking() {
            eprintln!("---- {title} log (exit: {status}) ----\n{}", self.log());
        }
        status
    }

    /// The log file's content (empty if there is none).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Panics (with the log) if the child has exited.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.try_status() {
            panic!("{} exited ({s}); its log:\n{}", self.label, self.log());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// A directory `$TMPDIR/fjt-<pid>-<seq>-<label>`, removed on Drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        TempDir::named(&unique_id(), label)
    }

    /// `$TMPDIR/<id>-<label>`, `id` from [`unique_id`].
    pub fn named(id: &str, label: &str) -> TempDir {
        assert!(owner_pid(id).is_some(), "{id}: not a harness id");
        let path = std::env::temp_dir().join(format!("{id}-{label}"));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("FJT_KEEP_TMP").is_some() {
            eprintln!("fj-lb-tests: keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
