//! Layer-3 direct return and the awkward packets, end to end: backends in another subnet
//! behind a router, running `fj-lb decap`, serve HTTP through the VIP in ipip (4in4, 6in6,
//! 4in6) and gue modes with their replies going straight back through the router; a backend
//! without decap gets nothing; a packet-too-big for a live connection lowers its backend's path
//! MTU (layer 2 and layer 3); 4,000-byte UDP datagrams arrive whole; reversed fragments are
//! counted; an IPv6 VIP with `accept_mode = false` keeps the client's neighbour entry
//! REACHABLE. Needs root and a built `fj-lb` (`cargo build -p fj-lb`, or `FJ_LB_BIN`).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use fj_lb_tests::{
    CLIENT_IP, Config, Daemon, Host, KeepAliveConn, Readiness, Service, Topology, VIP, VIP6, VrrpSettings,
    cli::lookup_ports, get_at, get_from, ip6_of, poll_until, require_root, routed_backend_ip, xdp_info,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(2);

/// The lab of these tests: one backend on the segment (b1), `routed` behind the router, IPv6.
fn lab(routed: usize) -> Topology {
    Topology::builder().backends(1).routed_backends(routed).ipv6(true).build()
}

fn base_config(topo: &Topology) -> Config {
    Config::new(&topo.bpffs_dir(), &topo.control_socket()).flow_table_size(65536).maglev_table_size(65537)
}

/// "web" on VIP:80 and "web6" on [VIP6]:80, both forwarding `mode` to the routed backends
/// (their IPv4 addresses, or with `v6_backends` their IPv6 ones for "web": 4in6).
fn l3_config(topo: &Topology, mode: &str, v6_backends: bool) -> Config {
    let n = topo.routed_backends().len();
    let v4: Vec<IpAddr> = (1..=n).map(|i| routed_backend_ip(i).into()).collect();
    let v6: Vec<IpAddr> = (1..=n).map(|i| ip6_of(routed_backend_ip(i)).into()).collect();
    base_config(topo)
        .service(Service::new("web", 80, "tcp").forward(mode).backends(if v6_backends { v6.clone() } else { v4 }))
        .service(Service::new("web6", 80, "tcp").vip(VIP6).forward(mode).backends(v6))
}

/// `fj-lb decap` for both VIPs on every routed backend (or those listed).
fn decap_on(topo: &Topology, hosts: &[&Host]) {
    for h in hosts {
        let out = topo.decap(h, &["--vip", &VIP.to_string(), "--vip", &VIP6.to_string()]).ok().unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("stays after this command"), "{out}");
        assert!(xdp_info(h.ns.name(), "eth0").is_some(), "{}: no XDP program after `fj-lb decap` exited", h.name);
    }
}

fn decap_stats(topo: &Topology, h: &Host) -> Value {
    topo.decap(h, &["--stats", "--json"]).json().unwrap_or_else(|e| panic!("{e}"))
}

fn lb_stats(d: &Daemon) -> Value {
    serde_json::from_str(&d.cli(&["stats", "--json"]).unwrap_or_else(|e| panic!("{e}"))).expect("stats --json is JSON")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no counter {key:?} in {v:#}"))
}

/// Frames from the VIPs' port 80 as the client receives them, and the MACs they came from,
/// read off the client's eth0 by a packet socket until dropped.
struct ReplySources {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<BTreeMap<String, u64>>>,
}

impl ReplySources {
    fn start(client: &Host) -> ReplySources {
        let fd = client.run_in(|| {
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, (libc::ETH_P_ALL as u16).to_be() as i32) };
            assert!(fd >= 0, "a packet socket in the client namespace: {}", std::io::Error::last_os_error());
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
            sll.sll_ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) } as i32;
            let rc = unsafe { libc::bind(fd.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), size_of::<libc::sockaddr_ll>() as u32) };
            assert_eq!(rc, 0, "binding the packet socket: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
            unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&tv as *const libc::timeval).cast(), size_of::<libc::timeval>() as u32) };
            fd
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = BTreeMap::new();
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 54 {
                    continue;
                }
                let f = &buf[..n as usize];
                let from_vip = match [f[12], f[13]] {
                    [0x08, 0x00] => f[26..30] == VIP.octets() && f[23] == 6 && f[34..36] == 80u16.to_be_bytes(),
                    [0x86, 0xdd] => n >= 74 && f[22..38] == VIP6.octets() && f[20] == 6 && f[54..56] == 80u16.to_be_bytes(),
                    _ => false,
                };
                if from_vip {
                    let mac = f[6..12].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                    *seen.entry(mac).or_insert(0) += 1;
                }
            }
            seen
        });
        ReplySources { stop, thread: Some(thread) }
    }

    /// Source MAC → frames, since `start`.
    fn finish(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("finished once").join().expect("the capture thread")
    }
}

