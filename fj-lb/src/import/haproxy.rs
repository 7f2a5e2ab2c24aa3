//! haproxy.cfg into fj-lb.toml: each `frontend` (with its `default_backend`) or `listen` in
//! `mode tcp` becomes one `[[service]]` per address it binds, its servers the backends and the
//! `check` settings its health check. Sections in `mode http` are reported whole: layer 7 has
//! no layer-4 equivalent.
use std::{collections::HashSet, net::IpAddr, path::Path};

use super::{
    ImportError, Imported, Notes, Origin, Source,
    emit::{self, Doc, Table},
    words::{self, Word},
};

const SECTIONS: &[&str] = &[
    "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "mailers", "program", "http-errors", "ring", "cache",
    "fcgi-app", "log-forward", "crt-store", "traces",
];

#[derive(Debug, Clone)]
struct Line {
    words: Vec<Word>,
    at: Origin,
}

impl Line {
    fn w(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(|w| w.text.as_str())
    }

    fn text(&self) -> String {
        self.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ")
    }
}

#[derive(Debug, Clone)]
struct Section {
    kind: String,
    name: Option<String>,
    head: Line,
    lines: Vec<Line>,
}

/// What a proxy inherits from `defaults` and may set itself.
#[derive(Debug, Clone, Default)]
struct Settings {
    mode: Option<String>,
    balance: Option<Line>,
    /// `option httpchk` (method, uri) and where.
    httpchk: Option<(Option<String>, String, Origin)>,
    expect_status: Option<u16>,
    timeout_check: Option<u64>,
    timeout_connect: Option<u64>,
    default_server: Vec<(String, Option<String>, Origin)>,
}

/// A time as HAProxy writes it: a number with an optional unit, milliseconds by default.
fn time_ms(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "" | "ms" => n,
        "us" => n.div_ceil(1000),
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    })
}

/// `ADDR:PORT`, `[ADDR]:PORT`, `ipv4@ADDR:PORT`; the port may be absent (`None`).
fn endpoint(s: &str) -> Option<(String, Option<String>)> {
    let s = s.strip_prefix("ipv4@").or_else(|| s.strip_prefix("ipv6@")).unwrap_or(s);
    if let Some(rest) = s.strip_prefix('[') {
        let (a, p) = rest.split_once(']')?;
        return Some((a.to_string(), p.strip_prefix(':').map(str::to_string)));
    }
    // As HAProxy reads it: without brackets, what follows the last colon is the port.
    match s.rsplit_once(':') {
        None => Some((s.to_string(), None)),
        Some((a, "")) => Some((a.to_string(), None)),
        Some((a, p)) => Some((a.to_string(), Some(p.to_string()))),
    }
}

/// Server parameters that take a value.
const VALUED: &[&str] = &[
    "weight", "inter", "fastinter", "downinter", "rise", "fall", "port", "addr", "maxconn", "maxqueue", "minconn", "cookie", "slowstart", "on-error",
    "on-marked-down", "on-marked-up", "error-limit", "resolvers", "resolve-prefer", "init-addr", "sni", "crt", "ca-file", "verify", "alpn", "check-sni",
    "agent-port", "agent-inter", "agent-send", "observe", "pool-max-conn", "pool-purge-delay", "source", "proto", "id", "track", "redir", "namespace",
    "max-reuse", "ws", "usesrc", "check-proto", "check-alpn", "set-proxy-v2-tlv-fmt", "log-proto", "tcp-ut", "hash-key", "init-state", "guid",
];

/// Bind options that take a value.
const BIND_VALUED: &[&str] = &[
    "name", "crt", "crt-list", "ca-file", "crl-file", "alpn", "npn", "ciphers", "ciphersuites", "curves", "ecdhe", "interface", "namespace", "process",
    "thread", "maxconn", "backlog", "mss", "tcp-ut", "uid", "gid", "user", "group", "mode", "level", "id", "ssl-min-ver", "ssl-max-ver", "verify",
    "nice", "severity-output", "proto", "label", "accept-netscaler-cip", "idle-ping", "shards",
];

