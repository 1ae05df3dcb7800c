//! Rules on requests after the login: cancels, server errors, abandoned requests.

use crate::diagnose::{secs, Code, FindingBuilder, Settings};
use crate::facts::{ConnectionFacts, Dialect, TdsFacts};
use crate::report::model::Finding;
use crate::tcp::Direction;

use super::login::end_mark;

fn tds7(c: &ConnectionFacts) -> Option<&TdsFacts> {
    c.tds.as_ref().filter(|t| t.dialect == Dialect::Tds7)
}

/// Command timeouts of common drivers, in whole seconds, for telling a timeout from a user
/// cancel: SqlClient CommandTimeout 30 s (`tcp-timing.md` §3); 15 and 60 are common settings.
const DRIVER_TIMEOUTS_S: &[f64] = &[15.0, 30.0, 60.0];

/// `request.attention`: the client cancelled requests.
pub(super) fn attention(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    // An ATTENTION that cancelled the login belongs to login.timeout.
    let cancelled_logins = t.attentions.iter().filter(|a| a.during_login).count();
    let count = t.attention_count.saturating_sub(cancelled_logins as u64);
    let first = t.request_attentions().next()?;
    let after = first.request_at.map(|r| first.at.ts.nanos_since(r.ts));
    let acknowledged = !t.cancel_pending();
    let timeout_like = after.is_some_and(|ns| {
        let s = ns as f64 / 1e9;
        DRIVER_TIMEOUTS_S.iter().any(|d| (s - d).abs() < 0.5)
    });
    let summary = format!(
        "The client cancelled {} request{} (ATTENTION){}{}.",
        count,
        if count == 1 { "" } else { "s" },
        match after {
            Some(ns) => format!(
                " {:.1} s after sending it{}",
                ns as f64 / 1e9,
                if timeout_like {
                    ", the length of a typical command timeout"
                } else {
                    ""
                }
            ),
            None => String::new(),
        },
        match (acknowledged, count == 1) {
            (true, true) => "; the server acknowledged it",
            (true, false) => "; the server acknowledged them",
            (false, true) => "; the server never acknowledged it",
            (false, false) => "; the server did not acknowledge them all",
        }
    );
    let mut b = FindingBuilder::new(Code::RequestAttention, summary)
        .detail("count", count)
        .detail("acknowledged", acknowledged);
    if let Some(sid) = first.smp_sid {
        b = b.detail("smp_session", sid);
    }
    if let Some(ns) = after {
        b = b.detail("after_s", secs(ns));
    }
    if let Some(r) = first.request_at {
        b = b.evidence_at(r, "request");
    }
    b = b.evidence_at(first.at, "ATTENTION");
    if let Some(ack) = first.acknowledged {
        b = b.evidence_at(ack, "DONE with ATTN");
    }
    Some(b.build())
}

/// `request.error`: ERROR tokens after the login.
pub(super) fn server_error(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    let e = t.errors.first()?;
    let summary = format!(
        "The server returned error {} (class {}, state {}){}: {}",
        e.number,
        e.class,
        e.state,
        if t.error_count > 1 {
            format!(" and {} more", t.error_count - 1)
        } else {
            String::new()
        },
        e.message
    );
    let mut b = FindingBuilder::new(Code::RequestError, summary)
        .detail("number", e.number)
        .detail("state", e.state)
        .detail("class", e.class)
        .detail("message", e.message.clone())
        .detail("count", t.error_count);
    if !e.procedure.is_empty() {
        b = b
            .detail("procedure", e.procedure.clone())
            .detail("line", e.line);
    }
    if let Some(sid) = e.smp_sid {
        b = b.detail("smp_session", sid);
    }
    for err in t.errors.iter().take(5) {
        let on_session = err
            .smp_sid
            .map(|sid| format!(" on MARS session {sid}"))
            .unwrap_or_default();
        b = b.evidence_at(
            err.at,
            format!("ERROR {} class {}{on_session}", err.number, err.class),
        );
    }
    Some(b.build())
}

/// `request.abandoned`: the client closed while a request had no answer at all.
pub(super) fn abandoned(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    let req = t.outstanding.as_ref()?;
    if req.first_response.is_some() || t.gaps > 0 || super::login::one_sided(c) {
        return None;
    }
    let client_closed = c.tcp.end.closed_by() == Some(Direction::ToServer);
    if !client_closed {
        return None;
    }
    let end = end_mark(c);
    let after = end.ts.nanos_since(req.at.ts);
    let summary = format!(
        "The client closed the connection {:.1} s after sending a request that had no answer yet.",
        after as f64 / 1e9
    );
    Some(
        FindingBuilder::new(Code::RequestAbandoned, summary)
            .detail("after_s", secs(after))
            .evidence_at(req.at, "request")
            .evidence_at(end, "client closed")
            .build(),
    )
}

/// Requests on one connection that make a chatty conversation: with hundreds of small round
/// trips the network's round-trip time, not the server, sets the pace.
const CHATTY_MIN_REQUESTS: u64 = 100;
/// Share of the connection's time spent waiting on round trips (requests × RTT).
const CHATTY_RTT_SHARE: f64 = 0.5;

/// `pattern.chatty`: many small round trips whose time is mostly network latency.
pub(super) fn chatty(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    if t.request_count < CHATTY_MIN_REQUESTS {
        return None;
    }
    let rtt = c.tcp.handshake_rtt_ns.filter(|&r| r > 0)?;
    let duration = c.tcp.last.ts.nanos_since(c.tcp.first.ts).max(1);
    let waiting = rtt.saturating_mul(i64::try_from(t.request_count).unwrap_or(i64::MAX));
    if (waiting as f64) < CHATTY_RTT_SHARE * duration as f64 {
        return None;
    }
    let summary = format!(
        "{} requests on one connection, each a round trip of {:.1} ms: about {:.1} s of the {:.1} s went to network latency. Batch the statements or move the work to the server.",
        t.request_count,
        rtt as f64 / 1e6,
        waiting as f64 / 1e9,
        duration as f64 / 1e9
    );
    let mut b = FindingBuilder::new(Code::PatternChatty, summary)
        .detail("requests", t.request_count)
        .detail("rtt_ms", (rtt as f64 / 1e3).round() / 1e3);
    if let Some(first) = t.requests.first() {
        b = b.evidence_at(first.at, "first request");
    }
    Some(b.build())
}
