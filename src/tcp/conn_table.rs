//! The connection table: finds each segment's connection, opens and closes connections, and
//! keeps memory bounded (connection count, buffered bytes, closed connections released).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::decode::{Packet, L4};
use crate::limits::Limits;
use crate::time::Timestamp;

use super::flow_hash::{FlowKey, FxBuild};
use super::reassembly::Effect;
use super::state::Conn;
use super::{ConnId, StreamSink};

/// Capture time a connection ended by RST or FINs stays in the table, so that stray packets
/// (the last ACK, a retransmitted FIN, a second RST) still count towards it.
const LINGER_NS: i64 = 10_000_000_000;

/// What the tracker did to stay within its limits, and how big it got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Bytes given up as gaps because a buffer limit (per direction or global) was reached.
    pub bytes_dropped_at_limits: u64,
    /// Times a buffer limit forced holes to be declared.
    pub buffer_limit_hits: u64,
    /// Connections finalised early because `Limits::max_connections` was reached.
    pub evictions: u64,
    /// Out-of-order bytes buffered now (including per-piece bookkeeping) and at most.
    pub buffered_bytes: usize,
    pub peak_buffered_bytes: usize,
    /// Connections in the table now (open or lingering after their end) and at most.
    pub open_connections: usize,
    pub peak_open_connections: usize,
    /// Connections opened so far.
    pub connections: u64,
}

/// TCP connection tracker: feed it every decoded packet in capture order.
pub struct Tracker {
    limits: Limits,
    /// Connections are boxed: an entry is ~1.6 KB, and a table of them inline would copy
    /// every entry (and briefly hold two tables) each time it grows.
    table: HashMap<FlowKey, Box<Conn>, FxBuild>,
    /// Connections being closed at the end of the capture, last to close first. Boxed as
    /// they come out of the table, so moving them here copies pointers, not connections.
    #[allow(clippy::vec_box)]
    finishing: Vec<Box<Conn>>,
    next_id: u32,
    /// Eviction order, oldest first: (key, connection, activity stamp when queued). Entries
    /// whose connection was active since are requeued when reached (second chance), so the
    /// one evicted is the least recently active, approximately, in O(1) amortised.
    lru: VecDeque<(FlowKey, ConnId, u64)>,
    /// Ended connections waiting for their linger to expire, earliest deadline first:
    /// (deadline, key, connection).
    linger: BinaryHeap<Reverse<(Timestamp, FlowKey, ConnId)>>,
    packets: u64,
    stats: TrackerStats,
    /// Wireshark analysis flags of the last TCP packet, for frame-by-frame tests against tshark.
    #[cfg(test)]
    pub(crate) last_flags: u16,
}

impl Tracker {
    pub fn new(limits: &Limits) -> Tracker {
        Tracker {
            limits: limits.clone(),
            table: HashMap::default(),
            finishing: Vec::new(),
            next_id: 0,
            lru: VecDeque::new(),
            linger: BinaryHeap::new(),
            packets: 0,
            stats: TrackerStats::default(),
            #[cfg(test)]
            last_flags: 0,
        }
    }

    pub fn stats(&self) -> &TrackerStats {
        &self.stats
    }

    /// Processes one packet; anything but TCP is ignored.
    pub fn on_packet(&mut self, pkt: &Packet<'_>, sink: &mut dyn StreamSink) {
        let seg = match &pkt.l4 {
            L4::Tcp(seg) => seg,
            L4::Icmp(err) => return self.on_icmp_error(pkt, err),
            _ => return,
        };
        self.advance(pkt.ts, sink);
        self.packets += 1;
        let src = SocketAddr::new(pkt.ip.src, seg.src_port);
        let dst = SocketAddr::new(pkt.ip.dst, seg.dst_port);
        let key = FlowKey::new(src, dst);

        // Only a SYN can start a new connection on a known 5-tuple; any other segment of a
        // known connection takes a single table lookup.
        if !seg.flags.syn() && self.segment_of_known(key, pkt, seg, src, sink) {
            return;
        }
        if seg.flags.syn() {
            let replace = match self.table.get(&key) {
                None => false,
                Some(c) if !seg.flags.ack() => c.syn_starts_new(src, seg.seq),
                Some(c) => c.syn_ack_starts_new(src, seg.seq),
            };
            if replace {
                if let Some(old) = self.table.remove(&key) {
                    self.close(old, sink, false);
                }
            }
        }
        if !self.table.contains_key(&key) {
            while self.table.len() >= self.limits.max_connections.max(1) {
                if !self.evict_one(sink) {
                    break;
                }
            }
            let id = ConnId(self.next_id);
            self.next_id = self.next_id.wrapping_add(1);
            let conn = Conn::new(id, src, dst, seg, pkt);
            sink.on_open(id, conn.client, conn.server);
            self.lru.push_back((key, id, self.packets));
            self.table.insert(key, Box::new(conn));
            self.stats.connections += 1;
            self.stats.open_connections = self.table.len();
            self.stats.peak_open_connections =
                self.stats.peak_open_connections.max(self.table.len());
        }
        self.segment_of_known(key, pkt, seg, src, sink);
    }

