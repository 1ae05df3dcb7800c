//! Rules on the login: PRELOGIN encryption, LOGIN7, SSPI, LOGINACK or ERROR, timing.

use crate::diagnose::login::{connection_encryption, login_outcome, EncryptionMode, LoginOutcome};
use crate::diagnose::meaning::{is_sspi_error, login_error};
use crate::diagnose::{secs, Code, FindingBuilder, Settings};
use crate::facts::{
    AuthKind, ConnectionFacts, Dialect, KerberosTicketFacts, ServerError, TdsFacts,
};
use crate::report::model::Finding;
use crate::tcp::{Direction, Mark, TcpEnd};

fn tds7(c: &ConnectionFacts) -> Option<&TdsFacts> {
    c.tds.as_ref().filter(|t| t.dialect == Dialect::Tds7)
}

/// The frame and time the connection ended (first FIN or RST), or its last frame.
pub(super) fn end_mark(c: &ConnectionFacts) -> Mark {
    let t = &c.tcp;
    let marks = [Direction::ToServer, Direction::ToClient]
        .into_iter()
        .flat_map(|d| [t.dir(d).fin, t.dir(d).rst]);
    marks.flatten().min_by_key(|m| m.ts).unwrap_or(t.last)
}

/// Only one direction was captured: what the other side sent (or did not) is unknown.
pub(super) fn one_sided(c: &ConnectionFacts) -> bool {
    c.tcp.dir(Direction::ToServer).frames == 0 || c.tcp.dir(Direction::ToClient).frames == 0
}

/// `prelogin.encryption_mismatch`: one side requires TLS the other cannot do.
pub(super) fn encryption_mismatch(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    if connection_encryption(t)? != EncryptionMode::Mismatch {
        return None;
    }
    let (client, server) = (t.prelogin_client.as_ref()?, t.prelogin_server.as_ref()?);
    let (ce, se) = (client.encryption?.as_str(), server.encryption?.as_str());
    let summary = format!(
        "Encryption could not be agreed: the client's PRELOGIN said encryption {ce}, the server's said {se}, so the connection was closed before the login."
    );
    Some(
        FindingBuilder::new(Code::PreloginEncryptionMismatch, summary)
            .detail("client", ce)
            .detail("server", se)
            .evidence_at(client.at, format!("client PRELOGIN, encryption {ce}"))
            .evidence_at(
                server.at,
                format!("server PRELOGIN response, encryption {se}"),
            )
            .evidence_at(end_mark(c), "connection closed")
            .build(),
    )
}

/// `login.ok`: LOGINACK.
pub(super) fn login_ok(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    let ack = t.login_ack.as_ref()?;
    if login_outcome(c)? != LoginOutcome::Ok {
        return None;
    }
    let user = t
        .login7
        .as_ref()
        .map(|l| format!(" as '{}'", l.user))
        .filter(|_| t.login7.as_ref().is_some_and(|l| !l.user.is_empty()))
        .unwrap_or_default();
    let summary = format!(
        "Logged in{user} to {} {}.",
        ack.prog_name, ack.server_version
    );
    let mut b = FindingBuilder::new(Code::LoginOk, summary)
        .detail("server_version", ack.server_version.clone())
        .evidence_at(ack.at, "LOGINACK");
    if let Some(db) = &t.database {
        b = b.detail("database", db.clone());
    }
    Some(b.build())
}

/// `login.cleartext`: a LOGIN7 read without TLS.
pub(super) fn cleartext_login(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    let l7 = t.login7.as_ref()?;
    if t.tls
        .as_ref()
        .is_some_and(|tls| tls.application_data.is_some_and(|a| a.ts <= l7.at.ts))
    {
        return None;
    }
    let summary = if l7.auth == AuthKind::Sql {
        "The login (SQL authentication) was sent without encryption: the password is only obfuscated and can be read by anyone on the path.".to_string()
    } else {
        // An integrated login's LOGIN7 has no password; what it exposes is the rest.
        "The login (integrated authentication) was sent without encryption: it carries no password, but the user, host and application names, and every query and result after it, can be read by anyone on the path.".to_string()
    };
    let mut b = FindingBuilder::new(Code::LoginCleartext, summary)
        .detail("auth", l7.auth.as_str())
        .evidence_at(l7.at, "LOGIN7 in clear");
    if l7.auth != AuthKind::Sql {
        b = b.instead_steps(&[
            "Integrated authentication keeps the password off the wire, but without TLS the login's names and every query and result can be read on the path: enable encryption (Encrypt=True or Mandatory in the connection string, a certificate on the server).",
        ]);
    }
    Some(b.build())
}

