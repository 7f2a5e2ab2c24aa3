//! What the XDP objects share: packet parsing with bounds checks (`parse`), the layer-2
//! rewrites (`forward`), encapsulation (`encap`) and checksum arithmetic (`csum`). Nothing here defines a map: every `#[map]` static of a library linked
//! into a binary lands in that binary's object, used or not, so each map lives in the binary
//! whose programs use it.
//!
//! The objects, one per binary of this crate:
//! - `fj-lb` (`src/main.rs`): the balancer and its maps, nothing else; the daemon loads it. Its
//!   modules, split by concern as Katran splits its own: maps (`maps`), counters (`stats`),
//!   backend choice and the flow table (`flow`), the per-packet decision (`balancer`). The flow
//!   hash itself lives in `fj-lb-common` so the daemon computes the very same value.
//! - `fj-lb-aux` (`src/bin/fj-lb-aux/`): the helper programs of labs and benchmarks
//!   (pass-through, floor, packet generator) and the generator's maps.
//! - `fj-lb-decap` (`src/bin/fj-lb-decap/`): the backends' decapsulation program and its maps
//!   (`fj-lb decap`).
#![no_std]

/// What every program object needs besides its programs: the panic handler a `no_std` binary
/// must have, and the license the kernel checks GPL-only helpers against.
#[macro_export]
macro_rules! object_common {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}

pub mod csum;
pub mod encap;
pub mod forward;
pub mod parse;
