//! One direction of a connection turned into an ordered byte stream.
//!
//! Offsets are sequence numbers unwrapped to 64 bits: offset 0 is the first sequence number
//! of the stream (ISN + 1 after a SYN, or the first data segment's seq when picked up
//! mid-stream), so wraparound at 2^32 never reaches the buffer's keys. A FIN occupies one
//! offset, as it occupies one sequence number (RFC 9293 section 3.4).
//!
//! Policies:
//! - In-order data is passed through as a slice of the packet, never copied; only data ahead
//!   of the next expected byte is copied into the out-of-order buffer.
//! - Overlaps: bytes received first win. A retransmission never rewrites bytes already
//!   delivered or buffered; it only fills holes. Captures at either end see what the receiver
//!   accepted first, and most stacks (Linux, Windows) keep the first copy they queued.
//! - Holes become [`Gap`](crate::tcp::StreamEventKind::Gap) events when the receiver ACKs
//!   past them (sent and received, just not captured), when the buffer limit forces them,
//!   or when the connection is flushed (RST, close, end of capture).
//! - A segment cut by the snaplen delivers its captured bytes, then a gap for the rest.

use std::collections::BTreeMap;

use crate::capture::FrameRef;
use crate::time::Timestamp;

use super::{ConnId, DirFacts, Direction, StreamEvent, StreamEventKind, StreamSink};

/// Segments further ahead than this are not believed: a corrupt or foreign seq would
/// otherwise turn into a gigabyte-sized gap.
const MAX_AHEAD: u64 = 1 << 30;
/// Bookkeeping charged per buffered piece on top of its bytes, so that many tiny pieces
/// (or pieces known to be missing) also count against the buffer limits.
pub(crate) const PIECE_OVERHEAD: usize = 64;

/// A buffered range: bytes we hold, or bytes the snaplen cut off.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Missing(u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::Missing(n) => *n,
        }
    }
    fn cost(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len().saturating_add(PIECE_OVERHEAD),
            Piece::Missing(_) => PIECE_OVERHEAD,
        }
    }
}

/// Where events go and what they are counted in, for one direction and one packet.
pub(crate) struct Out<'a> {
    pub sink: &'a mut dyn StreamSink,
    pub conn: ConnId,
    pub dir: Direction,
    pub frame: FrameRef,
    pub ts: Timestamp,
    pub facts: &'a mut DirFacts,
    /// Consecutive gap bytes not yet announced: adjacent holes become one Gap event.
    pending_gap: u64,
}

impl<'a> Out<'a> {
    pub(crate) fn new(
        sink: &'a mut dyn StreamSink,
        conn: ConnId,
        dir: Direction,
        frame: FrameRef,
        ts: Timestamp,
        facts: &'a mut DirFacts,
    ) -> Out<'a> {
        Out {
            sink,
            conn,
            dir,
            frame,
            ts,
            facts,
            pending_gap: 0,
        }
    }

    fn emit(&mut self, kind: StreamEventKind<'_>) {
        self.sink.on_event(StreamEvent {
            conn: self.conn,
            dir: self.dir,
            frame: self.frame,
            ts: self.ts,
            kind,
        });
    }

    fn flush_gap(&mut self) {
        if self.pending_gap > 0 {
            let len = self.pending_gap;
            self.pending_gap = 0;
            self.facts.gaps = self.facts.gaps.saturating_add(1);
            self.facts.gap_bytes = self.facts.gap_bytes.saturating_add(len);
            self.emit(StreamEventKind::Gap { len });
        }
    }

    fn data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.flush_gap();
        self.facts.stream_bytes = self.facts.stream_bytes.saturating_add(bytes.len() as u64);
        self.emit(StreamEventKind::Data(bytes));
    }

    fn gap(&mut self, len: u64) {
        self.pending_gap = self.pending_gap.saturating_add(len);
    }

    fn marker(&mut self, kind: StreamEventKind<'_>) {
        self.flush_gap();
        self.emit(kind);
    }

    /// Announces any pending gap; call when the packet's processing for this direction ends.
    pub(crate) fn finish(&mut self) {
        self.flush_gap();
    }
}

/// What a call did to the buffer and the limits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Effect {
    /// Change of buffered cost (bytes + overhead), positive when the buffer grew.
    pub cost_delta: isize,
    /// Bytes announced as gaps because the per-direction buffer limit forced them.
    pub forced_gap_bytes: u64,
}

/// The reassembly state of one direction.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    started: bool,
    /// FIN or RST delivered: nothing more comes out of this direction.
    closed: bool,
    next_seq: u32,
    next_off: u64,
    fin_off: Option<u64>,
    pending: BTreeMap<u64, Piece>,
    cost: usize,
}

impl Reassembler {
    /// Buffered cost (bytes plus per-piece overhead).
    pub(crate) fn cost(&self) -> usize {
        self.cost
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started
    }