fn failing_error(t: &TdsFacts) -> Option<&ServerError> {
    t.login_errors.first()
}

/// `login.failed`: an ERROR token in the login response.
pub(super) fn login_failed(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    if login_outcome(c)? != LoginOutcome::Failed {
        return None;
    }
    let e = failing_error(t)?;
    let m = login_error(e.number, e.state);
    let user = t.login7.as_ref().map(|l| l.user.as_str()).unwrap_or("");
    let summary = format!(
        "Login{} failed with error {} state {}: {}.",
        if user.is_empty() {
            String::new()
        } else {
            format!(" for '{user}'")
        },
        e.number,
        e.state,
        m.meaning
    );
    let mut b = FindingBuilder::new(Code::LoginFailed, summary)
        .detail("number", e.number)
        .detail("state", e.state)
        .detail("class", e.class)
        .detail("message", e.message.clone())
        .detail("meaning", m.meaning)
        .first_step(m.check.to_string());
    if let Some(l7) = &t.login7 {
        b = b.evidence_at(l7.at, "LOGIN7");
    }
    b = b.evidence_at(e.at, format!("ERROR {} state {}", e.number, e.state));
    for other in t.login_errors.iter().skip(1) {
        b = b.evidence_at(
            other.at,
            format!("also ERROR {} state {}", other.number, other.state),
        );
    }
    Some(b.build())
}

/// LOGIN7 asked for Windows (SSPI) authentication.
fn integrated_login(t: &TdsFacts) -> bool {
    t.login7
        .as_ref()
        .is_some_and(|l| l.auth != AuthKind::Sql && l.auth != AuthKind::FedAuth)
}

/// The KDC refused the service ticket for this server's SPN and no login followed (the latest
/// answer counts: a refusal followed by a ticket is no failure). A client then fails before it
/// can send a Kerberos token (SqlClient's "Cannot generate SSPI context") or falls back to NTLM.
fn kdc_refused_login<'a>(c: &'a ConnectionFacts, t: &TdsFacts) -> Option<&'a KerberosTicketFacts> {
    c.kerberos
        .last()
        .filter(|k| k.error.is_some())
        .filter(|_| t.login_ack.is_none() && (integrated_login(t) || t.login7.is_none()))
}

