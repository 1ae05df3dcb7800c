//! UDP header view (RFC 768).

use super::{read_u16, SkipReason};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

pub(crate) const HEADER_LEN: usize = 8;

#[derive(Clone, Copy, Debug)]
pub(crate) struct UdpHeader<'a> {
    buf: &'a [u8],
}

impl<'a> UdpHeader<'a> {
    pub fn new_checked(buf: &'a [u8], wire_len: usize) -> Result<Self, SkipReason> {
        if wire_len < HEADER_LEN {
            return Err(SkipReason::Malformed);
        }
        if buf.len() < HEADER_LEN {
            return Err(SkipReason::Truncated);
        }
        Ok(UdpHeader { buf })
    }
    pub fn src_port(&self) -> u16 {
        read_u16(self.buf, field::SRC_PORT).unwrap_or(0)
    }
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buf, field::DST_PORT).unwrap_or(0)
    }
    pub fn length(&self) -> u16 {
        read_u16(self.buf, field::LENGTH).unwrap_or(0)
    }
    pub fn checksum(&self) -> u16 {
        read_u16(self.buf, field::CHECKSUM).unwrap_or(0)
    }
}
