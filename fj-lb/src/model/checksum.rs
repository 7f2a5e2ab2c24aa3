//! The Internet checksum (RFC 1071) over any number of byte slices, as if concatenated. Used
//! for VRRP adverts and for IPv4 headers the daemon or the benchmarks build.
pub fn internet(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut carry: Option<u8> = None;
    for part in parts {
        for &b in part.iter() {
            match carry.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => carry = Some(b),
            }
        }
    }
    if let Some(hi) = carry {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc_1071_example_and_odd_lengths() {
        // RFC 1071 §3's example words sum to 0xddf2; the checksum is its complement.
        assert_eq!(super::internet(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]), !0xddf2);
        // Split anywhere, even mid-word, the sum is the same.
        assert_eq!(super::internet(&[&[0x00, 0x01, 0xf2], &[0x03, 0xf4, 0xf5, 0xf6, 0xf7]]), !0xddf2);
        assert_eq!(super::internet(&[&[0xab]]), !0xab00);
    }
}
