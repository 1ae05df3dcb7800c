//! LOGIN7 (MS-TDS 2.2.6.4): the client's login record.
//!
//! ```text
//! Length(4) TDSVersion(4) PacketSize(4) ClientProgVer(4) ClientPID(4) ConnectionID(4)
//! OptionFlags1(1) OptionFlags2(1) TypeFlags(1) OptionFlags3(1) ClientTimeZone(4) ClientLCID(4)
//! { ib(2) cch(2) } for HostName UserName Password AppName ServerName Extension CltIntName
//!                  Language Database
//! ClientID(6) ibSSPI(2) cbSSPI(2) ibAtchDBFile(2) cchAtchDBFile(2)
//! [7.2+: ibChangePassword(2) cchChangePassword(2) cbSSPILong(4)]
//! variable data (UCS-2LE strings, SSPI blob, FeatureExt)
//! ```
//!
//! The password and the new password are never decoded: [`Login7`] keeps only their lengths,
//! so nothing downstream can print them.

use nom::number::complete::{le_i32, le_u16, le_u32, u8 as byte};
use nom::{IResult, Parser};

use super::TdsVersion;
use crate::proto::ParseError;

/// Fixed part of LOGIN7 up to and including `cchAtchDBFile` (TDS 7.0/7.1).
const FIXED_LEN_7_1: usize = 86;
/// Fixed part with the TDS 7.2 additions (ChangePassword, cbSSPILong).
const FIXED_LEN_7_2: usize = 94;
/// MS-TDS 2.2.6.4: a LOGIN7 MUST NOT be longer than 128 KiB − 1.
pub const MAX_LOGIN7_LEN: usize = 128 * 1024 - 1;
/// FeatureExt entries past this many are not plausible (the spec defines about ten).
const MAX_FEATURES: usize = 64;

/// OptionFlags2 bit: integrated (SSPI) authentication.
pub const OPTION2_INTEGRATED_SECURITY: u8 = 0x80;
/// TypeFlags bit: ApplicationIntent=ReadOnly.
pub const TYPE_READ_ONLY_INTENT: u8 = 0x20;
/// OptionFlags3 bit: the Extension field points at FeatureExt.
pub const OPTION3_EXTENSION: u8 = 0x10;
/// OptionFlags3 bit: the client asks to change its password.
pub const OPTION3_CHANGE_PASSWORD: u8 = 0x01;

/// FeatureExt identifiers (MS-TDS 2.2.6.4).
pub mod feature {
    pub const SESSION_RECOVERY: u8 = 0x01;
    pub const FEDAUTH: u8 = 0x02;
    pub const COLUMN_ENCRYPTION: u8 = 0x04;
    pub const GLOBAL_TRANSACTIONS: u8 = 0x05;
    pub const AZURE_SQL_SUPPORT: u8 = 0x08;
    pub const DATA_CLASSIFICATION: u8 = 0x09;
    pub const UTF8_SUPPORT: u8 = 0x0A;
    pub const AZURE_SQL_DNS_CACHING: u8 = 0x0B;
}

/// One FeatureExt entry: its id and the length of its data (the data is not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureExt {
    pub id: u8,
    pub len: u32,
}

/// A decoded LOGIN7. Holds no password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login7<'a> {
    pub length: u32,
    pub tds_version: TdsVersion,
    pub packet_size: u32,
    pub client_prog_ver: u32,
    pub client_pid: u32,
    pub connection_id: u32,
    pub option_flags1: u8,
    pub option_flags2: u8,
    pub type_flags: u8,
    pub option_flags3: u8,
    pub client_time_zone: i32,
    pub client_lcid: u32,
    pub host_name: String,
    pub user_name: String,
    /// Length of the password in characters; the password itself is never decoded.
    pub password_chars: u16,
    pub app_name: String,
    pub server_name: String,
    /// CltIntName: the client interface library ("ODBC", "OLEDB", "Core .Net SqlClient Data Provider").
    pub library_name: String,
    pub language: String,
    pub database: String,
    pub client_id: [u8; 6],
    /// The SSPI blob (NTLMSSP or SPNEGO) of integrated authentication.
    pub sspi: &'a [u8],
    pub attach_db_file: String,
    /// Length of the new password in characters (password change); never decoded.
    pub change_password_chars: u16,
    pub features: Vec<FeatureExt>,
}

