//! Authentication tokens carried by TDS (the LOGIN7 SSPI field, SSPI packets 0x11 and the
//! server's SSPI token 0xED): NTLMSSP (MS-NLMP), SPNEGO (RFC 4178, MS-SPNG) and the Kerberos
//! tokens inside GSS-API framing (RFC 4121), reduced to what explains a failed integrated
//! login. Entry point: [`parse_security_blob`], which never fails.

mod der;
mod ntlmssp;
mod spnego;

pub use ntlmssp::{
    filetime_to_unix, flags, is_ntlmssp, parse_av_pairs, parse_ntlmssp, Authenticate, Challenge,
    Negotiate, NtResponseKind, NtlmMessage, NtlmVersion, TargetInfo,
};
pub use spnego::{
    krb_error_name, parse_security_blob, KerberosApReq, KerberosError, Mech, NegState,
    NegTokenInit, NegTokenResp, SecurityBlob, Spnego,
};
