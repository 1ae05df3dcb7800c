//! UDP exchanges before a connection: name lookups (DNS) and instance discovery (SQL
//! Browser, SSRP) — `gne-causes.md` §A.

use crate::diagnose::{Code, FindingBuilder};
use crate::facts::{
    ConnectionFacts, ExchangeFacts, ExchangeProtocol, ExchangeRequest, ExchangeResponseBody,
    SsrpAnnouncement,
};
use crate::report::model::Finding;

/// An answer this late is reported: clients wait a few seconds at most (SqlClient's SSRP
/// retries span about 3 s; resolvers retry after 1 s).
pub(crate) const SLOW_NS: i64 = 1_000_000_000;
/// A TCP connection this soon after an SSRP answer is the one the lookup was for.
pub(crate) const PORT_MISMATCH_WINDOW_NS: i64 = 30_000_000_000;

fn delay_ms(ns: i64) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(0)
}

/// Every finding for one exchange, in catalogue order.
pub(crate) fn exchange_findings(e: &ExchangeFacts) -> Vec<Finding> {
    match (&e.request, e.protocol) {
        (ExchangeRequest::Dns { name, .. }, ExchangeProtocol::Dns) => dns(e, name),
        (
            ExchangeRequest::Ssrp {
                opcode,
                instance,
                length,
                oversized,
                ..
            },
            ExchangeProtocol::Ssrp,
        ) => ssrp(e, *opcode, instance.as_deref(), *length, *oversized),
        (ExchangeRequest::Kerberos { message, sname, .. }, ExchangeProtocol::Kerberos) => {
            kerberos(e, message, sname)
        }
        _ => Vec::new(),
    }
}

/// A caveat for an exchange the capture stopped right after: its answer may be missing
/// only because nobody was capturing any more.
fn capture_end_note(e: &ExchangeFacts) -> String {
    match e.cut_by_capture_end_ns {
        Some(ns) if ns < crate::session::exchanges::SETTLE_NS => format!(
            " (The capture ended {} ms after the last request: an answer may have come later.)",
            ns / 1_000_000
        ),
        _ => String::new(),
    }
}

/// A reverse lookup (RFC 1035 3.5, RFC 3596 2.5): hosts without a PTR record are common, so
/// NXDOMAIN for one is no failure to reach a server.
fn is_reverse_lookup(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    n.ends_with(".in-addr.arpa") || n.ends_with(".ip6.arpa")
}

fn dns(e: &ExchangeFacts, name: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(first) = e.responses.first() else {
        if e.settled_early {
            return out;
        }
        let summary = format!(
            "The DNS query for {name} to {} went unanswered ({} attempt{}): the client cannot find the server's address.{}",
            e.server,
            e.attempts,
            if e.attempts == 1 { "" } else { "s" },
            capture_end_note(e)
        );
        out.push(
            FindingBuilder::new(Code::DnsNoResponse, summary)
                .detail("name", name)
                .detail("attempts", e.attempts)
                .evidence_at(e.first, "first query")
                .evidence_at(e.last_attempt, "last query")
                .build(),
        );
        return out;
    };
    let error = e.responses.iter().find_map(|r| match r.body {
        ExchangeResponseBody::Dns { rcode, .. }
            if rcode != 0 && !(rcode == 3 && is_reverse_lookup(name)) =>
        {
            Some((r, rcode))
        }
        _ => None,
    });
    if let Some((r, rcode)) = error {
        let what = match rcode {
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN (no such name)",
            4 => "NOTIMP",
            5 => "REFUSED",
            _ => "an error",
        };
        let summary = format!(
            "The DNS server {} answered {what} (rcode {rcode}) for {name}: the client cannot resolve the server's name.",
            e.server.ip()
        );
        out.push(
            FindingBuilder::new(Code::DnsError, summary)
                .detail("name", name)
                .detail("rcode", rcode)
                .evidence_at(e.first, "query")
                .evidence_at(r.at, "error answer")
                .build(),
        );
    }
    if first.delay_ns >= SLOW_NS {
        let ms = delay_ms(first.delay_ns);
        let summary = format!("The DNS answer for {name} took {ms} ms.");
        out.push(
            FindingBuilder::new(Code::DnsSlow, summary)
                .detail("name", name)
                .detail("delay_ms", ms)
                .evidence_at(e.first, "query")
                .evidence_at(first.at, "answer")
                .build(),
        );
    }
    out
}

