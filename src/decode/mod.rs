//! Link, network and transport decoding: a [`Frame`](crate::capture::Frame) in, a typed
//! [`Decoded`] out. Nothing here panics on input; a frame that cannot be decoded is counted
//! under a [`SkipReason`].
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::IpAddr;

use crate::capture::FrameRef;
use crate::time::Timestamp;

/// A decoded frame: an IP packet with its transport, or the reason it was skipped.
#[derive(Debug)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    /// An IP fragment was stored; the datagram is not complete yet.
    FragmentHeld,
    Skipped(SkipReason),
}

/// Why a frame was not turned into a packet. Counted per reason in the input's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// A link type we do not decode (PPP, 802.11, …).
    UnsupportedLink,
    /// The link layer carries something other than IPv4/IPv6 (ARP, LLDP, IPX, …).
    NotIp,
    /// Headers cut short by the snaplen or a damaged frame.
    Truncated,
    /// A header field makes no sense (bad IP version, header length below minimum, …).
    Malformed,
    /// An IP protocol other than TCP, UDP, ICMP, ICMPv6.
    OtherTransport,
    /// A fragment was dropped because a fragment limit was reached.
    FragmentLimit,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::UnsupportedLink => "unsupported link type",
            SkipReason::NotIp => "not IP",
            SkipReason::Truncated => "truncated headers",
            SkipReason::Malformed => "malformed headers",
            SkipReason::OtherTransport => "other IP protocol",
            SkipReason::FragmentLimit => "IP fragment limit reached",
        }
    }
}

/// An IP packet with its decoded transport.
#[derive(Debug)]
pub struct Packet<'a> {
    pub frame: FrameRef,
    pub ts: Timestamp,
    /// The frame's length on the wire (its `orig_len`): per-connection byte counts match
    /// tshark's conversation table only when they count whole frames.
    pub wire_len: u32,
    pub ip: IpInfo,
    pub l4: L4<'a>,
}

/// The IP header facts later stages use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit: tells a peer's RST from one forged by a middlebox.
    pub ttl: u8,
    /// IPv4 identification (None for IPv6 unless a fragment header carried one):
    /// with seq and payload it tells a duplicated capture from a retransmission.
    pub ip_id: Option<u32>,
    /// True when this packet was reassembled from IP fragments.
    pub reassembled: bool,
}

/// The transport layer of a packet.
#[derive(Debug)]
pub enum L4<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    Icmp(IcmpError),
    /// ICMP messages other than errors (echo, neighbour discovery, …).
    IcmpOther,
}

/// TCP header flags, as the on-wire bit mask (FIN = 0x01 … CWR = 0x80).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

/// TCP options we use (RFC 9293, 7323, 2018).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// Up to four SACK blocks (left, right); `sack_count` of them are valid.
    pub sack: [(u32, u32); 4],
    pub sack_count: u8,
    /// (TSval, TSecr)
    pub timestamps: Option<(u32, u32)>,
    /// True when the header carried any option bytes at all (even NOPs): the option
    /// "shape" of a host, compared with the RST's to spot forged resets.
    pub any: bool,
}

/// A TCP segment: header fields and its payload, borrowed from the frame (or the decoder's
/// fragment buffer).
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The raw window field, not yet scaled.
    pub window: u16,
    pub options: TcpOptions,
    /// Payload bytes actually captured.
    pub payload: &'a [u8],
    /// Payload length on the wire (from the IP length); larger than `payload.len()` when the
    /// frame was cut by the snaplen.
    pub payload_len: u32,
    /// None when the checksum could not be verified (truncated frame, reassembled datagram).
    pub checksum_ok: Option<bool>,
}

/// A UDP datagram.
#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
    pub payload_len: u32,
}

/// An ICMP or ICMPv6 error with the original datagram's header it quotes, so it can be
/// matched to the TCP or UDP flow it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    pub v6: bool,
    pub icmp_type: u8,
    pub code: u8,
    pub kind: IcmpErrorKind,
    /// The quoted original packet's addresses, protocol and ports (as sent by the original
    /// sender: `src` is the host that sent the packet this error answers).
    pub original: Option<QuotedHeader>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpErrorKind {
    DestinationUnreachable,
    TimeExceeded,
    ParameterProblem,
    PacketTooBig,
    SourceQuench,
    Redirect,
}

/// The header of the datagram an ICMP error quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotedHeader {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// TCP sequence number of the quoted segment, when at least 8 bytes of it are quoted.
    pub tcp_seq: Option<u32>,
}
