//! The record layer (RFC 8446 5.1, RFC 5246 6.2): a 5-byte header, then the fragment.
//!
//! ```text
//! ContentType type (1)  ProtocolVersion legacy_record_version (2)  uint16 length (2)
//! opaque fragment[length]
//! ```

use super::handshake::{parse_handshake, TlsMessage};
use super::reassembly::HandshakeReassembler;
use super::Alert;
use crate::proto::ParseError;

pub const RECORD_HEADER_LEN: usize = 5;

/// RFC 5246 6.2.3: a TLSCiphertext fragment is at most 2^14 + 2048 bytes; anything longer is
/// not TLS (or not a record boundary).
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;

open_enum! {
    /// ContentType (IANA TLS ContentType registry).
    pub enum ContentType(u8) {
        ChangeCipherSpec = 20,
        Alert = 21,
        Handshake = 22,
        ApplicationData = 23,
        Heartbeat = 24,
    }
}

/// One record envelope, fragment still raw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsRecord<'a> {
    pub content_type: ContentType,
    /// `legacy_record_version`: 0x0301 or 0x0303 in practice, whatever is negotiated.
    pub version: u16,
    pub fragment: &'a [u8],
}

/// Reads one record from the start of `buf`; the `usize` is the bytes it took.
/// `Incomplete` until the whole record is there; `Malformed` when the header is not TLS's.
pub fn parse_record(buf: &[u8]) -> Result<(TlsRecord<'_>, usize), ParseError> {
    let [content_type, major, minor, len_hi, len_lo, fragment @ ..] = buf else {
        return Err(ParseError::Incomplete {
            needed: Some(RECORD_HEADER_LEN.saturating_sub(buf.len())),
        });
    };
    if *major != 3 {
        return Err(ParseError::Malformed {
            what: "TLS record version is not 3.x",
            at: 1,
        });
    }
    let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo]));
    if len > MAX_RECORD_LEN {
        return Err(ParseError::TooLarge {
            what: "TLS record",
            len,
            max: MAX_RECORD_LEN,
        });
    }
    let fragment = fragment.get(..len).ok_or(ParseError::Incomplete {
        needed: Some(len.saturating_sub(fragment.len())),
    })?;
    Ok((
        TlsRecord {
            content_type: ContentType::from(*content_type),
            version: u16::from_be_bytes([*major, *minor]),
            fragment,
        },
        RECORD_HEADER_LEN + len,
    ))
}

/// What one record held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRecordInfo {
    pub content_type: ContentType,
    pub version: u16,
    /// Fragment length.
    pub len: usize,
    /// Messages that ended in this record (a handshake message spanning records is reported
    /// with the record that completes it).
    pub messages: Vec<TlsMessage>,
}

/// One direction of a TLS connection: remembers whether ChangeCipherSpec was seen (so later
/// handshake and alert records are known to be encrypted) and reassembles handshake messages
/// that span records.
#[derive(Clone, Debug, Default)]
pub struct TlsFlow {
    encrypted: bool,
    reassembler: HandshakeReassembler,
}

impl TlsFlow {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once this direction sent ChangeCipherSpec.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// Decodes one record into the messages it completes.
    pub fn on_record(&mut self, record: &TlsRecord<'_>) -> Vec<TlsMessage> {
        let len = record.fragment.len();
        let mut out = Vec::new();
        match record.content_type {
            ContentType::ChangeCipherSpec => {
                out.push(TlsMessage::ChangeCipherSpec);
                self.encrypted = true;
                self.reassembler.reset();
            }
            ContentType::Alert if self.encrypted => out.push(TlsMessage::EncryptedAlert { len }),
            ContentType::Alert => {
                // Alerts are two bytes; anything else unencrypted is a broken record.
                if len == 2 {
                    if let Some(a) = Alert::parse(record.fragment) {
                        out.push(TlsMessage::Alert(a));
                    }
                } else {
                    out.push(TlsMessage::Malformed {
                        what: "alert record is not 2 bytes",
                    });
                }
            }
            ContentType::Handshake if self.encrypted => {
                out.push(TlsMessage::EncryptedHandshake { len })
            }
            ContentType::Handshake => {
                let res = self.reassembler.push(record.fragment, |msg_type, body| {
                    out.push(parse_handshake(msg_type, body));
                });
                if let Err(ParseError::TooLarge { .. }) = res {
                    out.push(TlsMessage::Malformed {
                        what: "handshake message larger than the reassembly limit",
                    });
                }
            }
            ContentType::ApplicationData => out.push(TlsMessage::ApplicationData { len }),
            ContentType::Heartbeat => out.push(TlsMessage::Heartbeat { len }),
            ContentType::Unknown(content_type) => {
                out.push(TlsMessage::UnknownRecord { content_type, len })
            }
        }
        out
    }
}

