//! Output of the container verbs in Docker's shapes: `--format` templates
//! with field substitution (`{{.ID}}`, `{{.State.Status}}`, `{{json .}}`; no
//! full template engine), tables aligned like Go's tabwriter as the docker
//! CLI sets it up, and Docker's human durations and sizes.

use anyhow::{Result, bail};
use serde_json::Value;

/// The value at a dotted path (`.State.Status`; `.` is the whole value).
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// How Go's templates print a value: strings bare, `<no value>` for null,
/// `[a b]` and `map[k:v]` for the composites.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// Docker's format strings are typed in shells: `\t` and `\n` arrive as two
/// characters and mean a tab and a newline.
fn unescape(format: &str) -> String {
    format.replace("\\t", "\t").replace("\\n", "\n")
}

/// Render one value with a template: `{{.A.B}}`, `{{ .A }}`, `{{json .A}}`,
/// `{{json .}}`; anything else is refused rather than printed wrong.
pub(crate) fn render(template: &str, v: &Value) -> Result<String> {
    let template = unescape(template);
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            bail!("template: unclosed action in {template:?}");
        };
        let action = after[..end].trim().trim_matches('-').trim();
        let (json, path) = match action.strip_prefix("json ") {
            Some(p) => (true, p.trim()),
            None => (false, action),
        };
        if !path.starts_with('.') || path.contains(' ') {
            bail!(
                "template: unsupported action {{{{{action}}}}}: only {{{{.Field}}}} and {{{{json .Field}}}}"
            );
        }
        let Some(value) = lookup(v, path) else {
            bail!(
                "template: can't evaluate field {}",
                path.trim_start_matches('.')
            );
        };
        if json {
            out.push_str(&value.to_string());
        } else {
            out.push_str(&go_string(value));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Lines of tab-separated cells aligned as Go's tabwriter with the docker
/// CLI's settings (minimum width 10, padding 3); the last cell is not padded.
pub(crate) fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(10));
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A listing: rows of fields, a default table, and header names.
#[derive(Debug)]
pub(crate) struct Listing<'a> {
    pub(crate) rows: Vec<Value>,
    pub(crate) default_format: &'a str,
    pub(crate) headers: &'a [(&'a str, &'a str)],
}

impl Listing<'_> {
    /// What `ls`/`ps` print for `--format` (or the default table).
    pub(crate) fn print(&self, format: Option<&str>) -> Result<String> {
        let format = format.unwrap_or(self.default_format);
        if let Some(table) = format.strip_prefix("table") {
            let table = table.trim_start();
            let mut header = serde_json::Map::new();
            for field in fields(table) {
                let name = self
                    .headers
                    .iter()
                    .find(|(k, _)| *k == field)
                    .map_or_else(|| field.to_uppercase(), |(_, h)| (*h).to_owned());
                header.insert(field, Value::String(name));
            }
            let mut lines = vec![render(table, &Value::Object(header))?];
            for row in &self.rows {
                lines.push(render(table, row)?);
            }
            return Ok(align(&lines));
        }
        let mut out = String::new();
        for row in &self.rows {
            out.push_str(&render(format, row)?);
            out.push('\n');
        }
        Ok(out)
    }
}

/// The top-level field names a template uses (`{{.ID}}` → `ID`).
fn fields(template: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let action = after[..end].trim();
        let path = action.strip_prefix("json ").unwrap_or(action).trim();
        if let Some(f) = path.strip_prefix('.').and_then(|p| p.split('.').next())
            && !f.is_empty()
        {
            out.push(f.to_owned());
        }
        rest = &after[end + 2..];
    }
    out
}

/// Docker's `units.HumanDuration`.
pub(crate) fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0).round() as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// `N ago` from a unix time, as `ps` and `images` show it.
pub(crate) fn ago(unix: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!("{} ago", human_duration(now - unix))
}

/// `%.Ng` of Go: N significant digits, trailing zeros dropped.
fn significant(v: f64, digits: usize) -> String {
    let int_digits = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as usize) + 1
    };
    let decimals = digits.saturating_sub(int_digits);
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

fn human_size_with(mut v: f64, base: f64, units: &[&str], digits: usize) -> String {
    let mut i = 0;
    while v >= base && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    format!("{}{}", significant(v, digits), units[i])
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units (`4.26MB`).
pub(crate) fn human_size(bytes: u64) -> String {
    human_size_with(
        bytes as f64,
        1000.0,
        &["B", "kB", "MB", "GB", "TB", "PB"],
        3,
    )
}

/// Docker's `units.BytesSize`: binary units (`1.5MiB`), as `stats` shows memory.
pub(crate) fn bytes_size(bytes: u64) -> String {
    human_size_with(
        bytes as f64,
        1024.0,
        &["B", "KiB", "MiB", "GiB", "TiB", "PiB"],
        4,
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A unix time in nanoseconds as RFC 3339 with nanoseconds, UTC.
pub(crate) fn rfc3339_nano(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// What Go prints for a `time.Time` in UTC: `2026-11-22 09:31:43 +0000 UTC`.
pub(crate) fn go_time(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    let t = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} +0000 UTC",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// JSON as `docker inspect` prints it: indented by four spaces.
pub(crate) fn pretty(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a `Value` into memory cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_substitute_fields() {
        let v = json!({"ID": "abc", "State": {"Status": "running", "Running": true}, "N": null});
        assert_eq!(
            render("{{.ID}} {{ .State.Status }}", &v).unwrap(),
            "abc running"
        );
        assert_eq!(
            render("{{.State.Running}}\\t{{.N}}", &v).unwrap(),
            "true\t<no value>"
        );
        assert_eq!(
            render("{{json .State}}", &v).unwrap(),
            r#"{"Running":true,"Status":"running"}"#
        );
        assert!(render("{{.Nope}}", &v).is_err());
        assert!(render("{{if .ID}}", &v).is_err());
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let lines = vec![
            "A\tIMAGE\tX".to_owned(),
            "abcdefghijkl\tbusybox\ty".to_owned(),
        ];
        assert_eq!(
            align(&lines),
            "A              IMAGE     X\nabcdefghijkl   busybox   y\n"
        );
        let listing = Listing {
            rows: vec![json!({"Name": "v1", "Driver": "local"})],
            default_format: "table {{.Driver}}\t{{.Name}}",
            headers: &[("Name", "VOLUME NAME")],
        };
        assert_eq!(
            listing.print(None).unwrap(),
            "DRIVER    VOLUME NAME\nlocal     v1\n"
        );
        assert_eq!(listing.print(Some("{{.Name}}")).unwrap(), "v1\n");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(bytes_size(1024 * 1024 * 3 / 2), "1.5MiB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(75), "About a minute");
        assert_eq!(human_duration(3 * 86_400), "3 days");
        assert_eq!(
            rfc3339_nano(1_000_000_001),
            "1970-01-01T00:00:01.000000001Z"
        );
        assert_eq!(go_time(951_782_400), "2000-02-29 00:00:00 +0000 UTC");
    }
}
