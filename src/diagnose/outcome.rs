//! A connection's outcome: the one word the report's outcome column and JSON `outcome` show.

use crate::facts::ConnectionFacts;
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
        }
    }
}

/// Decides the outcome from TCP facts alone.
pub fn outcome(c: &ConnectionFacts) -> Outcome {
    let t = &c.tcp;
    let client = t.dir(Direction::ToServer);
    let server = t.dir(Direction::ToClient);
    if client.syn.is_some() && t.syn_ack.is_none() {
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
    match super::login::login_outcome(c) {
        Some(super::login::LoginOutcome::Failed) => return Outcome::LoginFailed,
        Some(super::login::LoginOutcome::Timeout) => return Outcome::LoginTimeout,
        _ => {}
    }
    match t.end {
        TcpEnd::Fin { .. } => Outcome::Ok,
        TcpEnd::Rst { .. } => Outcome::Reset,
        TcpEnd::HalfClosed { .. } => Outcome::HalfClosed,
        TcpEnd::Open => Outcome::Open,
    }
}
