//! Rules on how a connection ended: who reset it (the server, the client, or a device in the
//! path forging resets), whether it was killed while idle, and servers that closed first.

use crate::diagnose::login::{login_outcome, LoginOutcome};
use crate::diagnose::{secs, Code, FindingBuilder, Settings};
use crate::facts::{ConnectionFacts, Dialect};
use crate::report::model::Finding;
use crate::tcp::{DirFacts, Direction, Mark, TcpEnd};

/// RSTs from both ends this close together were sent by one device resetting both sides
/// (`tcp-timing.md` §6): a real endpoint's abort draws no RST from its peer.
const BOTH_ENDS_WINDOW_NS: i64 = 100_000_000;
/// A request answered by a reset within this time found the connection already dead: the
/// kill happened during the idle period before it.
const WAKE_UP_RESET_NS: i64 = 3_000_000_000;

fn side(d: Direction) -> &'static str {
    match d {
        Direction::ToServer => "client",
        Direction::ToClient => "server",
    }
}

/// The first RST and the direction it travelled (sent by that direction's sender).
fn first_rst(c: &ConnectionFacts) -> Option<(Direction, Mark)> {
    let t = &c.tcp;
    [Direction::ToServer, Direction::ToClient]
        .into_iter()
        .filter_map(|d| t.dir(d).rst.map(|m| (d, m)))
        .min_by_key(|(_, m)| m.ts)
}

/// A RST whose TTL is not the sender's usual TTL: (rst ttl, usual ttl).
fn ttl_mismatch(d: &DirFacts) -> Option<(u8, u8)> {
    let (rst, usual) = (d.rst_ttl?, d.ttl?);
    (rst != usual).then_some((rst, usual))
}

/// The side sent nothing but SYNs and RSTs. A client like that never completed the
/// handshake, and its "usual" TTL is the SYN's: a SYN scanner (nmap -sS, masscan) crafts that
/// SYN with a TTL of its own, and its kernel's RST answering the SYN-ACK then looks forged.
fn only_syns_and_rsts(d: &DirFacts) -> bool {
    d.frames <= u64::from(d.syn_count) + u64::from(d.rst_count)
}

/// The connection ended before the client completed the handshake: the server's SYN-ACK came
/// and the client sent no ACK, only a reset (or nothing).
fn handshake_unfinished(c: &ConnectionFacts) -> bool {
    let client = c.tcp.dir(Direction::ToServer);
    client.syn.is_some() && c.tcp.syn_ack.is_some() && only_syns_and_rsts(client)
}

/// Why a reset was forged by a device in the path, if it was.
fn forged(c: &ConnectionFacts, by: Direction) -> Option<(&'static str, Option<(u8, u8)>)> {
    let t = &c.tcp;
    let ttl_known = !(by == Direction::ToServer && only_syns_and_rsts(t.dir(by)));
    if let Some(m) = ttl_mismatch(t.dir(by)).filter(|_| ttl_known) {
        return Some(("ttl", Some(m)));
    }
    let (a, b) = (
        t.dir(Direction::ToServer).rst?,
        t.dir(Direction::ToClient).rst?,
    );
    (b.ts.nanos_since(a.ts).abs() <= BOTH_ENDS_WINDOW_NS).then_some(("both_ends", None))
}

/// What the connection was doing when it ended: `handshake` (an addition: the client never
/// completed the TCP handshake), `login`, `request` or `idle`.
fn phase(c: &ConnectionFacts) -> &'static str {
    if handshake_unfinished(c) {
        return "handshake";
    }
    if let Some(t) = c.tds.as_ref().filter(|t| t.dialect == Dialect::Tds7) {
        match login_outcome(c) {
            Some(
                LoginOutcome::Ok
                | LoginOutcome::Inferred
                | LoginOutcome::Encrypted
                | LoginOutcome::NotSeen,
            )
            | None => {}
            Some(_) => return "login",
        }
        // A request still unanswered, or cancelled and the cancel not yet acknowledged.
        return if t.cancel_pending() || t.outstanding.as_ref().is_some_and(|r| r.done.is_none()) {
            "request"
        } else {
            "idle"
        };
    }
    let (cs, sc) = (
        c.tcp.dir(Direction::ToServer),
        c.tcp.dir(Direction::ToClient),
    );
    match (cs.last_data, sc.last_data) {
        (Some(a), Some(b)) if a.ts > b.ts => "request",
        (Some(_), None) => "request",
        _ => "idle",
    }
}

