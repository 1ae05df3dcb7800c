//! TCP connection tracking and reassembly: packets in, per-direction ordered stream events
//! and per-connection TCP facts out. Protocol parsers downstream never see raw segments.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod analysis;
mod conn_table;
mod flow_hash;
mod reassembly;
mod state;

pub use conn_table::{Tracker, TrackerStats};
pub(crate) use flow_hash::FxBuild;

use std::net::SocketAddr;

use crate::capture::FrameRef;
use crate::time::Timestamp;

/// A connection's identity: numbered in order of first packet, so two runs agree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u32);

/// Which way bytes flow, relative to the roles decided once per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
    pub fn index(self) -> usize {
        match self {
            Direction::ToServer => 0,
            Direction::ToClient => 1,
        }
    }
}

/// One event of one direction of one connection, in stream order.
#[derive(Debug)]
pub struct StreamEvent<'a> {
    pub conn: ConnId,
    pub dir: Direction,
    /// The frame that made this event happen (for data released from the out-of-order
    /// buffer: the frame that filled the hole).
    pub frame: FrameRef,
    pub ts: Timestamp,
    pub kind: StreamEventKind<'a>,
}

#[derive(Debug)]
pub enum StreamEventKind<'a> {
    /// Next in-order bytes of this direction; `frame` is the frame that carried the first of them.
    Data(&'a [u8]),
    /// Bytes of this direction that will never be seen (not captured, or dropped at a buffer
    /// limit). The stream continues after them.
    Gap { len: u64 },
    /// A FIN, in stream order.
    Fin,
    /// A RST from the sender of this direction.
    Rst,
}

/// Receives what the tracker produces. The session layer implements it.
pub trait StreamSink {
    /// A connection was first seen; roles are decided.
    fn on_open(&mut self, conn: ConnId, client: SocketAddr, server: SocketAddr) {
        let _ = (conn, client, server);
    }
    fn on_event(&mut self, ev: StreamEvent<'_>);
    /// A connection ended (RST, both FINs, port reuse, evicted, or end of capture) and its
    /// TCP facts are final.
    fn on_close(&mut self, facts: TcpFacts);
}

/// How a connection's roles were decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleBasis {
    /// The client sent the first SYN.
    Syn,
    /// Only a SYN-ACK was seen: its receiver is the client.
    SynAck,
    /// Mid-stream: the lower (well-known) port is the server. Later stages may swap roles
    /// when TDS requests show the other side is the client.
    Port,
}

/// How a connection ended, as far as TCP can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEnd {
    /// FIN seen from both sides; `first` sent the first FIN.
    Fin { first: Direction },
    /// Only one side sent a FIN.
    HalfClosed { by: Direction },
    /// A RST ended it; `by` is the side whose address sent the first RST.
    Rst { by: Direction },
    /// Still open at the end of the capture (or evicted at a limit).
    Open,
}

impl TcpEnd {
    /// The direction whose sender ended the connection first (FIN or RST), if it ended:
    /// `ToServer` means the client closed it.
    pub fn closed_by(self) -> Option<Direction> {
        match self {
            TcpEnd::Fin { first } => Some(first),
            TcpEnd::HalfClosed { by } | TcpEnd::Rst { by } => Some(by),
            TcpEnd::Open => None,
        }
    }
}

/// A moment in a connection with the frame to open in Wireshark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub frame: FrameRef,
    pub ts: Timestamp,
}

/// Counts of Wireshark's `tcp.analysis.*` flags and of what Wireshark lacks, per direction
/// (index with [`Direction::index`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnalysisCounts {
    pub retransmission: u32,
    pub fast_retransmission: u32,
    pub spurious_retransmission: u32,
    pub keep_alive: u32,
    pub keep_alive_ack: u32,
    pub zero_window: u32,
    pub zero_window_probe: u32,
    pub zero_window_probe_ack: u32,
    pub window_update: u32,
    pub window_full: u32,
    pub duplicate_ack: u32,
    pub lost_segment: u32,
    pub ack_lost_segment: u32,
    pub out_of_order: u32,
    /// Byte-identical copies of a segment (same IP ID, seq, length, payload): capture artefacts.
    pub duplicate: u32,
    pub bad_checksum: u32,
}

