//! Wireshark's per-segment TCP analysis flags (`tcp.analysis.*`), re-implemented from the
//! definitions in Wireshark 4.0 `epan/dissectors/packet-tcp.c`, `tcp_analyze_sequence_number`
//! and `verify_tcp_window_scaling`.
//!
//! Integration tests compare our per-connection counts with `tshark -Y tcp.analysis.<flag>`,
//! so this module keeps Wireshark's order of checks, its early exits and its quirks:
//! absolute sequence numbers where 0 means "not seen yet", timestamp differences taken as
//! unsigned 64-bit values (a packet earlier than the reference time is never "recent"), the
//! raw (unscaled) window in every comparison except "window full", and a 3 ms out-of-order
//! threshold until the handshake's first RTT is known.
//!
//! The source we could read is not exactly 4.0.17, so where tshark 4.0.17 disagreed with it
//! we followed tshark, measured frame by frame (`tshark_check.rs`, on the shared captures and
//! on ~18 000 generated frames): flows start with window `G_MAXUINT32`; spurious
//! retransmissions are checked before fast retransmissions and out-of-order; the
//! out-of-order test counts SYN/FIN in the segment's end; fast and spurious retransmissions
//! also show `tcp.analysis.retransmission` ([`as_displayed`]).
//! "ACKed unseen segment" follows tshark 4.0.17's observed rule: an ack beyond the highest
//! contiguous seq is flagged when the other side has seen data beyond a hole; an ack beyond
//! everything seen is flagged once, until the other side's ack moves (Wireshark's
//! `dupacknum = -1` marker).
//! Known deviations on generated traffic (~0.1% of flagged frames): a few fast
//! retransmissions after a mid-stream start, where tshark counts one more duplicate ACK.
//! Connections split by our linger time (see `conn_table.rs`) are one stream in tshark.

use crate::decode::{TcpFlags, TcpSegment};

pub(crate) const RETRANSMISSION: u16 = 1 << 0;
pub(crate) const FAST_RETRANSMISSION: u16 = 1 << 1;
pub(crate) const SPURIOUS_RETRANSMISSION: u16 = 1 << 2;
pub(crate) const KEEP_ALIVE: u16 = 1 << 3;
pub(crate) const KEEP_ALIVE_ACK: u16 = 1 << 4;
pub(crate) const ZERO_WINDOW: u16 = 1 << 5;
pub(crate) const ZERO_WINDOW_PROBE: u16 = 1 << 6;
pub(crate) const ZERO_WINDOW_PROBE_ACK: u16 = 1 << 7;
pub(crate) const WINDOW_UPDATE: u16 = 1 << 8;
pub(crate) const WINDOW_FULL: u16 = 1 << 9;
pub(crate) const DUPLICATE_ACK: u16 = 1 << 10;
pub(crate) const LOST_SEGMENT: u16 = 1 << 11;
pub(crate) const ACK_LOST_SEGMENT: u16 = 1 << 12;
pub(crate) const OUT_OF_ORDER: u16 = 1 << 13;

/// Any of the three retransmission kinds.
pub(crate) const ANY_RETRANSMISSION: u16 =
    RETRANSMISSION | FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION;

/// Wireshark's default out-of-order threshold before the first RTT is known.
const OOO_DEFAULT_NS: u64 = 3_000_000;
/// A retransmission within this time of the reverse direction's duplicate ACK is "fast".
const FAST_RETRANS_NS: u64 = 20_000_000;

/// Window scaling as Wireshark tracks it: unknown, known not to be used, or a shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WinScale {
    /// Wireshark's -1: no SYN seen yet, so the shift is unknown ("window full" is not checked).
    Unknown,
    /// Wireshark's -2: a SYN lacked the option, so windows are used as they are.
    NotUsed,
    Shift(u8),
}

/// Wireshark's `tcp_flow_t` fields that the flags depend on, for one direction.
#[derive(Clone, Copy, Debug)]
struct FlowState {
    nextseq: u32,
    nextseq_time: i64,
    lastack: u32,
    lastack_time: i64,
    maxseqtobeacked: u32,
    window: u32,
    win_scale: WinScale,
    /// Signed as in Wireshark: -1 marks an "ACKed unseen segment" already reported.
    dupacknum: i32,
    lastsegmentflags: u16,
}