/// Decodes the complete records at the start of `buf` with a fresh [`TlsFlow`]; stops at the
/// first incomplete or non-TLS record. Returns the records and the bytes they took.
pub fn parse_records(buf: &[u8]) -> (Vec<TlsRecordInfo>, usize) {
    let mut flow = TlsFlow::new();
    flow.parse_records(buf)
}

impl TlsFlow {
    /// As [`parse_records`], keeping this flow's state across calls.
    pub fn parse_records(&mut self, buf: &[u8]) -> (Vec<TlsRecordInfo>, usize) {
        let mut infos = Vec::new();
        let mut consumed = 0usize;
        while let Some(rest) = buf.get(consumed..) {
            let Ok((record, used)) = parse_record(rest) else {
                break;
            };
            infos.push(TlsRecordInfo {
                content_type: record.content_type,
                version: record.version,
                len: record.fragment.len(),
                messages: self.on_record(&record),
            });
            consumed += used;
        }
        (infos, consumed)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    const CCS: [u8; 6] = [
        0x14, /* ChangeCipherSpec */
        0x03, 0x03, /* TLS 1.2 */
        0x00, 0x01, /* length 1 */
        0x01, /* change_cipher_spec */
    ];

    const ALERT: [u8; 7] = [
        0x15, /* Alert */
        0x03, 0x03, /* TLS 1.2 */
        0x00, 0x02, /* length 2 */
        0x02, /* fatal */
        0x2a, /* bad_certificate */
    ];

    #[test]
    fn record_header() {
        let (r, used) = parse_record(&ALERT).unwrap();
        assert_eq!(used, 7);
        assert_eq!(r.content_type, ContentType::Alert);
        assert_eq!(r.version, 0x0303);
        assert_eq!(r.fragment, &[0x02, 0x2a]);
    }

    #[test]
    fn every_truncation_is_incomplete() {
        for n in 0..ALERT.len() {
            assert!(
                matches!(parse_record(&ALERT[..n]), Err(ParseError::Incomplete { .. })),
                "{n}"
            );
        }
    }

    #[test]
    fn impossible_lengths() {
        assert!(matches!(
            parse_record(&[0x16, 0x03, 0x01, 0xff, 0xff]),
            Err(ParseError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_record(&[0x16, 0x02, 0x01, 0x00, 0x01, 0x00]),
            Err(ParseError::Malformed { .. })
        ));
    }

    #[test]
    fn alert_then_encrypted_after_ccs() {
        let mut buf = ALERT.to_vec();
        buf.extend_from_slice(&CCS);
        buf.extend_from_slice(&ALERT);
        // An encrypted Finished: 40 opaque bytes in a handshake record.
        buf.extend_from_slice(&[0x16, 0x03, 0x03, 0x00, 0x28]);
        buf.extend_from_slice(&[0xab; 40]);
        buf.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x03, 1, 2, 3]);
        buf.extend_from_slice(&[0x17, 0x03]); // cut record: left for later
        let (infos, used) = parse_records(&buf);
        assert_eq!(used, buf.len() - 2);
        let msgs: Vec<_> = infos.iter().flat_map(|i| i.messages.clone()).collect();
        assert_eq!(msgs.len(), 5);
        assert!(matches!(&msgs[0], TlsMessage::Alert(a) if a.description_name() == "bad_certificate"));
        assert_eq!(msgs[1], TlsMessage::ChangeCipherSpec);
        assert_eq!(msgs[2], TlsMessage::EncryptedAlert { len: 2 });
        assert_eq!(msgs[3], TlsMessage::EncryptedHandshake { len: 40 });
        assert_eq!(msgs[4], TlsMessage::ApplicationData { len: 3 });
    }

    #[test]
    fn unknown_content_type() {
        let (infos, _) = parse_records(&[0x30, 0x03, 0x03, 0x00, 0x01, 0x00]);
        assert_eq!(
            infos[0].messages,
            vec![TlsMessage::UnknownRecord {
                content_type: 0x30,
                len: 1
            }]
        );
        assert_eq!(infos[0].content_type, ContentType::Unknown(0x30));
    }
}
