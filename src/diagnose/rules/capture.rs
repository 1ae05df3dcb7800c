//! Rules about the capture itself: artefacts to tell apart from network faults.

use crate::diagnose::{Code, FindingBuilder, Settings};
use crate::facts::{CaptureFacts, ConnectionFacts};
use crate::report::model::Finding;
use crate::tcp::{Direction, RoleBasis};

/// `capture.one_direction`: one side's packets are missing altogether.
pub(super) fn one_direction(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let to_server = t.dir(Direction::ToServer);
    let to_client = t.dir(Direction::ToClient);
    let seen = if to_server.frames == 0 && to_client.frames > 0 {
        "server_to_client"
    } else if to_client.frames == 0 && to_server.frames > to_server.syn_count.into() {
        // SYNs alone are an unanswered attempt (tcp.no_answer), not a one-sided capture.
        "client_to_server"
    } else {
        return None;
    };
    let summary = format!(
        "Only the {} direction of this connection was captured ({} frames); the other direction never appears.",
        seen.replace('_', " "),
        to_server.frames + to_client.frames
    );
    Some(
        FindingBuilder::new(Code::CaptureOneDirection, summary)
            .detail("seen", seen)
            .evidence_at(t.first, "first frame")
            .build(),
    )
}

/// `capture.duplicates`: the same packet captured twice.
pub(super) fn duplicates(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let count = u64::from(t.dir(Direction::ToServer).flags.duplicate)
        + u64::from(t.dir(Direction::ToClient).flags.duplicate);
    if count == 0 {
        return None;
    }
    let summary = format!(
        "{count} packet{} captured twice (same IP ID, sequence number and payload): a capture artefact, not counted as retransmissions.",
        if count == 1 { " was" } else { "s were" }
    );
    Some(
        FindingBuilder::new(Code::CaptureDuplicates, summary)
            .detail("count", count)
            .build(),
    )
}

/// `capture.packet_loss`: the peer acknowledged data the capture never saw.
pub(super) fn packet_loss(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    let (a, b) = (t.dir(Direction::ToServer), t.dir(Direction::ToClient));
    let gaps = a.gaps + b.gaps;
    let acked_unseen = a.flags.ack_lost_segment + b.flags.ack_lost_segment;
    if gaps == 0 || acked_unseen == 0 {
        return None;
    }
    let bytes = a.gap_bytes + b.gap_bytes;
    let summary = format!(
        "The capture missed {bytes} bytes in {gaps} gap{} that the receiver acknowledged: the capture dropped packets, the network did not.",
        if gaps == 1 { "" } else { "s" }
    );
    Some(
        FindingBuilder::new(Code::CapturePacketLoss, summary)
            .detail("gaps", gaps)
            .detail("bytes", bytes)
            .build(),
    )
}

/// `capture.mid_stream`: the connection was already open when the capture began.
pub(super) fn mid_stream(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = &c.tcp;
    if !t.mid_stream || t.roles == RoleBasis::SynAck {
        return None;
    }
    Some(
        FindingBuilder::new(
            Code::CaptureMidStream,
            "The connection began before the capture started: its handshake and login are not in the trace.".to_string(),
        )
        .evidence_at(t.first, "first frame seen")
        .build(),
    )
}

/// `capture.malformed` for inputs that could not be read to the end.
pub(super) fn malformed_input(c: &CaptureFacts) -> Vec<Finding> {
    c.damage
        .iter()
        .map(|d| {
            let summary = format!(
                "Input {} is damaged at byte {} ({}); the report covers the {} frame{} read before it.",
                d.input,
                d.offset,
                d.what,
                d.last_good_frame,
                if d.last_good_frame == 1 { "" } else { "s" }
            );
            FindingBuilder::new(Code::CaptureMalformed, summary)
                .detail("what", d.what.clone())
                .detail("input", d.input)
                .detail("offset", d.offset)
                .build()
        })
        .collect()
}

/// `capture.truncated_frames`: frames cut by the snaplen.
pub(super) fn truncated_frames(c: &CaptureFacts) -> Vec<Finding> {
    c.truncated
        .iter()
        .filter(|(_, count, _)| *count > 0)
        .map(|&(input, count, snaplen)| {
            let summary = format!(
                "{count} frame{} in input {input} {} cut short by the capture's snaplen{}.",
                if count == 1 { "" } else { "s" },
                if count == 1 { "was" } else { "were" },
                snaplen
                    .map(|s| format!(" of {s} bytes"))
                    .unwrap_or_default()
            );
            FindingBuilder::new(Code::CaptureTruncatedFrames, summary)
                .detail("count", count)
                .detail("snaplen", snaplen)
                .detail("input", input)
                .build()
        })
        .collect()
}

/// `capture.malformed` on a connection: bytes that should have been TDS and were not.
pub(super) fn undecodable(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    use crate::facts::AnomalyKind;
    let first = c.anomalies.first()?;
    let what = match first.kind {
        AnomalyKind::NotTds => "not_tds",
        AnomalyKind::MalformedTds => "malformed_tds",
        AnomalyKind::TdsResync => "tds_resync",
        AnomalyKind::TdsTooLarge => "tds_too_large",
    };
    let summary = match first.kind {
        AnomalyKind::NotTds => format!(
            "The traffic on the SQL Server port {} is not TDS: it could not be decoded (another program on the port, or corrupt data).",
            c.tcp.server.port()
        ),
        _ => format!("Protocol bytes could not be decoded: {}.", first.detail),
    };
    let mut b = FindingBuilder::new(Code::CaptureMalformed, summary)
        .detail("what", what)
        .detail("input", first.at.frame.input)
        .detail("count", c.anomalies.len());
    for a in c.anomalies.iter().take(5) {
        b = b.evidence_at(a.at, a.detail.clone());
    }
    Some(b.build())
}
