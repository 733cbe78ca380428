//! Wall-clock timestamps as containers and images record them: RFC 3339 in UTC (the OCI
//! state's and image config's `created`, docker's json-file log lines), and reading them back;
//! durations as Go writes and reads them (docker's flags and messages: `30s`, `1m30s`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, with nanoseconds (`2026-11-29T18:00:00.123456789Z`), as runc and docker write it.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Now, to the second (`2026-11-29T18:00:00Z`), for image configs.
pub fn now_rfc3339_seconds() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Seconds since the epoch of an RFC 3339 timestamp (any offset, any fraction).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

/// A Go duration in nanoseconds: numbers with units h, m, s, ms, us (µs), ns, one after
/// another, or a bare 0; a leading sign. None if it is not one.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let mut rest = s.trim();
    let negative = rest.starts_with('-');
    rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    let nanos = (total * 1e9) as i64;
    Some(if negative { -nanos } else { nanos })
}

/// A duration as Go prints one (what docker's messages show): 30s, 1.5s, 500ms, 1m30s, 1h0m0s.
pub fn format_go_duration(d: std::time::Duration) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.9}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    let secs = d.as_secs_f64();
    if d.is_zero() {
        return "0s".into();
    }
    if secs < 1e-6 {
        return format!("{}ns", d.as_nanos());
    }
    if secs < 1e-3 {
        return format!("{}µs", trim(secs * 1e6));
    }
    if secs < 1.0 {
        return format!("{}ms", trim(secs * 1e3));
    }
    let (h, m) = (d.as_secs() / 3600, d.as_secs() / 60 % 60);
    let s = trim(secs - (h * 3600 + m * 60) as f64);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations_both_ways() {
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("200ms"), Some(200_000_000));
        assert_eq!(parse_go_duration("-1s"), Some(-1_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(format_go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn round_trips() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && now.len() == 30, "{now}");
        let secs = parse_rfc3339(&now).unwrap();
        assert_eq!(parse_rfc3339(&now_rfc3339_seconds()).unwrap() / 10, secs / 10);
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-29T18:00:00.5Z"), Some(1_795_975_200));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
