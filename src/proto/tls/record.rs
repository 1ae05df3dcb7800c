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
    /// Where the record starts in the buffer given to `parse_records`.
    pub offset: usize,
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
            ContentType::Handshake if self.encrypted && !is_plain_client_hello(record.fragment) => {
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

/// RFC 8446 4.1.4 with D.4: after a HelloRetryRequest a TLS 1.3 client sends its
/// compatibility ChangeCipherSpec and then a second ClientHello in clear. A handshake record
/// holding exactly one message of type ClientHello is taken for that (an encrypted Finished
/// matching by chance needs its first four bytes to spell its own length).
fn is_plain_client_hello(fragment: &[u8]) -> bool {
    match fragment {
        [1, l0, l1, l2, body @ ..] => {
            let len = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
            len == body.len()
        }
        _ => false,
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
                offset: consumed,
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
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
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
                matches!(
                    parse_record(&ALERT[..n]),
                    Err(ParseError::Incomplete { .. })
                ),
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
        let offsets: Vec<usize> = infos.iter().map(|i| i.offset).collect();
        assert_eq!(offsets, [0, 7, 13, 20, 65]);
        let msgs: Vec<_> = infos.iter().flat_map(|i| i.messages.clone()).collect();
        assert_eq!(msgs.len(), 5);
        assert!(
            matches!(&msgs[0], TlsMessage::Alert(a) if a.description_name() == "bad_certificate")
        );
        assert_eq!(msgs[1], TlsMessage::ChangeCipherSpec);
        assert_eq!(msgs[2], TlsMessage::EncryptedAlert { len: 2 });
        assert_eq!(msgs[3], TlsMessage::EncryptedHandshake { len: 40 });
        assert_eq!(msgs[4], TlsMessage::ApplicationData { len: 3 });
    }

    #[test]
    fn second_client_hello_after_compatibility_ccs() {
        let mut hello = vec![0x16, 0x03, 0x03, 0x00, 0x00];
        let body = super::super::handshake::tests::CLIENT_HELLO;
        let n = body.len() + 4;
        hello[3..5].copy_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
        hello.extend_from_slice(&[1, 0, (body.len() >> 8) as u8, body.len() as u8]);
        hello.extend_from_slice(body);
        let mut buf = CCS.to_vec();
        buf.extend_from_slice(&hello);
        let (infos, _) = parse_records(&buf);
        assert_eq!(infos[0].messages, vec![TlsMessage::ChangeCipherSpec]);
        assert!(matches!(infos[1].messages[0], TlsMessage::ClientHello(_)));
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
        assert_eq!(infos[0].offset, 0);
    }

    /// The server's flight in frame 11 of the lab capture healthy-tsql-login-tls.pcap (SQL
    /// Server 2022 on Linux, FreeTDS tsql), TDS header stripped: ServerHello, Certificate
    /// (SQL Server's self-generated fallback certificate), ServerKeyExchange, ServerHelloDone.
    const SERVER_FLIGHT: &[u8] = include_bytes!("testdata/server-flight-tsql.bin");

    /// The ClientHello in frame 10 of the lab capture healthy-tedious-tls.pcap (tedious,
    /// Node.js), TDS header stripped.
    const CLIENT_HELLO_TEDIOUS: &[u8] = include_bytes!("testdata/client-hello-tedious.bin");

    #[test]
    fn real_server_flight() {
        let (infos, used) = parse_records(SERVER_FLIGHT);
        assert_eq!(used, SERVER_FLIGHT.len());
        let msgs: Vec<_> = infos.into_iter().flat_map(|i| i.messages).collect();
        assert_eq!(msgs.len(), 4);
        let TlsMessage::ServerHello(sh) = &msgs[0] else {
            panic!("{:?}", msgs[0]);
        };
        assert_eq!(sh.version, 0x0303);
        assert_eq!(sh.cipher.id, 0xc030);
        assert_eq!(sh.cipher.name, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
        let TlsMessage::Certificate { chain, undecodable } = &msgs[1] else {
            panic!("{:?}", msgs[1]);
        };
        assert_eq!(*undecodable, 0);
        assert_eq!(chain.len(), 1);
        let c = &chain[0];
        assert_eq!(c.subject, "CN=SSL_Self_Signed_Fallback");
        assert_eq!(c.issuer, "CN=SSL_Self_Signed_Fallback");
        assert!(c.self_signed && c.sql_server_fallback);
        assert_eq!(c.serial, "51701c940f6758cbeb8408a51f833b08d59f7bbf");
        // tshark: utcTime 2026-11-24 23:52:56 and 2036-11-21 23:52:56 (UTC).
        assert_eq!(c.not_before_rfc3339(), "2026-11-24T23:52:56Z");
        assert_eq!(c.not_after_rfc3339(), "2036-11-21T23:52:56Z");
        assert!(c.dns_names.is_empty());
        assert!(!c.matches_host("sqlserver"));
        // tshark: algorithmIdentifier sha256WithRSAEncryption, rsaEncryption; cA True.
        assert_eq!(c.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(c.key_bits, 2048);
        assert!(c.is_ca);
        assert_eq!(
            c.server_auth_eku, None,
            "three extensions: AKI, basicConstraints, SKI"
        );
        assert_eq!(msgs[2], TlsMessage::ServerKeyExchange);
        assert_eq!(msgs[3], TlsMessage::ServerHelloDone);
    }

    #[test]
    fn real_client_hello_tedious() {
        let (infos, used) = parse_records(CLIENT_HELLO_TEDIOUS);
        assert_eq!(used, CLIENT_HELLO_TEDIOUS.len());
        let TlsMessage::ClientHello(ch) = &infos[0].messages[0] else {
            panic!("{:?}", infos[0].messages);
        };
        assert_eq!(ch.legacy_version, 0x0303);
        assert_eq!(
            ch.max_version(),
            0x0303,
            "no supported_versions: TLS 1.2 at most"
        );
        assert_eq!(ch.cipher_suites.len(), 56);
        assert_eq!(
            ch.cipher_suites[0].name,
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        // tedious puts the server's IP address in SNI, as tshark shows.
        assert_eq!(ch.sni.as_deref(), Some("198.51.100.20"));
        assert!(ch.alpn.is_empty());
    }

    #[test]
    fn real_flight_every_truncation() {
        for n in 0..SERVER_FLIGHT.len() {
            let (infos, used) = parse_records(&SERVER_FLIGHT[..n]);
            assert!(used <= n);
            for m in infos.iter().flat_map(|i| &i.messages) {
                assert!(!matches!(m, TlsMessage::Malformed { .. }), "{n}: {m:?}");
            }
        }
    }

    /// The same flight re-cut into 1-byte-to-300-byte records: every split of the handshake
    /// messages across records gives the same four messages.
    #[test]
    fn real_flight_refragmented() {
        let mut fragments = Vec::new();
        let mut rest = SERVER_FLIGHT;
        while let Ok((r, used)) = parse_record(rest) {
            fragments.extend_from_slice(r.fragment);
            rest = &rest[used..];
        }
        for size in [1usize, 7, 64, 300, 1000] {
            let mut flow = TlsFlow::new();
            let mut all = Vec::new();
            for chunk in fragments.chunks(size) {
                let len = u16::try_from(chunk.len()).unwrap().to_be_bytes();
                let mut rec = vec![0x16, 0x03, 0x03, len[0], len[1]];
                rec.extend_from_slice(chunk);
                let (infos, used) = flow.parse_records(&rec);
                assert_eq!(used, rec.len());
                all.extend(infos.into_iter().flat_map(|i| i.messages));
            }
            assert_eq!(all.len(), 4, "size {size}");
            assert!(matches!(&all[1], TlsMessage::Certificate { chain, .. } if chain.len() == 1));
        }
    }

    const OPENSSL_TLS13_CLIENT: &[u8] = include_bytes!("testdata/openssl-tls13-client.bin");
    const OPENSSL_TLS13_SERVER: &[u8] = include_bytes!("testdata/openssl-tls13-server.bin");
    const OPENSSL_TLS12_CLIENT: &[u8] = include_bytes!("testdata/openssl-tls12-client.bin");
    const OPENSSL_TLS12_SERVER: &[u8] = include_bytes!("testdata/openssl-tls12-server.bin");

    fn all_messages(stream: &[u8]) -> Vec<TlsMessage> {
        let (infos, used) = parse_records(stream);
        assert_eq!(used, stream.len(), "whole stream is records");
        infos.into_iter().flat_map(|i| i.messages).collect()
    }

    /// TDS 8.0 style: TLS 1.3 first on the wire with ALPN tds/8.0 (see testdata/README.md).
    #[test]
    fn openssl_tls13_tds8_style() {
        let client = all_messages(OPENSSL_TLS13_CLIENT);
        let TlsMessage::ClientHello(ch) = &client[0] else {
            panic!("{:?}", client[0]);
        };
        // tshark: supported_version 0x0304,0x0303,0x0302,0x0301, ALPN tds/8.0, SNI.
        assert_eq!(ch.supported_versions, vec![0x0304, 0x0303, 0x0302, 0x0301]);
        assert_eq!(ch.max_version(), 0x0304);
        assert_eq!(ch.alpn, vec!["tds/8.0".to_string()]);
        assert_eq!(ch.sni.as_deref(), Some("sql1.corp.example"));
        assert_eq!(ch.cipher_suites[0].name, "TLS_AES_256_GCM_SHA384");
        assert_eq!(
            client[1],
            TlsMessage::ChangeCipherSpec,
            "middlebox compatibility CCS"
        );
        assert!(client[2..]
            .iter()
            .all(|m| matches!(m, TlsMessage::ApplicationData { .. })));

        let server = all_messages(OPENSSL_TLS13_SERVER);
        let TlsMessage::ServerHello(sh) = &server[0] else {
            panic!("{:?}", server[0]);
        };
        // tshark: legacy 0x0303, supported_version 0x0304, cipher 0x1302.
        assert_eq!((sh.legacy_version, sh.version), (0x0303, 0x0304));
        assert_eq!(super::super::version_name(sh.version), "TLS 1.3");
        assert_eq!(sh.cipher.id, 0x1302);
        assert_eq!(
            sh.alpn, None,
            "TLS 1.3 puts ALPN in the encrypted EncryptedExtensions"
        );
        assert!(!sh.hello_retry_request);
        assert_eq!(server[1], TlsMessage::ChangeCipherSpec);
        // Certificate and the rest are encrypted application data records in TLS 1.3.
        assert!(server[2..]
            .iter()
            .all(|m| matches!(m, TlsMessage::ApplicationData { .. })));
        assert!(!server
            .iter()
            .any(|m| matches!(m, TlsMessage::Certificate { .. })));
    }

    #[test]
    fn openssl_tls12_with_san_certificate() {
        let server = all_messages(OPENSSL_TLS12_SERVER);
        let kinds: Vec<&str> = server
            .iter()
            .map(|m| match m {
                TlsMessage::ServerHello(_) => "ServerHello",
                TlsMessage::Certificate { .. } => "Certificate",
                TlsMessage::ServerKeyExchange => "ServerKeyExchange",
                TlsMessage::ServerHelloDone => "ServerHelloDone",
                TlsMessage::NewSessionTicket => "NewSessionTicket",
                TlsMessage::ChangeCipherSpec => "ChangeCipherSpec",
                TlsMessage::EncryptedHandshake { .. } => "EncryptedHandshake",
                TlsMessage::EncryptedAlert { .. } => "EncryptedAlert",
                TlsMessage::ApplicationData { .. } => "ApplicationData",
                _ => "other",
            })
            .collect();
        // tshark: frame 24 types 2,11,12,14; frame 27 type 4 then CCS and encrypted Finished;
        // frame 32 an (encrypted) alert.
        assert_eq!(
            kinds,
            [
                "ServerHello",
                "Certificate",
                "ServerKeyExchange",
                "ServerHelloDone",
                "NewSessionTicket",
                "ChangeCipherSpec",
                "EncryptedHandshake",
                "EncryptedAlert"
            ]
        );
        let TlsMessage::ServerHello(sh) = &server[0] else {
            panic!()
        };
        assert_eq!((sh.version, sh.cipher.id), (0x0303, 0xc030));
        let TlsMessage::Certificate { chain, .. } = &server[1] else {
            panic!()
        };
        let c = &chain[0];
        // tshark: serial 06583a37…, dNSName sql1.corp.example,*.db.corp.example,
        // utcTime 2026-11-25 00:16:52 / 2036-11-22 00:16:52.
        assert_eq!(c.serial, "06583a3739797dd9d18b055e436e47d96322678a");
        assert_eq!(c.dns_names, vec!["sql1.corp.example", "*.db.corp.example"]);
        assert_eq!(c.ip_addresses, vec!["127.0.0.1"]);
        assert_eq!(c.not_before_rfc3339(), "2026-11-25T00:16:52Z");
        assert_eq!(c.not_after_rfc3339(), "2036-11-22T00:16:52Z");
        assert_eq!(c.subject, "CN=sql1.corp.example");
        assert!(c.self_signed && !c.sql_server_fallback);
        assert_eq!(c.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(c.key_bits, 2048);
        assert_eq!(c.server_auth_eku, None);
        assert!(c.matches_host("sql1.corp.example"));
        assert!(c.matches_host("reports.db.corp.example"));
        assert!(c.matches_host("127.0.0.1"));
        assert!(!c.matches_host("sql2.corp.example"));
        assert_eq!(
            c.validity_at(c.not_after + 1),
            super::super::Validity::Expired
        );

        let client = all_messages(OPENSSL_TLS12_CLIENT);
        let TlsMessage::ClientHello(ch) = &client[0] else {
            panic!()
        };
        assert!(
            ch.supported_versions.is_empty(),
            "-tls1_2: no supported_versions"
        );
        assert_eq!(ch.max_version(), 0x0303);
        assert!(ch.alpn.is_empty());
        assert_eq!(client[1], TlsMessage::ClientKeyExchange);
        assert_eq!(client[2], TlsMessage::ChangeCipherSpec);
        assert!(matches!(client[3], TlsMessage::EncryptedHandshake { .. }));
        assert!(matches!(client[4], TlsMessage::ApplicationData { .. }));
        assert!(matches!(client[5], TlsMessage::EncryptedAlert { .. }));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let (_, used) = parse_records(&data);
            proptest::prop_assert!(used <= data.len());
            for t in 0..=255u8 {
                let _ = super::super::parse_handshake(t, &data);
            }
        }

        #[test]
        fn corrupting_the_real_flight_never_panics(at in 0usize..1234, value: u8) {
            let mut flight = SERVER_FLIGHT.to_vec();
            if let Some(b) = flight.get_mut(at) {
                *b = value;
            }
            let (_, used) = parse_records(&flight);
            proptest::prop_assert!(used <= flight.len());
        }

        #[test]
        fn corrupted_handshake_records_never_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            t in 0u8..30,
        ) {
            // A well-framed handshake record around arbitrary bodies reaches tls-parser.
            let len = body.len();
            let mut rec = vec![0x16, 0x03, 0x03, 0, 0, t, 0, (len >> 8) as u8, len as u8];
            rec.extend_from_slice(&body);
            let rlen = (rec.len() - 5) as u16;
            rec[3..5].copy_from_slice(&rlen.to_be_bytes());
            let (infos, used) = parse_records(&rec);
            proptest::prop_assert_eq!(used, rec.len());
            proptest::prop_assert_eq!(infos.len(), 1);
        }
    }
}
