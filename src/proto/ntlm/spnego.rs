//! GSS-API framing (RFC 2743 3.1), SPNEGO (RFC 4178 4.2, MS-SPNG 2.2) and the Kerberos tokens
//! inside it (RFC 4121 4.1: AP-REQ, AP-REP, KRB-ERROR), walked with bounded DER.
//!
//! ```text
//! InitialContextToken ::= [APPLICATION 0] IMPLICIT SEQUENCE { thisMech OID, innerContextToken }
//! NegotiationToken ::= CHOICE { negTokenInit [0] NegTokenInit, negTokenResp [1] NegTokenResp }
//! NegTokenInit ::= SEQUENCE { mechTypes [0] SEQUENCE OF OID, reqFlags [1], mechToken [2] OCTET
//!                             STRING, mechListMIC [3] (negHints [3] in MS-SPNG's NegTokenInit2) }
//! NegTokenResp ::= SEQUENCE { negState [0] ENUMERATED, supportedMech [1] OID,
//!                             responseToken [2] OCTET STRING, mechListMIC [3] OCTET STRING }
//! Kerberos inner token: TOK_ID (2: 01 00 AP-REQ, 02 00 AP-REP, 03 00 KRB-ERROR) then the message
//! ```

use super::der::{self, Tlv};
use super::ntlmssp::{is_ntlmssp, parse_ntlmssp, NtlmMessage};

/// A security mechanism named by OID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mech {
    /// 1.2.840.113554.1.2.2
    Kerberos,
    /// 1.2.840.48018.1.2.2, Microsoft's historical Kerberos OID, listed first by Windows.
    MsKerberos,
    /// 1.2.840.113554.1.2.2.3
    KerberosUser2User,
    /// 1.3.6.1.4.1.311.2.2.10
    Ntlmssp,
    /// 1.3.6.1.4.1.311.2.2.30
    Negoex,
    /// 1.3.6.1.5.5.2
    Spnego,
    /// Any other OID, dotted.
    Other(String),
}

impl Mech {
    fn from_oid(value: &[u8]) -> Mech {
        let text = der::oid_text(value).unwrap_or_default();
        match text.as_str() {
            "1.2.840.113554.1.2.2" => Mech::Kerberos,
            "1.2.840.48018.1.2.2" => Mech::MsKerberos,
            "1.2.840.113554.1.2.2.3" => Mech::KerberosUser2User,
            "1.3.6.1.4.1.311.2.2.10" => Mech::Ntlmssp,
            "1.3.6.1.4.1.311.2.2.30" => Mech::Negoex,
            "1.3.6.1.5.5.2" => Mech::Spnego,
            _ => Mech::Other(text),
        }
    }

    /// A short label: "kerberos", "ms-kerberos", "ntlmssp", … or the dotted OID.
    pub fn name(&self) -> &str {
        match self {
            Mech::Kerberos => "kerberos",
            Mech::MsKerberos => "ms-kerberos",
            Mech::KerberosUser2User => "kerberos-u2u",
            Mech::Ntlmssp => "ntlmssp",
            Mech::Negoex => "negoex",
            Mech::Spnego => "spnego",
            Mech::Other(oid) => oid,
        }
    }

    pub fn is_kerberos(&self) -> bool {
        matches!(
            self,
            Mech::Kerberos | Mech::MsKerberos | Mech::KerberosUser2User
        )
    }
}

/// negState (RFC 4178 4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegState {
    AcceptCompleted,
    AcceptIncomplete,
    Reject,
    RequestMic,
    Unknown(i64),
}

/// NegTokenInit (RFC 4178 4.2.1), the client's first token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NegTokenInit {
    /// In the client's order of preference.
    pub mech_types: Vec<Mech>,
    /// The optimistic token for the first mechanism.
    pub mech_token: Option<Box<SecurityBlob>>,
}

