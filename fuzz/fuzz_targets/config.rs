//! The config parser and validator on arbitrary text: never a panic; a refusal always names a
//! line inside the text.
#![no_main]
use fj_lb::model::config::{ConfigError, HostView, parse};
use libfuzzer_sys::fuzz_target;

struct AnyInterface;
impl HostView for AnyInterface {
    fn interface_exists(&self, name: &str) -> bool {
        name == "eth0"
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text, "fuzz.toml", &AnyInterface) {
        Ok(c) => assert!(!c.interface.is_empty()),
        Err(ConfigError::Invalid { line, .. }) => assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {line}"),
        Err(_) => {}
    }
});
