//! Decoder tests over hand-made frames: one fixture per link type and header shape, every
//! truncation, impossible lengths, fragments and ICMP errors.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::IpAddr;

use super::checksum::transport_checksum;
use super::*;
use crate::capture::{Frame, FrameRef, LinkType};
use crate::limits::Limits;

/// Ethernet II, IPv4, TCP SYN 10.0.0.1:49152 → 10.0.0.2:1433 with MSS, SACK permitted,
/// window scale and timestamps. The TCP checksum is filled in by `with_tcp_checksum`.
const ETH_IPV4_TCP_SYN: [u8; 74] = [
    /* eth dst */ 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, /* eth src */ 0x66, 0x77, 0x88,
    0x99, 0xaa, 0xbb, /* type IPv4 */ 0x08, 0x00, //
    /* ver 4, IHL 5 */ 0x45, /* DSCP */ 0x00, /* total length 60 */ 0x00, 0x3c,
    /* id 0x1234 */ 0x12, 0x34, /* DF, offset 0 */ 0x40, 0x00, /* TTL 128 */ 0x80,
    /* proto TCP */ 0x06, /* header checksum (not checked) */ 0x00, 0x00,
    /* src 10.0.0.1 */ 10, 0, 0, 1, /* dst 10.0.0.2 */ 10, 0, 0, 2, //
    /* src port 49152 */ 0xc0, 0x00, /* dst port 1433 */ 0x05, 0x99, /* seq */ 0x11,
    0x22, 0x33, 0x44, /* ack */ 0x00, 0x00, 0x00, 0x00,
    /* data offset 10 (40 bytes) */ 0xa0, /* flags SYN */ 0x02,
    /* window 64240 */ 0xfa, 0xf0, /* checksum */ 0x00, 0x00, /* urgent */ 0x00,
    0x00, //
    /* MSS 1460 */ 0x02, 0x04, 0x05, 0xb4, /* SACK permitted */ 0x04, 0x02,
    /* timestamps 1, 0 */ 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    /* NOP */ 0x01, /* window scale 8 */ 0x03, 0x03, 0x08,
];
const SYN_L4: usize = 34;

/// Ethernet II, IPv4, TCP ACK+PSH with 2 payload bytes, then 4 bytes of Ethernet padding
/// (a 60-byte minimum frame) that must not become payload.
const ETH_IPV4_TCP_PADDED: [u8; 60] = [
    /* eth dst */ 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, /* eth src */ 0x66, 0x77, 0x88,
    0x99, 0xaa, 0xbb, /* type IPv4 */ 0x08, 0x00, //
    /* ver 4, IHL 5 */ 0x45, 0x00, /* total length 42 */ 0x00, 0x2a, /* id */ 0x00,
    0x07, /* flags/offset */ 0x00, 0x00, /* TTL */ 0x40, /* TCP */ 0x06,
    /* hdr csum */ 0x00, 0x00, /* src 10.0.0.2 */ 10, 0, 0, 2,
    /* dst 10.0.0.1 */ 10, 0, 0, 1, //
    /* src port 1433 */ 0x05, 0x99, /* dst port 49152 */ 0xc0, 0x00, /* seq */ 0x00,
    0x00, 0x00, 0x64, /* ack */ 0x11, 0x22, 0x33, 0x45, /* data offset 5 */ 0x50,
    /* flags PSH ACK */ 0x18, /* window */ 0x01, 0x00, /* checksum */ 0x00, 0x00,
    /* urgent */ 0x00, 0x00, //
    /* payload */ b'h', b'i', /* padding */ 0x00, 0x00, 0x00, 0x00,
];
const PADDED_L4: usize = 34;

/// Raw IPv6 (link type 229): hop-by-hop options, then UDP 2001:db8::1:5353 → 2001:db8::2:1434
/// with a 1-byte payload (an SSRP CLNT_BCAST_EX).
const RAW_IPV6_HBH_UDP: [u8; 57] = [
    /* ver 6, class, flow */ 0x60, 0x00, 0x00, 0x00, /* payload length 17 */ 0x00, 0x11,
    /* next header HBH */ 0x00, /* hop limit */ 0x40, /* src 2001:db8::1 */ 0x20,
    0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* dst 2001:db8::2 */ 0x20, 0x01,
    0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, /* HBH: next UDP, len 0, PadN */ 0x11,
    0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, /* UDP src 5353 */ 0x14, 0xe9,
    /* dst 1434 */ 0x05, 0x9a, /* length 9 */ 0x00, 0x09, /* checksum */ 0x00, 0x00,
    /* payload */ 0x02,
];
const HBH_UDP_L4: usize = 48;

/// Linux cooked v1 (113), IPv4, UDP 192.168.1.5:53 → 192.168.1.9:40000, 4 payload bytes.
const SLL_IPV4_UDP: [u8; 48] = [
    /* packet type: to us */ 0x00, 0x00, /* ARPHRD_ETHER */ 0x00, 0x01,
    /* address length */ 0x00, 0x06, /* address + pad */ 1, 2, 3, 4, 5, 6, 0, 0,
    /* protocol IPv4 */ 0x08, 0x00, //
    /* ver/IHL */ 0x45, 0x00, /* total length 32 */ 0x00, 0x20, /* id */ 0xab, 0xcd,
    /* flags/offset */ 0x00, 0x00, /* TTL */ 0x3f, /* UDP */ 0x11,
    /* hdr csum */ 0x00, 0x00, /* src */ 192, 168, 1, 5, /* dst */ 192, 168, 1,
    9, //
    /* src port 53 */ 0x00, 0x35, /* dst port 40000 */ 0x9c, 0x40,
    /* length 12 */ 0x00, 0x0c, /* checksum none */ 0x00, 0x00, /* payload */ 0xde,
    0xad, 0xbe, 0xef,
];

