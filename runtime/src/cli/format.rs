//! Human-readable sizes (decimal, and binary for memory) and ages, as docker prints them.

use strata::clock::parse_rfc3339;

/// Decimal units, three significant digits: 4.26MB, 913kB, 12B.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        let s = format!("{value:.3}");
        let digits = if value >= 100.0 {
            0
        } else if value >= 10.0 {
            1
        } else {
            2
        };
        let s = if digits == 0 { format!("{value:.0}") } else { s[..s.find('.').unwrap() + 1 + digits].to_string() };
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
        format!("{s}{}", UNITS[unit])
    }
}

/// "3 days ago" from an RFC 3339 timestamp; "N/A" if absent or unparsable.
pub fn since(created: Option<&str>) -> String {
    let Some(secs) = created.and_then(parse_rfc3339) else { return "N/A".into() };
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let ago = (now - secs).max(0);
    let (n, unit) = match ago {
        s if s < 60 => return "Less than a minute ago".into(),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86400 => (s / 3600, "hour"),
        s if s < 86400 * 14 => (s / 86400, "day"),
        s if s < 86400 * 60 => (s / (86400 * 7), "week"),
        s if s < 86400 * 730 => (s / (86400 * 30), "month"),
        s => (s / (86400 * 365), "year"),
    };
    if n == 1 {
        format!("{} {unit} ago", if unit == "hour" { "An" } else { "1" })
    } else {
        format!("{n} {unit}s ago")
    }
}

/// docker's `HumanDuration` ("3 seconds", "About a minute", "2 hours") for `ps`.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (minutes, hours) = (secs / 60, secs / 3600);
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Seconds from an RFC 3339 timestamp until now.
pub fn seconds_since(timestamp: &str) -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    parse_rfc3339(timestamp).map(|t| now - t).unwrap_or(0)
}

/// docker's `BytesSize`: binary units, four significant digits ("1.527MiB", "23.42GiB").
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = 4usize.saturating_sub(format!("{}", value.trunc() as u64).len());
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    format!("{text}{}", UNITS[unit])
}

/// docker's block of what a prune removed: `Deleted TITLE:`, a line each, a blank line;
/// nothing when nothing was.
pub fn write_deleted(out: &mut impl std::io::Write, title: &str, lines: &[String]) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "Deleted {title}:")?;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_sizes_as_docker_stats_prints_them() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(512), "512B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(1_601_234), "1.527MiB");
        assert_eq!(binary_size(25_146_310_656), "23.42GiB");
        assert_eq!(binary_size(64 << 20), "64MiB");
    }

    #[test]
    fn sizes_like_docker() {
        assert_eq!(size(12), "12B");
        assert_eq!(size(4_261_000), "4.26MB");
        assert_eq!(size(913_000), "913kB");
        assert_eq!(size(1_000_000), "1MB");
        assert_eq!(size(55_700_000), "55.7MB");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-02-29T12:00:00.123456789Z"), Some(1709208000));
        assert_eq!(parse_rfc3339("2024-02-29T13:00:00+01:00"), Some(1709208000));
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(since(None), "N/A");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(12), "12 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
