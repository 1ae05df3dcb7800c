//! One tracked connection: roles, per-direction facts, reassembly and Wireshark's analysis.

use std::net::SocketAddr;

use crate::decode::{Packet, TcpSegment};
use crate::time::Timestamp;

use super::analysis::{self, SeqAnalysis};
use super::reassembly::{Effect, Out, Reassembler};
use super::{ConnId, DirFacts, Direction, Mark, RoleBasis, StreamSink, TcpEnd, TcpFacts};

/// Recent segments remembered per direction to recognise capture duplicates.
const DUP_RING: usize = 4;
/// Without an IP ID or TCP timestamp to tell copies apart, only copies this close in time are
/// taken for capture duplicates: a copy made by the capture (span port seeing both ways,
/// merged interfaces) is microseconds apart, while even back-to-back duplicate ACKs from a
/// host are spaced by the arrival of the segments that trigger them.
const DUP_UNTAGGED_NS: i64 = 20_000;
/// Segments remembered per direction for "most retransmissions of one segment".
const RETRANS_TRACK: usize = 8;

/// What identifies a byte-identical copy of a segment, hashed to 64 bits to keep the
/// per-connection ring small: IP ID, seq, ack, flags, window, length, TSval, and at most
/// 32 bytes from each end of the payload (cheap on every packet; with everything else
/// equal, enough to tell copies from rewrites).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SegSig {
    hash: u64,
    /// Whether an IP ID or a TCP timestamp tells this segment from a retransmission.
    tagged: bool,
}

impl SegSig {
    fn new(ip_id: Option<u32>, seg: &TcpSegment<'_>) -> SegSig {
        use std::hash::Hasher;
        let mut h = super::flow_hash::FxHasher::default();
        let tsval = seg.options.timestamps.map(|t| t.0);
        h.write_u64(u64::from(ip_id.unwrap_or(0)) << 32 | u64::from(seg.seq));
        h.write_u64(u64::from(seg.ack) << 32 | u64::from(seg.payload_len));
        h.write_u64(
            u64::from(seg.flags.0) << 48
                | u64::from(seg.window) << 32
                | u64::from(tsval.unwrap_or(0)),
        );
        let p = seg.payload;
        if p.len() <= 64 {
            h.write(p);
        } else {
            h.write(p.get(..32).unwrap_or(&[]));
            h.write(p.get(p.len() - 32..).unwrap_or(&[]));
        }
        SegSig {
            hash: h.finish(),
            tagged: ip_id.is_some() || tsval.is_some(),
        }
    }
}

#[derive(Debug, Default)]
struct DirState {
    recent: [Option<(u64, i64)>; DUP_RING],
    recent_next: usize,
    retrans: [(u32, u32); RETRANS_TRACK],
    retrans_next: usize,
    /// Sequence number of the last retransmitted segment, to see runs of the same one.
    last_retransmitted: Option<u32>,
    zero_window_since: Option<Timestamp>,
    isn: Option<u32>,
}

pub(crate) struct Conn {
    pub id: ConnId,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub roles: RoleBasis,
    pub mid_stream: bool,
    pub first: Mark,
    pub last: Mark,
    pub syn_ack: Option<Mark>,
    last_syn_ts: Option<Timestamp>,
    /// The client ISN a SYN-ACK acknowledged.
    expected_client_isn: Option<u32>,
    handshake_rtt_ns: Option<i64>,
    pub dirs: [DirFacts; 2],
    streams: [Reassembler; 2],
    analysis: SeqAnalysis,
    state: [DirState; 2],
    first_fin: Option<Direction>,
    first_rst: Option<Direction>,
    /// Ended by RST or by FINs from both sides; kept a little longer for stray packets.
    pub ended: bool,
    /// The first ICMP error quoting this connection's packets, and how many came.
    pub icmp_error: Option<Box<super::IcmpSeen>>,
    /// Any payload seen either way.
    pub data_seen: bool,
    /// Packet counter value at the last packet, for least-recently-active eviction.
    pub touch: u64,
    #[cfg(test)]
    pub last_flags: u16,
}

/// This direction's element of a `[to_server, to_client]` pair and the other one.
pub(crate) fn split<T>(pair: &mut [T; 2], dir: Direction) -> (&mut T, &mut T) {
    let [a, b] = pair;
    match dir {
        Direction::ToServer => (a, b),
        Direction::ToClient => (b, a),
    }
}

fn dir_of(i: usize) -> Direction {
    if i == 0 {
        Direction::ToServer
    } else {
        Direction::ToClient
    }
}

