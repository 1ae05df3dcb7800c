//! IP fragment reassembly for IPv4 (RFC 791 §3.2) and IPv6 (RFC 8200 §4.5), with bounded
//! memory.
//!
//! Bounds ([`Limits`](crate::limits::Limits)): at most `ip_fragment_bytes` per datagram (its
//! highest fragment end), at most `ip_fragment_datagrams` datagrams at once (a new datagram
//! beyond that is refused, not an old one evicted: eviction would let a stream of junk
//! fragments starve every real datagram), and `ip_fragment_timeout_s` from a datagram's first
//! fragment, measured on packet timestamps only.
//!
//! Overlaps: the **first** copy of a byte wins (what Linux and Windows do since the
//! RFC 5722/RFC 8200 era made overlapping IPv6 fragments illegal); later bytes for the same
//! offsets are ignored and counted as overlapping. A later "last fragment" that disagrees
//! with the first one about the datagram length is ignored the same way.

use std::collections::HashMap;
use std::net::IpAddr;

use super::IpInfo;
use crate::time::Timestamp;

/// What identifies the fragments of one datagram: RFC 791 §3.2 (source, destination,
/// protocol, identification) and RFC 8200 §4.5 (source, destination, identification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 protocol; 0 for IPv6, where it is not part of the key.
    pub protocol: u8,
    pub ident: u32,
}

/// One fragment, as the IP layer hands it over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fragment<'a> {
    /// Offset of `data` within the datagram's payload (IPv4) or fragmentable part (IPv6).
    pub offset: u32,
    pub more: bool,
    pub data: &'a [u8],
    /// The IP facts of this fragment's packet.
    pub info: IpInfo,
    /// IPv4: the protocol. IPv6: the Next Header of this fragment's Fragment header, which
    /// counts only for the first fragment (RFC 8200 §4.5).
    pub next_header: u8,
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FragOutcome {
    Held,
    /// The datagram is complete in the buffer passed to `add`, `len` bytes long.
    Complete {
        len: usize,
        info: IpInfo,
        next_header: u8,
    },
    /// A limit was reached; the fragment (and, for the per-datagram limit, its datagram) is
    /// dropped.
    Limit,
}

/// Counters the decoder reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FragCounters {
    pub expired: u64,
    pub dropped: u64,
    pub overlapping: u64,
}

#[derive(Debug)]
struct Datagram {
    buf: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and not adjacent.
    have: Vec<(u32, u32)>,
    /// Datagram length, known once the fragment with M clear arrived.
    total: Option<u32>,
    deadline: Timestamp,
    /// The first fragment's (offset 0) IP facts and next header.
    first: Option<(IpInfo, u8)>,
    /// Facts of whichever fragment came first, until the real first one arrives.
    any_info: IpInfo,
    /// Exceeded the per-datagram limit: later fragments are dropped too, until it expires.
    failed: bool,
}

#[derive(Debug)]
pub(crate) struct FragmentTable {
    max_bytes: u32,
    max_datagrams: usize,
    timeout_ns: i64,
    datagrams: HashMap<FragKey, Datagram>,
    /// The earliest deadline of any held datagram, so `expire` is free when nothing is due.
    next_deadline: Option<Timestamp>,
    pub counters: FragCounters,
}

