//! A connection's milestones in time order, for `--verbose`: what a user would otherwise
//! piece together in Wireshark (handshake, PRELOGIN, TLS, LOGIN7, SSPI, LOGINACK or ERROR,
//! requests, ATTENTION, FIN/RST).

use super::model::TimelineEntry;
use crate::facts::{ConnectionFacts, RequestKind};
use crate::tcp::{Direction, Mark};

/// Requests listed one by one; the rest are summed up in one line.
const MAX_REQUESTS_SHOWN: usize = 20;

fn entry(m: Mark, side: &'static str, event: String) -> TimelineEntry {
    TimelineEntry {
        input: m.frame.input,
        frame: m.frame.no,
        time: m.ts.to_rfc3339(),
        side,
        event,
    }
}

/// The milestones of `c`, sorted by time.
pub fn timeline(c: &ConnectionFacts) -> Vec<TimelineEntry> {
    let t = &c.tcp;
    let mut v = Vec::new();
    let (cs, sc) = (t.dir(Direction::ToServer), t.dir(Direction::ToClient));
    if let Some(m) = cs.syn {
        v.push(entry(
            m,
            "client",
            format!("SYN ({} sent)", cs.syn_count.max(1)),
        ));
    }
    if let Some(m) = t.syn_ack {
        v.push(entry(m, "server", "SYN-ACK".to_string()));
    }
    for (d, side) in [(cs, "client"), (sc, "server")] {
        if let Some(m) = d.fin {
            v.push(entry(m, side, "FIN".to_string()));
        }
        if let Some(m) = d.rst {
            let ttl = d.rst_ttl.map(|t| format!(", TTL {t}")).unwrap_or_default();
            v.push(entry(m, side, format!("RST{ttl}")));
        }
    }
    if let Some(icmp) = &t.icmp_error {
        v.push(entry(
            icmp.at,
            "network",
            format!(
                "ICMP type {} code {} from {}",
                icmp.error.icmp_type, icmp.error.code, icmp.from
            ),
        ));
    }
    let Some(tds) = &c.tds else {
        v.sort_by_key(|e| (e.time.clone(), e.frame));
        return v;
    };
    for (p, side) in [
        (&tds.prelogin_client, "client"),
        (&tds.prelogin_server, "server"),
    ] {
        if let Some(p) = p {
            let enc = p.encryption.map(|e| e.as_str()).unwrap_or("?");
            let ver = p
                .version
                .as_deref()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default();
            v.push(entry(
                p.at,
                side,
                format!("PRELOGIN, encryption {enc}{ver}"),
            ));
        }
    }
    if let Some(tls) = &tds.tls {
        if let Some(m) = tls.client_hello {
            v.push(entry(m, "client", "TLS ClientHello".to_string()));
        }
        if let Some(m) = tls.server_hello {
            v.push(entry(m, "server", "TLS ServerHello".to_string()));
        }
        if let Some((m, level, desc)) = tls.alert {
            v.push(entry(
                m,
                "?",
                format!("TLS alert level {level} description {desc}"),
            ));
        }
        if let Some(m) = tls.application_data {
            v.push(entry(
                m,
                "client",
                "TLS handshake done, encrypted data".to_string(),
            ));
        }
    }
    if let Some(l) = &tds.login7 {
        let mut what = format!("LOGIN7 ({} authentication", l.auth.as_str());
        if !l.user.is_empty() {
            what.push_str(&format!(", user {}", l.user));
        }
        if !l.database.is_empty() {
            what.push_str(&format!(", database {}", l.database));
        }
        if !l.app.is_empty() {
            what.push_str(&format!(", app {}", l.app));
        }
        what.push(')');
        v.push(entry(l.at, "client", what));
    } else if let Some(m) = tds.login7_encrypted {
        v.push(entry(m, "client", "LOGIN7 inside TLS".to_string()));
    }
    for m in &tds.sspi_rounds {
        v.push(entry(*m, "client", "SSPI".to_string()));
    }
    if let Some((at, what)) = tds
        .sspi
        .as_ref()
        .and_then(|s| Some((s.at?, sspi_identity(s)?)))
    {
        v.push(entry(at, "client", format!("SSPI identity: {what}")));
    }
    if let Some(a) = &tds.login_ack {
        v.push(entry(
            a.at,
            "server",
            format!("LOGINACK, {} {}", a.prog_name, a.server_version),
        ));
    }
    for e in tds.login_errors.iter().chain(tds.errors.iter()) {
        v.push(entry(
            e.at,
            "server",
            format!(
                "ERROR {} state {} class {}: {}",
                e.number, e.state, e.class, e.message
            ),
        ));
    }
    if let Some(r) = &tds.routing {
        v.push(entry(
            r.at,
            "server",
            format!("routed to {}:{}", r.server, r.port),
        ));
    }
    // Before the requests: a SYN shares its frame with the session's first request.
    for s in &tds.smp_sessions {
        if let Some(at) = s.opened {
            v.push(entry(
                at,
                "client",
                format!("SMP SYN: MARS session {} opened", s.sid),
            ));
        }
        if let Some(at) = s.client_fin {
            v.push(entry(
                at,
                "client",
                format!("SMP FIN: MARS session {} closed", s.sid),
            ));
        }
        if let Some(at) = s.server_fin {
            v.push(entry(
                at,
                "server",
                format!("SMP FIN: MARS session {} closed", s.sid),
            ));
        }
    }
    for r in tds
        .requests
        .iter()
        .chain(tds.outstanding.iter())
        .take(MAX_REQUESTS_SHOWN)
    {
        let answer = match (r.first_response, r.done) {
            (Some(f), Some(d)) => format!(
                ", answered in {:.1} ms, done after {:.1} ms{}",
                f.ts.nanos_since(r.at.ts) as f64 / 1e6,
                d.ts.nanos_since(r.at.ts) as f64 / 1e6,
                r.row_count
                    .map(|n| format!(", {n} rows"))
                    .unwrap_or_default()
            ),
            (Some(f), None) => format!(
                ", answer began after {:.1} ms, never finished",
                f.ts.nanos_since(r.at.ts) as f64 / 1e6
            ),
            _ => ", no answer".to_string(),
        };
        let kind = match (r.kind, &r.procedure) {
            (RequestKind::SqlBatch, _) => "SQL batch".to_string(),
            (RequestKind::Rpc, Some(p)) => format!("RPC {p}"),
            (RequestKind::Rpc, None) => "RPC".to_string(),
            (RequestKind::TransactionManager, _) => "transaction manager request".to_string(),
            (RequestKind::BulkLoad, _) => "bulk load".to_string(),
        };
        v.push(entry(
            r.at,
            "client",
            format!("{kind}{}{answer}", on_session(r.smp_sid)),
        ));
    }
    let shown = tds.requests.len() + usize::from(tds.outstanding.is_some());
    if tds.request_count as usize > shown.min(MAX_REQUESTS_SHOWN) {
        if let Some(last) = tds.requests.last() {
            v.push(entry(
                last.at,
                "client",
                format!("... {} requests in all", tds.request_count),
            ));
        }
    }
    for a in &tds.attentions {
        let session = on_session(a.smp_sid);
        v.push(entry(a.at, "client", format!("ATTENTION{session}")));
        if let Some(m) = a.acknowledged {
            v.push(entry(
                m,
                "server",
                format!("DONE with ATTN (cancel acknowledged){session}"),
            ));
        }
    }
    v.sort_by(|a, b| a.time.cmp(&b.time).then(a.frame.cmp(&b.frame)));
    v
}

