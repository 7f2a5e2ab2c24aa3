//! The VRRP task: opens the sockets, then feeds the state machine what arrives (adverts, the
//! clock, tracking, the carrier) and carries out what it decides.
use std::{
    io,
    net::IpAddr,
    os::fd::OwnedFd,
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
};
use tracing::{Instrument, debug, error, info, warn};

use super::{
    addresses::{Removals, add_addresses, carrier, carrier_by_name, present, primary, remove_addresses},
    announce::Bursts,
    group::{self, GroupLink},
    hooks::{self, Kind},
    machine::{Action, Machine, Params, State, to_centis},
    notify::Notifier,
    packet::{Advert, IPPROTO_VRRP, MCAST_V4, MCAST_V6, Reject},
    socket::{Received6, open_v4, open_v6, recv_v4, recv_v6, send_v4, send_v6},
    status::VrrpStatus,
    sync::{Member, Order},
    validate::{self, Instance, Verdict},
    vmac::{VirtualMac, virtual_mac},
};
use crate::model::{
    addr::Mac,
    config::{SyncGroupConfig, VrrpConfig},
};

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
    /// Every tracked service's health checks have a verdict (true), or not yet (false):
    /// preemption waits for it.
    HealthSettled(bool),
    /// What the instance's sync group decided.
    Sync(Order),
    Shutdown(oneshot::Sender<()>),
}