impl Login7<'_> {
    pub fn integrated_security(&self) -> bool {
        self.option_flags2 & OPTION2_INTEGRATED_SECURITY != 0
    }
    pub fn read_only_intent(&self) -> bool {
        self.type_flags & TYPE_READ_ONLY_INTENT != 0
    }
    pub fn has_feature(&self, id: u8) -> bool {
        self.features.iter().any(|f| f.id == id)
    }
}

/// An (offset, length) pair pointing into the variable part.
#[derive(Clone, Copy)]
struct Field {
    offset: u16,
    len: u16,
}

fn field(input: &[u8]) -> IResult<&[u8], Field> {
    let (rest, (offset, len)) = (le_u16, le_u16).parse(input)?;
    Ok((rest, Field { offset, len }))
}

struct Fixed {
    length: u32,
    tds_version: u32,
    packet_size: u32,
    client_prog_ver: u32,
    client_pid: u32,
    connection_id: u32,
    flags: [u8; 4],
    time_zone: i32,
    lcid: u32,
    strings: [Field; 9],
    client_id: [u8; 6],
    sspi: Field,
    attach_db_file: Field,
}

fn fixed(input: &[u8]) -> IResult<&[u8], Fixed> {
    let (input, (length, tds_version, packet_size, client_prog_ver, client_pid, connection_id)) =
        (le_u32, le_u32, le_u32, le_u32, le_u32, le_u32).parse(input)?;
    let (input, (f1, f2, f3, f4, time_zone, lcid)) =
        (byte, byte, byte, byte, le_i32, le_u32).parse(input)?;
    let (input, (h, u, p, a, s, e, c, l, d)) = (
        field, field, field, field, field, field, field, field, field,
    )
        .parse(input)?;
    let (input, (id0, id1, id2, id3, id4, id5)) =
        (byte, byte, byte, byte, byte, byte).parse(input)?;
    let (input, (sspi, attach_db_file)) = (field, field).parse(input)?;
    Ok((
        input,
        Fixed {
            length,
            tds_version,
            packet_size,
            client_prog_ver,
            client_pid,
            connection_id,
            flags: [f1, f2, f3, f4],
            time_zone,
            lcid,
            strings: [h, u, p, a, s, e, c, l, d],
            client_id: [id0, id1, id2, id3, id4, id5],
            sspi,
            attach_db_file,
        },
    ))
}

/// Decodes a UCS-2LE string of `chars` characters at `offset`; out-of-range is malformed.
fn ucs2(body: &[u8], f: Field, what: &'static str) -> Result<String, ParseError> {
    if f.len == 0 {
        return Ok(String::new());
    }
    let start = usize::from(f.offset);
    let bytes = start
        .checked_add(usize::from(f.len) * 2)
        .and_then(|end| body.get(start..end))
        .ok_or(ParseError::Malformed { what, at: start })?;
    Ok(super::decode_ucs2(bytes))
}

fn features(body: &[u8], at: usize) -> Result<Vec<FeatureExt>, ParseError> {
    let mut out = Vec::new();
    let mut rest = body.get(at..).ok_or(ParseError::Malformed {
        what: "LOGIN7 FeatureExt offset",
        at,
    })?;
    loop {
        let here = body.len() - rest.len();
        let (&id, tail) = rest.split_first().ok_or(ParseError::Malformed {
            what: "LOGIN7 FeatureExt without terminator",
            at: here,
        })?;
        if id == 0xFF {
            return Ok(out);
        }
        if out.len() >= MAX_FEATURES {
            return Err(ParseError::Malformed {
                what: "LOGIN7 FeatureExt list too long",
                at: here,
            });
        }
        let parsed: IResult<&[u8], u32> = le_u32(tail);
        let (tail, len) = parsed.map_err(|_| ParseError::Malformed {
            what: "LOGIN7 FeatureExt length",
            at: here,
        })?;
        rest = usize::try_from(len)
            .ok()
            .and_then(|n| tail.get(n..))
            .ok_or(ParseError::Malformed {
                what: "LOGIN7 FeatureExt data",
                at: here,
            })?;
        out.push(FeatureExt { id, len });
    }
}