/// Waits (bounded) until `vip`:80 answers the client: the daemon resolves each service's next
/// hops at start-up or reload, a service of the other family may take a tick longer.
fn wait_served(topo: &Topology, vip: IpAddr, daemon: &Daemon) {
    let addr = SocketAddr::new(vip, 80);
    let ok = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        topo.client().run_in(|| get_at(addr, "/", Duration::from_millis(500))).ok().filter(|(s, _)| *s == 200)
    });
    assert!(ok.is_some(), "{addr} does not answer the client; daemon log:\n{}", daemon.log());
}

/// `count` requests to `vip`:80 from distinct client ports: who answered (body) how often.
fn requests(topo: &Topology, vip: IpAddr, first_port: u16, count: u16) -> BTreeMap<String, u32> {
    let answers: Vec<Result<(u16, String), String>> = topo.client().run_in(|| {
        (0..count)
            .map(|i| match vip {
                IpAddr::V4(v4) => get_from(SocketAddrV4::new(v4, 80), "/", TIMEOUT, Some(first_port + i)),
                IpAddr::V6(_) => get_at(SocketAddr::new(vip, 80), "/", TIMEOUT),
            })
            .collect()
    });
    let mut by = BTreeMap::new();
    for (i, a) in answers.iter().enumerate() {
        match a {
            Ok((200, body)) => *by.entry(body.trim().to_string()).or_insert(0) += 1,
            other => panic!("request {i} to {vip} failed: {other:?}"),
        }
    }
    by
}

/// The lab with two routed backends, both running decap, and the daemon on
/// [`l3_config`]`("ipip")`.
fn start_ipip() -> (Topology, Daemon) {
    let mut topo = lab(2);
    let routed: Vec<&Host> = topo.routed_backends().iter().collect();
    decap_on(&topo, &routed);
    let config = l3_config(&topo, "ipip", false);
    let daemon = Daemon::start(&mut topo, &config);
    (topo, daemon)
}

