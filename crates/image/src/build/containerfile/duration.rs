//! Go's `time.ParseDuration` syntax, as HEALTHCHECK's options use it:
//! `300ms`, `1.5h`, `2h45m`, `1m30s`; units ns, us (µs), ms, s, m, h.

use std::time::Duration;

/// Parses a Go duration. Negative durations are refused (no HEALTHCHECK
/// option can be negative); a bare `0` is zero, as in Go.
pub(super) fn parse(text: &str) -> Result<Duration, &'static str> {
    let body = match text.strip_prefix('-') {
        Some(rest) if rest != "0" => return Err("a duration cannot be negative"),
        Some(rest) => rest,
        None => text.strip_prefix('+').unwrap_or(text),
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("empty duration");
    }
    // Go's limit: the nanoseconds must fit an int64.
    let max = u128::from(i64::MAX.unsigned_abs());
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("expected a number (durations look like 30s, 1m30s or 500ms)");
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit (use ns, us, ms, s, m or h)"),
            _ => return Err("unknown unit (use ns, us, ms, s, m or h)"),
        };
        let too_long = "duration out of range";
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| too_long)?
        };
        let mut value = int.checked_mul(nanos_per_unit).ok_or(too_long)?;
        // The fraction, truncated to nanoseconds like Go does; digits past
        // the 20th cannot change the result.
        let frac = &frac[..frac.len().min(20)];
        if !frac.is_empty() {
            let digits: u128 = frac.parse().map_err(|_| too_long)?;
            value += digits * nanos_per_unit / 10u128.pow(frac.len() as u32);
        }
        total = total
            .checked_add(value)
            .filter(|t| *t <= max)
            .ok_or(too_long)?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| "duration out of range")?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn go_durations() {
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok("2h45m"), Duration::from_secs(9900));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
    }

    #[test]
    fn bad_durations() {
        assert_eq!(parse("30"), Err("missing unit (use ns, us, ms, s, m or h)"));
        assert_eq!(parse("5x"), Err("unknown unit (use ns, us, ms, s, m or h)"));
        assert_eq!(parse("-5s"), Err("a duration cannot be negative"));
        assert_eq!(parse(""), Err("empty duration"));
        assert_eq!(
            parse("s"),
            Err("expected a number (durations look like 30s, 1m30s or 500ms)")
        );
        assert_eq!(
            parse("."),
            Err("expected a number (durations look like 30s, 1m30s or 500ms)")
        );
        assert_eq!(parse("3000000h"), Err("duration out of range"));
        assert!(parse("1s 2s").is_err());
    }
}
