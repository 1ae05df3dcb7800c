//! NTLMSSP messages (MS-NLMP 2.2.1): NEGOTIATE, CHALLENGE and AUTHENTICATE, as carried in the
//! LOGIN7 SSPI field and SSPI packets (0x11) of TDS, bare or inside SPNEGO.
//!
//! ```text
//! Signature "NTLMSSP\0" (8)  MessageType (4, LE)  message-specific fixed part  Payload
//! ```
//! Variable fields are `{ Len (2), MaxLen (2), BufferOffset (4) }` triples pointing into the
//! message from its first byte (MS-NLMP 2.2.1.1).

use crate::proto::ParseError;

pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NegotiateFlags bits used here (MS-NLMP 2.2.2.5).
pub mod flags {
    pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
    pub const NEGOTIATE_OEM: u32 = 0x0000_0002;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const NEGOTIATE_SIGN: u32 = 0x0000_0010;
    pub const NEGOTIATE_SEAL: u32 = 0x0000_0020;
    pub const NEGOTIATE_LM_KEY: u32 = 0x0000_0080;
    pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
    pub const ANONYMOUS: u32 = 0x0000_0800;
    pub const OEM_DOMAIN_SUPPLIED: u32 = 0x0000_1000;
    pub const OEM_WORKSTATION_SUPPLIED: u32 = 0x0000_2000;
    pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
    pub const NEGOTIATE_VERSION: u32 = 0x0200_0000;
    pub const NEGOTIATE_128: u32 = 0x2000_0000;
    pub const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
    pub const NEGOTIATE_56: u32 = 0x8000_0000;
}

/// The VERSION structure (MS-NLMP 2.2.2.10): the sender's Windows version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtlmVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u16,
    /// NTLMRevisionCurrent, 15 for NTLMSSP_REVISION_W2K3.
    pub revision: u8,
}

/// NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiate {
    pub flags: u32,
    /// OEM-encoded; decoded whenever the field points at bytes, whatever the
    /// `OEM_DOMAIN_SUPPLIED` flag says (some clients fill it without the flag).
    pub domain: Option<String>,
    pub workstation: Option<String>,
    pub version: Option<NtlmVersion>,
}

/// AV_PAIR list values (MS-NLMP 2.2.2.1) from a CHALLENGE's TargetInfo or an NTLMv2 response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetInfo {
    pub nb_computer: Option<String>,
    pub nb_domain: Option<String>,
    pub dns_computer: Option<String>,
    pub dns_domain: Option<String>,
    pub dns_tree: Option<String>,
    /// MsvAvFlags.
    pub flags: Option<u32>,
    /// MsvAvTimestamp, a FILETIME (100 ns ticks since 1601-01-01 UTC).
    pub timestamp: Option<u64>,
    /// MsvAvTargetName: in an NTLMv2 response, the SPN the client meant
    /// (`MSSQLSvc/host:1433`).
    pub target_name: Option<String>,
    pub channel_bindings: bool,
}

/// CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub flags: u32,
    pub target_name: Option<String>,
    pub server_challenge: [u8; 8],
    pub target_info: TargetInfo,
    pub version: Option<NtlmVersion>,
}

/// Which response the client computed, from the NT response length (MS-NLMP 3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NtResponseKind {
    /// No NT response: anonymous, or LM only.
    None,
    /// 24 bytes: NTLMv1 (or NTLM2 session response), weak and refused by hardened domains.
    V1,
    /// NTProofStr (16) + client blob: NTLMv2.
    V2,
    /// Any other length.
    Other,
}

/// AUTHENTICATE_MESSAGE (MS-NLMP 2.2.1.3). No response bytes are kept, only lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticate {
    pub flags: u32,
    pub user: String,
    pub domain: String,
    pub workstation: String,
    pub lm_response_len: usize,
    pub nt_response_len: usize,
    pub session_key_len: usize,
    pub version: Option<NtlmVersion>,
    pub nt_response: NtResponseKind,
    /// MS-NLMP 3.3.1 / 3.2.5.1.2: empty user name and empty NT response (a null session), or
    /// the ANONYMOUS flag.
    pub anonymous: bool,
    /// The AV pairs of an NTLMv2 response (client blob), where the client names the target
    /// SPN and a timestamp.
    pub v2_info: Option<TargetInfo>,
}

