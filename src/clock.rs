//! Timestamps. The store keeps UNIX seconds as `f64` (microsecond precision
//! survives); the wire shows Scrapyd's local-time strings.

use chrono::{DateTime, Local, TimeZone};

/// Seconds since the UNIX epoch, now.
pub fn now() -> f64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs_f64()
}

fn local(timestamp: f64) -> DateTime<Local> {
    let micros = (timestamp * 1e6).round() as i64;
    Local
        .timestamp_micros(micros)
        .single()
        .unwrap_or_else(|| Local.timestamp_micros(0).unwrap())
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in local time, always six fraction digits:
/// what Python's `str(datetime)` prints, except that Python drops the
/// fraction when it is zero, which breaks clients parsing with `%f`.
pub fn format_with_micros(timestamp: f64) -> String {
    local(timestamp).format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// `YYYY-MM-DD HH:MM:SS` in local time, as the jobs page shows it.
pub fn format_seconds(timestamp: f64) -> String {
    local(timestamp).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `YYYY-MM-DD HH:MM` in local time, as directory listings show it.
pub fn format_minutes(timestamp: f64) -> String {
    local(timestamp).format("%Y-%m-%d %H:%M").to_string()
}

/// A duration as Python prints a `timedelta` without microseconds:
/// `0:00:05`, `12:03:04`, `2 days, 1:00:00`.
pub fn format_runtime(seconds: f64) -> String {
    let total = seconds.max(0.0).floor() as u64;
    let (days, rest) = (total / 86_400, total % 86_400);
    let clock = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        n => format!("{n} days, {clock}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_always_have_six_digits() {
        let text = format_with_micros(1_700_000_000.0);
        assert_eq!(text.len(), "2023-11-14 22:13:20.000000".len());
        assert!(text.ends_with(".000000"));
        assert!(format_with_micros(1_700_000_000.25).ends_with(".250000"));
    }

    #[test]
    fn runtime_like_python_timedelta() {
        assert_eq!(format_runtime(5.9), "0:00:05");
        assert_eq!(format_runtime(3723.0), "1:02:03");
        assert_eq!(format_runtime(86_400.0 + 60.0), "1 day, 0:01:00");
        assert_eq!(format_runtime(2.0 * 86_400.0), "2 days, 0:00:00");
    }
}