impl Default for FlowState {
    fn default() -> Self {
        FlowState {
            nextseq: 0,
            nextseq_time: 0,
            lastack: 0,
            lastack_time: 0,
            maxseqtobeacked: 0,
            // Wireshark starts every flow's window at G_MAXUINT32 (not yet seen), so the
            // first segments are never zero-window probes, window updates or duplicate ACKs.
            window: u32::MAX,
            win_scale: WinScale::Unknown,
            dupacknum: 0,
            lastsegmentflags: 0,
        }
    }
}

/// Wireshark's `struct tcp_analysis` reduced to what the flags need.
#[derive(Clone, Debug, Default)]
pub(crate) struct SeqAnalysis {
    flows: [FlowState; 2],
    /// Time of the most recent SYN (without ACK); 0 = none (Wireshark's `ts_mru_syn`).
    ts_mru_syn: i64,
    /// SYN → first ACK time; 0 = unknown (Wireshark's `ts_first_rtt`).
    ts_first_rtt: i64,
}

fn gt_seq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
fn lt_seq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
fn le_seq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `now - then` as Wireshark computes it into a `guint64`: negative differences wrap to huge.
fn elapsed_u64(now: i64, then: i64) -> u64 {
    now.wrapping_sub(then) as u64
}

impl SeqAnalysis {
    /// Analyses one segment sent in direction `fwd` (0 or 1) at `ts_ns`; returns its flags.
    pub(crate) fn on_segment(&mut self, fwd: usize, seg: &TcpSegment<'_>, ts_ns: i64) -> u16 {
        let rev = 1 - (fwd & 1);
        let fwd = fwd & 1;
        let flags = seg.flags;
        let syn = flags.syn();
        let has_ack = flags.ack();

        // Handshake bookkeeping done by dissect_tcp around the analysis call.
        if syn && !has_ack {
            self.ts_mru_syn = ts_ns;
        }
        if !syn && has_ack && self.ts_mru_syn != 0 && self.ts_first_rtt == 0 {
            self.ts_first_rtt = ts_ns.wrapping_sub(self.ts_mru_syn);
        }
        if syn {
            if let Some(shift) = seg.options.window_scale {
                // Wireshark caps the shift at 14 (RFC 7323 section 2.3).
                self.set_scale(fwd, WinScale::Shift(shift.min(14)));
            }
            self.verify_window_scaling(fwd, rev, has_ack);
        }

        self.analyze(fwd, seg, ts_ns)
    }

    /// Wireshark's `verify_tcp_window_scaling`: a SYN without the option means neither side
    /// scales.
    fn verify_window_scaling(&mut self, fwd: usize, rev: usize, is_synack: bool) {
        let scale = |i: usize| self.flows.get(i).map_or(WinScale::Unknown, |f| f.win_scale);
        let (f, r) = (scale(fwd), scale(rev));
        if f == WinScale::Unknown {
            self.set_scale(fwd, WinScale::NotUsed);
            self.set_scale(rev, WinScale::NotUsed);
        } else if is_synack && r == WinScale::NotUsed {
            self.set_scale(fwd, WinScale::NotUsed);
        }
    }

    fn set_scale(&mut self, i: usize, s: WinScale) {
        if let Some(f) = self.flows.get_mut(i) {
            f.win_scale = s;
        }
    }

