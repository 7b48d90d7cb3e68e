//! Values people write by hand: durations (`500ms`, `2m`), sizes (`64KB`)
//! and signals (`TERM`, `15`). Parsed once, at the edge (a config file, a
//! command-line flag, a control request), into their types, with an error
//! that says what was expected. Nothing here panics on any input. And
//! durations written back the way people read them.
use std::time::Duration;

use nix::sys::signal::Signal;

/// The longest duration accepted anywhere: ten years is "never" for a
/// supervisor, and everything below it can be added to a clock reading
/// without overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A duration as a person reads it, to two units: `350ms`, `42s`, `3m12s`,
/// `3h12m`, `2d4h`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 if d.subsec_millis() > 0 => format!("{}ms", d.subsec_millis()),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `SIGKILL`, `SIGRTMIN+3`, or the number when it has no name.
pub fn signal_name(signal: i32) -> String {
    if let Ok(sig) = Signal::try_from(signal) {
        return sig.as_str().to_owned();
    }
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (rtmin..=rtmax).contains(&signal) {
        return format!("SIGRTMIN+{}", signal - rtmin);
    }
    format!("signal {signal}")
}

/// A size as a person reads it: `512KB`, `63.2MB`.
pub fn short_size(bytes: u64) -> String {
    const MB: f64 = (1 << 20) as f64;
    let value = bytes as f64;
    if value >= MB {
        format!("{:.1}MB", value / MB)
    } else {
        format!("{:.0}KB", value / 1024.0)
    }
}

/// Parses `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "'{other}' in '{text}' is not a time unit (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("'{text}' is not a duration (e.g. 500ms, 10s, 2m)"));
    }
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("'{text}' is too long (at most 10 years)")),
    }
}

/// A size: a number with B, KB, MB or GB (powers of 1024; KiB, MiB and
/// GiB are the same), e.g. `"64KB"`, `"150MB"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|e: std::num::ParseIntError| {
        if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            format!("'{text}' is too large")
        } else {
            format!("'{text}' is not a size (e.g. 64KB, 150MB)")
        }
    })?;
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => {
            return Err(format!(
                "'{other}' in '{text}' is not a size unit (use B, KB, MB or GB)"
            ))
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let trimmed = text.trim();
    if let Ok(n) = trimmed.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("{n} is not a signal number"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal '{text}' (e.g. TERM, INT, HUP, KILL, USR1)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn huge_values_are_errors_not_panics() {
        for text in [
            "99999999999999999999s",
            "1e300h",
            "18446744073709551616",
            "3650d",
            "99999999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
        assert!(parse_duration("3650h").is_ok());
        assert_eq!(
            parse_size("99999999999999999999999GB"),
            Err("'99999999999999999999999GB' is too large".into())
        );
        assert!(parse_size("17179869184GB").is_err());
        assert!(parse_signal("99999999999999").is_err());
    }
}
