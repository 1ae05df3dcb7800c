//! Arbitrary bytes as an SSPI blob (NTLMSSP, SPNEGO, Kerberos GSS tokens): decoding always ends
//! with a value, never a panic; the same bytes behind the NTLMSSP signature reach the NTLM
//! message parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::ntlm::{parse_ntlmssp, parse_security_blob};

fuzz_target!(|data: &[u8]| {
    let _ = parse_security_blob(data);
    let mut ntlm = b"NTLMSSP\0".to_vec();
    ntlm.extend_from_slice(data);
    let _ = parse_ntlmssp(&ntlm);
});
