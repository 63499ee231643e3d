//! Kubernetes resource quantities (`250m`, `1.5Gi`, `2e3`), parsed exactly into
//! thousandths of a unit so that CPU (millicores) and bytes share one type.

use crate::ParseError;

/// A quantity in thousandths of its unit: `1` is 1000, `250m` is 250, `1Ki` is 1024000.
/// Fractions finer than a thousandth round up, as Kubernetes does for requests.
pub fn parse_milli(input: &str) -> Result<i128, ParseError> {
    let bad = |why: &'static str| ParseError::Quantity {
        input: input.to_owned(),
        reason: why,
    };
    let s = input.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(bad("expected a number"));
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    // value = mantissa / 10^scale
    let mantissa: i128 = format!("{whole}{frac}")
        .parse()
        .map_err(|_| bad("number too large"))?;
    let scale = frac.len() as i32;
    // factor = 2^bin * 10^dec
    let (bin, dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        other if other.starts_with(['e', 'E']) => {
            let exp: i32 = other[1..].parse().map_err(|_| bad("unknown suffix"))?;
            if !(-30..=30).contains(&exp) {
                return Err(bad("exponent out of range"));
            }
            (0, exp)
        }
        _ => return Err(bad("unknown suffix")),
    };
    // milli = mantissa * 2^bin * 10^(dec + 3 - scale), rounded up
    let exp10 = dec + 3 - scale;
    let base = mantissa
        .checked_mul(1i128 << bin)
        .ok_or_else(|| bad("number too large"))?;
    let value = if exp10 >= 0 {
        10i128
            .checked_pow(exp10 as u32)
            .and_then(|p| base.checked_mul(p))
            .ok_or_else(|| bad("number too large"))?
    } else {
        let div = 10i128
            .checked_pow((-exp10) as u32)
            .ok_or_else(|| bad("number too small"))?;
        (base + div - 1) / div
    };
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::parse_milli;

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_milli("250m").unwrap(), 250);
        assert_eq!(parse_milli("2").unwrap(), 2000);
        assert_eq!(parse_milli("0.5").unwrap(), 500);
        assert_eq!(parse_milli("1.25").unwrap(), 1250);
        assert_eq!(parse_milli("100u").unwrap(), 1, "sub-milli rounds up");
        assert_eq!(parse_milli("0").unwrap(), 0);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_milli("1Ki").unwrap(), 1024 * 1000);
        assert_eq!(parse_milli("128Mi").unwrap(), (128i128 << 20) * 1000);
        assert_eq!(parse_milli("1.5Gi").unwrap(), (3i128 << 29) * 1000);
        assert_eq!(parse_milli("1G").unwrap(), 1_000_000_000_000);
        assert_eq!(parse_milli("1k").unwrap(), 1_000_000);
        assert_eq!(parse_milli("2E").unwrap(), 2_000_000_000_000_000_000_000);
        assert_eq!(parse_milli("1Ei").unwrap(), (1i128 << 60) * 1000);
        assert_eq!(parse_milli("12e3").unwrap(), 12_000_000);
        assert_eq!(parse_milli("-1").unwrap(), -1000);
    }

    #[test]
    fn malformed_named() {
        for bad in ["", "Mi", "1.2.3", "1Q", "1ee", "abc", "."] {
            let err = parse_milli(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
