//! VRRP on the wire and in the kernel: a raw IP socket for advertisements, an AF_PACKET socket
//! for gratuitous ARP, rtnetlink for the virtual addresses. The state machine decides; this
//! runs its actions and feeds it what arrives.
use std::{
    collections::BTreeMap,
    io,
    mem,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant, SystemTime},
};

use futures::TryStreamExt;
use netlink_packet_route::{
    address::{AddressAttribute, AddressHeaderFlag},
    link::LinkFlag,
};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
};
use tracing::{debug, error, info, warn};

use super::{
    machine::{Action, Machine, Params, State, to_centis},
    packet::{Advert, IPPROTO_VRRP, MCAST_V4, MCAST_V6, Reject},
};
use super::status::VrrpStatus;
use crate::model::{addr::{Mac, format_mac}, config::VrrpConfig};

#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("VRRP socket: {0}")]
    Socket(#[source] io::Error),
    #[error("rtnetlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("vrrp.interface {0} has no {1} address of its own to send advertisements from")]
    NoPrimary(String, &'static str),
}

pub enum Command {
    /// A tracked service has no healthy backend (true) or has one again (false).
    ServicesDown(bool),
    Shutdown(oneshot::Sender<()>),
}

pub struct Vrrp {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<VrrpStatus>,
    pub task: tokio::task::JoinHandle<()>,
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

fn sockerr<T>(r: libc::c_int, v: T) -> io::Result<T> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(v) }
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let r = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), mem::size_of::<T>() as libc::socklen_t)
    };
    sockerr(r, ())
}

/// A non-blocking raw socket of `domain` for `proto`, bound to the device `ifname`.
fn raw_socket(domain: libc::c_int, proto: libc::c_int, ifname: &str) -> io::Result<OwnedFd> {
    let raw = unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
    sockerr(raw, ())?;
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let name = ifname.as_bytes();
    sockerr(
        unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_ptr().cast(), name.len() as u32) },
        (),
    )?;
    Ok(fd)
}

/// A raw IPv4 socket for protocol 112 on one interface. The sending one is bound to our
/// primary address (the advert's source, which the checksum covers); the receiving one must
/// not be, since a bound raw socket only sees packets addressed to its address.
fn open_v4(ifname: &str, ifindex: u32, primary: Ipv4Addr, bind: bool) -> io::Result<OwnedFd> {
    let fd = raw_socket(libc::AF_INET, IPPROTO_VRRP as i32, ifname)?;
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: u32::from_ne_bytes(MCAST_V4.octets()) },
        imr_address: libc::in_addr { s_addr: u32::from_ne_bytes(primary.octets()) },
        imr_ifindex: ifindex as i32,
    };
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &255i32)?;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, &0i32)?;
    // Internetwork control precedence, as keepalived sends.
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_TOS, &0xc0i32)?;
    if bind {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(primary.octets()) },
            sin_zero: [0; 8],
        };
        sockerr(
            unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in).cast(), mem::size_of::<libc::sockaddr_in>() as u32) },
            (),
        )?;
    }
    Ok(fd)
}

/// sendto(2) with any sockaddr type.
fn send_to<A>(fd: &OwnedFd, msg: &[u8], addr: &A) -> io::Result<()> {
    let r = unsafe {
        libc::sendto(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0, (addr as *const A).cast(), mem::size_of::<A>() as u32)
    };
    sockerr(r as i32, ())
}

fn send_v4(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(MCAST_V4.octets()) },
        sin_zero: [0; 8],
    };
    send_to(fd, msg, &sa)
}

fn sockaddr_in6(ip: Ipv6Addr, scope: u32) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as u16,
        sin6_port: 0,
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: ip.octets() },
        sin6_scope_id: scope,
    }
}