fn ssrp(
    e: &ExchangeFacts,
    opcode: u8,
    instance: Option<&str>,
    length: u32,
    oversized: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let shown = instance.map_or_else(
        || "the instance list".to_string(),
        |i| format!("instance {i}"),
    );
    let port_of = instance.map_or_else(|| "any instance".to_string(), |i| format!("instance {i}"));
    if oversized {
        let summary = format!(
            "{} sent an SQL Browser request of {length} bytes with an over-long or malformed instance name (opcode {opcode}): a buggy client or an attack such as the Slammer worm.",
            e.client.ip()
        );
        out.push(
            FindingBuilder::new(Code::SsrpOversizedRequest, summary)
                .detail("length", length)
                .evidence_at(e.first, "oversized request")
                .build(),
        );
    }
    let Some(first) = e.responses.first() else {
        if let Some(icmp) = e.port_unreachable {
            let summary = format!(
                "{} answered that nothing listens on UDP 1434 (ICMP port unreachable): the SQL Browser service is not running, so the client cannot learn the TCP port of {port_of}.",
                e.server.ip()
            );
            out.push(
                FindingBuilder::new(Code::SsrpPortUnreachable, summary)
                    .detail("instance", instance)
                    .detail("attempts", e.attempts)
                    .evidence_at(e.first, "SQL Browser request")
                    .evidence_at(icmp, "port unreachable")
                    .build(),
            );
        } else if !e.settled_early {
            let summary = format!(
                "The SQL Browser request for {shown} to {} got no answer ({} attempt{}): the Browser is stopped or UDP 1434 is blocked.{}",
                e.server,
                e.attempts,
                if e.attempts == 1 { "" } else { "s" },
                capture_end_note(e)
            );
            out.push(
                FindingBuilder::new(Code::SsrpNoResponse, summary)
                    .detail("opcode", opcode)
                    .detail("instance", instance)
                    .detail("attempts", e.attempts)
                    .evidence_at(e.first, "first request")
                    .evidence_at(e.last_attempt, "last request")
                    .build(),
            );
        }
        return out;
    };
    if first.delay_ns >= SLOW_NS {
        let ms = delay_ms(first.delay_ns);
        let summary = format!(
            "The SQL Browser on {} took {ms} ms to answer: clients may have given up or retried.",
            first.from.ip()
        );
        out.push(
            FindingBuilder::new(Code::SsrpSlow, summary)
                .detail("delay_ms", ms)
                .detail("instance", instance)
                .evidence_at(e.first, "request")
                .evidence_at(first.at, "answer")
                .build(),
        );
    }
    out
}

/// `ssrp.port_mismatch`: the connection went from the client that asked the Browser to the
/// server that answered, shortly after, but to another port than the one announced.
pub(crate) fn port_mismatch(c: &ConnectionFacts, a: &SsrpAnnouncement) -> Option<Finding> {
    let t = &c.tcp;
    if t.client.ip() != a.client || t.server.ip() != a.server {
        return None;
    }
    let after = t.first.ts.nanos_since(a.at.ts);
    if !(0..=PORT_MISMATCH_WINDOW_NS).contains(&after) {
        return None;
    }
    let used = t.server.port();
    if used == crate::session::exchanges::SSRP_PORT {
        return None;
    }
    if a.instances.iter().any(|i| i.tcp_port == Some(used)) {
        return None;
    }
    // The instance the client wanted: the one it named, else the only one listed.
    let instance = match &a.requested {
        Some(name) => a
            .instances
            .iter()
            .find(|i| i.instance.eq_ignore_ascii_case(name))?,
        None => match a.instances.as_slice() {
            [only] => only,
            _ => return None,
        },
    };
    let announced = instance.tcp_port?;
    let summary = format!(
        "The SQL Browser announced TCP port {announced} for instance {}, but the client connected to port {used}.",
        instance.instance
    );
    Some(
        FindingBuilder::new(Code::SsrpPortMismatch, summary)
            .detail("instance", instance.instance.clone())
            .detail("announced_port", announced)
            .detail("used_port", used)
            .evidence_at(a.at, "SQL Browser answer")
            .evidence_at(t.first, "connection to another port")
            .build(),
    )
}

/// What a KRB-ERROR code means for a SQL Server login (RFC 4120 7.5.9;
/// `knowledge/sspi-kerberos.md` §3). `None` for the codes that are steps, not failures.
fn kerberos_error_meaning(code: i32) -> Option<&'static str> {
    Some(match code {
        // PREAUTH_REQUIRED is the KDC's normal first answer; RESPONSE_TOO_BIG sends the
        // client to TCP.
        25 | 52 => return None,
        6 => "the client's account does not exist in the realm",
        7 => "no account has this service principal name registered (a missing SPN: the client falls back to NTLM where it may)",
        8 => "several accounts hold this name (a duplicate SPN)",
        12 => "the KDC's policy refused the request",
        13 => "an option the request asked for is not allowed (delegation not permitted for the service)",
        14 => "no common encryption type (RC4 disabled, or the account has no AES keys)",
        18 => "the account is disabled or locked out",
        23 => "the account's password has expired",
        24 => "the password is wrong",
        32 => "the ticket has expired",
        37 => "the clocks of client and KDC differ too much (more than 5 minutes by default)",
        41 => "the ticket could not be decrypted: the SPN is registered on another account than the one running the service",
        68 => "the request went to the wrong realm (a trust or referral problem)",
        _ => "the KDC refused the request",
    })
}

