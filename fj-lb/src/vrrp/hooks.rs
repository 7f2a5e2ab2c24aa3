//! Which notify scripts a transition runs, with which arguments, as keepalived runs them: the
//! state's own script (`notify_master`, `notify_backup`, `notify_fault`, `notify_stop`) as
//! configured, then `notify` with four more arguments: type (`INSTANCE` or `GROUP`), name,
//! state (`MASTER`, `BACKUP`, `FAULT`, `STOP`) and priority (0 for a group). Pure.
use super::machine::State;
use crate::model::config::NotifyConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Instance,
    Group,
}

/// keepalived's name of a state; leaving for `Initialize` is the stop.
pub fn state_word(state: State) -> &'static str {
    match state {
        State::Master => "MASTER",
        State::Backup => "BACKUP",
        State::Fault => "FAULT",
        State::Initialize => "STOP",
    }
}

/// The commands (argument vectors) to run, in order, for entering `state`.
pub fn commands(n: &NotifyConfig, kind: Kind, name: &str, state: State, priority: u8) -> Vec<Vec<String>> {
    let own = match state {
        State::Master => &n.master,
        State::Backup => &n.backup,
        State::Fault => &n.fault,
        State::Initialize => &n.stop,
    };
    let mut out: Vec<Vec<String>> = own.iter().cloned().collect();
    if let Some(generic) = &n.notify {
        let kind = match kind {
            Kind::Instance => "INSTANCE",
            Kind::Group => "GROUP",
        };
        let priority = if kind == "GROUP" { 0 } else { priority };
        let mut argv = generic.clone();
        argv.extend([kind.to_string(), name.to_string(), state_word(state).to_string(), priority.to_string()]);
        out.push(argv);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Option<Vec<String>> {
        Some(s.split(' ').map(str::to_string).collect())
    }

    #[test]
    fn the_states_script_then_notify_with_keepalived_arguments() {
        let n = NotifyConfig { master: argv("/bin/m x"), notify: argv("/bin/n"), ..Default::default() };
        assert_eq!(commands(&n, Kind::Instance, "VI_1", State::Master, 150), vec![
            argv("/bin/m x").unwrap(),
            argv("/bin/n INSTANCE VI_1 MASTER 150").unwrap()
        ]);
        assert_eq!(commands(&n, Kind::Instance, "VI_1", State::Fault, 90), vec![argv("/bin/n INSTANCE VI_1 FAULT 90").unwrap()]);
        assert_eq!(commands(&n, Kind::Group, "G", State::Initialize, 150), vec![argv("/bin/n GROUP G STOP 0").unwrap()]);
        assert!(commands(&NotifyConfig::default(), Kind::Instance, "x", State::Backup, 1).is_empty());
    }
}