/// A raw IPv6 socket for protocol 112 (or ICMPv6 for neighbour advertisements) on one
/// interface, hop limit 255 on the way out and reported on the way in.
fn open_v6(ifname: &str, ifindex: u32, link_local: Ipv6Addr, proto: i32, bind: bool) -> io::Result<OwnedFd> {
    let fd = raw_socket(libc::AF_INET6, proto, ifname)?;
    // Through the virtual-MAC macvlan we send from the parent's link-local address, which the
    // macvlan does not hold: allow binding to it.
    const IPV6_FREEBIND: libc::c_int = 78;
    setsockopt(&fd, libc::IPPROTO_IPV6, IPV6_FREEBIND, &1i32)?;
    if proto == IPPROTO_VRRP as i32 {
        let mreq = libc::ipv6_mreq { ipv6mr_multiaddr: libc::in6_addr { s6_addr: MCAST_V6.octets() }, ipv6mr_interface: ifindex };
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &1i32)?;
    }
    setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &(ifindex as i32))?;
    setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &255i32)?;
    setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, &0i32)?;
    if bind {
        let sa = sockaddr_in6(link_local, ifindex);
        sockerr(
            unsafe { libc::bind(fd.as_raw_fd(), (&sa as *const libc::sockaddr_in6).cast(), mem::size_of::<libc::sockaddr_in6>() as u32) },
            (),
        )?;
    }
    Ok(fd)
}

fn send_v6(fd: &OwnedFd, to: Ipv6Addr, ifindex: u32, msg: &[u8]) -> io::Result<()> {
    send_to(fd, msg, &sockaddr_in6(to, ifindex))
}

/// Receives one IPv6 VRRP message: (source, hop limit, message).
fn recv_v6(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<(Ipv6Addr, Option<u8>, usize)> {
    let mut from: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u8; 64];
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut hops = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc CMSG macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
                hops = Some(v as u8);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((Ipv6Addr::from(from.sin6_addr.s6_addr), hops, n as usize))
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) for `target`, override flag set,
/// with our MAC as the target link-layer address. The kernel fills the ICMPv6 checksum.
pub fn unsolicited_na(mac: &Mac, target: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(mac);
    m
}