/// Parses a complete LOGIN7 message body (after the TDS header, packets concatenated).
pub fn parse_login7(body: &[u8]) -> Result<Login7<'_>, ParseError> {
    if body.len() > MAX_LOGIN7_LEN {
        return Err(ParseError::TooLarge {
            what: "LOGIN7",
            len: body.len(),
            max: MAX_LOGIN7_LEN,
        });
    }
    let (after, fx) = fixed(body).map_err(|_| ParseError::Incomplete {
        needed: Some(FIXED_LEN_7_1),
    })?;
    let [host, user, password, app, server, extension, library, language, database] = fx.strings;
    // The variable part starts where HostName points (it MUST NOT be 0); the 7.2 fields exist
    // when there is room for them before it.
    let variable_start = usize::from(host.offset);
    let (change_password, sspi_long) = if variable_start >= FIXED_LEN_7_2 || host.offset == 0 {
        let parsed: IResult<&[u8], (Field, u32)> = (field, le_u32).parse(after);
        match parsed {
            Ok((_, (cp, long))) => (cp, long),
            Err(_) => (Field { offset: 0, len: 0 }, 0),
        }
    } else {
        (Field { offset: 0, len: 0 }, 0)
    };
    let sspi_len = if fx.sspi.len == 0xFFFF {
        usize::try_from(sspi_long).unwrap_or(usize::MAX)
    } else {
        usize::from(fx.sspi.len)
    };
    let sspi_start = usize::from(fx.sspi.offset);
    let sspi = if sspi_len == 0 {
        &[][..]
    } else {
        sspi_start
            .checked_add(sspi_len)
            .and_then(|end| body.get(sspi_start..end))
            .ok_or(ParseError::Malformed {
                what: "LOGIN7 SSPI outside the message",
                at: sspi_start,
            })?
    };
    let option_flags3 = fx.flags[3];
    let features = if option_flags3 & OPTION3_EXTENSION != 0 && extension.len >= 4 {
        let at = usize::from(extension.offset);
        let pointer: Option<u32> = body
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes);
        match pointer.and_then(|p| usize::try_from(p).ok()) {
            Some(p) => features(body, p)?,
            None => {
                return Err(ParseError::Malformed {
                    what: "LOGIN7 Extension pointer",
                    at,
                })
            }
        }
    } else {
        Vec::new()
    };
    Ok(Login7 {
        length: fx.length,
        tds_version: TdsVersion(fx.tds_version),
        packet_size: fx.packet_size,
        client_prog_ver: fx.client_prog_ver,
        client_pid: fx.client_pid,
        connection_id: fx.connection_id,
        option_flags1: fx.flags[0],
        option_flags2: fx.flags[1],
        type_flags: fx.flags[2],
        option_flags3,
        client_time_zone: fx.time_zone,
        client_lcid: fx.lcid,
        host_name: ucs2(body, host, "LOGIN7 HostName")?,
        user_name: ucs2(body, user, "LOGIN7 UserName")?,
        password_chars: password.len,
        app_name: ucs2(body, app, "LOGIN7 AppName")?,
        server_name: ucs2(body, server, "LOGIN7 ServerName")?,
        library_name: ucs2(body, library, "LOGIN7 CltIntName")?,
        language: ucs2(body, language, "LOGIN7 Language")?,
        database: ucs2(body, database, "LOGIN7 Database")?,
        client_id: fx.client_id,
        sspi,
        attach_db_file: ucs2(body, fx.attach_db_file, "LOGIN7 AtchDBFile")?,
        change_password_chars: change_password.len,
        features,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The LOGIN7 body of frame 6 of tds7-login-loginack_arkime_tds7.pcap (TDS 7.1, ODBC,
    /// user `testuser`; tshark decodes its 4-character password, we must not).
    pub(crate) fn arkime_login7() -> Vec<u8> {
        hex(concat!(
            "e2000000010000710000000000000007b006000000000000e003000000000000",
            "0908000056000b006c0008007c00040084002000c4000b0000000000da000400",
            "e2000000e2000000000c294c849200000000e20000004c00490056002d005600",
            "580050002d003000300037007400650073007400750073006500720023a553a5",
            "92a5e2a54d006900630072006f0073006f006600740020004400610074006100",
            "2000410063006300650073007300200043006f006d0070006f006e0065006e00",
            "740073003200310037002e00370037002e0033002e00320035004f0044004200",
            "4300"
        ))
    }

    #[test]
    fn fields_match_tshark() {
        let body = arkime_login7();
        let l = parse_login7(&body).unwrap();
        assert_eq!(l.length, 226);
        assert_eq!(l.tds_version, TdsVersion::V7_1_REV1);
        assert_eq!(l.tds_version.label(), "7.1");
        assert_eq!(l.client_pid, 1712);
        assert_eq!(l.option_flags1, 0xe0);
        assert_eq!(l.option_flags2, 0x03);
        assert_eq!(l.client_lcid, 0x0809);
        assert_eq!(l.host_name, "LIV-VXP-007");
        assert_eq!(l.user_name, "testuser");
        assert_eq!(l.password_chars, 4);
        assert_eq!(l.app_name, "Microsoft Data Access Components");
        assert_eq!(l.server_name, "217.77.3.25");
        assert_eq!(l.library_name, "ODBC");
        assert_eq!(l.database, "");
        assert_eq!(l.client_id, [0x00, 0x0c, 0x29, 0x4c, 0x84, 0x92]);
        assert!(!l.integrated_security());
        assert!(l.sspi.is_empty());
        assert!(l.features.is_empty());
    }

    #[test]
    fn the_password_is_nowhere_in_the_value() {
        let body = arkime_login7();
        let l = parse_login7(&body).unwrap();
        let shown = format!("{l:?}");
        // The obfuscated bytes decode to "host"; neither form may appear.
        assert!(!shown.contains("\"host\""), "{shown}");
        assert!(!shown.contains("163, 83, 165"), "{shown}");
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let body = arkime_login7();
        for n in 0..body.len() {
            assert!(parse_login7(&body[..n]).is_err(), "cut at {n} parsed");
        }
    }

    #[test]
    fn offsets_past_the_end_are_malformed() {
        let mut body = arkime_login7();
        body[40] = 0xf0; // UserName offset 240 > 226
        assert!(matches!(
            parse_login7(&body),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn feature_ext_is_walked() {
        let mut body = arkime_login7();
        let ext_at = body.len() as u16;
        // Extension field -> a DWORD pointing at the FeatureExt list right after it.
        body[56..58].copy_from_slice(&ext_at.to_le_bytes());
        body[58..60].copy_from_slice(&4u16.to_le_bytes());
        body[27] |= OPTION3_EXTENSION;
        let list_at = u32::from(ext_at) + 4;
        body.extend_from_slice(&list_at.to_le_bytes());
        body.extend_from_slice(&[feature::UTF8_SUPPORT, 1, 0, 0, 0, 0x01]);
        body.extend_from_slice(&[feature::SESSION_RECOVERY, 0, 0, 0, 0]);
        body.push(0xFF);
        let l = parse_login7(&body).unwrap();
        assert_eq!(
            l.features,
            vec![
                FeatureExt {
                    id: feature::UTF8_SUPPORT,
                    len: 1
                },
                FeatureExt {
                    id: feature::SESSION_RECOVERY,
                    len: 0
                }
            ]
        );
        // Without the terminator the list is malformed.
        body.pop();
        assert!(parse_login7(&body).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_login7(&data);
        }

        #[test]
        fn corrupting_the_real_login_never_panics(at in 0usize..226, value: u8) {
            let mut body = arkime_login7();
            body[at] = value;
            let _ = parse_login7(&body);
        }
    }
}
