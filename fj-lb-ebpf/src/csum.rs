//! The Internet checksum (RFC 1071) in pieces: sums of 16-bit big-endian words kept in a u32
//! (no carries lost below 65,537 words), folded at the end. The one's-complement identities
//! the encapsulation relies on (RFC 1624): a valid IPv4 header sums to 0xffff, which adds
//! nothing; a transport segment with its correct checksum sums to the complement of its
//! pseudo-header's sum.

/// Adds the 16-bit words of `b` (an even number of bytes) to `sum`.
#[inline(always)]
pub fn add_words<const N: usize>(mut sum: u32, b: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        sum += u16::from_be_bytes([b[i], b[i + 1]]) as u32;
        i += 2;
    }
    sum
}

/// Folds the carries back in: the one's-complement sum as 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The checksum field for a sum: its complement.
#[inline(always)]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}
