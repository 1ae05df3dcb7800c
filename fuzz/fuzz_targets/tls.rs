//! Arbitrary bytes as a TLS record stream: records are split off and decoded (handshake messages
//! through tls-parser and x509-parser), never a panic, never more bytes consumed than given; the
//! same bytes as a handshake fragment stream through a small reassembler stay within its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::tls::{parse_handshake, parse_records, HandshakeReassembler, TlsFlow};

fuzz_target!(|data: &[u8]| {
    let (_, used) = parse_records(data);
    assert!(used <= data.len());

    // Fed in two uneven parts, as the session would across TCP segments.
    let mid = data.len() / 3;
    let mut flow = TlsFlow::new();
    let mut buf = data.get(..mid).unwrap_or_default().to_vec();
    let (_, first) = flow.parse_records(&buf);
    buf.drain(..first);
    buf.extend_from_slice(data.get(mid..).unwrap_or_default());
    let (_, second) = flow.parse_records(&buf);
    assert!(second <= buf.len());

    let mut reassembler = HandshakeReassembler::with_limit(4096);
    for chunk in data.chunks(97) {
        let _ = reassembler.push(chunk, |t, body| {
            let _ = parse_handshake(t, body);
        });
        assert!(reassembler.pending_len() <= 4096 + 4 + 97);
    }
});
