//! Packet parsing with a bounds check before every read: the verifier insists, and a truncated
//! or malformed packet must come out of here as a reason to pass it, never as a flow.
//!
//! Two bounds hold every read: the frame's end, and the end of the IP packet as its own header
//! says (`L3::ip_end`). A transport header read past the IP length would take its ports from
//! Ethernet padding or from whatever trails the datagram.
use core::mem;

use aya_ebpf::programs::XdpContext;
use fj_lb_common::{FAMILY_V4, FAMILY_V6, FlowKey, PROTO_TCP, PROTO_UDP, Stat};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

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

/// ICMP and ICMPv6 share the first four bytes; the next four depend on the type (the MTU of
/// fragmentation-needed and packet-too-big).
#[repr(C)]
pub struct IcmpHdr {
    pub kind: u8,
    pub code: u8,
    pub check: [u8; 2],
    pub rest: [u8; 4],
}

impl EthHdr {
    pub const LEN: usize = mem::size_of::<EthHdr>();
}
impl Ipv4Hdr {
    pub const LEN: usize = mem::size_of::<Ipv4Hdr>();
}
impl Ipv6Hdr {
    pub const LEN: usize = mem::size_of::<Ipv6Hdr>();
}
impl UdpHdr {
    pub const LEN: usize = mem::size_of::<UdpHdr>();
}
impl IcmpHdr {
    pub const LEN: usize = mem::size_of::<IcmpHdr>();
}

const IP_MF: u16 = 0x2000;
const IP_DF: u16 = 0x4000;
const IP_OFFSET: u16 = 0x1fff;

/// IPv6 extension headers walked before giving up (RFC 8200 §4.1 orders at most a handful in
/// any real packet: hop-by-hop, destination options, routing, fragment, destination options).
pub const MAX_EXT_HEADERS: usize = 4;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_DEST_OPTS: u8 = 60;
/// IPv6 next-header values that are extension headers, not a transport (RFC 8200, RFC 7045's
/// list: also ESP, AH, mobility, HIP, shim6 and the experimental values).
const IPV6_EXT_HEADERS: [u8; 11] = [0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254];

/// Not a fragment, or an "atomic" one (offset 0, no more to come: RFC 6946).
pub const FRAG_NONE: u8 = 0;
/// The first fragment of several: it carries the transport header.
pub const FRAG_FIRST: u8 = 1;
/// A later fragment: no transport header, only data.
pub const FRAG_LATER: u8 = 2;

/// What the parser learned about the IP layer of a frame.
#[derive(Clone, Copy)]
pub struct L3 {
    /// Offset of the transport (or ICMP) header in the frame.
    pub l4_off: usize,
    /// Offset just past the IP packet, as its length field says; never past the frame.
    pub ip_end: usize,
    /// The IP packet's length: IPv4 total length, or 40 + IPv6 payload length.
    pub ip_len: u32,
    /// The transport protocol of this packet (after IPv6 extension headers).
    pub proto: u8,
    /// IPv4 TOS / IPv6 traffic class.
    pub tos: u8,
    /// IPv4's don't-fragment bit (always set for IPv6: routers never fragment it).
    pub df: bool,
    /// `FRAG_NONE`, `FRAG_FIRST` or `FRAG_LATER`.
    pub frag: u8,
    /// The protocol the fragments are keyed by: IPv4's protocol, or the next header named in
    /// the IPv6 fragment header.
    pub frag_proto: u8,
    /// The fragment identification (IPv4 16 bits, IPv6 32 bits).
    pub frag_id: u32,
}

/// Room for a flow key on the stack, 8-byte aligned so it can be zeroed a word at a time.
#[repr(C, align(8))]
pub struct KeySlot(FlowKey);

