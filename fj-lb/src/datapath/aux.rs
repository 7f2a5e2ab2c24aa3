//! The helper programs (pass-through, floor, packet generator) for labs and benchmarks, in
//! their own object so that loading the balancer never creates the generator's maps. Not used
//! by the daemon.
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
    programs::{Xdp, XdpMode as AyaXdpMode},
};
use fj_lb_common::program_names;

use super::{DataplaneError, map_err};

/// The helper programs' object (`fj-lb-ebpf/src/bin/fj-lb-aux`), built by `build.rs` with
/// aya-build: the programs of `program_names::AUX` and the generator's maps.
pub static AUX_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fj-lb-aux"));

/// The generator's frame templates, one-entry arrays (IPv4, IPv6).
const GEN_TEMPLATE: &str = "GEN_TEMPLATE";
const GEN_TEMPLATE6: &str = "GEN_TEMPLATE6";

/// Loads one of the helper programs (pass-through, floor, generator) without attaching it.
pub fn load_aux(name: &'static str) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = EbpfLoader::new().load(AUX_OBJECT)?;
    super::load_xdp(&mut ebpf, name)?;
    Ok(ebpf)
}

/// Loads one of the helper programs and attaches it to `interfaces` in native mode.
pub fn attach_aux(name: &'static str, interfaces: &[String]) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = load_aux(name)?;
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .expect("the embedded object has the program")
        .try_into()
        .expect("helper programs are XDP");
    for iface in interfaces {
        prog.attach(iface, AyaXdpMode::Driver).map_err(|source| DataplaneError::Attach {
            interface: iface.clone(),
            mode: "native",
            source,
        })?;
    }
    Ok(ebpf)
}

/// What a generator run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    pub packets: u64,
    pub seconds: f64,
    pub packets_per_s: f64,
}

/// How many 5-tuples a CPU of the generator cycles through (0: every packet a new one).
const GEN_FLOWS: &str = "GEN_FLOWS";

