#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::decode::{IpInfo, Packet, TcpFlags, TcpOptions, TcpSegment, L4};
use crate::limits::Limits;

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const FIN: u8 = TcpFlags::FIN;
const RST: u8 = TcpFlags::RST;
const PSH: u8 = TcpFlags::PSH;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A segment to build a packet from.
#[derive(Clone, Debug)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    payload: Vec<u8>,
    /// Wire payload length when larger than the captured payload (snaplen cut).
    wire_payload: Option<u32>,
    ts_ns: i64,
    ip_id: Option<u32>,
    ttl: u8,
    options: TcpOptions,
    checksum_ok: Option<bool>,
}

impl Seg {
    fn new(src: &str, dst: &str, seq: u32, ack: u32, flags: u8) -> Seg {
        Seg {
            src: addr(src),
            dst: addr(dst),
            seq,
            ack,
            flags,
            win: 8192,
            payload: Vec::new(),
            wire_payload: None,
            ts_ns: 0,
            ip_id: None,
            ttl: 64,
            options: TcpOptions::default(),
            checksum_ok: Some(true),
        }
    }
    fn data(mut self, p: &[u8]) -> Seg {
        self.payload = p.to_vec();
        self
    }
    fn at_ms(mut self, ms: i64) -> Seg {
        self.ts_ns = ms * 1_000_000;
        self
    }
    fn win(mut self, w: u16) -> Seg {
        self.win = w;
        self
    }
    fn id(mut self, id: u32) -> Seg {
        self.ip_id = Some(id);
        self
    }
}

fn packet(s: &Seg, frame_no: u64) -> Packet<'_> {
    let payload_len = s.wire_payload.unwrap_or(s.payload.len() as u32);
    Packet {
        frame: FrameRef {
            input: 0,
            no: frame_no,
        },
        ts: Timestamp::from_nanos(s.ts_ns),
        wire_len: 54 + payload_len,
        ip: IpInfo {
            src: s.src.ip(),
            dst: s.dst.ip(),
            ttl: s.ttl,
            ip_id: s.ip_id,
            reassembled: false,
        },
        l4: L4::Tcp(TcpSegment {
            src_port: s.src.port(),
            dst_port: s.dst.port(),
            seq: s.seq,
            ack: s.ack,
            flags: TcpFlags(s.flags),
            window: s.win,
            options: s.options,
            payload: &s.payload,
            payload_len,
            checksum_ok: s.checksum_ok,
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Data(u32, Direction, Vec<u8>, u64),
    Gap(u32, Direction, u64),
    Fin(u32, Direction),
    Rst(u32, Direction),
    Open(u32, SocketAddr, SocketAddr),
    Close(u32),
}

#[derive(Default)]
struct Rec {
    evs: Vec<Ev>,
    facts: Vec<TcpFacts>,
}

impl StreamSink for Rec {
    fn on_open(&mut self, conn: ConnId, client: SocketAddr, server: SocketAddr) {
        self.evs.push(Ev::Open(conn.0, client, server));
    }
    fn on_event(&mut self, ev: StreamEvent<'_>) {
        let c = ev.conn.0;
        self.evs.push(match ev.kind {
            StreamEventKind::Data(d) => Ev::Data(c, ev.dir, d.to_vec(), ev.frame.no),
            StreamEventKind::Gap { len } => Ev::Gap(c, ev.dir, len),
            StreamEventKind::Fin => Ev::Fin(c, ev.dir),
            StreamEventKind::Rst => Ev::Rst(c, ev.dir),
        });
    }
    fn on_close(&mut self, facts: TcpFacts) {
        self.evs.push(Ev::Close(facts.id.0));
        self.facts.push(facts);
    }
}

impl Rec {
    /// The stream of one direction: bytes, with `None` for gap bytes.
    fn stream(&self, conn: u32, dir: Direction) -> Vec<Option<u8>> {
        let mut v = Vec::new();
        for e in &self.evs {
            match e {
                Ev::Data(c, d, b, _) if *c == conn && *d == dir => {
                    v.extend(b.iter().map(|&x| Some(x)))
                }
                Ev::Gap(c, d, n) if *c == conn && *d == dir => {
                    v.extend(std::iter::repeat_n(None, *n as usize))
                }
                _ => {}
            }
        }
        v
    }
    fn facts(&self, conn: u32) -> &TcpFacts {
        self.facts.iter().find(|f| f.id.0 == conn).unwrap()
    }
}

fn run(segs: &[Seg]) -> Rec {
    run_with(segs, &Limits::default())
}

fn run_with(segs: &[Seg], limits: &Limits) -> Rec {
    let mut t = Tracker::new(limits);
    let mut rec = Rec::default();
    for (i, s) in segs.iter().enumerate() {
        t.on_packet(&packet(s, i as u64 + 1), &mut rec);
    }
    t.finish(&mut rec);
    rec
}

const C: &str = "10.0.0.1:50000";
const S: &str = "10.0.0.2:1433";

fn handshake(isn_c: u32, isn_s: u32) -> Vec<Seg> {
    vec![
        Seg::new(C, S, isn_c, 0, SYN).at_ms(0),
        Seg::new(S, C, isn_s, isn_c.wrapping_add(1), SYN | ACK).at_ms(10),
        Seg::new(C, S, isn_c.wrapping_add(1), isn_s.wrapping_add(1), ACK).at_ms(20),
    ]
}

fn known(b: &[u8]) -> Vec<Option<u8>> {
    b.iter().map(|&x| Some(x)).collect()
}

#[test]
fn handshake_and_in_order_data() {
    let mut s = handshake(1000, 5000);
    s.push(
        Seg::new(C, S, 1001, 5001, ACK | PSH)
            .data(b"hello")
            .at_ms(30),
    );
    s.push(
        Seg::new(S, C, 5001, 1006, ACK | PSH)
            .data(b"world!")
            .at_ms(40),
    );
    s.push(Seg::new(C, S, 1006, 5007, ACK | FIN).at_ms(50));
    s.push(Seg::new(S, C, 5007, 1007, ACK | FIN).at_ms(60));
    s.push(Seg::new(C, S, 1007, 5008, ACK).at_ms(70));
    let r = run(&s);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"hello"));
    assert_eq!(r.stream(0, Direction::ToClient), known(b"world!"));
    assert!(r.evs.contains(&Ev::Fin(0, Direction::ToServer)));
    assert!(r.evs.contains(&Ev::Fin(0, Direction::ToClient)));
    let f = r.facts(0);
    assert_eq!(f.roles, RoleBasis::Syn);
    assert_eq!(f.client, addr(C));
    assert_eq!(f.handshake_rtt_ns, Some(10_000_000));
    assert_eq!(
        f.end,
        TcpEnd::Fin {
            first: Direction::ToServer
        }
    );
    let d = f.dir(Direction::ToServer);
    assert_eq!(d.frames, 5);
    assert_eq!(d.stream_bytes, 5);
    assert_eq!(d.payload_bytes, 5);
    assert_eq!(d.frame_bytes, 5 * 54 + 5);
    assert_eq!(d.syn_count, 1);
    assert_eq!(d.first_data.unwrap().frame.no, 4);
    assert_eq!(d.flags, AnalysisCounts::default());
    assert_eq!(f.dir(Direction::ToClient).flags, AnalysisCounts::default());
    assert!(!f.evicted);
}