/// One running instance.
pub struct Vrrp {
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<VrrpStatus>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What starting an instance needs beyond its config: the interface's index and MAC, and the
/// VRIDs of the daemon's other instances on the same link and family.
pub struct InstanceSpec {
    pub cfg: VrrpConfig,
    pub ifindex: u32,
    pub mac: Mac,
    pub siblings: Vec<u8>,
}

/// Every instance of a daemon, in config order, and the tasks of their sync groups.
pub struct VrrpSet {
    pub instances: Vec<Vrrp>,
    groups: Vec<tokio::task::JoinHandle<()>>,
}

impl VrrpSet {
    /// Stops every instance at once (each says priority 0 if master and releases its
    /// addresses), then lets the groups run their stop scripts; all within `bound`.
    pub async fn shutdown(self, bound: Duration) {
        let stops = self.instances.into_iter().map(|v| async move {
            let (tx, rx) = oneshot::channel();
            if v.commands.send(Command::Shutdown(tx)).await.is_ok() {
                let _ = tokio::time::timeout(bound, rx).await;
            }
            v.task.abort();
        });
        futures::future::join_all(stops).await;
        for mut g in self.groups {
            if tokio::time::timeout(bound, &mut g).await.is_err() {
                g.abort();
            }
        }
    }
}

/// Starts every instance, backup (or master if priority 255) from the first moment, and the
/// sync groups over them. If one cannot start, those already started are stopped again.
pub async fn start_all(specs: Vec<InstanceSpec>, groups: &[SyncGroupConfig]) -> Result<VrrpSet, VrrpError> {
    let mut links: Vec<(mpsc::UnboundedSender<group::Report>, mpsc::UnboundedReceiver<group::Report>)> =
        groups.iter().map(|_| mpsc::unbounded_channel()).collect();
    let mut set = VrrpSet { instances: Vec::with_capacity(specs.len()), groups: Vec::new() };
    let names: Vec<String> = specs.iter().map(|s| s.cfg.name.clone()).collect();
    for spec in specs {
        let link = groups.iter().enumerate().find_map(|(gi, g)| {
            let member = g.instances.iter().position(|n| *n == spec.cfg.name)?;
            Some(GroupLink { member, tx: links[gi].0.clone() })
        });
        match start(spec, link).await {
            Ok(v) => set.instances.push(v),
            Err(e) => {
                set.shutdown(Duration::from_secs(5)).await;
                return Err(e);
            }
        }
    }
    for (g, (tx, rx)) in groups.iter().zip(links.drain(..)) {
        // Only the members hold senders: the group ends when they all have.
        drop(tx);
        let members: Vec<mpsc::Sender<Command>> = g
            .instances
            .iter()
            .filter_map(|n| names.iter().position(|x| x == n).map(|i| set.instances[i].commands.clone()))
            .collect();
        set.groups.push(group::spawn(g.clone(), members, rx));
    }
    Ok(set)
}

struct Runner {
    cfg: VrrpConfig,
    /// Where adverts go: the unicast peers but ourselves, or the multicast group.
    destinations: Vec<IpAddr>,
    siblings: Vec<u8>,
    handle: rtnetlink::Handle,
    /// The task driving `handle`'s connection; it ends with the runner.
    connection: tokio::task::JoinHandle<()>,
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
    /// The tracked interfaces that have lost their carrier.
    interfaces_down: Vec<String>,
    /// Held in fault by another member of the sync group.
    group_fault: bool,
    group: Option<GroupLink>,
    /// What the group last heard from us.
    reported: Option<Member>,
    /// Set while carrying out a group order, so the report says so.
    ordered: bool,
    notifier: Notifier,
    last_reject_log: Option<Instant>,
    garp_task: Option<tokio::task::JoinHandle<()>>,
    removals: Removals,
    /// False while this master is missing a virtual address it could not add back.
    holding: bool,
}

/// Starts one instance: backup (or master if priority 255) from the first moment.
async fn start(spec: InstanceSpec, group: Option<GroupLink>) -> Result<Vrrp, VrrpError> {
    let InstanceSpec { cfg, ifindex, mac, siblings } = spec;
    // A netlink connection of its own: the kernel serves one dump at a time per socket, and
    // instances sharing one would see EBUSY when they list addresses at the same moment.
    let (connection, handle, _) = rtnetlink::new_connection().map_err(VrrpError::Socket)?;
    let connection = tokio::spawn(connection);
    let v6 = cfg.is_ipv6();
    let vips: Vec<IpAddr> = cfg.virtual_addresses.iter().map(|(a, _)| *a).collect();
    let owner = cfg.priority == 255;
    // A VIP left on the interface by a killed daemon is not ours to keep: remove it first, so
    // it is never taken for our primary address. The owner's VIPs are its own real addresses.
    if !owner {
        remove_addresses(&handle, ifindex, &cfg.virtual_addresses).await;
    }
    let family = if v6 { "IPv6 link-local" } else { "IPv4" };
    let exclude: &[IpAddr] = if owner { &[] } else { &vips };
    let primary = primary(&handle, ifindex, v6, exclude).await?.ok_or_else(|| VrrpError::NoPrimary(cfg.interface.clone(), family))?;
    let removals = Removals::subscribe().map_err(VrrpError::Socket)?;
    let vmac = if cfg.use_virtual_mac { Some(VirtualMac::create(&handle, &cfg.interface, ifindex, cfg.vrid, v6).await?) } else { None };
    let (vip_ifindex, announce_mac) = match &vmac {
        Some(v) => (v.ifindex, virtual_mac(cfg.vrid, v6)),
        None => (ifindex, mac),
    };
    // Where adverts and announcements leave: through the macvlan they carry the virtual MAC.
    let (send_dev, send_ifindex) = match &vmac {
        Some(v) => (v.name.clone(), v.ifindex),
        None => (cfg.interface.clone(), ifindex),
    };
    let multicast = cfg.unicast_peers.is_empty();
    let (sock, send_fd) = match primary {
        IpAddr::V4(p) => (open_v4(&cfg.interface, ifindex, p, false, multicast), open_v4(&send_dev, send_ifindex, p, true, false)),
        IpAddr::V6(p) => (
            open_v6(&cfg.interface, ifindex, p, IPPROTO_VRRP as i32, false, multicast),
            open_v6(&send_dev, send_ifindex, p, IPPROTO_VRRP as i32, true, false),
        ),
    };
    // The same peer list can serve every host: each skips its own address.
    let destinations: Vec<IpAddr> = if multicast {
        vec![if v6 { IpAddr::V6(MCAST_V6) } else { IpAddr::V4(MCAST_V4) }]
    } else {
        cfg.unicast_peers.iter().copied().filter(|p| *p != primary).collect()
    };
    let (sock, send_fd) = (sock.map_err(VrrpError::Socket)?, send_fd.map_err(VrrpError::Socket)?);
    // SAFETY: the OwnedFd is moved into the AsyncFd, which alone closes it.
    let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| VrrpError::Socket(e.into()))?;
    let machine = Machine::new(Params {
        priority: cfg.priority,
        advert_interval: Duration::from_millis(cfg.advert_interval_ms as u64),
        preempt: cfg.preempt,
        preempt_delay: Duration::from_millis(cfg.preempt_delay_ms),
        primary,
        gated: group.is_some(),
    });
    let status = VrrpStatus {
        unicast_peers: cfg.unicast_peers.iter().map(|p| p.to_string()).collect(),
        sync_group: cfg.sync_group.clone(),
        ..VrrpStatus::initial(&cfg.name, cfg.vrid, &cfg.interface, cfg.priority, cfg.virtual_addresses.iter().map(|(a, p)| format!("{a}/{p}")).collect())
    };
    let (status_tx, status_rx) = watch::channel(status.clone());
    let (cmd_tx, cmd_rx) = mpsc::channel(8);
    info!(
        instance = %cfg.name,
        vrid = cfg.vrid,
        priority = cfg.priority,
        interface = %cfg.interface,
        source = %primary,
        unicast_peers = ?cfg.unicast_peers,
        sync_group = ?cfg.sync_group,
        "VRRP starting"
    );
    let notifier = Notifier::start(cfg.name.clone(), Duration::from_millis(cfg.notify.timeout_ms));
    let mut runner = Runner {
        destinations,
        siblings,
        cfg,
        handle,
        connection,
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
        interfaces_down: Vec::new(),
        group_fault: false,
        group,
        reported: None,
        ordered: false,
        notifier,
        last_reject_log: None,
        garp_task: None,
        removals,
        holding: true,
    };
    let span = tracing::info_span!("vrrp", instance = %runner.cfg.name);
    let task = tokio::spawn(async move { runner.run(cmd_rx).await }.instrument(span));
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
                    // IPv4 hands over the header with the packet; IPv6 reports addresses and hop
                    // limit beside it.
                    let got = guard.try_io(|fd| {
                        if v6 { recv_v6(fd.get_ref(), &mut buf).map(|r| (r.len, Some(r))) } else { recv_v4(fd.get_ref(), &mut buf).map(|n| (n, None)) }
                    });
                    let us = Instance {
                        primary: self.primary,
                        vrid: self.cfg.vrid,
                        addresses: &self.cfg.virtual_addresses,
                        owner: self.cfg.priority == 255,
                        unicast_peers: &self.cfg.unicast_peers,
                        siblings: &self.siblings,
                    };
                    let verdict = match got {
                        Ok(Ok((n, None))) => validate::ipv4(&buf[..n], &us),
                        Ok(Ok((n, Some(Received6 { src, dst, hops, .. })))) => validate::ipv6(src, dst, hops, &buf[..n], &us),
                        Ok(Err(e)) => {
                            warn!(error = %e, "receiving VRRP failed");
                            continue;
                        }
                        Err(_would_block) => continue,
                    };
                    match verdict {
                        Verdict::Accept { src, advert } => self.advert(src, advert).await,
                        Verdict::Own | Verdict::Sibling => {}
                        Verdict::Reject(why) => self.reject(why),
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::ServicesDown(down)) => {
                        if down != self.services_down {
                            self.services_down = down;
                            self.reprioritise().await;
                        }
                    }
                    Some(Command::HealthSettled(settled)) => {
                        if settled {
                            info!("health checks settled: preemption allowed");
                        }
                        self.machine.set_settled(settled);
                    }
                    Some(Command::Sync(order)) => self.obey(order).await,
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
                Some((ifindex, ip)) = self.removals.next() => {
                    let ours = ifindex == self.vip_ifindex && self.cfg.virtual_addresses.iter().any(|(a, _)| *a == ip);
                    if ours && self.machine.state() == State::Master {
                        warn!(address = %ip, "a virtual address was removed from outside while master; adding it back");
                        self.hold_addresses().await;
                    }
                }
                _ = carrier_tick.tick() => {
                    if self.machine.state() == State::Master {
                        self.hold_addresses().await;
                    }
                    let lost = !carrier(&self.handle, self.ifindex).await;
                    let mut changed = false;
                    if lost != self.carrier_lost {
                        if lost { warn!(interface = %self.cfg.interface, "carrier lost") } else { info!(interface = %self.cfg.interface, "carrier back") }
                        self.carrier_lost = lost;
                        changed = true;
                    }
                    let mut down = Vec::new();
                    for name in &self.cfg.track_interfaces {
                        if !carrier_by_name(&self.handle, name).await {
                            down.push(name.clone());
                        }
                    }
                    if down != self.interfaces_down {
                        warn!(down = ?down, was = ?self.interfaces_down, "tracked interfaces changed");
                        self.interfaces_down = down;
                        changed = true;
                    }
                    if changed {
                        self.reprioritise().await;
                    }
                }
            }
        }
    }

    /// While master: makes sure every virtual address is on the interface, adding back the
    /// missing ones. One that cannot be added means this host cannot serve it: it resigns
    /// (priority 0) so the peer takes over, and takes over again only if nobody else does.
    async fn hold_addresses(&mut self) {
        let want = self.cfg.virtual_addresses.clone();
        let missing = |held: &[IpAddr]| -> Vec<(IpAddr, u8)> { want.iter().filter(|(a, _)| !held.contains(a)).copied().collect() };
        let held = match present(&self.handle, self.vip_ifindex, &want).await {
            Ok(h) => h,
            Err(e) => return warn!(error = %e, "reading the interface's addresses failed"),
        };
        let gone = missing(&held);
        if gone.is_empty() {
            if !self.holding {
                info!("every virtual address is held again");
                self.holding = true;
            }
            return;
        }
        warn!(missing = ?gone.iter().map(|(a, _)| a).collect::<Vec<_>>(), "virtual addresses missing while master; adding them back");
        add_addresses(&self.handle, self.vip_ifindex, &gone).await;
        self.announce();
        let still = match present(&self.handle, self.vip_ifindex, &want).await {
            Ok(h) => missing(&h),
            Err(_) => gone,
        };
        if still.is_empty() {
            self.holding = true;
            return;
        }
        self.holding = false;
        error!(missing = ?still.iter().map(|(a, _)| a).collect::<Vec<_>>(), "cannot hold the virtual addresses: resigning mastership (priority 0) so the peer takes over");
        let a = self.machine.resign(self.now(), "virtual addresses cannot be held");
        self.perform(a).await;
    }

    async fn shutdown(&mut self) {
        let a = self.machine.shutdown();
        self.perform(a).await;
        if let Some(v) = self.vmac.take() {
            v.remove(&self.handle).await;
        }
        // The stop's scripts run after the peer has been told and the addresses are gone.
        self.notifier.finish(Duration::from_millis(self.cfg.notify.timeout_ms)).await;
        self.connection.abort();
    }

    /// Why this instance is in fault of its own, if it is: its interface is down, or (with
    /// `track_priority_delta = 0`) a tracked service or interface failed.
    fn own_fault(&self) -> Option<&'static str> {
        let weight_zero = self.cfg.track_priority_delta == 0;
        if self.carrier_lost {
            Some("fault: the interface is down")
        } else if weight_zero && self.services_down {
            Some("fault: a tracked service has no healthy backend")
        } else if weight_zero && !self.interfaces_down.is_empty() {
            Some("fault: a tracked interface is down")
        } else {
            None
        }
    }

    /// Tracking's verdict into the machine: the priority in force, and FAULT.
    async fn reprioritise(&mut self) {
        let failing = self.services_down || !self.interfaces_down.is_empty();
        let penalty = if failing { self.cfg.track_priority_delta } else { 0 };
        let p = self.cfg.priority.saturating_sub(penalty).max(1);
        if p != self.machine.priority() && self.cfg.priority != 255 {
            warn!(
                priority = p,
                configured = self.cfg.priority,
                services_down = self.services_down,
                interfaces_down = ?self.interfaces_down,
                "VRRP priority changed by tracking"
            );
        }
        let a = self.machine.set_priority(self.now(), p);
        self.status.priority = self.machine.priority();
        self.perform(a).await;
        let why = match (self.own_fault(), self.group_fault) {
            (Some(why), _) => Some(why),
            (None, true) => Some("fault: another member of the sync group is in fault"),
            (None, false) => None,
        };
        let a = self.machine.set_fault(self.now(), why.is_some(), why.unwrap_or("fault cleared"));
        self.perform(a).await;
    }

    /// Carries out what the sync group decided.
    async fn obey(&mut self, order: Order) {
        let now = self.now();
        let group = self.cfg.sync_group.clone().unwrap_or_default();
        info!(group, ?order, "sync group order");
        self.ordered = true;
        match order {
            Order::Fault(held) => {
                self.group_fault = held;
                self.reprioritise().await;
            }
            Order::Master => {
                let a = self.machine.force_master(now, "sync group: every member may be master");
                self.perform(a).await;
            }
            Order::Backup => {
                let a = self.machine.force_backup(now, "sync group: a member stepped down for a higher-priority master");
                self.perform(a).await;
            }
        }
        self.ordered = false;
    }

    /// Tells the sync group what changed, if anything did.
    fn report(&mut self) {
        let Some(link) = &self.group else { return };
        let now = Member { state: self.machine.state(), wants_master: self.machine.wants_master(), own_fault: self.own_fault().is_some() };
        if self.reported != Some(now) {
            self.reported = Some(now);
            let _ = link.tx.send(group::Report { member: link.member, now, ordered: self.ordered });
        }
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

    /// Feeds an advert that `validate` accepted to the state machine.
    async fn advert(&mut self, src: IpAddr, adv: Advert) {
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
        {
            v.up(&self.handle).await;
        }
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority),
                Action::TakeAddresses => {
                    add_addresses(&self.handle, self.vip_ifindex, &self.cfg.virtual_addresses).await;
                    self.announce();
                }
                Action::ReleaseAddresses => {
                    if let Some(t) = self.garp_task.take() {
                        t.abort();
                    }
                    remove_addresses(&self.handle, self.vip_ifindex, &self.cfg.virtual_addresses).await;
                    if let Some(v) = &self.vmac {
                        v.down(&self.handle).await;
                    }
                }
                Action::Transition { from, to, why } => {
                    let at = SystemTime::now();
                    match to {
                        State::Master => warn!(vrid = self.cfg.vrid, from = from.as_str(), reason = why, "VRRP: now MASTER"),
                        State::Fault => warn!(vrid = self.cfg.vrid, from = from.as_str(), reason = why, "VRRP: now FAULT"),
                        _ => info!(vrid = self.cfg.vrid, from = from.as_str(), to = to.as_str(), reason = why, "VRRP transition"),
                    }
                    // Queued, never awaited: a script cannot hold up the next advert.
                    self.notifier.run(hooks::commands(&self.cfg.notify, Kind::Instance, &self.cfg.name, to, self.machine.priority()));
                    self.status.state = to;
                    self.status.transitions += 1;
                    self.status.last_transition = Some(crate::report::status::rfc3339(at));
                    self.status.last_transition_reason = Some(why.to_string());
                    if to == State::Master {
                        self.status.master = Some(self.primary);
                        self.status.master_priority = Some(self.machine.priority());
                    } else if matches!(to, State::Initialize | State::Fault) {
                        self.status.master = None;
                        self.status.master_priority = None;
                    }
                }
            }
        }
        self.status.priority = self.machine.priority();
        let _ = self.status_tx.send(self.status.clone());
        self.report();
    }

    /// One advert to every destination, each summed for its own destination address (the
    /// pseudo-header covers it). Counted once, however many peers it went to.
    fn send_advert(&mut self, priority: u8) {
        let adv = Advert {
            vrid: self.cfg.vrid,
            priority,
            max_adver_int: to_centis(self.machine.advert_interval()),
            addresses: self.cfg.virtual_addresses.iter().map(|(a, _)| *a).collect(),
        };
        let mut sent = false;
        for &dst in &self.destinations {
            let msg = adv.encode(self.primary, dst, self.cfg.checksum);
            let r = match dst {
                IpAddr::V4(d) => send_v4(&self.send_fd, d, &msg),
                IpAddr::V6(d) => send_v6(&self.send_fd, d, self.vip_ifindex, &msg),
            };
            match r {
                Ok(()) => sent = true,
                Err(e) => warn!(to = %dst, error = %e, "sending a VRRP advertisement failed"),
            }
        }
        if sent {
            self.status.adverts_sent += 1;
        }
    }

    /// Gratuitous ARPs (IPv6: unsolicited neighbour advertisements), replacing any bursts
    /// still under way from an earlier takeover.
    fn announce(&mut self) {
        let bursts = match Bursts::new(&self.mac, &self.cfg, self.primary, &self.send_dev, self.ifindex, self.vip_ifindex) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "cannot open an ICMPv6 socket for neighbour advertisements");
                return;
            }
        };
        if let Some(t) = self.garp_task.take() {
            t.abort();
        }
        self.garp_task = Some(tokio::spawn(bursts.send()));
    }
}
