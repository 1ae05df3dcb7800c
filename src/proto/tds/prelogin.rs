//! PRELOGIN (MS-TDS 2.2.6.5): the client's request (packet type 0x12) and the server's
//! response (type 0x04) share one layout, an option table then the option data:
//!
//! ```text
//! { PL_OPTION_TOKEN (1) PL_OFFSET (2, BE) PL_OPTION_LENGTH (2, BE) }*  0xFF
//! option data, addressed by offsets from the start of the message
//! ```
//!
//! Packet type 0x12 also carries the TDS 7.x TLS handshake; [`is_tls_record`] tells the two
//! apart.

use nom::number::complete::{be_u16, be_u32, le_u16, u8 as byte};
use nom::{IResult, Parser};

use crate::proto::ParseError;

open_enum! {
    /// PRELOGIN option tokens.
    pub enum OptionToken(u8) {
        Version = 0x00,
        Encryption = 0x01,
        InstOpt = 0x02,
        ThreadId = 0x03,
        Mars = 0x04,
        TraceId = 0x05,
        FedAuthRequired = 0x06,
        NonceOpt = 0x07,
        Terminator = 0xFF,
    }
}

open_enum! {
    /// The ENCRYPTION option's value, without the client-certificate bit (0x80).
    pub enum Encryption(u8) {
        Off = 0x00,
        On = 0x01,
        NotSup = 0x02,
        Req = 0x03,
    }
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Off => "off",
            Encryption::On => "on",
            Encryption::NotSup => "not_supported",
            Encryption::Req => "required",
            Encryption::Unknown(_) => "unknown",
        }
    }
}

/// The client-certificate authentication bit OR-ed onto the ENCRYPTION value.
pub const ENCRYPT_CLIENT_CERT: u8 = 0x80;

/// Option tables longer than this are not PRELOGIN (the spec defines 8 options).
const MAX_OPTIONS: usize = 32;

/// VERSION: the driver's version from a client, the SQL Server product version from a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreloginVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
    pub sub_build: u16,
}

impl PreloginVersion {
    /// "16.0.1000" style, as SQL Server reports product versions.
    pub fn label(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// A decoded PRELOGIN message. Options absent from the message are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prelogin<'a> {
    pub version: Option<PreloginVersion>,
    pub encryption: Option<Encryption>,
    pub client_cert: bool,
    /// INSTOPT: the instance name the client asks for (client) or a validity flag (server),
    /// without the terminating NUL.
    pub instance: Option<&'a [u8]>,
    pub thread_id: Option<u32>,
    pub mars: Option<bool>,
    /// TRACEID: connection id GUID (16 bytes), activity id GUID (16) and sequence (4).
    pub trace_id: Option<&'a [u8]>,
    pub fed_auth_required: Option<bool>,
    pub nonce: Option<&'a [u8]>,
    /// Options with tokens outside the spec's list.
    pub unknown_options: u8,
}

/// True when `data` starts with a TLS record header (content type 20..=23, version 3.x) rather
/// than a PRELOGIN option table: TDS 7.x carries the TLS handshake inside PRELOGIN packets.
pub fn is_tls_record(data: &[u8]) -> bool {
    matches!(data, [20..=23, 3, 0..=4, ..])
}

type Entry = (u8, u16, u16);

fn option_entry(input: &[u8]) -> IResult<&[u8], Entry> {
    (byte, be_u16, be_u16).parse(input)
}

/// Parses a complete PRELOGIN message body (the bytes after the 8-byte TDS header, all packets
/// of the message concatenated).
pub fn parse_prelogin(body: &[u8]) -> Result<Prelogin<'_>, ParseError> {
    let mut rest = body;
    let mut entries: Vec<Entry> = Vec::new();
    loop {
        let at = body.len() - rest.len();
        match rest.first() {
            None => {
                return Err(ParseError::Malformed {
                    what: "PRELOGIN option table without terminator",
                    at,
                })
            }
            Some(0xFF) => break,
            Some(_) => {}
        }
        if entries.len() >= MAX_OPTIONS {
            return Err(ParseError::Malformed {
                what: "PRELOGIN option table too long",
                at,
            });
        }
        let (r, entry) = option_entry(rest).map_err(|_| ParseError::Malformed {
            what: "PRELOGIN option entry cut short",
            at,
        })?;
        entries.push(entry);
        rest = r;
    }
    let table_end = body.len() - rest.len() + 1;