/// A server's parameters as (name, value) pairs.
fn params(words: &[Word], at: &Origin) -> Vec<(String, Option<String>, Origin)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let k = words[i].text.clone();
        if VALUED.contains(&k.as_str()) {
            out.push((k, words.get(i + 1).map(|w| w.text.clone()), at.clone()));
            i += 2;
        } else {
            out.push((k, None, at.clone()));
            i += 1;
        }
    }
    out
}

struct Server {
    name: String,
    addr: IpAddr,
    /// None: the port the client connected to.
    port: Option<u16>,
    params: Vec<(String, Option<String>, Origin)>,
    at: Origin,
    text: String,
}

#[derive(Default)]
struct Mapper {
    notes: Notes,
    doc: Doc,
    endpoints: HashSet<(IpAddr, u16)>,
    names: HashSet<String>,
}

pub fn import(path: &Path, src: &dyn Source) -> Result<Imported, ImportError> {
    let text = src.read(path).map_err(|source| ImportError::Read { path: path.display().to_string(), source })?;
    let file = path.display().to_string();
    let mut sections: Vec<Section> = Vec::new();
    let mut m = Mapper::default();
    for (i, raw) in text.lines().enumerate() {
        let at = Origin { file: file.clone(), line: i + 1 };
        let words = words::split(raw, &words::HAPROXY).map_err(|message| ImportError::Syntax { at: at.clone(), message })?;
        let Some(first) = words.first() else { continue };
        let line = Line { words: words.clone(), at: at.clone() };
        if SECTIONS.contains(&first.text.as_str()) {
            sections.push(Section { kind: first.text.clone(), name: line.w(1).map(str::to_string), head: line, lines: Vec::new() });
        } else if let Some(s) = sections.last_mut() {
            s.lines.push(line);
        } else {
            m.notes.add(&at, raw.trim(), "outside any section");
        }
    }
    m.doc.head = vec![
        format!("fj-lb.toml imported by `fj-lb import haproxy {}`.", path.display()),
        "What could not be carried over was listed on stderr (file:line: construct: why); review it, then".to_string(),
        "run `fj-lb check-config --config FILE` on the host that will run it.".to_string(),
    ];
    m.doc.top("interface", "eth0", Some("XDP attaches here: set the interface facing clients and backends".into()));
    // Which backends a TCP frontend uses, for the ones left unused.
    let mut used: HashSet<String> = HashSet::new();
    let mut defaults = Settings::default();
    for s in &sections {
        match s.kind.as_str() {
            "global" => {
                for l in &s.lines {
                    m.notes.add(&l.at, l.text(), "an HAProxy process setting: no fj-lb equivalent");
                }
            }
            "defaults" => {
                let mut d = Settings::default();
                m.settings(s, &mut d, true);
                defaults = d;
            }
            "frontend" | "listen" => {
                let mut st = defaults.clone();
                if m.is_http(s, &st) {
                    continue;
                }
                m.settings(s, &mut st, false);
                let binds = m.binds(s);
                let servers = if s.kind == "listen" {
                    m.servers(s, &st)
                } else {
                    match m.default_backend(s, &sections, &defaults) {
                        Some((b, bst)) => {
                            used.insert(b.name.clone().unwrap_or_default());
                            st = bst;
                            m.servers(b, &st)
                        }
                        None => continue,
                    }
                };
                m.services(s, &binds, &servers, &st);
            }
            "backend" => {}
            _ => m.notes.add(&s.head.at, s.head.text(), "no fj-lb equivalent"),
        }
    }
    for s in sections.iter().filter(|s| s.kind == "backend" && !used.contains(s.name.as_deref().unwrap_or_default())) {
        let mode = s.lines.iter().find(|l| l.w(0) == Some("mode")).and_then(|l| l.w(1)).map(str::to_string).or(defaults.mode.clone());
        if mode.as_deref() != Some("http") {
            m.notes.add(&s.head.at, s.head.text(), "the default_backend of no TCP frontend: left out");
        }
    }
    if m.names.len() > crate::model::config::DEFAULT_MAX_SERVICES as usize {
        m.doc.top("max_services", m.names.len() as i64, Some("one per frontend address".into()));
    }
    let toml = emit::checked(&m.doc)?;
    Ok(Imported { toml, notes: m.notes.sorted() })
}

