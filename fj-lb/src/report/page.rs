//! The stats page at `GET /` of the metrics listener, in the spirit of HAProxy's: one
//! self-contained HTML document (inline CSS, no script, no external assets, so it works offline
//! and behind any proxy) rendered from the same status model as `fj-lb status --json`, that
//! reloads itself every few seconds. Read-only: it has no buttons. Pure: status in, text out.
use std::{fmt::Write as _, time::SystemTime};

use super::{
    status::{BackendReport, ServiceReport, Status},
    tables::{duration, endpoint, rate},
};
use crate::vrrp::VrrpStatus;

/// How often the page reloads itself, in seconds.
pub const REFRESH_S: u32 = 2;

/// What an operator reads off a backend's row at a glance; also its CSS class and the
/// `data-state` attribute scripts and tests read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    Up,
    Down,
    /// Healthy, weight 0: no new flows, established ones stay.
    Drained,
}

impl BackendState {
    pub fn of(b: &BackendReport) -> Self {
        match (b.up, b.weight) {
            (false, _) => Self::Down,
            (true, 0) => Self::Drained,
            (true, _) => Self::Up,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Drained => "drained",
        }
    }
}

/// Text safe inside an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "3s ago" for an RFC 3339 time status gave, against `now`; the time itself if it does not
/// parse or lies ahead.
fn ago(at: &str, now: SystemTime) -> String {
    match humantime::parse_rfc3339(at).ok().and_then(|t| now.duration_since(t).ok()) {
        Some(d) if d.as_secs() < 60 => format!("{}s ago", d.as_secs()),
        Some(d) => format!("{} ago", duration(d.as_secs())),
        None => at.to_string(),
    }
}

fn bytes(n: u64) -> String {
    rate(n as f64, "B").replace(".0 ", " ")
}