#[test]
fn backends_behind_a_router_serve_through_the_vip_in_ipip_and_gue_and_reply_through_the_router() {
    require_root!();
    let (topo, daemon) = start_ipip();
    let router_mac = topo.router().mac();
    let (r1, r2) = (topo.routed(1), topo.routed(2));

    // 4in4 and 6in6.
    wait_served(&topo, VIP6.into(), &daemon);
    let capture = ReplySources::start(topo.client());
    let by4 = requests(&topo, VIP.into(), 30000, 40);
    let by6 = requests(&topo, VIP6.into(), 0, 20);
    let sources = capture.finish();
    assert_eq!(by4.keys().map(String::as_str).collect::<Vec<_>>(), ["r1", "r2"], "4in4 to both backends: {by4:?}");
    assert_eq!(by6.values().sum::<u32>(), 20, "6in6: {by6:?}");
    assert_eq!(sources.keys().collect::<Vec<_>>(), vec![&router_mac], "every reply from the VIPs came from the router's MAC, never the LB's: {sources:?}");
    let s = lb_stats(&daemon);
    assert!(n(&s, "forwarded_ipip") >= 60 * 3, "{s:#}");
    let (d1, d2) = (decap_stats(&topo, r1), decap_stats(&topo, r2));
    assert!(n(&d1, "decap_4in4") + n(&d2, "decap_4in4") >= 40 * 3, "{d1:#} {d2:#}");
    assert!(n(&d1, "decap_6in6") + n(&d2, "decap_6in6") >= 20 * 3, "{d1:#} {d2:#}");

    // 4in6: the IPv4 VIP, the backends' IPv6 addresses.
    daemon.reload_with(&l3_config(&topo, "ipip", true).render());
    let before = n(&decap_stats(&topo, r1), "decap_4in6") + n(&decap_stats(&topo, r2), "decap_4in6");
    let reloaded = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let st = daemon.status().ok()?;
        let web = st["services"].as_array()?.iter().find(|s| s["name"] == "web")?.clone();
        web["backends"].as_array()?.iter().all(|b| b["address"].as_str().is_some_and(|a| a.contains(':'))).then_some(())
    });
    assert!(reloaded.is_some(), "the reload to IPv6 backends did not show:\n{}", daemon.log());
    wait_served(&topo, VIP.into(), &daemon);
    let by46 = requests(&topo, VIP.into(), 31000, 40);
    assert_eq!(by46.values().sum::<u32>(), 40, "4in6: {by46:?}");
    let after = n(&decap_stats(&topo, r1), "decap_4in6") + n(&decap_stats(&topo, r2), "decap_4in6");
    assert!(after >= before + 40 * 3, "4in6 decapsulated: {before} → {after}");

    // GUE, IPv4 and IPv6 outer headers.
    daemon.reload_with(&l3_config(&topo, "gue", false).render());
    let switched = poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let st = daemon.status().ok()?;
        st["services"].as_array()?.iter().all(|s| s["forward"] == "gue").then_some(())
    });
    assert!(switched.is_some(), "the reload to gue did not show:\n{}", daemon.log());
    wait_served(&topo, VIP.into(), &daemon);
    wait_served(&topo, VIP6.into(), &daemon);
    let capture = ReplySources::start(topo.client());
    let by_gue = requests(&topo, VIP.into(), 32000, 40);
    let by_gue6 = requests(&topo, VIP6.into(), 0, 20);
    let sources = capture.finish();
    assert_eq!(by_gue.len(), 2, "GUE over IPv4 to both backends: {by_gue:?}");
    assert_eq!(by_gue6.values().sum::<u32>(), 20);
    assert_eq!(sources.keys().collect::<Vec<_>>(), vec![&router_mac], "{sources:?}");
    let gue = n(&decap_stats(&topo, r1), "decap_gue") + n(&decap_stats(&topo, r2), "decap_gue");
    assert!(gue >= 60 * 3, "GUE decapsulated: {gue}");
    assert!(n(&lb_stats(&daemon), "forwarded_gue") >= 60 * 3);
}

/// `Ip: InUnknownProtos` from the host's /proc/net/snmp.
fn unknown_protos(h: &Host) -> u64 {
    let snmp = h.ns.exec(&["cat", "/proc/net/snmp"]);
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().expect("Ip: header"), ip.next().expect("Ip: values"));
    let i = names.split_whitespace().position(|n| n == "InUnknownProtos").expect("InUnknownProtos column");
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[test]
fn a_backend_without_decap_gets_nothing_and_counts_an_unknown_protocol() {
    require_root!();
    let mut topo = lab(2);
    decap_on(&topo, &[topo.routed(1)]);
    let config = base_config(&topo)
        .service(Service::new("web", 80, "tcp").forward("ipip").backends([routed_backend_ip(1), routed_backend_ip(2)]));
    let daemon = Daemon::start(&mut topo, &config);
    let ports = lookup_ports(daemon.control_socket(), CLIENT_IP, 33000..33100);
    let to = |b: Ipv4Addr| ports.iter().filter(|(_, x)| *x == Some(b)).map(|(p, _)| *p).collect::<Vec<u16>>();
    let (to_r1, to_r2) = (to(routed_backend_ip(1)), to(routed_backend_ip(2)));
    assert!(!to_r1.is_empty() && !to_r2.is_empty(), "{ports:?}");
    let r2 = topo.routed(2);
    let unknown = unknown_protos(r2);
    let vip = SocketAddrV4::new(VIP, 80);
    let answer = topo.client().run_in(|| get_from(vip, "/", Duration::from_millis(700), Some(to_r2[0])));
    assert!(answer.is_err(), "a flow hashed to r2, which has no decap, got {answer:?}");
    assert!(unknown_protos(r2) > unknown, "r2 counted the IPIP packets as an unknown protocol");
    let log = std::fs::read_to_string(topo.tmp().join("r2").join("access.log")).unwrap_or_default();
    assert!(!log.contains("\"GET / HTTP"), "r2's nginx served a request (only the harness's /healthz may be there):\n{log}");
    let answer = topo.client().run_in(|| get_from(vip, "/", TIMEOUT, Some(to_r1[0])));
    assert_eq!(answer, Ok((200, "r1\n".to_string())), "a flow hashed to r1 is served");

    // `--detach` removes it; the counters go with it.
    let r1 = topo.routed(1);
    let out = topo.decap(r1, &["--detach"]).ok().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("removed"), "{out}");
    assert!(xdp_info(r1.ns.name(), "eth0").is_none(), "XDP still on r1 after --detach");
    assert!(!topo.decap(r1, &["--stats"]).success(), "stats of a detached program");
}