/// `login.sspi_failed`: an integrated login that failed in its SSPI exchange, or whose
/// Kerberos ticket for the SQL SPN the KDC refused just before the connection.
pub(super) fn sspi_failed(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    let integrated = integrated_login(t);
    let sspi_error = t.login_errors.iter().find(|e| is_sspi_error(e.number));
    // Closed by the server in the middle of the SSPI rounds, with no error at all.
    let closed_during_sspi = integrated
        && t.login_ack.is_none()
        && t.login_errors.is_empty()
        && !t.sspi_rounds.is_empty()
        && matches!(
            c.tcp.end,
            TcpEnd::Fin {
                first: Direction::ToClient
            } | TcpEnd::Rst {
                by: Direction::ToClient
            }
        );
    let krb_refused = kdc_refused_login(c, t);
    if sspi_error.is_none() && !closed_during_sspi && krb_refused.is_none() {
        return None;
    }
    // The package: from LOGIN7, else from an SSPI continuation (LOGIN7 may have been inside
    // TLS), else from a refused ticket.
    let auth = t
        .login7
        .as_ref()
        .map(|l| l.auth)
        .or(t.sspi_auth)
        .map(|a| a.as_str())
        .or(krb_refused.map(|_| "kerberos"))
        .unwrap_or("integrated");
    let null_credentials = t.sspi.as_ref().is_some_and(|s| s.anonymous);
    let summary = match (sspi_error, krb_refused) {
        (Some(e), _) => format!(
            "The Windows ({auth}) login failed: error {} — {}.",
            e.number,
            login_error(e.number, e.state).meaning
        ),
        (None, Some(k)) => format!(
            "The Windows ({auth}) login failed: the KDC refused a ticket for {} with {}.",
            k.spn,
            k.error.map(|(_, name)| name).unwrap_or("an error")
        ),
        (None, None) => format!(
            "The Windows ({auth}) login failed: the server closed the connection during the SSPI exchange ({} round{}).",
            t.sspi_rounds.len(),
            if t.sspi_rounds.len() == 1 { "" } else { "s" }
        ),
    };
    let summary = if null_credentials {
        format!(
            "{summary} The client sent null NTLM credentials (no user, no response), which the server sees as NT AUTHORITY\\ANONYMOUS LOGON."
        )
    } else {
        summary
    };
    let mut b = FindingBuilder::new(Code::LoginSspiFailed, summary).detail("auth", auth);
    if null_credentials {
        b = b.detail("null_credentials", true).first_step(
            "The client had no credentials to pass on: this is typical of a second hop (a web or application server, or a linked server, connecting on behalf of a user) without Kerberos delegation, or of a service running as a local account. Use Kerberos with constrained delegation for that hop, or run the client under a domain account."
                .to_string(),
        );
        if let Some(at) = t.sspi.as_ref().and_then(|s| s.at) {
            b = b.evidence_at(at, "NTLM AUTHENTICATE with null credentials");
        }
    }
    if let Some(e) = sspi_error {
        b = b
            .detail("number", e.number)
            .detail("state", e.state)
            .evidence_at(e.at, format!("ERROR {}", e.number));
    } else if krb_refused.is_none() {
        b = b.evidence_at(end_mark(c), "server closed during SSPI");
    }
    // The SPN: the one the ticket was asked for, else the one the client's token presented.
    let refused = c.kerberos.last().filter(|k| k.error.is_some());
    let spn = refused
        .map(|k| k.spn.clone())
        .or_else(|| t.sspi.as_ref().and_then(|s| s.spn.clone()));
    if let Some(spn) = spn {
        b = b.detail("spn", spn);
    }
    if let Some(k) = refused {
        if let Some((code, name)) = k.error {
            b = b
                .detail("krb_error", name)
                .detail("krb_error_code", code)
                .evidence_at(k.at, format!("TGS-REQ for {}", k.spn))
                .evidence_at(k.answered, format!("KRB-ERROR {name}"));
        }
    }
    if let Some(s) = &t.sspi {
        if let Some(user) = &s.user {
            let account = match &s.domain {
                Some(d) => format!("{d}\\{user}"),
                None => user.clone(),
            };
            b = b.detail("account", account);
        }
    }
    if let Some(l7) = &t.login7 {
        b = b.evidence_at(l7.at, "LOGIN7 with integrated security");
    }
    Some(b.build())
}

/// The login step the client was waiting on when it gave up, and when it began.
fn pending_step(t: &TdsFacts) -> Option<(&'static str, Mark)> {
    if let Some(r) = t.sspi_rounds.last() {
        return Some(("sspi", *r));
    }
    if let Some(l) = &t.login7 {
        return Some(("login", l.at));
    }
    if let Some(at) = t.login7_encrypted {
        return Some(("login", at));
    }
    if let Some(tls) = &t.tls {
        if let Some(at) = tls.client_hello {
            return Some(("tls", at));
        }
    }
    if let (Some(p), None) = (&t.prelogin_client, &t.prelogin_server) {
        return Some(("prelogin", p.at));
    }
    t.prelogin_server.as_ref().map(|p| ("login", p.at))
}

/// A client that closes this soon after its last login step was not waiting on a timeout
/// (drivers wait 15 s or more for a login: `knowledge/tcp-timing.md`).
const QUICK_CLOSE_NS: i64 = 1_000_000_000;