/// Zeroes `slot` with five 8-byte stores and hands out the key in it. `FlowKey::default()`
/// (or any 40-byte zeroing the compiler sees whole) becomes a call to `memset`, a byte loop
/// as a BPF-to-BPF call of about 80 ns; volatile stores stay five stores.
#[inline(always)]
pub fn zeroed_key(slot: &mut mem::MaybeUninit<KeySlot>) -> &mut FlowKey {
    const WORDS: usize = mem::size_of::<KeySlot>() / 8;
    let words = slot.as_mut_ptr() as *mut u64;
    for i in 0..WORDS {
        // In bounds and aligned: `KeySlot` is `WORDS` words, aligned to 8.
        unsafe { words.add(i).write_volatile(0) };
    }
    // Every byte is initialised, and zero is a valid `FlowKey`.
    unsafe { &mut (*slot.as_mut_ptr()).0 }
}

#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// A `T` at `offset` that lies wholly inside the IP packet (before `ip_end`) and the frame.
/// The frame's bound is checked first: the compiler, knowing `ip_end` is within the frame,
/// would drop a frame check made after the IP one, and the verifier needs it.
#[inline(always)]
pub fn ptr_in<T>(ctx: &XdpContext, offset: usize, ip_end: usize) -> Option<*mut T> {
    let p = ptr_at(ctx, offset)?;
    if offset + mem::size_of::<T>() > ip_end {
        return None;
    }
    Some(p)
}

/// The frame's length.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Parses Ethernet and IP (IPv6 extension headers included) into `key`'s addresses, family
/// and protocol, or says why the frame is not one the balancer looks at. The addresses are
/// filled in as soon as they are known, so a packet refused for its transport (ICMP, say)
/// still tells who it was for.
#[inline(always)]
pub fn parse_l3(ctx: &XdpContext, key: &mut FlowKey) -> Result<L3, Stat> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok_or(Stat::PassMalformed)?;
    let ether_type = u16::from_be_bytes(unsafe { (*eth).ether_type });
    match ether_type {
        ETH_P_IP => parse_ipv4(ctx, key),
        ETH_P_IPV6 => parse_ipv6(ctx, key),
        // Tagged frames are the host's: this balancer takes untagged traffic only.
        ETH_P_8021Q | ETH_P_8021AD => Err(Stat::PassVlan),
        _ => Err(Stat::PassNotIp),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, key: &mut FlowKey) -> Result<L3, Stat> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::PassMalformed)?;
    let version_ihl = unsafe { (*ip).version_ihl };
    if version_ihl >> 4 != 4 {
        return Err(Stat::PassMalformed);
    }
    // Options make the header longer than 20 bytes: skip them, never read them.
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if ihl < Ipv4Hdr::LEN {
        return Err(Stat::PassMalformed);
    }
    let tot_len = u16::from_be_bytes(unsafe { (*ip).tot_len }) as usize;
    let ip_end = EthHdr::LEN + tot_len;
    // A header longer than the packet, or a packet longer than the frame, is not trusted.
    if tot_len < ihl || ip_end > frame_len(ctx) {
        return Err(Stat::PassMalformed);
    }
    let frag_off = u16::from_be_bytes(unsafe { (*ip).frag_off });
    let frag = if frag_off & IP_OFFSET != 0 {
        FRAG_LATER
    } else if frag_off & IP_MF != 0 {
        FRAG_FIRST
    } else {
        FRAG_NONE
    };
    key.family = FAMILY_V4;
    let proto = unsafe { (*ip).proto };
    key.proto = proto;
    unsafe {
        key.src[..4].copy_from_slice(&(*ip).saddr);
        key.dst[..4].copy_from_slice(&(*ip).daddr);
    }
    Ok(L3 {
        l4_off: EthHdr::LEN + ihl,
        ip_end,
        ip_len: tot_len as u32,
        proto,
        tos: unsafe { (*ip).tos },
        df: frag_off & IP_DF != 0,
        frag,
        frag_proto: proto,
        frag_id: u16::from_be_bytes(unsafe { (*ip).id }) as u32,
    })
}

