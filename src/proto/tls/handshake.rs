//! Handshake message bodies (RFC 8446 4, RFC 5246 7.4), decoded with `tls-parser`; only the
//! fields a connection diagnosis needs are kept, as owned values.

use tls_parser::{TlsCipherSuiteID, TlsExtension, TlsMessageHandshake};

use super::alert::Alert;
use super::certificate::{parse_certificate, CertInfo};
use super::is_grease;

open_enum! {
    /// HandshakeType (IANA TLS HandshakeType registry).
    pub enum HandshakeType(u8) {
        HelloRequest = 0,
        ClientHello = 1,
        ServerHello = 2,
        NewSessionTicket = 4,
        EndOfEarlyData = 5,
        EncryptedExtensions = 8,
        Certificate = 11,
        ServerKeyExchange = 12,
        CertificateRequest = 13,
        ServerHelloDone = 14,
        CertificateVerify = 15,
        ClientKeyExchange = 16,
        Finished = 20,
        CertificateStatus = 22,
        KeyUpdate = 24,
        MessageHash = 254,
    }
}

/// A cipher suite id with its IANA name ("TLS_AES_256_GCM_SHA384"), "GREASE" or "unknown".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipherSuite {
    pub id: u16,
    pub name: &'static str,
}

impl CipherSuite {
    pub fn from_id(id: u16) -> CipherSuite {
        let name = if is_grease(id) {
            "GREASE"
        } else {
            TlsCipherSuiteID(id)
                .get_ciphersuite()
                .map(|c| c.name)
                .unwrap_or("unknown")
        };
        CipherSuite { id, name }
    }
}

/// ClientHello (RFC 8446 4.1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version`: the highest version for TLS ≤ 1.2 clients, 0x0303 for TLS 1.3 ones.
    pub legacy_version: u16,
    /// The `supported_versions` extension (RFC 8446 4.2.1), GREASE values included.
    pub supported_versions: Vec<u16>,
    pub cipher_suites: Vec<CipherSuite>,
    /// `server_name` host name (RFC 6066 3).
    pub sni: Option<String>,
    /// ALPN protocol names (RFC 7301); `tds/8.0` marks TDS 8.0 strict encryption.
    pub alpn: Vec<String>,
    /// Extension types in the order sent.
    pub extensions: Vec<u16>,
}

/// The ALPN protocol id of TDS 8.0 (MS-TDS, strict encryption: TLS before PRELOGIN).
pub const ALPN_TDS8: &str = "tds/8.0";

impl ClientHello {
    /// Whether the client offers TDS 8.0 through ALPN.
    pub fn offers_tds8(&self) -> bool {
        self.alpn.iter().any(|p| p == ALPN_TDS8)
    }

    /// The highest version offered: from `supported_versions` when present (GREASE ignored),
    /// else `legacy_version`.
    pub fn max_version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version)
    }
}

/// ServerHello (RFC 8446 4.1.3), or a HelloRetryRequest, which shares its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    /// The negotiated version: `supported_versions` (TLS 1.3) when present, else
    /// `legacy_version`.
    pub version: u16,
    pub cipher: CipherSuite,
    /// The ALPN protocol the server chose.
    pub alpn: Option<String>,
    /// RFC 8446 4.1.3: a ServerHello whose random is the HelloRetryRequest constant.
    pub hello_retry_request: bool,
    pub extensions: Vec<u16>,
}

/// What a record held, one entry per message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMessage {
    ClientHello(ClientHello),
    ServerHello(ServerHello),
    /// The server's (or client's) certificate chain, leaf first. Certificates x509-parser
    /// could not decode are counted in `undecodable`.
    Certificate {
        chain: Vec<CertInfo>,
        undecodable: usize,
    },
    ServerKeyExchange,
    CertificateRequest,
    ServerHelloDone,
    ClientKeyExchange,
    CertificateVerify,
    /// An unencrypted Finished (only SSL 3.0 / debugging setups send one).
    Finished,
    NewSessionTicket,
    /// Another handshake message type, with its body length.
    OtherHandshake {
        msg_type: HandshakeType,
        len: usize,
    },
    /// A handshake record after ChangeCipherSpec: the encrypted Finished (TLS ≤ 1.2).
    EncryptedHandshake {
        len: usize,
    },
    ChangeCipherSpec,
    Alert(Alert),
    EncryptedAlert {
        len: usize,
    },
    /// Application data, and in TLS 1.3 also every handshake message after ServerHello.
    ApplicationData {
        len: usize,
    },
    Heartbeat {
        len: usize,
    },
    UnknownRecord {
        content_type: u8,
        len: usize,
    },
    /// A message whose framing held but whose body did not decode.
    Malformed {
        what: &'static str,
    },
}