/// `login.timeout`: the client closed before the login finished.
pub(super) fn login_timed_out(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    if login_outcome(c)? != LoginOutcome::Timeout {
        return None;
    }
    let (step, since) = pending_step(t)?;
    if step == "tls" {
        return None; // tls.handshake_failed says it
    }
    if kdc_refused_login(c, t).is_some() {
        return None; // login.sspi_failed says it: the client gave up for want of a ticket
    }
    if connection_encryption(t) == Some(EncryptionMode::Mismatch) {
        return None; // prelogin.encryption_mismatch says it
    }
    if t.gaps > 0 || one_sided(c) {
        return None; // the answer may be in what the capture missed
    }
    let end = end_mark(c);
    let waited = end.ts.nanos_since(since.ts);
    // Under a second is no driver's login timeout (15 s and more): the client abandoned the
    // login on its own (an application error, a probe that only tests the handshake).
    let abandoned = waited < QUICK_CLOSE_NS;
    let summary = if abandoned {
        format!(
            "The client closed the connection {} ms after its {step} step, without waiting for the server's answer: it abandoned the login rather than timing out.",
            waited / 1_000_000
        )
    } else {
        format!(
            "The client gave up on the login after waiting {:.1} s for the server's answer to its {step} step.",
            waited as f64 / 1e9
        )
    };
    let cancel = t.attentions.iter().find(|a| a.during_login);
    let mut b = FindingBuilder::new(Code::LoginTimeout, summary);
    if abandoned {
        b = b.instead_steps(&[
            "The client did not wait for the server: look at the client application's own logs and error handling for this connection (a wait this short is not the driver's login timeout).",
            "If the connection came from a monitor or load-balancer health check that only tests the handshake, it is expected: exclude that source when reading the report.",
        ]);
    }
    let mut b = b
        .detail("pending_step", step)
        .detail("waited_s", secs(waited))
        .detail("cancelled_with_attention", cancel.is_some())
        .evidence_at(
            since,
            if step == "login" && t.login7.is_none() && t.login7_encrypted.is_none() {
                "PRELOGIN answered; no LOGIN7 followed".to_string()
            } else {
                format!("{step} sent")
            },
        );
    if let Some(a) = cancel {
        b = b.evidence_at(a.at, "ATTENTION: the client cancelled the login");
    }
    Some(b.evidence_at(end, "client closed").build())
}

/// `login.slow`: SYN to LOGINACK took longer than the threshold.
pub(super) fn slow_login(c: &ConnectionFacts, s: &Settings) -> Option<Finding> {
    let t = tds7(c)?;
    let ack = t.login_ack.as_ref()?;
    if login_outcome(c)? != LoginOutcome::Ok {
        return None; // too late for the client: login.timeout says it
    }
    let start = c.tcp.dir(Direction::ToServer).syn?;
    let total = ack.at.ts.nanos_since(start.ts);
    if total < s.slow_login_ns {
        return None;
    }
    let mut steps: Vec<(&'static str, Mark, Mark)> = Vec::new();
    if let Some(sa) = c.tcp.syn_ack {
        steps.push(("tcp_handshake", start, sa));
    }
    if let (Some(a), Some(b)) = (&t.prelogin_client, &t.prelogin_server) {
        steps.push(("prelogin", a.at, b.at));
    }
    if let Some(tls) = &t.tls {
        if let (Some(a), Some(b)) = (tls.client_hello, tls.application_data) {
            steps.push(("tls_handshake", a, b));
        }
    }
    if let Some(l) = t.login7.as_ref().map(|l| l.at).or(t.login7_encrypted) {
        steps.push(("login7_to_loginack", l, ack.at));
    }
    let slowest = steps
        .iter()
        .max_by_key(|(_, a, b)| b.ts.nanos_since(a.ts))?;
    let mut step_ms = serde_json::Map::new();
    for (name, a, b) in &steps {
        step_ms.insert(
            (*name).to_string(),
            (b.ts.nanos_since(a.ts) as f64 / 1e6).round().into(),
        );
    }
    let summary = format!(
        "The login took {:.1} s; the slowest step was {} ({:.1} s).",
        total as f64 / 1e9,
        slowest.0.replace('_', " "),
        slowest.2.ts.nanos_since(slowest.1.ts) as f64 / 1e9
    );
    Some(
        FindingBuilder::new(Code::LoginSlow, summary)
            .detail("total_ms", (total as f64 / 1e6).round())
            .detail("slowest_step", slowest.0)
            .detail("steps", serde_json::Value::Object(step_ms))
            .evidence_at(slowest.1, format!("{} began", slowest.0.replace('_', " ")))
            .evidence_at(slowest.2, format!("{} ended", slowest.0.replace('_', " ")))
            .build(),
    )
}

/// `login.redirected`: ENVCHANGE routing.
pub(super) fn redirected(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let r = tds7(c)?.routing.as_ref()?;
    let summary = format!(
        "The server redirected the client to {}:{}.",
        r.server, r.port
    );
    Some(
        FindingBuilder::new(Code::LoginRedirected, summary)
            .detail("to_server", r.server.clone())
            .detail("to_port", r.port)
            .evidence_at(r.at, "ENVCHANGE routing")
            .build(),
    )
}
