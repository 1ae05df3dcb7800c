//! Rules on the TCP handshake and transfer.

use crate::decode::{IcmpError, IcmpErrorKind};
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

/// What an ICMP error says about the path, for a DBA (RFC 792, RFC 1812, RFC 4443).
pub(crate) fn icmp_meaning(e: &IcmpError) -> &'static str {
    match (e.v6, e.kind, e.code) {
        (false, IcmpErrorKind::DestinationUnreachable, 0) => "network unreachable: no route to the server's network",
        (false, IcmpErrorKind::DestinationUnreachable, 1) => "host unreachable: the server's address does not answer on its network (host down, wrong address, ARP failure)",
        (false, IcmpErrorKind::DestinationUnreachable, 2) => "protocol unreachable",
        (false, IcmpErrorKind::DestinationUnreachable, 3) => "port unreachable: the host answered that nothing listens on this port",
        (false, IcmpErrorKind::DestinationUnreachable, 4) => "fragmentation needed: the path's MTU is smaller than the packet",
        (false, IcmpErrorKind::DestinationUnreachable, 6 | 7) => "destination network or host unknown",
        (false, IcmpErrorKind::DestinationUnreachable, 9 | 10 | 13) => "administratively prohibited: a firewall or router filter rejected the connection",
        (true, IcmpErrorKind::DestinationUnreachable, 0) => "no route to the destination",
        (true, IcmpErrorKind::DestinationUnreachable, 1) => "administratively prohibited: a firewall rejected the connection",
        (true, IcmpErrorKind::DestinationUnreachable, 3) => "address unreachable: the server's address does not answer on its network",
        (true, IcmpErrorKind::DestinationUnreachable, 4) => "port unreachable: the host answered that nothing listens on this port",
        (true, IcmpErrorKind::DestinationUnreachable, 5 | 6) => "rejected by a routing policy",
        (_, IcmpErrorKind::DestinationUnreachable, _) => "destination unreachable",
        (_, IcmpErrorKind::TimeExceeded, _) => "time exceeded: the packet's TTL ran out on the way (a routing loop or a path too long)",
        (_, IcmpErrorKind::PacketTooBig, _) => "packet too big for the path's MTU",
        (_, IcmpErrorKind::ParameterProblem, _) => "parameter problem in the packet's header",
        (_, IcmpErrorKind::SourceQuench, _) => "source quench (congestion)",
        (_, IcmpErrorKind::Redirect, _) => "redirect to another router",
    }
}

/// `tcp.unreachable`: an ICMP error answered the SYN.
pub(super) fn syn_unreachable(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let syn = t.dir(Direction::ToServer).syn?;
    if t.syn_ack.is_some() {
        return None;
    }
    let icmp = t.icmp_error?;
    let meaning = icmp_meaning(&icmp.error);
    let summary = format!(
        "The connection to {} failed: {} answered the SYN with ICMP{} type {} code {} ({}).",
        t.server,
        icmp.from,
        if icmp.error.v6 { "v6" } else { "" },
        icmp.error.icmp_type,
        icmp.error.code,
        meaning
    );
    Some(
        FindingBuilder::new(Code::TcpUnreachable, summary)
            .detail("icmp_type", icmp.error.icmp_type)
            .detail("icmp_code", icmp.error.code)
            .detail("meaning", meaning)
            .detail("from", icmp.from.to_string())
            .detail("attempts", t.dir(Direction::ToServer).syn_count.max(1))
            .evidence_at(syn, "client SYN")
            .evidence_at(icmp.at, format!("ICMP error from {}", icmp.from))
            .build(),
    )
}

/// `tcp.no_answer`: SYN (and retries) with nothing at all coming back.
pub(super) fn syn_unanswered(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let client = t.dir(Direction::ToServer);
    let syn = client.syn?;
    if t.syn_ack.is_some() || t.dir(Direction::ToClient).frames > 0 || t.icmp_error.is_some() {
        return None;
    }
    if t.handshake_unseen() {
        return None; // not unanswered: completed out of the capture's sight
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
