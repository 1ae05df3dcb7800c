//! TLS as SQL Server carries it: inside TDS PRELOGIN packets (TDS 7.x) or first on the wire with
//! ALPN `tds/8.0` (TDS 8.0 strict). The session strips the TDS headers and hands complete TLS
//! records here. Nothing is decrypted: records after ChangeCipherSpec (and every TLS 1.3
//! handshake message after ServerHello) are reported by length only.
//!
//! Message bodies are decoded with `tls-parser` (rusticata) and certificates with `x509-parser`;
//! the record envelope, handshake framing and reassembly are ours so that every length is
//! checked against our own ceilings first.

mod alert;
mod certificate;
mod handshake;
mod reassembly;
mod record;

pub use alert::{alert_description_name, Alert, AlertLevel};
pub use certificate::{
    host_matches, parse_certificate, CertInfo, Validity, SQL_SERVER_FALLBACK_CN,
};
pub use handshake::{
    parse_handshake, CipherSuite, ClientHello, HandshakeType, ServerHello, TlsMessage, ALPN_TDS8,
};
pub use reassembly::{HandshakeReassembler, MAX_HANDSHAKE_MESSAGE};
pub use record::{
    parse_record, parse_records, ContentType, TlsFlow, TlsRecord, TlsRecordInfo, MAX_RECORD_LEN,
    RECORD_HEADER_LEN,
};

/// The protocol version's usual name ("TLS 1.2"), "SSL 3.0" for 0x0300, "unknown" otherwise.
pub fn version_name(version: u16) -> &'static str {
    match version {
        0x0200 => "SSL 2.0",
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        0x7f00..=0x7fff => "TLS 1.3 draft",
        v if is_grease(v) => "GREASE",
        _ => "unknown",
    }
}

/// True for versions older than TLS 1.2, which current SQL Server and client builds refuse
/// (RFC 8996 deprecates TLS 1.0 and 1.1).
pub fn is_legacy(version: u16) -> bool {
    matches!(version, 0x0200..=0x0302)
}

/// RFC 8701 GREASE values (0x0A0A, 0x1A1A, … 0xFAFA): placeholders clients sprinkle among their
/// versions and cipher suites, never chosen.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        assert_eq!(version_name(0x0301), "TLS 1.0");
        assert_eq!(version_name(0x0303), "TLS 1.2");
        assert_eq!(version_name(0x0304), "TLS 1.3");
        assert_eq!(version_name(0x0300), "SSL 3.0");
        assert_eq!(version_name(0x1a1a), "GREASE");
        assert_eq!(version_name(0x1234), "unknown");
        assert!(is_legacy(0x0301) && is_legacy(0x0302) && is_legacy(0x0300));
        assert!(!is_legacy(0x0303) && !is_legacy(0x0304));
        assert!(is_grease(0xfafa) && !is_grease(0x0a0b));
    }
}
