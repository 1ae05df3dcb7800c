//! Rules on the TLS handshake inside TDS (or first, with TDS 8.0 strict).

use crate::diagnose::{Code, FindingBuilder, Settings};
use crate::facts::{ConnectionFacts, Dialect, TlsFacts};
use crate::proto::tls::{alert_description_name, is_legacy, version_name};
use crate::report::model::Finding;
use crate::tcp::{Direction, TcpEnd};

use super::login::end_mark;

fn tls(c: &ConnectionFacts) -> Option<&TlsFacts> {
    c.tds
        .as_ref()
        .filter(|t| t.dialect == Dialect::Tds7)?
        .tls
        .as_ref()
}

/// Where a handshake that never finished stopped, for `tls.handshake_failed`'s `stage`.
fn stage(t: &TlsFacts) -> &'static str {
    if t.alert.is_some() {
        "alert"
    } else if t.server_hello.is_none() {
        "after_client_hello"
    } else if t.certificate.is_none() && t.client_finished.is_none() {
        "after_server_hello"
    } else if t.client_finished.is_none() {
        "after_certificate"
    } else {
        // The client completed its side, then closed without sending its login: it checked
        // the certificate after the handshake and rejected it (tedious, .NET do so).
        "after_finished"
    }
}

/// `tls.handshake_failed`: the connection ended, or an alert came, before the TLS handshake
/// carried the login.
pub(super) fn handshake_failed(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tls(c)?;
    if t.application_data.is_some() {
        return None;
    }
    if t.alert.is_none() && matches!(c.tcp.end, TcpEnd::Open) {
        return None;
    }
    let stage = stage(t);
    let closer = match c.tcp.end.closed_by() {
        Some(Direction::ToServer) => "client",
        Some(Direction::ToClient) => "server",
        None => "nobody",
    };
    let alert_from = match t.alert_from {
        Some(Direction::ToServer) => "client",
        _ => "server",
    };
    let level_name = |level: u8| if level == 2 { "fatal" } else { "warning" };
    let summary = match (stage, t.alert) {
        ("alert", Some((_, level, desc))) => format!(
            "The TLS handshake failed: the {alert_from} sent a {} alert '{}'.",
            level_name(level),
            alert_description_name(desc)
        ),
        ("after_finished", _) => "The client finished the TLS handshake and then closed the connection without logging in: it rejected the server's certificate.".to_string(),
        ("after_certificate", _) => format!("The TLS handshake stopped after the server sent its certificate: the {closer} closed the connection (the client did not trust the certificate, or no cipher or version was acceptable)."),
        ("after_server_hello", _) => format!("The TLS handshake stopped after the server's hello: the {closer} closed the connection."),
        _ => format!("The TLS handshake stopped after the client's hello: the server never answered it and the {closer} closed the connection (no common TLS version or cipher, or the server could not load its certificate)."),
    };
    let mut b = FindingBuilder::new(Code::TlsHandshakeFailed, summary)
        .detail("stage", stage)
        .detail("closed_by", closer);
    if let Some((at, level, desc)) = t.alert {
        b = b
            .detail("alert", alert_description_name(desc))
            .detail("alert_level", level_name(level))
            .detail("alert_from", alert_from)
            .evidence_at(at, format!("TLS alert from the {alert_from}"));
    }
    if let Some(m) = t.client_hello {
        b = b.evidence_at(m, "ClientHello");
    }
    if let Some(m) = t.server_hello {
        b = b.evidence_at(m, "ServerHello");
    }
    if let Some(m) = t.certificate.as_ref().and_then(|c| c.at) {
        b = b.evidence_at(m, "server certificate");
    }
    Some(b.evidence_at(end_mark(c), "connection closed").build())
}

/// A client that sent no SNI and closed right after the certificate, which is otherwise
/// acceptable (not self-signed, in date) but does not name the address dialled: the likeliest
/// reason it gave up is the name check (FreeTDS dialling an IP literal does exactly this).
fn rejected_without_sni(
    c: &ConnectionFacts,
    t: &TlsFacts,
    cert: &crate::facts::CertificateFacts,
) -> bool {
    t.sni.is_none()
        && t.application_data.is_none()
        && stage(t) == "after_certificate"
        && cert.at.is_some()
        && c.tcp.end.closed_by() == Some(Direction::ToServer)
        && !cert.names_address(c.tcp.server.ip())
}

