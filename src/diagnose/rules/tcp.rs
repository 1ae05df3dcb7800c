//! Rules on the TCP handshake and transfer.

use crate::diagnose::{secs, Code, FindingBuilder, Settings};
use crate::facts::ConnectionFacts;
use crate::report::model::Finding;
use crate::tcp::{DirFacts, Direction};

/// `tcp.refused`: the client's SYN was answered by a RST from the server's address.
pub(super) fn syn_refused(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let syn = t.dir(Direction::ToServer).syn?;
    if t.syn_ack.is_some() {
        return None;
    }
    let server = t.dir(Direction::ToClient);
    let rst = server.rst?;
    let attempts = t.dir(Direction::ToServer).syn_count.max(1);
    let summary = format!(
        "The connection to {} was refused: the server answered the SYN with a reset after {:.1} ms ({} attempt{}).",
        t.server,
        rst.ts.nanos_since(syn.ts) as f64 / 1e6,
        attempts,
        if attempts == 1 { "" } else { "s" }
    );
    Some(
        FindingBuilder::new(Code::TcpRefused, summary)
            .detail("attempts", attempts)
            .evidence_at(syn, "client SYN")
            .evidence_at(rst, "RST from the server's address")
            .build(),
    )
}

/// `tcp.no_answer`: SYN (and retries) with nothing at all coming back.
pub(super) fn syn_unanswered(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let client = t.dir(Direction::ToServer);
    let syn = client.syn?;
    if t.syn_ack.is_some() || t.dir(Direction::ToClient).frames > 0 {
        return None;
    }
    let attempts = client.syn_count.max(1);
    let waited = t.last.ts.nanos_since(syn.ts);
    let summary = format!(
        "Nothing answered the connection to {}: {} SYN{} over {:.1} s got no reply (filtered, or the host is down).",
        t.server,
        attempts,
        if attempts == 1 { "" } else { "s" },
        waited as f64 / 1e9
    );
    Some(
        FindingBuilder::new(Code::TcpNoAnswer, summary)
            .detail("attempts", attempts)
            .detail("waited_s", secs(waited))
            .evidence_at(syn, "first SYN")
            .evidence_at(t.last, "last SYN retry")
            .build(),
    )
}

/// `tcp.syn_retry`: the handshake completed only after the SYN was sent again.
pub(super) fn syn_retried(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let client = t.dir(Direction::ToServer);
    let syn = client.syn?;
    let syn_ack = t.syn_ack?;
    if client.syn_count < 2 {
        return None;
    }
    let delay = syn_ack.ts.nanos_since(syn.ts);
    let summary = format!(
        "The connection to {} needed {} SYNs: the server answered only after {:.1} s.",
        t.server,
        client.syn_count,
        delay as f64 / 1e9
    );
    Some(
        FindingBuilder::new(Code::TcpSynRetry, summary)
            .detail("attempts", client.syn_count)
            .detail("delay_s", secs(delay))
            .evidence_at(syn, "first SYN")
            .evidence_at(syn_ack, "SYN-ACK")
            .build(),
    )
}

/// Data segments sent again by one side: Wireshark's retransmission flag (which fast and
/// spurious retransmissions carry too) without the SYN or SYN-ACK retries, which the
/// handshake rules report. Capture duplicates are counted apart by the tracker.
pub(crate) fn data_retransmissions(d: &DirFacts) -> u64 {
    u64::from(d.flags.retransmission).saturating_sub(u64::from(d.syn_count.saturating_sub(1)))
}

/// `tcp.retransmissions`: segments sent again (duplicate capture copies are not counted).
pub(super) fn retransmitted(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let to_server = data_retransmissions(t.dir(Direction::ToServer));
    let to_client = data_retransmissions(t.dir(Direction::ToClient));
    let count = to_server + to_client;
    if count == 0 {
        return None;
    }
    let max = t
        .dir(Direction::ToServer)
        .max_retransmits_per_segment
        .max(t.dir(Direction::ToClient).max_retransmits_per_segment);
    let summary = format!(
        "{} segment{} retransmitted ({} by the client, {} by the server).",
        count,
        if count == 1 { " was" } else { "s were" },
        to_server,
        to_client
    );
    Some(
        FindingBuilder::new(Code::TcpRetransmissions, summary)
            .detail("count", count)
            .detail("max_per_segment", max)
            .detail("by_client", to_server)
            .detail("by_server", to_client)
            .build(),
    )
}

/// `tcp.zero_window`: a receiver told its peer to stop sending.
pub(super) fn zero_window(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let (dir, side) = [
        (Direction::ToClient, "server"),
        (Direction::ToServer, "client"),
    ]
    .into_iter()
    .max_by_key(|(d, _)| t.dir(*d).flags.zero_window)?;
    let facts = t.dir(dir);
    if facts.flags.zero_window == 0 {
        return None;
    }
    let summary = format!(
        "The {} advertised a zero window {} time{} ({:.1} s in all): it stopped reading the data sent to it.",
        side,
        facts.flags.zero_window,
        if facts.flags.zero_window == 1 { "" } else { "s" },
        facts.zero_window_ns as f64 / 1e9
    );
    Some(
        FindingBuilder::new(Code::TcpZeroWindow, summary)
            .detail("side", side)
            .detail("count", facts.flags.zero_window)
            .detail("duration_s", secs(facts.zero_window_ns))
            .build(),
    )
}
