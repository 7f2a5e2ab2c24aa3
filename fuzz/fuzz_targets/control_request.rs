//! The control socket's request decoder on arbitrary lines: never a panic, and a request it
//! accepts serialises back to one that decodes equal.
#![no_main]
use fj_lb::control::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else { return };
    let text = serde_json::to_string(&req).expect("requests serialise");
    assert_eq!(serde_json::from_str::<Request>(&text).expect("round trip"), req);
});
