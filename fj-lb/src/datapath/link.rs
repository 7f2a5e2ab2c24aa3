//! The XDP link: attached once, pinned in bpffs so forwarding outlives a crashed daemon, taken
//! over by the next daemon without a gap, and detached on a clean stop.
use std::path::Path;

use aya::programs::{
    XdpMode as AyaXdpMode,
    links::{FdLink, LinkError, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};
use tracing::{info, warn};

use aya::programs::Xdp;
use fj_lb_common::program_names;

use super::{Dataplane, DataplaneError};
use crate::model::config::XdpMode;

/// The mode XDP actually runs in after attaching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    Native,
    Skb,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
        }
    }
}

/// File name of the pinned XDP link inside the bpffs directory.
pub const LINK_PIN: &str = "xdp_link";

impl Dataplane {
    /// Attaches the balancer and pins the attachment under `pin_dir`. When a previous daemon
    /// left its link pinned there (it crashed), the program on that link is replaced in one
    /// step and forwarding never stops; otherwise `auto` tries native (driver) mode and falls
    /// back to skb mode.
    pub fn attach(&mut self, interface: &str, mode: XdpMode, pin_dir: &Path) -> Result<AttachedMode, DataplaneError> {
        let (held, mode) = attach_pinned(self.program_mut(), program_names::BALANCER, interface, mode, &pin_dir.join(LINK_PIN))?;
        self.link = held;
        Ok(mode)
    }

    /// Whether the attachment outlives this process (it is pinned): dropping the daemon then
    /// leaves XDP forwarding for the next one.
    pub fn keep_for_next(&self) -> bool {
        matches!(self.link, Held::Pinned(_))
    }

    /// Lets go of the attachment: XDP leaves the interface.
    pub fn detach(&mut self) {
        let held = std::mem::replace(&mut self.link, Held::None);
        release(self.program_mut(), held);
    }
}

/// Attaches `prog` (named `name`) to `interface` and pins the attachment at `pin`. A link
/// already pinned there (a previous run's) gets `prog` swapped in in one step, without a gap;
/// otherwise `auto` tries native (driver) mode and falls back to skb mode.
pub(crate) fn attach_pinned(
    prog: &mut Xdp,
    name: &'static str,
    interface: &str,
    mode: XdpMode,
    pin: &Path,
) -> Result<(Held, AttachedMode), DataplaneError> {
    if pin.exists() {
        match take_over(prog, name, pin, interface) {
            Ok(held) => {
                let mode = current_mode(interface).unwrap_or(AttachedMode::Native);
                info!(%interface, mode = mode.as_str(), program = name, "took over the XDP link left pinned: no gap");
                return Ok((held, mode));
            }
            Err(e) => {
                warn!(error = %e, path = %pin.display(), "a pinned XDP link is left but cannot be reused; attaching afresh");
                let _ = std::fs::remove_file(pin);
            }
        }
    }
    let (link, mode) = match mode {
        XdpMode::Native => (attach_mode(prog, interface, AttachedMode::Native)?, AttachedMode::Native),
        XdpMode::Skb => (attach_mode(prog, interface, AttachedMode::Skb)?, AttachedMode::Skb),
        XdpMode::Auto => match attach_mode(prog, interface, AttachedMode::Native) {
            Ok(link) => (link, AttachedMode::Native),
            Err(e) => {
                warn!(%interface, error = %e, "native XDP unavailable, falling back to skb (generic) mode: expect lower throughput");
                (attach_mode(prog, interface, AttachedMode::Skb)?, AttachedMode::Skb)
            }
        },
    };
    let held = hold(prog, name, link, interface, pin, mode)?;
    info!(%interface, mode = mode.as_str(), program = name, "XDP program attached");
    Ok((held, mode))
}

fn take_over(prog: &mut Xdp, name: &'static str, pin: &Path, interface: &str) -> Result<Held, DataplaneError> {
    let link_err = |e: LinkError| DataplaneError::Io { what: "reusing the pinned XDP link", path: pin.to_path_buf(), source: std::io::Error::other(e) };
    let pinned = PinnedLink::from_pin(pin).map_err(link_err)?;
    let fd: FdLink = pinned.into();
    // The pin names a link, not an interface: make sure it is the one on ours before
    // swapping our program onto it.
    let program = fd.info().map_err(link_err)?.program_id();
    if current_program(interface) != Some(program) {
        return Err(DataplaneError::ForeignLink { pin: pin.to_path_buf(), interface: interface.to_string(), program });
    }
    let xdp_link = XdpLink::try_from(fd).map_err(link_err)?;
    let id = prog.attach_to_link(xdp_link).map_err(|source| DataplaneError::Attach {
        interface: "(pinned link)".into(),
        mode: "inherited",
        source,
    })?;
    // The pin is re-made by us, for our link object.
    let _ = std::fs::remove_file(pin);
    let mode = current_mode(interface).unwrap_or(AttachedMode::Native);
    hold(prog, name, id, interface, pin, mode)
}