/// Linux cooked v2 (276), IPv6, TCP RST 2001:db8::2:1433 → 2001:db8::1:50000.
const SLL2_IPV6_TCP_RST: [u8; 80] = [
    /* protocol IPv6 */ 0x86, 0xdd, /* reserved */ 0x00, 0x00, /* ifindex */ 0, 0,
    0, 2, /* ARPHRD_ETHER */ 0x00, 0x01, /* packet type */ 0x04,
    /* addr len */ 0x06, /* address + pad */ 1, 2, 3, 4, 5, 6, 0, 0, //
    /* ver 6 */ 0x60, 0x00, 0x00, 0x00, /* payload length 20 */ 0x00, 0x14,
    /* TCP */ 0x06, /* hop limit */ 0xff, /* src 2001:db8::2 */ 0x20, 0x01, 0x0d,
    0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, /* dst 2001:db8::1 */ 0x20, 0x01, 0x0d, 0xb8, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    /* src port 1433 */ 0x05, 0x99, /* dst port 50000 */ 0xc3, 0x50, /* seq */ 0, 0,
    0, 0, /* ack */ 0xaa, 0xbb, 0xcc, 0xdd, /* offset 5 */ 0x50, /* RST ACK */ 0x14,
    /* window */ 0x00, 0x00, /* checksum */ 0x00, 0x00, /* urg */ 0, 0,
];
const SLL2_L4: usize = 60;

/// Ethernet with an 802.1ad outer and an 802.1Q inner tag, IPv4, ICMP destination
/// unreachable (port unreachable) quoting an IPv4/UDP header 10.0.0.1:50001 → 10.0.0.9:1434.
const ETH_QINQ_ICMP_PORT_UNREACH: [u8; 78] = [
    /* eth dst */ 0, 1, 2, 3, 4, 5, /* eth src */ 6, 7, 8, 9, 10, 11,
    /* 802.1ad, TCI */ 0x88, 0xa8, 0x00, 0x64, /* 802.1Q, TCI */ 0x81, 0x00, 0x00, 0x0a,
    /* type IPv4 */ 0x08, 0x00, //
    /* ver/IHL */ 0x45, 0x00, /* total length 56 */ 0x00, 0x38, /* id */ 0, 1,
    /* frag */ 0, 0, /* TTL */ 0x40, /* ICMP */ 0x01, /* csum */ 0, 0,
    /* src 10.0.0.9 */ 10, 0, 0, 9, /* dst 10.0.0.1 */ 10, 0, 0, 1, //
    /* type 3 code 3 */ 0x03, 0x03, /* checksum */ 0, 0, /* unused */ 0, 0, 0,
    0, //
    /* quoted: ver/IHL */ 0x45, 0x00, /* len */ 0x00, 0x1d, /* id */ 0, 2,
    /* frag */ 0, 0, /* TTL */ 0x40, /* UDP */ 0x11, /* csum */ 0, 0,
    /* src */ 10, 0, 0, 1, /* dst */ 10, 0, 0, 9, /* UDP src 50001 */ 0xc3, 0x51,
    /* dst 1434 */ 0x05, 0x9a, /* len */ 0x00, 0x09, /* csum */ 0x00, 0x00,
];

/// BSD NULL (0), family 2 written little-endian, IPv4, ICMP time exceeded quoting TCP
/// 10.1.1.1:50002 → 10.2.2.2:1433 seq 0x01020304.
const NULL_LE_ICMP_TIME_EXCEEDED_TCP: [u8; 60] = [
    /* AF_INET, host order LE */ 0x02, 0x00, 0x00, 0x00, //
    /* ver/IHL */ 0x45, 0x00, /* total length 56 */ 0x00, 0x38, /* id */ 0, 3,
    /* frag */ 0, 0, /* TTL */ 0xfe, /* ICMP */ 0x01, /* csum */ 0, 0,
    /* src router */ 10, 9, 9, 9, /* dst */ 10, 1, 1, 1, //
    /* type 11 code 0 */ 0x0b, 0x00, /* checksum */ 0, 0, /* unused */ 0, 0, 0,
    0, //
    /* quoted ver/IHL */ 0x45, 0x00, /* len */ 0x00, 0x3c, /* id */ 0, 4,
    /* DF */ 0x40, 0, /* TTL 1 */ 0x01, /* TCP */ 0x06, /* csum */ 0, 0,
    /* src */ 10, 1, 1, 1, /* dst */ 10, 2, 2, 2, /* src port 50002 */ 0xc3, 0x52,
    /* dst port 1433 */ 0x05, 0x99, /* seq */ 0x01, 0x02, 0x03, 0x04,
];