/// One NTLMSSP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NtlmMessage {
    Negotiate(Negotiate),
    Challenge(Challenge),
    Authenticate(Authenticate),
    Unknown { message_type: u32 },
}

impl NtlmMessage {
    /// "NEGOTIATE", "CHALLENGE", "AUTHENTICATE" or "unknown".
    pub fn name(&self) -> &'static str {
        match self {
            NtlmMessage::Negotiate(_) => "NEGOTIATE",
            NtlmMessage::Challenge(_) => "CHALLENGE",
            NtlmMessage::Authenticate(_) => "AUTHENTICATE",
            NtlmMessage::Unknown { .. } => "unknown",
        }
    }
}

/// Whether `buf` starts with the NTLMSSP signature.
pub fn is_ntlmssp(buf: &[u8]) -> bool {
    buf.starts_with(SIGNATURE)
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..at.checked_add(2)?)
        .and_then(|b| <[u8; 2]>::try_from(b).ok())
        .map(u16::from_le_bytes)
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at.checked_add(4)?)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at.checked_add(8)?)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
}

fn truncated(at: usize) -> ParseError {
    ParseError::Malformed {
        what: "NTLMSSP message shorter than its fixed fields",
        at,
    }
}

/// Reads the `{Len, MaxLen, Offset}` triple at `at` and returns the bytes it points to.
/// `Ok(None)` for an empty field; `Malformed` when it points outside the message.
fn field(buf: &[u8], at: usize) -> Result<Option<&[u8]>, ParseError> {
    let len = usize::from(u16_at(buf, at).ok_or_else(|| truncated(at))?);
    let offset = u32_at(buf, at + 4).ok_or_else(|| truncated(at))?;
    if len == 0 {
        return Ok(None);
    }
    let start = usize::try_from(offset).map_err(|_| ParseError::Malformed {
        what: "NTLMSSP field offset",
        at,
    })?;
    start
        .checked_add(len)
        .and_then(|end| buf.get(start..end))
        .map(Some)
        .ok_or(ParseError::Malformed {
            what: "NTLMSSP field outside the message",
            at,
        })
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|p| {
            u16::from_le_bytes([
                p.first().copied().unwrap_or(0),
                p.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    String::from_utf16_lossy(&units)
}

fn oem(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn text(b: &[u8], flags: u32) -> String {
    if flags & flags::NEGOTIATE_UNICODE != 0 {
        utf16(b)
    } else {
        oem(b)
    }
}

fn version_at(buf: &[u8], at: usize) -> Option<NtlmVersion> {
    let v = buf.get(at..at.checked_add(8)?)?;
    match v {
        [major, minor, b0, b1, _, _, _, revision] => Some(NtlmVersion {
            major: *major,
            minor: *minor,
            build: u16::from_le_bytes([*b0, *b1]),
            revision: *revision,
        }),
        _ => None,
    }
}

/// The VERSION field is present when the flag says so and the first payload byte lies past it
/// (MS-NLMP 2.2.1: older senders omit it and start the payload there).
fn version_if_present(
    buf: &[u8],
    at: usize,
    flags: u32,
    payload_offsets: &[usize],
) -> Option<NtlmVersion> {
    if flags & flags::NEGOTIATE_VERSION == 0 {
        return None;
    }
    let first_payload = payload_offsets.iter().copied().filter(|&o| o > 0).min();
    if first_payload.is_some_and(|o| o < at + 8) {
        return None;
    }
    version_at(buf, at)
}

fn offset_of(buf: &[u8], at: usize) -> usize {
    match (u16_at(buf, at), u32_at(buf, at + 4)) {
        (Some(len), Some(off)) if len > 0 => usize::try_from(off).unwrap_or(usize::MAX),
        _ => 0,
    }
}

/// Parses one NTLMSSP message starting at the signature.
pub fn parse_ntlmssp(buf: &[u8]) -> Result<NtlmMessage, ParseError> {
    if buf.len() < 12 {
        return Err(if SIGNATURE.starts_with(buf) {
            ParseError::Incomplete {
                needed: Some(12 - buf.len()),
            }
        } else {
            ParseError::Malformed {
                what: "NTLMSSP signature",
                at: 0,
            }
        });
    }
    if !is_ntlmssp(buf) {
        return Err(ParseError::Malformed {
            what: "NTLMSSP signature",
            at: 0,
        });
    }
    let message_type = u32_at(buf, 8).ok_or_else(|| truncated(8))?;
    match message_type {
        1 => parse_negotiate(buf).map(NtlmMessage::Negotiate),
        2 => parse_challenge(buf).map(NtlmMessage::Challenge),
        3 => parse_authenticate(buf).map(NtlmMessage::Authenticate),
        other => Ok(NtlmMessage::Unknown {
            message_type: other,
        }),
    }
}

fn parse_negotiate(buf: &[u8]) -> Result<Negotiate, ParseError> {
    let flags = u32_at(buf, 12).ok_or_else(|| truncated(12))?;
    // MS-NLMP 2.2.1.1: the domain and workstation fields came later; a 16-byte NEGOTIATE
    // (flags only) is valid.
    let (domain, workstation) = if buf.len() >= 32 {
        (field(buf, 16)?.map(oem), field(buf, 24)?.map(oem))
    } else {
        (None, None)
    };
    let version = version_if_present(buf, 32, flags, &[offset_of(buf, 16), offset_of(buf, 24)]);
    Ok(Negotiate {
        flags,
        domain,
        workstation,
        version,
    })
}

fn parse_challenge(buf: &[u8]) -> Result<Challenge, ParseError> {
    let flags = u32_at(buf, 20).ok_or_else(|| truncated(20))?;
    let target_name = field(buf, 12)?.map(|b| text(b, flags));
    let server_challenge = buf
        .get(24..32)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .ok_or_else(|| truncated(24))?;
    // TargetInfoFields (offset 40) are absent from the oldest 32-byte CHALLENGE messages.
    let target_info = if buf.len() >= 48 {
        field(buf, 40)?.map(parse_av_pairs).unwrap_or_default()
    } else {
        TargetInfo::default()
    };
    let version = version_if_present(buf, 48, flags, &[offset_of(buf, 12), offset_of(buf, 40)]);
    Ok(Challenge {
        flags,
        target_name,
        server_challenge,
        target_info,
        version,
    })
}

fn parse_authenticate(buf: &[u8]) -> Result<Authenticate, ParseError> {
    let flags = u32_at(buf, 60).ok_or_else(|| truncated(60))?;
    let lm = field(buf, 12)?;
    let nt = field(buf, 20)?;
    let domain = field(buf, 28)?.map(|b| text(b, flags)).unwrap_or_default();
    let user = field(buf, 36)?.map(|b| text(b, flags)).unwrap_or_default();
    let workstation = field(buf, 44)?.map(|b| text(b, flags)).unwrap_or_default();
    let session_key = field(buf, 52)?;
    let offsets: Vec<usize> = [12, 20, 28, 36, 44, 52]
        .iter()
        .map(|&a| offset_of(buf, a))
        .collect();
    let version = version_if_present(buf, 64, flags, &offsets);
    let nt_len = nt.map_or(0, <[u8]>::len);
    let nt_response = match nt_len {
        0 => NtResponseKind::None,
        24 => NtResponseKind::V1,
        n if n > 24 => NtResponseKind::V2,
        _ => NtResponseKind::Other,
    };
    // NTLMv2_CLIENT_CHALLENGE (MS-NLMP 2.2.2.7) after the 16-byte NTProofStr: RespType,
    // HiRespType, 6 reserved, TimeStamp (8), ChallengeFromClient (8), 4 reserved, AvPairs.
    let v2_info = match (nt_response, nt) {
        (NtResponseKind::V2, Some(nt)) => nt.get(16 + 28..).map(parse_av_pairs),
        _ => None,
    };
    let lm_len = lm.map_or(0, <[u8]>::len);
    let anonymous = flags & flags::ANONYMOUS != 0
        || (user.is_empty() && nt_len == 0 && lm.is_none_or(|l| l.iter().all(|&b| b == 0)));
    Ok(Authenticate {
        flags,
        user,
        domain,
        workstation,
        lm_response_len: lm_len,
        nt_response_len: nt_len,
        session_key_len: session_key.map_or(0, <[u8]>::len),
        version,
        nt_response,
        anonymous,
        v2_info,
    })
}

/// Walks an AV_PAIR list up to MsvAvEOL or the end of the bytes, at most 64 pairs.
pub fn parse_av_pairs(mut buf: &[u8]) -> TargetInfo {
    let mut info = TargetInfo::default();
    for _ in 0..64 {
        let [i0, i1, l0, l1, rest @ ..] = buf else {
            break;
        };
        let id = u16::from_le_bytes([*i0, *i1]);
        let len = usize::from(u16::from_le_bytes([*l0, *l1]));
        let Some(value) = rest.get(..len) else {
            break;
        };
        match id {
            0 => break,
            1 => info.nb_computer = Some(utf16(value)),
            2 => info.nb_domain = Some(utf16(value)),
            3 => info.dns_computer = Some(utf16(value)),
            4 => info.dns_domain = Some(utf16(value)),
            5 => info.dns_tree = Some(utf16(value)),
            6 => info.flags = u32_at(value, 0),
            7 => info.timestamp = u64_at(value, 0),
            9 => info.target_name = Some(utf16(value)),
            10 => info.channel_bindings = value.iter().any(|&b| b != 0),
            _ => {}
        }
        buf = rest.get(len..).unwrap_or_default();
    }
    info
}

/// FILETIME (100 ns ticks since 1601-01-01) to Unix seconds.
pub fn filetime_to_unix(ft: u64) -> i64 {
    const TICKS_PER_SECOND: u64 = 10_000_000;
    const EPOCH_DIFFERENCE_SECONDS: i64 = 11_644_473_600;
    i64::try_from(ft / TICKS_PER_SECOND).unwrap_or(i64::MAX) - EPOCH_DIFFERENCE_SECONDS
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(super) mod tests {
    use super::*;

    /// NTLMSSP_NEGOTIATE in the LOGIN7 SSPI field, frame 210 of
    /// tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap.
    pub const NEGOTIATE: [u8; 53] = [
        0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, /* NTLMSSP\0 */
        0x01, 0x00, 0x00, 0x00, /* type 1 */
        0x07, 0x02, 0x00, 0x02, /* flags 0x02000207 */
        0x06, 0x00, 0x06, 0x00, 0x28, 0x00, 0x00, 0x00, /* domain: 6 bytes at 0x28 */
        0x07, 0x00, 0x07, 0x00, 0x2e, 0x00, 0x00, 0x00, /* workstation: 7 bytes at 0x2e */
        0x0a, 0x00, 0x61, 0x4a, 0x00, 0x00, 0x00, 0x0f, /* version 10.0.19041, revision 15 */
        0x54, 0x44, 0x53, 0x44, 0x4f, 0x4d, /* TDSDOM */
        0x54, 0x44, 0x53, 0x48, 0x4f, 0x53, 0x54, /* TDSHOST */
    ];

    /// NTLMSSP_CHALLENGE in the server's SSPI packet, frame 212 of the same capture.
    pub const CHALLENGE: [u8; 72] = [
        0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, /* NTLMSSP\0 */
        0x02, 0x00, 0x00, 0x00, /* type 2 */
        0x0c, 0x00, 0x0c, 0x00, 0x38, 0x00, 0x00, 0x00, /* target name: 12 bytes at 0x38 */
        0x05, 0x02, 0x00, 0x02, /* flags 0x02000205 (UNICODE) */
        0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, /* server challenge */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* reserved */
        0x04, 0x00, 0x04, 0x00, 0x44, 0x00, 0x00, 0x00, /* target info: 4 bytes at 0x44 */
        0x0a, 0x00, 0x61, 0x4a, 0x00, 0x00, 0x00, 0x0f, /* version */
        0x54, 0x00, 0x44, 0x00, 0x53, 0x00, 0x54, 0x00, 0x47, 0x00, 0x54,
        0x00, /* TDSTGT, UTF-16LE */
        0x00, 0x00, 0x00, 0x00, /* MsvAvEOL */
    ];

    /// NTLMSSP_AUTH in the client's SSPI packet (0x11), frame 214 of the same capture.
    pub const AUTHENTICATE: [u8; 186] = [
        0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, /* NTLMSSP\0 */
        0x03, 0x00, 0x00, 0x00, /* type 3 */
        0x18, 0x00, 0x18, 0x00, 0x58, 0x00, 0x00, 0x00, /* LM response: 24 bytes at 0x58 */
        0x18, 0x00, 0x18, 0x00, 0x70, 0x00, 0x00, 0x00, /* NT response: 24 bytes at 0x70 */
        0x0c, 0x00, 0x0c, 0x00, 0x88, 0x00, 0x00, 0x00, /* domain: 12 bytes at 0x88 */
        0x08, 0x00, 0x08, 0x00, 0x94, 0x00, 0x00, 0x00, /* user: 8 bytes at 0x94 */
        0x0e, 0x00, 0x0e, 0x00, 0x9c, 0x00, 0x00, 0x00, /* workstation: 14 bytes at 0x9c */
        0x10, 0x00, 0x10, 0x00, 0xaa, 0x00, 0x00, 0x00, /* session key: 16 bytes at 0xaa */
        0x05, 0x02, 0x00, 0x02, /* flags 0x02000205 */
        0x0a, 0x00, 0x61, 0x4a, 0x00, 0x00, 0x00, 0x0f, /* version */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, /* MIC */
        0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c,
        0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, 0x4c, /* LM response */
        0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e,
        0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, 0x4e, /* NT response */
        0x54, 0x00, 0x44, 0x00, 0x53, 0x00, 0x44, 0x00, 0x4f, 0x00, 0x4d, 0x00, /* TDSDOM */
        0x6d, 0x00, 0x6f, 0x00, 0x6e, 0x00, 0x61, 0x00, /* mona */
        0x54, 0x00, 0x44, 0x00, 0x53, 0x00, 0x48, 0x00, 0x4f, 0x00, 0x53, 0x00, 0x54,
        0x00, /* TDSHOST */
        0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b, 0x4b,
        0x4b, /* session key */
    ];

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn av(id: u16, value: &[u8]) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    /// An AUTHENTICATE_MESSAGE with the given fields, payload right after the 72-byte fixed
    /// part (version, no MIC).
    pub fn build_authenticate(
        flags: u32,
        lm: &[u8],
        nt: &[u8],
        domain: &str,
        user: &str,
    ) -> Vec<u8> {
        let fields: [Vec<u8>; 6] = [
            lm.to_vec(),
            nt.to_vec(),
            utf16le(domain),
            utf16le(user),
            utf16le("WS"),
            vec![],
        ];
        let mut fixed = SIGNATURE.to_vec();
        fixed.extend_from_slice(&3u32.to_le_bytes());
        let mut payload = Vec::new();
        let mut offset = 72u32;
        for f in &fields {
            let len = f.len() as u16;
            fixed.extend_from_slice(&len.to_le_bytes());
            fixed.extend_from_slice(&len.to_le_bytes());
            fixed.extend_from_slice(&offset.to_le_bytes());
            payload.extend_from_slice(f);
            offset += u32::from(len);
        }
        fixed.extend_from_slice(&flags.to_le_bytes());
        fixed.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 15]);
        fixed.extend_from_slice(&payload);
        fixed
    }

    /// An NTLMv2 response: NTProofStr, then NTLMv2_CLIENT_CHALLENGE with AV pairs naming the
    /// SPN (MS-NLMP 2.2.2.7).
    pub fn ntlmv2_response(spn: &str) -> Vec<u8> {
        let mut r = vec![0xaa; 16]; // NTProofStr
        r.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]); // RespType, HiRespType, reserved
        r.extend_from_slice(&0x01d9_0000_0000_0000u64.to_le_bytes()); // TimeStamp
        r.extend_from_slice(&[0xcc; 8]); // ChallengeFromClient
        r.extend_from_slice(&[0; 4]); // Reserved3
        r.extend(av(2, &utf16le("CORP")));
        r.extend(av(7, &0x01db_1234_5678_9abcu64.to_le_bytes()));
        r.extend(av(9, &utf16le(spn)));
        r.extend(av(0, &[]));
        r.extend_from_slice(&[0; 4]);
        r
    }

    #[test]
    fn negotiate_fields() {
        let NtlmMessage::Negotiate(n) = parse_ntlmssp(&NEGOTIATE).unwrap() else {
            panic!("not NEGOTIATE");
        };
        assert_eq!(n.flags, 0x0200_0207);
        assert_eq!(n.domain.as_deref(), Some("TDSDOM"));
        assert_eq!(n.workstation.as_deref(), Some("TDSHOST"));
        assert_eq!(
            n.version,
            Some(NtlmVersion {
                major: 10,
                minor: 0,
                build: 19041,
                revision: 15
            })
        );
    }

    #[test]
    fn challenge_fields() {
        let NtlmMessage::Challenge(c) = parse_ntlmssp(&CHALLENGE).unwrap() else {
            panic!("not CHALLENGE");
        };
        assert_eq!(c.flags, 0x0200_0205);
        assert_eq!(c.target_name.as_deref(), Some("TDSTGT"));
        assert_eq!(
            c.server_challenge,
            [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(c.target_info, TargetInfo::default(), "only MsvAvEOL");
        assert_eq!(c.version.unwrap().build, 19041);
    }

    #[test]
    fn authenticate_fields() {
        let NtlmMessage::Authenticate(a) = parse_ntlmssp(&AUTHENTICATE).unwrap() else {
            panic!("not AUTHENTICATE");
        };
        assert_eq!(a.user, "mona");
        assert_eq!(a.domain, "TDSDOM");
        assert_eq!(a.workstation, "TDSHOST");
        assert_eq!(
            (a.lm_response_len, a.nt_response_len, a.session_key_len),
            (24, 24, 16)
        );
        assert_eq!(a.nt_response, NtResponseKind::V1);
        assert!(!a.anonymous);
        assert_eq!(a.v2_info, None);
    }

    #[test]
    fn challenge_target_info_av_pairs() {
        let mut info = Vec::new();
        info.extend(av(2, &utf16le("CORP")));
        info.extend(av(1, &utf16le("SQL1")));
        info.extend(av(4, &utf16le("corp.example")));
        info.extend(av(3, &utf16le("sql1.corp.example")));
        info.extend(av(5, &utf16le("corp.example")));
        info.extend(av(7, &0x01db_0000_0000_0000u64.to_le_bytes()));
        info.extend(av(0, &[]));
        let mut msg = CHALLENGE[..56].to_vec();
        msg[40..42].copy_from_slice(&(info.len() as u16).to_le_bytes());
        msg[42..44].copy_from_slice(&(info.len() as u16).to_le_bytes());
        msg[44..48].copy_from_slice(&56u32.to_le_bytes());
        msg[12..14].copy_from_slice(&0u16.to_le_bytes()); // no target name
        msg.extend_from_slice(&info);
        let NtlmMessage::Challenge(c) = parse_ntlmssp(&msg).unwrap() else {
            panic!("not CHALLENGE");
        };
        assert_eq!(c.target_name, None);
        let t = c.target_info;
        assert_eq!(t.nb_domain.as_deref(), Some("CORP"));
        assert_eq!(t.nb_computer.as_deref(), Some("SQL1"));
        assert_eq!(t.dns_domain.as_deref(), Some("corp.example"));
        assert_eq!(t.dns_computer.as_deref(), Some("sql1.corp.example"));
        assert_eq!(t.dns_tree.as_deref(), Some("corp.example"));
        assert_eq!(t.timestamp, Some(0x01db_0000_0000_0000));
    }

    #[test]
    fn ntlmv2_authenticate_names_the_spn() {
        let msg = build_authenticate(
            flags::NEGOTIATE_UNICODE | flags::NEGOTIATE_VERSION,
            &[0; 24],
            &ntlmv2_response("MSSQLSvc/sql1.corp.example:1433"),
            "CORP",
            "app_user",
        );
        let NtlmMessage::Authenticate(a) = parse_ntlmssp(&msg).unwrap() else {
            panic!("not AUTHENTICATE");
        };
        assert_eq!(a.user, "app_user");
        assert_eq!(a.workstation, "WS");
        assert_eq!(a.nt_response, NtResponseKind::V2);
        let info = a.v2_info.unwrap();
        assert_eq!(
            info.target_name.as_deref(),
            Some("MSSQLSvc/sql1.corp.example:1433")
        );
        assert_eq!(info.nb_domain.as_deref(), Some("CORP"));
        assert!(filetime_to_unix(info.timestamp.unwrap()) > 1_600_000_000);
        assert_eq!(filetime_to_unix(116_444_736_000_000_000), 0);
    }

    #[test]
    fn anonymous_authenticate() {
        // MS-NLMP 3.2.5.1.2: anonymous is an empty user, an empty NT response and an LM
        // response of one zero byte (or none).
        let msg = build_authenticate(flags::NEGOTIATE_UNICODE, &[0], &[], "", "");
        let NtlmMessage::Authenticate(a) = parse_ntlmssp(&msg).unwrap() else {
            panic!("not AUTHENTICATE");
        };
        assert!(a.anonymous);
        assert_eq!(a.nt_response, NtResponseKind::None);
        assert_eq!(a.version, None, "payload starts at 72: the flag is off");
    }

    #[test]
    fn oem_strings_without_unicode_flag() {
        let mut msg = build_authenticate(0, &[], &[0x11; 24], "", "");
        // Replace the user with an OEM string.
        let user = b"sa";
        let at = msg.len() as u32;
        msg[36..38].copy_from_slice(&2u16.to_le_bytes());
        msg[40..44].copy_from_slice(&at.to_le_bytes());
        msg.extend_from_slice(user);
        let NtlmMessage::Authenticate(a) = parse_ntlmssp(&msg).unwrap() else {
            panic!("not AUTHENTICATE");
        };
        assert_eq!(a.user, "sa");
        assert!(!a.anonymous);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for fixture in [&NEGOTIATE[..], &CHALLENGE[..], &AUTHENTICATE[..]] {
            for n in 0..fixture.len() {
                // NEGOTIATE's fields are optional only below 32 bytes.
                if let Ok(m) = parse_ntlmssp(&fixture[..n]) {
                    assert!(
                        matches!(m, NtlmMessage::Negotiate(_)) && n < 32,
                        "{n}: {m:?}"
                    );
                }
            }
        }
        assert!(matches!(
            parse_ntlmssp(b"NTLM"),
            Err(ParseError::Incomplete { .. })
        ));
        assert!(matches!(
            parse_ntlmssp(b"NTLMSSX\0\x01\0\0\0"),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn impossible_offsets_and_lengths() {
        let mut msg = AUTHENTICATE.to_vec();
        msg[40..44].copy_from_slice(&u32::MAX.to_le_bytes()); // user offset
        assert!(matches!(
            parse_ntlmssp(&msg),
            Err(ParseError::Malformed { .. })
        ));
        let mut msg = AUTHENTICATE.to_vec();
        msg[36..38].copy_from_slice(&0xffffu16.to_le_bytes()); // user length
        assert!(matches!(
            parse_ntlmssp(&msg),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_message_type() {
        let mut msg = NEGOTIATE.to_vec();
        msg[8] = 9;
        assert_eq!(
            parse_ntlmssp(&msg),
            Ok(NtlmMessage::Unknown { message_type: 9 })
        );
    }

    #[test]
    fn av_pairs_cut_or_endless() {
        assert_eq!(parse_av_pairs(&[2, 0, 10, 0, b'a']), TargetInfo::default());
        let many: Vec<u8> = (0..1000).flat_map(|_| [6u8, 0, 0, 0]).collect();
        assert_eq!(parse_av_pairs(&many).flags, None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut msg = SIGNATURE.to_vec();
            msg.extend_from_slice(&data);
            let _ = parse_ntlmssp(&msg);
            let _ = parse_ntlmssp(&data);
            let _ = parse_av_pairs(&data);
        }

        #[test]
        fn corrupting_the_real_messages_never_panics(at in 8usize..186, value: u8, which in 0usize..3) {
            let mut msg = [&NEGOTIATE[..], &CHALLENGE[..], &AUTHENTICATE[..]][which].to_vec();
            if let Some(b) = msg.get_mut(at) {
                *b = value;
            }
            let _ = parse_ntlmssp(&msg);
        }
    }
}
