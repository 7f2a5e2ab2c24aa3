//! VRRP version 3 (RFC 5798): the codec and state machine are pure; `io` speaks to the
//! network and to rtnetlink.
pub mod io;
pub mod machine;
pub mod packet;
