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
        // Every connection and finding of a report carries several times: the date is
        // computed and the digits written directly, which costs a tenth of chrono's date
        // conversion and a padded `format!`.
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let Ok(year) = u32::try_from(year) else {
            return format!("@{}.{:09}", secs, nanos);
        };
        let of_day = secs.rem_euclid(86_400) as u32;
        let mut out = String::with_capacity(30);
        let fields = [
            (year, 4, '-'),
            (month, 2, '-'),
            (day, 2, 'T'),
            (of_day / 3600, 2, ':'),
            (of_day / 60 % 60, 2, ':'),
            (of_day % 60, 2, '.'),
            (nanos, 9, 'Z'),
        ];
        for (value, width, separator) in fields {
            push_digits(&mut out, value, width);
            out.push(separator);
        }
        out
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01: the
/// date is found within its 400-year era, with years taken to start on 1 March so that the
/// leap day falls last (the algorithm of H. Hinnant's "chrono-compatible low-level date
/// algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Appends `value` in decimal, zero-padded to at least `width` digits.
fn push_digits(out: &mut String, mut value: u32, width: usize) {
    // Filled from the right (a u32 has at most 10 digits), then appended.
    let mut digits = [b'0'; 10];
    let mut start = digits.len();
    while start > 0 && (value > 0 || digits.len() - start < width) {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (value % 10) as u8;
        }
        value /= 10;
    }
    for &d in digits.iter().skip(start) {
        out.push(char::from(d));
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

    #[test]
    fn dates_match_chrono_across_the_range() {
        use chrono::{Datelike, Timelike};
        // Every day boundary ± a second from 1678 to 2262 in steps of a prime number of days,
        // plus the leap days of 1900 (none), 2000 and 2024.
        let mut secs: Vec<i64> = (-106_000..106_000i64)
            .step_by(13)
            .map(|d| d * 86_400 - 1)
            .collect();
        secs.extend([951_782_400, 951_868_799, 1_709_164_800, -2_203_891_200]);
        for s in secs {
            let t = Timestamp::from_secs_nanos(s, 5);
            let c = chrono::DateTime::from_timestamp(s, 5).unwrap();
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000005Z",
                c.year(),
                c.month(),
                c.day(),
                c.hour(),
                c.minute(),
                c.second()
            );
            assert_eq!(t.to_rfc3339(), want);
        }
    }

    #[test]
    fn zero_fields_are_padded() {
        assert_eq!(
            Timestamp::from_nanos(0).to_rfc3339(),
            "1970-01-01T00:00:00.000000000Z"
        );
        let t = Timestamp::from_secs_nanos(4_102_444_799, 7);
        assert_eq!(t.to_rfc3339(), "2099-12-31T23:59:59.000000007Z");
    }
}