/// Sends `packets` UDP frames out of `interface` as fast as this machine allows, each a new
/// 5-tuple, or (`flows` > 0) cycling through `flows` 5-tuples a CPU, so that after the first
/// round every packet belongs to an established flow (the `fj_lb_gen` program, or
/// `fj_lb_gen6` for IPv6 addresses, in BPF_PROG_TEST_RUN live-frames mode; a fresh frame from
/// the template every packet).
#[allow(clippy::too_many_arguments)] // the frame's fields, as the `generate` command takes them
pub fn generate(
    interface: &str,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: std::net::IpAddr,
    dst: std::net::IpAddr,
    port: u16,
    packets: u64,
    flows: u32,
) -> Result<Generated, DataplaneError> {
    use std::net::IpAddr;
    let (program, frame) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (program_names::GENERATOR, frame4(src_mac, dst_mac, s, d, port).to_vec()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (program_names::GENERATOR6, frame6(src_mac, dst_mac, s, d, port).to_vec()),
        _ => {
            return Err(DataplaneError::Io {
                what: "source and destination of different families",
                path: format!("{src} → {dst}").into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
    };
    generate_frames(interface, program, &frame, packets, flows)
}

/// UDP payload bytes after the headers, the same for both families.
const GEN_PAYLOAD: usize = 18;

fn frame4(src_mac: [u8; 6], dst_mac: [u8; 6], src: std::net::Ipv4Addr, dst: std::net::Ipv4Addr, port: u16) -> [u8; 60] {
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len: u16 = 60 - 14;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = crate::model::checksum::internet(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    frame[14..34].copy_from_slice(&ip);
    frame[36..38].copy_from_slice(&port.to_be_bytes());
    frame[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    frame
}

/// The IPv6 template: source port 0 (the program writes one), the UDP checksum over the
/// pseudo-header computed here (IPv6 UDP must have one; the program mends it).
fn frame6(src_mac: [u8; 6], dst_mac: [u8; 6], src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, port: u16) -> [u8; 80] {
    let mut frame = [0u8; 80];
    frame[..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&[0x86, 0xdd]);
    let udp_len = (8 + GEN_PAYLOAD) as u16;
    frame[14] = 0x60;
    frame[18..20].copy_from_slice(&udp_len.to_be_bytes());
    frame[20] = 17;
    frame[21] = 64;
    frame[22..38].copy_from_slice(&src.octets());
    frame[38..54].copy_from_slice(&dst.octets());
    frame[56..58].copy_from_slice(&port.to_be_bytes());
    frame[58..60].copy_from_slice(&udp_len.to_be_bytes());
    let mut pseudo = [0u8; 40];
    pseudo[..16].copy_from_slice(&src.octets());
    pseudo[16..32].copy_from_slice(&dst.octets());
    pseudo[34..36].copy_from_slice(&udp_len.to_be_bytes());
    pseudo[39] = 17;
    let sum = match crate::model::checksum::internet(&[&pseudo, &frame[54..]]) {
        0 => 0xffff,
        s => s,
    };
    frame[60..62].copy_from_slice(&sum.to_be_bytes());
    frame
}

fn generate_frames(interface: &str, program: &'static str, frame: &[u8], packets: u64, flows: u32) -> Result<Generated, DataplaneError> {
    use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
    let mut ebpf = load_aux(program)?;
    {
        if program == program_names::GENERATOR {
            let mut t: Array<&mut MapData, [u8; 60]> =
                Array::try_from(ebpf.map_mut(GEN_TEMPLATE).expect("generator template map")).expect("array");
            t.set(0, <[u8; 60]>::try_from(frame).expect("60 bytes"), 0).map_err(map_err(GEN_TEMPLATE))?;
        } else {
            let mut t: Array<&mut MapData, [u8; 80]> =
                Array::try_from(ebpf.map_mut(GEN_TEMPLATE6).expect("generator template map")).expect("array");
            t.set(0, <[u8; 80]>::try_from(frame).expect("80 bytes"), 0).map_err(map_err(GEN_TEMPLATE6))?;
        }
        let mut f: Array<&mut MapData, u32> =
            Array::try_from(ebpf.map_mut(GEN_FLOWS).expect("generator flows map")).expect("array");
        f.set(0, flows, 0).map_err(map_err(GEN_FLOWS))?;
    }
    let c = std::ffi::CString::new(interface).map_err(|_| DataplaneError::Io {
        what: "interface name",
        path: interface.into(),
        source: std::io::Error::other("NUL in name"),
    })?;
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(DataplaneError::Io { what: "no interface", path: interface.into(), source: std::io::Error::last_os_error() });
    }
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    // The kernel wants data_end to equal the frame's length and the frame on the given device.
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    let prog: &Xdp = ebpf.program(program).expect("generator").try_into().expect("xdp");
    let started = std::time::Instant::now();
    let mut sent = 0u64;
    while sent < packets {
        let chunk = (packets - sent).min(10_000_000) as u32;
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: chunk,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..Default::default()
        })
        .map_err(|source| DataplaneError::Program { name: program, source })?;
        sent += chunk as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Generated { packets: sent, seconds, packets_per_s: sent as f64 / seconds })
}

#[cfg(test)]
mod tests {
    use super::frame6;
    use crate::model::checksum::internet;

    #[test]
    fn the_ipv6_template_carries_a_valid_udp_checksum() {
        let (src, dst) = ("fd00:c8::2".parse().unwrap(), "fd00::100".parse().unwrap());
        let f = frame6([2; 6], [4; 6], src, dst, 53);
        assert_eq!((&f[12..14], f[20], &f[56..58]), (&[0x86, 0xdd][..], 17, &53u16.to_be_bytes()[..]));
        let mut pseudo = [0u8; 40];
        pseudo[..16].copy_from_slice(&f[22..38]);
        pseudo[16..32].copy_from_slice(&f[38..54]);
        pseudo[34..36].copy_from_slice(&f[58..60]);
        pseudo[39] = 17;
        // Summed with its checksum in place, a valid segment folds to all ones: 0 complemented.
        assert_eq!(internet(&[&pseudo, &f[54..]]), 0);
    }
}
