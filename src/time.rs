//! Capture time: nanoseconds since the Unix epoch, as every capture format can express it.

use std::fmt;

/// A packet timestamp in nanoseconds since 1970-01-01T00:00:00Z.
///
/// i64 nanoseconds cover the years 1678..2262, which includes every timestamp a capture
/// format can write with a 32-bit seconds field (pcap) and the NetMon FILETIME range we accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_nanos(ns: i64) -> Self {
        Timestamp(ns)
    }

    pub fn from_secs_nanos(secs: i64, nanos: u32) -> Self {
        Timestamp(
            secs.saturating_mul(1_000_000_000)
                .saturating_add(i64::from(nanos)),
        )
    }

    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Seconds from `earlier` to `self`, negative if `self` is earlier.
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0.saturating_sub(earlier.0)) as f64 / 1e9
    }

    pub fn nanos_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn add_nanos(self, ns: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ns))
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2006-03-01T10:15:02.123456789Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000) as u32;
        // Digits are written straight into the string: every connection and finding of a
        // report carries several times, and `format!` with padded fields costs ten times more.
        use chrono::{Datelike, Timelike};
        let dt = chrono::DateTime::from_timestamp(secs, nanos);
        let Some((dt, year)) = dt.and_then(|d| Some((d, u32::try_from(d.year()).ok()?))) else {
            return format!("@{}.{:09}", secs, nanos);
        };
        let mut out = String::with_capacity(30);
        let fields = [
            (year, 4, '-'),
            (dt.month(), 2, '-'),
            (dt.day(), 2, 'T'),
            (dt.hour(), 2, ':'),
            (dt.minute(), 2, ':'),
            (dt.second(), 2, '.'),
            (nanos, 9, 'Z'),
        ];
        for (value, width, separator) in fields {
            push_digits(&mut out, value, width);
            out.push(separator);
        }
        out
    }
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, value: u32, width: u32) {
    let digits = value.checked_ilog10().unwrap_or(0) + 1;
    for i in (0..width.max(digits)).rev() {
        let digit = (value / 10u32.pow(i)) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        let t = Timestamp::from_secs_nanos(1_141_207_702, 123_456_789);
        assert_eq!(t.to_rfc3339(), "2006-03-01T10:08:22.123456789Z");
    }

    #[test]
    fn negative_times_format_before_epoch() {
        let t = Timestamp::from_nanos(-1);
        assert_eq!(t.to_rfc3339(), "1969-12-31T23:59:59.999999999Z");
    }
}