fn certificate_names(cert: &crate::facts::CertificateFacts) -> String {
    let names: Vec<&str> = cert
        .dns_names
        .iter()
        .chain(&cert.ip_addresses)
        .map(String::as_str)
        .chain(
            cert.common_name
                .as_deref()
                .filter(|_| cert.dns_names.is_empty()),
        )
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// `tls.legacy_version`: TLS 1.0 or 1.1 (or SSL) negotiated.
pub(super) fn legacy_version(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tls(c)?;
    let v = t.version?;
    // Only a version both sides went on with: a client that refused the server's old version
    // (an alert, no Finished) agreed on nothing (tls.handshake_failed says it).
    let agreed = t.application_data.is_some() || t.client_finished.is_some();
    if !is_legacy(v) || !agreed {
        return None;
    }
    let summary = format!(
        "The connection negotiated {}, which is deprecated and disabled by default on current Windows and OpenSSL: the client or the server cannot do TLS 1.2.",
        version_name(v)
    );
    let mut b =
        FindingBuilder::new(Code::TlsLegacyVersion, summary).detail("version", version_name(v));
    if let Some(max) = t.client_max_version {
        b = b.detail("client_max_version", version_name(max));
    }
    if let Some(m) = t.server_hello {
        b = b.evidence_at(m, "ServerHello");
    }
    Some(b.build())
}

/// `tls.certificate_problem`: the server's certificate is SQL Server's self-signed fallback,
/// self-signed, expired or not yet valid at capture time, or names another host.
pub(super) fn certificate_problem(c: &ConnectionFacts, _: &Settings) -> Option<Finding> {
    let t = tls(c)?;
    let cert = t.certificate.as_ref()?;
    let at_secs = cert.at.map(|m| m.ts.as_nanos().div_euclid(1_000_000_000))?;
    let mut problems = Vec::new();
    if cert.sql_server_fallback {
        problems.push("self_signed_fallback");
    } else if cert.self_signed {
        problems.push("self_signed");
    }
    if at_secs > cert.not_after {
        problems.push("expired");
    } else if at_secs < cert.not_before {
        problems.push("not_yet_valid");
    }
    if cert.matches_sni == Some(false) {
        problems.push("name_mismatch");
    }
    let unnamed_address = problems.is_empty() && rejected_without_sni(c, t, cert);
    if unnamed_address {
        problems.push("name_mismatch");
    }
    let first = *problems.first()?;
    let what = match first {
        "self_signed_fallback" => "is SQL Server's self-generated fallback certificate: no certificate is configured, so clients that validate certificates (Encrypt=True without TrustServerCertificate, TDS 8.0) reject it",
        "self_signed" => "is self-signed: clients that validate certificates reject it unless it is installed as trusted",
        "expired" => "has expired",
        "not_yet_valid" => "is not valid yet (check the clocks)",
        _ => "does not name the server the client asked for",
    };
    let summary = if unnamed_address {
        format!(
            "The client closed the connection as soon as it received the server's certificate ({}), which does not name the address it connected to ({}). The client sent no server name (SNI): if it connected by host name, that name must be one the certificate lists ({}).",
            cert.subject,
            c.tcp.server.ip(),
            certificate_names(cert)
        )
    } else {
        format!("The server's certificate ({}) {what}.", cert.subject)
    };
    let mut b = FindingBuilder::new(Code::TlsCertificateProblem, summary)
        .detail("problem", first)
        .detail("problems", problems.clone())
        .detail("subject", cert.subject.clone())
        .detail("issuer", cert.issuer.clone())
        .detail("not_before", cert.not_before_text.clone())
        .detail("not_after", cert.not_after_text.clone());
    if let Some(sni) = &t.sni {
        b = b
            .detail("server_name", sni.clone())
            .detail("name_source", "sni");
    } else if unnamed_address {
        b = b
            .detail("server_name", c.tcp.server.ip().to_string())
            .detail("name_source", "address");
    }
    if let Some(m) = cert.at {
        b = b.evidence_at(m, "server certificate");
    }
    Some(b.build())
}