#[test]
fn out_of_order_is_buffered_and_released_by_the_filling_frame() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 4, 1, ACK).data(b"efgh").at_ms(30));
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abc").at_ms(31));
    let r = run(&s);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"abcefgh"));
    // Both releases happen at frame 5, the one that filled the hole.
    let frames: Vec<u64> = r
        .evs
        .iter()
        .filter_map(|e| match e {
            Ev::Data(_, _, _, f) => Some(*f),
            _ => None,
        })
        .collect();
    assert_eq!(frames, vec![5, 5]);
    let f = r.facts(0);
    assert_eq!(f.dir(Direction::ToServer).flags.lost_segment, 1);
    assert_eq!(f.dir(Direction::ToServer).flags.out_of_order, 1);
}

#[test]
fn overlaps_keep_the_first_received_bytes() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 5, 1, ACK).data(b"XXXX").at_ms(30)); // offsets 4..8
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abcdYYYYz").at_ms(31)); // 0..9
    s.push(Seg::new(C, S, 10, 1, ACK).data(b"12").at_ms(32)); // 9..11 in order
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"QQQQQQQQQQQ").at_ms(33)); // old
    let r = run(&s);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"abcdXXXXz12"));
}

#[test]
fn retransmitted_bytes_are_delivered_once() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abcd").at_ms(30).id(1));
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abcd").at_ms(300).id(2));
    s.push(Seg::new(C, S, 3, 1, ACK).data(b"cdef").at_ms(600).id(3));
    let r = run(&s);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"abcdef"));
    let f = r.facts(0).dir(Direction::ToServer);
    // Wireshark flags both: neither advances the highest sequence number seen.
    assert_eq!(f.flags.retransmission, 2);
    assert_eq!(f.flags.duplicate, 0);
    assert_eq!(f.max_retransmits_per_segment, 1);
    assert_eq!(f.payload_bytes, 12);
}

#[test]
fn capture_duplicates_are_counted_apart_and_delivered_once() {
    let mut s = handshake(0, 0);
    let d = Seg::new(C, S, 1, 1, ACK).data(b"abcd").at_ms(30).id(77);
    s.push(d.clone());
    s.push(d);
    let r = run(&s);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"abcd"));
    let f = r.facts(0).dir(Direction::ToServer);
    assert_eq!(f.flags.duplicate, 1);
    assert_eq!(f.flags.retransmission, 0);
    assert_eq!(f.flags.out_of_order, 0);
    // Wireshark calls the copy a retransmission (it ends at the highest seq seen, so it
    // is not out-of-order).
    assert_eq!(f.duplicate_copy_flags.retransmission, 1);
}

