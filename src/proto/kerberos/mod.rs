//! Kerberos V5 (RFC 4120) as seen between a SQL client and its KDC: over UDP port 88 one
//! message per datagram, over TCP each message behind a 4-byte big-endian record marker
//! (RFC 4120 7.2.2). The DER itself is read by rusticata's `kerberos-parser`; this module
//! frames records, picks the message by its APPLICATION tag and keeps what a connection
//! diagnosis needs: which SPN a TGS-REQ asked for and whether the KDC refused it.
//!
//! ```text
//! AS-REQ [APPLICATION 10]  AS-REP [11]  TGS-REQ [12]  TGS-REP [13]  AP-REQ [14]  AP-REP [15]
//! KRB-ERROR [APPLICATION 30]
//! ```

use der_parser::asn1_rs::FromDer;
use kerberos_parser::krb5::{ApReq, KdcRep, KdcReq, KrbError, PrincipalName};
use kerberos_parser::krb5_parser::{parse_as_rep, parse_as_req, parse_tgs_rep, parse_tgs_req};

use crate::proto::ParseError;

/// Largest TCP record we hold. Windows caps a Kerberos token at MaxTokenSize (48,000 bytes
/// by default, 65,535 at most); a KDC reply carries one ticket with its PAC, so four times
/// the largest token leaves room without letting a length field claim gigabytes.
pub const MAX_TCP_RECORD: usize = 256 * 1024;

/// RFC 4120 7.2.2: the high bit of the record marker is reserved for extensions.
const RECORD_MARKER_RESERVED: u32 = 0x8000_0000;

/// KDCOptions bit 1 (RFC 4120 5.4.1): the client wants a forwardable ticket, which
/// delegation (a linked server, a double hop) needs.
const KDC_OPTION_FORWARDABLE: usize = 1;

/// A Kerberos message, reduced to the fields the facts stage records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KrbMessage {
    /// AS-REQ (RFC 4120 5.4.1): a client logs on and asks for a TGT.
    AsReq {
        cname: Option<String>,
        realm: String,
        sname: String,
    },
    /// AS-REP (RFC 4120 5.4.2).
    AsRep {
        crealm: String,
        cname: String,
        /// The ticket's service, normally `krbtgt/REALM`.
        sname: String,
    },
    /// TGS-REQ (RFC 4120 5.4.1): a service ticket for `sname`, e.g.
    /// `MSSQLSvc/host.domain:1433`.
    TgsReq {
        sname: String,
        realm: String,
        forwardable: bool,
    },
    /// TGS-REP (RFC 4120 5.4.2): the KDC issued the ticket.
    TgsRep {
        crealm: String,
        cname: String,
        sname: String,
    },
    /// AP-REQ (RFC 4120 5.5.1), as it appears inside SPNEGO: the ticket's service.
    ApReq { realm: String, sname: String },
    /// KRB-ERROR (RFC 4120 5.9.1).
    KrbError {
        error_code: i32,
        /// The RFC's name for the code (`KDC_ERR_S_PRINCIPAL_UNKNOWN`), or "UNKNOWN".
        name: &'static str,
        realm: String,
        sname: String,
        etext: Option<String>,
    },
    /// Another APPLICATION-tagged message (AP-REP, KRB-SAFE, KRB-PRIV, KRB-CRED, …).
    Other { tag: u8 },
}

