//! Every rule, one pure function each, listed in the order findings are reported.

mod capture;
mod ending;
pub(crate) mod exchange;
mod login;
mod pattern;
mod request;
pub(crate) mod tcp;
mod tls;

use super::Settings;
use crate::facts::{CaptureFacts, ConnectionFacts};
use crate::report::model::Finding;

pub(super) type ConnectionRule = fn(&ConnectionFacts, &Settings) -> Option<Finding>;
pub(super) type CaptureRule = fn(&CaptureFacts) -> Vec<Finding>;

pub(super) const CONNECTION_RULES: &[ConnectionRule] = &[
    tcp::syn_refused,
    tcp::syn_unreachable,
    tcp::syn_unanswered,
    tcp::syn_retried,
    login::encryption_mismatch,
    tls::handshake_failed,
    tls::legacy_version,
    tls::certificate_problem,
    login::login_ok,
    login::cleartext_login,
    login::login_failed,
    login::sspi_failed,
    login::login_timed_out,
    login::slow_login,
    login::redirected,
    request::attention,
    request::server_error,
    request::abandoned,
    request::chatty,
    ending::keepalive_unanswered,
    ending::retransmission_storm,
    ending::reset,
    ending::idle_killed,
    ending::server_closed_first,
    tcp::retransmitted,
    tcp::zero_window,
    capture::one_direction,
    capture::duplicates,
    capture::packet_loss,
    capture::mid_stream,
    capture::undecodable,
];

/// The rules that also run on connections that are not SQL: a failed attempt is reported whatever
/// the port.
pub(super) const ATTEMPT_RULES: &[ConnectionRule] =
    &[tcp::syn_refused, tcp::syn_unreachable, tcp::syn_unanswered];

pub(super) const CAPTURE_RULES: &[CaptureRule] = &[
    capture::malformed_input,
    capture::truncated_frames,
    pattern::mass_reset,
    pattern::listen_backlog,
    pattern::no_pooling,
    pattern::port_exhaustion,
    pattern::port_scan,
];