#[test]
fn ack_beyond_a_hole_declares_a_gap() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"ab").at_ms(30));
    s.push(Seg::new(C, S, 7, 1, ACK).data(b"gh").at_ms(31));
    s.push(Seg::new(S, C, 1, 9, ACK).at_ms(40));
    let mut t = Tracker::new(&Limits::default());
    let mut rec = Rec::default();
    for (i, x) in s.iter().enumerate() {
        t.on_packet(&packet(x, i as u64 + 1), &mut rec);
    }
    // Before the end of the capture: the ACK alone released the gap and "gh".
    let mut want = known(b"ab");
    want.extend([None; 4]);
    want.extend(known(b"gh"));
    assert_eq!(rec.stream(0, Direction::ToServer), want);
    t.finish(&mut rec);
    let f = rec.facts(0);
    assert_eq!(f.dir(Direction::ToServer).gap_bytes, 4);
    assert_eq!(f.dir(Direction::ToServer).gaps, 1);
    assert_eq!(f.dir(Direction::ToClient).flags.ack_lost_segment, 1);
}

#[test]
fn snaplen_cut_payload_becomes_data_then_gap() {
    let mut s = handshake(0, 0);
    let mut cut = Seg::new(C, S, 1, 1, ACK).data(b"abc").at_ms(30);
    cut.wire_payload = Some(10);
    s.push(cut);
    s.push(Seg::new(C, S, 11, 1, ACK).data(b"zz").at_ms(31));
    let r = run(&s);
    let mut want = known(b"abc");
    want.extend([None; 7]);
    want.extend(known(b"zz"));
    assert_eq!(r.stream(0, Direction::ToServer), want);
}

#[test]
fn fin_marks_the_end_of_lost_tail_data() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"ab").at_ms(30));
    s.push(Seg::new(C, S, 6, 1, ACK | FIN).at_ms(31));
    let r = run(&s);
    let mut want = known(b"ab");
    want.extend([None; 3]);
    assert_eq!(r.stream(0, Direction::ToServer), want);
    let fin_pos = r
        .evs
        .iter()
        .position(|e| *e == Ev::Fin(0, Direction::ToServer))
        .unwrap();
    let gap_pos = r
        .evs
        .iter()
        .position(|e| matches!(e, Ev::Gap(0, Direction::ToServer, 3)))
        .unwrap();
    assert!(gap_pos < fin_pos);
    assert_eq!(
        r.facts(0).end,
        TcpEnd::HalfClosed {
            by: Direction::ToServer
        }
    );
}

#[test]
fn port_reuse_after_fin_opens_a_new_connection() {
    let mut s = handshake(100, 200);
    s.push(Seg::new(C, S, 101, 201, ACK | FIN).at_ms(30));
    s.push(Seg::new(S, C, 201, 102, ACK | FIN).at_ms(31));
    s.push(Seg::new(C, S, 102, 202, ACK).at_ms(32));
    let mut h2 = handshake(9000, 7000);
    for x in &mut h2 {
        x.ts_ns += 1_000_000_000;
    }
    s.extend(h2);
    s.push(Seg::new(C, S, 9001, 7001, ACK).data(b"x").at_ms(1100));
    let r = run(&s);
    let order: Vec<&Ev> = r
        .evs
        .iter()
        .filter(|e| matches!(e, Ev::Open(..) | Ev::Close(..)))
        .collect();
    assert_eq!(
        order,
        vec![
            &Ev::Open(0, addr(C), addr(S)),
            &Ev::Close(0),
            &Ev::Open(1, addr(C), addr(S)),
            &Ev::Close(1)
        ]
    );
    assert_eq!(r.facts(1).dir(Direction::ToServer).stream_bytes, 1);
    assert_eq!(r.facts(1).first.frame.no, 7);
}

#[test]
fn syn_retries_belong_to_one_connection() {
    let s = vec![
        Seg::new(C, S, 100, 0, SYN).at_ms(0),
        Seg::new(C, S, 100, 0, SYN).at_ms(1000),
        // A client that picks a new ISN for its retry: still the same attempt.
        Seg::new(C, S, 555, 0, SYN).at_ms(3000),
        Seg::new(S, C, 900, 556, SYN | ACK).at_ms(3010),
        Seg::new(C, S, 556, 901, ACK).at_ms(3020),
        Seg::new(C, S, 556, 901, ACK).data(b"go").at_ms(3021),
    ];
    let r = run(&s);
    assert_eq!(r.facts.len(), 1);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"go"));
    let f = r.facts(0);
    assert_eq!(f.dir(Direction::ToServer).syn_count, 3);
    assert_eq!(f.handshake_rtt_ns, Some(10_000_000));
    assert_eq!(f.dir(Direction::ToServer).flags.retransmission, 1);
}

