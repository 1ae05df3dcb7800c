//! Alert protocol (RFC 8446 6, RFC 5246 7.2): two bytes, level then description.

open_enum! {
    /// AlertLevel (RFC 5246 7.2).
    pub enum AlertLevel(u8) {
        Warning = 1,
        Fatal = 2,
    }
}

/// An unencrypted alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert {
    pub level: AlertLevel,
    /// AlertDescription code (IANA TLS Alerts registry).
    pub description: u8,
}

impl Alert {
    /// Parses the two alert bytes; `None` when fewer than two.
    pub fn parse(data: &[u8]) -> Option<Alert> {
        match data {
            [level, description, ..] => Some(Alert {
                level: AlertLevel::from(*level),
                description: *description,
            }),
            _ => None,
        }
    }

    /// The registry name of the description ("bad_certificate"), "unknown" outside it.
    pub fn description_name(&self) -> &'static str {
        alert_description_name(self.description)
    }

    pub fn is_fatal(&self) -> bool {
        self.level == AlertLevel::Fatal
    }
}

/// Names from the IANA TLS Alerts registry (RFC 8446 6, RFC 5246 7.2.2).
pub fn alert_description_name(code: u8) -> &'static str {
    match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_fields() {
        let a = Alert::parse(&[0x02, 0x30]).unwrap_or_else(|| unreachable!());
        assert_eq!(a.level, AlertLevel::Fatal);
        assert!(a.is_fatal());
        assert_eq!(a.description, 48);
        assert_eq!(a.description_name(), "unknown_ca");
        assert_eq!(Alert::parse(&[0x02]), None);
        assert_eq!(Alert::parse(&[]), None);
        let w = Alert::parse(&[0x07, 0xfe]).unwrap_or_else(|| unreachable!());
        assert_eq!(w.level, AlertLevel::Unknown(7));
        assert_eq!(w.description_name(), "unknown");
    }
}
