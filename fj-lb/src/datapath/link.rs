//! The XDP link: attached once, pinned in bpffs so forwarding outlives a crashed daemon, taken
//! over by the next daemon without a gap, and detached on a clean stop.
use std::path::Path;

use aya::programs::{
    Xdp, XdpMode as AyaXdpMode,
    links::{FdLink, LinkError, PinnedLink},
    xdp::{XdpLink, XdpLinkId},
};
use tracing::{info, warn};

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
        let pin = pin_dir.join(LINK_PIN);
        if pin.exists() {
            match self.take_over(&pin) {
                Ok(()) => {
                    let mode = current_mode(interface).unwrap_or(AttachedMode::Native);
                    info!(%interface, mode = mode.as_str(), "took over the XDP link a previous fj-lb left pinned: no gap in forwarding");
                    return Ok(mode);
                }
                Err(e) => {
                    warn!(error = %e, path = %pin.display(), "a pinned XDP link is left but cannot be reused; attaching afresh");
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let prog = self.program_mut();
        let attach = |prog: &mut Xdp, m: AttachedMode| {
            let aya_mode = match m {
                AttachedMode::Native => AyaXdpMode::Driver,
                AttachedMode::Skb => AyaXdpMode::Skb,
            };
            prog.attach(interface, aya_mode).map_err(|source| DataplaneError::Attach {
                interface: interface.to_string(),
                mode: m.as_str(),
                source,
            })
        };
        let (link, mode) = match mode {
            XdpMode::Native => (attach(prog, AttachedMode::Native)?, AttachedMode::Native),
            XdpMode::Skb => (attach(prog, AttachedMode::Skb)?, AttachedMode::Skb),
            XdpMode::Auto => match attach(prog, AttachedMode::Native) {
                Ok(link) => (link, AttachedMode::Native),
                Err(e) => {
                    warn!(%interface, error = %e, "native XDP unavailable, falling back to skb (generic) mode: expect lower throughput");
                    (attach(prog, AttachedMode::Skb)?, AttachedMode::Skb)
                }
            },
        };
        self.pin_link(link, &pin);
        info!(%interface, mode = mode.as_str(), "XDP program attached");
        Ok(mode)
    }

    fn take_over(&mut self, pin: &Path) -> Result<(), DataplaneError> {
        let link_err = |e: LinkError| DataplaneError::Io { what: "reusing the pinned XDP link", path: pin.to_path_buf(), source: std::io::Error::other(e) };
        let pinned = PinnedLink::from_pin(pin).map_err(link_err)?;
        let fd: FdLink = pinned.into();
        let xdp_link = XdpLink::try_from(fd).map_err(link_err)?;
        let id = self.program_mut().attach_to_link(xdp_link).map_err(|source| DataplaneError::Attach {
            interface: "(pinned link)".into(),
            mode: "inherited",
            source,
        })?;
        // The pin is re-made by us, for our link object.
        let _ = std::fs::remove_file(pin);
        self.pin_link(id, pin);
        Ok(())
    }

    fn pin_link(&mut self, id: XdpLinkId, pin: &Path) {
        let link = match self.program_mut().take_link(id) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot take the XDP link to pin it");
                return;
            }
        };
        let fd = match FdLink::try_from(link) {
            Ok(fd) => fd,
            Err(e) => {
                warn!(error = %e, "XDP is attached through netlink, not a BPF link: it cannot be pinned, so it stops if the daemon dies");
                return;
            }
        };
        if let Some(dir) = pin.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match fd.pin(pin) {
            Ok(p) => self.pinned_link = Some(p),
            Err(e) => warn!(error = %e, path = %pin.display(), "pinning the XDP link failed: XDP stops if the daemon dies"),
        }
    }

    pub fn detach(&mut self) {
        if let Some(link) = self.link.take()
            && let Err(e) = self.program_mut().detach(link) {
                warn!(error = %e, "detaching XDP failed; it goes away when the daemon exits");
            }
        if let Some(p) = self.pinned_link.take() {
            // Unpinned, the link's last reference is ours: dropping it detaches the program.
            match p.unpin() {
                Ok(fd) => drop(fd),
                Err(e) => warn!(error = %e, "unpinning the XDP link failed"),
            }
        }
    }
}

/// The XDP mode in force on `interface`, from the kernel (for a link inherited from a
/// previous daemon, whose mode we did not choose).
fn current_mode(interface: &str) -> Option<AttachedMode> {
    let out = std::process::Command::new("ip").args(["-j", "-d", "link", "show", "dev", interface]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    match v.get(0)?.get("xdp")?.get("mode")?.as_u64()? {
        1 => Some(AttachedMode::Native),
        2 => Some(AttachedMode::Skb),
        _ => None,
    }
}