    let mut p = Prelogin::default();
    for (token, offset, len) in entries {
        let (start, len) = (usize::from(offset), usize::from(len));
        let data = start
            .checked_add(len)
            .and_then(|end| body.get(start..end))
            .filter(|_| start >= table_end || len == 0)
            .ok_or(ParseError::Malformed {
                what: "PRELOGIN option data outside the message",
                at: start,
            })?;
        match OptionToken::from(token) {
            OptionToken::Version => {
                let parsed: IResult<&[u8], (u8, u8, u16, u16)> =
                    (byte, byte, be_u16, le_u16).parse(data);
                let (_, (major, minor, build, sub_build)) =
                    parsed.map_err(|_| ParseError::Malformed {
                        what: "PRELOGIN VERSION shorter than 6 bytes",
                        at: start,
                    })?;
                p.version = Some(PreloginVersion {
                    major,
                    minor,
                    build,
                    sub_build,
                });
            }
            OptionToken::Encryption => {
                let v = *data.first().ok_or(ParseError::Malformed {
                    what: "PRELOGIN ENCRYPTION is empty",
                    at: start,
                })?;
                p.encryption = Some(Encryption::from(v & !ENCRYPT_CLIENT_CERT));
                p.client_cert = v & ENCRYPT_CLIENT_CERT != 0;
            }
            OptionToken::InstOpt => {
                let name = data.split(|&b| b == 0).next().unwrap_or(data);
                p.instance = Some(name);
            }
            OptionToken::ThreadId => {
                // Clients send an empty THREADID in some drivers; the spec's is 4 bytes.
                let parsed: IResult<&[u8], u32> = be_u32(data);
                p.thread_id = parsed.ok().map(|(_, v)| v);
            }
            OptionToken::Mars => p.mars = data.first().map(|&b| b != 0),
            OptionToken::TraceId => p.trace_id = Some(data),
            OptionToken::FedAuthRequired => p.fed_auth_required = data.first().map(|&b| b != 0),
            OptionToken::NonceOpt => p.nonce = Some(data),
            OptionToken::Terminator | OptionToken::Unknown(_) => {
                p.unknown_options = p.unknown_options.saturating_add(1);
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The client PRELOGIN body of frame 4 of tds7-login-loginack_arkime_tds7.pcap
    /// (after the 8-byte header).
    const CLIENT: [u8; 44] = [
        0x00, 0x00, 0x15, 0x00, 0x06, /* VERSION at 21, 6 bytes */
        0x01, 0x00, 0x1b, 0x00, 0x01, /* ENCRYPTION at 27, 1 byte */
        0x02, 0x00, 0x1c, 0x00, 0x0c, /* INSTOPT at 28, 12 bytes */
        0x03, 0x00, 0x28, 0x00, 0x04, /* THREADID at 40, 4 bytes */
        0xff, /* terminator */
        0x08, 0x00, 0x01, 0x55, 0x00, 0x00, /* version 8.0.341 sub-build 0 */
        0x00, /* encryption OFF */
        b'M', b'S', b'S', b'Q', b'L', b'S', b'e', b'r', b'v', b'e', b'r', 0x00, /* instance */
        0xd8, 0x03, 0x00, 0x00, /* thread id */
    ];

    /// The server's answer, frame 5 of the same capture.
    const SERVER: [u8; 29] = [
        0x00, 0x00, 0x15, 0x00, 0x06, 0x01, 0x00, 0x1b, 0x00, 0x01, 0x02, 0x00, 0x1c, 0x00, 0x01,
        0x03, 0x00, 0x1d, 0x00, 0x00, 0xff, /* table */
        0x08, 0x00, 0x07, 0xf7, 0x00, 0x00, /* SQL Server 8.0.2039 */
        0x02, /* encryption NOT_SUP */
        0x00, /* instance valid */
    ];

    #[test]
    fn client_prelogin_fields() {
        let p = parse_prelogin(&CLIENT).unwrap();
        assert_eq!(
            p.version,
            Some(PreloginVersion {
                major: 8,
                minor: 0,
                build: 341,
                sub_build: 0
            })
        );
        assert_eq!(p.encryption, Some(Encryption::Off));
        assert!(!p.client_cert);
        assert_eq!(p.instance, Some(&b"MSSQLServer"[..]));
        // Big-endian, as Wireshark shows it (3624075264); Windows writes its thread id
        // little-endian, so this is 984 read the other way round.
        assert_eq!(p.thread_id, Some(3_624_075_264));
        assert_eq!(p.mars, None);
    }

    #[test]
    fn server_prelogin_fields() {
        let p = parse_prelogin(&SERVER).unwrap();
        assert_eq!(p.version.unwrap().label(), "8.0.2039");
        assert_eq!(p.encryption, Some(Encryption::NotSup));
        assert_eq!(p.thread_id, None, "zero-length THREADID");
    }

    #[test]
    fn every_truncation_is_an_error_or_a_subset_never_a_panic() {
        for n in 0..CLIENT.len() {
            let _ = parse_prelogin(&CLIENT[..n]);
        }
        assert!(parse_prelogin(&CLIENT[..20]).is_err(), "no terminator");
        assert!(
            parse_prelogin(&CLIENT[..27]).is_err(),
            "ENCRYPTION data missing"
        );
        assert!(parse_prelogin(&CLIENT[..43]).is_err(), "THREADID data cut");
    }

    #[test]
    fn data_offsets_inside_the_table_are_refused() {
        let mut b = CLIENT;
        b[2] = 0x02; // VERSION "at offset 2": inside the option table
        assert!(matches!(
            parse_prelogin(&b),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn client_certificate_bit_and_unknown_values() {
        let mut b = CLIENT;
        b[27] = 0x83;
        let p = parse_prelogin(&b).unwrap();
        assert_eq!(p.encryption, Some(Encryption::Req));
        assert!(p.client_cert);
        b[27] = 0x09;
        assert_eq!(
            parse_prelogin(&b).unwrap().encryption,
            Some(Encryption::Unknown(9))
        );
    }

    #[test]
    fn tls_records_are_told_apart() {
        assert!(is_tls_record(&[0x16, 0x03, 0x01, 0x00, 0x2f]));
        assert!(!is_tls_record(&CLIENT));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_prelogin(&data);
        }
    }
}
