//! Arbitrary bytes through every TDS parser: PRELOGIN, LOGIN7, the RPC procedure name, the
//! server token stream (both TDS versions, the way the session walks it), the packet framer
//! fed in uneven pieces, the MARS layer (SMP header, SMP splitter) and the session's SMP
//! demultiplexing: a TDS session fed the bytes as two directions, behind an SMP SYN so that
//! it switches to MARS.
//! Never a panic, never more bytes consumed than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tdsscope::proto::tds::framer::{Framer, FramerItem};
use tdsscope::proto::tds::login7::parse_login7;
use tdsscope::proto::tds::prelogin::parse_prelogin;
use tdsscope::proto::tds::smp::{parse_smp, starts_smp, SmpItem, SmpSplitter};
use tdsscope::proto::tds::rpc::parse_rpc_procedure;
use tdsscope::proto::tds::tokens::{parse_token, TokenContext};
use tdsscope::proto::tds::TdsVersion;
use tdsscope::session::tds::TdsSession;
use tdsscope::tcp::{Direction, Mark};

/// An SMP SYN for session 0 with window 4 ([MC-SMP] 2.2.2), as FreeTDS sends it.
const SMP_SYN: [u8; 16] = [0x53, 1, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0];

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

    if let Ok((rest, repr, payload)) = parse_smp(data) {
        assert!(rest.len() + payload.len() + 16 <= data.len());
        assert_eq!(repr.payload_len(), payload.len());
    }
    let _ = starts_smp(data);
    let mut splitter = SmpSplitter::new();
    let mut seen = 0u64;
    for (i, piece) in data.chunks(29).enumerate() {
        if i % 5 == 4 {
            splitter.on_gap(u64::from(piece.first().copied().unwrap_or(0)));
            continue;
        }
        splitter.feed(piece, &mut |item| match item {
            SmpItem::Data { data, .. } => seen += data.len() as u64,
            SmpItem::Skipped { bytes } => seen += bytes,
            SmpItem::Header(_) => {}
        });
    }
    assert!(seen <= data.len() as u64);

    // The session: chunks alternate direction by their first byte; the client starts with an
    // SMP SYN, so the rest is taken as MARS traffic (or resynchronised from).
    let mut session = TdsSession::new();
    let at = Mark {
        frame: Default::default(),
        ts: Default::default(),
    };
    session.on_data(Direction::ToServer, at, &SMP_SYN);
    for (i, piece) in data.chunks(53).enumerate() {
        let dir = if piece.first().is_some_and(|b| b & 1 == 1) {
            Direction::ToClient
        } else {
            Direction::ToServer
        };
        if i % 9 == 8 {
            session.on_gap(dir, u64::from(piece.get(1).copied().unwrap_or(0)));
        } else {
            session.on_data(dir, at, piece);
        }
    }
    let _ = session.into_facts();
});