/// The client's next expected sequence number on `conn` (the backend's snd_nxt while idle),
/// read with TCP_REPAIR: a forged ICMP error must quote a sequence number in the window, or
/// the backend's kernel ignores it (RFC 5927).
fn rcv_nxt(conn: &KeepAliveConn) -> u32 {
    const TCP_REPAIR: libc::c_int = 19;
    const TCP_REPAIR_QUEUE: libc::c_int = 20;
    const TCP_QUEUE_SEQ: libc::c_int = 21;
    const TCP_RECV_QUEUE: libc::c_int = 1;
    let fd = conn.socket().as_raw_fd();
    let set = |opt: libc::c_int, v: libc::c_int| {
        let rc = unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, opt, (&v as *const libc::c_int).cast(), 4) };
        assert_eq!(rc, 0, "setsockopt {opt}: {}", std::io::Error::last_os_error());
    };
    set(TCP_REPAIR, 1);
    set(TCP_REPAIR_QUEUE, TCP_RECV_QUEUE);
    let mut seq: u32 = 0;
    let mut len = 4u32;
    let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, (&mut seq as *mut u32).cast(), &mut len) };
    assert_eq!(rc, 0, "TCP_QUEUE_SEQ: {}", std::io::Error::last_os_error());
    seq
}

/// Sends, from the client, ICMP fragmentation-needed (MTU `mtu`) to the VIP about the
/// backend's segment VIP:80 → client:`cport` with sequence number `seq`, as a router on the
/// way back would.
fn send_frag_needed(client: &Host, cport: u16, seq: u32, mtu: u16) {
    let mut quoted = vec![0x45, 0, 0x05, 0xdc, 0x12, 0x34, 0x40, 0, 63, 6, 0, 0];
    quoted.extend_from_slice(&VIP.octets());
    quoted.extend_from_slice(&CLIENT_IP.octets());
    let sum = checksum(&quoted);
    quoted[10..12].copy_from_slice(&sum.to_be_bytes());
    quoted.extend_from_slice(&80u16.to_be_bytes());
    quoted.extend_from_slice(&cport.to_be_bytes());
    quoted.extend_from_slice(&seq.to_be_bytes());
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&quoted);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    client.run_in(|| {
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
        assert!(fd >= 0, "raw ICMP socket: {}", std::io::Error::last_os_error());
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let to = libc::sockaddr_in { sin_family: libc::AF_INET as u16, sin_port: 0, sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(VIP.octets()) }, sin_zero: [0; 8] };
        let rc = unsafe { libc::sendto(fd.as_raw_fd(), icmp.as_ptr().cast(), icmp.len(), 0, (&to as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) };
        assert_eq!(rc, icmp.len() as isize, "sending the ICMP error: {}", std::io::Error::last_os_error());
    });
}

/// RFC 1071 over `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What `ip route get CLIENT` says on `h`.
fn route_to_client(h: &Host) -> String {
    h.ns.ip(&["route", "get", &CLIENT_IP.to_string()])
}