#[test]
fn a_refused_syn_retried_with_the_same_isn_stays_one_connection() {
    let s = vec![
        Seg::new(C, S, 100, 0, SYN).at_ms(0),
        Seg::new(S, C, 0, 101, RST | ACK).at_ms(1),
        Seg::new(C, S, 100, 0, SYN).at_ms(500),
        Seg::new(S, C, 0, 101, RST | ACK).at_ms(501),
        Seg::new(C, S, 100, 0, SYN).at_ms(1500),
        Seg::new(S, C, 900, 101, SYN | ACK).at_ms(1501),
        Seg::new(C, S, 101, 901, ACK).data(b"hi").at_ms(1502),
    ];
    let r = run(&s);
    assert_eq!(r.facts.len(), 1);
    let f = r.facts(0);
    let c = f.dir(Direction::ToServer);
    assert_eq!(c.syn_count, 3);
    assert_eq!(c.flags.retransmission, 2);
    assert_eq!(f.dir(Direction::ToClient).rst_count, 2);
    assert_eq!(f.end, TcpEnd::Open);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"hi"));
}

#[test]
fn mid_stream_roles_follow_ports() {
    let s = vec![
        Seg::new("10.0.0.2:1433", "10.0.0.1:50000", 10, 20, ACK)
            .data(b"r")
            .at_ms(0),
        Seg::new("10.0.0.3:7000", "10.0.0.4:7000", 10, 20, ACK)
            .data(b"r")
            .at_ms(1),
        Seg::new("10.0.0.5:1433", "10.0.0.6:50000", 10, 20, SYN | ACK).at_ms(2),
    ];
    let r = run(&s);
    let f0 = r.facts(0);
    assert_eq!(f0.roles, RoleBasis::Port);
    assert!(f0.mid_stream);
    assert_eq!(f0.server, addr("10.0.0.2:1433"));
    assert_eq!(r.facts(0).dir(Direction::ToClient).stream_bytes, 1);
    let f1 = r.facts(1);
    assert_eq!(f1.server, addr("10.0.0.4:7000"));
    let f2 = r.facts(2);
    assert_eq!(f2.roles, RoleBasis::SynAck);
    assert_eq!(f2.client, addr("10.0.0.6:50000"));
    assert!(!f2.mid_stream);
}

#[test]
fn mid_stream_bytes_before_the_start_are_counted_not_gaps() {
    let s = vec![
        Seg::new(C, S, 1000, 1, ACK).data(b"later").at_ms(0),
        Seg::new(C, S, 990, 1, ACK).data(b"0123456789").at_ms(500),
    ];
    let r = run(&s);
    let f = r.facts(0).dir(Direction::ToServer);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"later"));
    assert_eq!(f.bytes_before_start, 10);
    assert_eq!(f.gap_bytes, 0);
}

#[test]
fn rst_ends_the_connection_and_stragglers_still_belong() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(S, C, 1, 1, RST | ACK).at_ms(30));
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"late").at_ms(40));
    // Long after the linger: a stray packet opens a new (mid-stream) connection.
    s.push(Seg::new(C, S, 5, 1, ACK).at_ms(60_000));
    let r = run(&s);
    assert_eq!(r.facts.len(), 2);
    let f = r.facts(0);
    assert_eq!(
        f.end,
        TcpEnd::Rst {
            by: Direction::ToClient
        }
    );
    assert_eq!(f.dir(Direction::ToServer).frames, 3);
    let rd = f.dir(Direction::ToClient);
    assert_eq!(rd.rst_count, 1);
    assert!(rd.rst_has_ack);
    assert_eq!(rd.rst_ttl, Some(64));
    assert!(r.evs.contains(&Ev::Rst(0, Direction::ToClient)));
    // The old connection closed (by linger) before the new one opened.
    let close0 = r.evs.iter().position(|e| *e == Ev::Close(0)).unwrap();
    let open1 = r
        .evs
        .iter()
        .position(|e| matches!(e, Ev::Open(1, ..)))
        .unwrap();
    assert!(close0 < open1);
    assert!(r.facts(1).mid_stream);
}

#[test]
fn advance_releases_ended_connections() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(S, C, 1, 1, RST).at_ms(30));
    let mut t = Tracker::new(&Limits::default());
    let mut rec = Rec::default();
    for (i, x) in s.iter().enumerate() {
        t.on_packet(&packet(x, i as u64 + 1), &mut rec);
    }
    assert!(rec.facts.is_empty());
    t.advance(Timestamp::from_nanos(5_000_000_000), &mut rec);
    assert!(rec.facts.is_empty());
    t.advance(Timestamp::from_nanos(11_000_000_000), &mut rec);
    assert_eq!(rec.facts.len(), 1);
    assert_eq!(t.stats().open_connections, 0);
}

#[test]
fn eviction_at_max_connections_picks_the_least_recently_active() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let s = vec![
        Seg::new("10.0.0.1:1", S, 1, 0, SYN).at_ms(0),
        Seg::new("10.0.0.1:2", S, 1, 0, SYN).at_ms(1),
        Seg::new("10.0.0.1:1", S, 1, 0, SYN).at_ms(2), // conn 0 active again
        Seg::new("10.0.0.1:3", S, 1, 0, SYN).at_ms(3), // evicts conn 1
    ];
    let r = run_with(&s, &limits);
    assert_eq!(r.facts[0].id.0, 1);
    assert!(r.facts[0].evicted);
    assert_eq!(r.facts[0].end, TcpEnd::Open);
    assert!(!r.facts(0).evicted);
    assert!(!r.facts(2).evicted);
}