/// LOOP (108), family 30 in network order, IPv6, ICMPv6 packet too big quoting
/// IPv6/TCP 2001:db8::1:50003 → 2001:db8::2:1433 seq 0x0a0b0c0d.
const LOOP_ICMPV6_PTB_TCP: [u8; 100] = [
    /* AF_INET6 (macOS), network order */ 0x00, 0x00, 0x00, 0x1e, //
    /* ver 6 */ 0x60, 0, 0, 0, /* payload length 56 */ 0x00, 0x38,
    /* ICMPv6 */ 0x3a, /* hop limit */ 0x40, /* src router 2001:db8::fe */ 0x20,
    0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe, /* dst 2001:db8::1 */ 0x20, 0x01,
    0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
    /* type 2 code 0 */ 0x02, 0x00, /* checksum */ 0, 0, /* MTU 1280 */ 0, 0, 0x05,
    0x00, //
    /* quoted ver 6 */ 0x60, 0, 0, 0, /* payload length */ 0x05, 0xa0,
    /* TCP */ 0x06, /* hop limit */ 0x40, /* src 2001:db8::1 */ 0x20, 0x01, 0x0d,
    0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* dst 2001:db8::2 */ 0x20, 0x01, 0x0d, 0xb8, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, /* TCP src port 50003 */ 0xc3, 0x53,
    /* dst port 1433 */ 0x05, 0x99, /* seq */ 0x0a, 0x0b, 0x0c, 0x0d,
];