/// A keep-alive connection through the VIP is served by some backend; an ICMP
/// fragmentation-needed about it sent to the VIP must reach that backend and lower its path
/// MTU to the client.
fn packet_too_big_reaches_the_backend(topo: &Topology, daemon: &Daemon, backends: &[&Host]) {
    let vip = SocketAddrV4::new(VIP, 80);
    let mut conn = topo.client().run_in(|| KeepAliveConn::connect(vip, TIMEOUT, None)).expect("a connection through the VIP");
    let (status, body) = conn.request("/").expect("a request on it");
    assert_eq!(status, 200);
    let served = backends.iter().find(|b| b.name == body.trim()).unwrap_or_else(|| panic!("served by {body:?}"));
    for b in backends {
        assert!(!route_to_client(b).contains("mtu 1300"), "{}: a path MTU before the test: {}", b.name, route_to_client(b));
    }
    let steered = n(&lb_stats(daemon), "icmp_steered");
    let seq = rcv_nxt(&conn);
    send_frag_needed(topo.client(), conn.local_addr().port(), seq, 1300);
    let lowered = poll_until(Duration::from_secs(3), Duration::from_millis(50), || route_to_client(served).contains("mtu 1300").then_some(()));
    assert!(
        lowered.is_some(),
        "{} (which serves the connection) did not lower its path MTU to the client: {}; LB stats {:#}",
        served.name,
        route_to_client(served),
        lb_stats(daemon)
    );
    assert_eq!(n(&lb_stats(daemon), "icmp_steered"), steered + 1, "the LB steered the error");
    for b in backends.iter().filter(|b| b.name != served.name) {
        assert!(!route_to_client(b).contains("mtu 1300"), "{} got the error too: {}", b.name, route_to_client(b));
    }
}

#[test]
fn a_packet_too_big_for_a_live_connection_lowers_its_backends_path_mtu_in_layer_2() {
    require_root!();
    let mut topo = Topology::builder().backends(2).build();
    let config = topo.config(&[(1, 100), (2, 100)]);
    let daemon = Daemon::start(&mut topo, &config);
    packet_too_big_reaches_the_backend(&topo, &daemon, &[topo.backend(1), topo.backend(2)]);
}

#[test]
fn a_packet_too_big_for_a_live_connection_lowers_its_backends_path_mtu_in_layer_3() {
    require_root!();
    let (topo, daemon) = start_ipip();
    packet_too_big_reaches_the_backend(&topo, &daemon, &[topo.routed(1), topo.routed(2)]);
}

const DGRAM_PORT: u16 = 5000;
const DGRAM_LEN: usize = 4000;

/// What one listener received: (source port, length) per datagram.
type Received = Vec<(u16, usize)>;

/// A UDP listener on 0.0.0.0:`DGRAM_PORT` in each backend's namespace: what each received,
/// until finished.
struct Receivers {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, std::thread::JoinHandle<Received>)>,
}

impl Receivers {
    fn start(hosts: &[&Host]) -> Receivers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = hosts
            .iter()
            .map(|h| {
                let sock = h.run_in(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, DGRAM_PORT))).expect("binding the UDP listener");
                sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                let flag = stop.clone();
                let t = std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = vec![0u8; 65536];
                    while !flag.load(Ordering::Relaxed) {
                        if let Ok((len, from)) = sock.recv_from(&mut buf) {
                            got.push((from.port(), len));
                        }
                    }
                    got
                });
                (h.name.clone(), t)
            })
            .collect();
        Receivers { stop, threads }
    }

    fn finish(self) -> BTreeMap<String, Received> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().map(|(n, t)| (n, t.join().expect("receiver"))).collect()
    }
}