#[test]
fn eviction_keeps_memory_bounded() {
    let limits = Limits {
        max_connections: 50,
        ..Limits::default()
    };
    let mut t = Tracker::new(&limits);
    let mut rec = Rec::default();
    for i in 0..2000u32 {
        let src = format!("10.0.{}.{}:{}", i / 250, i % 250, 1024 + i);
        let s = Seg::new(&src, S, i, 0, SYN).at_ms(i64::from(i));
        t.on_packet(&packet(&s, u64::from(i) + 1), &mut rec);
        assert!(t.stats().open_connections <= 50);
    }
    assert_eq!(t.stats().evictions, 1950);
    assert_eq!(t.stats().peak_open_connections, 50);
}

#[test]
fn stream_buffer_limit_forces_gaps_and_counts_them() {
    let limits = Limits {
        stream_buffer_bytes: 1000,
        ..Limits::default()
    };
    let mut s = handshake(0, 0);
    // Byte 0 never arrives; 10 segments of 200 bytes pile up behind the hole.
    for i in 0..10u32 {
        let p = vec![b'a' + i as u8; 200];
        s.push(
            Seg::new(C, S, 2 + i * 200, 1, ACK)
                .data(&p)
                .at_ms(30 + i64::from(i)),
        );
    }
    let mut t = Tracker::new(&limits);
    let mut rec = Rec::default();
    for (i, x) in s.iter().enumerate() {
        t.on_packet(&packet(x, i as u64 + 1), &mut rec);
    }
    assert_eq!(t.stats().bytes_dropped_at_limits, 1);
    assert!(t.stats().peak_buffered_bytes <= 1000 + 264);
    t.finish(&mut rec);
    let st = rec.stream(0, Direction::ToServer);
    assert_eq!(st.len(), 2001);
    assert_eq!(st[0], None);
    assert!(st[1..].iter().all(|b| b.is_some()));
}

#[test]
fn global_buffer_limit_flushes_the_biggest_holder() {
    let limits = Limits {
        total_buffer_bytes: 3000,
        ..Limits::default()
    };
    let mut s = Vec::new();
    for c in 0..3u16 {
        let src = format!("10.0.0.1:{}", 2000 + c);
        s.push(Seg::new(&src, S, 0, 0, SYN).at_ms(0));
        for i in 0..(4 - u32::from(c)) {
            s.push(
                Seg::new(&src, S, 2 + i * 500, 1, ACK)
                    .data(&[1u8; 500])
                    .at_ms(1),
            );
        }
    }
    let mut t = Tracker::new(&limits);
    let mut rec = Rec::default();
    for (i, x) in s.iter().enumerate() {
        t.on_packet(&packet(x, i as u64 + 1), &mut rec);
    }
    assert!(t.stats().buffered_bytes <= 3000);
    assert!(t.stats().bytes_dropped_at_limits >= 1);
    // Connection 0 held the most and was flushed: its gap came out before the end.
    assert!(rec.evs.contains(&Ev::Gap(0, Direction::ToServer, 1)));
}

#[test]
fn sequence_numbers_wrap_at_2_pow_32() {
    let isn = u32::MAX - 3;
    let mut s = handshake(isn, 7);
    s.push(
        Seg::new(C, S, isn.wrapping_add(1), 8, ACK)
            .data(b"abc")
            .at_ms(30),
    );
    // Out of order across the wrap.
    s.push(
        Seg::new(C, S, isn.wrapping_add(7), 8, ACK)
            .data(b"ghi")
            .at_ms(31),
    );
    s.push(
        Seg::new(C, S, isn.wrapping_add(4), 8, ACK)
            .data(b"def")
            .at_ms(32),
    );
    s.push(Seg::new(S, C, 8, isn.wrapping_add(10), ACK).at_ms(40));
    let r = run(&s);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"abcdefghi"));
    let f = r.facts(0).dir(Direction::ToServer);
    assert_eq!(f.gap_bytes, 0);
    assert_eq!(f.flags.retransmission, 0);
}

