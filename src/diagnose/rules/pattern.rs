//! Patterns across connections: no pooling, mass resets, listen backlog, port exhaustion,
//! port scans.

use crate::diagnose::{secs, Code, FindingBuilder};
use crate::facts::{Burst, CaptureFacts, ProbeFacts};
use crate::report::model::Finding;

/// Resets of this many connections to one server within the window make a mass reset.
const MASS_RESET_MIN: u64 = 5;
/// Failed attempts, close to accepted ones, that make a listen-backlog burst.
const BACKLOG_MIN: u64 = 2;
/// Short SQL connections from one client, and their rate, that show no pooling: a pooled
/// client reuses a handful of connections; one opening dozens a minute, each with its own
/// login, does not pool (`gne-causes.md` C2).
const NO_POOLING_MIN: u64 = 20;
const NO_POOLING_PER_MINUTE: f64 = 20.0;
/// Client ports reused for the same server within TIME_WAIT.
const PORT_REUSE_MIN: u64 = 10;
/// Distinct ip:port targets one client probed without sending data that make a scan. An
/// application that cannot connect retries one server (or the few of a failover list); nmap's
/// default scan probes 1,000 ports, a sweep for SQL Servers one port on every host.
const SCAN_MIN_TARGETS: u64 = 20;
/// Open targets named in a scan's summary (the detail lists up to 32).
const SCAN_OPEN_NAMED: usize = 8;

fn with_burst(mut b: FindingBuilder, burst: &Burst, what: &str) -> FindingBuilder {
    b = b
        .evidence_at(burst.first, format!("first {what}"))
        .evidence_at(burst.last, format!("last {what}"));
    b.connections(burst.connections.clone())
}

/// `pattern.mass_reset`: many connections to one server reset at once.
pub(super) fn mass_reset(c: &CaptureFacts) -> Vec<Finding> {
    c.servers
        .iter()
        .filter_map(|s| {
            let burst = s.mass_reset.as_ref().filter(|b| b.count >= MASS_RESET_MIN)?;
            let server = s.address?.to_string();
            let window = burst.last.ts.nanos_since(burst.first.ts);
            let summary = format!(
                "{} connections to {server} were reset within {}: the server (or a device in front of it) dropped them together.",
                burst.count,
                if window < 1_000_000_000 {
                    format!("{} ms", (window + 500_000) / 1_000_000)
                } else {
                    format!("{:.1} s", window as f64 / 1e9)
                }
            );
            let b = FindingBuilder::new(Code::PatternMassReset, summary)
                .detail("server", server)
                .detail("connections", burst.count)
                .detail("window_s", secs(window));
            Some(with_burst(b, burst, "reset").build())
        })
        .collect()
}

/// `pattern.listen_backlog`: attempts failing while the same port accepts others.
pub(super) fn listen_backlog(c: &CaptureFacts) -> Vec<Finding> {
    c.servers
        .iter()
        .filter_map(|s| {
            let burst = s.backlog.as_ref().filter(|b| b.count >= BACKLOG_MIN)?;
            let server = s.address?.to_string();
            let summary = format!(
                "{} connection attempts to {server} were refused or went unanswered while the same port accepted other connections: its listen queue was full.",
                burst.count
            );
            let b = FindingBuilder::new(Code::PatternListenBacklog, summary)
                .detail("server", server)
                .detail("refused", burst.count);
            Some(with_burst(b, burst, "failed attempt").build())
        })
        .collect()
}

/// `pattern.no_pooling`: a client opening many short SQL connections.
pub(super) fn no_pooling(c: &CaptureFacts) -> Vec<Finding> {
    c.clients
        .iter()
        .filter_map(|cl| {
            let (first, last) = (cl.short_sql_first?, cl.short_sql_last?);
            let n = cl.short_sql_connections;
            // Rate over the span they were opened in (at least a second).
            let span_s = (last.ts.nanos_since(first.ts) as f64 / 1e9).max(1.0);
            let per_minute = n as f64 * 60.0 / span_s;
            if n < NO_POOLING_MIN || per_minute < NO_POOLING_PER_MINUTE {
                return None;
            }
            let client = cl.address?.to_string();
            let summary = format!(
                "{client} opened {n} short SQL connections ({per_minute:.0} per minute), each with its own login and a few requests: it does not pool connections."
            );
            Some(
                FindingBuilder::new(Code::PatternNoPooling, summary)
                    .detail("client", client)
                    .detail("connections", n)
                    .detail("per_minute", per_minute.round())
                    .evidence_at(first, "first short connection")
                    .evidence_at(last, "last short connection")
                    .connections(cl.short_sql_ids.clone())
                    .build(),
            )
        })
        .collect()
}

