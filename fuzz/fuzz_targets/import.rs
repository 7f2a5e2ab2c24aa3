//! The importers (keepalived.conf, haproxy.cfg) on arbitrary text read through their `Source`:
//! never a panic, an unbounded allocation or a hang. The first byte
//! picks the importer (even: keepalived, odd: haproxy), the rest is the file. Every `include`
//! resolves to the same text and every directory lists one name, so include chains and globs
//! are explored too (the importer must bound their depth).
#![no_main]
use std::path::Path;

use fj_lb::import::{self, Source};
use libfuzzer_sys::fuzz_target;

struct One(String);

impl Source for One {
    fn read(&self, _: &Path) -> std::io::Result<String> {
        Ok(self.0.clone())
    }
    fn list(&self, _: &Path) -> std::io::Result<Vec<String>> {
        Ok(vec!["a.conf".to_string()])
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let src = One(text.to_string());
    let _ = if which & 1 == 0 {
        import::keepalived(Path::new("/etc/keepalived/keepalived.conf"), &src, None)
    } else {
        import::haproxy(Path::new("/etc/haproxy/haproxy.cfg"), &src)
    };
});