#[test]
fn ttl_options_checksum_and_zero_window_facts() {
    let mut s = handshake(0, 0);
    s[0].options.mss = Some(1460);
    s[0].options.window_scale = Some(8);
    s[1].options.window_scale = Some(7);
    let mut bad = Seg::new(C, S, 1, 1, ACK).data(b"a").at_ms(30);
    bad.checksum_ok = Some(false);
    bad.ttl = 63;
    bad.options.any = true;
    s.push(bad);
    s.push(Seg::new(S, C, 1, 2, ACK).win(0).at_ms(40));
    s.push(Seg::new(S, C, 1, 2, ACK).win(100).at_ms(540));
    let r = run(&s);
    let f = r.facts(0);
    let c = f.dir(Direction::ToServer);
    assert_eq!(c.mss, Some(1460));
    assert_eq!(c.window_scale, Some(8));
    assert_eq!(c.ttl, Some(64));
    assert!(c.ttl_varies);
    assert_eq!(c.options_shape, Some(false)); // the handshake's final ACK came first
    assert_eq!(c.flags.bad_checksum, 1);
    let sv = f.dir(Direction::ToClient);
    assert_eq!(sv.zero_window_periods, 1);
    assert_eq!(sv.zero_window_ns, 500_000_000);
    assert_eq!(sv.flags.zero_window, 1);
    assert_eq!(sv.flags.window_update, 1);
}

#[test]
fn wireshark_flags_dup_acks_and_fast_retransmission() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 1, 1, ACK).data(&[1; 100]).at_ms(30));
    // Segment 101..201 lost in the capture, 201..301 arrives.
    s.push(Seg::new(C, S, 201, 1, ACK).data(&[3; 100]).at_ms(31));
    s.push(Seg::new(S, C, 1, 101, ACK).at_ms(40));
    s.push(Seg::new(S, C, 1, 101, ACK).at_ms(41));
    s.push(Seg::new(S, C, 1, 101, ACK).at_ms(42));
    s.push(Seg::new(C, S, 101, 1, ACK).data(&[2; 100]).at_ms(45));
    let r = run(&s);
    let f = r.facts(0);
    let c = f.dir(Direction::ToServer);
    let sv = f.dir(Direction::ToClient);
    assert_eq!(c.flags.lost_segment, 1);
    assert_eq!(sv.flags.duplicate_ack, 2);
    assert_eq!(c.flags.fast_retransmission, 1);
    // tshark shows tcp.analysis.retransmission on fast retransmissions too.
    assert_eq!(c.flags.retransmission, 1);
    assert_eq!(r.stream(0, Direction::ToServer).len(), 300);
    assert!(r.stream(0, Direction::ToServer).iter().all(|b| b.is_some()));
}

#[test]
fn wireshark_flags_keep_alive_and_spurious() {
    let mut s = handshake(0, 0);
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abcd").at_ms(30));
    s.push(Seg::new(S, C, 1, 5, ACK).at_ms(40));
    s.push(Seg::new(C, S, 4, 1, ACK).data(b"d").at_ms(5_000)); // keep-alive
    s.push(Seg::new(S, C, 1, 5, ACK).at_ms(5_010)); // keep-alive ACK
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abcd").at_ms(9_000)); // spurious
    let r = run(&s);
    let f = r.facts(0);
    let c = f.dir(Direction::ToServer);
    assert_eq!(c.flags.keep_alive, 1);
    assert_eq!(c.flags.spurious_retransmission, 1);
    assert_eq!(c.flags.retransmission, 1);
    assert_eq!(f.dir(Direction::ToClient).flags.keep_alive_ack, 1);
    assert_eq!(r.stream(0, Direction::ToServer), known(b"abcd"));
}

#[test]
fn wireshark_flags_zero_window_probe_and_window_full() {
    let mut s = handshake(0, 0);
    s[0].options.window_scale = Some(0);
    s[1].options.window_scale = Some(0);
    s.push(Seg::new(S, C, 1, 1, ACK).win(4).at_ms(25));
    s.push(Seg::new(C, S, 1, 1, ACK).data(b"abcd").at_ms(30)); // fills the window
    s.push(Seg::new(S, C, 1, 5, ACK).win(0).at_ms(40)); // zero window
    s.push(Seg::new(C, S, 5, 1, ACK).data(b"e").at_ms(300)); // probe
    s.push(Seg::new(S, C, 1, 5, ACK).win(0).at_ms(310)); // probe ack
    let r = run(&s);
    let f = r.facts(0);
    let c = f.dir(Direction::ToServer);
    let sv = f.dir(Direction::ToClient);
    assert_eq!(c.flags.window_full, 1);
    assert_eq!(c.flags.zero_window_probe, 1);
    assert_eq!(sv.flags.zero_window, 2);
    assert_eq!(sv.flags.zero_window_probe_ack, 1);
}