fn frame(link: LinkType, data: &[u8]) -> Frame<'_> {
    Frame {
        at: FrameRef { input: 0, no: 1 },
        ts: crate::time::Timestamp::from_secs_nanos(1_000, 0),
        link,
        data,
        orig_len: data.len() as u32,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Fills in the TCP (or UDP, `csum_at` 6) checksum of the segment that starts at `l4` and
/// runs to `end`.
fn with_checksum(
    mut f: Vec<u8>,
    l4: usize,
    end: usize,
    proto: u8,
    src: &str,
    dst: &str,
) -> Vec<u8> {
    let at = if proto == 6 { 16 } else { 6 };
    f[l4 + at] = 0;
    f[l4 + at + 1] = 0;
    let c = transport_checksum(ip(src), ip(dst), proto, &f[l4..end]);
    f[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

fn decode_one(link: LinkType, data: &[u8]) -> (Option<String>, DecodeStats) {
    let mut d = Decoder::new(&Limits::default());
    let out = match d.decode(&frame(link, data)) {
        Decoded::Packet(p) => Some(format!("{:?}", p)),
        Decoded::FragmentHeld => None,
        Decoded::Skipped(r) => Some(format!("Skipped({r:?})")),
    };
    (out, d.stats().clone())
}

fn expect_tcp<'a>(d: Decoded<'a>) -> (IpInfo, TcpSegment<'a>) {
    match d {
        Decoded::Packet(Packet {
            ip, l4: L4::Tcp(t), ..
        }) => (ip, t),
        other => panic!("expected TCP, got {other:?}"),
    }
}

fn expect_udp<'a>(d: Decoded<'a>) -> (IpInfo, UdpDatagram<'a>) {
    match d {
        Decoded::Packet(Packet {
            ip, l4: L4::Udp(u), ..
        }) => (ip, u),
        other => panic!("expected UDP, got {other:?}"),
    }
}

fn expect_icmp(d: Decoded<'_>) -> IcmpError {
    match d {
        Decoded::Packet(Packet {
            l4: L4::Icmp(e), ..
        }) => e,
        other => panic!("expected ICMP error, got {other:?}"),
    }
}

#[test]
fn ethernet_ipv4_tcp_syn_field_by_field() {
    let f = with_checksum(
        ETH_IPV4_TCP_SYN.to_vec(),
        SYN_L4,
        74,
        6,
        "10.0.0.1",
        "10.0.0.2",
    );
    let mut d = Decoder::new(&Limits::default());
    let (ipi, t) = expect_tcp(d.decode(&frame(LinkType::ETHERNET, &f)));
    assert_eq!(ipi.src, ip("10.0.0.1"));
    assert_eq!(ipi.dst, ip("10.0.0.2"));
    assert_eq!(ipi.ttl, 128);
    assert_eq!(ipi.ip_id, Some(0x1234));
    assert!(!ipi.reassembled);
    assert_eq!((t.src_port, t.dst_port), (49152, 1433));
    assert_eq!(t.seq, 0x1122_3344);
    assert_eq!(t.flags, TcpFlags(TcpFlags::SYN));
    assert_eq!(t.window, 64240);
    assert_eq!(t.options.mss, Some(1460));
    assert!(t.options.sack_permitted);
    assert_eq!(t.options.timestamps, Some((1, 0)));
    assert_eq!(t.options.window_scale, Some(8));
    assert!(t.options.any);
    assert_eq!((t.payload, t.payload_len), (&[][..], 0));
    assert_eq!(t.checksum_ok, Some(true));
    assert_eq!(d.stats().packets, 1);
}

#[test]
fn bad_tcp_checksum_is_reported_and_counted() {
    let mut f = with_checksum(
        ETH_IPV4_TCP_SYN.to_vec(),
        SYN_L4,
        74,
        6,
        "10.0.0.1",
        "10.0.0.2",
    );
    f[SYN_L4 + 17] ^= 0x40;
    let mut d = Decoder::new(&Limits::default());
    let (_, t) = expect_tcp(d.decode(&frame(LinkType::ETHERNET, &f)));
    assert_eq!(t.checksum_ok, Some(false));
    assert_eq!(d.stats().bad_tcp_checksums, 1);
}

#[test]
fn ethernet_padding_is_not_payload() {
    let f = with_checksum(
        ETH_IPV4_TCP_PADDED.to_vec(),
        PADDED_L4,
        56,
        6,
        "10.0.0.2",
        "10.0.0.1",
    );
    let mut d = Decoder::new(&Limits::default());
    let (_, t) = expect_tcp(d.decode(&frame(LinkType::ETHERNET, &f)));
    assert_eq!(t.payload, b"hi");
    assert_eq!(t.payload_len, 2);
    assert_eq!(t.flags.0, TcpFlags::PSH | TcpFlags::ACK);
    assert!(!t.options.any);
    assert_eq!(t.checksum_ok, Some(true));
    assert_eq!(d.stats().ip_length_exceeds_frame, 0);
}

#[test]
fn snaplen_cut_payload_is_truncated_packet() {
    let f = with_checksum(
        ETH_IPV4_TCP_PADDED.to_vec(),
        PADDED_L4,
        56,
        6,
        "10.0.0.2",
        "10.0.0.1",
    );
    let mut fr = frame(LinkType::ETHERNET, &f[..55]);
    fr.orig_len = 60;
    let mut d = Decoder::new(&Limits::default());
    let (_, t) = expect_tcp(d.decode(&fr));
    assert_eq!(t.payload, b"h");
    assert_eq!(t.payload_len, 2);
    assert_eq!(t.checksum_ok, None);
}

#[test]
fn ip_length_beyond_frame_uses_the_bytes_present() {
    // As in the Malcolm capture: total length 909 in a frame that ends after 2 payload bytes.
    let mut f = ETH_IPV4_TCP_PADDED[..56].to_vec();
    f[16] = 0x03;
    f[17] = 0x8d;
    let mut d = Decoder::new(&Limits::default());
    let (_, t) = expect_tcp(d.decode(&frame(LinkType::ETHERNET, &f)));
    assert_eq!(t.payload, b"hi");
    assert_eq!(t.payload_len, 2);
    // Verified over the bytes present, as tshark does: the sender summed 889 bytes.
    assert_eq!(t.checksum_ok, Some(false));
    assert_eq!(d.stats().ip_length_exceeds_frame, 1);
}

#[test]
fn ip_total_length_zero_means_segmentation_offload() {
    let mut f = ETH_IPV4_TCP_PADDED[..56].to_vec();
    f[16] = 0;
    f[17] = 0;
    let mut d = Decoder::new(&Limits::default());
    let (_, t) = expect_tcp(d.decode(&frame(LinkType::ETHERNET, &f)));
    assert_eq!(t.payload, b"hi");
    assert_eq!(d.stats().ip_length_zero, 1);
}

#[test]
fn raw_ipv6_hop_by_hop_udp() {
    let f = with_checksum(
        RAW_IPV6_HBH_UDP.to_vec(),
        HBH_UDP_L4,
        57,
        17,
        "2001:db8::1",
        "2001:db8::2",
    );
    for link in [
        LinkType::IPV6,
        LinkType::RAW,
        LinkType::RAW_12,
        LinkType::RAW_14,
    ] {
        let mut d = Decoder::new(&Limits::default());
        let (ipi, u) = expect_udp(d.decode(&frame(link, &f)));
        assert_eq!(ipi.src, ip("2001:db8::1"));
        assert_eq!(ipi.ttl, 64);
        assert_eq!(ipi.ip_id, None);
        assert_eq!((u.src_port, u.dst_port), (5353, 1434));
        assert_eq!((u.payload, u.payload_len), (&[2u8][..], 1));
        assert_eq!(d.stats().bad_udp_checksums, 0);
    }
    // IPv6 bytes on an IPv4-only raw link type are malformed.
    assert_eq!(
        decode_one(LinkType::IPV4, &f).0.as_deref(),
        Some("Skipped(Malformed)")
    );
    let mut bad = f.clone();
    bad[HBH_UDP_L4 + 8] = 3;
    let mut d = Decoder::new(&Limits::default());
    expect_udp(d.decode(&frame(LinkType::IPV6, &bad)));
    assert_eq!(d.stats().bad_udp_checksums, 1);
}

#[test]
fn linux_sll_ipv4_udp() {
    let mut d = Decoder::new(&Limits::default());
    let (ipi, u) = expect_udp(d.decode(&frame(LinkType::LINUX_SLL, &SLL_IPV4_UDP)));
    assert_eq!((ipi.src, ipi.dst), (ip("192.168.1.5"), ip("192.168.1.9")));
    assert_eq!((u.src_port, u.dst_port), (53, 40000));
    assert_eq!(u.payload, &[0xde, 0xad, 0xbe, 0xef]);
}

#[test]
fn linux_sll2_ipv6_tcp_rst() {
    let f = with_checksum(
        SLL2_IPV6_TCP_RST.to_vec(),
        SLL2_L4,
        80,
        6,
        "2001:db8::2",
        "2001:db8::1",
    );
    let mut d = Decoder::new(&Limits::default());
    let (ipi, t) = expect_tcp(d.decode(&frame(LinkType::LINUX_SLL2, &f)));
    assert_eq!(ipi.ttl, 255);
    assert!(t.flags.rst() && t.flags.ack());
    assert_eq!(t.ack, 0xaabb_ccdd);
    assert_eq!(t.checksum_ok, Some(true));
}

#[test]
fn qinq_icmp_port_unreachable_quotes_udp() {
    let mut d = Decoder::new(&Limits::default());
    let e = expect_icmp(d.decode(&frame(LinkType::ETHERNET, &ETH_QINQ_ICMP_PORT_UNREACH)));
    assert!(!e.v6);
    assert_eq!((e.icmp_type, e.code), (3, 3));
    assert_eq!(e.kind, IcmpErrorKind::DestinationUnreachable);
    assert_eq!(
        e.original,
        Some(QuotedHeader {
            src: ip("10.0.0.1"),
            dst: ip("10.0.0.9"),
            protocol: 17,
            src_port: Some(50001),
            dst_port: Some(1434),
            tcp_seq: None,
        })
    );
}

#[test]
fn null_icmp_time_exceeded_quotes_tcp() {
    let mut d = Decoder::new(&Limits::default());
    let e = expect_icmp(d.decode(&frame(LinkType::NULL, &NULL_LE_ICMP_TIME_EXCEEDED_TCP)));
    assert_eq!(e.kind, IcmpErrorKind::TimeExceeded);
    let q = e.original.unwrap();
    assert_eq!((q.src, q.dst), (ip("10.1.1.1"), ip("10.2.2.2")));
    assert_eq!(
        (q.protocol, q.src_port, q.dst_port),
        (6, Some(50002), Some(1433))
    );
    assert_eq!(q.tcp_seq, Some(0x0102_0304));
    // The same frame with the family written big-endian decodes the same way.
    let mut be = NULL_LE_ICMP_TIME_EXCEEDED_TCP;
    be[..4].copy_from_slice(&[0, 0, 0, 2]);
    let e2 = expect_icmp(d.decode(&frame(LinkType::NULL, &be)));
    assert_eq!(e2, e);
}

#[test]
fn loop_icmpv6_packet_too_big_quotes_tcp() {
    let mut d = Decoder::new(&Limits::default());
    let e = expect_icmp(d.decode(&frame(LinkType::LOOP, &LOOP_ICMPV6_PTB_TCP)));
    assert!(e.v6);
    assert_eq!(e.kind, IcmpErrorKind::PacketTooBig);
    let q = e.original.unwrap();
    assert_eq!((q.src, q.dst), (ip("2001:db8::1"), ip("2001:db8::2")));
    assert_eq!(
        (q.src_port, q.dst_port, q.tcp_seq),
        (Some(50003), Some(1433), Some(0x0a0b_0c0d))
    );
}

#[test]
fn icmp_echo_is_other() {
    let mut f = NULL_LE_ICMP_TIME_EXCEEDED_TCP;
    f[24] = 8; // echo request
    let mut d = Decoder::new(&Limits::default());
    assert!(matches!(
        d.decode(&frame(LinkType::NULL, &f)),
        Decoded::Packet(Packet {
            l4: L4::IcmpOther,
            ..
        })
    ));
}

/// Every fixture, with each link type it is valid for and the offset of its IP header.
fn fixtures() -> Vec<(LinkType, Vec<u8>)> {
    vec![
        (LinkType::ETHERNET, ETH_IPV4_TCP_SYN.to_vec()),
        (LinkType::ETHERNET, ETH_IPV4_TCP_PADDED.to_vec()),
        (LinkType::IPV6, RAW_IPV6_HBH_UDP.to_vec()),
        (LinkType::RAW, RAW_IPV6_HBH_UDP.to_vec()),
        (LinkType::LINUX_SLL, SLL_IPV4_UDP.to_vec()),
        (LinkType::LINUX_SLL2, SLL2_IPV6_TCP_RST.to_vec()),
        (LinkType::ETHERNET, ETH_QINQ_ICMP_PORT_UNREACH.to_vec()),
        (LinkType::NULL, NULL_LE_ICMP_TIME_EXCEEDED_TCP.to_vec()),
        (LinkType::LOOP, LOOP_ICMPV6_PTB_TCP.to_vec()),
    ]
}

#[test]
fn every_snaplen_truncation_is_truncated_or_a_short_packet() {
    for (link, f) in fixtures() {
        for n in 0..f.len() {
            let mut fr = frame(link, &f[..n]);
            fr.orig_len = f.len() as u32;
            let mut d = Decoder::new(&Limits::default());
            match d.decode(&fr) {
                Decoded::Skipped(SkipReason::Truncated) => {}
                Decoded::Packet(p) => match p.l4 {
                    L4::Tcp(t) => {
                        assert!(t.payload.len() as u32 <= t.payload_len);
                        if (t.payload.len() as u32) < t.payload_len {
                            assert_eq!(t.checksum_ok, None, "{link:?} {n}");
                        }
                    }
                    L4::Udp(u) => assert!(u.payload.len() as u32 <= u.payload_len),
                    // A cut quote leaves an ICMP error with fewer known fields.
                    L4::Icmp(_) | L4::IcmpOther => {}
                },
                other => panic!("{link:?} cut at {n}: {other:?}"),
            }
        }
    }
}

#[test]
fn frames_really_this_short_never_panic() {
    // orig_len = captured length: the IP length then exceeds the frame, counted, no panic.
    for (link, f) in fixtures() {
        for n in 0..f.len() {
            let _ = decode_one(link, &f[..n]);
        }
    }
}

#[test]
fn impossible_lengths_are_malformed() {
    let cases: [(usize, u8, &str); 4] = [
        (14, 0x44, "IHL 4"),
        (14, 0x35, "version 3"),
        (46, 0x40, "TCP data offset 4"),
        (46, 0xf0, "TCP data offset 15 > segment"),
    ];
    for (at, v, what) in cases {
        let mut f = ETH_IPV4_TCP_PADDED;
        f[at] = v;
        assert_eq!(
            decode_one(LinkType::ETHERNET, &f).0.as_deref(),
            Some("Skipped(Malformed)"),
            "{what}"
        );
    }
    // Total length 19, below the 20-byte header.
    let mut f = ETH_IPV4_TCP_PADDED;
    f[17] = 19;
    assert_eq!(
        decode_one(LinkType::ETHERNET, &f).0.as_deref(),
        Some("Skipped(Malformed)")
    );
    // Total length 30: a 10-byte TCP segment.
    f[17] = 30;
    assert_eq!(
        decode_one(LinkType::ETHERNET, &f).0.as_deref(),
        Some("Skipped(Malformed)")
    );
}

#[test]
fn other_ethertypes_and_transports_are_skipped() {
    let mut f = ETH_IPV4_TCP_PADDED;
    f[12] = 0x88;
    f[13] = 0xcc; // LLDP
    let (out, stats) = decode_one(LinkType::ETHERNET, &f);
    assert_eq!(out.as_deref(), Some("Skipped(NotIp)"));
    assert_eq!(stats.skipped(SkipReason::NotIp), 1);
    f[12] = 0x00;
    f[13] = 0x2e; // 802.3 length
    assert_eq!(
        decode_one(LinkType::ETHERNET, &f).0.as_deref(),
        Some("Skipped(NotIp)")
    );
    let mut f = ETH_IPV4_TCP_PADDED;
    f[23] = 47; // GRE
    let (out, stats) = decode_one(LinkType::ETHERNET, &f);
    assert_eq!(out.as_deref(), Some("Skipped(OtherTransport)"));
    assert_eq!(stats.skipped(SkipReason::OtherTransport), 1);
    let (out, stats) = decode_one(LinkType(9), &f);
    assert_eq!(out.as_deref(), Some("Skipped(UnsupportedLink)"));
    assert_eq!(stats.skipped(SkipReason::UnsupportedLink), 1);
}

// ---- fragments ----------------------------------------------------------------------------

/// A UDP datagram 10.0.0.1:5000 → 10.0.0.2:1434 with a `len`-byte payload, checksum valid.
fn udp_datagram(len: usize) -> Vec<u8> {
    let mut u = vec![0x13, 0x88, 0x05, 0x9a];
    u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..len).map(|i| (i % 251) as u8));
    let c = transport_checksum(ip("10.0.0.1"), ip("10.0.0.2"), 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// A raw IPv4 packet (link type 228) carrying `data` as the fragment at byte `offset`.
fn v4_fragment(id: u16, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0x00];
    p.extend_from_slice(&((20 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    let ff = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    p.extend_from_slice(&ff.to_be_bytes());
    p.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    p.extend_from_slice(data);
    p
}

/// A raw IPv6 packet (link type 229) with a Fragment header carrying `data`.
fn v6_fragment(id: u32, offset: usize, more: bool, data: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[44, 64]);
    p.extend_from_slice(&ip6_octets("2001:db8::1"));
    p.extend_from_slice(&ip6_octets("2001:db8::2"));
    let om = (offset as u16) | u16::from(more);
    p.extend_from_slice(&[17, 0]);
    p.extend_from_slice(&om.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(data);
    p
}

fn ip6_octets(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!(),
    }
}

fn at(secs: i64, link: LinkType, data: &[u8]) -> Frame<'_> {
    let mut f = frame(link, data);
    f.ts = crate::time::Timestamp::from_secs_nanos(secs, 0);
    f
}

/// Feeds fragments (offset, len) of `whole` in the given order; returns what the last one
/// gave as (src port, dst port, payload) if it completed a datagram.
fn reassemble_v4(d: &mut Decoder, whole: &[u8], parts: &[(usize, usize)]) -> Option<Vec<u8>> {
    let end = whole.len();
    let mut last = None;
    for &(off, len) in parts {
        let more = off + len < end;
        let p = v4_fragment(7, off, more, &whole[off..off + len]);
        last = match d.decode(&at(1, LinkType::IPV4, &p)) {
            Decoded::FragmentHeld => None,
            Decoded::Packet(Packet {
                ip, l4: L4::Udp(u), ..
            }) => {
                assert!(ip.reassembled);
                assert_eq!(ip.ip_id, Some(7));
                assert_eq!((u.src_port, u.dst_port), (5000, 1434));
                assert_eq!(u.payload_len as usize, u.payload.len());
                Some(u.payload.to_vec())
            }
            other => panic!("{other:?}"),
        };
    }
    last
}

#[test]
fn v4_fragments_in_order() {
    let whole = udp_datagram(100); // 108 bytes
    let mut d = Decoder::new(&Limits::default());
    let got = reassemble_v4(&mut d, &whole, &[(0, 40), (40, 40), (80, 28)]).unwrap();
    assert_eq!(got, whole[8..]);
    let s = d.stats();
    assert_eq!(
        (s.fragments_held, s.fragments_reassembled, s.packets),
        (2, 1, 1)
    );
    assert_eq!(d.fragments_pending(), 0);
}

#[test]
fn v4_fragments_out_of_order_overlapping_and_duplicate() {
    let whole = udp_datagram(100);
    let mut d = Decoder::new(&Limits::default());
    // Last first, then a duplicate of it, then an overlapping middle, then the first.
    let got = reassemble_v4(&mut d, &whole, &[(80, 28), (80, 28), (32, 56), (0, 40)]).unwrap();
    assert_eq!(got, whole[8..]);
    assert_eq!(d.stats().fragments_overlapping, 3);
}

#[test]
fn v4_overlap_keeps_the_first_copy() {
    let whole = udp_datagram(40); // 48 bytes
    let mut d = Decoder::new(&Limits::default());
    assert!(matches!(
        d.decode(&at(
            1,
            LinkType::IPV4,
            &v4_fragment(9, 0, true, &whole[..24])
        )),
        Decoded::FragmentHeld
    ));
    // A second copy of bytes 16..24 with different content, then the rest.
    let mut forged = whole[16..48].to_vec();
    forged[0] ^= 0xff;
    match d.decode(&at(1, LinkType::IPV4, &v4_fragment(9, 16, false, &forged))) {
        Decoded::Packet(Packet { l4: L4::Udp(u), .. }) => assert_eq!(u.payload, &whole[8..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fragments_expire_by_packet_time() {
    let whole = udp_datagram(100);
    let mut d = Decoder::new(&Limits::default());
    let p = v4_fragment(1, 0, true, &whole[..40]);
    assert!(matches!(
        d.decode(&at(10, LinkType::IPV4, &p)),
        Decoded::FragmentHeld
    ));
    d.expire(crate::time::Timestamp::from_secs_nanos(39, 0));
    assert_eq!(d.fragments_pending(), 1);
    // The next frame, 31 s later, expires it before it is looked at.
    let rest = v4_fragment(1, 40, false, &whole[40..]);
    assert!(matches!(
        d.decode(&at(41, LinkType::IPV4, &rest)),
        Decoded::FragmentHeld
    ));
    assert_eq!(d.stats().fragments_expired, 1);
    d.expire(crate::time::Timestamp::from_secs_nanos(100, 0));
    assert_eq!(d.stats().fragments_expired, 2);
    assert_eq!(d.fragments_pending(), 0);
}

#[test]
fn fragment_limits() {
    let whole = udp_datagram(100);
    let limits = Limits {
        ip_fragment_bytes: 64,
        ip_fragment_datagrams: 2,
        ..Limits::default()
    };
    let mut d = Decoder::new(&limits);
    // Bytes beyond 64 in one datagram: the fragment and the rest of its datagram are dropped.
    let p = v4_fragment(1, 0, true, &whole[..40]);
    assert!(matches!(
        d.decode(&at(1, LinkType::IPV4, &p)),
        Decoded::FragmentHeld
    ));
    let p = v4_fragment(1, 40, false, &whole[40..]);
    assert!(matches!(
        d.decode(&at(1, LinkType::IPV4, &p)),
        Decoded::Skipped(SkipReason::FragmentLimit)
    ));
    // Two datagrams at once: a third is refused.
    let p = v4_fragment(2, 0, true, &whole[..8]);
    assert!(matches!(
        d.decode(&at(1, LinkType::IPV4, &p)),
        Decoded::FragmentHeld
    ));
    let p = v4_fragment(3, 0, true, &whole[..8]);
    assert!(matches!(
        d.decode(&at(1, LinkType::IPV4, &p)),
        Decoded::Skipped(SkipReason::FragmentLimit)
    ));
    let s = d.stats();
    assert_eq!(s.fragments_dropped, 2);
    assert_eq!(s.skipped(SkipReason::FragmentLimit), 2);
    // After the timeout there is room again.
    let p = v4_fragment(3, 0, true, &whole[..8]);
    assert!(matches!(
        d.decode(&at(100, LinkType::IPV4, &p)),
        Decoded::FragmentHeld
    ));
}

#[test]
fn v6_fragments_reassemble() {
    let mut whole = udp_datagram(100);
    // The UDP checksum was computed for IPv4 addresses; reassembled datagrams are not
    // checksummed, so it does not matter here.
    whole[6] = 0;
    let mut d = Decoder::new(&Limits::default());
    let p = v6_fragment(0xdead_beef, 56, false, &whole[56..]);
    assert!(matches!(
        d.decode(&at(1, LinkType::IPV6, &p)),
        Decoded::FragmentHeld
    ));
    let p = v6_fragment(0xdead_beef, 0, true, &whole[..56]);
    let (ipi, u) = expect_udp(d.decode(&at(1, LinkType::IPV6, &p)));
    assert!(ipi.reassembled);
    assert_eq!(ipi.ip_id, Some(0xdead_beef));
    assert_eq!(ipi.src, ip("2001:db8::1"));
    assert_eq!(u.payload, &whole[8..]);
}

#[test]
fn reassembled_tcp_has_no_checksum_verdict() {
    let mut seg = ETH_IPV4_TCP_PADDED[PADDED_L4..56].to_vec(); // 22-byte segment
    seg.extend_from_slice(&[b'!'; 10]);
    let mut d = Decoder::new(&Limits::default());
    let mut first = v4_fragment(5, 0, true, &seg[..16]);
    first[9] = 6;
    let mut second = v4_fragment(5, 16, false, &seg[16..]);
    second[9] = 6;
    assert!(matches!(
        d.decode(&at(1, LinkType::IPV4, &first)),
        Decoded::FragmentHeld
    ));
    let (ipi, t) = expect_tcp(d.decode(&at(1, LinkType::IPV4, &second)));
    assert!(ipi.reassembled);
    assert_eq!(t.payload, b"hi!!!!!!!!!!");
    assert_eq!(t.checksum_ok, None);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    const LINKS: [LinkType; 11] = [
        LinkType::NULL,
        LinkType::ETHERNET,
        LinkType::RAW_12,
        LinkType::RAW_14,
        LinkType::RAW,
        LinkType::LOOP,
        LinkType::LINUX_SLL,
        LinkType::IPV4,
        LinkType::IPV6,
        LinkType::LINUX_SLL2,
        LinkType(9),
    ];

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            link in 0..LINKS.len(),
            data in proptest::collection::vec(any::<u8>(), 0..200),
            orig_extra in 0u32..100,
        ) {
            let mut d = Decoder::new(&Limits::default());
            let mut f = frame(LINKS[link], &data);
            f.orig_len = data.len() as u32 + orig_extra;
            let _ = d.decode(&f);
            prop_assert_eq!(d.stats().frames, 1);
        }

        /// Mutated fixtures reach deeper than random bytes.
        #[test]
        fn mutated_fixtures_never_panic(
            which in 0..9usize,
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<proptest::sample::Index>(),
        ) {
            let (link, mut f) = fixtures().swap_remove(which);
            for (i, v) in flips {
                let i = i.index(f.len());
                f[i] = v;
            }
            let n = cut.index(f.len() + 1);
            let mut d = Decoder::new(&Limits::default());
            let _ = d.decode(&frame(link, &f[..n]));
        }

        /// Random fragment streams: no panic, memory bounded by the limits.
        #[test]
        fn random_fragments_never_panic(
            frags in proptest::collection::vec(
                (0u16..3, 0usize..200, any::<bool>(), 0usize..64, any::<bool>(), 0i64..100),
                1..40,
            ),
        ) {
            let limits = Limits { ip_fragment_bytes: 512, ip_fragment_datagrams: 2, ..Limits::default() };
            let mut d = Decoder::new(&limits);
            let data = udp_datagram(200);
            for (id, off, more, len, v6, t) in frags {
                let off = off * 8;
                let len = len.min(data.len());
                let p = if v6 {
                    v6_fragment(u32::from(id), off, more, &data[..len])
                } else {
                    v4_fragment(id, off, more, &data[..len])
                };
                let link = if v6 { LinkType::IPV6 } else { LinkType::IPV4 };
                let _ = d.decode(&at(t, link, &p));
                prop_assert!(d.fragments_pending() <= 2);
            }
        }
    }
}

// ---- tunnels ------------------------------------------------------------------------------

#[test]
fn ipv6_in_ipv4_is_decoded_to_the_inner_connection() {
    // 6to4 as in netmon2-ipv6-port2433_wswiki_FTPv6-1.cap: Ethernet, IPv4 protocol 41,
    // IPv6, TCP SYN 1026 -> 21.
    let mut tcp = vec![
        0x04, 0x02, 0x00, 0x15, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x40, 0, 0, 0, 0, 0,
    ];
    let src6: IpAddr = ip("2002:5183:4383::5183:4383");
    let dst6: IpAddr = ip("2001:638:902:1:201:2ff:fee2:7596");
    let c = transport_checksum(src6, dst6, 6, &tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
    for a in [src6, dst6] {
        if let IpAddr::V6(a) = a {
            v6.extend_from_slice(&a.octets());
        }
    }
    v6.extend_from_slice(&tcp);
    let total = (20 + v6.len()) as u16;
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 0, 0, 1, 0, 0, 60, 41, 0, 0, 81, 131, 67, 131, 192, 88, 99, 1,
    ]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&v6);
    let mut d = Decoder::new(&Limits::default());
    let (info, seg) = expect_tcp(d.decode(&frame(LinkType::ETHERNET, &f)));
    assert_eq!(info.src, src6);
    assert_eq!(info.dst, dst6);
    assert_eq!(info.ttl, 64, "the inner hop limit is the connection's");
    assert_eq!((seg.src_port, seg.dst_port), (1026, 21));
    assert_eq!(seg.checksum_ok, Some(true));
    // A tunnel nested past the depth limit is skipped, not followed forever.
    let mut nested = f[14..34].to_vec();
    nested[9] = 4;
    let mut deep = f[..14].to_vec();
    for _ in 0..5 {
        deep.extend_from_slice(&nested);
    }
    let mut d = Decoder::new(&Limits::default());
    assert!(matches!(
        d.decode(&frame(LinkType::ETHERNET, &deep)),
        Decoded::Skipped(_)
    ));
}