/// A gratuitous ARP (an ARP request for our own address), so switches and clients learn at
/// once which MAC now holds the address.
pub fn garp_frame(mac: &Mac, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(mac);
    f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
    f.extend_from_slice(mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

fn send_frames(ifindex: u32, frames: &[Vec<u8>]) -> io::Result<()> {
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    sockerr(raw, ())?;
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    for f in frames {
        sll.sll_addr[..6].copy_from_slice(&f[..6]);
        send_to(&fd, f, &sll)?;
    }
    Ok(())
}

/// Our own address on the interface, the advert source and the tie-breaker: the first IPv4
/// address that is not virtual, or for IPv6 the link-local address (RFC 5798 §5.1.2.1).
async fn primary(handle: &rtnetlink::Handle, ifindex: u32, v6: bool, exclude: &[IpAddr]) -> Result<Option<IpAddr>, VrrpError> {
    let mut addrs = handle.address().get().set_link_index_filter(ifindex).execute();
    while let Some(msg) = addrs.try_next().await? {
        for a in &msg.attributes {
            let ip = match a {
                AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => *ip,
                _ => continue,
            };
            let wanted = match ip {
                IpAddr::V4(_) => !v6,
                IpAddr::V6(x) => v6 && (x.segments()[0] & 0xffc0) == 0xfe80,
            };
            if wanted && !exclude.contains(&ip) {
                return Ok(Some(ip));
            }
        }
    }
    Ok(None)
}

async fn carrier(handle: &rtnetlink::Handle, ifindex: u32) -> bool {
    let mut links = handle.link().get().match_index(ifindex).execute();
    match links.try_next().await {
        Ok(Some(l)) => l.header.flags.contains(&LinkFlag::LowerUp),
        _ => false,
    }
}

async fn add_addresses(handle: &rtnetlink::Handle, ifindex: u32, addrs: &[(IpAddr, u8)]) {
    for (ip, prefix) in addrs {
        let mut req = handle.address().add(ifindex, *ip, *prefix).replace();
        if ip.is_ipv6() {
            // No duplicate address detection: the address must answer now, not in a second.
            req.message_mut().header.flags.push(AddressHeaderFlag::Nodad);
        }
        match req.execute().await {
            Ok(()) => info!(address = %ip, prefix, "virtual address added"),
            Err(e) => error!(address = %ip, error = %e, "adding the virtual address failed"),
        }
    }
}

async fn remove_addresses(handle: &rtnetlink::Handle, ifindex: u32, addrs: &[(IpAddr, u8)]) {
    for (ip, _) in addrs {
        let mut found = handle.address().get().set_link_index_filter(ifindex).set_address_filter(*ip).execute();
        while let Ok(Some(msg)) = found.try_next().await {
            match handle.address().del(msg).execute().await {
                Ok(()) => info!(address = %ip, "virtual address removed"),
                Err(e) => error!(address = %ip, error = %e, "removing the virtual address failed"),
            }
        }
    }
}

struct Runner {
    cfg: VrrpConfig,
    handle: rtnetlink::Handle,
    ifindex: u32,
    /// Where the virtual addresses live and adverts leave: the interface, or the virtual-MAC
    /// macvlan on it.
    vip_ifindex: u32,
    send_dev: String,
    /// The MAC the virtual addresses are announced with.
    mac: Mac,
    vmac: Option<VirtualMac>,
    primary: IpAddr,
    fd: AsyncFd<OwnedFd>,
    send_fd: OwnedFd,
    machine: Machine,
    epoch: Instant,
    status: VrrpStatus,
    status_tx: watch::Sender<VrrpStatus>,
    services_down: bool,
    carrier_lost: bool,
    last_reject_log: Option<Instant>,
    garp_task: Option<tokio::task::JoinHandle<()>>,
}

/// RFC 5798 §7.3: 00-00-5E-00-01-{VRID} for IPv4, 00-00-5E-00-02-{VRID} for IPv6.
pub fn virtual_mac(vrid: u8, v6: bool) -> Mac {
    [0x00, 0x00, 0x5e, 0x00, if v6 { 0x02 } else { 0x01 }, vrid]
}

/// The macvlan that carries the virtual MAC: the VIPs live on it, so the kernel answers ARP
/// for them with the virtual MAC and the NIC accepts frames sent to it. The XDP program on
/// the parent still sees every frame first.
struct VirtualMac {
    name: String,
    ifindex: u32,
    /// The parent's arp_ignore and arp_announce before we changed them, restored on stop.
    sysctls: Vec<(String, String)>,
}

fn arp_sysctl(ifname: &str, name: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{ifname}/{name}")
}

async fn create_vmac(handle: &rtnetlink::Handle, parent: &str, parent_index: u32, vrid: u8, v6: bool) -> Result<VirtualMac, VrrpError> {
    // Bridge mode: a multicast frame whose source MAC is one of our macvlans (the other
    // router's adverts carry the same virtual MAC) still reaches the parent; private mode
    // would take it for our own and swallow it.
    const MACVLAN_MODE_BRIDGE: u32 = 4;
    let name = format!("fjvrrp{vrid}");
    // A leftover from a daemon that was killed: it also left the sysctls below as it set them,
    // so what we would read now is ours, not the host's; the kernel defaults (0) stand in.
    let mut old = handle.link().get().match_name(name.clone()).execute();
    let leftover = match old.try_next().await {
        Ok(Some(l)) => {
            let _ = handle.link().del(l.header.index).execute().await;
            true
        }
        _ => false,
    };
    handle
        .link()
        .add()
        .macvlan(name.clone(), parent_index, MACVLAN_MODE_BRIDGE)
        .address(virtual_mac(vrid, v6).to_vec())
        .execute()
        .await?;
    let mut links = handle.link().get().match_name(name.clone()).execute();
    let ifindex = links.try_next().await?.map(|l| l.header.index).ok_or(VrrpError::NoPrimary(name.clone(), "virtual-MAC"))?;
    // Down until we are master: only the master may use the virtual MAC (RFC 5798 §7.3), and
    // an up macvlan would swallow the master's adverts, which carry the same source MAC.
    handle.link().set(ifindex).down().execute().await?;
    let mut sysctls = Vec::new();
    let mut set = |path: String, value: &str| {
        if leftover {
            sysctls.push((path.clone(), "0".to_string()));
        } else if let Ok(old) = std::fs::read_to_string(&path) {
            sysctls.push((path.clone(), old.trim().to_string()));
        }
        if let Err(e) = std::fs::write(&path, value) {
            warn!(path, error = %e, "cannot set it: clients may learn another MAC for the VIP");
        }
    };
    if v6 {
        // No link-local address of its own (it would be the same on every router): adverts
        // and neighbour advertisements go out from the parent's. Set before it is ever up.
        set(format!("/proc/sys/net/ipv6/conf/{name}/addr_gen_mode"), "1");
    } else {
        // Only the macvlan may tie the VIPs to a MAC, the virtual one: the parent must neither
        // answer ARP for addresses that are not its own (arp_ignore=1) nor put a VIP as sender
        // in its own ARP requests (arp_announce=2), or clients would learn the parent's MAC.
        set(arp_sysctl(parent, "arp_ignore"), "1");
        set(arp_sysctl(parent, "arp_announce"), "2");
    }
    info!(interface = %name, mac = %format_mac(&virtual_mac(vrid, v6)), "virtual MAC interface created");
    Ok(VirtualMac { name, ifindex, sysctls })
}

async fn remove_vmac(handle: &rtnetlink::Handle, v: &VirtualMac) {
    for (path, old) in &v.sysctls {
        let _ = std::fs::write(path, old);
    }

    let h = handle.clone();
    match h.link().del(v.ifindex).execute().await {
        Ok(()) => info!(interface = %v.name, "virtual MAC interface removed"),
        Err(e) => warn!(interface = %v.name, error = %e, "removing the virtual MAC interface failed"),
    }
}

/// Starts the VRRP instance: backup (or master if priority 255) from the first moment.
pub async fn start(cfg: VrrpConfig, handle: rtnetlink::Handle, ifindex: u32, mac: Mac) -> Result<Vrrp, VrrpError> {
    let v6 = cfg.virtual_addresses.iter().any(|(a, _)| a.is_ipv6());
    let vips: Vec<IpAddr> = cfg.virtual_addresses.iter().map(|(a, _)| *a).collect();
    // A VIP left on the interface by a killed daemon is not ours to keep: remove it first, so
    // it is never taken for our primary address.
    remove_addresses(&handle, ifindex, &cfg.virtual_addresses).await;
    let family = if v6 { "IPv6 link-local" } else { "IPv4" };
    let primary = primary(&handle, ifindex, v6, &vips).await?.ok_or_else(|| VrrpError::NoPrimary(cfg.interface.clone(), family))?;
    let vmac = if cfg.use_virtual_mac { Some(create_vmac(&handle, &cfg.interface, ifindex, cfg.vrid, v6).await?) } else { None };
    let (vip_ifindex, announce_mac) = match &vmac {
        Some(v) => (v.ifindex, virtual_mac(cfg.vrid, v6)),
        None => (ifindex, mac),
    };
    // Where adverts and announcements leave: through the macvlan they carry the virtual MAC.
    let (send_dev, send_ifindex) = match &vmac {
        Some(v) => (v.name.clone(), v.ifindex),
        None => (cfg.interface.clone(), ifindex),
    };
    let (sock, send_fd) = match primary {
        IpAddr::V4(p) => (open_v4(&cfg.interface, ifindex, p, false), open_v4(&send_dev, send_ifindex, p, true)),
        IpAddr::V6(p) => (
            open_v6(&cfg.interface, ifindex, p, IPPROTO_VRRP as i32, false),
            open_v6(&send_dev, send_ifindex, p, IPPROTO_VRRP as i32, true),
        ),
    };
    let (sock, send_fd) = (sock.map_err(VrrpError::Socket)?, send_fd.map_err(VrrpError::Socket)?);
    // SAFETY: the OwnedFd is moved into the AsyncFd, which alone closes it.
    let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| VrrpError::Socket(e.into()))?;
    let machine = Machine::new(Params {
        priority: cfg.priority,
        advert_interval: Duration::from_millis(cfg.advert_interval_ms as u64),
        preempt: cfg.preempt,
        primary,
    });
    let status = VrrpStatus {
        state: State::Initialize,
        vrid: cfg.vrid,
        interface: cfg.interface.clone(),
        priority: cfg.priority,
        configured_priority: cfg.priority,
        master: None,
        master_priority: None,
        last_transition: None,
        last_transition_reason: None,
        transitions: 0,
        adverts_sent: 0,
        adverts_received: 0,
        rejected: BTreeMap::new(),
        virtual_addresses: cfg.virtual_addresses.iter().map(|(a, p)| format!("{a}/{p}")).collect(),
    };
    let (status_tx, status_rx) = watch::channel(status.clone());
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    info!(vrid = cfg.vrid, priority = cfg.priority, interface = %cfg.interface, source = %primary, "VRRP starting");
    let mut runner = Runner {
        cfg,
        handle,
        ifindex,
        vip_ifindex,
        send_dev,
        mac: announce_mac,
        vmac,
        primary,
        fd,
        send_fd,
        machine,
        epoch: Instant::now(),
        status,
        status_tx,
        services_down: false,
        carrier_lost: false,
        last_reject_log: None,
        garp_task: None,
    };
    let task = tokio::spawn(async move { runner.run(cmd_rx).await });
    Ok(Vrrp { commands: cmd_tx, status: status_rx, task })
}

impl Runner {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(&mut self, mut commands: mpsc::Receiver<Command>) {
        let actions = self.machine.startup(self.now());
        self.perform(actions).await;
        let mut carrier_tick = tokio::time::interval(Duration::from_secs(1));
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = self.machine.timer().map(|(_, at)| self.epoch + at);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    let a = self.machine.on_timer(self.now());
                    self.perform(a).await;
                }
                r = self.fd.readable() => {
                    let Ok(mut guard) = r else { continue };
                    let v6 = self.primary.is_ipv6();
                    match guard.try_io(|fd| {
                        if v6 {
                            recv_v6(fd.get_ref(), &mut buf).map(|(src, hops, n)| (Some((src, hops)), n))
                        } else {
                            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                            if n < 0 { Err(io::Error::last_os_error()) } else { Ok((None, n as usize)) }
                        }
                    }) {
                        Ok(Ok((None, n))) => {
                            let pkt = buf[..n].to_vec();
                            self.receive(&pkt).await;
                        }
                        Ok(Ok((Some((src, hops)), n))) => {
                            let msg = buf[..n].to_vec();
                            self.receive_v6(src, hops, &msg).await;
                        }
                        Ok(Err(e)) => warn!(error = %e, "receiving VRRP failed"),
                        Err(_would_block) => {}
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::ServicesDown(down)) => {
                        if down != self.services_down {
                            self.services_down = down;
                            self.reprioritise().await;
                        }
                    }
                    Some(Command::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                _ = carrier_tick.tick() => {
                    let lost = !carrier(&self.handle, self.ifindex).await;
                    if lost != self.carrier_lost {
                        if lost { warn!(interface = %self.cfg.interface, "carrier lost") } else { info!(interface = %self.cfg.interface, "carrier back") }
                        self.carrier_lost = lost;
                        self.reprioritise().await;
                    }
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        let a = self.machine.shutdown();
        self.perform(a).await;
        if let Some(v) = self.vmac.take() {
            remove_vmac(&self.handle, &v).await;
        }
    }

    async fn reprioritise(&mut self) {
        let penalty = if self.services_down || self.carrier_lost { self.cfg.track_priority_delta } else { 0 };
        let p = self.cfg.priority.saturating_sub(penalty).max(1);
        if p != self.machine.priority() && self.cfg.priority != 255 {
            warn!(
                priority = p,
                configured = self.cfg.priority,
                services_down = self.services_down,
                carrier_lost = self.carrier_lost,
                "VRRP priority changed by tracking"
            );
        }
        let a = self.machine.set_priority(self.now(), p);
        self.status.priority = self.machine.priority();
        self.perform(a).await;
    }

    fn reject(&mut self, why: Reject) {
        *self.status.rejected.entry(why.as_str().to_string()).or_insert(0) += 1;
        // Rate-limited: a flood of bad packets must not flood the log.
        if self.last_reject_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            self.last_reject_log = Some(Instant::now());
            warn!(reason = why.as_str(), counts = ?self.status.rejected, "VRRP packet discarded (logged at most every 10 s)");
        }
        let _ = self.status_tx.send(self.status.clone());
    }

    async fn receive(&mut self, pkt: &[u8]) {
        // A raw IPv4 socket hands us the IP header too.
        if pkt.len() < 20 || pkt[0] >> 4 != 4 {
            return self.reject(Reject::Truncated);
        }
        let ihl = (pkt[0] & 0x0f) as usize * 4;
        if pkt.len() < ihl || ihl < 20 {
            return self.reject(Reject::Truncated);
        }
        let ttl = pkt[8];
        let src = IpAddr::from([pkt[12], pkt[13], pkt[14], pkt[15]]);
        let dst = IpAddr::from([pkt[16], pkt[17], pkt[18], pkt[19]]);
        let tot = u16::from_be_bytes([pkt[2], pkt[3]]) as usize;
        let msg = pkt[ihl..tot.clamp(ihl, pkt.len())].to_vec();
        self.advert(src, dst, Some(ttl), &msg).await;
    }

    async fn receive_v6(&mut self, src: Ipv6Addr, hops: Option<u8>, msg: &[u8]) {
        self.advert(IpAddr::V6(src), IpAddr::V6(MCAST_V6), hops, msg).await;
    }

    /// Checks one received VRRP message and feeds it to the state machine.
    async fn advert(&mut self, src: IpAddr, dst: IpAddr, ttl: Option<u8>, msg: &[u8]) {
        if src == self.primary {
            return;
        }
        if ttl != Some(255) {
            return self.reject(Reject::Ttl);
        }
        let (adv, _mode) = match Advert::decode(msg, src, dst) {
            Ok(v) => v,
            Err(r) => return self.reject(r),
        };
        if adv.vrid != self.cfg.vrid {
            return self.reject(Reject::Vrid);
        }
        let mut theirs = adv.addresses.clone();
        theirs.sort();
        let mut ours: Vec<IpAddr> = self.cfg.virtual_addresses.iter().map(|(a, _)| *a).collect();
        ours.sort();
        if theirs != ours && adv.priority != 255 {
            return self.reject(Reject::AddressList);
        }
        self.status.adverts_received += 1;
        debug!(from = %src, priority = adv.priority, "advert");
        let interval = Duration::from_millis(adv.max_adver_int as u64 * 10);
        let a = self.machine.on_advert(self.now(), src, adv.priority, interval);
        if self.machine.state() == State::Backup && adv.priority != 0 {
            self.status.master = Some(src);
            self.status.master_priority = Some(adv.priority);
        }
        self.perform(a).await;
        let _ = self.status_tx.send(self.status.clone());
    }

    async fn perform(&mut self, actions: Vec<Action>) {
        // The virtual MAC comes up before the first advert of a new master goes out through it.
        if let Some(v) = &self.vmac
            && actions.contains(&Action::TakeAddresses)
                && let Err(e) = self.handle.link().set(v.ifindex).up().execute().await {
                    error!(interface = %v.name, error = %e, "bringing the virtual MAC interface up failed");
                }
        for a in actions {
            match a {
                Action::SendAdvert { priority } => {
                    let adv = Advert {
                        vrid: self.cfg.vrid,
                        priority,
                        max_adver_int: to_centis(self.machine.advert_interval()),
                        addresses: self.cfg.virtual_addresses.iter().map(|(a, _)| *a).collect(),
                    };
                    let sent = match self.primary {
                        IpAddr::V4(_) => send_v4(&self.send_fd, &adv.encode(self.primary, IpAddr::V4(MCAST_V4), self.cfg.checksum)),
                        IpAddr::V6(_) => {
                            send_v6(&self.send_fd, MCAST_V6, self.vip_ifindex, &adv.encode(self.primary, IpAddr::V6(MCAST_V6), self.cfg.checksum))
                        }
                    };
                    match sent {
                        Ok(()) => self.status.adverts_sent += 1,
                        Err(e) => warn!(error = %e, "sending a VRRP advertisement failed"),
                    }
                }
                Action::TakeAddresses => {
                    add_addresses(&self.handle, self.vip_ifindex, &self.cfg.virtual_addresses).await;
                    self.announce();
                }
                Action::ReleaseAddresses => {
                    if let Some(t) = self.garp_task.take() {
                        t.abort();
                    }
                    remove_addresses(&self.handle, self.vip_ifindex, &self.cfg.virtual_addresses).await;
                    if let Some(v) = &self.vmac
                        && let Err(e) = self.handle.link().set(v.ifindex).down().execute().await {
                            error!(interface = %v.name, error = %e, "taking the virtual MAC interface down failed");
                        }
                }
                Action::Transition { from, to, why } => {
                    let at = SystemTime::now();
                    match to {
                        State::Master => warn!(vrid = self.cfg.vrid, from = from.as_str(), reason = why, "VRRP: now MASTER"),
                        _ => info!(vrid = self.cfg.vrid, from = from.as_str(), to = to.as_str(), reason = why, "VRRP transition"),
                    }
                    self.status.state = to;
                    self.status.transitions += 1;
                    self.status.last_transition = Some(rfc3339(at));
                    self.status.last_transition_reason = Some(why.to_string());
                    if to == State::Master {
                        self.status.master = Some(self.primary);
                        self.status.master_priority = Some(self.machine.priority());
                    } else if to == State::Initialize {
                        self.status.master = None;
                        self.status.master_priority = None;
                    }
                }
            }
        }
        self.status.priority = self.machine.priority();
        let _ = self.status_tx.send(self.status.clone());
    }

    /// Gratuitous ARPs (IPv6: unsolicited neighbour advertisements) now, `garp_repeat` times,
    /// and the same again 5 s later (as keepalived does) for switches and hosts that missed the
    /// first burst.
    fn announce(&mut self) {
        let frames: Vec<Vec<u8>> = self
            .cfg
            .virtual_addresses
            .iter()
            .map(|(a, _)| match a {
                IpAddr::V4(v4) => garp_frame(&self.mac, *v4),
                IpAddr::V6(v6) => unsolicited_na(&self.mac, *v6),
            })
            .collect();
        let na_socket = match self.primary {
            IpAddr::V6(ll) => match open_v6(&self.send_dev, self.vip_ifindex, ll, libc::IPPROTO_ICMPV6, true) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(error = %e, "cannot open an ICMPv6 socket for neighbour advertisements");
                    return;
                }
            },
            IpAddr::V4(_) => None,
        };
        let (ifindex, na_ifindex, repeat, gap) =
            (self.ifindex, self.vip_ifindex, self.cfg.garp_repeat, Duration::from_millis(self.cfg.garp_interval_ms as u64));
        if let Some(t) = self.garp_task.take() {
            t.abort();
        }
        self.garp_task = Some(tokio::spawn(async move {
            for burst in 0..2 {
                if burst == 1 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                for i in 0..repeat {
                    let sent = match &na_socket {
                        None => send_frames(ifindex, &frames),
                        Some(s) => frames.iter().try_for_each(|na| send_v6(s, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), na_ifindex, na)),
                    };
                    if let Err(e) = sent {
                        warn!(error = %e, "sending gratuitous ARP / unsolicited NA failed");
                    }
                    if i + 1 < repeat {
                        tokio::time::sleep(gap).await;
                    }
                }
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_is_an_arp_request_for_our_own_address() {
        let f = garp_frame(&[2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &[10, 0, 0, 100]);
        assert_eq!(&f[38..42], &[10, 0, 0, 100]);
    }

    #[test]
    fn unsolicited_na_overrides_and_carries_our_mac() {
        let m = unsolicited_na(&[2, 0, 0, 0, 0, 9], "2001:db8::100".parse().unwrap());
        assert_eq!(m.len(), 32);
        assert_eq!(m[0], 136, "neighbour advertisement");
        assert_eq!(m[4], 0x20, "override, not solicited, not a router");
        assert_eq!(&m[8..24], &"2001:db8::100".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(&m[24..32], &[2, 1, 2, 0, 0, 0, 0, 9], "target link-layer address option");
    }

    #[test]
    fn virtual_macs_follow_rfc_5798() {
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(7, true), [0, 0, 0x5e, 0, 2, 7]);
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_737_600 + 3661)), "2026-11-27T01:01:01Z");
    }
}
