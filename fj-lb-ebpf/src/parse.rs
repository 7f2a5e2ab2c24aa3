//! Packet parsing with a bounds check before every read: the verifier insists, and a truncated
//! or malformed packet must come out of here as a reason to pass it, never as a flow.
use core::mem;

use aya_ebpf::programs::XdpContext;
use fj_lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP, Stat};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

#[repr(C)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub vtc_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

/// Only the ports are read, but the whole fixed header must be present for a packet to count
/// as TCP: a shorter one is malformed and is left to the kernel.
#[repr(C)]
pub struct TcpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub seq: [u8; 4],
    pub ack: [u8; 4],
    pub doff_flags: [u8; 2],
    pub window: [u8; 2],
    pub check: [u8; 2],
    pub urg: [u8; 2],
}

#[repr(C)]
pub struct UdpHdr {
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

const IP_OFFSET: u16 = 0x1fff;

/// IPv6 next-header values that are extension headers, not a transport.
const IPV6_EXT_HEADERS: [u8; 7] = [0, 43, 44, 50, 51, 60, 135];

#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Parses the frame into `key`, the flow it belongs to, or says why it is not a balanced
/// flow. The addresses are filled in as soon as they are known, so a packet refused for its
/// transport (ICMP, say) still tells who it was for.
#[inline(always)]
pub fn parse_flow(ctx: &XdpContext, key: &mut FlowKey) -> Result<(), Stat> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Stat::PassMalformed)?;
    let ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type });
    let l4_off;
    match ether_type {
        ETH_P_IP => {
            let ip: *const Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::PassMalformed)?;
            let version_ihl = unsafe { (*ip).version_ihl };
            if version_ihl >> 4 != 4 {
                return Err(Stat::PassMalformed);
            }
            // Options make the header longer than 20 bytes: skip them, never read them.
            let ihl = ((version_ihl & 0x0f) as usize) * 4;
            if ihl < mem::size_of::<Ipv4Hdr>() {
                return Err(Stat::PassMalformed);
            }
            let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len }) as usize;
            if tot_len < ihl {
                return Err(Stat::PassMalformed);
            }
            let frag = u16::from_be_bytes(unsafe { (*ip).frag_off });
            // A first fragment carries the ports and is balanced; the ones after it carry none.
            if frag & IP_OFFSET != 0 {
                return Err(Stat::PassFragment);
            }
            key.family = FAMILY_V4;
            key.proto = unsafe { (*ip).proto };
            unsafe {
                key.src[..4].copy_from_slice(&(*ip).saddr);
                key.dst[..4].copy_from_slice(&(*ip).daddr);
            }
            l4_off = EthHdr::LEN + ihl;
        }
        ETH_P_IPV6 => {
            let ip: *const Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::PassMalformed)?;
            if unsafe { (*ip).vtc_flow[0] } >> 4 != 6 {
                return Err(Stat::PassMalformed);
            }
            let next = unsafe { (*ip).next_hdr };
            if IPV6_EXT_HEADERS.contains(&next) {
                return Err(Stat::PassIpv6ExtHeader);
            }
            key.family = FAMILY_V6;
            key.proto = next;
            unsafe {
                key.src = (*ip).saddr;
                key.dst = (*ip).daddr;
            }
            l4_off = EthHdr::LEN + mem::size_of::<Ipv6Hdr>();
        }
        _ => return Err(Stat::PassNotIp),
    }
    match key.proto {
        PROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4_off).ok_or(Stat::PassMalformed)?;
            let doff = unsafe { (*tcp).doff_flags[0] } >> 4;
            if doff < 5 {
                return Err(Stat::PassMalformed);
            }
            key.sport = u16::from_be_bytes(unsafe { (*tcp).sport });
            key.dport = u16::from_be_bytes(unsafe { (*tcp).dport });
        }
        PROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4_off).ok_or(Stat::PassMalformed)?;
            key.sport = u16::from_be_bytes(unsafe { (*udp).sport });
            key.dport = u16::from_be_bytes(unsafe { (*udp).dport });
        }
        _ => return Err(Stat::PassNotL4),
    }
    Ok(())
}

impl EthHdr {
    pub const LEN: usize = mem::size_of::<EthHdr>();
}
