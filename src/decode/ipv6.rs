//! IPv6 header view (RFC 8200 §3) and the extension-header walk (RFC 8200 §4).

use std::net::Ipv6Addr;

use super::{read_u16, read_u32, read_u8, SkipReason};

mod field {
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

pub(crate) const HEADER_LEN: usize = 40;

/// IANA "Assigned Internet Protocol Numbers" that are IPv6 extension headers.
mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
}

/// Extension headers walked before giving up; RFC 8200 §4.1 recommends at most one of each.
const MAX_EXTENSION_HEADERS: usize = 16;

/// A checked view of the fixed IPv6 header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv6Header<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv6Header<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, SkipReason> {
        let v = read_u8(buf, field::VERSION).ok_or(SkipReason::Truncated)?;
        if v >> 4 != 6 {
            return Err(SkipReason::Malformed);
        }
        if buf.len() < HEADER_LEN {
            return Err(SkipReason::Truncated);
        }
        Ok(Ipv6Header { buf })
    }
    pub fn payload_len(&self) -> u16 {
        read_u16(self.buf, field::PAYLOAD_LEN).unwrap_or(0)
    }
    pub fn next_header(&self) -> u8 {
        read_u8(self.buf, field::NEXT_HEADER).unwrap_or(0)
    }
    pub fn hop_limit(&self) -> u8 {
        read_u8(self.buf, field::HOP_LIMIT).unwrap_or(0)
    }
    pub fn src(&self) -> Ipv6Addr {
        addr(self.buf, field::SRC)
    }
    pub fn dst(&self) -> Ipv6Addr {
        addr(self.buf, field::DST)
    }
}

fn addr(buf: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    if let Some(b) = buf.get(at..at + 16) {
        a.copy_from_slice(b);
    }
    Ipv6Addr::from(a)
}

/// A Fragment header (RFC 8200 §4.5) of a datagram that really is fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragmentHeader {
    pub next_header: u8,
    /// Offset of this fragment's data in the fragmentable part, in bytes.
    pub offset: u32,
    pub more: bool,
    pub ident: u32,
}

/// Where the extension-header chain ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExtWalk {
    /// The upper-layer protocol (or, with `fragment`, the header after the Fragment header).
    pub protocol: u8,
    /// Offset of the upper-layer header (or of the fragment's data) in the buffer.
    pub offset: usize,
    /// Set when a Fragment header with a non-zero offset or the M flag was met; the walk stops
    /// there because what follows is only part of the datagram.
    pub fragment: Option<FragmentHeader>,
    /// The identification of an atomic fragment (RFC 6946: offset 0, M clear), which is
    /// walked through like any other extension header.
    pub atomic_ident: Option<u32>,
    /// A Routing header was present: the checksum's pseudo-header then uses the final
    /// destination (RFC 8200 §8.1), which we do not compute.
    pub routed: bool,
}

/// Walks extension headers in `buf` from `offset`, starting with header type `first`, until an
/// upper-layer protocol. `wire_end` is where the datagram ends on the wire: a header crossing
/// it is malformed; one crossing the end of `buf` (but not `wire_end`) is truncated.
pub(crate) fn walk_extensions(
    buf: &[u8],
    mut offset: usize,
    first: u8,
    wire_end: usize,
) -> Result<ExtWalk, SkipReason> {
    let mut walk = ExtWalk {
        protocol: first,
        offset,
        fragment: None,
        atomic_ident: None,
        routed: false,
    };
    for _ in 0..MAX_EXTENSION_HEADERS {
        let nh = walk.protocol;
        let len = match nh {
            next_header::HOP_BY_HOP
            | next_header::ROUTING
            | next_header::DEST_OPTS
            | next_header::MOBILITY
            | next_header::HIP
            | next_header::SHIM6 => {
                // Hdr Ext Len: 8-octet units, not counting the first 8 octets.
                let l = read_u8(buf, offset + 1).ok_or_else(|| short(offset + 2, wire_end))?;
                (usize::from(l) + 1) * 8
            }
            // RFC 4302 §2.2: Payload Len is in 4-octet units, minus 2.
            next_header::AUTH => {
                let l = read_u8(buf, offset + 1).ok_or_else(|| short(offset + 2, wire_end))?;
                (usize::from(l) + 2) * 4
            }
            next_header::FRAGMENT => 8,
            _ => return Ok(walk),
        };
        let end = offset + len;
        if end > wire_end {
            return Err(SkipReason::Malformed);
        }
        if end > buf.len() {
            return Err(SkipReason::Truncated);
        }
        let next = read_u8(buf, offset).unwrap_or(59);
        if nh == next_header::ROUTING {
            walk.routed = true;
        }
        if nh == next_header::FRAGMENT {
            let off_m = read_u16(buf, offset + 2).unwrap_or(0);
            let ident = read_u32(buf, offset + 4).unwrap_or(0);
            let frag = FragmentHeader {
                next_header: next,
                offset: u32::from(off_m & 0xfff8),
                more: off_m & 1 != 0,
                ident,
            };
            if frag.offset != 0 || frag.more {
                walk.fragment = Some(frag);
                walk.protocol = next;
                walk.offset = end;
                return Ok(walk);
            }
            walk.atomic_ident = Some(ident);
        }
        walk.protocol = next;
        offset = end;
        walk.offset = offset;
    }
    Err(SkipReason::Malformed)
}

fn short(needed: usize, wire_end: usize) -> SkipReason {
    if needed > wire_end {
        SkipReason::Malformed
    } else {
        SkipReason::Truncated
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]
    use super::*;

    #[test]
    fn walks_hop_by_hop_dest_opts_and_ah() {
        let buf = [
            /* HBH: next=60 len=0 */ 60, 0, 1, 4, 0, 0, 0, 0,
            /* DestOpts: next=51 len=1 (16 bytes) */ 51, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, /* AH: next=6 len=1 (12 bytes) */ 6, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1,
            /* TCP starts here */ 0, 0,
        ];
        let w = walk_extensions(&buf, 0, 0, buf.len()).unwrap();
        assert_eq!((w.protocol, w.offset, w.fragment), (6, 36, None));
        for n in 0..36 {
            assert_eq!(
                walk_extensions(&buf[..n], 0, 0, buf.len()),
                Err(SkipReason::Truncated),
                "{n}"
            );
            assert_eq!(
                walk_extensions(&buf[..n], 0, 0, n),
                Err(SkipReason::Malformed),
                "{n}"
            );
        }
    }

    #[test]
    fn stops_at_a_real_fragment_and_passes_an_atomic_one() {
        let frag = [
            /* next=17 */ 17, 0, /* offset 1 (8 bytes), M */ 0x00, 0x09, /* id */ 0,
            0, 0, 7,
        ];
        let w = walk_extensions(&frag, 0, 44, 8).unwrap();
        assert_eq!(
            w.fragment,
            Some(FragmentHeader {
                next_header: 17,
                offset: 8,
                more: true,
                ident: 7
            })
        );
        let atomic = [17, 0, 0, 0, 0, 0, 0, 9];
        let w = walk_extensions(&atomic, 0, 44, 8).unwrap();
        assert_eq!(
            (w.protocol, w.offset, w.fragment, w.atomic_ident),
            (17, 8, None, Some(9))
        );
    }

    #[test]
    fn endless_chain_is_malformed() {
        let buf = [0u8; 8 * 20]; // hop-by-hop pointing at hop-by-hop, forever
        assert_eq!(
            walk_extensions(&buf, 0, 0, buf.len()),
            Err(SkipReason::Malformed)
        );
    }
}
