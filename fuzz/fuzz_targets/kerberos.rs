//! Arbitrary bytes through the Kerberos parser, as a UDP datagram and as a TCP stream of
//! record-marked messages: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::kerberos::{parse_krb, split_tcp_record};

fuzz_target!(|data: &[u8]| {
    let _ = parse_krb(data);
    let mut stream = data;
    for _ in 0..10_000 {
        match split_tcp_record(stream) {
            Ok((msg, rest)) => {
                let _ = parse_krb(msg);
                assert!(rest.len() < stream.len());
                stream = rest;
            }
            Err(_) => break,
        }
    }
});