impl Conn {
    /// A connection whose first packet is `pkt` carrying `seg`; roles are decided here, once.
    pub(crate) fn new(
        id: ConnId,
        src: SocketAddr,
        dst: SocketAddr,
        seg: &TcpSegment<'_>,
        pkt: &Packet<'_>,
    ) -> Conn {
        let (client, server, roles) = if seg.flags.syn() && !seg.flags.ack() {
            (src, dst, RoleBasis::Syn)
        } else if seg.flags.syn() {
            (dst, src, RoleBasis::SynAck)
        } else if src.port() > dst.port() || src.port() == dst.port() {
            // Mid-stream: the well-known (lower) port serves; on a tie the first packet's
            // destination does.
            (src, dst, RoleBasis::Port)
        } else {
            (dst, src, RoleBasis::Port)
        };
        let mark = Mark {
            frame: pkt.frame,
            ts: pkt.ts,
        };
        Conn {
            id,
            client,
            server,
            roles,
            mid_stream: roles == RoleBasis::Port,
            first: mark,
            last: mark,
            syn_ack: None,
            last_syn_ts: None,
            expected_client_isn: None,
            handshake_rtt_ns: None,
            dirs: Default::default(),
            streams: Default::default(),
            analysis: SeqAnalysis::default(),
            state: Default::default(),
            first_fin: None,
            first_rst: None,
            ended: false,
            icmp_error: None,
            data_seen: false,
            touch: 0,
            #[cfg(test)]
            last_flags: 0,
        }
    }

    pub(crate) fn direction(&self, src: SocketAddr) -> Direction {
        if src == self.client {
            Direction::ToServer
        } else {
            Direction::ToClient
        }
    }

    /// Whether a SYN (without ACK) from `src` starts a new connection on this 5-tuple
    /// rather than retrying this one's.
    pub(crate) fn syn_starts_new(&self, src: SocketAddr, seq: u32) -> bool {
        let d = self.direction(src).index();
        let isn = self.state.get(d).and_then(|s| s.isn);
        // The same ISN before any data is the same attempt, even after a RST refused it
        // (Windows retries a refused connect with the same SYN; tshark keeps one stream).
        if isn == Some(seq) && !self.data_seen {
            return false;
        }
        if self.ended {
            return true;
        }
        let answered = self.syn_ack.is_some() || self.data_seen;
        match self.state.get(d).and_then(|s| s.isn) {
            // Same ISN: a retransmitted SYN. Another ISN before any answer: the client
            // retrying the same attempt.
            Some(isn) => isn != seq && answered,
            // Only a SYN-ACK seen so far: this SYN belongs if the SYN-ACK acknowledged it.
            // Only a SYN-ACK seen so far (capture reordering): the SYN belongs if the
            // SYN-ACK acknowledged it.
            None if self.roles == RoleBasis::SynAck && !self.data_seen => {
                self.expected_client_isn != Some(seq)
            }
            None => true,
        }
    }

    /// Whether a SYN-ACK from `src` belongs to a new connection (this one has ended and the
    /// SYN that started the new one was not captured).
    pub(crate) fn syn_ack_starts_new(&self, src: SocketAddr, seq: u32) -> bool {
        let d = self.direction(src).index();
        self.ended && self.state.get(d).and_then(|s| s.isn) != Some(seq)
    }

