//! TDS (MS-TDS): packet header, message framing, PRELOGIN, LOGIN7, and the server token stream.

pub mod framer;
pub mod header;
pub mod login7;
pub mod prelogin;
pub mod rows;
pub mod rpc;
pub mod smp;
pub mod tokens;

open_enum! {
    /// TDS packet types (MS-TDS 2.2.3.1.1).
    pub enum PacketType(u8) {
        SqlBatch = 0x01,
        PreTds7Login = 0x02,
        Rpc = 0x03,
        TabularResult = 0x04,
        Attention = 0x06,
        BulkLoad = 0x07,
        FedAuthToken = 0x08,
        TransactionManager = 0x0E,
        /// TDS 5.0 (Sybase) language command.
        Tds5Query = 0x0F,
        Login7 = 0x10,
        Sspi = 0x11,
        Prelogin = 0x12,
    }
}

impl PacketType {
    /// Sent by clients; a server sends only tabular results.
    pub fn is_request(self) -> bool {
        !matches!(self, PacketType::TabularResult | PacketType::Unknown(_))
    }
}

/// UCS-2LE text as TDS carries names and messages (MS-TDS 2.2.5.1.3: B_VARCHAR, US_VARCHAR,
/// LOGIN7's strings); read as UTF-16LE, an unpaired surrogate becomes U+FFFD and an odd last
/// byte is ignored.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let even = bytes.get(..bytes.len() & !1).unwrap_or_default();
    // Nearly every name and message is ASCII, and then the text is every other byte: taking
    // those costs a fraction of decoding and pushing character by character.
    let mut ascii = Vec::with_capacity(even.len() / 2);
    for pair in even.chunks_exact(2) {
        match pair {
            [a, 0] if a.is_ascii() => ascii.push(*a),
            _ => break,
        }
    }
    if ascii.len() * 2 == even.len() {
        if let Ok(s) = String::from_utf8(ascii) {
            return s;
        }
    }
    let units = even.chunks_exact(2).map(|c| match c {
        [a, b] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    });
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// A TDS protocol version as LOGIN7 and LOGINACK carry it (`0x74000004` = 7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TdsVersion(pub u32);

impl TdsVersion {
    pub const V7_0: TdsVersion = TdsVersion(0x7000_0000);
    pub const V7_1: TdsVersion = TdsVersion(0x7100_0000);
    pub const V7_1_REV1: TdsVersion = TdsVersion(0x7100_0001);
    pub const V7_2: TdsVersion = TdsVersion(0x7209_0002);
    pub const V7_3A: TdsVersion = TdsVersion(0x730A_0003);
    pub const V7_3B: TdsVersion = TdsVersion(0x730B_0003);
    pub const V7_4: TdsVersion = TdsVersion(0x7400_0004);
    pub const V8_0: TdsVersion = TdsVersion(0x0800_0000);

    /// The major.minor users know ("7.4"), from the high byte.
    pub fn label(self) -> String {
        let hi = (self.0 >> 24) as u8;
        match hi {
            0x08 => "8.0".to_string(),
            0x70..=0x7F => format!("7.{}", hi & 0x0F),
            _ => format!("0x{:08x}", self.0),
        }
    }

    /// 7.2 and later: 8-byte row counts in DONE, 4-byte user types in COLMETADATA.
    pub fn at_least_7_2(self) -> bool {
        self.0 == Self::V8_0.0 || self.0 >= 0x7200_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn ucs2_ascii_and_beyond() {
        assert_eq!(decode_ucs2(&utf16le("master")), "master");
        assert_eq!(decode_ucs2(&utf16le("Größe €")), "Größe €");
        assert_eq!(decode_ucs2(&utf16le("𝄞 clef")), "𝄞 clef");
        // An odd last byte is ignored; an unpaired surrogate is replaced.
        let mut odd = utf16le("ab");
        odd.push(b'c');
        assert_eq!(decode_ucs2(&odd), "ab");
        assert_eq!(decode_ucs2(&[0x00, 0xD8, b'x', 0]), "\u{FFFD}x");
        assert_eq!(decode_ucs2(&[]), "");
    }
}