/// `pattern.port_exhaustion`: a client reusing ports within TIME_WAIT.
pub(super) fn port_exhaustion(c: &CaptureFacts) -> Vec<Finding> {
    c.clients
        .iter()
        .filter_map(|cl| {
            if cl.port_reuses < PORT_REUSE_MIN {
                return None;
            }
            let (first, last) = (cl.first?, cl.last?);
            let span_s = (last.ts.nanos_since(first.ts) as f64 / 1e9).max(1.0);
            let per_minute = cl.connections as f64 * 60.0 / span_s;
            let client = cl.address?.to_string();
            let summary = format!(
                "{client} reused {} client ports for the same server within a minute of their last use while opening {per_minute:.0} connections per minute: its ephemeral ports are running out.",
                cl.port_reuses
            );
            let mut b = FindingBuilder::new(Code::PatternPortExhaustion, summary)
                .detail("client", client)
                .detail("per_minute", per_minute.round())
                .detail("port_reuses", cl.port_reuses);
            if let Some(m) = cl.port_reuse_example {
                b = b.evidence_at(m, "a port reused");
            }
            Some(b.build())
        })
        .collect()
}

/// What a scan's probes went to, for its summary.
fn scan_scope(p: &ProbeFacts) -> String {
    let at_least = if p.targets_capped { "at least " } else { "" };
    match (p.only_host, p.only_port) {
        (Some(h), _) => format!("{at_least}{} TCP ports on {h}", p.ports),
        (None, Some(port)) => format!("port {port} on {at_least}{} hosts", p.hosts),
        (None, None) => format!(
            "{at_least}{} targets ({} ports on {} hosts)",
            p.targets, p.ports, p.hosts
        ),
    }
}

/// The open targets as a reader wants them: ports of the one host, hosts of the one port,
/// else ip:port.
fn open_names(p: &ProbeFacts) -> Vec<String> {
    p.open
        .iter()
        .map(|a| match (p.only_host, p.only_port) {
            (Some(_), _) => a.port().to_string(),
            (None, Some(_)) => a.ip().to_string(),
            (None, None) => a.to_string(),
        })
        .collect()
}

/// `pattern.port_scan` (an addition to the contract): one client made connection attempts
/// without data to many ports or hosts.
pub(super) fn port_scan(c: &CaptureFacts) -> Vec<Finding> {
    c.probes
        .iter()
        .filter(|p| p.targets >= SCAN_MIN_TARGETS)
        .map(|p| {
            let span = p.last.ts.nanos_since(p.first.ts);
            let open = open_names(p);
            let named: Vec<&str> = open.iter().take(SCAN_OPEN_NAMED).map(String::as_str).collect();
            let open_text = match open.len() {
                0 => "none answered".to_string(),
                n if n > named.len() => format!("{n} answered ({}, …)", named.join(", ")),
                n => format!("{n} answered ({})", named.join(", ")),
            };
            let summary = format!(
                "{} probed {} within {:.1} s ({} connection attempts without data): a port scan, not an application failing to connect. Targets: {open_text}; attempts refused: {}, unanswered: {}.",
                p.client,
                scan_scope(p),
                span as f64 / 1e9,
                p.probes,
                p.refused,
                p.unanswered,
            );
            let mut b = FindingBuilder::new(Code::PatternPortScan, summary)
                .detail("client", p.client.to_string())
                .detail("probes", p.probes)
                .detail("targets", p.targets)
                .detail("hosts", p.hosts)
                .detail("ports", p.ports)
                .detail("answered", p.answered)
                .detail("refused", p.refused)
                .detail("unanswered", p.unanswered)
                .detail("span_s", secs(span))
                .detail(
                    "open",
                    p.open.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                );
            if let Some(h) = p.only_host {
                b = b.detail("server", h.to_string());
            }
            if let Some(port) = p.only_port {
                b = b.detail("port", port);
            }
            if p.targets_capped {
                b = b.detail("targets_capped", true);
            }
            b.evidence_at(p.first, "first probe")
                .evidence_at(p.last, "last probe")
                .connections(p.connections.clone())
                .build()
        })
        .collect()
}
