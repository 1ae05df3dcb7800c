//! The 8-byte TDS packet header (MS-TDS 2.2.3.1), as a typed view over bytes.

use super::PacketType;

mod field {
    pub const TYPE: usize = 0;
    pub const STATUS: usize = 1;
    pub const LENGTH: std::ops::Range<usize> = 2..4;
    pub const SPID: std::ops::Range<usize> = 4..6;
    pub const PACKET_ID: usize = 6;
    pub const WINDOW: usize = 7;
}

/// Header length in bytes.
pub const HEADER_LEN: usize = 8;

/// The largest packet size a server may negotiate (ENVCHANGE type 4 allows 512..=32767; TDS 8
/// and some drivers use up to 32768).
pub const MAX_PACKET_LEN: usize = 32_768;

/// Status bits (MS-TDS 2.2.3.1.2).
pub mod status {
    /// Last packet of the message.
    pub const EOM: u8 = 0x01;
    /// With EOM: the client asks the server to ignore this message.
    pub const IGNORE: u8 = 0x02;
    pub const RESET_CONNECTION: u8 = 0x08;
    pub const RESET_CONNECTION_SKIP_TRAN: u8 = 0x10;
}

/// A view over a TDS packet header. `new_checked` guarantees the accessors are in bounds.
#[derive(Clone, Copy, Debug)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wraps `buffer` if it holds at least the 8 header bytes.
    pub fn new_checked(buffer: T) -> Option<Header<T>> {
        if buffer.as_ref().len() >= HEADER_LEN {
            Some(Header { buffer })
        } else {
            None
        }
    }

    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    fn be16(&self, r: std::ops::Range<usize>) -> u16 {
        match self.buffer.as_ref().get(r) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.byte(field::TYPE))
    }
    pub fn status(&self) -> u8 {
        self.byte(field::STATUS)
    }
    pub fn is_eom(&self) -> bool {
        self.status() & status::EOM != 0
    }
    /// The whole packet's length, header included (big-endian on the wire).
    pub fn length(&self) -> u16 {
        self.be16(field::LENGTH)
    }
    pub fn spid(&self) -> u16 {
        self.be16(field::SPID)
    }
    pub fn packet_id(&self) -> u8 {
        self.byte(field::PACKET_ID)
    }
    pub fn window(&self) -> u8 {
        self.byte(field::WINDOW)
    }

    /// True when the header could start a TDS packet: a known type, a length that covers the
    /// header and fits a packet, no undefined status bits. Used to find TDS on any port and to
    /// resynchronise after a gap.
    pub fn is_plausible(&self) -> bool {
        let len = usize::from(self.length());
        self.packet_type().is_known()
            && (HEADER_LEN..=MAX_PACKET_LEN).contains(&len)
            && self.status() & !0x1F == 0
            && self.window() == 0
    }
}

/// The decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderRepr {
    pub packet_type: PacketType,
    pub status: u8,
    pub length: u16,
    pub spid: u16,
    pub packet_id: u8,
}

impl HeaderRepr {
    pub fn parse<T: AsRef<[u8]>>(h: &Header<T>) -> HeaderRepr {
        HeaderRepr {
            packet_type: h.packet_type(),
            status: h.status(),
            length: h.length(),
            spid: h.spid(),
            packet_id: h.packet_id(),
        }
    }

    /// The header's 8 bytes (for test fixtures and the lab).
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let [l0, l1] = self.length.to_be_bytes();
        let [s0, s1] = self.spid.to_be_bytes();
        [
            u8::from(self.packet_type),
            self.status,
            l0,
            l1,
            s0,
            s1,
            self.packet_id,
            0,
        ]
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The PRELOGIN packet header of frame 4 of tds7-login-loginack_arkime_tds7.pcap.
    const PRELOGIN: [u8; 8] = [
        0x12, /* type PRELOGIN */
        0x01, /* status EOM */
        0x00, 0x2f, /* length 47 */
        0x00, 0x00, /* spid */
        0x01, /* packet id */
        0x00, /* window */
    ];

    #[test]
    fn reads_fields() {
        let h = Header::new_checked(&PRELOGIN[..]).unwrap();
        assert_eq!(h.packet_type(), PacketType::Prelogin);
        assert!(h.is_eom());
        assert_eq!(h.length(), 47);
        assert_eq!(h.packet_id(), 1);
        assert!(h.is_plausible());
        assert_eq!(HeaderRepr::parse(&h).emit(), PRELOGIN);
    }

    #[test]
    fn short_buffers_are_refused() {
        for n in 0..HEADER_LEN {
            assert!(Header::new_checked(&PRELOGIN[..n]).is_none());
        }
    }

    #[test]
    fn implausible_headers() {
        let mut b = PRELOGIN;
        b[0] = 0x47; // 'G' of "GET /"
        assert!(!Header::new_checked(&b[..]).unwrap().is_plausible());
        let mut b = PRELOGIN;
        b[2] = 0x90; // length 36911
        assert!(!Header::new_checked(&b[..]).unwrap().is_plausible());
        let mut b = PRELOGIN;
        b[3] = 0x04; // length 4 < header
        b[2] = 0;
        assert!(!Header::new_checked(&b[..]).unwrap().is_plausible());
    }
}