/// NegTokenResp (RFC 4178 4.2.2), every later token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NegTokenResp {
    pub neg_state: Option<NegState>,
    pub supported_mech: Option<Mech>,
    pub response_token: Option<Box<SecurityBlob>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spnego {
    Init(NegTokenInit),
    Resp(NegTokenResp),
}

/// The service ticket a client presents (RFC 4120 5.5.1, ticket 5.3): the realm and service
/// principal are in clear even though the rest is encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosApReq {
    pub realm: Option<String>,
    /// The ticket's sname joined with '/': `MSSQLSvc/sql1.corp.example:1433`.
    pub spn: Option<String>,
}

/// KRB-ERROR (RFC 4120 5.9.1) as a GSS token: a server refusing the AP-REQ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosError {
    pub error_code: i64,
    pub realm: Option<String>,
    pub spn: Option<String>,
}

impl KerberosError {
    /// The RFC 4120 7.5.9 name of the code ("KRB_AP_ERR_MODIFIED"), "unknown" otherwise.
    pub fn name(&self) -> &'static str {
        krb_error_name(self.error_code)
    }
}

/// Names of the error codes a server or KDC gives for SQL Server logins (RFC 4120 7.5.9).
pub fn krb_error_name(code: i64) -> &'static str {
    match code {
        6 => "KDC_ERR_C_PRINCIPAL_UNKNOWN",
        7 => "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        14 => "KDC_ERR_ETYPE_NOSUPP",
        18 => "KDC_ERR_CLIENT_REVOKED",
        23 => "KDC_ERR_KEY_EXPIRED",
        24 => "KDC_ERR_PREAUTH_FAILED",
        25 => "KDC_ERR_PREAUTH_REQUIRED",
        31 => "KRB_AP_ERR_BAD_INTEGRITY",
        32 => "KRB_AP_ERR_TKT_EXPIRED",
        33 => "KRB_AP_ERR_TKT_NYV",
        34 => "KRB_AP_ERR_REPEAT",
        35 => "KRB_AP_ERR_NOT_US",
        36 => "KRB_AP_ERR_BADMATCH",
        37 => "KRB_AP_ERR_SKEW",
        41 => "KRB_AP_ERR_MODIFIED",
        52 => "KRB_ERR_RESPONSE_TOO_BIG",
        60 => "KRB_ERR_GENERIC",
        68 => "KDC_ERR_WRONG_REALM",
        _ => "unknown",
    }
}

/// What an SSPI blob holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecurityBlob {
    /// Boxed: an AUTHENTICATE is several times larger than the other variants.
    Ntlm(Box<NtlmMessage>),
    Spnego(Spnego),
    KerberosApReq(KerberosApReq),
    /// The server's mutual-authentication answer (contents encrypted).
    KerberosApRep,
    KerberosError(KerberosError),
    /// Recognised framing whose contents did not decode.
    Malformed {
        what: &'static str,
    },
    Unknown,
}

impl SecurityBlob {
    /// The NTLM message, directly or as the SPNEGO mech/response token.
    pub fn ntlm(&self) -> Option<&NtlmMessage> {
        match self {
            SecurityBlob::Ntlm(m) => Some(m),
            SecurityBlob::Spnego(Spnego::Init(i)) => i.mech_token.as_deref()?.ntlm(),
            SecurityBlob::Spnego(Spnego::Resp(r)) => r.response_token.as_deref()?.ntlm(),
            _ => None,
        }
    }

    /// The Kerberos AP-REQ, directly or inside SPNEGO.
    pub fn kerberos_ap_req(&self) -> Option<&KerberosApReq> {
        match self {
            SecurityBlob::KerberosApReq(a) => Some(a),
            SecurityBlob::Spnego(Spnego::Init(i)) => i.mech_token.as_deref()?.kerberos_ap_req(),
            SecurityBlob::Spnego(Spnego::Resp(r)) => r.response_token.as_deref()?.kerberos_ap_req(),
            _ => None,
        }
    }
}