/// " on MARS session N" for what travelled inside an SMP session, else nothing.
fn on_session(sid: Option<u16>) -> String {
    sid.map(|s| format!(" on MARS session {s}"))
        .unwrap_or_default()
}

/// `NTLM user LAB\alice from WS01` / `Kerberos ticket for MSSQLSvc/sql:1433@LAB.TEST`.
pub fn sspi_identity(s: &crate::facts::SspiFacts) -> Option<String> {
    let mech = match s.mechanism? {
        "ntlm" => "NTLM",
        "kerberos" => "Kerberos",
        other => other,
    };
    let mut what = mech.to_string();
    if s.spnego {
        what.push_str(" (in SPNEGO)");
    }
    if s.anonymous {
        what.push_str(" anonymous (null session)");
    }
    match (&s.domain, &s.user) {
        (Some(d), Some(u)) if !d.is_empty() => what.push_str(&format!(" user {d}\\{u}")),
        (_, Some(u)) if !u.is_empty() => what.push_str(&format!(" user {u}")),
        _ => {}
    }
    if let Some(w) = s.workstation.as_ref().filter(|w| !w.is_empty()) {
        what.push_str(&format!(" from {w}"));
    }
    if let Some(spn) = &s.spn {
        what.push_str(&format!(" ticket for {spn}"));
        if let Some(r) = &s.realm {
            what.push_str(&format!("@{r}"));
        }
    }
    Some(what)
}
