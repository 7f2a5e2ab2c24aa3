//! The VRRP state machine of RFC 5798 §6.4, with time passed in: no clock, no sockets. The
//! caller feeds it events and carries out the actions it returns.
use std::{net::IpAddr, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// Not taking part (keepalived's FAULT): the interface is down, or a tracked service or
    /// interface with weight 0 failed, or another member of the sync group is in fault. No
    /// adverts, no addresses; back to backup when it clears.
    Fault,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority.
    SendAdvert { priority: u8 },
    /// Add the virtual addresses and announce them (gratuitous ARP / unsolicited NA).
    TakeAddresses,
    /// Remove the virtual addresses.
    ReleaseAddresses,
    /// The state changed (for logs, status and metrics).
    Transition { from: State, to: State, why: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    Adver,
    MasterDown,
}

#[derive(Debug, Clone)]
pub struct Params {
    pub priority: u8,
    /// Our advertisement interval.
    pub advert_interval: Duration,
    pub preempt: bool,
    /// After start-up, how long preemption waits (keepalived's `preempt_delay`).
    pub preempt_delay: Duration,
    /// Our primary address on the interface (breaks ties between equal priorities).
    pub primary: IpAddr,
    /// A member of a sync group: when its master-down timer runs out it only *wants*
    /// mastership, and becomes master when the group says so (`force_master`).
    pub gated: bool,
}

#[derive(Debug, Clone)]
pub struct Machine {
    p: Params,
    state: State,
    /// Priority in force: the configured one less any tracking penalty.
    priority: u8,
    master_adver_interval: Duration,
    timer: Option<(Timer, Duration)>,
    /// The master we last heard from, and its priority.
    pub master: Option<(IpAddr, u8)>,
    /// Preemption waits until then (start-up plus `preempt_delay`).
    preempt_after: Duration,
    /// Preemption also waits until the daemon says its health checks have settled: a host
    /// that takes over before it knows its backends may take traffic it cannot serve.
    settled: bool,
    /// Gated only: the master-down timer ran out and nothing has been heard since.
    wants_master: bool,
}

/// Centiseconds, as the advert carries them (12 bits).
pub fn to_centis(d: Duration) -> u16 {
    ((d.as_millis() / 10).clamp(1, 0x0fff)) as u16
}

impl Machine {
    pub fn new(p: Params) -> Self {
        let priority = p.priority;
        let master_adver_interval = p.advert_interval;
        Self {
            p,
            state: State::Initialize,
            priority,
            master_adver_interval,
            timer: None,
            master: None,
            preempt_after: Duration::ZERO,
            settled: true,
            wants_master: false,
        }
    }

    /// Whether the health checks have a verdict for every tracked service (true until told
    /// otherwise).
    pub fn set_settled(&mut self, settled: bool) {
        self.settled = settled;
    }

    fn owner(&self) -> bool {
        self.p.priority == 255
    }

    /// Whether a lower-priority master may be overthrown now.
    fn may_preempt(&self, now: Duration) -> bool {
        self.p.preempt && self.settled && now >= self.preempt_after
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// Whether this sync-group member would be master now if its group let it.
    pub fn wants_master(&self) -> bool {
        self.wants_master
    }

    pub fn timer(&self) -> Option<(Timer, Duration)> {
        self.timer
    }

    pub fn advert_interval(&self) -> Duration {
        self.p.advert_interval
    }

    /// Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256.
    pub fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - self.priority as u32) / 256
    }

    /// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    fn go(&mut self, to: State, why: &'static str, out: &mut Vec<Action>) {
        self.wants_master = false;
        out.push(Action::Transition { from: self.state, to, why });
        self.state = to;
    }

    fn become_master(&mut self, now: Duration, why: &'static str, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert { priority: self.priority });
        out.push(Action::TakeAddresses);
        self.timer = Some((Timer::Adver, now + self.p.advert_interval));
        self.master = Some((self.p.primary, self.priority));
        self.go(State::Master, why, out);
    }

    fn become_backup(&mut self, now: Duration, why: &'static str, out: &mut Vec<Action>) {
        self.timer = Some((Timer::MasterDown, now + self.master_down_interval()));
        let was_master = self.state == State::Master;
        self.go(State::Backup, why, out);
        if was_master && !self.owner() {
            out.push(Action::ReleaseAddresses);
        }
    }

    pub fn startup(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Initialize {
            return out;
        }
        self.preempt_after = now + self.p.preempt_delay;
        if self.owner() {
            self.become_master(now, "address owner (priority 255)", &mut out);
        } else {
            self.master_adver_interval = self.p.advert_interval;
            // Make sure no address is left from a previous run that died.
            out.push(Action::ReleaseAddresses);
            self.become_backup(now, "startup", &mut out);
        }
        out
    }

    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Master => {
                out.push(Action::SendAdvert { priority: 0 });
                // The owner's virtual addresses are its own real ones: they stay.
                if !self.owner() {
                    out.push(Action::ReleaseAddresses);
                }
            }
            State::Backup | State::Fault => {}
            State::Initialize => return out,
        }
        self.timer = None;
        self.go(State::Initialize, "shutdown", &mut out);
        out
    }

    /// Call when `now` has reached the timer's deadline.
    pub fn on_timer(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, self.timer) {
            (State::Backup, Some((Timer::MasterDown, at))) if now >= at && self.p.gated => {
                // The group decides; until something is heard we keep wanting it.
                self.timer = None;
                self.wants_master = true;
            }
            (State::Backup, Some((Timer::MasterDown, at))) if now >= at => {
                self.become_master(now, "master down timer expired", &mut out);
            }
            (State::Master, Some((Timer::Adver, at))) if now >= at => {
                out.push(Action::SendAdvert { priority: self.priority });
                self.timer = Some((Timer::Adver, now + self.p.advert_interval));
            }
            _ => {}
        }
        out
    }

    /// An advertisement that passed every check (version, VRID, TTL, checksum, addresses).
    pub fn on_advert(&mut self, now: Duration, from: IpAddr, priority: u8, max_adver_int: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        // RFC 5798 §6.4.3: the address owner stays master and discards what others advertise.
        if self.owner() {
            return out;
        }
        match self.state {
            // In fault we take no part: what others say changes nothing until it clears.
            State::Initialize | State::Fault => {}
            State::Backup => {
                if priority == 0 {
                    // The master is leaving: take over after the skew time only.
                    self.timer = Some((Timer::MasterDown, now + self.skew_time()));
                } else if !self.may_preempt(now) || priority >= self.priority {
                    self.master_adver_interval = max_adver_int;
                    self.master = Some((from, priority));
                    self.timer = Some((Timer::MasterDown, now + self.master_down_interval()));
                    self.wants_master = false;
                }
                // Otherwise a lower-priority master while we preempt: let the timer run out.
            }
            State::Master => {
                if priority == 0 {
                    out.push(Action::SendAdvert { priority: self.priority });
                    self.timer = Some((Timer::Adver, now + self.p.advert_interval));
                } else if priority > self.priority || (priority == self.priority && from > self.p.primary) {
                    self.master_adver_interval = max_adver_int;
                    self.master = Some((from, priority));
                    self.become_backup(now, "higher-priority master seen", &mut out);
                }
            }
        }
        out
    }

    /// Gives mastership up because this host cannot hold its virtual addresses: priority 0
    /// tells the backup to take over within its skew time (a lowered priority would not move a
    /// backup without preemption). As backup we come back only if nobody else does.
    pub fn resign(&mut self, now: Duration, why: &'static str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Master || self.owner() {
            return out;
        }
        out.push(Action::SendAdvert { priority: 0 });
        self.master = None;
        self.become_backup(now, why, &mut out);
        out
    }

    /// Enters FAULT (`fault`) or leaves it. A master leaving says priority 0 so the backup
    /// takes over within its skew time, and gives up its addresses (but the owner's, which
    /// are its own); leaving FAULT starts over as backup, or master for the owner.
    pub fn set_fault(&mut self, now: Duration, fault: bool, why: &'static str) -> Vec<Action> {
        let mut out = Vec::new();
        match (fault, self.state) {
            (true, State::Master) => {
                out.push(Action::SendAdvert { priority: 0 });
                if !self.owner() {
                    out.push(Action::ReleaseAddresses);
                }
                self.enter_fault(why, &mut out);
            }
            (true, State::Backup) => self.enter_fault(why, &mut out),
            (false, State::Fault) if self.owner() => self.become_master(now, why, &mut out),
            (false, State::Fault) => self.become_backup(now, why, &mut out),
            _ => {}
        }
        out
    }

    fn enter_fault(&mut self, why: &'static str, out: &mut Vec<Action>) {
        self.timer = None;
        self.master = None;
        self.go(State::Fault, why, out);
    }

    /// The sync group makes this backup master: every member wants it.
    pub fn force_master(&mut self, now: Duration, why: &'static str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Backup {
            self.become_master(now, why, &mut out);
        }
        out
    }

    /// The sync group makes this master step down: another member saw a higher-priority
    /// master. No priority 0: the peer's group brings its own member up.
    pub fn force_backup(&mut self, now: Duration, why: &'static str) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master && !self.owner() {
            self.master = None;
            self.become_backup(now, why, &mut out);
        }
        out
    }

    /// Tracking changed the priority in force (never for the address owner).
    pub fn set_priority(&mut self, now: Duration, priority: u8) -> Vec<Action> {
        let mut out = Vec::new();
        if self.p.priority == 255 || priority == self.priority {
            return out;
        }
        self.priority = priority.max(1);
        if self.state == State::Master {
            // Tell the others at once, so a healthier backup can preempt.
            out.push(Action::SendAdvert { priority: self.priority });
            self.timer = Some((Timer::Adver, now + self.p.advert_interval));
            self.master = Some((self.p.primary, self.priority));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn m(priority: u8, preempt: bool) -> Machine {
        Machine::new(Params {
            priority,
            advert_interval: S,
            preempt,
            preempt_delay: Duration::ZERO,
            primary: "10.0.0.10".parse().unwrap(),
            gated: false,
        })
    }

    fn peer() -> IpAddr {
        "10.0.0.20".parse().unwrap()
    }

    fn transitions(a: &[Action]) -> Vec<State> {
        a.iter().filter_map(|x| if let Action::Transition { to, .. } = x { Some(*to) } else { None }).collect()
    }

    #[test]
    fn intervals_match_keepalived() {
        // keepalived: prio 100 → 3.609 s, prio 150 → 3.414 s at 1 s adverts.
        assert_eq!(m(100, true).master_down_interval(), ms(3609) + Duration::from_micros(375));
        assert_eq!(m(150, true).master_down_interval(), Duration::from_micros(3_414_062) + Duration::from_nanos(500));
        assert_eq!(m(100, true).skew_time(), Duration::from_micros(609_375));
    }

    #[test]
    fn the_owner_ignores_adverts_and_keeps_its_addresses_on_stop() {
        let mut x = m(255, true);
        x.startup(ms(0));
        assert!(x.on_advert(ms(10), peer(), 254, S).is_empty(), "a higher-looking master changes nothing");
        assert!(x.on_advert(ms(20), "10.0.0.200".parse().unwrap(), 255, S).is_empty());
        assert_eq!(x.state(), State::Master);
        let a = x.shutdown();
        assert!(a.contains(&Action::SendAdvert { priority: 0 }));
        assert!(!a.contains(&Action::ReleaseAddresses), "its virtual addresses are its own: {a:?}");
        assert!(x.clone().resign(ms(30), "x").is_empty());
    }

    #[test]
    fn preemption_waits_for_the_delay_and_for_settled_health() {
        let mut x = Machine::new(Params {
            priority: 150,
            advert_interval: S,
            preempt: true,
            preempt_delay: ms(5000),
            primary: "10.0.0.10".parse().unwrap(),
            gated: false,
        });
        x.startup(ms(0));
        x.set_settled(false);
        // A lower master advertising every second: within the delay it is accepted (the timer
        // is pushed back each time), so we stay backup.
        let mut t = ms(0);
        while t < ms(5000) {
            t += S;
            x.on_advert(t, peer(), 100, S);
            assert!(x.on_timer(t).is_empty());
            assert_eq!(x.state(), State::Backup, "at {t:?}");
        }
        // Past the delay but health not settled: still accepted.
        t += S;
        x.on_advert(t, peer(), 100, S);
        assert_eq!(x.timer(), Some((Timer::MasterDown, t + x.master_down_interval())));
        x.set_settled(true);
        let last = t + S;
        x.on_advert(last, peer(), 100, S);
        // Now the lower master's adverts no longer push the timer back: it runs out and we take over.
        let deadline = x.timer().expect("timer").1;
        assert!(deadline <= t + x.master_down_interval(), "not pushed back");
        assert_eq!(transitions(&x.on_timer(deadline)), vec![State::Master]);
    }

    #[test]
    fn a_master_that_cannot_hold_its_addresses_resigns_with_priority_zero() {
        let mut x = m(100, true);
        x.startup(ms(0));
        let down = x.master_down_interval();
        x.on_timer(down);
        assert_eq!(x.state(), State::Master);
        let a = x.resign(down + ms(10), "virtual addresses cannot be held");
        assert_eq!(a.first(), Some(&Action::SendAdvert { priority: 0 }));
        assert!(a.contains(&Action::ReleaseAddresses));
        assert_eq!(transitions(&a), vec![State::Backup]);
        assert!(x.resign(down + ms(20), "again").is_empty(), "only a master resigns");
    }

    #[test]
    fn owner_becomes_master_at_once() {
        let mut x = m(255, true);
        let a = x.startup(ms(0));
        assert_eq!(transitions(&a), vec![State::Master]);
        assert!(a.contains(&Action::SendAdvert { priority: 255 }) && a.contains(&Action::TakeAddresses));
        assert_eq!(x.timer(), Some((Timer::Adver, S)));
    }

    #[test]
    fn backup_takes_over_when_the_master_goes_silent() {
        let mut x = m(100, true);
        assert_eq!(transitions(&x.startup(ms(0))), vec![State::Backup]);
        let down = x.master_down_interval();
        assert_eq!(x.timer(), Some((Timer::MasterDown, down)));
        assert!(x.on_timer(down - ms(1)).is_empty());
        let a = x.on_timer(down);
        assert_eq!(transitions(&a), vec![State::Master]);
        assert!(a.contains(&Action::TakeAddresses));
    }

    #[test]
    fn adverts_from_a_higher_priority_master_keep_a_backup_waiting() {
        let mut x = m(100, true);
        x.startup(ms(0));
        for t in 1..10u64 {
            assert!(x.on_advert(S * t as u32, peer(), 150, S).is_empty());
        }
        assert_eq!(x.state(), State::Backup);
        assert_eq!(x.master, Some((peer(), 150)));
        assert_eq!(x.timer(), Some((Timer::MasterDown, S * 9 + x.master_down_interval())));
    }

    #[test]
    fn priority_zero_means_take_over_after_skew_only() {
        let mut x = m(100, true);
        x.startup(ms(0));
        x.on_advert(S, peer(), 150, S);
        x.on_advert(ms(1500), peer(), 0, S);
        assert_eq!(x.timer(), Some((Timer::MasterDown, ms(1500) + x.skew_time())));
        assert_eq!(transitions(&x.on_timer(ms(1500) + x.skew_time())), vec![State::Master]);
    }

    #[test]
    fn preemption_on_ignores_a_lower_master_and_takes_over() {
        let mut x = m(150, true);
        x.startup(ms(0));
        assert!(x.on_advert(S, peer(), 100, S).is_empty());
        // The timer was not reset by the weaker master's advert.
        assert_eq!(x.timer(), Some((Timer::MasterDown, x.master_down_interval())));
        assert_eq!(transitions(&x.on_timer(x.master_down_interval())), vec![State::Master]);
    }

    #[test]
    fn preemption_off_accepts_a_lower_master() {
        let mut x = m(150, false);
        x.startup(ms(0));
        x.on_advert(S, peer(), 100, S);
        assert_eq!(x.timer(), Some((Timer::MasterDown, S + x.master_down_interval())));
        assert!(x.on_timer(x.master_down_interval()).is_empty(), "no takeover while the master talks");
    }

    #[test]
    fn master_yields_to_higher_priority_and_releases_addresses() {
        let mut x = m(100, true);
        x.startup(ms(0));
        x.on_timer(x.master_down_interval());
        let a = x.on_advert(ms(5000), peer(), 200, S);
        assert_eq!(transitions(&a), vec![State::Backup]);
        assert!(a.contains(&Action::ReleaseAddresses));
    }

    #[test]
    fn equal_priority_is_decided_by_primary_address() {
        let mut x = m(100, true);
        x.startup(ms(0));
        x.on_timer(x.master_down_interval());
        let lower: IpAddr = "10.0.0.5".parse().unwrap();
        assert!(x.on_advert(ms(5000), lower, 100, S).is_empty(), "we have the higher address: stay master");
        assert_eq!(transitions(&x.on_advert(ms(5100), peer(), 100, S)), vec![State::Backup]);
    }

    #[test]
    fn master_answers_a_priority_zero_advert_at_once() {
        let mut x = m(100, true);
        x.startup(ms(0));
        x.on_timer(x.master_down_interval());
        assert_eq!(x.on_advert(ms(5000), peer(), 0, S), vec![Action::SendAdvert { priority: 100 }]);
    }

    #[test]
    fn master_sends_adverts_every_interval() {
        let mut x = m(100, true);
        x.startup(ms(0));
        let t0 = x.master_down_interval();
        x.on_timer(t0);
        assert_eq!(x.on_timer(t0 + S), vec![Action::SendAdvert { priority: 100 }]);
        assert_eq!(x.timer(), Some((Timer::Adver, t0 + S * 2)));
    }

    #[test]
    fn shutdown_sends_priority_zero_and_releases() {
        let mut x = m(100, true);
        x.startup(ms(0));
        x.on_timer(x.master_down_interval());
        let a = x.shutdown();
        assert_eq!(a[0], Action::SendAdvert { priority: 0 });
        assert!(a.contains(&Action::ReleaseAddresses));
        assert_eq!(x.state(), State::Initialize);
        let mut b = m(100, true);
        b.startup(ms(0));
        assert_eq!(transitions(&b.shutdown()), vec![State::Initialize]);
    }

    #[test]
    fn tracking_lowers_priority_and_announces_it() {
        let mut x = m(150, true);
        x.startup(ms(0));
        x.on_timer(x.master_down_interval());
        assert_eq!(x.set_priority(ms(9000), 90), vec![Action::SendAdvert { priority: 90 }]);
        // A healthier peer at 100 now preempts us.
        assert_eq!(transitions(&x.on_advert(ms(9100), peer(), 100, S)), vec![State::Backup]);
        let mut owner = m(255, true);
        owner.startup(ms(0));
        assert!(owner.set_priority(ms(1), 100).is_empty(), "the owner's priority never changes");
    }

    #[test]
    fn backup_learns_the_masters_interval() {
        let mut x = m(100, true);
        x.startup(ms(0));
        x.on_advert(S, peer(), 200, ms(100));
        assert_eq!(x.master_down_interval(), ms(300) + ms(100) * 156 / 256);
    }

    #[test]
    fn a_master_in_fault_says_priority_zero_releases_and_ignores_adverts() {
        let mut x = m(150, true);
        x.startup(ms(0));
        x.on_timer(x.master_down_interval());
        let a = x.set_fault(ms(5000), true, "interface down");
        assert_eq!(a[0], Action::SendAdvert { priority: 0 });
        assert!(a.contains(&Action::ReleaseAddresses));
        assert_eq!(transitions(&a), vec![State::Fault]);
        assert_eq!(x.timer(), None, "no adverts, no master-down timer");
        assert!(x.set_fault(ms(5001), true, "again").is_empty(), "one transition per fault");
        assert!(x.on_advert(ms(5100), peer(), 100, S).is_empty());
        assert!(x.on_timer(ms(60_000)).is_empty());
        assert_eq!(x.set_priority(ms(5200), 90), vec![], "no advert in fault");
        // Cleared: backup again, and master only after the master-down interval.
        let a = x.set_fault(ms(6000), false, "cleared");
        assert_eq!(transitions(&a), vec![State::Backup]);
        assert!(!a.contains(&Action::ReleaseAddresses));
        assert_eq!(x.timer(), Some((Timer::MasterDown, ms(6000) + x.master_down_interval())));
        assert_eq!(transitions(&x.shutdown()), vec![State::Initialize]);
    }

    #[test]
    fn a_backup_in_fault_and_the_owner_in_fault() {
        let mut x = m(100, true);
        x.startup(ms(0));
        let a = x.set_fault(ms(10), true, "tracked service down");
        assert_eq!(a, vec![Action::Transition { from: State::Backup, to: State::Fault, why: "tracked service down" }]);
        let mut owner = m(255, true);
        owner.startup(ms(0));
        let a = owner.set_fault(ms(10), true, "interface down");
        assert!(!a.contains(&Action::ReleaseAddresses), "the owner's addresses are its own: {a:?}");
        assert_eq!(transitions(&owner.set_fault(ms(20), false, "cleared")), vec![State::Master]);
        assert_eq!(transitions(&x.shutdown()), vec![State::Initialize], "a stop from fault sends nothing");
    }

    #[test]
    fn a_gated_member_only_wants_mastership_until_its_group_says_so() {
        let mut x = Machine::new(Params { gated: true, ..m(100, true).p });
        x.startup(ms(0));
        let down = x.master_down_interval();
        assert!(x.on_timer(down).is_empty(), "no takeover of its own");
        assert!(x.wants_master() && x.state() == State::Backup);
        // Hearing a master ends the wish.
        x.on_advert(down + ms(10), peer(), 150, S);
        assert!(!x.wants_master());
        x.on_timer(down + ms(10) + x.master_down_interval());
        assert!(x.wants_master());
        let a = x.force_master(down * 3, "sync group");
        assert_eq!(transitions(&a), vec![State::Master]);
        assert!(a.contains(&Action::TakeAddresses) && !x.wants_master());
        let a = x.force_backup(down * 4, "sync group");
        assert_eq!(transitions(&a), vec![State::Backup]);
        assert!(a.contains(&Action::ReleaseAddresses) && !a.contains(&Action::SendAdvert { priority: 0 }));
        assert!(x.force_backup(down * 5, "again").is_empty());
    }

    #[test]
    fn centiseconds() {
        assert_eq!(to_centis(S), 100);
        assert_eq!(to_centis(ms(100)), 10);
        assert_eq!(to_centis(ms(1)), 1);
        assert_eq!(to_centis(Duration::from_secs(100)), 4095);
    }
}