impl Mapper {
    /// A section in `mode http` is reported once, whole.
    fn is_http(&mut self, s: &Section, inherited: &Settings) -> bool {
        let mode = s.lines.iter().rev().find(|l| l.w(0) == Some("mode")).and_then(|l| l.w(1)).map(str::to_string).or(inherited.mode.clone());
        let http = mode.as_deref() == Some("http");
        if http {
            self.notes.add(&s.head.at, s.head.text(), "mode http: HTTP proxying is not expressible at layer 4 (fj-lb balances connections, it does not read requests)");
        }
        http
    }

    /// The settings lines of a defaults or proxy section; the others are noted, but for what
    /// `binds`, `servers` and `default_backend` read.
    fn settings(&mut self, s: &Section, st: &mut Settings, defaults: bool) {
        for l in &s.lines {
            let (k, a) = (l.w(0).unwrap_or(""), l.w(1));
            match (k, a) {
                ("mode", Some(m)) => st.mode = Some(m.to_string()),
                ("balance", Some(_)) => st.balance = Some(l.clone()),
                ("option", Some("httpchk")) => {
                    let rest: Vec<&str> = l.words[2..].iter().map(|w| w.text.as_str()).collect();
                    let (method, uri) = match rest.as_slice() {
                        [] => (None, "/".to_string()),
                        [uri] => (None, uri.to_string()),
                        [method, uri, ..] => (Some(method.to_string()), uri.to_string()),
                    };
                    st.httpchk = Some((method, uri, l.at.clone()));
                }
                ("http-check", Some("expect")) => match (l.w(2), l.w(3).and_then(|s| s.parse::<u16>().ok())) {
                    (Some("status"), Some(code)) if l.words.len() == 4 => st.expect_status = Some(code),
                    _ => self.notes.add(&l.at, l.text(), "fj-lb's HTTP check expects one status code (http-check expect status N): 200 applies"),
                },
                ("http-check", Some("send")) => {
                    let find = |key: &str| l.words.iter().position(|w| w.text == key).and_then(|i| l.w(i + 1)).map(str::to_string);
                    let (method, uri) = (find("meth"), find("uri").unwrap_or_else(|| "/".into()));
                    let at = st.httpchk.as_ref().map_or(l.at.clone(), |(.., at)| at.clone());
                    st.httpchk = Some((method, uri, at));
                    if l.words.iter().any(|w| w.text == "hdr" || w.text == "body") {
                        self.notes.add(&l.at, l.text(), "fj-lb's HTTP check sends no headers or body of choice");
                    }
                }
                // A connect, which is what fj-lb's TCP check does; its rules are noted.
                ("option", Some("tcp-check")) => {}
                ("tcp-check", _) => self.notes.add(&l.at, l.text(), "fj-lb's TCP check connects and nothing more"),
                ("option", Some(other @ ("mysql-check" | "pgsql-check" | "redis-check" | "smtpchk" | "ldap-check" | "ssl-hello-chk" | "spop-check"))) => {
                    self.notes.add(&l.at, l.text(), format!("{other}: fj-lb's TCP check connects (without speaking the protocol)"))
                }
                ("timeout", Some("check")) => st.timeout_check = l.w(2).and_then(time_ms),
                ("timeout", Some("connect")) => st.timeout_connect = l.w(2).and_then(time_ms),
                ("default-server", _) => st.default_server.extend(params(&l.words[1..], &l.at)),
                ("bind" | "server" | "default_backend", _) if !defaults => {}
                ("timeout", _) | ("maxconn", _) | ("retries", _) | ("option", _) | ("log", _) | ("errorfile", _) => {
                    self.notes.add(&l.at, l.text(), "an HAProxy proxy setting: fj-lb does not proxy, so it has no equivalent")
                }
                _ => self.notes.add(&l.at, l.text(), "no fj-lb equivalent"),
            }
        }
    }

