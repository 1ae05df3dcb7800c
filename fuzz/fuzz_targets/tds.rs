//! Arbitrary bytes through every TDS parser: PRELOGIN, LOGIN7, the RPC procedure name, the server token stream (both
//! TDS versions, the way the session walks it) and the packet framer fed in uneven pieces.
//! Never a panic, never more bytes consumed than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::tds::framer::{Framer, FramerItem};
use tdsscope::proto::tds::login7::parse_login7;
use tdsscope::proto::tds::prelogin::parse_prelogin;
use tdsscope::proto::tds::rpc::parse_rpc_procedure;
use tdsscope::proto::tds::tokens::{parse_token, TokenContext};
use tdsscope::proto::tds::TdsVersion;

fuzz_target!(|data: &[u8]| {
    let _ = parse_prelogin(data);
    if let Ok(p) = parse_rpc_procedure(data) {
        assert!(p.display_name().len() <= 4 * data.len() + 16);
    }
    if let Ok(login) = parse_login7(data) {
        assert!(login.sspi.len() <= data.len());
    }
    for version in [TdsVersion::V7_1, TdsVersion::V7_4] {
        let mut ctx = TokenContext::new(version);
        let mut rest = data;
        for _ in 0..10_000 {
            match parse_token(rest, &mut ctx) {
                Ok((after, _)) if after.len() < rest.len() => rest = after,
                _ => break,
            }
        }
    }
    let mut framer = Framer::new();
    let mut seen = 0u64;
    for (i, piece) in data.chunks(37).enumerate() {
        if i % 7 == 6 {
            framer.on_gap(u64::from(piece.first().copied().unwrap_or(0)));
            continue;
        }
        framer.feed(piece, &mut |item| match item {
            FramerItem::Payload { data, .. } | FramerItem::Tls { data, .. } => {
                seen += data.len() as u64
            }
            FramerItem::Skipped { bytes } => seen += bytes,
        });
    }
    assert!(seen <= data.len() as u64);
});