impl TlsMessage {
    /// The message's name as Wireshark shows it ("Client Hello", "Encrypted Handshake Message").
    pub fn name(&self) -> &'static str {
        match self {
            TlsMessage::ClientHello(_) => "Client Hello",
            TlsMessage::ServerHello(s) if s.hello_retry_request => "Hello Retry Request",
            TlsMessage::ServerHello(_) => "Server Hello",
            TlsMessage::Certificate { .. } => "Certificate",
            TlsMessage::ServerKeyExchange => "Server Key Exchange",
            TlsMessage::CertificateRequest => "Certificate Request",
            TlsMessage::ServerHelloDone => "Server Hello Done",
            TlsMessage::ClientKeyExchange => "Client Key Exchange",
            TlsMessage::CertificateVerify => "Certificate Verify",
            TlsMessage::Finished => "Finished",
            TlsMessage::NewSessionTicket => "New Session Ticket",
            TlsMessage::OtherHandshake { .. } => "Handshake",
            TlsMessage::EncryptedHandshake { .. } => "Encrypted Handshake Message",
            TlsMessage::ChangeCipherSpec => "Change Cipher Spec",
            TlsMessage::Alert(_) => "Alert",
            TlsMessage::EncryptedAlert { .. } => "Encrypted Alert",
            TlsMessage::ApplicationData { .. } => "Application Data",
            TlsMessage::Heartbeat { .. } => "Heartbeat",
            TlsMessage::UnknownRecord { .. } => "Unknown Record",
            TlsMessage::Malformed { .. } => "Malformed",
        }
    }
}

/// RFC 8446 4.1.3: SHA-256("HelloRetryRequest"), the random of a HelloRetryRequest.
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Decodes one complete handshake message body. Never fails: what does not decode is
/// [`TlsMessage::Malformed`].
pub fn parse_handshake(msg_type: u8, body: &[u8]) -> TlsMessage {
    match HandshakeType::from(msg_type) {
        HandshakeType::ClientHello => parse_client_hello(body),
        HandshakeType::ServerHello => parse_server_hello(body),
        HandshakeType::Certificate => parse_certificate_message(body),
        HandshakeType::ServerKeyExchange => TlsMessage::ServerKeyExchange,
        HandshakeType::CertificateRequest => TlsMessage::CertificateRequest,
        HandshakeType::ServerHelloDone => TlsMessage::ServerHelloDone,
        HandshakeType::ClientKeyExchange => TlsMessage::ClientKeyExchange,
        HandshakeType::CertificateVerify => TlsMessage::CertificateVerify,
        HandshakeType::Finished => TlsMessage::Finished,
        HandshakeType::NewSessionTicket => TlsMessage::NewSessionTicket,
        other => TlsMessage::OtherHandshake {
            msg_type: other,
            len: body.len(),
        },
    }
}

fn parse_client_hello(body: &[u8]) -> TlsMessage {
    let Ok((_, ch)) = tls_parser::parse_tls_handshake_client_hello(body) else {
        return TlsMessage::Malformed {
            what: "ClientHello",
        };
    };
    let mut hello = ClientHello {
        legacy_version: ch.version.0,
        cipher_suites: ch
            .ciphers
            .iter()
            .map(|c| CipherSuite::from_id(c.0))
            .collect(),
        ..ClientHello::default()
    };
    for (ext_type, data) in extensions(ch.ext.unwrap_or_default()) {
        hello.extensions.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => {
                if let Ok((_, TlsExtension::SNI(names))) =
                    tls_parser::parse_tls_extension_sni_content(data)
                {
                    // RFC 6066 3: name type 0 is host_name, the only one defined.
                    hello.sni = names
                        .iter()
                        .find(|(t, _)| t.0 == 0)
                        .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                }
            }
            EXT_ALPN => hello.alpn = alpn_names(data),
            EXT_SUPPORTED_VERSIONS => {
                // ProtocolVersion versions<2..254>: one length byte, then pairs.
                if let Some((_, list)) = data.split_first() {
                    hello.supported_versions = list
                        .chunks_exact(2)
                        .filter_map(|p| <[u8; 2]>::try_from(p).ok())
                        .map(u16::from_be_bytes)
                        .collect();
                }
            }
            _ => {}
        }
    }
    TlsMessage::ClientHello(hello)
}