    /// The (address, port) pairs of a section's `bind` lines.
    fn binds(&mut self, s: &Section) -> Vec<(IpAddr, u16, Origin)> {
        let mut out = Vec::new();
        for l in s.lines.iter().filter(|l| l.w(0) == Some("bind")) {
            let Some(list) = l.w(1) else { continue };
            let rest = &l.words[2..];
            if rest.iter().any(|w| w.text == "ssl") {
                self.notes.add(&l.at, l.text(), "TLS is terminated by HAProxy here; fj-lb forwards the encrypted stream untouched, so this bind is left out");
                continue;
            }
            let mut i = 0;
            while i < rest.len() {
                let p = rest[i].text.as_str();
                let valued = BIND_VALUED.contains(&p);
                // A bind's name only labels it in HAProxy's statistics.
                if p != "name" {
                    let v = if valued { rest.get(i + 1).map_or(String::new(), |w| format!(" {}", w.text)) } else { String::new() };
                    self.notes.add(&l.at, format!("bind ... {p}{v}"), "a bind option fj-lb has no equivalent for");
                }
                i += if valued { 2 } else { 1 };
            }
            for e in list.split(',') {
                let Some((a, p)) = endpoint(e) else {
                    self.notes.add(&l.at, format!("bind {e}"), "not an address and port: left out");
                    continue;
                };
                let ip = a.parse::<IpAddr>().ok();
                let port = p.as_deref().and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
                match (ip, port) {
                    _ if a.is_empty() || a == "*" || ip.is_some_and(|ip| ip.is_unspecified()) => {
                        self.notes.add(&l.at, format!("bind {e}"), "every address of the host: fj-lb balances a virtual IP, so write the VIP in the bind line; left out")
                    }
                    (Some(ip), Some(port)) => out.push((ip, port, l.at.clone())),
                    _ => self.notes.add(&l.at, format!("bind {e}"), "not an address and a single port fj-lb can take (a name, a port range, a socket?): left out"),
                }
            }
        }
        if out.is_empty() {
            self.notes.add(&s.head.at, s.head.text(), "binds no address fj-lb can balance: the section (its servers too) is left out");
        }
        out
    }

