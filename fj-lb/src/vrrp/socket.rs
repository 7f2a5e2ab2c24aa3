//! The raw sockets VRRP needs, over libc: IPv4 and IPv6 sockets for protocol 112 (and ICMPv6
//! for neighbour advertisements), receiving with the hop limit, and AF_PACKET for whole frames.
use std::{
    io, mem,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::packet::{IPPROTO_VRRP, MCAST_V4, MCAST_V6};

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
/// not be, since a bound raw socket only sees packets addressed to its address. `join`: in
/// the multicast group (not with unicast peers, as keepalived).
pub(super) fn open_v4(ifname: &str, ifindex: u32, primary: Ipv4Addr, bind: bool, join: bool) -> io::Result<OwnedFd> {
    let fd = raw_socket(libc::AF_INET, IPPROTO_VRRP as i32, ifname)?;
    let mreq = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: u32::from_ne_bytes(MCAST_V4.octets()) },
        imr_address: libc::in_addr { s_addr: u32::from_ne_bytes(primary.octets()) },
        imr_ifindex: ifindex as i32,
    };
    if join {
        setsockopt(&fd, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
    }
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &255i32)?;
    // Unicast adverts leave with TTL 255 too, as keepalived's do (RFC 5798's check).
    setsockopt(&fd, libc::IPPROTO_IP, libc::IP_TTL, &255i32)?;
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

/// Sends one advert to `to`: the multicast group, or a unicast peer.
pub(super) fn send_v4(fd: &OwnedFd, to: Ipv4Addr, msg: &[u8]) -> io::Result<()> {
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(to.octets()) },
        sin_zero: [0; 8],
    };
    send_to(fd, msg, &sa)
}

/// Receives one IPv4 packet, IP header included (a raw IPv4 socket hands it over).
pub(super) fn recv_v4(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
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
/// interface, hop limit 255 on the way out and reported on the way in, with the destination
/// (multicast or unicast). `join`: in the VRRP multicast group.
pub(super) fn open_v6(ifname: &str, ifindex: u32, link_local: Ipv6Addr, proto: i32, bind: bool, join: bool) -> io::Result<OwnedFd> {
    let fd = raw_socket(libc::AF_INET6, proto, ifname)?;
    // Through the virtual-MAC macvlan we send from the parent's link-local address, which the
    // macvlan does not hold: allow binding to it.
    const IPV6_FREEBIND: libc::c_int = 78;
    setsockopt(&fd, libc::IPPROTO_IPV6, IPV6_FREEBIND, &1i32)?;
    if proto == IPPROTO_VRRP as i32 {
        if join {
            let mreq = libc::ipv6_mreq { ipv6mr_multiaddr: libc::in6_addr { s6_addr: MCAST_V6.octets() }, ipv6mr_interface: ifindex };
            setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_ADD_MEMBERSHIP, &mreq)?;
        }
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT, &1i32)?;
        setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &1i32)?;
    }
    setsockopt(&fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &255i32)?;
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

pub(super) fn send_v6(fd: &OwnedFd, to: Ipv6Addr, ifindex: u32, msg: &[u8]) -> io::Result<()> {
    send_to(fd, msg, &sockaddr_in6(to, ifindex))
}

/// One IPv6 VRRP message as received: where from and to, its hop limit, its length.
pub(super) struct Received6 {
    pub(super) src: Ipv6Addr,
    pub(super) dst: Option<Ipv6Addr>,
    pub(super) hops: Option<u8>,
    pub(super) len: usize,
}

/// Receives one IPv6 VRRP message.
pub(super) fn recv_v6(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<Received6> {
    let mut from: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u8; 128];
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
    let (mut hops, mut dst) = (None, None);
    // SAFETY: walking the control buffer the kernel filled, with the libc CMSG macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
                hops = Some(v as u8);
            }
            if (*c).cmsg_level == libc::IPPROTO_IPV6 && (*c).cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>());
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received6 { src: Ipv6Addr::from(from.sin6_addr.s6_addr), dst, hops, len: n as usize })
}

/// Sends whole Ethernet frames out of `ifindex`, each to the destination MAC it carries.
pub(super) fn send_frames(ifindex: u32, frames: &[Vec<u8>]) -> io::Result<()> {
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