/// Splits one Kerberos-over-TCP record off the front of a stream: `(message, rest)`.
pub fn split_tcp_record(stream: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let marker = match stream.get(..4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => {
            return Err(ParseError::Incomplete {
                needed: Some(4usize.saturating_sub(stream.len())),
            })
        }
    };
    if marker & RECORD_MARKER_RESERVED != 0 {
        return Err(ParseError::Malformed {
            what: "Kerberos TCP record marker with the reserved bit set",
            at: 0,
        });
    }
    let len = usize::try_from(marker).unwrap_or(usize::MAX);
    if len > MAX_TCP_RECORD {
        return Err(ParseError::TooLarge {
            what: "Kerberos TCP record",
            len,
            max: MAX_TCP_RECORD,
        });
    }
    let body = stream.get(4..).unwrap_or_default();
    match (body.get(..len), body.get(len..)) {
        (Some(message), Some(rest)) => Ok((message, rest)),
        _ => Err(ParseError::Incomplete {
            needed: Some(len.saturating_sub(body.len())),
        }),
    }
}

fn principal(p: &PrincipalName) -> String {
    p.name_string.join("/")
}

fn der_error<E>(what: &'static str) -> impl Fn(der_parser::nom::Err<E>) -> ParseError {
    move |e| match e {
        der_parser::nom::Err::Incomplete(_) => ParseError::Incomplete { needed: None },
        _ => ParseError::Malformed { what, at: 0 },
    }
}

fn from_kdc_req(req: &KdcReq<'_>, tgs: bool) -> KrbMessage {
    let body = &req.req_body;
    let sname = body.sname.as_ref().map(principal).unwrap_or_default();
    let realm = body.realm.0.clone();
    if tgs {
        KrbMessage::TgsReq {
            sname,
            realm,
            forwardable: body.kdc_options.is_set(KDC_OPTION_FORWARDABLE),
        }
    } else {
        KrbMessage::AsReq {
            cname: body.cname.as_ref().map(principal),
            realm,
            sname,
        }
    }
}

fn from_kdc_rep(rep: &KdcRep<'_>, tgs: bool) -> KrbMessage {
    let (crealm, cname, sname) = (
        rep.crealm.0.clone(),
        principal(&rep.cname),
        principal(&rep.ticket.sname),
    );
    if tgs {
        KrbMessage::TgsRep {
            crealm,
            cname,
            sname,
        }
    } else {
        KrbMessage::AsRep {
            crealm,
            cname,
            sname,
        }
    }
}

/// Parses one Kerberos message (a UDP datagram, or a record from [`split_tcp_record`]).
pub fn parse_krb(msg: &[u8]) -> Result<KrbMessage, ParseError> {
    let &first = msg
        .first()
        .ok_or(ParseError::Incomplete { needed: Some(1) })?;
    // APPLICATION class, constructed, low tag number: 0b011x_xxxx.
    if first & 0xE0 != 0x60 {
        return Err(ParseError::Malformed {
            what: "not a Kerberos message (no APPLICATION tag)",
            at: 0,
        });
    }
    let tag = first & 0x1F;
    Ok(match tag {
        10 => from_kdc_req(
            &parse_as_req(msg).map_err(der_error("Kerberos AS-REQ"))?.1,
            false,
        ),
        11 => from_kdc_rep(
            &parse_as_rep(msg).map_err(der_error("Kerberos AS-REP"))?.1,
            false,
        ),
        12 => from_kdc_req(
            &parse_tgs_req(msg).map_err(der_error("Kerberos TGS-REQ"))?.1,
            true,
        ),
        13 => from_kdc_rep(
            &parse_tgs_rep(msg).map_err(der_error("Kerberos TGS-REP"))?.1,
            true,
        ),
        14 => {
            let (_, ap) = ApReq::from_der(msg).map_err(der_error("Kerberos AP-REQ"))?;
            KrbMessage::ApReq {
                realm: ap.ticket.realm.0.clone(),
                sname: principal(&ap.ticket.sname),
            }
        }
        30 => {
            let (_, e) = KrbError::from_der(msg).map_err(der_error("Kerberos KRB-ERROR"))?;
            KrbMessage::KrbError {
                error_code: e.error_code.0,
                name: error_name(e.error_code.0),
                realm: e.realm.0.clone(),
                sname: principal(&e.sname),
                etext: e.etext.clone(),
            }
        }
        _ => KrbMessage::Other { tag },
    })
}

