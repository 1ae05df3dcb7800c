//! Connection facts: one owned record per connection, built by `session` from stream events
//! and protocol messages, read by `diagnose`. Plain data, no logic beyond accessors.

use crate::tcp::TcpFacts;

/// Everything known about one TCP connection when it ends.
#[derive(Clone, Debug)]
pub struct ConnectionFacts {
    pub tcp: TcpFacts,
}

/// A capture input's damage, as the reader reported it.
#[derive(Clone, Debug)]
pub struct InputDamage {
    pub input: u16,
    pub offset: u64,
    pub what: String,
    /// The last frame read before the damage (0 if none).
    pub last_good_frame: u64,
}

/// Facts about the capture as a whole, for capture-level findings.
#[derive(Clone, Debug, Default)]
pub struct CaptureFacts {
    pub damage: Vec<InputDamage>,
    /// (input, frames cut by snaplen, snaplen)
    pub truncated: Vec<(u16, u64, Option<u32>)>,
}