fn parse_server_hello(body: &[u8]) -> TlsMessage {
    let Ok((_, sh)) = tls_parser::parse_tls_handshake_server_hello(body) else {
        return TlsMessage::Malformed {
            what: "ServerHello",
        };
    };
    let mut hello = ServerHello {
        legacy_version: sh.version.0,
        version: sh.version.0,
        cipher: CipherSuite::from_id(sh.cipher.0),
        alpn: None,
        hello_retry_request: sh.random == HELLO_RETRY_RANDOM,
        extensions: Vec::new(),
    };
    for (ext_type, data) in extensions(sh.ext.unwrap_or_default()) {
        hello.extensions.push(ext_type);
        match ext_type {
            EXT_SUPPORTED_VERSIONS => {
                if let Ok(v) = <[u8; 2]>::try_from(data) {
                    hello.version = u16::from_be_bytes(v);
                }
            }
            EXT_ALPN => hello.alpn = alpn_names(data).into_iter().next(),
            _ => {}
        }
    }
    TlsMessage::ServerHello(hello)
}

fn parse_certificate_message(body: &[u8]) -> TlsMessage {
    let Ok((_, TlsMessageHandshake::Certificate(c))) =
        tls_parser::parse_tls_handshake_msg_certificate(body)
    else {
        return TlsMessage::Malformed {
            what: "Certificate",
        };
    };
    let mut chain = Vec::new();
    let mut undecodable = 0usize;
    for raw in &c.cert_chain {
        match parse_certificate(raw.data) {
            Some(info) => chain.push(info),
            None => undecodable += 1,
        }
    }
    TlsMessage::Certificate { chain, undecodable }
}

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// Walks `Extension extensions<..>` (RFC 8446 4.2) one by one, so that one extension
/// tls-parser rejects does not hide the others; stops at the first cut entry.
fn extensions(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let [t0, t1, l0, l1, rest @ ..] = data else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let body = rest.get(..len)?;
        data = rest.get(len..).unwrap_or_default();
        Some((u16::from_be_bytes([*t0, *t1]), body))
    })
    .take(256)
}

