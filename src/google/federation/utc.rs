//! UTC calendar arithmetic for the two date forms AWS uses: SigV4's `20150830T123600Z` (written)
//! and the instance metadata service's `2015-08-30T12:36:00Z` credential expiry (read). Pure:
//! seconds since the Unix epoch in and out, no time zones, no leap seconds (as Unix time).

/// A UTC date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl DateTime {
    /// The calendar date and time of `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: u64) -> DateTime {
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        // `rem` < 86 400, so these fit.
        let rem = u32::try_from(rem).unwrap_or(0);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// Seconds since the Unix epoch; `None` before 1970 or for an impossible date.
    pub fn to_unix(self) -> Option<u64> {
        let days_in_month = match self.month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if is_leap(self.year) => 29,
            2 => 28,
            _ => return None,
        };
        if self.day == 0 || self.day > days_in_month || self.hour > 23 || self.minute > 59 {
            return None;
        }
        // A leap second (:60) is read as the next second, as Unix time does.
        if self.second > 60 {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days
            .checked_mul(86_400)?
            .checked_add(i64::from(self.hour * 3600 + self.minute * 60 + self.second))?;
        u64::try_from(secs).ok()
    }

    /// SigV4's `X-Amz-Date` form: `YYYYMMDDTHHMMSSZ`.
    pub fn amz_date(self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// SigV4's credential-scope date: `YYYYMMDD`.
    pub fn amz_day(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// Reads an RFC 3339 UTC timestamp as AWS writes credential expiry: `2015-08-30T12:36:00Z`,
/// optionally with fractional seconds (ignored) and `+00:00` instead of `Z`. Other offsets are
/// refused rather than guessed.
pub fn parse_rfc3339_utc(text: &str) -> Option<u64> {
    let text = text.trim();
    let body = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = body.split_once(['T', 't'])?;
    let mut date_parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) = (
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
    ) else {
        return None;
    };
    let time = time.split('.').next()?;
    let mut time_parts = time.split(':');
    let (Some(h), Some(mi), Some(s), None) = (
        time_parts.next(),
        time_parts.next(),
        time_parts.next(),
        time_parts.next(),
    ) else {
        return None;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = digits(y, 4)
        && digits(mo, 2)
        && digits(d, 2)
        && digits(h, 2)
        && digits(mi, 2)
        && digits(s, 2);
    if !well_formed {
        return None;
    }
    DateTime {
        year: y.parse().ok()?,
        month: mo.parse().ok()?,
        day: d.parse().ok()?,
        hour: h.parse().ok()?,
        minute: mi.parse().ok()?,
        second: s.parse().ok()?,
    }
    .to_unix()
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_sigv4_test_suite_date() {
        // 2015-08-30T12:36:00Z, the AWS SigV4 test suite's moment.
        let t = DateTime::from_unix(1_440_938_160);
        assert_eq!(t.amz_date(), "20150830T123600Z");
        assert_eq!(t.amz_day(), "20150830");
        assert_eq!(DateTime::from_unix(0).amz_date(), "19700101T000000Z");
        assert_eq!(
            DateTime::from_unix(951_782_400).amz_date(),
            "20000229T000000Z"
        );
    }

    #[test]
    fn round_trips_every_day_for_centuries() {
        let mut secs = 0u64;
        while secs < 10_000_000_000 {
            let t = DateTime::from_unix(secs + 45_296);
            assert_eq!(t.to_unix(), Some(secs + 45_296), "{t:?}");
            secs += 86_400 * 7 + 3_601;
        }
    }

    #[test]
    fn reads_aws_credential_expiry() {
        assert_eq!(
            parse_rfc3339_utc("2015-08-30T12:36:00Z"),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_rfc3339_utc("2015-08-30T12:36:00.123Z"),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_rfc3339_utc(" 2015-08-30T12:36:00+00:00 "),
            Some(1_440_938_160)
        );
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T00:00:00Z"),
            Some(1_709_164_800)
        );
    }

    #[test]
    fn refuses_other_offsets_and_impossible_dates() {
        for bad in [
            "",
            "2015-08-30",
            "2015-08-30T12:36:00",
            "2015-08-30T12:36:00+02:00",
            "2015-02-29T00:00:00Z",
            "2015-13-01T00:00:00Z",
            "2015-00-01T00:00:00Z",
            "2015-08-32T00:00:00Z",
            "2015-08-30T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "15-08-30T12:36:00Z",
            "2015-8-30T12:36:00Z",
            "+015-08-30T12:36:00Z",
            "2015-08-30T12:36Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad:?}");
        }
    }
}