fn kerberos(e: &ExchangeFacts, message: &str, sname: &str) -> Vec<Finding> {
    let refusal = e.responses.iter().find_map(|r| match &r.body {
        ExchangeResponseBody::Kerberos {
            error: Some((code, name)),
            ..
        } => kerberos_error_meaning(*code).map(|m| (r, *code, *name, m)),
        _ => None,
    });
    let Some((r, code, name, meaning)) = refusal else {
        return Vec::new();
    };
    let summary = format!(
        "The KDC {} refused the {message} for {sname} with {name} ({code}): {meaning}.",
        e.server.ip()
    );
    vec![FindingBuilder::new(Code::KerberosError, summary)
        .detail("message", message)
        .detail("sname", sname)
        .detail("krb_error", name)
        .detail("krb_error_code", code)
        .detail("meaning", meaning)
        .evidence_at(e.first, format!("{message} for {sname}"))
        .evidence_at(r.at, format!("KRB-ERROR {name}"))
        .build()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::capture::FrameRef;
    use crate::facts::ExchangeResponse;
    use crate::tcp::Mark;
    use crate::time::Timestamp;

    fn mark(no: u64, ms: i64) -> Mark {
        Mark {
            frame: FrameRef { input: 0, no },
            ts: Timestamp::from_secs_nanos(1_000, 0).add_nanos(ms * 1_000_000),
        }
    }

    fn dns_exchange(name: &str, rcode: Option<u8>, delay_ms: i64) -> ExchangeFacts {
        ExchangeFacts {
            protocol: ExchangeProtocol::Dns,
            transport: crate::facts::ExchangeTransport::Udp,
            client: "192.0.2.10:40000".parse().unwrap(),
            server: "198.51.100.20:53".parse().unwrap(),
            first: mark(1, 0),
            last_attempt: mark(1, 0),
            attempts: 1,
            request: ExchangeRequest::Dns {
                name: name.into(),
                types: vec![1],
            },
            responses: rcode
                .map(|rcode| ExchangeResponse {
                    at: mark(2, delay_ms),
                    from: "198.51.100.20:53".parse().unwrap(),
                    delay_ns: delay_ms * 1_000_000,
                    body: ExchangeResponseBody::Dns {
                        rcode,
                        addresses: Vec::new(),
                    },
                })
                .into_iter()
                .collect(),
            port_unreachable: None,
            cut_by_capture_end_ns: None,
            settled_early: false,
        }
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn dns_rules() {
        let f = exchange_findings(&dns_exchange("sql.lab.test", Some(2), 1200));
        assert_eq!(codes(&f), ["dns.error", "dns.slow"]);
        assert_eq!(f[0].detail["rcode"], 2);
        assert_eq!(f[1].detail["delay_ms"], 1200);
        assert!(exchange_findings(&dns_exchange("sql.lab.test", Some(0), 10)).is_empty());
        // A host without a PTR record is no failure.
        let reverse = dns_exchange("20.100.51.198.in-addr.arpa", Some(3), 10);
        assert!(exchange_findings(&reverse).is_empty());
        let mut silent = dns_exchange("sql.lab.test", None, 0);
        silent.cut_by_capture_end_ns = Some(70_000_000);
        let f = exchange_findings(&silent);
        assert_eq!(codes(&f), ["dns.no_response"]);
        assert!(
            f[0].summary.contains("capture ended 70 ms"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn a_kdc_refusal_is_reported_and_its_normal_steps_are_not() {
        let krb = |code: i32, name: &'static str| ExchangeFacts {
            protocol: ExchangeProtocol::Kerberos,
            request: ExchangeRequest::Kerberos {
                message: "TGS-REQ",
                sname: "MSSQLSvc/sql.lab.test:1433".into(),
                realm: "LAB.TEST".into(),
                cname: None,
                forwardable: Some(true),
            },
            responses: vec![ExchangeResponse {
                at: mark(2, 1),
                from: "198.51.100.20:88".parse().unwrap(),
                delay_ns: 1_000_000,
                body: ExchangeResponseBody::Kerberos {
                    message: "KRB-ERROR",
                    error: Some((code, name)),
                    cname: None,
                },
            }],
            ..dns_exchange("unused", None, 0)
        };
        let f = exchange_findings(&krb(7, "KDC_ERR_S_PRINCIPAL_UNKNOWN"));
        assert_eq!(codes(&f), ["kerberos.error"]);
        assert_eq!(f[0].detail["krb_error_code"], 7);
        assert!(
            f[0].summary.contains("MSSQLSvc/sql.lab.test:1433"),
            "{}",
            f[0].summary
        );
        assert_eq!(f[0].evidence.len(), 2);
        assert!(exchange_findings(&krb(25, "KDC_ERR_PREAUTH_REQUIRED")).is_empty());
        assert!(exchange_findings(&krb(52, "KRB_ERR_RESPONSE_TOO_BIG")).is_empty());
    }
}
