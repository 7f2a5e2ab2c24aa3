//! The control protocol, shared by the daemon (server) and the CLI (client): one JSON request
//! per line, one JSON response per line. Every message is a typed enum or struct, so a renamed
//! field breaks the build instead of reading as a silent default. Pure: serde only.
use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::report::{
    status::{FlowReport, LookupReport, MaglevReport, Status},
    trace::TraceEvent,
};

/// Longest request line accepted; anything longer is refused unread.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Drain { service: String, backend: String },
    Enable { service: String, backend: String },
    Weight { service: String, backend: String, weight: u32 },
    Reload {},
    Status {},
    Flows { service: Option<String>, backend: Option<String>, limit: Option<usize> },
    Maglev { service: String },
    Stats {},
    Lookup { src: String, dst: String, protocol: String },
    /// Streams: the answer (`TraceStarted`), then one `TraceEvent` line per matching packet
    /// until `count` of them, the client closing the connection, or the daemon stopping.
    Trace {
        vip: Option<String>,
        service: Option<String>,
        backend: Option<String>,
        reason: Option<String>,
        client: Option<String>,
        count: Option<u64>,
    },
}

/// What `trace` answers before its events: the filter in force, in words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceStarted {
    pub filter: String,
}

/// What `flows` answers: a page of the flow table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowsReply {
    pub total_entries: usize,
    pub capacity: u32,
    pub flows: Vec<FlowReport>,
}

/// What `reload` answers when the new config is in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadReply {
    pub message: String,
}

/// Data-path counters by name, summed over CPUs.
pub type StatsReply = BTreeMap<String, u64>;

/// The data of a successful answer, one variant per kind of request. On the wire it is the
/// inner value alone (the client knows what it asked for and reads that type back).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Reply {
    Status(Box<Status>),
    Flows(FlowsReply),
    Maglev(MaglevReport),
    Stats(StatsReply),
    Lookup(LookupReport),
    Reloaded(ReloadReply),
    TraceStarted(TraceStarted),
    /// One line of a trace's stream.
    Trace(TraceEvent),
    /// Drain, enable, weight: done, nothing to show.
    Done,
}

/// One answer: `{"ok":true,"data":…}` or `{"ok":false,"error":"…"}`. The daemon sends
/// `Response<Reply>`; the client reads `Response<T>` for the `T` its request answers with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}

fn none<T>() -> Option<T> {
    None
}

impl Response<Reply> {
    pub fn ok(reply: Reply) -> Self {
        let data = if reply == Reply::Done { None } else { Some(reply) };
        Self { ok: true, error: None, data }
    }
    pub fn err(e: impl ToString) -> Self {
        Self { ok: false, error: Some(e.to_string()), data: None }
    }
}

/// The answer type of each request, for the client.
pub trait Answer: DeserializeOwned {}
impl Answer for Status {}
impl Answer for FlowsReply {}
impl Answer for MaglevReport {}
impl Answer for StatsReply {}
impl Answer for LookupReport {}
impl Answer for ReloadReply {}
impl Answer for TraceStarted {}
impl Answer for TraceEvent {}
impl Answer for () {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address")]
pub struct NotAnAddress(pub String);

/// The backend filter of `flows`: an address, or none.
pub fn parse_backend_filter(backend: Option<&str>) -> Result<Option<IpAddr>, NotAnAddress> {
    match backend {
        None => Ok(None),
        Some(b) => b.parse().map(Some).map_err(|_| NotAnAddress(b.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_stable_names() {
        let r: Request = serde_json::from_str(r#"{"cmd":"weight","service":"web","backend":"10.0.0.11","weight":5}"#).unwrap();
        assert_eq!(r, Request::Weight { service: "web".into(), backend: "10.0.0.11".into(), weight: 5 });
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"weight","service":"web"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reload","extra":1}"#).is_err());
        let t: Request = serde_json::from_str(r#"{"cmd":"trace","service":"web","count":3}"#).unwrap();
        assert_eq!(
            t,
            Request::Trace { vip: None, service: Some("web".into()), backend: None, reason: None, client: None, count: Some(3) }
        );
    }

    #[test]
    fn answers_keep_their_wire_shape() {
        let done = serde_json::to_string(&Response::ok(Reply::Done)).unwrap();
        assert_eq!(done, r#"{"ok":true}"#);
        let err = serde_json::to_string(&Response::err("no service named \"x\"")).unwrap();
        assert_eq!(err, r#"{"ok":false,"error":"no service named \"x\""}"#);
        let reloaded = serde_json::to_string(&Response::ok(Reply::Reloaded(ReloadReply { message: "m".into() }))).unwrap();
        assert_eq!(reloaded, r#"{"ok":true,"data":{"message":"m"}}"#);
        let back: Response<ReloadReply> = serde_json::from_str(&reloaded).unwrap();
        assert_eq!(back.data.unwrap().message, "m");
        let unit: Response<()> = serde_json::from_str(&done).unwrap();
        assert!(unit.ok && unit.data.is_none());
        let stats = serde_json::to_string(&Response::ok(Reply::Stats([("forwarded".to_string(), 3)].into()))).unwrap();
        assert_eq!(stats, r#"{"ok":true,"data":{"forwarded":3}}"#);
    }

    #[test]
    fn a_renamed_field_is_an_error_not_a_default() {
        assert!(serde_json::from_str::<Response<FlowsReply>>(r#"{"ok":true,"data":{"total":1,"capacity":2,"flows":[]}}"#).is_err());
    }

    #[test]
    fn backend_filters() {
        assert_eq!(parse_backend_filter(None), Ok(None));
        assert_eq!(parse_backend_filter(Some("10.0.0.11")), Ok(Some("10.0.0.11".parse().unwrap())));
        assert!(parse_backend_filter(Some("web-1")).is_err());
    }
}