    /// Processes one segment of this connection. Returns the change of buffered bytes and
    /// the bytes forced into gaps by the per-direction limit.
    pub(crate) fn on_segment(
        &mut self,
        pkt: &Packet<'_>,
        seg: &TcpSegment<'_>,
        src: SocketAddr,
        sink: &mut dyn StreamSink,
        stream_limit: usize,
    ) -> Effect {
        let dir = self.direction(src);
        let d = dir.index();
        let ts = pkt.ts;
        let mark = Mark {
            frame: pkt.frame,
            ts,
        };
        self.last = mark;
        let flags = seg.flags;
        let payload_len = seg.payload_len;

        let sig = SegSig::new(pkt.ip.ip_id.filter(|&id| id != 0), seg);
        let (st, _) = split(&mut self.state, dir);
        let is_dup = st.is_duplicate(&sig, ts.as_nanos());

        // A SYN with a new ISN restarts Wireshark's analysis: tshark opens a new stream there.
        if flags.syn() {
            let (st, _) = split(&mut self.state, dir);
            if let Some(isn) = st.isn {
                if isn != seg.seq && !flags.ack() {
                    self.analysis = SeqAnalysis::default();
                    // The retry's stream starts at its own ISN (no data flowed yet, see
                    // `syn_starts_new`).
                    let (sd, _) = split(&mut self.streams, dir);
                    *sd = Reassembler::default();
                }
            }
            if self.ended && !flags.ack() && !self.data_seen {
                // A refused attempt retried (same ISN, see `syn_starts_new`): it may still
                // succeed, so it is open again until its next end.
                self.ended = false;
                self.first_rst = None;
                self.streams = Default::default();
            }
            st.isn = Some(seg.seq);
            if flags.ack() {
                if self.syn_ack.is_none() {
                    self.syn_ack = Some(mark);
                    self.handshake_rtt_ns = self.last_syn_ts.map(|t| ts.nanos_since(t));
                }
                self.expected_client_isn = Some(seg.ack.wrapping_sub(1));
            } else if !is_dup {
                self.last_syn_ts = Some(ts);
            }
        }

        let ta = self.analysis.on_segment(d, seg, ts.as_nanos());
        let (st, _) = split(&mut self.state, dir);
        #[cfg(test)]
        {
            self.last_flags = analysis::as_displayed(ta);
        }

        let (f, fo) = split(&mut self.dirs, dir);
        f.frames += 1;
        f.frame_bytes += u64::from(pkt.wire_len);
        f.payload_bytes += u64::from(payload_len);
        match f.ttl {
            None => f.ttl = Some(pkt.ip.ttl),
            Some(t) if t != pkt.ip.ttl => f.ttl_varies = true,
            Some(_) => {}
        }
        if seg.checksum_ok == Some(false) {
            f.flags.bad_checksum += 1;
        }
        if is_dup {
            f.flags.duplicate += 1;
            analysis::count(&mut f.duplicate_copy_flags, ta);
        } else {
            analysis::count(&mut f.flags, ta);
            if ta & analysis::ANY_RETRANSMISSION != 0 {
                let n = st.count_retransmission(seg.seq);
                f.max_retransmits_per_segment = f.max_retransmits_per_segment.max(n);
            }
            if ta & analysis::ANY_RETRANSMISSION != 0 && !flags.syn() {
                // A run: the same segment again and again, the peer silent in between (SYN
                // retries are the handshake's own story).
                let same = st.last_retransmitted == Some(seg.seq) && f.retransmission_run > 0;
                f.retransmission_run = if same { f.retransmission_run + 1 } else { 1 };
                let first = f
                    .retransmission_run_marks
                    .filter(|_| same)
                    .map_or(mark, |m| m.0);
                f.retransmission_run_marks = Some((first, mark));
                st.last_retransmitted = Some(seg.seq);
            }
            if ta & analysis::KEEP_ALIVE != 0 {
                f.unanswered_keepalives += 1;
                let first = f
                    .keepalive_run
                    .filter(|_| f.unanswered_keepalives > 1)
                    .map_or(mark, |m| m.0);
                f.keepalive_run = Some((first, mark));
            }
            // Anything from this side answers the peer's probes and retransmissions.
            fo.unanswered_keepalives = 0;
            fo.retransmission_run = 0;
        }
        if flags.syn() {
            // A capture's second copy of a SYN is not another attempt.
            if !is_dup {
                f.syn_count += 1;
            }
            if f.syn.is_none() {
                f.syn = Some(mark);
            }
            if seg.options.mss.is_some() {
                f.mss = seg.options.mss;
            }
            if seg.options.window_scale.is_some() {
                f.window_scale = seg.options.window_scale;
            }
        } else if !flags.rst() && f.options_shape.is_none() {
            f.options_shape = Some(seg.options.any);
        }
        if flags.fin() && f.fin.is_none() {
            f.fin = Some(mark);
            if self.first_fin.is_none() {
                self.first_fin = Some(dir);
            }
        }
        if flags.rst() {
            f.rst_count += 1;
            if f.rst.is_none() {
                f.rst = Some(mark);
                f.rst_ttl = Some(pkt.ip.ttl);
                f.rst_has_ack = flags.ack();
                f.rst_has_options = seg.options.any;
            }
            if self.first_rst.is_none() {
                self.first_rst = Some(dir);
            }
        }
        if payload_len > 0 {
            self.data_seen = true;
            if f.first_data.is_none() {
                f.first_data = Some(mark);
            }
            // A keep-alive's byte is not application data: idle time runs through it.
            if ta & analysis::KEEP_ALIVE == 0 {
                f.last_data = Some(mark);
            }
        }
        // Zero-window periods of this side's receive window.
        if !flags.syn() && !flags.rst() {
            if seg.window == 0 {
                if st.zero_window_since.is_none() {
                    st.zero_window_since = Some(ts);
                    f.zero_window_periods += 1;
                }
            } else if let Some(since) = st.zero_window_since.take() {
                f.zero_window_ns = f
                    .zero_window_ns
                    .saturating_add(ts.nanos_since(since).max(0));
            }
        }

        if flags.rst() || (f.fin.is_some() && fo.fin.is_some()) {
            self.ended = true;
        }
        let mut eff = Effect::default();
        if !is_dup {
            eff = self.reassemble(pkt, seg, dir, sink, stream_limit);
        }
        eff
    }