/// The RFC 4120 7.5.9 (and RFC 4556, 6113) name of a KRB-ERROR code.
pub fn error_name(code: i32) -> &'static str {
    match code {
        0 => "KDC_ERR_NONE",
        1 => "KDC_ERR_NAME_EXP",
        2 => "KDC_ERR_SERVICE_EXP",
        3 => "KDC_ERR_BAD_PVNO",
        4 => "KDC_ERR_C_OLD_MAST_KVNO",
        5 => "KDC_ERR_S_OLD_MAST_KVNO",
        6 => "KDC_ERR_C_PRINCIPAL_UNKNOWN",
        7 => "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        8 => "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
        9 => "KDC_ERR_NULL_KEY",
        10 => "KDC_ERR_CANNOT_POSTDATE",
        11 => "KDC_ERR_NEVER_VALID",
        12 => "KDC_ERR_POLICY",
        13 => "KDC_ERR_BADOPTION",
        14 => "KDC_ERR_ETYPE_NOSUPP",
        15 => "KDC_ERR_SUMTYPE_NOSUPP",
        16 => "KDC_ERR_PADATA_TYPE_NOSUPP",
        17 => "KDC_ERR_TRTYPE_NOSUPP",
        18 => "KDC_ERR_CLIENT_REVOKED",
        19 => "KDC_ERR_SERVICE_REVOKED",
        20 => "KDC_ERR_TGT_REVOKED",
        21 => "KDC_ERR_CLIENT_NOTYET",
        22 => "KDC_ERR_SERVICE_NOTYET",
        23 => "KDC_ERR_KEY_EXPIRED",
        24 => "KDC_ERR_PREAUTH_FAILED",
        25 => "KDC_ERR_PREAUTH_REQUIRED",
        26 => "KDC_ERR_SERVER_NOMATCH",
        27 => "KDC_ERR_MUST_USE_USER2USER",
        28 => "KDC_ERR_PATH_NOT_ACCEPTED",
        29 => "KDC_ERR_SVC_UNAVAILABLE",
        31 => "KRB_AP_ERR_BAD_INTEGRITY",
        32 => "KRB_AP_ERR_TKT_EXPIRED",
        33 => "KRB_AP_ERR_TKT_NYV",
        34 => "KRB_AP_ERR_REPEAT",
        35 => "KRB_AP_ERR_NOT_US",
        36 => "KRB_AP_ERR_BADMATCH",
        37 => "KRB_AP_ERR_SKEW",
        38 => "KRB_AP_ERR_BADADDR",
        39 => "KRB_AP_ERR_BADVERSION",
        40 => "KRB_AP_ERR_MSG_TYPE",
        41 => "KRB_AP_ERR_MODIFIED",
        42 => "KRB_AP_ERR_BADORDER",
        44 => "KRB_AP_ERR_BADKEYVER",
        45 => "KRB_AP_ERR_NOKEY",
        46 => "KRB_AP_ERR_MUT_FAIL",
        47 => "KRB_AP_ERR_BADDIRECTION",
        48 => "KRB_AP_ERR_METHOD",
        49 => "KRB_AP_ERR_BADSEQ",
        50 => "KRB_AP_ERR_INAPP_CKSUM",
        51 => "KRB_AP_PATH_NOT_ACCEPTED",
        52 => "KRB_ERR_RESPONSE_TOO_BIG",
        60 => "KRB_ERR_GENERIC",
        61 => "KRB_ERR_FIELD_TOOLONG",
        62 => "KDC_ERROR_CLIENT_NOT_TRUSTED",
        63 => "KDC_ERROR_KDC_NOT_TRUSTED",
        64 => "KDC_ERROR_INVALID_SIG",
        65 => "KDC_ERR_KEY_TOO_WEAK",
        66 => "KDC_ERR_CERTIFICATE_MISMATCH",
        67 => "KRB_AP_ERR_NO_TGT",
        68 => "KDC_ERR_WRONG_REALM",
        69 => "KRB_AP_ERR_USER_TO_USER_REQUIRED",
        70 => "KDC_ERR_CANT_VERIFY_CERTIFICATE",
        71 => "KDC_ERR_INVALID_CERTIFICATE",
        72 => "KDC_ERR_REVOKED_CERTIFICATE",
        73 => "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
        74 => "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
        75 => "KDC_ERR_CLIENT_NAME_MISMATCH",
        76 => "KDC_ERR_KDC_NAME_MISMATCH",
        90 => "KDC_ERR_PREAUTH_EXPIRED",
        91 => "KDC_ERR_MORE_PREAUTH_DATA_REQUIRED",
        93 => "KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    // Encoded by impacket's krb5.asn1 classes with src/proto/kerberos/fixtures.py (realm
    // CORP.EXAMPLE, client alice, service MSSQLSvc/sql01.corp.example:1433).
    /// TGS-REQ [APPLICATION 12] { pvno 5, msg-type 12, req-body { kdc-options
    /// forwardable|renewable|canonicalize (40 81 00 00), realm, sname NT-SRV-INST
    /// MSSQLSvc/sql01.corp.example:1433, till, nonce, etype 18 17 23 } } (no padata).
    const TGS_REQ: [u8; 132] = [
        0x6c, 0x81, 0x81, 0x30, 0x7f, 0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01, 0x0c,
        0xa4, 0x73, 0x30, 0x71, 0xa0, 0x07, 0x03, 0x05, 0x00, 0x40, 0x81, 0x00, 0x00, 0xa2, 0x0e,
        0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50, 0x4c, 0x45, 0xa3,
        0x2e, 0x30, 0x2c, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1, 0x25, 0x30, 0x23, 0x1b, 0x08, 0x4d,
        0x53, 0x53, 0x51, 0x4c, 0x53, 0x76, 0x63, 0x1b, 0x17, 0x73, 0x71, 0x6c, 0x30, 0x31, 0x2e,
        0x63, 0x6f, 0x72, 0x70, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x3a, 0x31, 0x34,
        0x33, 0x33, 0xa5, 0x11, 0x18, 0x0f, 0x32, 0x30, 0x33, 0x37, 0x30, 0x39, 0x31, 0x33, 0x30,
        0x32, 0x34, 0x38, 0x30, 0x35, 0x5a, 0xa7, 0x06, 0x02, 0x04, 0x00, 0xbc, 0x61, 0x4e, 0xa8,
        0x0b, 0x30, 0x09, 0x02, 0x01, 0x12, 0x02, 0x01, 0x11, 0x02, 0x01, 0x17,
    ];

    /// The same TGS-REQ with kdc-options renewable|canonicalize (00 81 00 00).
    const TGS_REQ_NOT_FORWARDABLE: [u8; 132] = [
        0x6c, 0x81, 0x81, 0x30, 0x7f, 0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01, 0x0c,
        0xa4, 0x73, 0x30, 0x71, 0xa0, 0x07, 0x03, 0x05, 0x00, 0x00, 0x81, 0x00, 0x00, 0xa2, 0x0e,
        0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50, 0x4c, 0x45, 0xa3,
        0x2e, 0x30, 0x2c, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1, 0x25, 0x30, 0x23, 0x1b, 0x08, 0x4d,
        0x53, 0x53, 0x51, 0x4c, 0x53, 0x76, 0x63, 0x1b, 0x17, 0x73, 0x71, 0x6c, 0x30, 0x31, 0x2e,
        0x63, 0x6f, 0x72, 0x70, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x3a, 0x31, 0x34,
        0x33, 0x33, 0xa5, 0x11, 0x18, 0x0f, 0x32, 0x30, 0x33, 0x37, 0x30, 0x39, 0x31, 0x33, 0x30,
        0x32, 0x34, 0x38, 0x30, 0x35, 0x5a, 0xa7, 0x06, 0x02, 0x04, 0x00, 0xbc, 0x61, 0x4e, 0xa8,
        0x0b, 0x30, 0x09, 0x02, 0x01, 0x12, 0x02, 0x01, 0x11, 0x02, 0x01, 0x17,
    ];

    /// AS-REQ [APPLICATION 10] for krbtgt/CORP.EXAMPLE, cname alice, forwardable.
    const AS_REQ: [u8; 140] = [
        0x6a, 0x81, 0x89, 0x30, 0x81, 0x86, 0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01,
        0x0a, 0xa4, 0x7a, 0x30, 0x78, 0xa0, 0x07, 0x03, 0x05, 0x00, 0x40, 0x00, 0x00, 0x00, 0xa1,
        0x12, 0x30, 0x10, 0xa0, 0x03, 0x02, 0x01, 0x01, 0xa1, 0x09, 0x30, 0x07, 0x1b, 0x05, 0x61,
        0x6c, 0x69, 0x63, 0x65, 0xa2, 0x0e, 0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58,
        0x41, 0x4d, 0x50, 0x4c, 0x45, 0xa3, 0x21, 0x30, 0x1f, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1,
        0x18, 0x30, 0x16, 0x1b, 0x06, 0x6b, 0x72, 0x62, 0x74, 0x67, 0x74, 0x1b, 0x0c, 0x43, 0x4f,
        0x52, 0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50, 0x4c, 0x45, 0xa5, 0x11, 0x18, 0x0f, 0x32,
        0x30, 0x33, 0x37, 0x30, 0x39, 0x31, 0x33, 0x30, 0x32, 0x34, 0x38, 0x30, 0x35, 0x5a, 0xa7,
        0x06, 0x02, 0x04, 0x00, 0xbc, 0x61, 0x4e, 0xa8, 0x0b, 0x30, 0x09, 0x02, 0x01, 0x12, 0x02,
        0x01, 0x11, 0x02, 0x01, 0x17,
    ];

    /// AS-REP [APPLICATION 11]: crealm, cname alice, ticket for krbtgt/CORP.EXAMPLE.
    const AS_REP: [u8; 177] = [
        0x6b, 0x81, 0xae, 0x30, 0x81, 0xab, 0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02, 0x01,
        0x0b, 0xa3, 0x0e, 0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50,
        0x4c, 0x45, 0xa4, 0x12, 0x30, 0x10, 0xa0, 0x03, 0x02, 0x01, 0x01, 0xa1, 0x09, 0x30, 0x07,
        0x1b, 0x05, 0x61, 0x6c, 0x69, 0x63, 0x65, 0xa5, 0x5e, 0x61, 0x5c, 0x30, 0x5a, 0xa0, 0x03,
        0x02, 0x01, 0x05, 0xa1, 0x0e, 0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41,
        0x4d, 0x50, 0x4c, 0x45, 0xa2, 0x21, 0x30, 0x1f, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1, 0x18,
        0x30, 0x16, 0x1b, 0x06, 0x6b, 0x72, 0x62, 0x74, 0x67, 0x74, 0x1b, 0x0c, 0x43, 0x4f, 0x52,
        0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50, 0x4c, 0x45, 0xa3, 0x20, 0x30, 0x1e, 0xa0, 0x03,
        0x02, 0x01, 0x12, 0xa1, 0x03, 0x02, 0x01, 0x02, 0xa2, 0x12, 0x04, 0x10, 0xaa, 0xaa, 0xaa,
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xa6, 0x1b,
        0x30, 0x19, 0xa0, 0x03, 0x02, 0x01, 0x12, 0xa2, 0x12, 0x04, 0x10, 0xbb, 0xbb, 0xbb, 0xbb,
        0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb,
    ];

    /// TGS-REP [APPLICATION 13]: ticket for MSSQLSvc/sql01.corp.example:1433.
    const TGS_REP: [u8; 190] = [
        0x6d, 0x81, 0xbb, 0x30, 0x81, 0xb8, 0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02, 0x01,
        0x0d, 0xa3, 0x0e, 0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50,
        0x4c, 0x45, 0xa4, 0x12, 0x30, 0x10, 0xa0, 0x03, 0x02, 0x01, 0x01, 0xa1, 0x09, 0x30, 0x07,
        0x1b, 0x05, 0x61, 0x6c, 0x69, 0x63, 0x65, 0xa5, 0x6b, 0x61, 0x69, 0x30, 0x67, 0xa0, 0x03,
        0x02, 0x01, 0x05, 0xa1, 0x0e, 0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41,
        0x4d, 0x50, 0x4c, 0x45, 0xa2, 0x2e, 0x30, 0x2c, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1, 0x25,
        0x30, 0x23, 0x1b, 0x08, 0x4d, 0x53, 0x53, 0x51, 0x4c, 0x53, 0x76, 0x63, 0x1b, 0x17, 0x73,
        0x71, 0x6c, 0x30, 0x31, 0x2e, 0x63, 0x6f, 0x72, 0x70, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70,
        0x6c, 0x65, 0x3a, 0x31, 0x34, 0x33, 0x33, 0xa3, 0x20, 0x30, 0x1e, 0xa0, 0x03, 0x02, 0x01,
        0x12, 0xa1, 0x03, 0x02, 0x01, 0x02, 0xa2, 0x12, 0x04, 0x10, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa,
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xa6, 0x1b, 0x30, 0x19,
        0xa0, 0x03, 0x02, 0x01, 0x12, 0xa2, 0x12, 0x04, 0x10, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb,
        0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb, 0xbb,
    ];

    /// KRB-ERROR [APPLICATION 30], error-code 7 (no account has the SPN), realm,
    /// sname MSSQLSvc/sql01.corp.example:1433.
    const KRB_ERROR_S_PRINCIPAL_UNKNOWN: [u8; 107] = [
        0x7e, 0x69, 0x30, 0x67, 0xa0, 0x03, 0x02, 0x01, 0x05, 0xa1, 0x03, 0x02, 0x01, 0x1e, 0xa4,
        0x11, 0x18, 0x0f, 0x32, 0x30, 0x32, 0x36, 0x31, 0x31, 0x32, 0x34, 0x31, 0x32, 0x30, 0x30,
        0x30, 0x30, 0x5a, 0xa5, 0x03, 0x02, 0x01, 0x2a, 0xa6, 0x03, 0x02, 0x01, 0x07, 0xa9, 0x0e,
        0x1b, 0x0c, 0x43, 0x4f, 0x52, 0x50, 0x2e, 0x45, 0x58, 0x41, 0x4d, 0x50, 0x4c, 0x45, 0xaa,
        0x2e, 0x30, 0x2c, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1, 0x25, 0x30, 0x23, 0x1b, 0x08, 0x4d,
        0x53, 0x53, 0x51, 0x4c, 0x53, 0x76, 0x63, 0x1b, 0x17, 0x73, 0x71, 0x6c, 0x30, 0x31, 0x2e,
        0x63, 0x6f, 0x72, 0x70, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x3a, 0x31, 0x34,
        0x33, 0x33,
    ];
    const SPN: &str = "MSSQLSvc/sql01.corp.example:1433";

    #[test]
    fn tgs_req_names_the_spn_and_forwardable() {
        assert_eq!(
            parse_krb(&TGS_REQ).unwrap(),
            KrbMessage::TgsReq {
                sname: SPN.into(),
                realm: "CORP.EXAMPLE".into(),
                forwardable: true
            }
        );
        assert!(matches!(
            parse_krb(&TGS_REQ_NOT_FORWARDABLE).unwrap(),
            KrbMessage::TgsReq {
                forwardable: false,
                ..
            }
        ));
    }

    #[test]
    fn as_exchange() {
        assert_eq!(
            parse_krb(&AS_REQ).unwrap(),
            KrbMessage::AsReq {
                cname: Some("alice".into()),
                realm: "CORP.EXAMPLE".into(),
                sname: "krbtgt/CORP.EXAMPLE".into()
            }
        );
        assert_eq!(
            parse_krb(&AS_REP).unwrap(),
            KrbMessage::AsRep {
                crealm: "CORP.EXAMPLE".into(),
                cname: "alice".into(),
                sname: "krbtgt/CORP.EXAMPLE".into()
            }
        );
    }

    #[test]
    fn tgs_rep_and_error() {
        assert_eq!(
            parse_krb(&TGS_REP).unwrap(),
            KrbMessage::TgsRep {
                crealm: "CORP.EXAMPLE".into(),
                cname: "alice".into(),
                sname: SPN.into()
            }
        );
        assert_eq!(
            parse_krb(&KRB_ERROR_S_PRINCIPAL_UNKNOWN).unwrap(),
            KrbMessage::KrbError {
                error_code: 7,
                name: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
                realm: "CORP.EXAMPLE".into(),
                sname: SPN.into(),
                etext: None
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        for fixture in [
            &TGS_REQ[..],
            &AS_REQ,
            &AS_REP,
            &TGS_REP,
            &KRB_ERROR_S_PRINCIPAL_UNKNOWN,
        ] {
            for n in 0..fixture.len() {
                assert!(parse_krb(&fixture[..n]).is_err(), "cut at {n}");
            }
        }
    }

    #[test]
    fn other_and_foreign_first_bytes() {
        assert_eq!(
            parse_krb(&[0x6f, 0x00]).unwrap(),
            KrbMessage::Other { tag: 15 }
        );
        assert!(matches!(
            parse_krb(&[0x30, 0x00]),
            Err(ParseError::Malformed { .. })
        ));
        assert!(parse_krb(&[]).is_err());
    }

    #[test]
    fn tcp_record_marker() {
        let mut stream = (TGS_REQ.len() as u32).to_be_bytes().to_vec();
        stream.extend_from_slice(&TGS_REQ);
        stream.extend_from_slice(&[0, 0]);
        let (msg, rest) = split_tcp_record(&stream).unwrap();
        assert_eq!(msg, &TGS_REQ[..]);
        assert_eq!(
            split_tcp_record(rest),
            Err(ParseError::Incomplete { needed: Some(2) })
        );
        assert_eq!(
            split_tcp_record(&stream[..10]),
            Err(ParseError::Incomplete {
                needed: Some(TGS_REQ.len() - 6)
            })
        );
        assert!(matches!(
            split_tcp_record(&[0x80, 0, 0, 1, 0]),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            split_tcp_record(&[0x7f, 0xff, 0xff, 0xff]),
            Err(ParseError::TooLarge { .. })
        ));
    }

    #[test]
    fn error_names_agree_with_kerberos_parser() {
        for code in 0..100 {
            let theirs = format!("{:?}", kerberos_parser::krb5::ErrorCode(code));
            let ours = error_name(code);
            if !theirs.starts_with("ErrorCode") {
                assert_eq!(ours, theirs, "code {code}");
            }
        }
        assert_eq!(error_name(-1), "UNKNOWN");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_krb(&data);
            if let Ok((m, rest)) = split_tcp_record(&data) {
                proptest::prop_assert_eq!(m.len() + rest.len() + 4, data.len());
            }
        }

        #[test]
        fn mutated_tgs_req_never_panics(at in 0usize..132, v in proptest::num::u8::ANY) {
            let mut b = TGS_REQ;
            b[at] = v;
            let _ = parse_krb(&b);
        }
    }
}
