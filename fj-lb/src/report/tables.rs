//! Human-readable tables for the inspection commands. Pure: data in, text out.
use super::status::{BackendReport, FlowReport, LookupReport, MaglevReport, ServiceReport, Status};

/// Left-aligned columns, two spaces apart, header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n") + "\n"
}

pub fn rate(v: f64, unit: &str) -> String {
    let (v, p) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{v:.1} {p}{unit}")
}

pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 { format!("{d}d{h:02}h{m:02}m") } else if h > 0 { format!("{h}h{m:02}m{s:02}s") } else { format!("{m}m{s:02}s") }
}

pub fn endpoint(s: &ServiceReport) -> String {
    match s.vip {
        std::net::IpAddr::V6(v) => format!("[{v}]:{}", s.port),
        v => format!("{v}:{}", s.port),
    }
}

pub fn status(st: &Status) -> String {
    let mut out = format!(
        "fj-lb on {} — XDP {} mode, program id {}, up {}\nconfig {}\n",
        st.interface,
        st.xdp_mode,
        st.program_id.map_or("?".into(), |i| i.to_string()),
        duration(st.uptime_s),
        st.config
    );
    // An older daemon sends `vrrp` alone.
    let instances: Vec<&crate::vrrp::VrrpStatus> = if st.vrrp_instances.is_empty() { st.vrrp.iter().collect() } else { st.vrrp_instances.iter().collect() };
    if instances.is_empty() {
        out.push_str("VRRP: not configured\n");
    }
    for v in &instances {
        // One instance keeps the line it always had; several are told apart by name.
        let label = if instances.len() == 1 { "VRRP".to_string() } else { format!("VRRP {}", v.name) };
        let unicast = if v.unicast_peers.is_empty() { String::new() } else { format!(", unicast to {}", v.unicast_peers.join(" ")) };
        let group = v.sync_group.as_ref().map_or(String::new(), |g| format!(", sync group {g}"));
        out.push_str(&format!(
            "{label}: {} (vrid {}, priority {}{unicast}{group}), master {} priority {}, last transition {}{}\n",
            v.state.as_str(),
            v.vrid,
            v.priority,
            v.master.map_or("unknown".into(), |m| m.to_string()),
            v.master_priority.map_or("null".into(), |p| p.to_string()),
            v.last_transition.as_deref().unwrap_or("never"),
            v.last_transition_reason.as_ref().map_or(String::new(), |r| format!(" ({r})")),
        ));
    }
    if let Some(a) = &st.announce {
        out.push_str(&format!("Announce: table {}, when {}\n", a.table, a.when));
        for v in &a.vips {
            let state = if v.announced { "announced" } else { "not announced" };
            out.push_str(&format!("  {:<16} {state}: {}\n", v.vip.to_string(), v.reason));
        }
    }
    if let Some(t) = &st.trace {
        out.push_str(&format!("Trace running (fj-lb trace): {t}\n"));
    }
    out.push('\n');
    out + &services(&st.services)
}

pub fn services(services: &[ServiceReport]) -> String {
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                endpoint(s),
                s.protocol.clone(),
                s.forward.clone(),
                s.health_check.clone(),
                format!("{}/{} up{}", s.backends_up, s.backends_total, if s.all_down { " (ALL DOWN: sending to all)" } else { "" }),
                rate(s.packets_per_s, "pkt/s"),
                rate(s.bits_per_s, "b/s"),
                s.packets.to_string(),
            ]
        })
        .collect();
    table(&["SERVICE", "VIP", "PROTO", "FORWARD", "CHECK", "BACKENDS", "PACKETS/S", "BITS/S", "PACKETS"], &rows)
}

pub fn backends(services: &[ServiceReport]) -> String {
    let row = |s: &ServiceReport, b: &BackendReport| {
        vec![
            s.name.clone(),
            b.address.to_string(),
            if b.up { "up".into() } else { "DOWN".into() },
            b.health_reason.clone(),
            if b.weight == b.config_weight { b.weight.to_string() } else { format!("{} (config {})", b.weight, b.config_weight) },
            format!("{} ({:.1}%)", b.slots, b.slot_share * 100.0),
            b.packets.to_string(),
            b.bytes.to_string(),
            rate(b.packets_per_s, "pkt/s"),
            b.mac.clone().unwrap_or_else(|| "unresolved".into()),
        ]
    };
    let rows: Vec<Vec<String>> = services.iter().flat_map(|s| s.backends.iter().map(move |b| row(s, b))).collect();
    table(&["SERVICE", "BACKEND", "STATE", "REASON", "WEIGHT", "SLOTS", "PACKETS", "BYTES", "RATE", "MAC"], &rows)
}

