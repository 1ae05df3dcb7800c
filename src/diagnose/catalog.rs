//! The catalogue: every finding code, its severity and the next steps a DBA can take.
//! Codes are permanent (`../shared/spec/findings.md`): never rename or reuse one.

use crate::report::model::Severity;

/// Finding codes produced so far. Each variant's string is part of the JSON contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    TcpRefused,
    TcpNoAnswer,
    TcpSynRetry,
    TcpRetransmissions,
    TcpZeroWindow,
    CaptureOneDirection,
    CaptureDuplicates,
    CapturePacketLoss,
    CaptureTruncatedFrames,
    CaptureMidStream,
    CaptureMalformed,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TcpRefused => "tcp.refused",
            Code::TcpNoAnswer => "tcp.no_answer",
            Code::TcpSynRetry => "tcp.syn_retry",
            Code::TcpRetransmissions => "tcp.retransmissions",
            Code::TcpZeroWindow => "tcp.zero_window",
            Code::CaptureOneDirection => "capture.one_direction",
            Code::CaptureDuplicates => "capture.duplicates",
            Code::CapturePacketLoss => "capture.packet_loss",
            Code::CaptureTruncatedFrames => "capture.truncated_frames",
            Code::CaptureMidStream => "capture.mid_stream",
            Code::CaptureMalformed => "capture.malformed",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Code::TcpRefused | Code::TcpNoAnswer => Severity::Error,
            Code::TcpSynRetry
            | Code::TcpRetransmissions
            | Code::TcpZeroWindow
            | Code::CaptureOneDirection
            | Code::CapturePacketLoss
            | Code::CaptureMalformed => Severity::Warning,
            Code::CaptureDuplicates | Code::CaptureTruncatedFrames | Code::CaptureMidStream => {
                Severity::Info
            }
        }
    }

    /// General next steps; rules put fact-specific ones first.
    /// Sources: `../shared/knowledge/gne-causes.md` (sections B, D, E) and `tcp-timing.md`.
    pub fn next_steps(self) -> &'static [&'static str] {
        match self {
            Code::TcpRefused => &[
                "Check that the SQL Server service is running and listening on this address and port (ERRORLOG: \"Server is listening on ...\").",
                "Check that the TCP/IP protocol is enabled in SQL Server Configuration Manager and that the client uses the right port (alias, static or dynamic port).",
                "If the reset's TTL differs from the server's usual TTL, a firewall rejected the connection: check its rules for this port.",
            ],
            Code::TcpNoAnswer => &[
                "Check firewalls between client and server (network and host firewall) for this TCP port.",
                "Check that the server address is right and routed: Test-NetConnection -ComputerName <server> -Port <port> from the client.",
                "Capture on the server too: if the SYN arrives there but no SYN-ACK leaves, the server's host firewall or an overloaded listener is dropping it.",
            ],
            Code::TcpSynRetry => &[
                "The first SYN went unanswered and a retry succeeded: look for packet loss on the path or a listener that is briefly overloaded (listen backlog).",
                "If many connections show this at once, look for a connection storm from clients that do not pool connections.",
            ],
            Code::TcpRetransmissions => &[
                "Retransmissions mean segments were lost between the capture point and the receiver: check NIC and switch error counters, VM host network buffers and VPN devices on the path.",
                "Capture at both ends: a segment retransmitted in one trace and missing from the other shows where it was lost.",
            ],
            Code::TcpZeroWindow => &[
                "The side advertising a zero window is not reading its data: on the client, an application that stops reading a result set; on the server, a busy or blocked session.",
            ],
            Code::CaptureOneDirection => &[
                "Only one direction was captured: capture where both directions pass (both ends, or a SPAN port that mirrors both), or check for asymmetric routing.",
                "If the visible side keeps retransmitting with no answer, the other direction is really lost: check devices on the return path.",
            ],
            Code::CaptureDuplicates => &[
                "Duplicates are a capture artefact (capturing on several interfaces or a SPAN/vSwitch copying packets twice); they are not network retransmissions.",
            ],
            Code::CapturePacketLoss => &[
                "The capture missed packets that the peer acknowledged: the capturing host or tap dropped them. Use a capture filter, a larger buffer (dumpcap -B) or a faster disk; do not read this as network loss.",
            ],
            Code::CaptureTruncatedFrames => &[
                "Frames were cut by the capture's snaplen: payload-based analysis of those frames is incomplete. Capture again with the full frame size (tcpdump -s 0, dumpcap default).",
            ],
            Code::CaptureMidStream => &[
                "The connection began before the capture: its login is not in the trace. Start the capture before the application connects to see the login.",
            ],
            Code::CaptureMalformed => &[
                "The input is damaged from this point on: the report covers only what was read before it. If the file was copied or cut, copy it again; if the capture tool crashed, capture again.",
            ],
        }
    }
}
