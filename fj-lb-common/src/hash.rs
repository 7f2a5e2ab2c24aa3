//! The flow hash. It runs in the XDP program and in the daemon (for `lookup`, tests and
//! benchmarks), so it lives here once. It depends only on the 5-tuple and a seed fixed by the
//! config: every LB host running the same config sends a flow to the same Maglev slot.
//!
//! MurmurHash3's x86_32 block and finalisation steps over the ten 32-bit words of the tuple:
//! cheap in BPF (no loops the verifier has to walk beyond a fixed unroll) and well mixed.

use crate::FlowKey;

pub const DEFAULT_SEED: u32 = 0x6a09_e667;

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u32 {
    // Big-endian on purpose: the value must not depend on the host's byte order.
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

#[inline(always)]
pub fn flow_hash(key: &FlowKey, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, word(&key.src, 0));
    h = mix(h, word(&key.src, 4));
    h = mix(h, word(&key.src, 8));
    h = mix(h, word(&key.src, 12));
    h = mix(h, word(&key.dst, 0));
    h = mix(h, word(&key.dst, 4));
    h = mix(h, word(&key.dst, 8));
    h = mix(h, word(&key.dst, 12));
    h = mix(h, ((key.sport as u32) << 16) | key.dport as u32);
    h = mix(h, ((key.proto as u32) << 8) | key.family as u32);
    finish(h, 40)
}

#[inline(always)]
fn finish(h: u32, len: u32) -> u32 {
    let mut h = h ^ len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Hash of arbitrary bytes with the same mixing, for the Maglev permutations (user space only,
/// but kept next to its twin so the two never drift apart in quality).
pub fn bytes_hash(data: &[u8], seed: u32) -> u32 {
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        h = mix(h, u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 4];
        tail[..rest.len()].copy_from_slice(rest);
        h = mix(h, u32::from_be_bytes(tail));
    }
    finish(h, data.len() as u32)
}

/// Bits in the VIP filter (`VIP_FILTER`: this many / 64 words).
pub const VIP_FILTER_BITS: u32 = 4096;

/// The VIP filter's bit for destination `addr`: set for every VIP, so a packet whose bit is
/// clear is for no service, and the program passes it without a hash-map lookup (the LB host's
/// own traffic would otherwise pay for a flow-table and a service lookup). A set bit only
/// means "perhaps": the lookups decide. Native byte order: the daemon that fills the filter
/// runs on the host whose program reads it.
#[inline(always)]
pub fn vip_filter_bit(addr: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([addr[i], addr[i + 1], addr[i + 2], addr[i + 3]]);
    let folded = w(0) ^ w(4) ^ w(8) ^ w(12);
    // Fibonacci hashing: the top bits of the product, well mixed even for addresses that
    // differ only in their last byte.
    folded.wrapping_mul(0x9e37_79b1) >> (32 - VIP_FILTER_BITS.trailing_zeros())
}

/// The VIP filter with the bits of `addrs` set, word by word as the map holds it.
pub fn vip_filter_words<'a>(addrs: impl IntoIterator<Item = &'a [u8; 16]>) -> [u64; (VIP_FILTER_BITS / 64) as usize] {
    let mut words = [0u64; (VIP_FILTER_BITS / 64) as usize];
    for a in addrs {
        let bit = vip_filter_bit(a);
        words[(bit >> 6) as usize] |= 1 << (bit & 63);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_hash_is_stable_across_builds() {
        // A changed value here means two LB hosts on different versions disagree on backends.
        let mut k = FlowKey::default();
        k.src[..4].copy_from_slice(&[10, 0, 0, 1]);
        k.dst[..4].copy_from_slice(&[10, 0, 0, 100]);
        k.sport = 40000;
        k.dport = 80;
        k.proto = 6;
        k.family = 4;
        let a = flow_hash(&k, DEFAULT_SEED);
        assert_eq!(a, flow_hash(&k, DEFAULT_SEED));
        k.sport = 40001;
        assert_ne!(a, flow_hash(&k, DEFAULT_SEED), "ports must change the hash");
    }

    #[test]
    fn neighbouring_addresses_spread_over_the_vip_filter() {
        let mut seen = [false; VIP_FILTER_BITS as usize];
        for last in 0..=255u8 {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[10, 0, 0, last]);
            seen[vip_filter_bit(&a) as usize] = true;
        }
        let distinct = seen.iter().filter(|s| **s).count();
        assert!(distinct > 240, "a /24 of VIPs takes {distinct} distinct bits of 256");
    }

    #[test]
    fn the_filter_words_hold_exactly_the_bits_of_their_addresses() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, 100]);
        let mut b = [0u8; 16];
        b[..2].copy_from_slice(&[0x20, 0x01]);
        b[15] = 0x64;
        let words = vip_filter_words([&a, &b]);
        let set: u32 = words.iter().map(|w| w.count_ones()).sum();
        assert_eq!(set, if vip_filter_bit(&a) == vip_filter_bit(&b) { 1 } else { 2 });
        for x in [a, b] {
            let bit = vip_filter_bit(&x);
            assert_ne!(words[(bit >> 6) as usize] & (1 << (bit & 63)), 0);
        }
        assert_eq!(vip_filter_words([]), [0; 64]);
    }
}