/// SPNEGO tokens nest a mechanism token, never deeper in practice; a little slack, no more.
const MAX_DEPTH: u8 = 3;

/// Decodes an SSPI blob. Never fails: what it does not recognise is `Unknown`.
pub fn parse_security_blob(buf: &[u8]) -> SecurityBlob {
    parse_blob(buf, 0)
}

fn parse_blob(buf: &[u8], depth: u8) -> SecurityBlob {
    if depth > MAX_DEPTH {
        return SecurityBlob::Unknown;
    }
    if is_ntlmssp(buf) {
        return match parse_ntlmssp(buf) {
            Ok(m) => SecurityBlob::Ntlm(Box::new(m)),
            Err(_) => SecurityBlob::Malformed { what: "NTLMSSP" },
        };
    }
    let Some((tlv, _)) = der::read_tlv(buf) else {
        return SecurityBlob::Unknown;
    };
    match tlv.tag {
        t if t == der::application(0) => parse_initial_context_token(tlv.value, depth),
        t if t == der::context(0) || t == der::context(1) => negotiation_token(tlv, depth),
        t if t == der::application(14) => ap_req(tlv.value),
        t if t == der::application(15) => SecurityBlob::KerberosApRep,
        t if t == der::application(30) => krb_error(tlv.value),
        _ => SecurityBlob::Unknown,
    }
}

fn parse_initial_context_token(value: &[u8], depth: u8) -> SecurityBlob {
    let Some((oid, inner)) = der::expect(value, der::OID) else {
        return SecurityBlob::Malformed {
            what: "GSS-API token without mechanism OID",
        };
    };
    match Mech::from_oid(oid) {
        Mech::Spnego => match der::read_tlv(inner) {
            Some((tlv, _)) => negotiation_token(tlv, depth),
            None => SecurityBlob::Malformed { what: "SPNEGO" },
        },
        m if m.is_kerberos() => kerberos_inner(inner),
        Mech::Ntlmssp => parse_blob(inner, depth + 1),
        _ => SecurityBlob::Unknown,
    }
}

/// RFC 4121 4.1: TOK_ID then the Kerberos message.
fn kerberos_inner(inner: &[u8]) -> SecurityBlob {
    let Some((tok_id, msg)) = inner.split_at_checked(2) else {
        return SecurityBlob::Malformed {
            what: "Kerberos GSS token",
        };
    };
    let Some((tlv, _)) = der::read_tlv(msg) else {
        return SecurityBlob::Malformed {
            what: "Kerberos GSS token",
        };
    };
    match (tok_id, tlv.tag) {
        ([0x01, 0x00], 0x6e) => ap_req(tlv.value),
        ([0x02, 0x00], 0x6f) => SecurityBlob::KerberosApRep,
        ([0x03, 0x00], 0x7e) => krb_error(tlv.value),
        _ => SecurityBlob::Malformed {
            what: "Kerberos GSS token",
        },
    }
}

fn negotiation_token(tlv: Tlv<'_>, depth: u8) -> SecurityBlob {
    let Some((seq, _)) = der::expect(tlv.value, der::SEQUENCE) else {
        return SecurityBlob::Malformed { what: "SPNEGO" };
    };
    let inner = |v: &[u8]| {
        der::expect(v, der::OCTET_STRING).map(|(token, _)| Box::new(parse_blob(token, depth + 1)))
    };
    if tlv.tag == der::context(0) {
        let mech_types = der::field(seq, 0)
            .and_then(|v| der::expect(v, der::SEQUENCE))
            .map(|(list, _)| {
                der::items(list)
                    .filter(|t| t.tag == der::OID)
                    .map(|t| Mech::from_oid(t.value))
                    .collect()
            })
            .unwrap_or_default();
        SecurityBlob::Spnego(Spnego::Init(NegTokenInit {
            mech_types,
            mech_token: der::field(seq, 2).and_then(inner),
        }))
    } else {
        let neg_state = der::field(seq, 0)
            .and_then(|v| der::expect(v, der::ENUMERATED))
            .and_then(|(v, _)| der::integer(v))
            .map(|n| match n {
                0 => NegState::AcceptCompleted,
                1 => NegState::AcceptIncomplete,
                2 => NegState::Reject,
                3 => NegState::RequestMic,
                other => NegState::Unknown(other),
            });
        SecurityBlob::Spnego(Spnego::Resp(NegTokenResp {
            neg_state,
            supported_mech: der::field(seq, 1)
                .and_then(|v| der::expect(v, der::OID))
                .map(|(oid, _)| Mech::from_oid(oid)),
            response_token: der::field(seq, 2).and_then(inner),
        }))
    }
}