pub fn flows(total: u64, capacity: u64, flows: &[FlowReport]) -> String {
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            vec![
                f.src.clone(),
                f.dst.clone(),
                f.protocol.clone(),
                f.service.clone().unwrap_or_else(|| "(removed)".into()),
                f.backend.map_or("(gone)".into(), |b| b.to_string()),
            ]
        })
        .collect();
    format!("{total} of {capacity} flow table entries in use; showing {}\n", flows.len())
        + &table(&["CLIENT", "VIP", "PROTO", "SERVICE", "BACKEND"], &rows)
}

pub fn maglev(m: &MaglevReport) -> String {
    let rows: Vec<Vec<String>> = m
        .backends
        .iter()
        .map(|b| {
            vec![
                b.address.to_string(),
                b.weight.to_string(),
                b.slots.to_string(),
                format!("{:.2}%", b.share * 100.0),
                format!("{:.2}%", b.expected_share * 100.0),
                // Rounded first, so a hair under the share reads +0.00%, not -0.00%.
                format!("{:+.2}%", (b.deviation * 10000.0).round() / 100.0 + 0.0),
            ]
        })
        .collect();
    format!("service {}: {} slots, {} empty\n", m.service, m.table_size, m.empty_slots)
        + &table(&["BACKEND", "WEIGHT", "SLOTS", "SHARE", "WEIGHT SHARE", "DEVIATION"], &rows)
}

pub fn lookup(l: &LookupReport) -> String {
    format!(
        "service {}: backend {} (via {})\n{}\n",
        l.service,
        l.backend.map_or("none".into(), |b| b.to_string()),
        l.via,
        l.explanation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xxxx".into(), "y".into()], vec!["z".into(), "w".into()]]);
        assert_eq!(t, "A     LONGER\nxxxx  y\nz     w\n");
    }

    fn status_with(vrrp: Vec<crate::vrrp::VrrpStatus>) -> String {
        let st = Status {
            interface: "eth0".into(),
            xdp_mode: "native".into(),
            program_id: Some(7),
            uptime_s: 61,
            config: "/etc/fj-lb.toml".into(),
            vrrp: vrrp.first().cloned(),
            vrrp_instances: vrrp,
            announce: None,
            services: vec![],
            trace: None,
        };
        status(&st)
    }

    #[test]
    fn status_shows_each_vrrp_instance() {
        use crate::vrrp::{VrrpStatus, machine::State};
        let a = VrrpStatus { state: State::Master, master: Some("10.0.0.10".parse().unwrap()), master_priority: Some(150), ..VrrpStatus::initial("A", 51, "eth0", 150, vec![]) };
        let one = status_with(vec![a.clone()]);
        assert!(one.contains("\nVRRP: master (vrid 51, priority 150), master 10.0.0.10 priority 150, last transition never\n"), "{one}");
        let b = VrrpStatus {
            state: State::Fault,
            unicast_peers: vec!["10.0.0.9".into()],
            sync_group: Some("G".into()),
            last_transition_reason: Some("fault: the interface is down".into()),
            ..VrrpStatus::initial("B", 52, "eth0", 100, vec![])
        };
        let two = status_with(vec![a, b]);
        assert!(two.contains("\nVRRP A: master (vrid 51"), "{two}");
        assert!(two.contains("\nVRRP B: fault (vrid 52, priority 100, unicast to 10.0.0.9, sync group G), master unknown"), "{two}");
        assert!(two.contains("(fault: the interface is down)\n"), "{two}");
        assert!(status_with(vec![]).contains("VRRP: not configured"));
    }

    #[test]
    fn units() {
        assert_eq!(rate(1_500_000.0, "b/s"), "1.5 Mb/s");
        assert_eq!(rate(12.0, "pkt/s"), "12.0 pkt/s");
        assert_eq!(duration(3723), "1h02m03s");
        assert_eq!(duration(59), "0m59s");
        assert_eq!(duration(90000), "1d01h00m");
    }
}
