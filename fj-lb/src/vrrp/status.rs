//! What one VRRP instance reports: `fj-lb status` shows it, metrics export its state.
use std::{collections::BTreeMap, net::IpAddr};

use super::machine::State;

/// What `fj-lb status` shows and metrics export.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct VrrpStatus {
    /// The instance's name (`[vrrp] name`, by default `vrid<N>`).
    pub name: String,
    pub state: State,
    pub vrid: u8,
    pub interface: String,
    pub priority: u8,
    pub configured_priority: u8,
    pub master: Option<IpAddr>,
    pub master_priority: Option<u8>,
    pub last_transition: Option<String>,
    pub last_transition_reason: Option<String>,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub rejected: BTreeMap<String, u64>,
    pub virtual_addresses: Vec<String>,
    /// Empty: multicast.
    pub unicast_peers: Vec<String>,
    pub sync_group: Option<String>,
}

impl VrrpStatus {
    /// An instance as it starts: initialize, nothing heard, nothing sent.
    pub fn initial(name: &str, vrid: u8, interface: &str, priority: u8, virtual_addresses: Vec<String>) -> VrrpStatus {
        VrrpStatus {
            name: name.to_string(),
            state: State::Initialize,
            vrid,
            interface: interface.to_string(),
            priority,
            configured_priority: priority,
            master: None,
            master_priority: None,
            last_transition: None,
            last_transition_reason: None,
            transitions: 0,
            adverts_sent: 0,
            adverts_received: 0,
            rejected: BTreeMap::new(),
            virtual_addresses,
            unicast_peers: Vec::new(),
            sync_group: None,
        }
    }
}