    fn start(&mut self, seq: u32) {
        self.started = true;
        self.next_seq = seq;
        self.next_off = 0;
    }

    /// A SYN from this direction's sender fixes the stream start at ISN + 1.
    pub(crate) fn on_syn(&mut self, isn: u32) {
        if !self.started {
            self.start(isn.wrapping_add(1));
        }
    }

    /// Offset of a sequence number, by wrapping distance from the next expected one.
    fn off_of(&self, seq: u32) -> i64 {
        (self.next_off as i64).saturating_add(i64::from(seq.wrapping_sub(self.next_seq) as i32))
    }

    fn advance(&mut self, n: u64) {
        self.next_off = self.next_off.saturating_add(n);
        self.next_seq = self.next_seq.wrapping_add(n as u32);
    }

    /// One segment's payload (and FIN) from this direction's sender.
    /// Returns bytes of payload that lie before the stream's start (mid-stream pickup).
    pub(crate) fn on_segment(
        &mut self,
        out: &mut Out<'_>,
        seq: u32,
        payload: &[u8],
        payload_len: u32,
        fin: bool,
        stream_limit: usize,
    ) -> (Effect, u64) {
        let mut eff = Effect::default();
        if self.closed || (payload_len == 0 && !fin) {
            return (eff, 0);
        }
        if !self.started {
            self.start(seq);
        }
        let s = self.off_of(seq);
        let e_full = s.saturating_add(i64::from(payload_len));
        let ahead = s.saturating_sub(self.next_off as i64);
        if ahead > MAX_AHEAD as i64 {
            return (eff, 0);
        }
        let before_start = if s < 0 { (e_full.min(0) - s) as u64 } else { 0 };
        if fin && self.fin_off.is_none() && e_full >= 0 {
            self.fin_off = Some(e_full as u64);
        }
        let cap = payload.len().min(payload_len as usize);
        // Clamp the segment to the stream: nothing before offset 0, nothing past the FIN.
        let mut e = e_full.max(0) as u64;
        if let Some(f) = self.fin_off {
            e = e.min(f);
        }
        let s_clamped = s.max(0) as u64;
        let cap_end = (s.saturating_add(cap as i64)).max(0) as u64;
        let seg = NewSeg {
            start: s,
            bytes: payload.get(..cap).unwrap_or(&[]),
            cap_end: cap_end.min(e),
            end: e,
        };
        let before = self.cost;
        if s_clamped <= self.next_off {
            self.deliver_in_order(out, &seg);
        } else if s_clamped < e {
            self.insert(&seg, s_clamped);
        }
        self.drain(out);
        while self.cost > stream_limit {
            let Some((&b, _)) = self.pending.first_key_value() else {
                break;
            };
            let hole = b.saturating_sub(self.next_off);
            eff.forced_gap_bytes = eff.forced_gap_bytes.saturating_add(hole);
            out.gap(hole);
            self.advance(hole);
            self.drain(out);
        }
        self.maybe_fin(out);
        out.finish();
        eff.cost_delta = self.cost as isize - before as isize;
        (eff, before_start)
    }

    /// Delivers a segment that starts at or before the next expected byte, interleaved with
    /// buffered pieces: where both cover a byte, the buffered (earlier) copy wins.
    fn deliver_in_order(&mut self, out: &mut Out<'_>, seg: &NewSeg<'_>) {
        while self.next_off < seg.end {
            let cur = self.next_off;
            let limit = match self.pending.first_key_value() {
                Some((&b, _)) if b <= cur => {
                    self.pop_first(out);
                    continue;
                }
                Some((&b, _)) => b.min(seg.end),
                None => seg.end,
            };
            if cur < seg.cap_end {
                let to = limit.min(seg.cap_end);
                let from_i = (cur as i64 - seg.start) as usize;
                let to_i = (to as i64 - seg.start) as usize;
                out.data(seg.bytes.get(from_i..to_i).unwrap_or(&[]));
                self.advance(to - cur);
            } else {
                out.gap(limit - cur);
                self.advance(limit - cur);
            }
        }
    }

    /// Removes the first buffered piece and delivers whatever of it lies at or past the
    /// next expected byte.
    fn pop_first(&mut self, out: &mut Out<'_>) {
        let Some((b, piece)) = self.pending.pop_first() else {
            return;
        };
        self.cost = self.cost.saturating_sub(piece.cost());
        let mut end = b.saturating_add(piece.len());
        if let Some(f) = self.fin_off {
            end = end.min(f);
        }
        if end <= self.next_off {
            return;
        }
        let skip = self.next_off.saturating_sub(b);
        let n = end - self.next_off;
        match &piece {
            Piece::Bytes(v) => {
                let from = skip as usize;
                out.data(v.get(from..from.saturating_add(n as usize)).unwrap_or(&[]));
            }
            Piece::Missing(_) => out.gap(n),
        }
        self.advance(n);
    }