/// One generated scenario for the reassembly property.
#[derive(Debug, Clone)]
struct Scenario {
    data: Vec<u8>,
    isn: u32,
    /// (start, end) byte ranges sent, in capture order.
    segs: Vec<(usize, usize)>,
    /// Index in capture order after which the FIN is sent, if any.
    fin_at: Option<usize>,
    final_ack: bool,
    /// Interleaved receiver ACKs: positions in capture order.
    acks_after: Vec<usize>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(any::<u8>(), 1..1500),
        prop_oneof![Just(u32::MAX - 500), Just(0u32), any::<u32>()],
        proptest::collection::vec(1usize..120, 1..80),
        any::<u64>(),
        0u8..3,
        proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    )
        .prop_map(|(data, isn, cuts, seed, end_mode, ack_idx)| {
            let mut rng = seed;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            // Cut the stream into segments.
            let mut segs = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < data.len() {
                let len = cuts[i % cuts.len()].min(data.len() - pos);
                segs.push((pos, pos + len));
                pos += len;
                i += 1;
            }
            let mut sent = Vec::new();
            for &(a, b) in &segs {
                match next() % 10 {
                    0 | 1 => {}                         // lost
                    2 => sent.extend([(a, b), (a, b)]), // retransmitted
                    _ => sent.push((a, b)),
                }
                if next() % 8 == 0 {
                    // A retransmission re-cut over arbitrary boundaries.
                    let x = (next() as usize) % data.len();
                    let y = (x + 1 + (next() as usize) % 300).min(data.len());
                    sent.push((x, y));
                }
            }
            // Reorder: random swaps within a window, sometimes a full shuffle.
            let n = sent.len();
            if n > 1 {
                let window = if next() % 4 == 0 {
                    n
                } else {
                    1 + (next() as usize) % 8
                };
                for i in 0..n {
                    let j = (i + (next() as usize) % window).min(n - 1);
                    sent.swap(i, j);
                }
            }
            let fin_at = if end_mode != 1 {
                Some((next() as usize) % (n + 1))
            } else {
                None
            };
            let final_ack = end_mode != 0;
            let acks_after = ack_idx.iter().map(|ix| ix.index(n + 1)).collect();
            Scenario {
                data,
                isn,
                segs: sent,
                fin_at,
                final_ack,
                acks_after,
            }
        })
}

fn play(sc: &Scenario, limits: &Limits) -> (Rec, Vec<Option<u8>>) {
    let c_isn = sc.isn;
    let s_isn = 77u32;
    let seq_of = |off: usize| c_isn.wrapping_add(1).wrapping_add(off as u32);
    let total = sc.data.len();
    let mut pkts: Vec<Seg> = handshake(c_isn, s_isn);
    let mut covered = vec![false; total];
    // Bytes no segment covers at all: lost for good.
    let mut ever = vec![false; total];
    for &(a, b) in &sc.segs {
        ever[a..b].iter_mut().for_each(|x| *x = true);
    }
    let mut t_ms = 30;
    let ack_point = |covered: &[bool]| -> usize {
        (0..total)
            .find(|&i| !covered[i] && ever[i])
            .unwrap_or(total)
    };
    for i in 0..=sc.segs.len() {
        if sc.fin_at == Some(i) {
            pkts.push(Seg::new(C, S, seq_of(total), s_isn + 1, ACK | FIN).at_ms(t_ms));
            t_ms += 1;
        }
        for _ in sc.acks_after.iter().filter(|&&x| x == i) {
            let a = ack_point(&covered);
            pkts.push(Seg::new(S, C, s_isn + 1, seq_of(a), ACK).at_ms(t_ms));
            t_ms += 1;
        }
        if let Some(&(a, b)) = sc.segs.get(i) {
            pkts.push(
                Seg::new(C, S, seq_of(a), s_isn + 1, ACK)
                    .data(&sc.data[a..b])
                    .at_ms(t_ms)
                    .id(i as u32 + 1),
            );
            covered[a..b].iter_mut().for_each(|x| *x = true);
            t_ms += 1;
        }
    }
    if sc.final_ack {
        let fin = u32::from(sc.fin_at.is_some());
        pkts.push(Seg::new(S, C, s_isn + 1, seq_of(total).wrapping_add(fin), ACK).at_ms(t_ms));
    }
    let rec = run_with(&pkts, limits);
    // Expected: every byte a segment carried, gaps for the rest; without a FIN or final ACK
    // the stream ends at the last byte any segment carried.
    let known_end = if sc.fin_at.is_some() || sc.final_ack {
        total
    } else {
        (0..total).rev().find(|&i| ever[i]).map_or(0, |i| i + 1)
    };
    let want: Vec<Option<u8>> = (0..known_end)
        .map(|i| if ever[i] { Some(sc.data[i]) } else { None })
        .collect();
    (rec, want)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn reassembly_restores_the_stream_with_gaps_exactly_where_data_was_lost(sc in scenario()) {
        let (rec, want) = play(&sc, &Limits::default());
        let got = rec.stream(0, Direction::ToServer);
        prop_assert_eq!(&got, &want);
        let f = rec.facts(0).dir(Direction::ToServer);
        prop_assert_eq!(f.stream_bytes as usize, want.iter().filter(|b| b.is_some()).count());
        prop_assert_eq!(f.gap_bytes as usize, want.iter().filter(|b| b.is_none()).count());
        prop_assert_eq!(rec.facts.len(), 1);
        if sc.fin_at.is_some() {
            prop_assert!(rec.evs.contains(&Ev::Fin(0, Direction::ToServer)));
        }
        // No two gaps in a row from one packet, and no empty events.
        for e in &rec.evs {
            match e {
                Ev::Data(_, _, d, _) => prop_assert!(!d.is_empty()),
                Ev::Gap(_, _, n) => prop_assert!(*n > 0),
                _ => {}
            }
        }
    }

    #[test]
    fn under_tight_buffer_limits_bytes_stay_in_place(sc in scenario()) {
        let limits = Limits { stream_buffer_bytes: 300, ..Limits::default() };
        let (rec, want) = play(&sc, &limits);
        let got = rec.stream(0, Direction::ToServer);
        // Limits may turn held-back bytes into gaps, never move or invent bytes.
        prop_assert!(got.len() <= want.len().max(got.len()));
        for (i, b) in got.iter().enumerate() {
            if let Some(x) = b {
                prop_assert_eq!(Some(*x), sc.data.get(i).copied());
            }
        }
        if sc.fin_at.is_some() || sc.final_ack {
            prop_assert_eq!(got.len(), want.len());
        }
    }
}