/// PrincipalName ::= SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF
/// KerberosString } (RFC 4120 5.2.2), joined with '/'.
fn principal(value: &[u8]) -> Option<String> {
    let (seq, _) = der::expect(value, der::SEQUENCE)?;
    let (names, _) = der::expect(der::field(seq, 1)?, der::SEQUENCE)?;
    let parts: Vec<String> = der::items(names)
        .filter(|t| t.tag == der::GENERAL_STRING)
        .map(|t| String::from_utf8_lossy(t.value).into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn realm(value: &[u8]) -> Option<String> {
    der::expect(value, der::GENERAL_STRING).map(|(r, _)| String::from_utf8_lossy(r).into_owned())
}

/// AP-REQ ::= [APPLICATION 14] SEQUENCE { pvno [0], msg-type [1], ap-options [2],
/// ticket [3] Ticket, authenticator [4] } and Ticket ::= [APPLICATION 1] SEQUENCE {
/// tkt-vno [0], realm [1], sname [2], enc-part [3] } (RFC 4120 5.5.1, 5.3).
fn ap_req(value: &[u8]) -> SecurityBlob {
    let ticket = der::expect(value, der::SEQUENCE)
        .and_then(|(seq, _)| der::field(seq, 3))
        .and_then(|t| der::expect(t, der::application(1)))
        .and_then(|(t, _)| der::expect(t, der::SEQUENCE))
        .map(|(t, _)| t);
    match ticket {
        Some(t) => SecurityBlob::KerberosApReq(KerberosApReq {
            realm: der::field(t, 1).and_then(realm),
            spn: der::field(t, 2).and_then(principal),
        }),
        None => SecurityBlob::Malformed {
            what: "Kerberos AP-REQ",
        },
    }
}

/// KRB-ERROR ::= [APPLICATION 30] SEQUENCE { …, error-code [6] Int32, …, realm [9],
/// sname [10], … } (RFC 4120 5.9.1).
fn krb_error(value: &[u8]) -> SecurityBlob {
    let Some((seq, _)) = der::expect(value, der::SEQUENCE) else {
        return SecurityBlob::Malformed { what: "KRB-ERROR" };
    };
    let code = der::field(seq, 6)
        .and_then(|v| der::expect(v, der::INTEGER))
        .and_then(|(v, _)| der::integer(v));
    match code {
        Some(error_code) => SecurityBlob::KerberosError(KerberosError {
            error_code,
            realm: der::field(seq, 9).and_then(realm),
            spn: der::field(seq, 10).and_then(principal),
        }),
        None => SecurityBlob::Malformed { what: "KRB-ERROR" },
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::proto::ntlm::ntlmssp::tests::{CHALLENGE, NEGOTIATE};

    /// The SMB Session Setup security blob of frame 16 of
    /// tds7-sspi-ntlm-ipv6-synthetic_arkime_ntlm_synthetic.pcap: SPNEGO NegTokenInit offering
    /// NTLMSSP, with the NEGOTIATE as optimistic token.
    const SPNEGO_INIT_NTLM: [u8; 87] = [
        0x60, 0x55, /* [APPLICATION 0], 85 bytes */
        0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, /* OID 1.3.6.1.5.5.2 (SPNEGO) */
        0xa0, 0x4b, /* [0] negTokenInit, 75 */
        0x30, 0x49, /* SEQUENCE, 73 */
        0xa0, 0x0e, /* [0] mechTypes, 14 */
        0x30, 0x0c, /* SEQUENCE OF, 12 */
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02,
        0x0a, /* OID 1.3.6.1.4.1.311.2.2.10 (NTLMSSP) */
        0xa2, 0x37, /* [2] mechToken, 55 */
        0x04, 0x35, /* OCTET STRING, 53 */
        0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, /* NTLMSSP\0 */
        0x01, 0x00, 0x00, 0x00, /* type 1 */
        0x07, 0x02, 0x00, 0x02, /* flags 0x02000207 */
        0x06, 0x00, 0x06, 0x00, 0x28, 0x00, 0x00, 0x00, /* domain: 6 at 0x28 */
        0x07, 0x00, 0x07, 0x00, 0x2e, 0x00, 0x00, 0x00, /* workstation: 7 at 0x2e */
        0x0a, 0x00, 0x7c, 0x4f, 0x00, 0x00, 0x00, 0x0f, /* version 10.0.20348 */
        0x53, 0x50, 0x4e, 0x44, 0x4f, 0x4d, /* SPNDOM */
        0x53, 0x50, 0x4e, 0x48, 0x4f, 0x53, 0x54, /* SPNHOST */
    ];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let len = content.len();
        if len < 0x80 {
            v.push(len as u8);
        } else if len < 0x100 {
            v.extend_from_slice(&[0x81, len as u8]);
        } else {
            v.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
        v.extend_from_slice(content);
        v
    }

    const OID_SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
    const OID_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
    const OID_MS_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
    const OID_NTLMSSP: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];

    fn principal_name(parts: &[&str]) -> Vec<u8> {
        let names: Vec<u8> = parts.iter().flat_map(|p| tlv(0x1b, p.as_bytes())).collect();
        let seq = [tlv(0xa0, &tlv(0x02, &[2])), tlv(0xa1, &tlv(0x30, &names))].concat();
        tlv(0x30, &seq)
    }

    /// A GSS-wrapped AP-REQ (RFC 4121 4.1) for `MSSQLSvc/sql1.corp.example:1433` in
    /// CORP.EXAMPLE, with a 600-byte encrypted part so that lengths take the long form.
    fn gss_ap_req() -> Vec<u8> {
        let enc_part = tlv(
            0x30,
            &[
                tlv(0xa0, &tlv(0x02, &[18])),
                tlv(0xa2, &tlv(0x04, &[0x5a; 600])),
            ]
            .concat(),
        );
        let ticket_seq = [
            tlv(0xa0, &tlv(0x02, &[5])),
            tlv(0xa1, &tlv(0x1b, b"CORP.EXAMPLE")),
            tlv(
                0xa2,
                &principal_name(&["MSSQLSvc", "sql1.corp.example:1433"]),
            ),
            tlv(0xa3, &enc_part),
        ]
        .concat();
        let ticket = tlv(0x61, &tlv(0x30, &ticket_seq));
        let ap_req_seq = [
            tlv(0xa0, &tlv(0x02, &[5])),
            tlv(0xa1, &tlv(0x02, &[14])),
            tlv(0xa2, &tlv(0x03, &[0, 0x20, 0, 0, 0])),
            tlv(0xa3, &ticket),
            tlv(0xa4, &enc_part),
        ]
        .concat();
        let ap_req = tlv(0x6e, &tlv(0x30, &ap_req_seq));
        tlv(
            0x60,
            &[tlv(0x06, OID_KRB5), vec![0x01, 0x00], ap_req].concat(),
        )
    }

    fn spnego_init(mechs: &[&[u8]], token: &[u8]) -> Vec<u8> {
        let list: Vec<u8> = mechs.iter().flat_map(|m| tlv(0x06, m)).collect();
        let seq = [tlv(0xa0, &tlv(0x30, &list)), tlv(0xa2, &tlv(0x04, token))].concat();
        tlv(
            0x60,
            &[tlv(0x06, OID_SPNEGO), tlv(0xa0, &tlv(0x30, &seq))].concat(),
        )
    }

    fn spnego_resp(state: u8, mech: Option<&[u8]>, token: Option<&[u8]>) -> Vec<u8> {
        let mut seq = tlv(0xa0, &tlv(0x0a, &[state]));
        if let Some(m) = mech {
            seq.extend(tlv(0xa1, &tlv(0x06, m)));
        }
        if let Some(t) = token {
            seq.extend(tlv(0xa2, &tlv(0x04, t)));
        }
        tlv(0xa1, &tlv(0x30, &seq))
    }

    #[test]
    fn real_spnego_init_with_ntlm() {
        let blob = parse_security_blob(&SPNEGO_INIT_NTLM);
        let SecurityBlob::Spnego(Spnego::Init(init)) = &blob else {
            panic!("{blob:?}");
        };
        assert_eq!(init.mech_types, vec![Mech::Ntlmssp]);
        let Some(NtlmMessage::Negotiate(n)) = blob.ntlm() else {
            panic!("{blob:?}");
        };
        assert_eq!(n.domain.as_deref(), Some("SPNDOM"));
        assert_eq!(n.workstation.as_deref(), Some("SPNHOST"));
        assert_eq!(n.version.unwrap().build, 20348);
    }

    #[test]
    fn bare_ntlm() {
        assert!(matches!(
            parse_security_blob(&NEGOTIATE).ntlm(),
            Some(NtlmMessage::Negotiate(_))
        ));
        assert_eq!(
            parse_security_blob(&NEGOTIATE[..10]),
            SecurityBlob::Malformed { what: "NTLMSSP" }
        );
    }

    #[test]
    fn kerberos_in_spnego_gives_realm_and_spn() {
        let blob = parse_security_blob(&spnego_init(
            &[OID_MS_KRB5, OID_KRB5, OID_NTLMSSP],
            &gss_ap_req(),
        ));
        let SecurityBlob::Spnego(Spnego::Init(init)) = &blob else {
            panic!("{blob:?}");
        };
        assert_eq!(
            init.mech_types,
            vec![Mech::MsKerberos, Mech::Kerberos, Mech::Ntlmssp]
        );
        assert_eq!(init.mech_types[0].name(), "ms-kerberos");
        let ap = blob.kerberos_ap_req().unwrap();
        assert_eq!(ap.realm.as_deref(), Some("CORP.EXAMPLE"));
        assert_eq!(ap.spn.as_deref(), Some("MSSQLSvc/sql1.corp.example:1433"));
        // The bare GSS token too.
        assert_eq!(
            parse_security_blob(&gss_ap_req()).kerberos_ap_req(),
            Some(ap)
        );
    }

    #[test]
    fn neg_token_resp_variants() {
        let blob = parse_security_blob(&spnego_resp(1, Some(OID_NTLMSSP), Some(&CHALLENGE)));
        let SecurityBlob::Spnego(Spnego::Resp(r)) = &blob else {
            panic!("{blob:?}");
        };
        assert_eq!(r.neg_state, Some(NegState::AcceptIncomplete));
        assert_eq!(r.supported_mech, Some(Mech::Ntlmssp));
        assert!(matches!(blob.ntlm(), Some(NtlmMessage::Challenge(_))));

        let reject = parse_security_blob(&spnego_resp(2, None, None));
        assert_eq!(
            reject,
            SecurityBlob::Spnego(Spnego::Resp(NegTokenResp {
                neg_state: Some(NegState::Reject),
                supported_mech: None,
                response_token: None
            }))
        );

        // KRB_AP_ERR_MODIFIED: the service ticket was for another account (a wrong SPN).
        let err_seq = [
            tlv(0xa0, &tlv(0x02, &[5])),
            tlv(0xa1, &tlv(0x02, &[30])),
            tlv(0xa6, &tlv(0x02, &[41])),
            tlv(0xa9, &tlv(0x1b, b"CORP.EXAMPLE")),
            tlv(
                0xaa,
                &principal_name(&["MSSQLSvc", "sql1.corp.example:1433"]),
            ),
        ]
        .concat();
        let gss_err = tlv(
            0x60,
            &[
                tlv(0x06, OID_KRB5),
                vec![0x03, 0x00],
                tlv(0x7e, &tlv(0x30, &err_seq)),
            ]
            .concat(),
        );
        let blob = parse_security_blob(&spnego_resp(2, Some(OID_KRB5), Some(&gss_err)));
        let SecurityBlob::Spnego(Spnego::Resp(r)) = &blob else {
            panic!("{blob:?}");
        };
        let Some(SecurityBlob::KerberosError(e)) = r.response_token.as_deref() else {
            panic!("{blob:?}");
        };
        assert_eq!(e.error_code, 41);
        assert_eq!(e.name(), "KRB_AP_ERR_MODIFIED");
        assert_eq!(e.spn.as_deref(), Some("MSSQLSvc/sql1.corp.example:1433"));

        let ap_rep = tlv(
            0x60,
            &[
                tlv(0x06, OID_KRB5),
                vec![0x02, 0x00],
                tlv(0x6f, &tlv(0x30, &[])),
            ]
            .concat(),
        );
        let blob = parse_security_blob(&spnego_resp(0, Some(OID_MS_KRB5), Some(&ap_rep)));
        let SecurityBlob::Spnego(Spnego::Resp(r)) = &blob else {
            panic!("{blob:?}");
        };
        assert_eq!(r.neg_state, Some(NegState::AcceptCompleted));
        assert_eq!(
            r.response_token.as_deref(),
            Some(&SecurityBlob::KerberosApRep)
        );
    }

    #[test]
    fn unknown_and_malformed() {
        assert_eq!(parse_security_blob(&[]), SecurityBlob::Unknown);
        assert_eq!(parse_security_blob(b"hello"), SecurityBlob::Unknown);
        assert_eq!(
            parse_security_blob(&tlv(0x60, &tlv(0x06, &[0x2a, 0x03]))),
            SecurityBlob::Unknown,
            "another mechanism"
        );
        assert!(matches!(
            parse_security_blob(&tlv(0x60, &[tlv(0x06, OID_KRB5), vec![0x01]].concat())),
            SecurityBlob::Malformed { .. }
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        // SPNEGO inside SPNEGO inside …: stops at MAX_DEPTH, no stack growth.
        let mut blob = NEGOTIATE.to_vec();
        for _ in 0..50 {
            blob = spnego_init(&[OID_SPNEGO], &blob);
        }
        let _ = parse_security_blob(&blob);
    }

    #[test]
    fn every_truncation_never_panics() {
        for fixture in [
            SPNEGO_INIT_NTLM.to_vec(),
            spnego_init(&[OID_KRB5], &gss_ap_req()),
        ] {
            for n in 0..fixture.len() {
                let b = parse_security_blob(&fixture[..n]);
                assert!(b.ntlm().is_none() || n == fixture.len(), "{n}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parse_security_blob(&data);
            let mut gss = vec![0x60, 0x82, 0x01, 0x00];
            gss.extend_from_slice(&data);
            let _ = parse_security_blob(&gss);
        }

        #[test]
        fn corrupting_real_tokens_never_panics(at in 0usize..900, value: u8, which in 0usize..2) {
            let mut blob = [SPNEGO_INIT_NTLM.to_vec(), spnego_init(&[OID_KRB5], &gss_ap_req())][which].clone();
            let n = blob.len();
            blob[at % n] = value;
            let _ = parse_security_blob(&blob);
        }
    }
}
