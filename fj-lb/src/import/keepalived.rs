//! keepalived.conf into fj-lb.toml: `vrrp_instance` into `[[vrrp]]`, `vrrp_sync_group` into
//! `[[vrrp_sync_group]]`, `virtual_server` / `real_server` into `[[service]]` with its health
//! check. Read as keepalived reads it: blocks in braces, `#` and `!` comments, `include` with
//! globs relative to the including file, `@id` / `@^id` lines for a config id (`-i`).
use std::{
    collections::HashSet,
    net::IpAddr,
    path::{Path, PathBuf},
};

use super::{
    ImportError, Imported, Notes, Origin, Source,
    emit::{self, Doc, Table},
    glob_match, has_glob,
    words::{self, Word},
};
use crate::model::command;

/// Includes deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// One statement: `key args...`, with its block if it opens one.
#[derive(Debug, Clone)]
struct Node {
    key: String,
    args: Vec<Word>,
    block: Option<Vec<Node>>,
    at: Origin,
}

impl Node {
    fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(|w| w.text.as_str())
    }

    /// The statement as written (without its block), for notes.
    fn text(&self) -> String {
        std::iter::once(self.key.as_str()).chain(self.args.iter().map(|w| w.text.as_str())).collect::<Vec<_>>().join(" ")
    }

    fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// Every word of the block's statements, keys included: a list such as `group { A B }`.
    fn items(&self) -> Vec<(&str, &Origin)> {
        self.children().iter().flat_map(|c| std::iter::once((c.key.as_str(), &c.at)).chain(c.args.iter().map(move |a| (a.text.as_str(), &c.at)))).collect()
    }
}

