//! A connection's outcome: the one word the report's outcome column and JSON `outcome` show.

use super::Code;
use crate::facts::ConnectionFacts;
use crate::report::model::Finding;
use crate::tcp::{Direction, TcpEnd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Closed with FIN by both sides.
    Ok,
    /// SYN answered by RST.
    Refused,
    /// SYN never answered.
    NoAnswer,
    /// An ICMP error answered the SYN.
    Unreachable,
    /// A RST ended an established connection.
    Reset,
    /// One side sent FIN, the other never did before the capture ended.
    HalfClosed,
    /// Still open when the capture ended.
    Open,
    /// The TLS handshake never carried the login (rejected certificate, no common version).
    TlsFailed,
    /// The server refused the login.
    LoginFailed,
    /// The client gave up waiting for the login to finish.
    LoginTimeout,
    /// Killed while idle (reset, or keep-alives unanswered).
    IdleKilled,
    /// Broken off without a result: the client gave up on a request, the connection died
    /// under retransmissions, or PRELOGIN found no common encryption.
    Aborted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::NoAnswer => "no_answer",
            Outcome::Unreachable => "unreachable",
            Outcome::Reset => "reset",
            Outcome::HalfClosed => "half_closed",
            Outcome::Open => "open",
            Outcome::TlsFailed => "tls_failed",
            Outcome::LoginFailed => "login_failed",
            Outcome::LoginTimeout => "login_timeout",
            Outcome::IdleKilled => "idle_killed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Decides the outcome from the facts and the connection's findings, so that the one word agrees
/// with what the findings say (an idle kill is `idle_killed`, not just `reset`).
pub fn outcome(c: &ConnectionFacts, findings: &[Finding]) -> Outcome {
    let has = |code: Code| findings.iter().any(|f| f.code == code.as_str());
    let t = &c.tcp;
    let server = t.dir(Direction::ToClient);
    if t.never_connected() {
        if server.rst.is_some() {
            return Outcome::Refused;
        }
        if t.icmp_error.is_some() {
            return Outcome::Unreachable;
        }
        if server.frames == 0 {
            return Outcome::NoAnswer;
        }
    }
    let tls_failed = c
        .tds
        .as_ref()
        .and_then(|d| d.tls.as_ref())
        .is_some_and(|tls| tls.client_hello.is_some() && tls.application_data.is_none());
    if tls_failed && !matches!(t.end, TcpEnd::Open) {
        return Outcome::TlsFailed;
    }
    if has(Code::PreloginEncryptionMismatch) {
        return Outcome::Aborted;
    }
    if has(Code::LoginSspiFailed) {
        return Outcome::LoginFailed;
    }
    match super::login::login_outcome(c) {
        Some(super::login::LoginOutcome::Failed) => return Outcome::LoginFailed,
        Some(super::login::LoginOutcome::Timeout) => return Outcome::LoginTimeout,
        _ => {}
    }
    if has(Code::IdleKilled) {
        return Outcome::IdleKilled;
    }
    if has(Code::RequestAbandoned)
        || has(Code::TcpRetransmissionStorm)
        || has(Code::TcpKeepaliveUnanswered)
        || cancelled_then_closed(c)
    {
        return Outcome::Aborted;
    }
    match t.end {
        // With one direction captured, the other side's FIN cannot be seen: a close by the
        // visible side is as normal as the capture can show.
        TcpEnd::HalfClosed { .. } if has(Code::CaptureOneDirection) => Outcome::Ok,
        TcpEnd::Fin { .. } => Outcome::Ok,
        TcpEnd::Rst { .. } => Outcome::Reset,
        TcpEnd::HalfClosed { .. } => Outcome::HalfClosed,
        TcpEnd::Open => Outcome::Open,
    }
}

/// The client cancelled a request (ATTENTION) and closed before the server acknowledged it.
fn cancelled_then_closed(c: &ConnectionFacts) -> bool {
    let Some(t) = &c.tds else { return false };
    let Some(closed) = c.tcp.end.closed_by() else {
        return false;
    };
    closed == Direction::ToServer && t.cancel_pending()
}
