//! Telling the segment who holds the virtual addresses: gratuitous ARP frames and unsolicited
//! neighbour advertisements (pure builders), and the bursts that send them after a takeover.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::OwnedFd,
    time::Duration,
};

use tracing::warn;

use super::socket::{open_v6, send_frames, send_v6};
use crate::model::{addr::Mac, config::VrrpConfig};

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

/// The announcements for one takeover, ready to send: the socket is opened up front so that a
/// failure leaves the previous bursts running.
pub(super) struct Bursts {
    frames: Vec<Vec<u8>>,
    /// IPv6 only: NAs go through the kernel (which sums ICMPv6), ARP frames through AF_PACKET.
    na_socket: Option<OwnedFd>,
    ifindex: u32,
    na_ifindex: u32,
    repeat: u32,
    gap: Duration,
}

impl Bursts {
    /// `ifindex` is the interface ARP frames leave by; NAs leave by `vip_ifindex` (`send_dev`),
    /// from our link-local `primary`.
    pub(super) fn new(mac: &Mac, cfg: &VrrpConfig, primary: IpAddr, send_dev: &str, ifindex: u32, vip_ifindex: u32) -> io::Result<Self> {
        let frames = cfg
            .virtual_addresses
            .iter()
            .map(|(a, _)| match a {
                IpAddr::V4(v4) => garp_frame(mac, *v4),
                IpAddr::V6(v6) => unsolicited_na(mac, *v6),
            })
            .collect();
        let na_socket = match primary {
            IpAddr::V6(ll) => Some(open_v6(send_dev, vip_ifindex, ll, libc::IPPROTO_ICMPV6, true, false)?),
            IpAddr::V4(_) => None,
        };
        Ok(Bursts {
            frames,
            na_socket,
            ifindex,
            na_ifindex: vip_ifindex,
            repeat: cfg.garp_repeat,
            gap: Duration::from_millis(cfg.garp_interval_ms as u64),
        })
    }

    /// `repeat` sends now and the same again 5 s later (as keepalived does), for switches and
    /// hosts that missed the first burst.
    pub(super) async fn send(self) {
        for burst in 0..2 {
            if burst == 1 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            for i in 0..self.repeat {
                let sent = match &self.na_socket {
                    None => send_frames(self.ifindex, &self.frames),
                    Some(s) => self.frames.iter().try_for_each(|na| send_v6(s, Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), self.na_ifindex, na)),
                };
                if let Err(e) = sent {
                    warn!(error = %e, "sending gratuitous ARP / unsolicited NA failed");
                }
                if i + 1 < self.repeat {
                    tokio::time::sleep(self.gap).await;
                }
            }
        }
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
}