/// An IPv6 fragment header (RFC 8200 §4.5).
#[repr(C)]
struct FragHdr {
    next: u8,
    _reserved: u8,
    offset_flags: [u8; 2],
    id: [u8; 4],
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, key: &mut FlowKey) -> Result<L3, Stat> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok_or(Stat::PassMalformed)?;
    let vtc = unsafe { (*ip).vtc_flow };
    if vtc[0] >> 4 != 6 {
        return Err(Stat::PassMalformed);
    }
    let payload = u16::from_be_bytes(unsafe { (*ip).payload_len }) as usize;
    let ip_end = EthHdr::LEN + Ipv6Hdr::LEN + payload;
    // Payload length 0 is a jumbogram (RFC 2675), which no Ethernet carries: the transport
    // check below refuses it.
    if ip_end > frame_len(ctx) {
        return Err(Stat::PassMalformed);
    }
    key.family = FAMILY_V6;
    unsafe {
        crate::forward::put(&mut key.src, &(*ip).saddr);
        crate::forward::put(&mut key.dst, &(*ip).daddr);
    }
    let mut next = unsafe { (*ip).next_hdr };
    let mut off = EthHdr::LEN + Ipv6Hdr::LEN;
    let mut frag = FRAG_NONE;
    let mut frag_proto = 0;
    let mut frag_id = 0;
    for _ in 0..MAX_EXT_HEADERS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_DEST_OPTS | NEXT_ROUTING => {
                // Next header, length in 8-octet units beyond the first 8; routing headers
                // add their type and the segments left.
                let h: *const [u8; 4] = ptr_in(ctx, off, ip_end).ok_or(Stat::PassMalformed)?;
                let h = unsafe { *h };
                // A routing header with segments left names another destination: the packet
                // is not for us yet.
                if next == NEXT_ROUTING && h[3] != 0 {
                    return Err(Stat::PassIpv6ExtHeader);
                }
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
            NEXT_FRAGMENT => {
                let h: *const FragHdr = ptr_in(ctx, off, ip_end).ok_or(Stat::PassMalformed)?;
                let (nh, offset_flags, id) = unsafe { ((*h).next, u16::from_be_bytes((*h).offset_flags), (*h).id) };
                off += mem::size_of::<FragHdr>();
                next = nh;
                frag_proto = nh;
                frag_id = u32::from_be_bytes(id);
                if offset_flags & 0xfff8 != 0 {
                    // No header follows in a later fragment, only data.
                    frag = FRAG_LATER;
                    break;
                }
                if offset_flags & 1 != 0 {
                    frag = FRAG_FIRST;
                }
            }
            _ => break,
        }
    }
    if frag != FRAG_LATER && IPV6_EXT_HEADERS.contains(&next) {
        return Err(Stat::PassIpv6ExtHeader);
    }
    if off > ip_end {
        return Err(Stat::PassMalformed);
    }
    key.proto = next;
    Ok(L3 {
        l4_off: off,
        ip_end,
        ip_len: (Ipv6Hdr::LEN + payload) as u32,
        proto: next,
        tos: (vtc[0] << 4) | (vtc[1] >> 4),
        df: true,
        frag,
        frag_proto,
        frag_id,
    })
}

/// Reads the ports of a TCP or UDP packet (not a later fragment) into `key`. The whole fixed
/// header must lie inside the IP packet.
#[inline(always)]
pub fn parse_ports(ctx: &XdpContext, key: &mut FlowKey, l3: &L3) -> Result<(), Stat> {
    match key.proto {
        PROTO_TCP => {
            let tcp: *const TcpHdr = ptr_in(ctx, l3.l4_off, l3.ip_end).ok_or(Stat::PassMalformed)?;
            let doff = unsafe { (*tcp).doff_flags[0] } >> 4;
            if doff < 5 {
                return Err(Stat::PassMalformed);
            }
            key.sport = u16::from_be_bytes(unsafe { (*tcp).sport });
            key.dport = u16::from_be_bytes(unsafe { (*tcp).dport });
        }
        PROTO_UDP => {
            let udp: *const UdpHdr = ptr_in(ctx, l3.l4_off, l3.ip_end).ok_or(Stat::PassMalformed)?;
            key.sport = u16::from_be_bytes(unsafe { (*udp).sport });
            key.dport = u16::from_be_bytes(unsafe { (*udp).dport });
        }
        _ => return Err(Stat::PassNotL4),
    }
    Ok(())
}
