//! Calendar arithmetic for RFC 3339 timestamps, so no crate needs a date library
//! to write "now" into a state file or an image config. Pure: callers read the clock.

/// A UTC instant broken down into calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl UtcTime {
    /// The calendar fields of `secs` seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (tod / 3600) as u32,
            minute: (tod % 3600 / 60) as u32,
            second: (tod % 60) as u32,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS` (no fraction, no zone: callers add them).
    pub fn date_time(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(UtcTime::from_unix(0).date_time(), "1970-01-01T00:00:00");
        assert_eq!(
            UtcTime::from_unix(951_782_400).date_time(),
            "2000-02-29T00:00:00"
        );
        assert_eq!(
            UtcTime::from_unix(20_414 * 86_400).date_time(),
            "2025-11-22T00:00:00"
        );
        assert_eq!(
            UtcTime::from_unix(1_795_000_000).date_time(),
            "2026-11-18T11:06:40"
        );
    }
}
