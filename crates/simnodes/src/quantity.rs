//! Checks a resource quantity (`8`, `500m`, `32Gi`, `1.5e3`) the way
//! Kubernetes reads one, so that a node is never registered with a capacity
//! the scheduler cannot parse. The value is kept as written.

/// `Ok` for a positive quantity; otherwise what is wrong with it.
pub(crate) fn check(q: &str) -> Result<(), String> {
    const SUFFIXES: &[&str] = &[
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    let bad = |why: &str| {
        Err(format!(
            "{q:?} is not a quantity ({why}; e.g. 8, 500m, 32Gi)"
        ))
    };
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return bad("it must start with a number");
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    match exponent {
        Some(e) if e.bytes().all(|b| b.is_ascii_digit()) && !e.is_empty() => {}
        Some(_) => return bad("a bad exponent"),
        None if SUFFIXES.contains(&suffix) => {}
        None => return bad(&format!("unknown suffix {suffix:?}")),
    }
    if whole.bytes().chain(frac.bytes()).all(|b| b == b'0') {
        return bad("it must be more than zero");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn kubernetes_quantities() {
        for ok in [
            "8", "500m", "32Gi", "1.5", "+2", "2e3", "1E-2", "100k", ".5", "7.",
        ] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "start with a number"),
            ("Gi", "start with a number"),
            ("-1", "start with a number"),
            ("32GB", "unknown suffix \"GB\""),
            ("1.2.3", "start with a number"),
            ("0", "more than zero"),
            ("0.0Gi", "more than zero"),
            ("3e", "unknown suffix"),
            ("3ex", "bad exponent"),
            ("eight", "start with a number"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
