//! Sync groups (keepalived's `vrrp_sync_group`): instances that change state together, so that
//! e.g. the client-side and the server-side address of a router never end up on two hosts.
//! Pure: the members report, this decides what the others are told.
//!
//! The rules (as keepalived's, see the README):
//! - **Fault**: while any member is in fault of its own (its interface, its tracking), every
//!   other member is held in fault too; they leave it together when no member has a fault.
//! - **Master**: a member whose master-down timer ran out only *wants* mastership; the group
//!   goes master when every member is master or wants to be. So one member still hearing a
//!   live master keeps the whole group backup, rather than splitting it between two hosts.
//! - **Backup**: a master that steps down of its own accord (a higher-priority master
//!   appeared, or it cannot hold its addresses) takes the group's other masters down with it.
use super::machine::State;

/// What a member reports after every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub state: State,
    pub wants_master: bool,
    /// In fault for a reason of its own, not because the group holds it there.
    pub own_fault: bool,
}

impl Default for Member {
    fn default() -> Self {
        Self { state: State::Initialize, wants_master: false, own_fault: false }
    }
}

/// What the group tells a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Held in fault by another member's (true), or released (false).
    Fault(bool),
    Master,
    Backup,
}

#[derive(Debug, Clone)]
pub struct SyncGroup {
    members: Vec<Member>,
    /// What each member was last told about the group's fault.
    told_fault: Vec<bool>,
    /// The state the group's notify scripts were last run for.
    notified: Option<State>,
}

impl SyncGroup {
    pub fn new(members: usize) -> Self {
        Self { members: vec![Member::default(); members], told_fault: vec![false; members], notified: None }
    }

    /// Member `i` is now `now`; `ordered` says the change came from an order of ours (such a
    /// change is not followed, or the group would chase itself). The orders for the others.
    pub fn report(&mut self, i: usize, now: Member, ordered: bool) -> Vec<(usize, Order)> {
        let before = std::mem::replace(&mut self.members[i], now);
        let mut out = Vec::new();
        for j in 0..self.members.len() {
            let held = self.members.iter().enumerate().any(|(k, m)| k != j && m.own_fault);
            if held != self.told_fault[j] {
                self.told_fault[j] = held;
                out.push((j, Order::Fault(held)));
            }
        }
        if self.members.iter().any(|m| m.own_fault) {
            return out;
        }
        if before.state == State::Master && now.state == State::Backup && !ordered {
            for (j, m) in self.members.iter().enumerate() {
                if j != i && m.state == State::Master {
                    out.push((j, Order::Backup));
                }
            }
        } else if self.members.iter().all(|m| m.state == State::Master || (m.state == State::Backup && m.wants_master)) {
            for (j, m) in self.members.iter().enumerate() {
                if m.state == State::Backup {
                    out.push((j, Order::Master));
                }
            }
        }
        out
    }

    /// The group's own state: master when every member is, backup when every member is,
    /// fault when any member is; none while it is between two.
    pub fn state(&self) -> Option<State> {
        if self.members.iter().any(|m| m.state == State::Fault) {
            Some(State::Fault)
        } else if self.members.iter().all(|m| m.state == State::Master) {
            Some(State::Master)
        } else if self.members.iter().all(|m| m.state == State::Backup) {
            Some(State::Backup)
        } else {
            None
        }
    }

    /// The group's state when it changed since the last call (for its notify scripts).
    pub fn changed(&mut self) -> Option<State> {
        let now = self.state()?;
        (self.notified != Some(now)).then(|| {
            self.notified = Some(now);
            now
        })
    }

    /// Whether the group ever reached a state (a stop is worth announcing only then).
    pub fn ever_notified(&self) -> bool {
        self.notified.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(state: State) -> Member {
        Member { state, wants_master: false, own_fault: false }
    }

    fn wanting() -> Member {
        Member { wants_master: true, ..m(State::Backup) }
    }

    fn faulty() -> Member {
        Member { own_fault: true, ..m(State::Fault) }
    }

    #[test]
    fn the_group_goes_master_only_when_every_member_wants_it() {
        let mut g = SyncGroup::new(2);
        assert!(g.report(0, m(State::Backup), false).is_empty());
        assert!(g.report(1, m(State::Backup), false).is_empty());
        assert_eq!(g.changed(), Some(State::Backup));
        assert!(g.report(0, wanting(), false).is_empty(), "member 1 still hears a master");
        assert_eq!(g.report(1, wanting(), false), vec![(0, Order::Master), (1, Order::Master)]);
        g.report(0, m(State::Master), true);
        assert_eq!(g.changed(), None, "between two states");
        g.report(1, m(State::Master), true);
        assert_eq!(g.changed(), Some(State::Master));
        assert_eq!(g.changed(), None, "once per state");
    }

    #[test]
    fn a_master_stepping_down_takes_the_others_with_it_but_an_ordered_one_does_not() {
        let mut g = SyncGroup::new(3);
        for i in 0..3 {
            g.report(i, m(State::Master), true);
        }
        assert_eq!(g.report(1, m(State::Backup), false), vec![(0, Order::Backup), (2, Order::Backup)]);
        assert!(g.report(0, m(State::Backup), true).is_empty(), "followed an order: nothing more");
    }

    #[test]
    fn one_members_fault_holds_the_others_in_fault_until_it_clears() {
        let mut g = SyncGroup::new(2);
        g.report(0, m(State::Master), false);
        g.report(1, m(State::Master), false);
        assert_eq!(g.report(1, faulty(), false), vec![(0, Order::Fault(true))]);
        assert_eq!(g.report(0, m(State::Fault), true), vec![], "held, not its own fault");
        assert_eq!(g.changed(), Some(State::Fault));
        // Both sides faulty: each holds the other.
        assert_eq!(g.report(0, faulty(), false), vec![(1, Order::Fault(true))]);
        // Member 1's own fault clears; member 0 still has its own: 0 is released, 1 still held.
        assert_eq!(g.report(1, m(State::Fault), false), vec![(0, Order::Fault(false))]);
        assert_eq!(g.report(0, m(State::Backup), false), vec![(1, Order::Fault(false))]);
    }

    #[test]
    fn no_master_order_while_a_member_has_a_fault() {
        let mut g = SyncGroup::new(2);
        g.report(0, faulty(), false);
        assert_eq!(g.report(1, wanting(), false), vec![]);
    }
}