    /// Hands a segment to the connection at `key`; false when there is none.
    fn segment_of_known(
        &mut self,
        key: FlowKey,
        pkt: &Packet<'_>,
        seg: &crate::decode::TcpSegment<'_>,
        src: SocketAddr,
        sink: &mut dyn StreamSink,
    ) -> bool {
        let Some(conn) = self.table.get_mut(&key) else {
            return false;
        };
        conn.touch = self.packets;
        let was_ended = conn.ended;
        let eff = conn.on_segment(pkt, seg, src, sink, self.limits.stream_buffer_bytes);
        #[cfg(test)]
        {
            self.last_flags = conn.last_flags;
        }
        if conn.ended && !was_ended {
            let deadline = pkt.ts.add_nanos(LINGER_NS);
            self.linger.push(Reverse((deadline, key, conn.id)));
        }
        self.account(eff);
        if self.stats.buffered_bytes > self.limits.total_buffer_bytes {
            self.relieve_global(sink);
        }
        true
    }

    fn account(&mut self, eff: Effect) {
        let b = self.stats.buffered_bytes as isize + eff.cost_delta;
        self.stats.buffered_bytes = b.max(0) as usize;
        self.stats.peak_buffered_bytes = self
            .stats
            .peak_buffered_bytes
            .max(self.stats.buffered_bytes);
        if eff.forced_gap_bytes > 0 {
            self.stats.bytes_dropped_at_limits += eff.forced_gap_bytes;
            self.stats.buffer_limit_hits += 1;
        }
    }

    /// Over the global buffer limit: the connection holding the most gives up its holes.
    fn relieve_global(&mut self, sink: &mut dyn StreamSink) {
        let mut guard = 0;
        while self.stats.buffered_bytes > self.limits.total_buffer_bytes && guard < 64 {
            guard += 1;
            let Some(conn) = self
                .table
                .values_mut()
                .filter(|c| c.buffered() > 0)
                .max_by_key(|c| (c.buffered(), std::cmp::Reverse(c.id)))
            else {
                break;
            };
            let held = conn.buffered();
            let gap_bytes = |c: &Conn| c.dirs.iter().map(|d| d.gap_bytes).sum::<u64>();
            let gaps_before = gap_bytes(conn);
            let eff = conn.flush(sink);
            let forced = gap_bytes(conn).saturating_sub(gaps_before);
            self.account(Effect {
                cost_delta: eff.cost_delta,
                forced_gap_bytes: forced,
            });
            if forced == 0 {
                // Only snaplen-cut pieces were held: still a limit hit.
                self.stats.buffer_limit_hits += 1;
            }
            if held == 0 {
                break;
            }
        }
    }

    /// Finalises the least recently active connection. False when the table is empty.
    fn evict_one(&mut self, sink: &mut dyn StreamSink) -> bool {
        let mut budget = self.lru.len().saturating_mul(2).saturating_add(2);
        while budget > 0 {
            budget -= 1;
            let Some((key, id, stamp)) = self.lru.pop_front() else {
                break;
            };
            let Some(conn) = self.table.get(&key) else {
                continue;
            };
            if conn.id != id {
                continue;
            }
            if conn.touch != stamp {
                self.lru.push_back((key, id, conn.touch));
                continue;
            }
            if let Some(conn) = self.table.remove(&key) {
                self.stats.evictions += 1;
                self.close(conn, sink, true);
                return true;
            }
        }
        // The queue lost track (should not happen): evict the smallest id.
        let victim = self.table.iter().min_by_key(|(_, c)| c.id).map(|(k, _)| *k);
        if let Some(key) = victim {
            if let Some(conn) = self.table.remove(&key) {
                self.stats.evictions += 1;
                self.close(conn, sink, true);
                return true;
            }
        }
        false
    }

