//! Wall-clock timestamps as containers and images record them: RFC 3339 in UTC (the OCI
//! state's and image config's `created`, docker's json-file log lines), and reading them back.

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

#[cfg(test)]
mod tests {
    use super::*;

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