/// Throughput of the tracker alone: `cargo test --release --lib tcp_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn tcp_throughput() {
    let payload = vec![0x42u8; 1000];
    let conns = 2000u32;
    let per_conn = 500u32;
    let mut segs = Vec::new();
    for c in 0..conns {
        let src = format!("10.{}.{}.1:{}", c / 250, c % 250, 40000 + c % 20000);
        segs.push(Seg::new(&src, S, 0, 0, SYN));
        segs.push(Seg::new(S, &src, 0, 1, SYN | ACK));
    }
    let mut pkts_src = Vec::new();
    for i in 0..per_conn {
        for c in 0..conns {
            let src = format!("10.{}.{}.1:{}", c / 250, c % 250, 40000 + c % 20000);
            let mut s = Seg::new(&src, S, 1 + i * 1000, 1, ACK).at_ms(i64::from(i));
            s.payload = payload.clone();
            s.ip_id = Some(i);
            pkts_src.push(s);
            if i % 2 == 1 {
                pkts_src.push(Seg::new(S, &src, 1, 1 + (i + 1) * 1000, ACK).at_ms(i64::from(i)));
            }
        }
    }
    let mut t = Tracker::new(&Limits::default());
    struct Count(u64);
    impl StreamSink for Count {
        fn on_event(&mut self, ev: StreamEvent<'_>) {
            if let StreamEventKind::Data(d) = ev.kind {
                self.0 += d.len() as u64;
            }
        }
        fn on_close(&mut self, _facts: TcpFacts) {}
    }
    let mut sink = Count(0);
    for (i, s) in segs.iter().enumerate() {
        t.on_packet(&packet(s, i as u64), &mut sink);
    }
    let built: Vec<Packet<'_>> = pkts_src
        .iter()
        .enumerate()
        .map(|(i, s)| packet(s, i as u64))
        .collect();
    let start = std::time::Instant::now();
    for p in &built {
        t.on_packet(p, &mut sink);
    }
    let el = start.elapsed();
    t.finish(&mut sink);
    let n = built.len() as f64;
    eprintln!(
        "{} packets in {:?}: {:.1} Mpkt/s, {:.0} MB/s payload, {} bytes delivered",
        built.len(),
        el,
        n / el.as_secs_f64() / 1e6,
        sink.0 as f64 / el.as_secs_f64() / 1e6,
        sink.0
    );
}

#[test]
fn closed_connections_are_released_as_capture_time_passes() {
    let mut t = Tracker::new(&Limits::default());
    let mut rec = Rec::default();
    let mut no = 0;
    for i in 0..1000u32 {
        let src = format!("10.0.{}.{}:{}", i / 250, i % 250, 2000 + i);
        let base = i64::from(i) * 1000;
        let mut s = handshake(10, 20);
        for x in &mut s {
            x.src = if x.src == addr(C) { addr(&src) } else { x.src };
            x.dst = if x.dst == addr(C) { addr(&src) } else { x.dst };
            x.ts_ns += base * 1_000_000;
        }
        s.push(Seg::new(&src, S, 11, 21, ACK | FIN).at_ms(base + 30));
        s.push(Seg::new(S, &src, 21, 12, ACK | FIN).at_ms(base + 31));
        s.push(Seg::new(&src, S, 12, 22, ACK).at_ms(base + 32));
        for x in &s {
            no += 1;
            t.on_packet(&packet(x, no), &mut rec);
        }
        assert!(
            t.stats().open_connections <= 13,
            "{}",
            t.stats().open_connections
        );
    }
    t.finish(&mut rec);
    assert_eq!(rec.facts.len(), 1000);
    assert!(rec
        .facts
        .iter()
        .all(|f| matches!(f.end, TcpEnd::Fin { .. })));
    // Closed in order of first packet (linger expiry and finish both keep it).
    assert!(rec.facts.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn a_connection_costs_about_a_kilobyte() {
    // Memory follows the connections open (and lingering) at once: ~28,000 of them in the
    // benchmark's 1 GiB capture, so each kilobyte here is ~28 MB of peak RSS.
    let size = std::mem::size_of::<state::Conn>();
    eprintln!("Conn is {size} bytes");
    assert!(size <= 1900, "{size}");
}