    fn reassemble(
        &mut self,
        pkt: &Packet<'_>,
        seg: &TcpSegment<'_>,
        dir: Direction,
        sink: &mut dyn StreamSink,
        stream_limit: usize,
    ) -> Effect {
        let flags = seg.flags;
        let mut eff = Effect::default();
        let (fd, fo) = split(&mut self.dirs, dir);
        let (sd, so) = split(&mut self.streams, dir);
        if flags.syn() {
            sd.on_syn(seg.seq);
        }
        {
            let mut out = Out::new(sink, self.id, dir, pkt.frame, pkt.ts, fd);
            if flags.rst() {
                add(&mut eff, sd.on_rst(&mut out));
            } else {
                let seq = if flags.syn() {
                    seg.seq.wrapping_add(1)
                } else {
                    seg.seq
                };
                let (e, before) = sd.on_segment(
                    &mut out,
                    seq,
                    seg.payload,
                    seg.payload_len,
                    flags.fin(),
                    stream_limit,
                );
                out.facts.bytes_before_start += before;
                add(&mut eff, e);
            }
        }
        if flags.ack() && so.is_started() {
            let mut out = Out::new(sink, self.id, dir.reverse(), pkt.frame, pkt.ts, fo);
            add(&mut eff, so.on_peer_ack(&mut out, seg.ack));
        }
        eff
    }

    /// Bytes held in both directions' out-of-order buffers.
    pub(crate) fn buffered(&self) -> usize {
        self.streams[0].cost() + self.streams[1].cost()
    }

    /// Gives up on every hole in both directions (global buffer limit, close).
    pub(crate) fn flush(&mut self, sink: &mut dyn StreamSink) -> Effect {
        let mut eff = Effect::default();
        let [f0, f1] = &mut self.dirs;
        let [s0, s1] = &mut self.streams;
        for (i, (f, s)) in [(f0, s0), (f1, s1)].into_iter().enumerate() {
            let mut out = Out::new(sink, self.id, dir_of(i), self.last.frame, self.last.ts, f);
            add(&mut eff, s.flush(&mut out));
        }
        eff
    }

    /// Final facts, after a last flush of both directions.
    pub(crate) fn close(mut self, sink: &mut dyn StreamSink, evicted: bool) -> (TcpFacts, Effect) {
        let eff = self.flush(sink);
        for (st, f) in self.state.iter_mut().zip(self.dirs.iter_mut()) {
            if let Some(since) = st.zero_window_since.take() {
                f.zero_window_ns = f
                    .zero_window_ns
                    .saturating_add(self.last.ts.nanos_since(since).max(0));
            }
        }
        let fin_s = self.dirs[0].fin.is_some();
        let fin_c = self.dirs[1].fin.is_some();
        let end = if let Some(by) = self.first_rst {
            TcpEnd::Rst { by }
        } else if fin_s && fin_c {
            TcpEnd::Fin {
                first: self.first_fin.unwrap_or(Direction::ToServer),
            }
        } else if let Some(by) = self.first_fin {
            TcpEnd::HalfClosed { by }
        } else {
            TcpEnd::Open
        };
        let facts = TcpFacts {
            id: self.id,
            client: self.client,
            server: self.server,
            roles: self.roles,
            first: self.first,
            last: self.last,
            syn_ack: self.syn_ack,
            handshake_rtt_ns: self.handshake_rtt_ns,
            mid_stream: self.mid_stream,
            end,
            evicted,
            dirs: self.dirs,
            icmp_error: self.icmp_error.map(|b| *b),
        };
        (facts, eff)
    }
}

fn add(acc: &mut Effect, e: Effect) {
    acc.cost_delta = acc.cost_delta.saturating_add(e.cost_delta);
    acc.forced_gap_bytes = acc.forced_gap_bytes.saturating_add(e.forced_gap_bytes);
}

impl DirState {
    fn is_duplicate(&mut self, sig: &SegSig, now: i64) -> bool {
        let dup = self.recent.iter().flatten().any(|(h, t)| {
            *h == sig.hash
                && (sig.tagged || now.saturating_sub(*t).unsigned_abs() <= DUP_UNTAGGED_NS as u64)
        });
        if !dup {
            if let Some(slot) = self.recent.get_mut(self.recent_next % DUP_RING) {
                *slot = Some((sig.hash, now));
            }
            self.recent_next = self.recent_next.wrapping_add(1);
        }
        dup
    }

    /// Counts one more retransmission of the segment at `seq`; returns its count.
    fn count_retransmission(&mut self, seq: u32) -> u32 {
        if let Some(e) = self.retrans.iter_mut().find(|e| e.0 == seq && e.1 > 0) {
            e.1 = e.1.saturating_add(1);
            return e.1;
        }
        if let Some(slot) = self.retrans.get_mut(self.retrans_next % RETRANS_TRACK) {
            *slot = (seq, 1);
        }
        self.retrans_next = self.retrans_next.wrapping_add(1);
        1
    }
}