fn alpn_names(data: &[u8]) -> Vec<String> {
    match tls_parser::parse_tls_extension_alpn_content(data) {
        Ok((_, TlsExtension::ALPN(names))) => names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
pub(super) mod tests {
    use super::*;

    /// A TDS 8.0 style ClientHello body, built by hand: TLS 1.3 offered through
    /// supported_versions, SNI and ALPN "tds/8.0".
    pub const CLIENT_HELLO: &[u8] = &[
        0x03, 0x03, /* legacy_version TLS 1.2 */
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11,
        0x11, 0x11, /* random */
        0x00, /* session id length 0 */
        0x00, 0x06, /* cipher suites length 6 */
        0x3a, 0x3a, /* GREASE */
        0x13, 0x02, /* TLS_AES_256_GCM_SHA384 */
        0xc0, 0x30, /* TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 */
        0x01, 0x00, /* compression: null */
        0x00, 0x30, /* extensions length 48 */
        0x00, 0x00, 0x00, 0x0e, /* server_name, 14 */
        0x00, 0x0c, 0x00, 0x00, 0x09, b's', b'q', b'l', b'.', b'l', b'o', b'c', b'a', b'l', 0x00,
        0x10, 0x00, 0x0a, /* ALPN, 10 */
        0x00, 0x08, 0x07, b't', b'd', b's', b'/', b'8', b'.', b'0', 0x00, 0x2b, 0x00,
        0x07, /* supported_versions, 7 */
        0x06, 0x7a, 0x7a, 0x03, 0x04, 0x03, 0x03, 0xff, 0x01, 0x00, 0x01,
        0x00, /* renegotiation_info, 1 */
    ];

    /// A TLS 1.3 ServerHello body: legacy 1.2, supported_versions 1.3.
    const SERVER_HELLO: &[u8] = &[
        0x03, 0x03, /* legacy_version */
        0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
        0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
        0x22, 0x22, /* random */
        0x00, /* session id length 0 */
        0x13, 0x02, /* TLS_AES_256_GCM_SHA384 */
        0x00, /* compression null */
        0x00, 0x06, /* extensions length */
        0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, /* supported_versions: TLS 1.3 */
    ];

    #[test]
    fn client_hello_fields() {
        let TlsMessage::ClientHello(ch) = parse_handshake(1, CLIENT_HELLO) else {
            panic!("not a ClientHello");
        };
        assert_eq!(ch.legacy_version, 0x0303);
        assert_eq!(ch.supported_versions, vec![0x7a7a, 0x0304, 0x0303]);
        assert_eq!(ch.max_version(), 0x0304);
        assert_eq!(ch.cipher_suites.len(), 3);
        assert_eq!(ch.cipher_suites[0].name, "GREASE");
        assert_eq!(ch.cipher_suites[1].name, "TLS_AES_256_GCM_SHA384");
        assert_eq!(ch.cipher_suites[2].id, 0xc030);
        assert_eq!(
            ch.cipher_suites[2].name,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(ch.sni.as_deref(), Some("sql.local"));
        assert_eq!(ch.alpn, vec!["tds/8.0".to_string()]);
        assert!(ch.offers_tds8());
        assert_eq!(TlsMessage::ClientHello(ch.clone()).name(), "Client Hello");
        assert_eq!(ch.extensions, vec![0, 16, 43, 0xff01]);
    }

    #[test]
    fn server_hello_tls13() {
        let TlsMessage::ServerHello(sh) = parse_handshake(2, SERVER_HELLO) else {
            panic!("not a ServerHello");
        };
        assert_eq!(sh.legacy_version, 0x0303);
        assert_eq!(sh.version, 0x0304);
        assert_eq!(sh.cipher.name, "TLS_AES_256_GCM_SHA384");
        assert!(!sh.hello_retry_request);
        let mut hrr = SERVER_HELLO.to_vec();
        hrr[2..34].copy_from_slice(&HELLO_RETRY_RANDOM);
        let TlsMessage::ServerHello(sh) = parse_handshake(2, &hrr) else {
            panic!("not a ServerHello");
        };
        assert!(sh.hello_retry_request);
    }

    #[test]
    fn truncated_hellos_are_malformed_or_partial_never_panic() {
        for n in 0..CLIENT_HELLO.len() {
            let m = parse_handshake(1, &CLIENT_HELLO[..n]);
            assert!(
                matches!(m, TlsMessage::Malformed { .. } | TlsMessage::ClientHello(_)),
                "{n}"
            );
        }
        // Cut inside the fixed part: always malformed.
        for n in 0..38 {
            assert!(matches!(
                parse_handshake(2, &SERVER_HELLO[..n]),
                TlsMessage::Malformed { .. }
            ));
        }
    }

    #[test]
    fn simple_messages_and_unknown_type() {
        assert_eq!(parse_handshake(14, &[]), TlsMessage::ServerHelloDone);
        assert_eq!(parse_handshake(16, &[0; 33]), TlsMessage::ClientKeyExchange);
        assert_eq!(
            parse_handshake(0x63, &[1, 2]),
            TlsMessage::OtherHandshake {
                msg_type: HandshakeType::Unknown(0x63),
                len: 2
            }
        );
        assert!(matches!(
            parse_handshake(11, &[0, 0]),
            TlsMessage::Malformed { .. }
        ));
        assert_eq!(
            parse_handshake(11, &[0, 0, 3, 0, 0, 0]),
            TlsMessage::Certificate {
                chain: vec![],
                undecodable: 1
            }
        );
    }

    #[test]
    fn cipher_names() {
        assert_eq!(
            CipherSuite::from_id(0x002f).name,
            "TLS_RSA_WITH_AES_128_CBC_SHA"
        );
        assert_eq!(CipherSuite::from_id(0xfefe).name, "unknown");
    }
}