/// The phase as words after "reset the connection …".
fn during(phase: &str) -> &'static str {
    match phase {
        "handshake" => "before completing the TCP handshake",
        "login" => "during the login",
        "request" => "while a request was in progress",
        _ => "while it was idle",
    }
}

/// The connection never got past its SYN (`tcp.refused` and its kin say why).
fn refused(c: &ConnectionFacts) -> bool {
    c.tcp.never_connected()
}

/// Keep-alives this side sent without an answer before the connection ended.
const MIN_UNANSWERED_PROBES: u32 = 2;
/// Retransmissions of one segment in a row that make a storm: Linux and Windows both retry
/// a data segment 5 or more times with doubling timeouts before giving up (`tcp-timing.md` §2).
const MIN_STORM_RETRANSMISSIONS: u32 = 3;

/// The side gave up on a dead path: unanswered keep-alives or a retransmission storm came
/// just before its own RST (or the end). Its reset is then a consequence, not a cause.
fn gave_up_on_dead_path(d: &DirFacts) -> bool {
    d.unanswered_keepalives >= MIN_UNANSWERED_PROBES
        || d.retransmission_run >= MIN_STORM_RETRANSMISSIONS
}

/// Whether the peer of `dir` was captured at all: with one direction missing from the capture,
/// "no answer" is what the capture shows, not what happened.
fn peer_captured(c: &ConnectionFacts, dir: Direction) -> bool {
    c.tcp.dir(dir.reverse()).frames > 0
}

/// `tcp.keepalive_unanswered`: keep-alive probes with no answer, then the sender gave up.
pub(super) fn keepalive_unanswered(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let (dir, d) = [Direction::ToServer, Direction::ToClient]
        .into_iter()
        .map(|dir| (dir, t.dir(dir)))
        .find(|(dir, d)| {
            d.unanswered_keepalives >= MIN_UNANSWERED_PROBES && peer_captured(c, *dir)
        })?;
    if matches!(t.end, TcpEnd::Open) {
        return None;
    }
    let (first, last) = d.keepalive_run?;
    let probes = d.unanswered_keepalives;
    let interval = last.ts.nanos_since(first.ts) / i64::from(probes.saturating_sub(1).max(1));
    let sender = side(dir);
    let summary = format!(
        "The {sender} sent {probes} keep-alive probes {:.1} s apart and got no answer, then gave up on the connection: the path dropped its packets silently.",
        interval as f64 / 1e9
    );
    Some(
        FindingBuilder::new(Code::TcpKeepaliveUnanswered, summary)
            .detail("probes", probes)
            .detail("interval_s", secs(interval))
            .detail("by", sender)
            .evidence_at(first, "first unanswered keep-alive")
            .evidence_at(last, "last keep-alive")
            .evidence_at(super::login::end_mark(c), "end")
            .build(),
    )
}

