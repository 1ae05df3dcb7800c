//! TCP header view and options (RFC 9293 §3.1; options RFC 7323, RFC 2018).

use super::{read_u16, read_u32, read_u8, SkipReason, TcpFlags, TcpOptions};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
}

pub(crate) const MIN_HEADER_LEN: usize = 20;

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// A checked view of a TCP header: `new_checked` guarantees the header with its options was
/// captured and that the data offset fits in the segment's wire length.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcpHeader<'a> {
    buf: &'a [u8],
}

impl<'a> TcpHeader<'a> {
    /// `buf` holds the captured part of a segment that is `wire_len` bytes long on the wire.
    pub fn new_checked(buf: &'a [u8], wire_len: usize) -> Result<Self, SkipReason> {
        if wire_len < MIN_HEADER_LEN {
            return Err(SkipReason::Malformed);
        }
        if buf.len() < MIN_HEADER_LEN {
            return Err(SkipReason::Truncated);
        }
        let h = TcpHeader { buf };
        let hl = h.header_len();
        if hl < MIN_HEADER_LEN || hl > wire_len {
            return Err(SkipReason::Malformed);
        }
        if hl > buf.len() {
            return Err(SkipReason::Truncated);
        }
        Ok(h)
    }

    pub fn src_port(&self) -> u16 {
        read_u16(self.buf, field::SRC_PORT).unwrap_or(0)
    }
    pub fn dst_port(&self) -> u16 {
        read_u16(self.buf, field::DST_PORT).unwrap_or(0)
    }
    pub fn seq(&self) -> u32 {
        read_u32(self.buf, field::SEQ).unwrap_or(0)
    }
    pub fn ack(&self) -> u32 {
        read_u32(self.buf, field::ACK).unwrap_or(0)
    }
    pub fn header_len(&self) -> usize {
        usize::from(read_u8(self.buf, field::DATA_OFFSET).unwrap_or(0) >> 4) * 4
    }
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(read_u8(self.buf, field::FLAGS).unwrap_or(0))
    }
    pub fn window(&self) -> u16 {
        read_u16(self.buf, field::WINDOW).unwrap_or(0)
    }
    pub fn options(&self) -> TcpOptions {
        parse_options(
            self.buf
                .get(MIN_HEADER_LEN..self.header_len())
                .unwrap_or(&[]),
        )
    }
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(self.header_len()..).unwrap_or(&[])
    }
}

/// Reads the options we use. A malformed option (length below 2 or past the header) ends
/// the walk: what was read before it is kept, as a receiver would (RFC 9293 §3.1 lets it
/// drop the segment, but we describe traffic rather than police it).
pub(crate) fn parse_options(mut opts: &[u8]) -> TcpOptions {
    let mut out = TcpOptions {
        any: !opts.is_empty(),
        ..TcpOptions::default()
    };
    while let Some((&k, rest)) = opts.split_first() {
        match k {
            kind::END => break,
            kind::NOP => {
                opts = rest;
                continue;
            }
            _ => {}
        }
        let len = match rest.first() {
            Some(&l) if l >= 2 && usize::from(l) <= opts.len() => usize::from(l),
            _ => break,
        };
        let (opt, rest) = opts.split_at(len.min(opts.len()));
        let body = opt.get(2..).unwrap_or(&[]);
        match (k, body.len()) {
            (kind::MSS, 2) => out.mss = read_u16(body, 0),
            (kind::WINDOW_SCALE, 1) => out.window_scale = read_u8(body, 0),
            (kind::SACK_PERMITTED, 0) => out.sack_permitted = true,
            (kind::SACK, n) if n % 8 == 0 => {
                for (slot, block) in out.sack.iter_mut().zip(body.chunks_exact(8)) {
                    *slot = (
                        read_u32(block, 0).unwrap_or(0),
                        read_u32(block, 4).unwrap_or(0),
                    );
                    out.sack_count += 1;
                }
            }
            (kind::TIMESTAMPS, 8) => {
                out.timestamps = read_u32(body, 0).zip(read_u32(body, 4));
            }
            _ => {}
        }
        opts = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_syn_options() {
        let opts = [
            /* MSS 1460 */ 2, 4, 0x05, 0xb4, /* SACK permitted */ 4, 2,
            /* timestamps */ 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, /* NOP */ 1,
            /* window scale 7 */ 3, 3, 7,
        ];
        let o = parse_options(&opts);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 2)));
        assert_eq!(o.window_scale, Some(7));
        assert!(o.any);
        for n in 0..opts.len() {
            let _ = parse_options(&opts[..n]);
        }
    }

    #[test]
    fn reads_sack_blocks_and_stops_at_bad_length() {
        let opts = [
            1, 1, /* SACK, 2 blocks */ 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0,
            40, /* bogus length 1 */ 2, 1, 0, 0,
        ];
        let o = parse_options(&opts);
        assert_eq!(o.sack_count, 2);
        assert_eq!(&o.sack[..2], &[(10, 20), (30, 40)]);
        assert_eq!(o.mss, None);
        assert!(parse_options(&[0, 0, 0, 0]).any);
        assert!(!parse_options(&[]).any);
    }
}
