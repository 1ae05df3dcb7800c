//! Arbitrary datagrams through the SSRP parser: a message or an error, never a panic; what
//! parses as a request or a DAC answer emits the same bytes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::ssrp::{parse_ssrp, SsrpMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = parse_ssrp(data) else {
        return;
    };
    match &msg {
        SsrpMessage::Response(r) => assert!(r.data.len() <= data.len()),
        SsrpMessage::BcastEx { .. } | SsrpMessage::UcastEx { .. } | SsrpMessage::DacResponse { .. } => {
            assert_eq!(msg.emit(), data)
        }
        _ => {}
    }
});
