//! The connection table's key and hasher.
//!
//! std's SipHash resists hash flooding but costs more than the rest of a table lookup; the
//! key here is already mixed by a multiply-rotate hash (the Firefox/rustc "Fx" scheme).
//! An attacker who crafts a capture to collide flows only slows us down: the table is bounded
//! by `Limits::max_connections`.

use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Multiply-rotate hasher for fixed-size keys.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(rest) {
                *d = *s;
            }
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

/// A TCP 5-tuple with its two endpoints in a canonical order, so both directions of a
/// connection find the same entry. Addresses are IPv6 (IPv4 mapped) as 128-bit integers in
/// network byte order, so that building, ordering and hashing a key (once per packet) are a
/// few register operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FlowKey {
    lo: u128,
    hi: u128,
    /// `lo` port in the high half, `hi` port in the low half; bit 32 marks IPv6.
    ports: u64,
}

/// The address as an IPv6 integer (RFC 4291 §2.5.5.2 for IPv4), and whether it was IPv6.
fn addr_bits(ip: IpAddr) -> (u128, bool) {
    match ip {
        IpAddr::V4(a) => (0xffff_u128 << 32 | u128::from(u32::from(a)), false),
        IpAddr::V6(a) => (u128::from(a), true),
    }
}

impl FlowKey {
    pub(crate) fn new(a: SocketAddr, b: SocketAddr) -> FlowKey {
        let (ab, a6) = addr_bits(a.ip());
        let (bb, b6) = addr_bits(b.ip());
        let v6 = u64::from(a6 || b6) << 32;
        if (ab, a.port()) <= (bb, b.port()) {
            FlowKey {
                lo: ab,
                hi: bb,
                ports: v6 | u64::from(a.port()) << 16 | u64::from(b.port()),
            }
        } else {
            FlowKey {
                lo: bb,
                hi: ab,
                ports: v6 | u64::from(b.port()) << 16 | u64::from(a.port()),
            }
        }
    }
}

impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.lo as u64);
        state.write_u64((self.lo >> 64) as u64);
        state.write_u64(self.hi as u64);
        state.write_u64((self.hi >> 64) as u64);
        state.write_u64(self.ports);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_a_key() {
        let a: SocketAddr = "10.0.0.1:50000".parse().unwrap_or_else(|_| unreachable!());
        let b: SocketAddr = "10.0.0.2:1433".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(FlowKey::new(a, b), FlowKey::new(b, a));
        let c: SocketAddr = "10.0.0.2:1434".parse().unwrap_or_else(|_| unreachable!());
        assert_ne!(FlowKey::new(a, b), FlowKey::new(a, c));
    }

    #[test]
    fn ipv4_is_mapped_and_ordered_like_its_bytes() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap_or_else(|_| unreachable!());
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(addr_bits(v4).0, addr_bits(mapped).0);
        let lower: IpAddr = "10.1.2.255".parse().unwrap_or_else(|_| unreachable!());
        let higher: IpAddr = "10.1.3.0".parse().unwrap_or_else(|_| unreachable!());
        assert!(addr_bits(lower).0 < addr_bits(higher).0);
    }
}