/// The three fragments of a `DGRAM_LEN`-byte UDP datagram from the client's `sport` to
/// VIP:`DGRAM_PORT`, raw IPv4 packets (identification `id`), to send in any order.
fn fragments(sport: u16, id: u16) -> Vec<Vec<u8>> {
    let mut udp = sport.to_be_bytes().to_vec();
    udp.extend_from_slice(&DGRAM_PORT.to_be_bytes());
    udp.extend_from_slice(&((8 + DGRAM_LEN) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend(std::iter::repeat_n(0x42, DGRAM_LEN));
    udp.chunks(1480)
        .enumerate()
        .map(|(i, chunk)| {
            let more = (i + 1) * 1480 < udp.len();
            let off = ((i * 1480 / 8) as u16) | if more { 0x2000 } else { 0 };
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&id.to_be_bytes());
            ip.extend_from_slice(&off.to_be_bytes());
            ip.extend_from_slice(&[64, 17, 0, 0]);
            ip.extend_from_slice(&CLIENT_IP.octets());
            ip.extend_from_slice(&VIP.octets());
            ip.extend_from_slice(chunk);
            ip
        })
        .collect()
}

#[test]
fn fragmented_datagrams_arrive_whole_at_one_backend_and_reversed_fragments_are_counted() {
    require_root!();
    let mut topo = Topology::builder().backends(3).nginx(true).build();
    let weights = [(1, 100), (2, 100), (3, 100)];
    let config = topo.config(&weights).service(Service::new("dgram", DGRAM_PORT, "udp").weighted(&weights));
    let daemon = Daemon::start(&mut topo, &config);
    let backends = [topo.backend(1), topo.backend(2), topo.backend(3)];
    let rx = Receivers::start(&backends);
    // 50 datagrams of 4,000 bytes from 50 ports: the client's kernel sends each as three
    // fragments (MTU 1,500).
    topo.client().run_in(|| {
        for i in 0..50u16 {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 41000 + i)).expect("a client UDP socket");
            s.send_to(&[0x42; DGRAM_LEN], (VIP, DGRAM_PORT)).expect("sending a datagram");
        }
    });
    let stats = poll_until(Duration::from_secs(3), Duration::from_millis(50), || {
        let s = lb_stats(&daemon);
        (n(&s, "fragment_followed") >= 100).then_some(s)
    });
    let got = rx.finish();
    let all: Vec<(String, u16, usize)> = got.iter().flat_map(|(h, v)| v.iter().map(|(p, l)| (h.clone(), *p, *l))).collect();
    assert!(stats.is_some(), "fewer than 100 later fragments followed their first; received {all:?}\n{:#}", lb_stats(&daemon));
    let ports: BTreeSet<u16> = all.iter().map(|(_, p, _)| *p).collect();
    assert_eq!(all.len(), 50, "each datagram arrived once, at one backend: {got:?}");
    assert_eq!(ports, (41000..41050).collect(), "from every port");
    assert!(all.iter().all(|(_, _, l)| *l == DGRAM_LEN), "whole: {all:?}");
    assert!(got.values().filter(|v| !v.is_empty()).count() >= 2, "spread over the backends: {got:?}");
    let s = lb_stats(&daemon);
    assert!(n(&s, "fragment_tracked") >= 50, "{s:#}");
    assert_eq!(n(&s, "drop_fragment_orphan"), 0, "{s:#}");

    // The same datagram with its fragments reversed: the two that come before their first
    // are orphans, counted and dropped; the datagram never arrives (no reassembly in XDP).
    let rx = Receivers::start(&backends);
    let mut frags = fragments(42000, 0x4242);
    frags.reverse();
    topo.client().run_in(|| {
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let to = libc::sockaddr_in { sin_family: libc::AF_INET as u16, sin_port: 0, sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(VIP.octets()) }, sin_zero: [0; 8] };
        for f in &frags {
            let rc = unsafe { libc::sendto(fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0, (&to as *const libc::sockaddr_in).cast(), size_of::<libc::sockaddr_in>() as u32) };
            assert_eq!(rc, f.len() as isize, "sending a fragment: {}", std::io::Error::last_os_error());
        }
    });
    let orphans = poll_until(Duration::from_secs(2), Duration::from_millis(20), || (n(&lb_stats(&daemon), "drop_fragment_orphan") >= 2).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    let got = rx.finish();
    assert!(orphans.is_some(), "reversed fragments not counted: {:#}", lb_stats(&daemon));
    assert_eq!(n(&lb_stats(&daemon), "drop_fragment_orphan"), 2);
    assert!(got.values().all(|v| v.is_empty()), "a datagram whose fragments came reversed arrived: {got:?}");
}

