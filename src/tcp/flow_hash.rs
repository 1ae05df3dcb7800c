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
/// connection find the same entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FlowKey {
    lo: [u8; 16],
    hi: [u8; 16],
    /// `lo` port in the high half, `hi` port in the low half; bit 32 marks IPv6.
    ports: u64,
}

fn addr_bytes(ip: IpAddr) -> ([u8; 16], bool) {
    match ip {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), false),
        IpAddr::V6(a) => (a.octets(), true),
    }
}

impl FlowKey {
    pub(crate) fn new(a: SocketAddr, b: SocketAddr) -> FlowKey {
        let (ab, a6) = addr_bytes(a.ip());
        let (bb, b6) = addr_bytes(b.ip());
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
        let half = |b: &[u8; 16], i: usize| {
            let mut w = [0u8; 8];
            if let Some(src) = b.get(i..i + 8) {
                w.copy_from_slice(src);
            }
            u64::from_le_bytes(w)
        };
        state.write_u64(half(&self.lo, 0));
        state.write_u64(half(&self.lo, 8));
        state.write_u64(half(&self.hi, 0));
        state.write_u64(half(&self.hi, 8));
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
}