/// Takes the link out of the program's keeping into ours and pins it. Whatever fails, XDP
/// stays attached and held until `release`: it never goes away while start-up carries on.
fn hold(prog: &mut Xdp, name: &'static str, id: XdpLinkId, interface: &str, pin: &Path, mode: AttachedMode) -> Result<Held, DataplaneError> {
    let link = prog.take_link(id).map_err(|source| DataplaneError::Program { name, source })?;
    let fd = match FdLink::try_from(link) {
        Ok(fd) => fd,
        Err(e) => {
            // aya gives up its netlink attachment here without detaching it: we detach it
            // ourselves on stop.
            warn!(error = %e, "XDP is attached through netlink, not a BPF link: it cannot be pinned, so it stops if the process dies");
            return Ok(Held::Netlink { interface: interface.to_string() });
        }
    };
    if let Some(dir) = pin.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match fd.pin(pin) {
        Ok(p) => Ok(Held::Pinned(p)),
        Err(e) => {
            // The failed pin took the link's only fd with it, so XDP left the interface:
            // attach again, held by us (unpinned) for the process's life.
            warn!(error = %e, path = %pin.display(), "pinning the XDP link failed: XDP stops if the process dies");
            Ok(Held::Program(attach_mode(prog, interface, mode)?))
        }
    }
}

fn attach_mode(prog: &mut Xdp, interface: &str, m: AttachedMode) -> Result<XdpLinkId, DataplaneError> {
    let aya_mode = match m {
        AttachedMode::Native => AyaXdpMode::Driver,
        AttachedMode::Skb => AyaXdpMode::Skb,
    };
    prog.attach(interface, aya_mode).map_err(|source| DataplaneError::Attach {
        interface: interface.to_string(),
        mode: m.as_str(),
        source,
    })
}

/// Lets go of an attachment: XDP leaves the interface.
pub(crate) fn release(prog: &mut Xdp, held: Held) {
    match held {
        Held::None => {}
        Held::Program(id) => {
            if let Err(e) = prog.detach(id) {
                warn!(error = %e, "detaching XDP failed; it goes away when the process exits");
            }
        }
        Held::Pinned(p) => unpin_link(p),
        Held::Netlink { interface } => detach_netlink(&interface),
    }
}

/// Unpinned, a link's last reference is ours: dropping it detaches the program.
pub(crate) fn unpin_link(p: PinnedLink) {
    match p.unpin() {
        Ok(fd) => drop(fd),
        Err(e) => warn!(error = %e, "unpinning the XDP link failed"),
    }
}

/// How the daemon holds its XDP attachment.
pub(crate) enum Held {
    None,
    /// In aya's keeping, unpinned (pinning failed).
    Program(XdpLinkId),
    /// A BPF link pinned in bpffs: if the daemon dies, XDP keeps forwarding with the last
    /// tables (instead of the kernel resetting every connection to the VIP it still holds),
    /// and the next daemon swaps its program in on the same link without a gap.
    Pinned(PinnedLink),
    /// Attached through netlink (no BPF link): only removing it from the interface detaches.
    Netlink { interface: String },
}

/// Removes whatever XDP program `interface` has, through iproute2 (aya 0.14 has no public
/// netlink detach).
pub(crate) fn detach_netlink(interface: &str) {
    match std::process::Command::new("ip").args(["link", "set", "dev", interface, "xdp", "off"]).status() {
        Ok(s) if s.success() => info!(%interface, "XDP removed from the interface"),
        Ok(s) => warn!(%interface, status = %s, "removing XDP from the interface failed"),
        Err(e) => warn!(%interface, error = %e, "running ip to remove XDP failed"),
    }
}

/// The id of the XDP program attached to `interface`, from the kernel.
pub(crate) fn current_program(interface: &str) -> Option<u32> {
    let v = link_details(interface)?;
    let xdp = v.get(0)?.get("xdp")?;
    xdp.get("prog").and_then(|p| p.get("id")).or_else(|| xdp.get("attached")?.get(0)?.get("prog")?.get("id"))?.as_u64().map(|id| id as u32)
}

fn link_details(interface: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("ip").args(["-j", "-d", "link", "show", "dev", interface]).output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// The XDP mode in force on `interface`, from the kernel (for a link inherited from a
/// previous daemon, whose mode we did not choose).
fn current_mode(interface: &str) -> Option<AttachedMode> {
    let v = link_details(interface)?;
    match v.get(0)?.get("xdp")?.get("mode")?.as_u64()? {
        1 => Some(AttachedMode::Native),
        2 => Some(AttachedMode::Skb),
        _ => None,
    }
}
