//! IPv4 header view (RFC 791 §3.1).

use std::net::Ipv4Addr;

use super::{read_u16, read_u8, SkipReason};

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Header length without options.
pub(crate) const MIN_HEADER_LEN: usize = 20;
const MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET_MASK: u16 = 0x1fff;

/// A checked view of an IPv4 header: `new_checked` guarantees the whole header (options
/// included) is in the buffer, so the accessors never fail.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4Header<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv4Header<'a> {
    /// Checks version, IHL and that the header was captured. The total length is not checked
    /// against the buffer: a frame may be cut by the snaplen or carry a bogus length.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, SkipReason> {
        let ver_ihl = read_u8(buf, field::VER_IHL).ok_or(SkipReason::Truncated)?;
        if ver_ihl >> 4 != 4 {
            return Err(SkipReason::Malformed);
        }
        let hl = usize::from(ver_ihl & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(SkipReason::Malformed);
        }
        if buf.len() < hl {
            return Err(SkipReason::Truncated);
        }
        let h = Ipv4Header { buf };
        let total = usize::from(h.total_len());
        // Zero is what a sender with TCP segmentation offload leaves; the caller handles it.
        if total != 0 && total < hl {
            return Err(SkipReason::Malformed);
        }
        Ok(h)
    }

    pub fn header_len(&self) -> usize {
        usize::from(read_u8(self.buf, field::VER_IHL).unwrap_or(0x45) & 0x0f) * 4
    }
    pub fn total_len(&self) -> u16 {
        read_u16(self.buf, field::TOTAL_LEN).unwrap_or(0)
    }
    pub fn ident(&self) -> u16 {
        read_u16(self.buf, field::IDENT).unwrap_or(0)
    }
    pub fn more_fragments(&self) -> bool {
        read_u16(self.buf, field::FLAGS_FRAG).unwrap_or(0) & MORE_FRAGMENTS != 0
    }
    /// Fragment offset in bytes.
    pub fn fragment_offset(&self) -> u32 {
        u32::from(read_u16(self.buf, field::FLAGS_FRAG).unwrap_or(0) & FRAGMENT_OFFSET_MASK) * 8
    }
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        read_u8(self.buf, field::TTL).unwrap_or(0)
    }
    pub fn protocol(&self) -> u8 {
        read_u8(self.buf, field::PROTOCOL).unwrap_or(0)
    }
    pub fn src(&self) -> Ipv4Addr {
        addr(self.buf, field::SRC)
    }
    pub fn dst(&self) -> Ipv4Addr {
        addr(self.buf, field::DST)
    }
}

fn addr(buf: &[u8], at: usize) -> Ipv4Addr {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}