    fn analyze(&mut self, fwd: usize, seg: &TcpSegment<'_>, now: i64) -> u16 {
        let [f0, f1] = &mut self.flows;
        let (f, r) = if fwd == 0 { (f0, f1) } else { (f1, f0) };
        let seq = seg.seq;
        let ack = seg.ack;
        let seglen = seg.payload_len;
        let window = u32::from(seg.window);
        let fl = seg.flags.0;
        let syn_fin_rst = fl & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0;
        let mut ta: u16 = 0;

        'fwd: {
            // ZERO WINDOW PROBE: exactly one byte at the next expected seq into a zero window.
            if seglen == 1 && seq == f.nextseq && r.window == 0 {
                ta |= ZERO_WINDOW_PROBE;
                break 'fwd;
            }
            // ZERO WINDOW: window 0 on a segment without SYN/FIN/RST.
            if window == 0 && !syn_fin_rst {
                ta |= ZERO_WINDOW;
            }
            // LOST SEGMENT: beyond the highest next seq seen (not checked on RST).
            if f.nextseq != 0 && gt_seq(seq, f.nextseq) && fl & TcpFlags::RST == 0 {
                ta |= LOST_SEGMENT;
            }
            // KEEP-ALIVE: 0 or 1 byte starting one byte before the next seq.
            if seglen <= 1 && seq == f.nextseq.wrapping_sub(1) && !syn_fin_rst {
                ta |= KEEP_ALIVE;
            }
            // WINDOW UPDATE: no data, same seq/ack as before, new non-zero window.
            if seglen == 0
                && window != 0
                && window != f.window
                && seq == f.nextseq
                && ack == f.lastack
                && !syn_fin_rst
            {
                ta |= WINDOW_UPDATE;
            }
            // WINDOW FULL: data reaching exactly the edge of the peer's advertised window,
            // only when the peer's scaling is known.
            if seglen > 0 && r.win_scale != WinScale::Unknown && !syn_fin_rst {
                let shift = match r.win_scale {
                    WinScale::Shift(s) => u32::from(s),
                    _ => 0,
                };
                let edge = r.lastack.wrapping_add(r.window.wrapping_shl(shift));
                if seq.wrapping_add(seglen) == edge {
                    ta |= WINDOW_FULL;
                }
            }
            let repeats = seglen == 0 && seq == f.nextseq && !syn_fin_rst;
            // KEEP-ALIVE ACK: repeats the previous ACK right after a keep-alive.
            if repeats
                && window != 0
                && window == f.window
                && ack == f.lastack
                && r.lastsegmentflags & KEEP_ALIVE != 0
            {
                ta |= KEEP_ALIVE_ACK;
                break 'fwd;
            }
            // ZERO WINDOW PROBE ACK: repeats the previous zero-window ACK after a probe.
            if repeats
                && window == 0
                && window == f.window
                && ack == f.lastack
                && r.lastsegmentflags & ZERO_WINDOW_PROBE != 0
            {
                ta |= ZERO_WINDOW_PROBE_ACK;
                break 'fwd;
            }
            // DUPLICATE ACK: no data, same window, seq and ack as the previous segment.
            if repeats && window != 0 && window == f.window && ack == f.lastack {
                f.dupacknum = if f.dupacknum == -1 {
                    1
                } else {
                    f.dupacknum.wrapping_add(1)
                };
                ta |= DUPLICATE_ACK;
            }
        }

        // finished_fwd: a new ack number resets the duplicate-ACK count.
        if ack != f.lastack {
            f.dupacknum = 0;
        }

        // ACKED UNSEEN SEGMENT: acks beyond the highest contiguous seq seen the other way.
        if r.maxseqtobeacked != 0 && gt_seq(ack, r.maxseqtobeacked) && fl & TcpFlags::ACK != 0 {
            // Data beyond a hole was seen: the ack covers the hole.
            if lt_seq(r.maxseqtobeacked, r.nextseq) {
                ta |= ACK_LOST_SEGMENT;
                r.maxseqtobeacked = r.nextseq;
            } else {
                // Acking beyond everything seen: once, until the other side's ack moves.
                if r.dupacknum == 0 {
                    ta |= ACK_LOST_SEGMENT;
                }
                r.dupacknum = -1;
            }
        }