    /// The backend a frontend sends to, with its settings; `None` (noted) when there is none
    /// in `mode tcp`.
    fn default_backend<'s>(&mut self, s: &Section, sections: &'s [Section], defaults: &Settings) -> Option<(&'s Section, Settings)> {
        for l in s.lines.iter().filter(|l| matches!(l.w(0), Some("use_backend"))) {
            self.notes.add(&l.at, l.text(), "choosing a backend by condition needs layer 7 (or SNI): fj-lb gives a service one pool; left out");
        }
        let Some(l) = s.lines.iter().rev().find(|l| l.w(0) == Some("default_backend")) else {
            self.notes.add(&s.head.at, s.head.text(), "has no default_backend: left out");
            return None;
        };
        let name = l.w(1).unwrap_or_default();
        let Some(b) = sections.iter().find(|b| b.kind == "backend" && b.name.as_deref() == Some(name)) else {
            self.notes.add(&l.at, l.text(), "no such backend: left out");
            return None;
        };
        let mut st = defaults.clone();
        if self.is_http(b, &st) {
            self.notes.add(&l.at, l.text(), "a TCP frontend with an HTTP backend: left out");
            return None;
        }
        self.settings(b, &mut st, false);
        Some((b, st))
    }

    fn servers(&mut self, s: &Section, st: &Settings) -> Vec<Server> {
        let mut out = Vec::new();
        for l in &s.lines {
            match l.w(0) {
                Some("server") => {}
                Some("server-template") => {
                    self.notes.add(&l.at, l.text(), "servers from DNS: fj-lb needs each backend's address; left out");
                    continue;
                }
                _ => continue,
            }
            let (Some(name), Some(addr)) = (l.w(1), l.w(2)) else { continue };
            let Some((a, p)) = endpoint(addr) else {
                self.notes.add(&l.at, l.text(), "not an address: left out");
                continue;
            };
            let Ok(ip) = a.parse::<IpAddr>() else {
                self.notes.add(&l.at, l.text(), "a host name: fj-lb needs the backend's address; left out");
                continue;
            };
            let port = match p.as_deref() {
                None | Some("") => None,
                Some(p) => match p.parse::<u16>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        self.notes.add(&l.at, l.text(), "a port fj-lb cannot take (an offset or a range): direct return keeps the client's port; left out");
                        continue;
                    }
                },
            };
            let mut ps = st.default_server.clone();
            ps.extend(params(&l.words[3..], &l.at));
            out.push(Server { name: name.to_string(), addr: ip, port, params: ps, at: l.at.clone(), text: l.text() });
        }
        out
    }

    /// One service per bound address, over the servers.
    fn services(&mut self, s: &Section, binds: &[(IpAddr, u16, Origin)], servers: &[Server], st: &Settings) {
        let what = s.head.text();
        if binds.is_empty() {
            return;
        }
        match &st.balance {
            Some(l) if l.w(1) == Some("source") => {}
            Some(l) => self.notes.add(&l.at, l.text(), "fj-lb spreads flows by Maglev consistent hashing of the connection (as balance source), with the servers' weights"),
            None => self.notes.add(&s.head.at, format!("{what} (balance roundrobin, HAProxy's default)"), "fj-lb spreads flows by Maglev consistent hashing, with the servers' weights"),
        }
        // Each server once: its options are noted once, however many addresses are bound.
        let (mut health, mut checked) = (None, Vec::new());
        let built: Vec<(&Server, Table)> = servers.iter().filter_map(|sv| self.server(sv, st, &mut health, &mut checked).map(|b| (sv, b))).collect();
        if health.is_some() && checked.iter().any(|c| !c) {
            self.notes.add(&s.head.at, &what, "some servers have no `check`: fj-lb checks every backend of a service");
        }
        let base = emit::name(s.name.as_deref().unwrap_or("haproxy"));
        for (n, (vip, port, at)) in binds.iter().enumerate() {
            if !self.endpoints.insert((*vip, *port)) {
                self.notes.add(at, format!("bind {vip}:{port}"), "already a service of another section: left out");
                continue;
            }
            let mut name = if n == 0 { base.clone() } else { format!("{base}-{}", n + 1) };
            while self.names.contains(&name) {
                name.push('_');
            }
            let mut backends = Vec::new();
            for (sv, b) in &built {
                if sv.addr.is_ipv4() != vip.is_ipv4() {
                    self.notes.add(&sv.at, &sv.text, "of another address family than the bind address: left out");
                } else if let Some(p) = sv.port.filter(|p| p != port) {
                    self.notes.add(&sv.at, &sv.text, format!("port {p}, not {port}: direct return cannot change the port; left out"));
                } else {
                    backends.push(b.clone());
                }
            }
            if backends.is_empty() {
                self.notes.add(at, format!("{what} bind {vip}:{port}"), "no server fj-lb can forward to: left out");
                continue;
            }
            if backends.iter().all(|b| b.value("weight") == Some("0")) {
                self.notes.add(at, format!("{what} bind {vip}:{port}"), "every server has weight 0: fj-lb refuses a service that can take no flow; left out");
                continue;
            }
            self.names.insert(name.clone());
            let mut t = Table::new("[[service]]", at, &format!("{what}, bind {vip}:{port}"));
            t.put("name", name.as_str()).put("vip", vip.to_string()).put("port", *port as i64).put("protocol", "tcp").put("forward", "dsr");
            self.doc.tables.push(t);
            if let Some(h) = &health {
                self.doc.tables.push(h.clone());
            }
            self.doc.tables.extend(backends);
        }
    }

    /// A server into a `[[service.backend]]`; the first checked one also gives the service's
    /// `[service.health]`.
    fn server(&mut self, sv: &Server, st: &Settings, health: &mut Option<Table>, checked: &mut Vec<bool>) -> Option<Table> {
        let mut b = Table::new("[[service.backend]]", &sv.at, &format!("server {}", sv.name));
        b.put("address", sv.addr.to_string());
        let mut weight = 1i64;
        let mut check = false;
        let (mut inter, mut rise, mut fall, mut check_port) = (2000u64, 2u32, 3u32, None::<u16>);
        let mut disabled = false;
        for (k, v, at) in &sv.params {
            let num = v.as_deref().and_then(|v| v.parse::<u64>().ok());
            match k.as_str() {
                "check" => check = true,
                "no-check" => check = false,
                "weight" => match num.filter(|w| *w <= 256) {
                    Some(w) => weight = w as i64,
                    None => self.notes.add(at, format!("weight {}", v.as_deref().unwrap_or("")), "not a weight: 1 applies"),
                },
                "inter" => match v.as_deref().and_then(time_ms).filter(|t| (10..=3_600_000).contains(t)) {
                    Some(t) => inter = t,
                    None => self.notes.add(at, format!("inter {}", v.as_deref().unwrap_or("")), "not an interval fj-lb takes (10 ms to 1 h): 2 s applies"),
                },
                "rise" | "fall" => match num.filter(|n| (1..=100).contains(n)) {
                    Some(n) if k == "rise" => rise = n as u32,
                    Some(n) => fall = n as u32,
                    None => self.notes.add(at, format!("{k} {}", v.as_deref().unwrap_or("")), "not a count fj-lb takes (1 to 100)"),
                },
                "port" => check_port = num.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0),
                "backup" => {
                    self.notes.add(at, &sv.text, "a backup server: fj-lb has no standby backends (when every backend is down it sends to all or drops); left out");
                    return None;
                }
                "disabled" => disabled = true,
                "enabled" => disabled = false,
                "send-proxy" | "send-proxy-v2" | "send-proxy-v2-ssl" | "send-proxy-v2-ssl-cn" => {
                    self.notes.add(at, format!("{} {k}", sv.name), "the server expects the PROXY protocol; with direct return it sees the client's own packets and address, so drop that from the server")
                }
                "ssl" => self.notes.add(at, format!("{} ssl", sv.name), "HAProxy speaks TLS to this server; fj-lb forwards the client's stream as it is"),
                _ => self.notes.add(at, format!("{} {k}{}", sv.name, v.as_ref().map_or(String::new(), |v| format!(" {v}"))), "a server option fj-lb has no equivalent for"),
            }
        }
        if disabled {
            b.put_c("weight", 0, "disabled: drained, no new flows");
        } else {
            b.put("weight", weight);
        }
        checked.push(check);
        if check && health.is_none() {
            let at = st.httpchk.as_ref().map_or(sv.at.clone(), |(.., at)| at.clone());
            let mut h = Table::new("[service.health]", &at, if st.httpchk.is_some() { "option httpchk" } else { "check (a TCP connect)" });
            match &st.httpchk {
                Some((method, uri, at)) => {
                    h.put("check", "http");
                    if uri.starts_with('/') && !uri.contains(char::is_whitespace) {
                        h.put("path", uri.as_str());
                    } else {
                        self.notes.add(at, format!("option httpchk {uri}"), "not a path fj-lb takes: / applies");
                    }
                    if method.as_deref().is_some_and(|m| m != "GET") || method.is_none() {
                        let m = method.as_deref().unwrap_or("OPTIONS (HAProxy's default)");
                        self.notes.add(at, format!("option httpchk, method {m}"), "fj-lb's HTTP check sends GET");
                    }
                    match st.expect_status {
                        Some(s) if (100..=599).contains(&s) => {
                            h.put("expect_status", s as i64);
                        }
                        _ => self.notes.add(at, "option httpchk", "HAProxy accepts any 2xx or 3xx answer; fj-lb expects 200 (set expect_status)"),
                    }
                }
                None => {
                    h.put("check", "tcp");
                }
            }
            let timeout = st.timeout_check.or(st.timeout_connect).unwrap_or(inter).clamp(1, inter);
            h.put("interval_ms", inter as i64).put("timeout_ms", timeout as i64).put("rise", rise as i64).put("fall", fall as i64);
            if let Some(p) = check_port {
                h.put("port", p as i64);
            }
            *health = Some(h);
        }
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        import::testing::{Any, Mem},
        model::config,
    };

    fn run(text: &'static str) -> (config::Config, Vec<String>) {
        let i = import(Path::new("/h.cfg"), &Mem([("/h.cfg", text)].into_iter().collect())).unwrap_or_else(|e| panic!("{e}"));
        (config::parse(&i.toml, "x", &Any).unwrap(), i.notes.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn tcp_frontends_and_listens_become_services_and_http_is_reported_once() {
        let (c, notes) = run("defaults\n mode tcp\n default-server inter 3s\n\
             frontend db\n bind 10.0.0.100:3306,10.0.0.101:3306\n default_backend db\n\
             backend db\n balance source\n server a 10.0.0.11:3306 check fall 5\n server b 10.0.0.12 check disabled\n server c 10.0.0.13:3307 check\n\
             listen web\n mode http\n bind 10.0.0.100:80\n server a 10.0.0.11:80\n");
        let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["db", "db-2"], "one service per bound address");
        let db = &c.services[0];
        assert_eq!((db.health.interval_ms, db.health.fall), (3000, 5), "default-server, then the server's own");
        assert_eq!(db.backends.iter().map(|b| (b.address.to_string(), b.weight)).collect::<Vec<_>>(), [("10.0.0.11".into(), 1), ("10.0.0.12".into(), 0)]);
        assert_eq!(notes.iter().filter(|n| n.contains("/h.cfg:12: listen web: mode http")).count(), 1, "{notes:?}");
        assert_eq!(notes.iter().filter(|n| n.contains("port 3307, not 3306")).count(), 2, "once per service: {notes:?}");
        assert!(!notes.iter().any(|n| n.contains("server a 10.0.0.11:80")), "nothing more of an HTTP section: {notes:?}");
    }

    #[test]
    fn what_fj_lb_cannot_balance_is_left_out_with_a_reason() {
        let (c, notes) = run("frontend all\n bind :443 ssl crt x.pem\n bind *:25\n default_backend b\nbackend b\n server a mail.example:25 check\n server c 10.0.0.3:25 backup\n\
             frontend smtp\n bind 10.0.0.100:25 name smtp v4v6\n default_backend b\n");
        assert!(c.services.is_empty(), "no server left: {:?}", c.services);
        for want in ["a host name", "a backup server", "bind ... v4v6", "frontend smtp bind 10.0.0.100:25: no server fj-lb can forward to"] {
            assert!(notes.iter().any(|n| n.contains(want)), "{want:?} not in {notes:#?}");
        }
        assert!(!notes.iter().any(|n| n.contains("bind ... name")), "{notes:#?}");
        for want in ["TLS is terminated by HAProxy", "bind *:25: every address of the host", "frontend all: binds no address fj-lb can balance"] {
            assert!(notes.iter().any(|n| n.contains(want)), "{want:?} not in {notes:#?}");
        }
    }

    #[test]
    fn times_and_endpoints() {
        assert_eq!((time_ms("2s"), time_ms("500"), time_ms("1m"), time_ms("10us"), time_ms("x")), (Some(2000), Some(500), Some(60_000), Some(1), None));
        assert_eq!(endpoint("10.0.0.1:80"), Some(("10.0.0.1".into(), Some("80".into()))));
        assert_eq!(endpoint("[2001:db8::1]:443"), Some(("2001:db8::1".into(), Some("443".into()))));
        assert_eq!(endpoint("ipv6@::1:80"), Some(("::1".into(), Some("80".into()))));
        assert_eq!(endpoint("10.0.0.1"), Some(("10.0.0.1".into(), None)));
        assert_eq!(endpoint("2001:db8::1:"), Some(("2001:db8::1".into(), None)), "a trailing colon: no port");
        assert_eq!(endpoint(":8000"), Some(("".into(), Some("8000".into()))));
    }
}