    /// Delivers buffered pieces that have become contiguous.
    fn drain(&mut self, out: &mut Out<'_>) {
        while let Some((&b, _)) = self.pending.first_key_value() {
            if b > self.next_off {
                break;
            }
            self.pop_first(out);
        }
    }

    fn maybe_fin(&mut self, out: &mut Out<'_>) {
        if !self.closed && self.fin_off == Some(self.next_off) {
            out.marker(StreamEventKind::Fin);
            self.advance(1);
            self.closed = true;
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.pending.clear();
        self.cost = 0;
    }

    /// Buffers the parts of a segment ahead of the next expected byte that no buffered piece
    /// covers yet (first received wins).
    fn insert(&mut self, seg: &NewSeg<'_>, from: u64) {
        let mut cur = from;
        if let Some((&b, p)) = self.pending.range(..=cur).next_back() {
            cur = cur.max(b.saturating_add(p.len()));
        }
        while cur < seg.end {
            let next_b = self.pending.range(cur..).next().map(|(&b, p)| (b, p.len()));
            let stop = next_b.map_or(seg.end, |(b, _)| b.min(seg.end));
            if stop > cur {
                self.put(seg, cur, stop);
            }
            match next_b {
                Some((b, len)) if b < seg.end => cur = b.saturating_add(len),
                _ => break,
            }
        }
    }

    /// Stores `[from, to)` of a new segment: captured bytes, then the snaplen-cut rest.
    fn put(&mut self, seg: &NewSeg<'_>, from: u64, to: u64) {
        if from < seg.cap_end {
            let to_b = to.min(seg.cap_end);
            let a = (from as i64 - seg.start) as usize;
            let z = (to_b as i64 - seg.start) as usize;
            let piece = Piece::Bytes(seg.bytes.get(a..z).unwrap_or(&[]).to_vec());
            self.cost = self.cost.saturating_add(piece.cost());
            self.pending.insert(from, piece);
            if to_b < to {
                let piece = Piece::Missing(to - to_b);
                self.cost = self.cost.saturating_add(piece.cost());
                self.pending.insert(to_b, piece);
            }
        } else {
            let piece = Piece::Missing(to - from);
            self.cost = self.cost.saturating_add(piece.cost());
            self.pending.insert(from, piece);
        }
    }

    /// The other side acknowledged up to `ack`: whatever we have not delivered below it was
    /// sent and received but not captured, so it becomes a gap now.
    pub(crate) fn on_peer_ack(&mut self, out: &mut Out<'_>, ack: u32) -> Effect {
        let mut eff = Effect::default();
        if !self.started || self.closed {
            return eff;
        }
        let a = self.off_of(ack);
        if a <= self.next_off as i64 || a.saturating_sub(self.next_off as i64) > MAX_AHEAD as i64 {
            return eff;
        }
        let mut a = a as u64;
        if let Some(f) = self.fin_off {
            a = a.min(f);
        }
        let before = self.cost;
        self.deliver_up_to(out, a);
        self.maybe_fin(out);
        out.finish();
        eff.cost_delta = self.cost as isize - before as isize;
        eff
    }

    fn deliver_up_to(&mut self, out: &mut Out<'_>, a: u64) {
        while self.next_off < a {
            match self.pending.first_key_value() {
                Some((&b, _)) if b <= self.next_off => self.pop_first(out),
                Some((&b, _)) => {
                    let n = b.min(a) - self.next_off;
                    out.gap(n);
                    self.advance(n);
                }
                None => {
                    let n = a - self.next_off;
                    out.gap(n);
                    self.advance(n);
                }
            }
        }
        self.drain(out);
    }

    /// Gives up on every hole: buffered pieces are delivered with gaps between them, and a
    /// known FIN ends the stream (the bytes before it were sent). Used at RST, close, end of
    /// capture and when the global buffer limit picks this direction.
    pub(crate) fn flush(&mut self, out: &mut Out<'_>) -> Effect {
        let before = self.cost;
        let mut eff = Effect::default();
        if self.started && !self.closed {
            let mut last = self.next_off;
            if let Some((&b, p)) = self.pending.last_key_value() {
                last = last.max(b.saturating_add(p.len()));
            }
            if let Some(f) = self.fin_off {
                last = f;
            }
            self.deliver_up_to(out, last);
            self.maybe_fin(out);
            out.finish();
        }
        self.clear();
        eff.cost_delta = self.cost as isize - before as isize;
        eff
    }

    /// A RST from this direction's sender: flush, then mark the end.
    pub(crate) fn on_rst(&mut self, out: &mut Out<'_>) -> Effect {
        let eff = self.flush(out);
        if !self.closed {
            out.marker(StreamEventKind::Rst);
            self.closed = true;
        }
        eff
    }
}

/// A new segment in offset space: `[start, cap_end)` captured, `[cap_end, end)` cut off.
struct NewSeg<'p> {
    start: i64,
    bytes: &'p [u8],
    cap_end: u64,
    end: u64,
}