        // RETRANSMISSION / FAST RETRANSMISSION / OUT-OF-ORDER / SPURIOUS.
        'retrans: {
            if !(seglen > 0 || fl & (TcpFlags::SYN | TcpFlags::FIN) != 0) {
                break 'retrans;
            }
            let mut seq_not_advanced = f.nextseq != 0 && lt_seq(seq, f.nextseq);
            if ta & KEEP_ALIVE != 0 {
                break 'retrans;
            }
            // New data starting one byte early (after a zero-window probe) is not a
            // retransmission.
            if seglen > 1 && f.nextseq.wrapping_sub(1) == seq {
                seq_not_advanced = false;
            }
            let spurious =
                seglen > 0 && r.lastack != 0 && le_seq(seq.wrapping_add(seglen), r.lastack);
            // tshark 4.0.17 checks for spurious retransmissions first (measured).
            if spurious {
                ta |= SPURIOUS_RETRANSMISSION;
                break 'retrans;
            }
            let fast = seq_not_advanced
                && r.dupacknum >= 2
                && r.lastack == seq
                && elapsed_u64(now, r.lastack_time) < FAST_RETRANS_NS;
            let ooo_thres = if self.ts_first_rtt == 0 {
                OOO_DEFAULT_NS
            } else {
                self.ts_first_rtt as u64
            };
            let synfin = u32::from(fl & (TcpFlags::SYN | TcpFlags::FIN) != 0);
            let ooo = seq_not_advanced
                && elapsed_u64(now, f.nextseq_time) < ooo_thres
                && f.nextseq != seq.wrapping_add(seglen).wrapping_add(synfin);
            if fast {
                ta |= FAST_RETRANSMISSION;
                break 'retrans;
            }
            if ooo {
                ta |= OUT_OF_ORDER;
                break 'retrans;
            }
            if seq_not_advanced {
                ta |= RETRANSMISSION;
            }
        }

        let mut nextseq = seq.wrapping_add(seglen);
        if fl & (TcpFlags::SYN | TcpFlags::FIN) != 0 {
            nextseq = nextseq.wrapping_add(1);
        }
        // Highest next seq seen; zero-window probes do not advance it.
        if (gt_seq(nextseq, f.nextseq) || f.nextseq == 0) && ta & ZERO_WINDOW_PROBE == 0 {
            f.nextseq = nextseq;
            f.nextseq_time = now;
        }
        // Highest contiguous seq, for "ACKed unseen segment" in the other direction.
        if (seq == f.maxseqtobeacked || f.maxseqtobeacked == 0) && ta & ZERO_WINDOW_PROBE == 0 {
            f.maxseqtobeacked = f.nextseq;
        }
        f.window = window;
        f.lastack = ack;
        f.lastack_time = now;
        f.lastsegmentflags = ta;
        ta
    }
}

/// The flags as tshark's fields show them: Wireshark's tree adds the plain
/// `tcp.analysis.retransmission` item to fast and spurious retransmissions too (seen with
/// tshark 4.0.17 on FTPv6-1.cap frame 210), so `-Y tcp.analysis.retransmission` counts all three.
pub(crate) fn as_displayed(ta: u16) -> u16 {
    if ta & (FAST_RETRANSMISSION | SPURIOUS_RETRANSMISSION) != 0 {
        ta | RETRANSMISSION
    } else {
        ta
    }
}

/// Adds one segment's flags to per-direction counts (a frame counts once per flag, as
/// `tshark -Y tcp.analysis.<flag>` counts frames; see [`as_displayed`]).
pub(crate) fn count(c: &mut crate::tcp::AnalysisCounts, ta: u16) {
    let ta = as_displayed(ta);
    let add = |n: &mut u32, bit: u16| {
        if ta & bit != 0 {
            *n = n.saturating_add(1);
        }
    };
    add(&mut c.retransmission, RETRANSMISSION);
    add(&mut c.fast_retransmission, FAST_RETRANSMISSION);
    add(&mut c.spurious_retransmission, SPURIOUS_RETRANSMISSION);
    add(&mut c.keep_alive, KEEP_ALIVE);
    add(&mut c.keep_alive_ack, KEEP_ALIVE_ACK);
    add(&mut c.zero_window, ZERO_WINDOW);
    add(&mut c.zero_window_probe, ZERO_WINDOW_PROBE);
    add(&mut c.zero_window_probe_ack, ZERO_WINDOW_PROBE_ACK);
    add(&mut c.window_update, WINDOW_UPDATE);
    add(&mut c.window_full, WINDOW_FULL);
    add(&mut c.duplicate_ack, DUPLICATE_ACK);
    add(&mut c.lost_segment, LOST_SEGMENT);
    add(&mut c.ack_lost_segment, ACK_LOST_SEGMENT);
    add(&mut c.out_of_order, OUT_OF_ORDER);
}
