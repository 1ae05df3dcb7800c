//! X.509 certificates from the TLS Certificate message (RFC 5280), decoded with `x509-parser`,
//! and the checks a client makes on them: validity period and host name (RFC 6125 6.4).

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The subject CN of the certificate SQL Server generates for itself at start-up when none is
/// configured; clients that validate certificates reject it (it is self-signed).
pub const SQL_SERVER_FALLBACK_CN: &str = "SSL_Self_Signed_Fallback";

/// One certificate of a chain, reduced to what explains a rejected handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514 style ("CN=sql1.corp.example, O=Corp").
    pub subject: String,
    pub issuer: String,
    /// The subject's first common name.
    pub common_name: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Issuer equals subject (and, when both are present, the authority key id equals the
    /// subject key id). The signature itself is not verified.
    pub self_signed: bool,
    /// SQL Server's self-generated certificate (CN `SSL_Self_Signed_Fallback`).
    pub sql_server_fallback: bool,
    /// subjectAltName dNSName entries.
    pub dns_names: Vec<String>,
    /// subjectAltName iPAddress entries, as text.
    pub ip_addresses: Vec<String>,
    /// Lower-case hex of the serial number.
    pub serial: String,
    /// Signature algorithm short name ("sha256WithRSAEncryption"), or its dotted OID.
    pub signature_algorithm: String,
    /// Public key size in bits (RSA modulus, EC field), 0 when unknown.
    pub key_bits: usize,
    /// Extended key usage: `Some(true)` when it lists serverAuth (SQL Server requires it),
    /// `None` when the certificate has no EKU extension (any use allowed).
    pub server_auth_eku: Option<bool>,
    /// basicConstraints cA.
    pub is_ca: bool,
}

/// Where a time falls relative to a certificate's validity period (RFC 5280 4.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    NotYetValid,
    Valid,
    Expired,
}

/// Decodes one DER certificate; `None` when x509-parser rejects it.
pub fn parse_certificate(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let issuer = cert.issuer();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns_names.push((*n).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_text(b) {
                        ip_addresses.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let mut aki = None;
    let mut ski = None;
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0)
            }
            ParsedExtension::SubjectKeyIdentifier(s) => ski = Some(s.0),
            _ => {}
        }
    }
    let same_key = match (aki, ski) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    };
    let self_signed = subject.as_raw() == issuer.as_raw() && same_key;
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let sig_oid = &cert.signature_algorithm.algorithm;
    let signature_algorithm =
        x509_parser::objects::oid2sn(sig_oid, x509_parser::objects::oid_registry())
            .map(str::to_owned)
            .unwrap_or_else(|_| sig_oid.to_id_string());
    let key_bits = cert.public_key().parsed().map_or(0, |k| k.key_size());
    let server_auth_eku = match cert.extended_key_usage() {
        Ok(Some(eku)) => Some(eku.value.server_auth || eku.value.any),
        _ => None,
    };
    Some(CertInfo {
        signature_algorithm,
        key_bits,
        server_auth_eku,
        is_ca: cert.is_ca(),
        subject: subject.to_string(),
        issuer: issuer.to_string(),
        sql_server_fallback: common_name.as_deref() == Some(SQL_SERVER_FALLBACK_CN),
        common_name,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        self_signed,
        dns_names,
        ip_addresses,
        serial,
    })
}

fn ip_text(b: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(b) {
        return Some(std::net::Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(b)
        .ok()
        .map(|v6| std::net::Ipv6Addr::from(v6).to_string())
}

impl CertInfo {
    /// Validity at `unix_seconds` (both bounds inclusive, RFC 5280 4.1.2.5).
    pub fn validity_at(&self, unix_seconds: i64) -> Validity {
        if unix_seconds < self.not_before {
            Validity::NotYetValid
        } else if unix_seconds > self.not_after {
            Validity::Expired
        } else {
            Validity::Valid
        }
    }

    /// `not_before` as RFC 3339 (UTC, seconds).
    pub fn not_before_rfc3339(&self) -> String {
        rfc3339(self.not_before)
    }

    /// `not_after` as RFC 3339 (UTC, seconds).
    pub fn not_after_rfc3339(&self) -> String {
        rfc3339(self.not_after)
    }

    /// Whether a client connecting to `host` would accept this certificate's name (RFC 6125
    /// 6.4): an IP literal against the iPAddress entries; a name against the dNSName entries,
    /// or against the CN only when there are none (6.4.4).
    pub fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        {
            let ip = ip.to_string();
            return self.ip_addresses.contains(&ip);
        }
        if self.dns_names.is_empty() {
            self.common_name
                .as_deref()
                .is_some_and(|cn| host_matches(cn, host))
        } else {
            self.dns_names.iter().any(|n| host_matches(n, host))
        }
    }
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// RFC 6125 6.4.3: case-insensitive; a `*` only as the whole left-most label, standing for
/// exactly one non-empty label, and never on a name of fewer than three labels (`*.com`).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            if suffix.split('.').count() < 2 || suffix.contains('*') {
                return false;
            }
            match host.split_once('.') {
                Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(suffix),
                None => false,
            }
        }
        None => !pattern.contains('*') && pattern.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn info(cn: &str, dns: &[&str]) -> CertInfo {
        CertInfo {
            subject: format!("CN={cn}"),
            issuer: format!("CN={cn}"),
            common_name: Some(cn.to_string()),
            not_before: 1_000,
            not_after: 2_000,
            self_signed: true,
            sql_server_fallback: false,
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: vec!["10.0.0.5".into()],
            serial: "01".into(),
            signature_algorithm: "sha256WithRSAEncryption".into(),
            key_bits: 2048,
            server_auth_eku: None,
            is_ca: false,
        }
    }

    #[test]
    fn validity_bounds() {
        let c = info("a", &[]);
        assert_eq!(c.validity_at(999), Validity::NotYetValid);
        assert_eq!(c.validity_at(1_000), Validity::Valid);
        assert_eq!(c.validity_at(2_000), Validity::Valid);
        assert_eq!(c.validity_at(2_001), Validity::Expired);
        assert_eq!(c.not_before_rfc3339(), "1970-01-01T00:16:40Z");
    }

    #[test]
    fn host_names() {
        assert!(host_matches("sql1.corp.example", "SQL1.corp.example."));
        assert!(host_matches("*.corp.example", "sql1.corp.example"));
        assert!(!host_matches("*.corp.example", "a.sql1.corp.example"));
        assert!(!host_matches("*.corp.example", "corp.example"));
        assert!(!host_matches("*.example", "corp.example"));
        assert!(!host_matches("sql*.corp.example", "sql1.corp.example"));
        assert!(!host_matches("a", ""));

        let c = info("sql1", &["sql1.corp.example", "*.db.corp.example"]);
        assert!(c.matches_host("x.db.corp.example"));
        assert!(!c.matches_host("sql1"), "CN ignored when SAN has names");
        assert!(c.matches_host("10.0.0.5"));
        assert!(!c.matches_host("10.0.0.6"));
        assert!(info("sql1", &[]).matches_host("SQL1"));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_certificate(&[]), None);
        assert_eq!(parse_certificate(&[0x30, 0x82, 0xff, 0xff, 0x00]), None);
    }
}