/// Per-direction facts: counters and the sender's shape.
#[derive(Clone, Debug, Default)]
pub struct DirFacts {
    pub frames: u64,
    /// Bytes of all frames on the wire (frame `orig_len`), as tshark's conversation table counts.
    pub frame_bytes: u64,
    /// TCP payload bytes (including retransmissions).
    pub payload_bytes: u64,
    /// Payload bytes delivered in order, once.
    pub stream_bytes: u64,
    /// Bytes announced as gaps.
    pub gap_bytes: u64,
    pub gaps: u32,
    pub flags: AnalysisCounts,
    /// Wireshark's flags on the byte-identical copies counted in `flags.duplicate` (left out
    /// of `flags`): tshark's `tcp.analysis.*` counts equal `flags` plus these.
    pub duplicate_copy_flags: AnalysisCounts,
    /// Mid-stream pickup: payload bytes sent before the first byte we started the stream at.
    pub bytes_before_start: u64,
    /// Largest number of times one segment was retransmitted.
    pub max_retransmits_per_segment: u32,
    /// TTL / hop limit of this side's packets: the first seen and whether it ever changed.
    pub ttl: Option<u8>,
    pub ttl_varies: bool,
    /// Whether this side's non-SYN segments carry TCP options (e.g. timestamps).
    pub options_shape: Option<bool>,
    pub syn: Option<Mark>,
    pub syn_count: u32,
    pub fin: Option<Mark>,
    pub rst: Option<Mark>,
    /// TTL, ACK flag and option presence of the first RST from this side.
    pub rst_ttl: Option<u8>,
    pub rst_has_ack: bool,
    pub rst_has_options: bool,
    pub rst_count: u32,
    pub first_data: Option<Mark>,
    pub last_data: Option<Mark>,
    pub window_scale: Option<u8>,
    pub mss: Option<u16>,
    /// Keep-alives this side sent since the peer last sent anything (a run the peer never
    /// answered, if the connection ended with it), and the first and last of that run.
    pub unanswered_keepalives: u32,
    pub keepalive_run: Option<(Mark, Mark)>,
    /// Retransmissions of one segment in a row with nothing from the peer in between, and
    /// the first and last of them: a retransmission storm when the connection then ends.
    pub retransmission_run: u32,
    pub retransmission_run_marks: Option<(Mark, Mark)>,
    /// Zero-window periods: count and total seconds advertised closed.
    pub zero_window_periods: u32,
    pub zero_window_ns: i64,
}

/// Everything TCP knows about one connection when it ends.
#[derive(Clone, Debug)]
pub struct TcpFacts {
    pub id: ConnId,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub roles: RoleBasis,
    pub first: Mark,
    pub last: Mark,
    /// The client's SYN-ACK arrival, if a handshake was seen.
    pub syn_ack: Option<Mark>,
    /// SYN → SYN-ACK time measured at the capture point.
    pub handshake_rtt_ns: Option<i64>,
    pub mid_stream: bool,
    pub end: TcpEnd,
    /// Ended because a limit forced it out of the table, not because it finished.
    pub evicted: bool,
    /// [to_server, to_client]
    pub dirs: [DirFacts; 2],
    /// ICMP errors (destination unreachable, time exceeded, …) that quote this connection's
    /// packets: the first one and how many.
    pub icmp_error: Option<IcmpSeen>,
}

/// An ICMP or ICMPv6 error that answered one of a connection's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpSeen {
    pub at: Mark,
    pub error: crate::decode::IcmpError,
    /// The address that sent the error (a router, or the destination host itself).
    pub from: std::net::IpAddr,
    pub count: u32,
}

impl TcpFacts {
    pub fn dir(&self, d: Direction) -> &DirFacts {
        match d {
            Direction::ToServer => &self.dirs[0],
            Direction::ToClient => &self.dirs[1],
        }
    }

    /// The client sent SYNs and the connection never came up: no SYN-ACK, and the client did
    /// not go on either (then the handshake only completed out of the capture's sight).
    pub fn never_connected(&self) -> bool {
        self.dir(Direction::ToServer).syn.is_some()
            && self.syn_ack.is_none()
            && !self.handshake_unseen()
    }

    /// No SYN-ACK was captured, yet the client went on sending after its SYNs (ACKs, data):
    /// the handshake completed out of the capture's sight (one direction captured). A
    /// capture's second copies of the SYN are not "going on".
    pub fn handshake_unseen(&self) -> bool {
        let c = self.dir(Direction::ToServer);
        self.syn_ack.is_none() && c.frames > u64::from(c.syn_count) + u64::from(c.flags.duplicate)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tshark_check;
