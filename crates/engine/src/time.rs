//! Timestamps as Docker writes them: RFC 3339 in UTC with nine fraction
//! digits. The fixed width makes them comparable as strings, which is how
//! log filters (`since`, `until`) compare them.

use std::time::{SystemTime, UNIX_EPOCH};

use bosun_oci::UtcTime;

/// `secs.nanos` since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub(crate) fn rfc3339_nano(secs: i64, nanos: u32) -> String {
    format!("{}.{nanos:09}Z", UtcTime::from_unix(secs).date_time())
}

pub(crate) fn now_rfc3339_nano() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339_nano(now.as_secs() as i64, now.subsec_nanos())
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The zero time Docker shows for "never" (`0001-01-01T00:00:00Z`).
pub(crate) const ZERO: &str = "0001-01-01T00:00:00Z";

/// Docker's `since`/`until` query values: Unix seconds with an optional
/// fraction (`1700000000.5`), or an RFC 3339 time. Returns the fixed-width form.
pub(crate) fn parse_filter_time(value: &str) -> Option<String> {
    if value.contains('T') {
        return Some(value.to_owned());
    }
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let nanos: u32 = format!("{frac:0<9}").parse().ok()?;
    Some(rfc3339_nano(secs, nanos))
}

/// Seconds since the epoch of a fixed-width or plain RFC 3339 UTC time.
pub(crate) fn unix_of(rfc3339: &str) -> Option<i64> {
    let b = rfc3339.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| rfc3339.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant), the inverse of UtcTime::from_unix.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_and_round_trip() {
        assert_eq!(rfc3339_nano(0, 5), "1970-01-01T00:00:00.000000005Z");
        assert_eq!(
            unix_of("2026-11-18T11:06:40.000000000Z"),
            Some(1_795_000_000)
        );
        assert_eq!(unix_of("2000-02-29T00:00:00Z"), Some(951_782_400));
    }

    #[test]
    fn filter_times() {
        assert_eq!(
            parse_filter_time("1795000000.5").as_deref(),
            Some("2026-11-18T11:06:40.500000000Z")
        );
        assert_eq!(
            parse_filter_time("1795000000").as_deref(),
            Some("2026-11-18T11:06:40.000000000Z")
        );
        assert_eq!(parse_filter_time("soon"), None);
    }
}