/// `tcp.retransmission_storm`: one segment retransmitted again and again, then the end.
pub(super) fn retransmission_storm(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let (dir, d) = [Direction::ToServer, Direction::ToClient]
        .into_iter()
        .map(|dir| (dir, t.dir(dir)))
        .find(|(dir, d)| {
            d.retransmission_run >= MIN_STORM_RETRANSMISSIONS && peer_captured(c, *dir)
        })?;
    let (first, last) = d.retransmission_run_marks?;
    // Ended by it: nothing but the end followed the storm.
    let ended_after = !matches!(t.end, TcpEnd::Open) || t.last.frame == last.frame;
    if !ended_after {
        return None;
    }
    let span = last.ts.nanos_since(first.ts);
    let sender = side(dir);
    let summary = format!(
        "The {sender} retransmitted the same segment {} times over {:.1} s with no answer, and the connection died: the path to the {} stopped delivering packets.",
        d.retransmission_run,
        span as f64 / 1e9,
        side(dir.reverse())
    );
    Some(
        FindingBuilder::new(Code::TcpRetransmissionStorm, summary)
            .detail("count", d.retransmission_run)
            .detail("span_s", secs(span))
            .detail("by", sender)
            .evidence_at(first, "first retransmission")
            .evidence_at(last, "last retransmission")
            .build(),
    )
}

/// `reset.by_server`, `reset.by_client` or `reset.by_middlebox`.
pub(super) fn reset(c: &ConnectionFacts, settings: &Settings) -> Option<Finding> {
    if refused(c) {
        return None; // tcp.refused says it
    }
    let (by, at) = first_rst(c)?;
    if gave_up_on_dead_path(c.tcp.dir(by)) {
        return None; // tcp.keepalive_unanswered or tcp.retransmission_storm says it
    }
    let phase = phase(c);
    // A flow dropped while idle is often only found out when the client uses it again: the
    // reset answers the first request after the silence.
    let idle_first = (phase == "request")
        .then(|| idle_gap(c, at))
        .flatten()
        .map(|(last, trigger)| trigger.ts.nanos_since(last.ts))
        .filter(|&idle| idle >= settings.idle_threshold_ns);
    let when = match idle_first {
        Some(idle) => format!(
            "when the client sent its first request after {:.0} s idle",
            idle as f64 / 1e9
        ),
        None => during(phase).to_string(),
    };
    let sender = side(by);
    if let Some((why, ttls)) = forged(c, by) {
        let summary = match (why, ttls) {
            ("ttl", Some((rst, usual))) => format!(
                "A device between client and server reset the connection {when}: the reset claims to come from the {sender} but has TTL {rst}, while the {sender}'s packets have TTL {usual}."
            ),
            _ => format!(
                "A device between client and server reset the connection {when}: both ends received resets at the same moment."
            ),
        };
        let mut b = FindingBuilder::new(Code::ResetByMiddlebox, summary)
            .detail("why", why)
            .detail("phase", phase)
            .detail("posing_as", sender)
            .evidence_at(at, format!("RST posing as the {sender}"));
        if let Some((rst, usual)) = ttls {
            b = b.detail("ttl", rst).detail("peer_ttl", usual);
        }
        return Some(b.build());
    }
    let code = match by {
        Direction::ToClient => Code::ResetByServer,
        Direction::ToServer => Code::ResetByClient,
    };
    // A side that had already closed answers late data from its peer with a RST: its own
    // close, not the reset, was the decision.
    let closed_before = c.tcp.dir(by).fin.filter(|fin| fin.ts <= at.ts);
    let summary = match closed_before {
        None if phase == "handshake" && by == Direction::ToServer => "The client answered the server's SYN-ACK with a reset instead of completing the handshake: it had given up on the attempt (a connect timeout shorter than the server's answer), or it is a SYN scanner, which never completes one.".to_string(),
        Some(fin) => format!(
            "The {sender} reset the connection {when}, {:.1} s after it had closed its side (FIN): data from the other side arrived on a socket the {sender} had already closed.",
            at.ts.nanos_since(fin.ts) as f64 / 1e9
        ),
        None => format!("The {sender} reset the connection {when}."),
    };
    let mut b = FindingBuilder::new(code, summary)
        .detail("phase", phase)
        .detail("after_close", closed_before.is_some());
    if let Some(fin) = closed_before {
        b = b.evidence_at(fin, format!("FIN from the {sender}"));
    }
    Some(b.evidence_at(at, format!("RST from the {sender}")).build())
}