impl FragmentTable {
    pub fn new(max_bytes: usize, max_datagrams: usize, timeout_s: u32) -> Self {
        FragmentTable {
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            max_datagrams,
            timeout_ns: i64::from(timeout_s) * 1_000_000_000,
            datagrams: HashMap::new(),
            next_deadline: None,
            counters: FragCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Drops datagrams whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Timestamp) {
        match self.next_deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        let before = self.datagrams.len();
        let mut next: Option<Timestamp> = None;
        self.datagrams.retain(|_, d| {
            if d.deadline <= now {
                false
            } else {
                next = Some(next.map_or(d.deadline, |n| n.min(d.deadline)));
                true
            }
        });
        self.counters.expired += (before - self.datagrams.len()) as u64;
        self.next_deadline = next;
    }

    /// Adds a fragment. On completion the datagram's bytes are swapped into `out` (whose old
    /// allocation is dropped with the datagram).
    pub fn add(
        &mut self,
        key: FragKey,
        frag: Fragment<'_>,
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> FragOutcome {
        let len = u32::try_from(frag.data.len()).unwrap_or(u32::MAX);
        let start = frag.offset;
        let end = start.saturating_add(len);
        if !self.datagrams.contains_key(&key) {
            if self.datagrams.len() >= self.max_datagrams {
                self.expire(now);
            }
            if self.datagrams.len() >= self.max_datagrams {
                self.counters.dropped += 1;
                return FragOutcome::Limit;
            }
            let deadline = now.add_nanos(self.timeout_ns);
            self.next_deadline = Some(self.next_deadline.map_or(deadline, |n| n.min(deadline)));
            self.datagrams.insert(
                key,
                Datagram {
                    buf: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    deadline,
                    first: None,
                    any_info: frag.info,
                    failed: false,
                },
            );
        }
        let Some(d) = self.datagrams.get_mut(&key) else {
            return FragOutcome::Limit;
        };
        if d.failed {
            self.counters.dropped += 1;
            return FragOutcome::Limit;
        }
        if end > self.max_bytes {
            d.failed = true;
            d.buf = Vec::new();
            d.have = Vec::new();
            self.counters.dropped += 1;
            return FragOutcome::Limit;
        }
        let mut overlapped = false;
        if !frag.more {
            match d.total {
                Some(t) if t != end => overlapped = true,
                _ => d.total = Some(end),
            }
        } else if d.total.is_some_and(|t| end > t) {
            overlapped = true;
        }
        if !overlapped && start < end {
            let need = end as usize;
            if d.buf.len() < need {
                d.buf.resize(need, 0);
            }
            overlapped = copy_gaps(&mut d.buf, &d.have, start, end, frag.data);
            insert_range(&mut d.have, start, end);
        }
        if start == 0 && d.first.is_none() {
            d.first = Some((frag.info, frag.next_header));
        }
        if overlapped {
            self.counters.overlapping += 1;
        }
        let complete = match (d.total, d.have.as_slice(), d.first) {
            (Some(t), [(0, e)], Some(_)) => *e >= t,
            (Some(0), [], Some(_)) => true,
            _ => false,
        };
        if !complete {
            return FragOutcome::Held;
        }
        let Some(mut d) = self.datagrams.remove(&key) else {
            return FragOutcome::Held;
        };
        let total = d.total.unwrap_or(0) as usize;
        let (info, next_header) = d.first.unwrap_or((d.any_info, 0));
        d.buf.truncate(total);
        std::mem::swap(out, &mut d.buf);
        FragOutcome::Complete {
            len: total,
            info,
            next_header,
        }
    }
}

/// Copies the parts of `data` (covering `start..end`) that fall outside the ranges already
/// held; returns true if any part was already held.
fn copy_gaps(buf: &mut [u8], have: &[(u32, u32)], start: u32, end: u32, data: &[u8]) -> bool {
    let mut overlapped = false;
    let mut pos = start;
    let mut copy = |from: u32, to: u32| {
        let (a, b) = ((from - start) as usize, (to - start) as usize);
        if let (Some(dst), Some(src)) = (buf.get_mut(from as usize..to as usize), data.get(a..b)) {
            dst.copy_from_slice(src);
        }
    };
    for &(hs, he) in have {
        if he <= pos {
            continue;
        }
        if hs >= end {
            break;
        }
        if hs > pos {
            copy(pos, hs);
        }
        overlapped = true;
        pos = he;
        if pos >= end {
            break;
        }
    }
    if pos < end {
        copy(pos, end);
    }
    overlapped
}

/// Adds `start..end` to a sorted list of disjoint ranges, merging neighbours.
fn insert_range(have: &mut Vec<(u32, u32)>, start: u32, end: u32) {
    let mut s = start;
    let mut e = end;
    // Ranges that touch or overlap the new one are merged into it.
    let first = have.partition_point(|&(_, he)| he < s);
    let mut last = first;
    while let Some(&(hs, he)) = have.get(last) {
        if hs > e {
            break;
        }
        s = s.min(hs);
        e = e.max(he);
        last += 1;
    }
    have.splice(first..last, std::iter::once((s, e)));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_merge() {
        let mut h = Vec::new();
        insert_range(&mut h, 10, 20);
        insert_range(&mut h, 30, 40);
        insert_range(&mut h, 0, 5);
        assert_eq!(h, vec![(0, 5), (10, 20), (30, 40)]);
        insert_range(&mut h, 20, 30);
        assert_eq!(h, vec![(0, 5), (10, 40)]);
        insert_range(&mut h, 3, 12);
        assert_eq!(h, vec![(0, 40)]);
    }

    #[test]
    fn first_copy_wins() {
        let mut buf = vec![0u8; 10];
        let have = vec![(2, 4), (6, 8)];
        let over = copy_gaps(&mut buf, &have, 0, 10, &[1; 10]);
        assert!(over);
        assert_eq!(buf, vec![1, 1, 0, 0, 1, 1, 0, 0, 1, 1]);
    }
}
