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
        // Written field by field: chrono's format strings are parsed on every call, and every
        // connection and finding of a report carries several times.
        use chrono::{Datelike, Timelike};
        match chrono::DateTime::from_timestamp(secs, nanos) {
            Some(dt) => format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                dt.year(),
                dt.month(),
                dt.day(),
                dt.hour(),
                dt.minute(),
                dt.second(),
                nanos
            ),
            None => format!("@{}.{:09}", secs, nanos),
        }
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
