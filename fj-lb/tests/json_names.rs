//! The `--json` field names are a public interface: the README lists them, scripts read them.
//! This test serialises each answer the CLI prints and checks that its names and the README's
//! list are the same set, so a renamed field fails here before it breaks someone's script.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use fj_lb::{
    control::protocol::FlowsReply,
    report::{
        status::{AnnounceStatus, BackendReport, FlowReport, LookupReport, MaglevReport, MaglevShare, ServiceReport, Status, VipAnnounce},
        trace::TraceEvent,
    },
    vrrp::{VrrpStatus, machine::State},
};
use serde::Serialize;

/// The README's bullet for `command`: every `name` in backticks, the command itself left out.
fn readme_names(command: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).expect("README.md");
    let section = readme.split("Field names are stable:").nth(1).expect("the README has the --json section");
    let marker = format!("- `{command}`");
    let start = section.find(&marker).unwrap_or_else(|| panic!("no README bullet for {command}"));
    let rest = &section[start + 2..];
    let end = rest.find("\n- `").or_else(|| rest.find("\n\n")).unwrap_or(rest.len());
    let names: BTreeSet<String> = rest[..end].split('`').skip(1).step_by(2).map(str::to_string).collect();
    names.into_iter().filter(|n| n != command).collect()
}

/// Every object key in `v`, at any depth.
fn keys<T: Serialize>(v: &T) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>, skip: &[&str]) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    out.insert(k.clone());
                    // Maps keyed by data (VRRP reject reasons) are not field names.
                    if !skip.contains(&k.as_str()) {
                        walk(v, out, skip);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out, skip)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(&serde_json::to_value(v).expect("serialises"), &mut out, &["rejected"]);
    out
}

fn backend() -> BackendReport {
    BackendReport {
        address: "10.0.0.11".parse().unwrap(),
        id: 0,
        mac: Some("02:00:00:00:00:11".into()),
        up: true,
        health_reason: "ok".into(),
        last_check: Some("2026-01-01T00:00:00Z".into()),
        last_check_ms: Some(1.5),
        weight: 1,
        config_weight: 1,
        slots: 1,
        slot_share: 1.0,
        packets: 1,
        bytes: 1,
        packets_per_s: 1.0,
        bits_per_s: 1.0,
    }
}

fn service() -> ServiceReport {
    ServiceReport {
        name: "web".into(),
        vip: "10.0.0.100".parse().unwrap(),
        port: 80,
        protocol: "tcp".into(),
        forward: "dsr".into(),
        health_check: "tcp".into(),
        backends_up: 1,
        backends_total: 1,
        all_down: false,
        packets: 1,
        bytes: 1,
        packets_per_s: 1.0,
        bits_per_s: 1.0,
        backends: vec![backend()],
    }
}

#[test]
fn status_names_match_the_readme() {
    let vrrp = vrrp_status();
    let st = Status {
        interface: "eth0".into(),
        xdp_mode: "native".into(),
        program_id: Some(1),
        uptime_s: 1,
        config: "/etc/fj-lb/fj-lb.toml".into(),
        vrrp: Some(vrrp.clone()),
        vrrp_instances: vec![vrrp],
        announce: Some(AnnounceStatus {
            table: 100,
            when: "healthy".into(),
            vips: vec![VipAnnounce { vip: "10.0.0.100".parse().unwrap(), announced: true, reason: "serving".into() }],
        }),
        services: vec![],
        trace: Some("packets service web (10.0.0.100:80 tcp)".into()),
    };
    assert_eq!(keys(&st), readme_names("status"));
}

fn vrrp_status() -> VrrpStatus {
    VrrpStatus { state: State::Master, rejected: BTreeMap::from([("ttl".to_string(), 1)]), ..VrrpStatus::initial("VI_1", 51, "eth0", 100, vec![]) }
}

#[test]
fn services_and_backends_names_match_the_readme() {
    let mut names = readme_names("services");
    names.remove("backends");
    let mut ours = keys(&vec![service()]);
    ours.remove("backends");
    assert_eq!(ours, names);
}

#[test]
fn flows_names_match_the_readme() {
    let f = FlowsReply {
        total_entries: 1,
        capacity: 2,
        flows: vec![FlowReport {
            src: "10.0.0.1:4000".into(),
            dst: "10.0.0.100:80".into(),
            protocol: "tcp".into(),
            service: Some("web".into()),
            backend: None,
        }],
    };
    let mut names = readme_names("flows");
    names.insert("flows".into());
    assert_eq!(keys(&f), names);
}

#[test]
fn maglev_names_match_the_readme() {
    let m = MaglevReport {
        service: "web".into(),
        table_size: 7,
        empty_slots: 0,
        backends: vec![MaglevShare {
            address: "10.0.0.11".parse().unwrap(),
            weight: 1,
            slots: 7,
            expected_share: 1.0,
            share: 1.0,
            deviation: 0.0,
        }],
    };
    assert_eq!(keys(&m), readme_names("maglev"));
}

#[test]
fn lookup_names_match_the_readme() {
    let l = LookupReport {
        service: "web".into(),
        backend: None,
        via: "maglev".into(),
        slot: Some(1),
        hash: 1,
        explanation: String::new(),
    };
    let mut names = readme_names("lookup");
    // `via`'s two values are listed beside it.
    assert!(names.remove("flow_table") && names.remove("maglev"), "{names:?}");
    assert_eq!(keys(&l), names);
}

#[test]
fn trace_names_match_the_readme() {
    let e = TraceEvent {
        src: Some("10.0.0.2:40000".into()),
        dst: Some("10.0.0.100:80".into()),
        protocol: Some("tcp".into()),
        service: Some("web".into()),
        backend: Some("10.0.0.11".parse().unwrap()),
        action: "tx".into(),
        reason: "forwarded".into(),
        via: Some("maglev".into()),
        slot: Some(7),
        len: 74,
    };
    let mut names = readme_names("trace");
    // `via`'s two values are listed beside it.
    assert!(names.remove("flow_table") && names.remove("maglev"), "{names:?}");
    assert_eq!(keys(&e), names);
}
