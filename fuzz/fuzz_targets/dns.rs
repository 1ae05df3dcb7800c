//! Arbitrary bytes through the DNS parser, as a UDP payload and as a TCP stream of
//! length-prefixed messages: never a panic, never more questions than QDCOUNT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::dns::{parse_dns, split_tcp_message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_dns(data) {
        let qdcount = data.get(4..6).map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])));
        assert!(m.questions.len() <= qdcount);
    }
    let mut stream = data;
    for _ in 0..10_000 {
        match split_tcp_message(stream) {
            Ok((msg, rest)) => {
                let _ = parse_dns(msg);
                assert!(rest.len() < stream.len());
                stream = rest;
            }
            Err(_) => break,
        }
    }
});
