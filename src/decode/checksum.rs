//! The Internet checksum (RFC 1071) over TCP and UDP with their IPv4 (RFC 9293 §3.1, RFC 768)
//! and IPv6 (RFC 8200 §8.1) pseudo-headers.
//!
//! Speed matters here: every fully captured TCP segment is summed. The one's-complement sum
//! is independent of where the carries are folded (RFC 1071 §2(B), "deferred carries") and of
//! byte order (§2(A): summing byte-swapped words gives the byte-swapped sum). So the bulk of a
//! segment is summed as little-endian 32-bit words into a 64-bit accumulator, which cannot
//! overflow for any slice shorter than 2^32 × 4 bytes and which the compiler turns into SIMD
//! adds; the result is folded, swapped to network order, and the tail added word by word.

use std::net::IpAddr;

/// Adds `data` to a running sum of big-endian 16-bit words (an odd last byte is padded with a
/// zero byte, RFC 1071 §4.1). The result is not folded.
pub fn add_words(mut acc: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(4);
    let bulk: u64 = (&mut words)
        .map(|w| u64::from(u32::from_le_bytes(w.try_into().unwrap_or([0; 4]))))
        .sum();
    acc += u64::from(fold(bulk).swap_bytes());
    // The tail starts at a multiple of 4, so its pairs are the stream's 16-bit words.
    let mut pairs = words.remainder().chunks_exact(2);
    for pair in &mut pairs {
        if let [a, b] = *pair {
            acc += u64::from(u16::from_be_bytes([a, b]));
        }
    }
    if let [last] = *pairs.remainder() {
        acc += u64::from(last) << 8;
    }
    acc
}

/// Folds a running sum into 16 bits with end-around carry.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header sum for a transport segment of `len` bytes carried by IP protocol
/// `protocol` between `src` and `dst`. Mixed address families give the IPv6 form with the
/// IPv4 address mapped, which never matches a real packet; callers pass one family.
pub fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: u32) -> u64 {
    let mut acc = 0u64;
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            acc = add_words(acc, &s.octets());
            acc = add_words(acc, &d.octets());
            // RFC 9293 §3.1: zero, protocol, 16-bit TCP length.
            acc += u64::from(protocol) + u64::from(len & 0xffff);
        }
        (s, d) => {
            let s = match s {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            let d = match d {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            acc = add_words(acc, &s.octets());
            acc = add_words(acc, &d.octets());
            // RFC 8200 §8.1: 32-bit upper-layer length, three zero bytes, next header.
            acc += u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(protocol);
        }
    }
    acc
}

/// The value a sender puts in the checksum field of `segment` (whose own checksum field must
/// be zero while computing). Used by tests to build valid fixtures.
pub fn transport_checksum(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let acc = add_words(pseudo_header_sum(src, dst, protocol, len), segment);
    !fold(acc)
}

/// True when `segment` (checksum field included) sums to all ones with its pseudo-header,
/// i.e. its checksum is correct.
pub fn transport_checksum_ok(src: IpAddr, dst: IpAddr, protocol: u8, segment: &[u8]) -> bool {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    fold(add_words(
        pseudo_header_sum(src, dst, protocol, len),
        segment,
    )) == 0xffff
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]
    use super::*;

    /// Word-at-a-time reference sum, straight from RFC 1071 §4.1.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn matches_rfc1071_example() {
        // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add_words(0, &data)), 0xddf2);
    }

    #[test]
    fn matches_reference_for_all_lengths_and_alignments() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(97) ^ 0xa5) as u8)
            .collect();
        for start in 0..9 {
            for end in start..data.len() {
                assert_eq!(
                    fold(add_words(0, &data[start..end])),
                    reference(&data[start..end])
                );
            }
        }
        let ones = vec![0xffu8; 4000];
        assert_eq!(fold(add_words(0, &ones)), reference(&ones));
    }

    #[test]
    fn computed_checksum_verifies() {
        let src: IpAddr = "10.0.0.1".parse().unwrap();
        let dst: IpAddr = "10.0.0.2".parse().unwrap();
        let mut seg = vec![0u8; 33];
        seg[0] = 0x12;
        seg[32] = 0x7f;
        let c = transport_checksum(src, dst, 6, &seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        assert!(transport_checksum_ok(src, dst, 6, &seg));
        seg[20] ^= 1;
        assert!(!transport_checksum_ok(src, dst, 6, &seg));
    }
}