const STYLE: &str = "
body { font: 13px/1.4 system-ui, sans-serif; margin: 1em; color: #222; background: #fafafa; }
h1 { font-size: 18px; margin: 0 0 .2em; }
.meta { color: #555; margin-bottom: 1em; }
table { border-collapse: collapse; margin: 0 0 1.2em; min-width: 60em; background: #fff; }
th, td { border: 1px solid #bbb; padding: 2px 8px; text-align: left; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: bold; padding: 4px 8px; background: #20406a; color: #fff; }
caption .sub { font-weight: normal; color: #d8e0ee; margin-left: 1em; }
thead th { background: #e4e8ee; }
tr.up td { background: #c6efc6; }
tr.down td { background: #ffb3b3; }
tr.drained td { background: #b9d3ff; }
.state { font-weight: bold; text-transform: uppercase; }
.vrrp { display: inline-block; padding: 4px 10px; margin-bottom: 1em; border: 1px solid #bbb; background: #fff; }
.vrrp.master .state { color: #137a13; } .vrrp.backup .state { color: #1f4fa0; } .vrrp.initialize .state { color: #a05a00; }
.alldown { color: #a00; font-weight: bold; }
.legend span { display: inline-block; padding: 0 8px; margin-right: 4px; border: 1px solid #bbb; }
";

/// The whole page. `now` is the time the page is rendered, for "3s ago".
pub fn render(st: &Status, now: SystemTime) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
         <title>fj-lb on {iface}</title><style>{STYLE}</style></head><body>\n",
        iface = esc(&st.interface)
    );
    let _ = writeln!(
        h,
        "<h1>fj-lb on {}</h1><div class=\"meta\">XDP {} mode, program id {} · up {} · config {} · \
         refreshes every {REFRESH_S} s · read-only · <a href=\"/status.json\">status.json</a> · \
         <a href=\"/metrics\">metrics</a></div>",
        esc(&st.interface),
        esc(&st.xdp_mode),
        st.program_id.map_or("?".into(), |i| i.to_string()),
        duration(st.uptime_s),
        esc(&st.config),
    );
    match &st.vrrp {
        Some(v) => vrrp(&mut h, v, now),
        None => h.push_str("<div class=\"vrrp none\" id=\"vrrp\" data-state=\"none\">VRRP: not configured</div>\n"),
    }
    if let Some(a) = &st.announce {
        for v in &a.vips {
            let state = if v.announced { "master" } else { "backup" };
            let _ = writeln!(
                h,
                "<div class=\"vrrp {state}\" data-announce=\"{}\">announce {} (table {}, {}): <span class=\"state\">{}</span> · {}</div>",
                v.vip,
                v.vip,
                a.table,
                esc(&a.when),
                if v.announced { "announced" } else { "withdrawn" },
                esc(&v.reason),
            );
        }
    }
    h.push_str(
        "<div class=\"legend\">backend: <span style=\"background:#c6efc6\">up</span>\
         <span style=\"background:#ffb3b3\">down</span><span style=\"background:#b9d3ff\">drained (weight 0)</span></div><br>\n",
    );
    for s in &st.services {
        service(&mut h, s, now);
    }
    h.push_str("</body></html>\n");
    h
}

fn vrrp(h: &mut String, v: &VrrpStatus, now: SystemTime) {
    let state = v.state.as_str();
    let transition = match (&v.last_transition, &v.last_transition_reason) {
        (Some(at), Some(why)) => format!("{} ({}): {}", esc(at), ago(at, now), esc(why)),
        (Some(at), None) => format!("{} ({})", esc(at), ago(at, now)),
        _ => "never".into(),
    };
    let _ = writeln!(
        h,
        "<div class=\"vrrp {state}\" id=\"vrrp\" data-state=\"{state}\">VRRP vrid {} on {}: \
         <span class=\"state\">{state}</span>, priority {} (configured {}), master {} (priority {}) · \
         last transition {transition} · {} transitions · adverts sent {}, received {} · {}</div>",
        v.vrid,
        esc(&v.interface),
        v.priority,
        v.configured_priority,
        v.master.map_or("unknown".into(), |m| m.to_string()),
        v.master_priority.map_or("?".into(), |p| p.to_string()),
        v.transitions,
        v.adverts_sent,
        v.adverts_received,
        esc(&v.virtual_addresses.join(", ")),
    );
}

fn service(h: &mut String, s: &ServiceReport, now: SystemTime) {
    let name = esc(&s.name);
    let _ = writeln!(
        h,
        "<table class=\"service\" data-service=\"{name}\"><caption>{name}<span class=\"sub\">{} {} · check {} · \
         {}/{} backends up{} · {} · {} · {} packets, {}</span></caption>",
        esc(&endpoint(s)),
        esc(&s.protocol),
        esc(&s.health_check),
        s.backends_up,
        s.backends_total,
        if s.all_down { " · <span class=\"alldown\">ALL DOWN</span>" } else { "" },
        rate(s.packets_per_s, "pkt/s"),
        rate(s.bits_per_s, "b/s"),
        s.packets,
        bytes(s.bytes),
    );
    h.push_str(
        "<thead><tr><th>backend</th><th>state</th><th>reason</th><th>weight</th><th>Maglev share</th>\
         <th>packets/s</th><th>bits/s</th><th>packets</th><th>bytes</th><th>last check</th><th>MAC</th></tr></thead><tbody>\n",
    );
    for b in &s.backends {
        let state = BackendState::of(b).as_str();
        let weight =
            if b.weight == b.config_weight { b.weight.to_string() } else { format!("{} (config {})", b.weight, b.config_weight) };
        let last_check = match (&b.last_check, b.last_check_ms) {
            (Some(at), Some(ms)) => format!("<span title=\"{}\">{}, {ms:.1} ms</span>", esc(at), ago(at, now)),
            (Some(at), None) => ago(at, now),
            _ => "—".into(),
        };
        let _ = writeln!(
            h,
            "<tr class=\"backend {state}\" data-service=\"{name}\" data-backend=\"{addr}\" data-state=\"{state}\">\
             <td>{addr}</td><td class=\"state\">{state}</td><td>{}</td><td class=\"n\">{weight}</td>\
             <td class=\"n\">{:.1}% ({} slots)</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{last_check}</td><td>{}</td></tr>",
            esc(&b.health_reason),
            b.slot_share * 100.0,
            b.slots,
            rate(b.packets_per_s, "pkt/s"),
            rate(b.bits_per_s, "b/s"),
            b.packets,
            bytes(b.bytes),
            esc(b.mac.as_deref().unwrap_or("unresolved")),
            addr = esc(&b.address.to_string()),
        );
    }
    h.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn backend(addr: &str, up: bool, weight: u32, reason: &str) -> BackendReport {
        BackendReport {
            address: addr.parse().unwrap(),
            id: 0,
            mac: Some("02:00:00:00:00:11".into()),
            up,
            health_reason: reason.into(),
            last_check: Some("2027-01-15T08:00:00Z".into()),
            last_check_ms: Some(1.25),
            weight,
            config_weight: 100,
            slots: 21845,
            slot_share: 0.3333,
            packets: 1200,
            bytes: 96_000,
            packets_per_s: 1500.0,
            bits_per_s: 2.4e6,
        }
    }

    fn status() -> Status {
        Status {
            interface: "eth0".into(),
            xdp_mode: "native".into(),
            program_id: Some(42),
            uptime_s: 3700,
            config: "/etc/fj-lb/fj-lb.toml".into(),
            vrrp: None,
            vrrp_instances: Vec::new(),
            announce: None,
            trace: None,
            services: vec![ServiceReport {
                name: "web<&>".into(),
                vip: "10.0.0.100".parse().unwrap(),
                port: 80,
                protocol: "tcp".into(),
                forward: "dsr".into(),
                health_check: "http /healthz → 200".into(),
                backends_up: 2,
                backends_total: 3,
                all_down: false,
                packets: 3600,
                bytes: 288_000,
                packets_per_s: 4500.0,
                bits_per_s: 7.2e6,
                backends: vec![
                    backend("10.0.0.11", true, 100, "ok"),
                    backend("10.0.0.12", false, 100, "connect refused"),
                    backend("10.0.0.13", true, 0, "ok"),
                ],
            }],
        }
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2027-01-15T08:00:03Z").unwrap()
    }

    #[test]
    fn every_backend_has_a_row_with_its_state_and_colour() {
        let page = render(&status(), now());
        for (addr, state) in [("10.0.0.11", "up"), ("10.0.0.12", "down"), ("10.0.0.13", "drained")] {
            let row = format!("<tr class=\"backend {state}\" data-service=\"web&lt;&amp;&gt;\" data-backend=\"{addr}\" data-state=\"{state}\">");
            assert!(page.contains(&row), "no {row} in\n{page}");
        }
        assert!(page.contains("connect refused"));
        assert!(page.contains("3s ago, 1.2 ms") || page.contains("3s ago, 1.3 ms"), "{page}");
        assert!(page.contains("33.3% (21845 slots)"), "{page}");
        assert!(page.contains("2.4 Mb/s") && page.contains("1.5 kpkt/s"), "{page}");
        assert!(page.contains("VRRP: not configured"));
    }

    #[test]
    fn the_page_is_self_contained_refreshes_and_escapes() {
        let page = render(&status(), now());
        assert!(page.contains(&format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">")));
        for external in ["<script", "src=", "<link", "http://", "https://", "@import", "url("] {
            assert!(!page.contains(external), "{external} in a page that must work offline");
        }
        assert!(!page.contains("web<&>") && page.contains("web&lt;&amp;&gt;"), "names are escaped");
        assert!(!page.contains("<form") && !page.contains("<button"), "read-only");
    }

    #[test]
    fn announced_vips_show_whether_their_route_is_in() {
        let mut st = status();
        st.announce = Some(crate::report::status::AnnounceStatus {
            table: 100,
            when: "healthy".into(),
            vips: vec![crate::report::status::VipAnnounce { vip: "10.0.0.100".parse().unwrap(), announced: false, reason: "no healthy backend".into() }],
        });
        let page = render(&st, SystemTime::UNIX_EPOCH);
        assert!(page.contains("data-announce=\"10.0.0.100\""), "{page}");
        assert!(page.contains("withdrawn</span> · no healthy backend"), "{page}");
    }

    #[test]
    fn vrrp_shows_state_and_last_transition() {
        let mut st = status();
        st.vrrp = Some(VrrpStatus {
            name: "VI_1".into(),
            unicast_peers: Vec::new(),
            sync_group: None,
            state: crate::vrrp::machine::State::Master,
            vrid: 51,
            interface: "eth0".into(),
            priority: 150,
            configured_priority: 150,
            master: Some("10.0.0.2".parse().unwrap()),
            master_priority: Some(150),
            last_transition: Some("2027-01-15T07:58:03Z".into()),
            last_transition_reason: Some("master down interval expired".into()),
            transitions: 2,
            adverts_sent: 100,
            adverts_received: 3,
            rejected: Default::default(),
            virtual_addresses: vec!["10.0.0.100/24".into()],
        });
        let page = render(&st, now());
        assert!(page.contains("id=\"vrrp\" data-state=\"master\""), "{page}");
        assert!(page.contains("2027-01-15T07:58:03Z (2m00s ago): master down interval expired"), "{page}");
    }

    #[test]
    fn ago_reads_seconds_minutes_and_the_future() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = humantime::format_rfc3339_seconds(t).to_string();
        assert_eq!(ago(&at, t + Duration::from_secs(5)), "5s ago");
        assert_eq!(ago(&at, t + Duration::from_secs(3725)), "1h02m05s ago");
        assert_eq!(ago(&at, t - Duration::from_secs(5)), at, "a clock behind says the time");
        assert_eq!(ago("garbage", t), "garbage");
    }
}