    fn close(&mut self, conn: Box<Conn>, sink: &mut dyn StreamSink, evicted: bool) {
        let (facts, eff) = conn.close(sink, evicted);
        self.account(Effect {
            cost_delta: eff.cost_delta,
            forced_gap_bytes: 0,
        });
        self.stats.open_connections = self.table.len();
        sink.on_close(facts);
    }

    /// An ICMP error quoting a TCP segment is attached to the connection it answers (an
    /// unreachable port or host for a SYN, a TTL expiry on the path), so that rules can tell
    /// "unreachable" from "no answer".
    fn on_icmp_error(&mut self, pkt: &Packet<'_>, err: &crate::decode::IcmpError) {
        let Some(q) = err.original else { return };
        let (Some(sp), Some(dp)) = (q.src_port, q.dst_port) else {
            return;
        };
        if q.protocol != 6 {
            return;
        }
        let key = FlowKey::new(SocketAddr::new(q.src, sp), SocketAddr::new(q.dst, dp));
        if let Some(conn) = self.table.get_mut(&key) {
            let at = super::Mark {
                frame: pkt.frame,
                ts: pkt.ts,
            };
            match conn.icmp_error.as_mut() {
                Some(seen) => seen.count = seen.count.saturating_add(1),
                None => {
                    // Boxed: rare, and it would otherwise grow every connection.
                    conn.icmp_error = Some(Box::new(super::IcmpSeen {
                        at,
                        error: *err,
                        from: pkt.ip.src,
                        count: 1,
                    }))
                }
            }
        }
    }

    /// Timestamp-driven housekeeping: connections that ended more than the linger time
    /// before `now` are closed.
    pub fn advance(&mut self, now: Timestamp, sink: &mut dyn StreamSink) {
        while let Some(&Reverse((deadline, key, id))) = self.linger.peek() {
            if deadline > now {
                break;
            }
            self.linger.pop();
            let (expired, busy_until) = match self.table.get(&key) {
                Some(c) if c.id == id && c.ended => {
                    let until = c.last.ts.add_nanos(LINGER_NS);
                    (until <= now, until)
                }
                _ => (false, now),
            };
            if !expired && busy_until > now {
                // Still receiving stray packets (retried SYNs, retransmitted FINs): wait a
                // linger time after the last of them.
                self.linger.push(Reverse((busy_until, key, id)));
                continue;
            }
            if expired {
                if let Some(conn) = self.table.remove(&key) {
                    self.close(conn, sink, false);
                }
            }
        }
    }

    /// End of capture: flush every connection and close them all, in order of first packet.
    pub fn finish(&mut self, sink: &mut dyn StreamSink) {
        while self.finish_some(sink, usize::MAX) {}
    }

    /// End of capture, a few at a time: closes up to `max` of the remaining connections (in
    /// order of first packet) and says whether any remain. The caller drains the sink between
    /// calls, so the facts of thousands of connections open at the end never pile up at once.
    pub fn finish_some(&mut self, sink: &mut dyn StreamSink, max: usize) -> bool {
        if !self.table.is_empty() {
            let mut conns: Vec<Box<Conn>> = self.table.drain().map(|(_, c)| c).collect();
            // Highest id first, so that closing pops from the end in first-packet order.
            conns.sort_by_key(|c| std::cmp::Reverse(c.id));
            self.finishing.extend(conns);
            self.lru.clear();
            self.linger.clear();
        }
        for _ in 0..max {
            match self.finishing.pop() {
                Some(conn) => self.close(conn, sink, false),
                None => break,
            }
        }
        self.stats.open_connections = self.finishing.len();
        !self.finishing.is_empty()
    }
}
