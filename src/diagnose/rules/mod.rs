//! Every rule, one pure function each, listed in the order findings are reported.

mod capture;
pub(crate) mod tcp;

use crate::facts::{CaptureFacts, ConnectionFacts};
use crate::report::model::Finding;

pub(super) type ConnectionRule = fn(&ConnectionFacts) -> Option<Finding>;
pub(super) type CaptureRule = fn(&CaptureFacts) -> Vec<Finding>;

pub(super) const CONNECTION_RULES: &[ConnectionRule] = &[
    tcp::syn_refused,
    tcp::syn_unanswered,
    tcp::syn_retried,
    tcp::retransmitted,
    tcp::zero_window,
    capture::one_direction,
    capture::duplicates,
    capture::packet_loss,
    capture::mid_stream,
];

pub(super) const CAPTURE_RULES: &[CaptureRule] =
    &[capture::malformed_input, capture::truncated_frames];
