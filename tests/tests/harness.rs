//! Checks of the lab itself, without the daemon: namespaces, the bridge, nginx, cleanup.
//! Needs root.
use std::{net::SocketAddrV4, path::Path, process::Command, time::Duration};

use fj_lb_tests::{Netns, Topology, VIP, backend_ip, ns, require_root};

fn netns_list() -> Vec<String> {
    let out = ns::run(Command::new("ip").args(["netns", "list"]));
    out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn backends_answer_the_client_directly_and_only_the_lb_claims_the_vip() {
    require_root!();
    let topo = Topology::builder().backends(2).build();
    for i in 1..=2 {
        let addr = SocketAddrV4::new(backend_ip(i), 80);
        let (status, body) = topo.client_get(addr, "/", Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((status, body.as_str()), (200, format!("b{i}\n").as_str()));
        let (status, body) = topo.client_get(addr, "/healthz", Duration::from_secs(2)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((status, body.trim()), (200, "ok"));
    }
    // Without the daemon the VIP is the LB's own address with nothing listening: refused.
    let err = topo.client_get(topo.vip_addr(), "/", Duration::from_secs(2)).expect_err("nothing listens on the LB");
    assert!(err.contains("refused"), "{err}");
    // ...and the client learned the LB's MAC for it: the backends stay silent in ARP.
    let neigh = topo.client().ns.ip(&["-j", "neigh", "show", &VIP.to_string(), "dev", "eth0"]);
    let v: serde_json::Value = serde_json::from_str(&neigh).unwrap();
    assert_eq!(v[0]["lladdr"].as_str(), Some(topo.lb().mac().as_str()), "neighbour entry for the VIP: {neigh}");
}

#[test]
fn keep_alive_connection_carries_several_requests() {
    require_root!();
    let topo = Topology::builder().backends(1).build();
    let addr = SocketAddrV4::new(backend_ip(1), 80);
    let mut conn = topo
        .client()
        .run_in(|| fj_lb_tests::KeepAliveConn::connect(addr, Duration::from_secs(2), Some(23456)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conn.local_addr().port(), 23456);
    // The socket stays in the client namespace although this thread is in the root one.
    for _ in 0..5 {
        assert_eq!(conn.request("/").unwrap(), (200, "b1\n".to_string()));
    }
    // nginx saw one connection from that port carrying the five requests (it logs a request
    // just after answering it: poll).
    let log = topo.tmp().join("b1/access.log");
    let lines = fj_lb_tests::poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().filter(|l| l.contains("\"GET / ")).map(str::to_string).collect();
        (lines.len() >= 5).then_some(lines)
    })
    .unwrap_or_else(|| panic!("access log: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    let conn = lines[0].split(' ').nth(1).unwrap().to_string();
    for (n, line) in lines.iter().enumerate() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[0], "10.0.0.2:23456", "{line}");
        assert_eq!((f[1], f[2]), (conn.as_str(), (n + 1).to_string().as_str()), "{line}");
    }
}

#[test]
fn everything_is_gone_after_drop() {
    require_root!();
    let (names, tmp) = {
        let topo = Topology::builder().backends(1).build();
        let names: Vec<String> = topo.hosts().map(|h| h.ns.name().to_string()).chain([topo.switch().name().to_string()]).collect();
        let listed = netns_list();
        for n in &names {
            assert!(listed.contains(n), "{n} not in {listed:?}");
        }
        (names, topo.tmp().to_path_buf())
    };
    let listed = netns_list();
    for n in &names {
        assert!(!listed.contains(n), "{n} still exists after drop");
    }
    assert!(!tmp.exists(), "{} still exists", tmp.display());
}

#[test]
fn namespace_is_deleted_when_the_test_panics() {
    require_root!();
    let id = ns::unique_id();
    let name = format!("{id}-boom");
    let r = std::panic::catch_unwind(|| {
        let _ns = Netns::new(&id, "boom");
        assert!(Path::new("/run/netns").join(format!("{id}-boom")).exists());
        panic!("on purpose");
    });
    assert!(r.is_err());
    assert!(!netns_list().contains(&name), "{name} survived a panic");
}

#[test]
fn sweep_removes_leftovers_of_dead_runs_only() {
    require_root!();
    ns::init();
    // A pid that has just exited stands for a crashed run.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("fjt-{dead}-0-client");
    ns::run(Command::new("ip").args(["netns", "add", &stale]));
    let stale_tmp = std::env::temp_dir().join(format!("fjt-{dead}-0-lab"));
    std::fs::create_dir_all(&stale_tmp).unwrap();
    let alive = Netns::new(&ns::unique_id(), "alive");

    ns::sweep_stale();

    let listed = netns_list();
    if listed.contains(&stale) {
        let _ = Command::new("ip").args(["netns", "delete", &stale]).status();
        panic!("sweep left {stale}");
    }
    assert!(!stale_tmp.exists(), "sweep left {}", stale_tmp.display());
    assert!(listed.contains(&alive.name().to_string()), "sweep removed a live run's {}", alive.name());
}

#[test]
fn spawned_children_see_their_namespace_sysfs_and_the_host_bpffs() {
    require_root!();
    ns::ensure_bpffs();
    let tmp = fj_lb_tests::TempDir::new("spawn");
    let n = Netns::new(&ns::unique_id(), "spawn");
    n.ip(&["link", "add", "fjt-a", "type", "veth", "peer", "name", "fjt-b"]);
    let log = tmp.join("out.log");
    let script = "ls /sys/class/net; stat -f -c %T /sys/fs/bpf; exec sleep 60";
    let mut child = n.spawn("sh", "sh", &["-c", script], &log);
    let out = fj_lb_tests::poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        child.assert_running();
        let out = child.log();
        out.contains("bpf").then_some(out)
    })
    .unwrap_or_else(|| panic!("no output: {:?}", child.log()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["fjt-a", "fjt-b", "lo", "bpf_fs"]);
    let status = child.stop(Duration::from_secs(5));
    assert!(!status.success(), "sleep was terminated, not finished");
}
