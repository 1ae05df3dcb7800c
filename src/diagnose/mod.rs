//! Diagnosis: pure functions from facts to findings. Rules never see bytes and never print;
//! each finding code of `../shared/spec/findings.md` has one rule and one catalogue entry.

mod catalog;
pub mod login;
mod meaning;
mod outcome;
mod rules;
#[cfg(test)]
mod tests;

pub(crate) use rules::tcp::data_retransmissions;

use serde_json::{Map, Value};

use crate::capture::FrameRef;
use crate::facts::{CaptureFacts, ConnectionFacts};
use crate::report::model::{Evidence, Finding};
use crate::tcp::Mark;
use crate::time::Timestamp;

pub use catalog::Code;
pub use outcome::{outcome, Outcome};

/// Thresholds users may differ on, with their defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A connection reset after this long without application data was killed while idle.
    /// 5 s: long enough that no request/response gap of a healthy exchange reaches it, short
    /// enough to catch every middlebox timeout (minutes) and test scenarios (seconds).
    pub idle_threshold_ns: i64,
    /// A login slower than this (SYN to LOGINACK) is reported. 2 s: the contract's figure;
    /// SqlClient's whole connect budget is 15 s.
    pub slow_login_ns: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            idle_threshold_ns: 5_000_000_000,
            slow_login_ns: 2_000_000_000,
        }
    }
}

/// Findings for one connection, in catalogue order.
///
/// A connection that is not SQL gets only the failed-attempt findings (refused, unreachable,
/// unanswered): the contract reports every failed attempt, whatever the port, because a blocked
/// port can be the SQL Server's, but an idle HTTP or Oracle session is none of a DBA's business.
pub fn connection_findings(c: &ConnectionFacts, settings: &Settings) -> Vec<Finding> {
    let rules = if is_sql(c) {
        rules::CONNECTION_RULES
    } else {
        rules::ATTEMPT_RULES
    };
    rules.iter().filter_map(|rule| rule(c, settings)).collect()
}

/// Capture-level findings (damaged inputs, truncated frames, cross-connection patterns).
pub fn capture_findings(c: &CaptureFacts) -> Vec<Finding> {
    rules::CAPTURE_RULES
        .iter()
        .flat_map(|rule| rule(c))
        .collect()
}

/// Findings for one UDP exchange (SSRP, DNS, Kerberos).
pub fn exchange_findings(e: &crate::facts::ExchangeFacts) -> Vec<Finding> {
    rules::exchange::exchange_findings(e)
}

/// `ssrp.port_mismatch` for a connection that followed an SQL Browser answer.
pub fn ssrp_port_mismatch(
    c: &ConnectionFacts,
    a: &crate::facts::SsrpAnnouncement,
) -> Option<Finding> {
    rules::exchange::port_mismatch(c, a)
}

/// A SQL connection, as the contract defines it: TDS 7.x seen on it, its server known as SQL
/// Server (TDS on another connection, `--server`), or the SQL Server port.
pub fn is_sql(c: &ConnectionFacts) -> bool {
    match &c.tds {
        Some(t) => t.dialect == crate::facts::Dialect::Tds7,
        None => {
            c.known_sql_server.is_some() || c.tcp.server.port() == crate::session::SQL_SERVER_PORT
        }
    }
}

/// Builds a finding: the code fixes severity and next steps; the rule adds the rest.
pub(crate) struct FindingBuilder {
    finding: Finding,
}

impl FindingBuilder {
    pub(crate) fn new(code: Code, summary: String) -> Self {
        FindingBuilder {
            finding: Finding {
                code: code.as_str(),
                severity: code.severity(),
                summary,
                detail: Map::new(),
                evidence: Vec::new(),
                next_steps: code.next_steps().iter().map(|s| (*s).into()).collect(),
                connections: Vec::new(),
            },
        }
    }

    pub(crate) fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.finding.detail.insert(key.to_string(), value.into());
        self
    }

    pub(crate) fn evidence(mut self, at: FrameRef, ts: Timestamp, note: impl Into<String>) -> Self {
        self.finding.evidence.push(Evidence {
            input: at.input,
            frame: at.no,
            time: ts.to_rfc3339(),
            note: note.into(),
        });
        self
    }

    pub(crate) fn evidence_at(self, mark: Mark, note: impl Into<String>) -> Self {
        self.evidence(mark.frame, mark.ts, note)
    }

    /// The connections a capture-level finding is about (report ids).
    pub(crate) fn connections(mut self, ids: Vec<u32>) -> Self {
        self.finding.connections = ids;
        self
    }

    /// A next step that depends on the facts, placed before the catalogue's general ones.
    pub(crate) fn first_step(mut self, step: String) -> Self {
        self.finding.next_steps.insert(0, step.into());
        self
    }

    /// Next steps that replace the catalogue's, where the facts make its general advice wrong.
    pub(crate) fn instead_steps(mut self, steps: &[&'static str]) -> Self {
        self.finding.next_steps = steps.iter().map(|s| (*s).into()).collect();
        self
    }

    /// The evidence in capture order, as a user walks through it in Wireshark.
    pub(crate) fn build(mut self) -> Finding {
        self.finding.evidence.sort_by_key(|e| (e.input, e.frame));
        self.finding
    }
}

/// Seconds rounded to milliseconds, for `detail` values users read.
pub(crate) fn secs(ns: i64) -> f64 {
    (ns as f64 / 1e6).round() / 1e3
}