/// The last application data before the connection died, and what ended it: the end itself,
/// or a request the dead connection answered with a reset.
fn idle_gap(c: &ConnectionFacts, end: Mark) -> Option<(Mark, Mark)> {
    let (cs, sc) = (
        c.tcp.dir(Direction::ToServer),
        c.tcp.dir(Direction::ToClient),
    );
    let outstanding = c
        .tds
        .as_ref()
        .and_then(|t| t.outstanding.as_ref())
        .filter(|r| r.first_response.is_none());
    if let Some(req) = outstanding {
        // Woken up: the request found a dead connection.
        if end.ts.nanos_since(req.at.ts) <= WAKE_UP_RESET_NS {
            let before = sc.last_data.or(c.tcp.syn_ack)?;
            return Some((before, req.at));
        }
        return None;
    }
    let last = match (cs.last_data, sc.last_data) {
        (Some(a), Some(b)) => Some(if a.ts > b.ts { a } else { b }),
        (a, b) => a.or(b),
    }
    .or(c.tcp.syn_ack)?;
    Some((last, end))
}

/// `idle.killed`: reset, or silently dropped, after sitting idle.
pub(super) fn idle_killed(c: &ConnectionFacts, s: &Settings) -> Option<Finding> {
    if refused(c) || matches!(phase(c), "login" | "handshake") {
        return None;
    }
    let t = &c.tcp;
    let probes = u64::from(t.dir(Direction::ToServer).flags.keep_alive)
        + u64::from(t.dir(Direction::ToClient).flags.keep_alive);
    let (by, end) = match first_rst(c) {
        Some((by, at)) => {
            let who = if gave_up_on_dead_path(c.tcp.dir(by)) {
                "unknown"
            } else if forged(c, by).is_some() {
                "middlebox"
            } else {
                side(by)
            };
            (who, at)
        }
        // Keep-alives that nobody answered, then the sender gave up: dropped silently.
        None if probes > 0 && !matches!(t.end, TcpEnd::Open) => {
            ("unknown", super::login::end_mark(c))
        }
        None => return None,
    };
    let (last, trigger) = idle_gap(c, end)?;
    let idle = trigger.ts.nanos_since(last.ts);
    if idle < s.idle_threshold_ns {
        return None;
    }
    let summary = format!(
        "The connection was killed after {:.0} s idle ({}){}.",
        idle as f64 / 1e9,
        match by {
            "middlebox" => "a device in the path reset it".to_string(),
            "unknown" => "nothing answered its keep-alives".to_string(),
            who => format!("the {who} reset it"),
        },
        if probes > 0 {
            format!("; {probes} keep-alive probes were sent")
        } else {
            String::new()
        }
    );
    Some(
        FindingBuilder::new(Code::IdleKilled, summary)
            .detail("idle_s", secs(idle))
            .detail("by", by)
            .detail("keepalive_probes", probes)
            .evidence_at(last, "last application data")
            .evidence_at(end, "end")
            .build(),
    )
}

/// `tcp.server_closed`: the server sent the first FIN.
pub(super) fn server_closed_first(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let first = match t.end {
        TcpEnd::Fin {
            first: Direction::ToClient,
        }
        | TcpEnd::HalfClosed {
            by: Direction::ToClient,
        } => t.dir(Direction::ToClient).fin?,
        TcpEnd::Rst { .. } => {
            // A FIN from the server before the reset still means the server closed first.
            let fin = t.dir(Direction::ToClient).fin?;
            if t.dir(Direction::ToServer)
                .fin
                .is_some_and(|c| c.ts < fin.ts)
            {
                return None;
            }
            fin
        }
        _ => return None,
    };
    let phase = phase(c);
    Some(
        FindingBuilder::new(
            Code::TcpServerClosed,
            format!(
                "The server closed the connection first (FIN) {}.",
                during(phase)
            ),
        )
        .detail("phase", phase)
        .evidence_at(first, "server FIN")
        .build(),
    )
}