/// The client's neighbour entry for `ip`: its states (`ip -j neigh`), if any.
fn neighbour_states(h: &Host, ip: &str) -> Vec<String> {
    let out = h.ns.ip(&["-6", "-j", "neigh", "show", ip, "dev", "eth0"]);
    let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    v.get(0).and_then(|e| e["state"].as_array()).map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// A link-local address on `h`'s eth0 that finished duplicate address detection.
fn usable_link_local(h: &Host) -> Option<Ipv6Addr> {
    let v: Value = serde_json::from_str(&h.ns.ip(&["-j", "addr", "show", "dev", "eth0"])).ok()?;
    v.pointer("/0/addr_info")?.as_array()?.iter().find_map(|a| {
        let done = a["tentative"].as_bool() != Some(true) && a["dadfailed"].as_bool() != Some(true);
        (a["scope"] == "link" && done).then(|| a["local"].as_str()?.parse().ok()).flatten()
    })
}

#[test]
fn with_accept_mode_off_the_clients_neighbour_entry_for_an_ipv6_vip_stays_reachable() {
    require_root!();
    let _serial = fj_lb_tests::one_at_a_time();
    let mut topo = Topology::builder().lbs(2).backends(1).nginx(false).ipv6(true).build();
    let lb1 = topo.lb_n(1);
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(50), || usable_link_local(lb1)).is_some(),
        "lb1 has no usable link-local address: {}",
        lb1.ns.ip(&["addr", "show", "dev", "eth0"])
    );
    // A VRRP-only config on lb1: the IPv6 VIP, accept_mode left at false (RFC 5798's default).
    let vrrp = VrrpSettings::bare(52, 150, &format!("{VIP6}/64"));
    let config = Config::new(&topo.bpffs_dir_of(1), &topo.control_socket_of(1)).flow_table_size(4096).maglev_table_size(251).vrrp(Some(&vrrp));
    let daemon = Daemon::start_on(&mut topo, 1, &config, Readiness::Attached);
    let master = poll_until(Duration::from_secs(5), Duration::from_millis(50), || daemon.vrrp_status().ok().filter(|s| s.is_master()));
    assert!(master.is_some(), "lb1 did not become master: {:?}\n{}", daemon.vrrp_status(), daemon.log());
    // Short neighbour timers on the client, so that a few probe cycles fit in seconds:
    // REACHABLE for ~1 s, STALE, then DELAY 1 s and PROBE with unicast solicitations.
    let client = topo.client();
    for (k, v) in [("base_reachable_time_ms", "1000"), ("delay_first_probe_time", "1"), ("retrans_time_ms", "200")] {
        client.ns.sysctl(&format!("net.ipv6.neigh.eth0.{k}"), v);
    }
    let vip6 = VIP6.to_string();
    let sock = client.run_in(|| UdpSocket::bind("[::]:0")).expect("a client UDP socket");
    let nd_before = n(&lb_stats(&daemon), "pass_neighbour_discovery");
    // Keep sending (UDP: no upper-layer confirmation of reachability) and watch the entry.
    let mut states: Vec<String> = Vec::new();
    let end = Instant::now() + Duration::from_secs(9);
    while Instant::now() < end {
        let _ = sock.send_to(b"still here", (VIP6, 9));
        let s = neighbour_states(client, &vip6).join("|");
        if states.last() != Some(&s) {
            states.push(s);
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let first = states.iter().position(|s| s == "REACHABLE").unwrap_or_else(|| panic!("never REACHABLE: {states:?}"));
    let after: Vec<&String> = states[first..].iter().collect();
    assert!(after.iter().all(|s| s != &"FAILED" && s != &"INCOMPLETE" && !s.is_empty()), "the entry failed its reachability probe: {states:?}");
    // DELAY ends in PROBE, a unicast solicitation to the VIP; answered at once, PROBE lasts
    // too short to sample: each DELAY → REACHABLE is one probe cycle answered. Unanswered,
    // the entry would sit in PROBE for 3 × 200 ms and then be FAILED.
    let cycles = after.windows(2).filter(|w| (w[0] == "DELAY" || w[0] == "PROBE") && w[1] == "REACHABLE").count();
    assert!(cycles >= 2, "fewer than two probe cycles answered in 9 s: {states:?}");
    let nd = n(&lb_stats(&daemon), "pass_neighbour_discovery") - nd_before;
    assert!(nd >= cycles as u64, "the LB counted {nd} neighbour discovery packets passed; {cycles} probe cycles");
}
