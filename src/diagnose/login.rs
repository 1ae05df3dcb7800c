//! How a login went, and which encryption the PRELOGIN exchange chose: decisions the report
//! shows and the rules build on.

use crate::facts::{ConnectionFacts, Dialect, EncryptionSetting, TdsFacts};
use crate::tcp::Direction;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOutcome {
    Ok,
    Failed,
    /// The client gave up (closed) before the server answered the login.
    Timeout,
    /// The capture ends before the login did.
    Incomplete,
    /// The login travelled inside TLS and its answer cannot be read.
    Encrypted,
    /// The connection was logged in before the capture began.
    NotSeen,
    /// The server's answer is missing from the capture, but the client went on to send
    /// requests: it was logged in.
    Inferred,
}

impl LoginOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Ok => "ok",
            LoginOutcome::Failed => "failed",
            LoginOutcome::Timeout => "timeout",
            LoginOutcome::Incomplete => "incomplete",
            LoginOutcome::Encrypted => "encrypted",
            LoginOutcome::NotSeen => "not_seen",
            LoginOutcome::Inferred => "ok",
        }
    }
}

/// What the PRELOGIN exchange decided (MS-TDS 2.2.6.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionMode {
    /// No TLS at all: LOGIN7 in clear (password only obfuscated).
    None,
    /// Both sides OFF: TLS for LOGIN7 only.
    LoginOnly,
    /// TLS for everything.
    Full,
    /// One side requires what the other cannot do: the connection is closed.
    Mismatch,
}

impl EncryptionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionMode::None => "none",
            EncryptionMode::LoginOnly => "login_only",
            EncryptionMode::Full => "full",
            EncryptionMode::Mismatch => "mismatch",
        }
    }
}

/// The MS-TDS 2.2.6.5 table of client × server ENCRYPTION values.
pub fn encryption_mode(client: EncryptionSetting, server: EncryptionSetting) -> EncryptionMode {
    use EncryptionSetting::*;
    match (client, server) {
        (NotSupported, NotSupported) => EncryptionMode::None,
        (NotSupported, Required) | (Required, NotSupported) => EncryptionMode::Mismatch,
        (NotSupported, _) | (_, NotSupported) => EncryptionMode::None,
        (Off, Off) => EncryptionMode::LoginOnly,
        _ => EncryptionMode::Full,
    }
}

/// The encryption a TDS connection used, from PRELOGIN, confirmed by the TLS seen (TDS 8.0
/// strict: TLS for everything, PRELOGIN included).
pub fn connection_encryption(t: &TdsFacts) -> Option<EncryptionMode> {
    if t.tls.as_ref().is_some_and(|tls| tls.strict) {
        return Some(EncryptionMode::Full);
    }
    let client = t.prelogin_client.as_ref()?.encryption?;
    let server = t.prelogin_server.as_ref()?.encryption?;
    Some(encryption_mode(client, server))
}

/// How the login of a TDS 7.x connection went; None when no TDS 7.x was seen.
pub fn login_outcome(c: &ConnectionFacts) -> Option<LoginOutcome> {
    let t = c.tds.as_ref().filter(|t| t.dialect == Dialect::Tds7)?;
    if let Some(ack) = &t.login_ack {
        // A LOGINACK that arrives after the client's FIN or RST came too late: the client
        // had already given up (its login timeout).
        let client = c.tcp.dir(Direction::ToServer);
        let gave_up = [client.fin, client.rst]
            .into_iter()
            .flatten()
            .min_by_key(|m| m.ts);
        if gave_up.is_some_and(|g| g.ts < ack.at.ts) {
            return Some(LoginOutcome::Timeout);
        }
        return Some(LoginOutcome::Ok);
    }
    if !t.login_errors.is_empty() {
        return Some(LoginOutcome::Failed);
    }
    let login_sent = t.login7.is_some() || t.login7_encrypted.is_some();
    if !login_sent && t.prelogin_client.is_none() && t.tls.is_none() {
        return Some(LoginOutcome::NotSeen);
    }
    if login_sent && t.request_count > 0 {
        return Some(LoginOutcome::Inferred);
    }
    // Full encryption (or TDS 8.0 strict, where even PRELOGIN is inside TLS): the server's
    // encrypted answer to the encrypted login is all there is to see.
    if connection_encryption(t) == Some(EncryptionMode::Full) && t.encrypted_after_login {
        return Some(LoginOutcome::Encrypted);
    }
    Some(match c.tcp.end.closed_by() {
        None => LoginOutcome::Incomplete,
        Some(Direction::ToServer) => LoginOutcome::Timeout,
        Some(Direction::ToClient) => LoginOutcome::Failed,
    })
}