struct Reader<'a> {
    src: &'a dyn Source,
    config_id: Option<&'a str>,
    notes: &'a mut Notes,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, depth: usize) -> Result<Vec<Node>, ImportError> {
        let text = self.src.read(path).map_err(|source| ImportError::Read { path: path.display().to_string(), source })?;
        let file = path.display().to_string();
        // The statements of each open level, and the statements whose blocks are open.
        let mut levels: Vec<Vec<Node>> = vec![Vec::new()];
        let mut open: Vec<Node> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let at = Origin { file: file.clone(), line: i + 1 };
            let mut ws = words::split(line, &words::KEEPALIVED).map_err(|message| ImportError::Syntax { at: at.clone(), message })?;
            if let Some(first) = ws.first().map(|w| w.text.clone())
                && let Some(cond) = first.strip_prefix('@')
            {
                let (negated, id) = match cond.strip_prefix('^') {
                    Some(id) => (true, id),
                    None => (false, cond),
                };
                let chosen = self.config_id == Some(id);
                if chosen == negated {
                    if self.config_id.is_none() && !negated {
                        self.notes.add(&at, line.trim(), format!("only for keepalived's config id {id:?} (-i {id}): pass --config-id {id} to import it"));
                    }
                    continue;
                }
                ws.remove(0);
            }
            if ws.first().is_some_and(|w| w.text.starts_with('$')) {
                self.notes.add(&at, line.trim(), "keepalived variables are not expanded: write the value in place");
                continue;
            }
            let mut k = 0;
            while k < ws.len() {
                match ws[k].text.as_str() {
                    "}" if !ws[k].quoted => {
                        let (Some(children), Some(mut node)) = (levels.pop(), open.pop()) else {
                            return Err(ImportError::Syntax { at, message: "a '}' closes no block".into() });
                        };
                        if levels.is_empty() {
                            return Err(ImportError::Syntax { at, message: "a '}' closes no block".into() });
                        }
                        node.block = Some(children);
                        levels.last_mut().expect("a level").push(node);
                        k += 1;
                    }
                    "{" if !ws[k].quoted => {
                        // A brace on a line of its own opens the block of the statement before.
                        let Some(node) = levels.last_mut().and_then(|l| l.pop()) else {
                            return Err(ImportError::Syntax { at, message: "a '{' follows no statement".into() });
                        };
                        open.push(node);
                        levels.push(Vec::new());
                        k += 1;
                    }
                    _ => {
                        let end = (k..ws.len()).find(|&j| !ws[j].quoted && (ws[j].text == "{" || ws[j].text == "}")).unwrap_or(ws.len());
                        let node = Node { key: ws[k].text.clone(), args: ws[k + 1..end].to_vec(), block: None, at: at.clone() };
                        if end < ws.len() && ws[end].text == "{" {
                            open.push(node);
                            levels.push(Vec::new());
                            k = end + 1;
                        } else {
                            if node.key == "include" {
                                let included = self.include(&node, path, depth)?;
                                levels.last_mut().expect("a level").extend(included);
                            } else {
                                levels.last_mut().expect("a level").push(node);
                            }
                            k = end;
                        }
                    }
                }
            }
        }
        if let Some(node) = open.last() {
            return Err(ImportError::Syntax { at: node.at.clone(), message: format!("the block of `{}` is not closed", node.text()) });
        }
        Ok(levels.pop().unwrap_or_default())
    }

    /// The statements of the files an `include` names, in glob order.
    fn include(&mut self, node: &Node, from: &Path, depth: usize) -> Result<Vec<Node>, ImportError> {
        let Some(pattern) = node.arg(0) else {
            self.notes.add(&node.at, node.text(), "names no file");
            return Ok(Vec::new());
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(ImportError::Syntax { at: node.at.clone(), message: format!("includes nested {MAX_INCLUDE_DEPTH} deep: a loop?") });
        }
        // As keepalived: relative to the directory of the file that includes.
        let base = from.parent().unwrap_or(Path::new("."));
        let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
        let (dir, leaf) = (full.parent().unwrap_or(Path::new("/")).to_path_buf(), full.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
        let files: Vec<PathBuf> = if has_glob(&dir.to_string_lossy()) {
            self.notes.add(&node.at, node.text(), "a pattern in a directory name is not followed: name the directory");
            Vec::new()
        } else if has_glob(&leaf) {
            let mut names: Vec<String> = self.src.list(&dir).unwrap_or_default().into_iter().filter(|n| glob_match(&leaf, n)).collect();
            names.sort();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            vec![full]
        };
        if files.is_empty() {
            self.notes.add(&node.at, node.text(), "matches no file");
        }
        let mut out = Vec::new();
        for f in files {
            match self.file(&f, depth + 1) {
                Ok(nodes) => out.extend(nodes),
                // As keepalived, which runs without a file it cannot read.
                Err(ImportError::Read { path, source }) => self.notes.add(&node.at, node.text(), format!("{path} cannot be read ({source}): left out")),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Defaults that `global_defs` sets for every instance.
#[derive(Default)]
struct Globals {
    version: Option<u8>,
    strict: bool,
    garp_repeat: Option<u32>,
}

#[derive(Default)]
struct Mapper {
    notes: Notes,
    doc: Doc,
    globals: Globals,
    /// Instances carried over: name, interface, IPv6, VRID, priority.
    instances: Vec<(String, String, bool, u8, u8)>,
    vips: Vec<IpAddr>,
    vmac_used: bool,
    endpoints: HashSet<(IpAddr, u16, &'static str)>,
    service_names: HashSet<String>,
    scripts: Vec<String>,
}

/// Reads `path` (and what it includes) and maps it. `config_id` picks the `@id` lines, as
/// keepalived's `-i`.
pub fn import(path: &Path, src: &dyn Source, config_id: Option<&str>) -> Result<Imported, ImportError> {
    let mut m = Mapper::default();
    let nodes = Reader { src, config_id, notes: &mut m.notes }.file(path, 0)?;
    m.doc.head = vec![
        format!("fj-lb.toml imported by `fj-lb import keepalived {}`.", path.display()),
        "What could not be carried over was listed on stderr (file:line: construct: why); review it, then".to_string(),
        "run `fj-lb check-config --config FILE` on the host that will run it.".to_string(),
    ];
    for n in nodes.iter().filter(|n| n.key == "global_defs") {
        m.global_defs(n);
    }
    for n in &nodes {
        match n.key.as_str() {
            "global_defs" => {}
            "vrrp_instance" => m.instance(n),
            "vrrp_script" => {
                m.scripts.extend(n.arg(0).map(str::to_string));
                m.notes.add(&n.at, n.text(), "fj-lb runs no tracking scripts: it tracks its own services' health checks (track_services)");
            }
            "vrrp_sync_group" | "virtual_server" => {}
            _ => m.notes.add(&n.at, n.text(), "no fj-lb equivalent"),
        }
    }
    for n in nodes.iter().filter(|n| n.key == "vrrp_sync_group") {
        m.sync_group(n);
    }
    for n in nodes.iter().filter(|n| n.key == "virtual_server") {
        m.virtual_server(n);
    }
    let interface = m.instances.first().map(|(_, i, ..)| i.clone());
    let comment = match &interface {
        Some(_) => "XDP attaches here (the first VRRP instance's interface): the one facing clients and backends",
        None => "XDP attaches here: set the interface facing clients and backends",
    };
    m.doc.top("interface", interface.unwrap_or_else(|| "eth0".into()), Some(comment.into()));
    if m.service_names.len() > crate::model::config::DEFAULT_MAX_SERVICES as usize {
        m.doc.top("max_services", m.service_names.len() as i64, Some("one per virtual server".into()));
    }
    let toml = emit::checked(&m.doc)?;
    Ok(Imported { toml, notes: m.notes.sorted() })
}

/// keepalived's time values are seconds, fractions allowed.
fn seconds_ms(s: &str) -> Option<u64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| (v * 1000.0).round() as u64)
}

/// An address with an optional prefix length, as `virtual_ipaddress` has it.
fn address(s: &str) -> Option<(IpAddr, Option<u8>)> {
    match s.split_once('/') {
        Some((a, p)) => Some((a.parse().ok()?, Some(p.parse().ok()?))),
        None => Some((s.parse().ok()?, None)),
    }
}

impl Mapper {
    fn global_defs(&mut self, n: &Node) {
        for c in n.children() {
            match c.key.as_str() {
                "vrrp_version" => self.globals.version = c.arg(0).and_then(|v| v.parse().ok()),
                "vrrp_strict" => self.globals.strict = true,
                "vrrp_garp_master_repeat" => self.globals.garp_repeat = c.arg(0).and_then(|v| v.parse().ok()),
                "router_id" => {}
                "notification_email" | "notification_email_from" | "smtp_server" | "smtp_connect_timeout" | "smtp_helo_name" | "smtp_alert" => {
                    self.notes.add(&c.at, c.text(), "fj-lb sends no email: watch `fj-lb status` or the fj_lb_vrrp_state metric, or use notify hooks")
                }
                "enable_script_security" | "script_user" => {
                    self.notes.add(&c.at, c.text(), "notify scripts run as the fj-lb daemon's user, directly, with no shell")
                }
                _ => self.notes.add(&c.at, c.text(), "global setting with no fj-lb equivalent"),
            }
        }
    }

    fn instance(&mut self, n: &Node) {
        let raw_name = n.arg(0).unwrap_or("unnamed");
        let name = emit::name(raw_name);
        let what = format!("vrrp_instance {raw_name}");
        if name != raw_name {
            self.notes.add(&n.at, &what, format!("named {name:?}: fj-lb names are letters, digits, '-', '_' and '.'"));
        }
        if self.instances.iter().any(|(x, ..)| *x == name) {
            return self.notes.add(&n.at, &what, "a second instance of that name: left out");
        }
        let mut t = Table::new("[[vrrp]]", &n.at, &what);
        t.put("name", name.as_str());
        let find = |key: &str| n.children().iter().find(|c| c.key == key);
        let Some(interface) = find("interface").and_then(|c| c.arg(0)).map(str::to_string) else {
            return self.notes.add(&n.at, &what, "has no interface: left out (fj-lb runs VRRP on a named interface)");
        };
        let Some(vrid) = find("virtual_router_id").and_then(|c| c.arg(0)).and_then(|v| v.parse::<u8>().ok()).filter(|v| *v >= 1) else {
            return self.notes.add(&n.at, &what, "has no valid virtual_router_id (1 to 255): left out");
        };
        let mut want_master = false;
        let mut priority: Option<u8> = None;
        let mut version = self.globals.version;
        let mut accept: Option<bool> = None;
        let mut strict = self.globals.strict;
        let mut addresses: Vec<(IpAddr, Option<u8>, Origin)> = Vec::new();
        let mut peers: Vec<String> = Vec::new();
        let mut track_ifaces: Vec<(String, i32, Origin)> = Vec::new();
        let mut extra = Table::new("[[vrrp]]", &n.at, &what);
        for c in n.children() {
            let arg = c.arg(0);
            match c.key.as_str() {
                "interface" | "virtual_router_id" => {}
                "state" => match arg {
                    Some("MASTER") => {
                        want_master = true;
                        self.notes.add(&c.at, c.text(), "fj-lb starts every instance as backup and lets the election decide within the master down interval");
                    }
                    Some("BACKUP") => {}
                    _ => self.notes.add(&c.at, c.text(), "not MASTER or BACKUP"),
                },
                "priority" => match arg.and_then(|p| p.parse::<u8>().ok()).filter(|p| *p >= 1) {
                    Some(p) => priority = Some(p),
                    None => self.notes.add(&c.at, c.text(), "not a priority (1 to 255): the default applies"),
                },
                "advert_int" => match arg.and_then(seconds_ms).map(|ms| (ms + 5) / 10 * 10).filter(|ms| (10..=40950).contains(ms)) {
                    Some(ms) => {
                        extra.put("advert_interval_ms", ms as i64);
                    }
                    None => self.notes.add(&c.at, c.text(), "not an interval fj-lb takes (0.01 to 40.95 s): the default (1 s) applies"),
                },
                "nopreempt" => {
                    extra.put_c("preempt", false, "nopreempt");
                }
                "preempt" => {}
                "preempt_delay" => match arg.and_then(seconds_ms).filter(|ms| *ms <= 1_000_000) {
                    Some(ms) => {
                        extra.put("preempt_delay_ms", ms as i64);
                    }
                    None => self.notes.add(&c.at, c.text(), "not a delay fj-lb takes (up to 1000 s)"),
                },
                "version" | "vrrp_version" => version = arg.and_then(|v| v.parse().ok()),
                "native_ipv6" => {}
                "accept" => accept = Some(true),
                "no_accept" => accept = Some(false),
                "strict_mode" => strict = !matches!(arg, Some("off" | "false" | "no")),
                "virtual_ipaddress" => {
                    for a in c.children() {
                        match address(&a.key) {
                            None => self.notes.add(&a.at, a.text(), "not an address: left out"),
                            Some((ip, prefix)) => {
                                let dev = a.args.iter().position(|w| w.text == "dev").and_then(|i| a.arg(i + 1));
                                if dev.is_some_and(|d| d != interface) {
                                    self.notes.add(&a.at, a.text(), "on another interface than the instance's: fj-lb adds its addresses to the instance's interface; left out");
                                    continue;
                                }
                                let rest: Vec<&str> = a.args.iter().map(|w| w.text.as_str()).collect();
                                if rest.len() > if dev.is_some() { 2 } else { 0 } {
                                    self.notes.add(&a.at, a.text(), "fj-lb adds the address with its prefix length only (no brd, scope, label, ...)");
                                }
                                addresses.push((ip, prefix, a.at.clone()));
                            }
                        }
                    }
                }
                "unicast_peer" => {
                    for p in c.children() {
                        match p.key.parse::<IpAddr>() {
                            Ok(ip) => peers.push(ip.to_string()),
                            Err(_) => self.notes.add(&p.at, p.text(), "not an address: left out"),
                        }
                        if !p.args.is_empty() {
                            self.notes.add(&p.at, p.text(), "fj-lb does not limit a peer's TTL (min_ttl, max_ttl)");
                        }
                    }
                }
                "unicast_src_ip" | "mcast_src_ip" => self.notes.add(&c.at, c.text(), format!("fj-lb sends from {interface}'s first address (IPv6: its link-local one): make sure that is this one")),
                "track_interface" => {
                    for ti in c.children() {
                        let weight = match ti.arg(0) {
                            Some("weight") => ti.arg(1).and_then(|w| w.parse::<i32>().ok()).unwrap_or(0),
                            _ => 0,
                        };
                        track_ifaces.push((ti.key.clone(), weight, ti.at.clone()));
                    }
                }
                "track_script" => {
                    for ts in c.children() {
                        self.notes.add(&ts.at, ts.text(), "fj-lb runs no tracking scripts: track the service's health checks with track_services (weight 0: FAULT)");
                    }
                }
                "use_vmac" => {
                    if self.vmac_used {
                        self.notes.add(&c.at, c.text(), "a second instance with a virtual MAC: fj-lb's XDP program knows one; left without");
                    } else {
                        self.vmac_used = true;
                        extra.put_c("use_virtual_mac", true, "use_vmac");
                        if arg.is_some() {
                            self.notes.add(&c.at, c.text(), "fj-lb names its macvlan fjvrrp<VRID>");
                        }
                    }
                }
                "garp_master_repeat" => match arg.and_then(|v| v.parse::<u32>().ok()).filter(|v| (1..=100).contains(v)) {
                    Some(r) => {
                        extra.put("garp_repeat", r as i64);
                    }
                    None => self.notes.add(&c.at, c.text(), "not a count fj-lb takes (1 to 100)"),
                },
                "garp_master_delay" if arg == Some("5") => {}
                "garp_master_delay" | "garp_master_refresh" | "garp_master_refresh_repeat" | "garp_lower_prio_delay" | "garp_lower_prio_repeat" => {
                    self.notes.add(&c.at, c.text(), "fj-lb repeats its gratuitous ARPs once, 5 s after taking over (garp_repeat, garp_interval_ms)")
                }
                "authentication" => self.notes.add(&c.at, c.text(), "VRRPv3 has no authentication (RFC 5798 removed it); neither has fj-lb"),
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => self.notify(c, &mut extra),
                "smtp_alert" => self.notes.add(&c.at, c.text(), "fj-lb sends no email"),
                _ => self.notes.add(&c.at, c.text(), "no fj-lb equivalent"),
            }
        }
        let v6 = addresses.first().is_some_and(|(ip, ..)| ip.is_ipv6());
        let version = if v6 { 3 } else { version.unwrap_or(2) };
        if version != 3 {
            self.notes.add(&n.at, &what, "VRRPv2 (keepalived's default): fj-lb speaks VRRPv3 only; set vrrp_version 3 on keepalived peers that run beside it");
        }
        let mut vips: Vec<String> = Vec::new();
        for (ip, prefix, at) in &addresses {
            if ip.is_ipv6() != v6 {
                self.notes.add(at, ip.to_string(), "of the other address family than the instance's first address: fj-lb instances carry one family; left out");
            } else if vips.iter().any(|v| v.split('/').next() == Some(&ip.to_string())) {
                self.notes.add(at, ip.to_string(), "listed twice");
            } else if self.vips.contains(ip) {
                self.notes.add(at, ip.to_string(), "already an address of another instance: left out");
            } else {
                self.vips.push(*ip);
                vips.push(match prefix {
                    Some(p) => format!("{ip}/{p}"),
                    None => ip.to_string(),
                });
            }
        }
        if vips.is_empty() {
            return self.notes.add(&n.at, &what, "no virtual address fj-lb can carry: left out");
        }
        if self.instances.iter().any(|(_, i, f, v, _)| *i == interface && *f == v6 && *v == vrid) {
            return self.notes.add(&n.at, &what, format!("vrid {vrid} is already used on {interface}: left out"));
        }
        // As keepalived: state MASTER with no priority is the address owner.
        let mut prio = priority.unwrap_or(if want_master { 255 } else { 100 });
        t.put("interface", interface.as_str()).put("vrid", vrid as i64);
        let peers: Vec<String> = peers.into_iter().filter(|p| p.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6() == v6)).collect();
        let tracking = self.track_interfaces(&track_ifaces, &interface, &mut prio);
        match (priority, want_master, &tracking) {
            (None, true, _) => t.put_c("priority", prio as i64, "state MASTER without a priority: the address owner, as keepalived"),
            (Some(p), _, _) if p != prio => t.put_c("priority", prio as i64, format!("priority {p} + a tracked interface's weight, as keepalived has it while all are up")),
            _ => t.put("priority", prio as i64),
        };
        t.append(extra);
        t.put("virtual_addresses", emit::strings(&vips));
        if !peers.is_empty() {
            t.put("unicast_peers", emit::strings(&peers));
        }
        match accept {
            Some(a) => t.put("accept_mode", a),
            None if strict => t.put_c("accept_mode", false, "vrrp_strict"),
            None => t.put_c("accept_mode", true, "keepalived's default (accept)"),
        };
        if let Some((names, d)) = tracking {
            t.put("track_interfaces", emit::strings(&names));
            t.put_c("track_priority_delta", d as i64, if d == 0 { "weight 0: FAULT when a tracked interface is down" } else { "track_interface weight" });
        }
        if !t.has("garp_repeat")
            && let Some(r) = self.globals.garp_repeat.filter(|r| (1..=100).contains(r))
        {
            t.put_c("garp_repeat", r as i64, "vrrp_garp_master_repeat");
        }
        self.instances.push((name, interface, v6, vrid, prio));
        self.doc.tables.push(t);
    }

    /// `track_interface` into `track_interfaces` and one delta. keepalived weighs each
    /// interface; fj-lb has one delta for all it tracks: weight 0 (FAULT) if any interface has
    /// it, else the first weight. A positive weight raises the priority (keepalived adds it
    /// while the interface is up, fj-lb subtracts it while it is down: the same two priorities).
    fn track_interfaces(&mut self, tracked: &[(String, i32, Origin)], own: &str, prio: &mut u8) -> Option<(Vec<String>, u8)> {
        let mut names = Vec::new();
        let mut weights: Vec<(i32, Origin, String)> = Vec::new();
        for (name, w, at) in tracked {
            if name == own && *w == 0 {
                // The instance's own interface going down is FAULT already.
                continue;
            }
            if !(-254..=254).contains(w) {
                self.notes.add(at, format!("{name} weight {w}"), "a weight fj-lb cannot take (-254 to 254): left out");
                continue;
            }
            names.push(name.clone());
            weights.push((*w, at.clone(), name.clone()));
        }
        let chosen = weights.iter().find(|(w, ..)| *w == 0).or(weights.first())?.clone();
        let (weight, at, name) = chosen;
        for (w, wat, n) in &weights {
            if *w != weight {
                let applies = if weight == 0 { format!("FAULT (weight 0 of {name})") } else { format!("{} (the weight of {name})", weight.unsigned_abs()) };
                self.notes.add(wat, format!("{n} weight {w}"), format!("fj-lb has one delta for everything an instance tracks: {applies} applies"));
            }
        }
        if weight != 0 && names.len() > 1 {
            self.notes.add(&at, "track_interface", "keepalived adds the weights of every failed interface; fj-lb lowers the priority once, however many fail");
        }
        if weight > 0 {
            let raised = (*prio as i32 + weight).min(254) as u8;
            if raised as i32 != *prio as i32 + weight {
                self.notes.add(&at, format!("{name} weight {weight}"), "the raised priority is capped at 254");
            }
            *prio = raised;
        }
        Some((names, weight.unsigned_abs() as u8))
    }

    /// `notify_*`: a quoted command line, or a script path followed by a user and group.
    fn notify(&mut self, c: &Node, t: &mut Table) {
        let Some(first) = c.args.first() else {
            return self.notes.add(&c.at, c.text(), "names no script");
        };
        // Quoted, the whole command line; unquoted, the script alone. Either way what follows
        // is keepalived's user and group.
        let line = first.text.clone();
        if c.args.len() > 1 {
            self.notes.add(&c.at, c.text(), "scripts run as the fj-lb daemon's user: the user and group are not carried over");
        }
        match command::split(&line) {
            Ok(argv) if argv[0].starts_with('/') => {
                t.put(&c.key, line.as_str());
            }
            Ok(_) => self.notes.add(&c.at, c.text(), "fj-lb runs scripts by absolute path (no shell, no PATH): left out"),
            Err(e) => self.notes.add(&c.at, c.text(), format!("{e}: left out")),
        }
    }

    fn sync_group(&mut self, n: &Node) {
        let raw = n.arg(0).unwrap_or("unnamed");
        let what = format!("vrrp_sync_group {raw}");
        let mut members: Vec<String> = Vec::new();
        let mut t = Table::new("[[vrrp_sync_group]]", &n.at, &what);
        t.put("name", emit::name(raw));
        let mut hooks = Table::new("[[vrrp_sync_group]]", &n.at, &what);
        for c in n.children() {
            match c.key.as_str() {
                "group" => {
                    for (m, at) in c.items() {
                        let name = emit::name(m);
                        match self.instances.iter().find(|(x, ..)| *x == name) {
                            None => self.notes.add(at, m, "an instance not carried over: not in the group"),
                            Some((.., 255)) => self.notes.add(at, m, "the address owner (priority 255) is master whatever its group does: not in the group"),
                            Some(_) if members.contains(&name) => self.notes.add(at, m, "listed twice"),
                            Some(_) => members.push(name),
                        }
                    }
                }
                "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => self.notify(c, &mut hooks),
                "smtp_alert" => self.notes.add(&c.at, c.text(), "fj-lb sends no email"),
                _ => self.notes.add(&c.at, c.text(), "no fj-lb equivalent"),
            }
        }
        if members.len() < 2 {
            return self.notes.add(&n.at, &what, "fewer than two instances carried over: left out");
        }
        if self.doc.tables.iter().any(|t| t.header == "[[vrrp_sync_group]]" && t.value("name") == Some(toml::Value::from(emit::name(raw)).to_string().as_str())) {
            return self.notes.add(&n.at, &what, "a second group of that name: left out");
        }
        t.put("instances", emit::strings(&members));
        t.append(hooks);
        // Groups follow the instances in the file.
        let at = self.doc.tables.iter().rposition(|t| t.header == "[[vrrp]]" || t.header == "[[vrrp_sync_group]]").map_or(0, |i| i + 1);
        self.doc.tables.insert(at, t);
    }

    fn virtual_server(&mut self, n: &Node) {
        let what = format!("virtual_server {}", n.args.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" "));
        let (Some(vip), Some(port)) = (n.arg(0).and_then(|a| a.parse::<IpAddr>().ok()), n.arg(1).and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0)) else {
            let why = match n.arg(0) {
                Some("fwmark") => "firewall marks: fj-lb balances a VIP and port",
                Some("group") => "virtual_server_group: write one virtual_server per address and port",
                _ => "not an address and port",
            };
            return self.notes.add(&n.at, &what, format!("{why}; left out"));
        };
        let find = |key: &str| n.children().iter().find(|c| c.key == key);
        let protocol = match find("protocol").and_then(|c| c.arg(0)) {
            None | Some("TCP") => "tcp",
            Some("UDP") => "udp",
            Some(other) => return self.notes.add(&n.at, &what, format!("protocol {other}: fj-lb balances TCP and UDP; left out")),
        };
        let name = emit::name(&format!("vs-{vip}-{port}-{protocol}").replace(':', "_"));
        if !self.endpoints.insert((vip, port, protocol)) || !self.service_names.insert(name.clone()) {
            return self.notes.add(&n.at, &what, "a second virtual server on that address, port and protocol: left out");
        }
        let mut t = Table::new("[[service]]", &n.at, &what);
        t.put("name", name.as_str()).put("vip", vip.to_string()).put("port", port as i64).put("protocol", protocol).put("forward", "dsr");
        let mut delay_loop_ms = 60_000u64;
        let mut vs_retry: Option<u32> = None;
        for c in n.children() {
            let arg = c.arg(0);
            match c.key.as_str() {
                "protocol" | "real_server" => {}
                "delay_loop" => match arg.and_then(seconds_ms).filter(|ms| (10..=3_600_000).contains(ms)) {
                    Some(ms) => delay_loop_ms = ms,
                    None => self.notes.add(&c.at, c.text(), "not an interval fj-lb takes (0.01 s to 1 h): 60 s applies"),
                },
                "lb_algo" if matches!(arg, Some("mh" | "sh")) => {}
                "lb_algo" => self.notes.add(&c.at, c.text(), "fj-lb spreads flows by Maglev consistent hashing (as mh), with the backends' weights"),
                "lb_kind" if arg == Some("DR") => {}
                "lb_kind" => self.notes.add(&c.at, c.text(), match arg {
                    Some("NAT") => "fj-lb forwards by direct return (dsr): the backends answer the client themselves, with the VIP on lo, arp_ignore=1 and arp_announce=2; no NAT",
                    Some("TUN") => "no IPIP forwarding in fj-lb yet: carried over as direct return (dsr), which needs the backends on the LB's segment",
                    _ => "not a forwarding method fj-lb has: carried over as direct return (dsr)",
                }),
                "persistence_timeout" | "persistence_granularity" | "persistence_engine" => {
                    self.notes.add(&c.at, c.text(), "a flow stays on its backend while it lives (flow table) and new flows from a client are hashed; there is no timed persistence")
                }
                "retry" => vs_retry = arg.and_then(|r| r.parse().ok()),
                "sorry_server" | "sorry_server_inhibit" => self.notes.add(&c.at, c.text(), "no sorry server: when every backend is down fj-lb sends to all or drops (when_all_down)"),
                "virtualhost" => self.notes.add(&c.at, c.text(), "fj-lb's HTTP checks send no Host header of choice"),
                _ => self.notes.add(&c.at, c.text(), "no fj-lb equivalent"),
            }
        }
        let mut health: Option<(Table, Origin)> = None;
        let mut backends: Vec<Table> = Vec::new();
        for rs in n.children().iter().filter(|c| c.key == "real_server") {
            let rs_what = rs.text();
            let Some(addr) = rs.arg(0).and_then(|a| a.parse::<IpAddr>().ok()) else {
                self.notes.add(&rs.at, &rs_what, "not an address: left out");
                continue;
            };
            if addr.is_ipv4() != vip.is_ipv4() {
                self.notes.add(&rs.at, &rs_what, "of another address family than the VIP: fj-lb forwards within one family; left out");
                continue;
            }
            if let Some(rport) = rs.arg(1).and_then(|p| p.parse::<u16>().ok())
                && rport != port
            {
                self.notes.add(&rs.at, &rs_what, format!("port {rport}, not {port}: direct return cannot change the port; left out"));
                continue;
            }
            let mut b = Table::new("[[service.backend]]", &rs.at, &rs_what);
            b.put("address", addr.to_string());
            let mut weight = 1i64;
            for c in rs.children() {
                match c.key.as_str() {
                    "weight" => match c.arg(0).and_then(|w| w.parse::<i64>().ok()).filter(|w| (0..=1_000_000).contains(w)) {
                        Some(w) => weight = w,
                        None => self.notes.add(&c.at, c.text(), "not a weight fj-lb takes (0 to 1000000): 1 applies"),
                    },
                    "TCP_CHECK" | "HTTP_GET" => {
                        let check = self.check(c, delay_loop_ms, vs_retry, port);
                        match (&health, check) {
                            (None, Some(h)) => health = Some((h, c.at.clone())),
                            (Some((first, _)), Some(h)) if first.same_keys(&h) => {}
                            (Some((_, first)), Some(_)) => self.notes.add(&c.at, c.text(), format!("fj-lb checks every backend of a service alike: the check from {first} applies")),
                            (_, None) => {}
                        }
                    }
                    "SSL_GET" | "SMTP_CHECK" | "MISC_CHECK" | "DNS_CHECK" | "UDP_CHECK" | "PING_CHECK" | "BFD_CHECK" | "FILE_CHECK" => {
                        self.notes.add(&c.at, c.text(), "fj-lb checks by TCP connect or HTTP GET only: not carried over")
                    }
                    "inhibit_on_failure" => self.notes.add(&c.at, c.text(), "a failed backend loses its Maglev slots (its established flows move too); there is no weight-0 inhibit"),
                    _ => self.notes.add(&c.at, c.text(), "no fj-lb equivalent"),
                }
            }
            b.put("weight", weight);
            backends.push(b);
        }
        if backends.is_empty() {
            self.service_names.remove(&name);
            return self.notes.add(&n.at, &what, "no real server fj-lb can forward to: left out");
        }
        if backends.iter().all(|b| b.value("weight") == Some("0")) {
            self.service_names.remove(&name);
            return self.notes.add(&n.at, &what, "every real server has weight 0: fj-lb refuses a service that can take no flow; left out");
        }
        self.doc.tables.push(t);
        if let Some((h, _)) = health {
            self.doc.tables.push(h);
        }
        self.doc.tables.extend(backends);
    }

    /// A TCP_CHECK or HTTP_GET into `[service.health]`.
    fn check(&mut self, c: &Node, delay_loop_ms: u64, vs_retry: Option<u32>, port: u16) -> Option<Table> {
        let mut h = Table::new("[service.health]", &c.at, &c.key);
        let http = c.key == "HTTP_GET";
        h.put("check", if http { "http" } else { "tcp" });
        let mut timeout_ms = 5_000u64;
        let mut retry = vs_retry.unwrap_or(1);
        let mut check_port: Option<u16> = None;
        let mut url_done = false;
        for o in c.children() {
            let arg = o.arg(0);
            match o.key.as_str() {
                "connect_timeout" => match arg.and_then(seconds_ms).filter(|t| *t >= 1) {
                    Some(t) => timeout_ms = t,
                    None => self.notes.add(&o.at, o.text(), "not a timeout: 5 s applies"),
                },
                "retry" | "nb_get_retry" => match arg.and_then(|r| r.parse::<u32>().ok()).filter(|r| *r <= 99) {
                    Some(r) => retry = r,
                    None => self.notes.add(&o.at, o.text(), "not a count fj-lb takes (0 to 99)"),
                },
                "delay_before_retry" => self.notes.add(&o.at, o.text(), "fj-lb checks every interval_ms (delay_loop), retries included"),
                "connect_port" => match arg.and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0) {
                    Some(p) if p != port => check_port = Some(p),
                    Some(_) => {}
                    None => self.notes.add(&o.at, o.text(), "not a port"),
                },
                "url" if http && url_done => self.notes.add(&o.at, o.text(), "fj-lb checks one path: the first url applies"),
                "url" if http => {
                    url_done = true;
                    for u in o.children() {
                        match u.key.as_str() {
                            "path" => match u.arg(0).filter(|p| p.starts_with('/') && !p.contains(char::is_whitespace)) {
                                Some(p) => {
                                    h.put("path", p);
                                }
                                None => self.notes.add(&u.at, u.text(), "not a path fj-lb takes: / applies"),
                            },
                            "status_code" => match (u.args.len(), u.arg(0).and_then(|s| s.parse::<u16>().ok()).filter(|s| (100..=599).contains(s))) {
                                (1, Some(s)) => {
                                    h.put("expect_status", s as i64);
                                }
                                _ => self.notes.add(&u.at, u.text(), "fj-lb expects one status: 200 applies"),
                            },
                            "digest" => self.notes.add(&u.at, u.text(), "fj-lb checks the status, not a digest of the body"),
                            _ => self.notes.add(&u.at, u.text(), "no fj-lb equivalent"),
                        }
                    }
                }
                _ => self.notes.add(&o.at, o.text(), "no fj-lb equivalent"),
            }
        }
        if http && !h.has("expect_status") {
            self.notes.add(&c.at, &c.key, "keepalived accepts any 2xx status by default; fj-lb expects one (200)");
        }
        let fall = (retry + 1).min(100);
        h.put("interval_ms", delay_loop_ms as i64);
        if timeout_ms > delay_loop_ms {
            h.put_c("timeout_ms", delay_loop_ms as i64, format!("connect_timeout {} s, capped at the interval", timeout_ms as f64 / 1000.0));
        } else {
            h.put("timeout_ms", timeout_ms as i64);
        }
        h.put_c("rise", 1, "keepalived: one success brings a server back");
        h.put_c("fall", fall as i64, format!("retry {retry}, then down"));
        if let Some(p) = check_port {
            h.put("port", p as i64);
        }
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        import::testing::{Any, Mem},
        model::config,
    };

    fn run(files: &[(&'static str, &'static str)], id: Option<&str>) -> (config::Config, Vec<String>) {
        let src = Mem(files.iter().copied().collect());
        let i = import(Path::new(files[0].0), &src, id).unwrap_or_else(|e| panic!("{e}"));
        (config::parse(&i.toml, "x", &Any).unwrap(), i.notes.iter().map(|n| n.to_string()).collect())
    }

    const VI: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n version 3\n virtual_ipaddress {\n 10.0.0.100/24\n }\n}\n";

    #[test]
    fn includes_follow_globs_relative_to_the_including_file_and_nest() {
        let (c, notes) = run(
            &[
                ("/etc/k/keepalived.conf", "include conf.d/*.conf\ninclude /etc/k/missing.conf\n"),
                ("/etc/k/conf.d/b.conf", "include ../vs/web.inc\n"),
                ("/etc/k/conf.d/a.conf", VI),
                ("/etc/k/conf.d/a.conf.bak", "garbage {"),
                ("/etc/k/vs/web.inc", "virtual_server 10.0.0.100 80\n{\n lb_kind DR\n real_server 10.0.0.11 80 { weight 2 } }\n"),
            ],
            None,
        );
        assert_eq!((c.vrrp.len(), c.services.len(), c.services[0].backends[0].weight), (1, 1, 2));
        assert!(notes.iter().any(|n| n.starts_with("/etc/k/keepalived.conf:2: include /etc/k/missing.conf: /etc/k/missing.conf cannot be read")), "{notes:?}");
        assert!(!notes.iter().any(|n| n.contains("a.conf.bak")), "*.conf does not match a.conf.bak: {notes:?}");
    }

    #[test]
    fn config_ids_pick_their_lines() {
        let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n version 3\n@a priority 170\n@^a priority 80\n virtual_ipaddress {\n 10.0.0.100\n }\n}\n";
        let files = [("/k.conf", text)];
        assert_eq!(run(&files, Some("a")).0.vrrp[0].priority, 170);
        let (c, notes) = run(&files, None);
        assert_eq!(c.vrrp[0].priority, 80, "without an id, @^a lines apply");
        assert!(notes[0].contains("pass --config-id a"), "{notes:?}");
    }

    #[test]
    fn state_master_without_priority_is_the_owner_and_tracking_maps_to_one_delta() {
        let text = "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 51\n version 3\n virtual_ipaddress {\n 10.0.0.100\n }\n}\n\
                    vrrp_instance VI_2 {\n interface eth0\n virtual_router_id 52\n priority 100\n version 3\n virtual_ipaddress {\n 10.0.0.101\n }\n track_interface {\n eth1 weight 20\n }\n}\n\
                    vrrp_instance VI_3 {\n interface eth0\n virtual_router_id 53\n version 3\n virtual_ipaddress {\n 10.0.0.102\n }\n track_interface {\n eth1 weight -30\n eth2\n }\n}\n\
                    vrrp_instance VI_4 {\n interface eth0\n virtual_router_id 53\n version 3\n virtual_ipaddress {\n 10.0.0.103\n }\n}\n";
        let (c, notes) = run(&[("/k.conf", text)], None);
        assert_eq!(c.vrrp[0].priority, 255);
        assert_eq!((c.vrrp[1].priority, c.vrrp[1].track_priority_delta), (120, 20), "+20 while up is -20 while down");
        assert_eq!((c.vrrp[2].priority, c.vrrp[2].track_priority_delta), (100, 0), "a weight-0 interface makes it FAULT");
        assert_eq!(c.vrrp.len(), 3, "VI_4 reuses vrid 53 on eth0");
        assert!(notes.iter().any(|n| n.contains("vrrp_instance VI_4: vrid 53 is already used on eth0")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("eth1 weight -30: fj-lb has one delta") && n.contains("FAULT")), "{notes:?}");
    }

    #[test]
    fn notify_scripts_keep_their_command_line_and_lose_their_user() {
        let text = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n version 3\n virtual_ipaddress {\n 10.0.0.100\n }\n\
                    notify_master \"/bin/n.sh master 'VI 1'\"\n notify_backup /bin/b.sh root root\n notify_fault notify.sh\n}\n";
        let (c, notes) = run(&[("/k.conf", text)], None);
        let n = &c.vrrp[0].notify;
        assert_eq!(n.master, Some(vec!["/bin/n.sh".into(), "master".into(), "VI 1".into()]));
        assert_eq!(n.backup, Some(vec!["/bin/b.sh".to_string()]));
        assert_eq!(n.fault, None);
        assert!(notes.iter().any(|x| x.contains("notify_backup /bin/b.sh root root: scripts run as the fj-lb daemon's user")), "{notes:?}");
        assert!(notes.iter().any(|x| x.contains("notify_fault notify.sh: fj-lb runs scripts by absolute path")), "{notes:?}");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line, what) in [("a {\n b\n", 1, "not closed"), ("a\n}\n", 2, "closes no block"), ("{\n", 1, "follows no statement"), ("x \"open\n", 1, "not closed")] {
            let err = import(Path::new("/k.conf"), &Mem([("/k.conf", text)].into_iter().collect()), None).unwrap_err();
            match err {
                ImportError::Syntax { at, message } => assert!(at.line == line && message.contains(what), "{text:?}: {at}: {message}"),
                other => panic!("{other}"),
            }
        }
    }
}
