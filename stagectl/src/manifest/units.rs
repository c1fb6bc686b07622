//! Durations and sizes written with units (`"1m30s"`, `"512MB"`), and the ranges the manifest
//! allows for them. Parsing never panics: a number too large for the type is an error, not an
//! overflow, and every value a manifest accepts stays far enough from the type's limits that
//! `Instant + Duration` and sums of sizes downstream cannot overflow.

use std::time::Duration;

/// Shortest duration any field accepts.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Longest timeout, interval, latency budget or lock budget: a staging run that waits longer
/// than a day for one thing is stuck, not slow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest `schedule.idle_ttl`: a year.
pub const MAX_IDLE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Largest `stack.snapshot_budget`: 100 TB, more than any single node holds.
pub const MAX_SNAPSHOT_BUDGET: u64 = 100 * 1_000_000_000_000;

/// Why a duration could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationError {
    /// Not a number followed by a unit (`ms`, `s`, `m`, `h`).
    Syntax,
    /// Starts with a minus sign.
    Negative,
    /// Larger than a `Duration` can hold.
    TooLong,
}

/// Parses a duration such as `500ms`, `20s`, `1m30s`, `2h`; parts are added up.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if let Some(magnitude) = rest.strip_prefix('-') {
        // A negative duration only if a duration follows the sign; otherwise it is garbage.
        return match parse_duration(magnitude) {
            Err(DurationError::Syntax) => Err(DurationError::Syntax),
            _ => Err(DurationError::Negative),
        };
    }
    if rest.is_empty() {
        return Err(DurationError::Syntax);
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Syntax);
        }
        let number: f64 = rest[..digits].parse().map_err(|_| DurationError::Syntax)?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(DurationError::Syntax),
        };
        // Digits and dots only, so the number is finite and not negative; it may be huge.
        let part = Duration::try_from_secs_f64(secs).map_err(|_| DurationError::TooLong)?;
        total = total.checked_add(part).ok_or(DurationError::TooLong)?;
    }
    Ok(total)
}

/// `2h`, `90s`, `1500ms`: the shortest exact way to write `d` in the units the manifest accepts.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 && ms > 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses `512MB`, `5GB`, `1.5GiB`, or a plain number of bytes; `None` for anything else,
/// including a size beyond `u64`.
pub fn parse_size(text: &str) -> Option<u64> {
    let bytes = size_in_bytes(text)?;
    // 2^64 as f64; anything at or above it does not fit.
    (bytes < 18_446_744_073_709_551_616.0).then_some(bytes as u64)
}

/// The number of bytes a size such as `1.5GiB` stands for, possibly beyond `u64` (or infinite);
/// `None` when it is not a size.
pub(crate) fn size_in_bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let number: f64 = t[..split].parse().ok()?;
    let mult: u64 = match t[split..].trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1000,
        "KIB" => 1024,
        "MB" => 1_000_000,
        "MIB" => 1024 * 1024,
        "GB" => 1_000_000_000,
        "GIB" => 1024 * 1024 * 1024,
        "TB" => 1_000_000_000_000,
        _ => return None,
    };
    // Digits and dots only: not negative, not NaN.
    Some(number * mult as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for garbage in ["10", "s", "5 parsecs", "", "nan", "inf", "NaNs", "infh", "1.2.3s", ".s", "-", "-x", "1e3s"] {
            assert_eq!(parse_duration(garbage), Err(DurationError::Syntax), "{garbage:?}");
        }
    }

    #[test]
    fn durations_too_large_for_the_type_are_errors_not_panics() {
        // Both panicked before: `Duration::from_secs_f64` and `Duration + Duration` overflow.
        assert_eq!(parse_duration("99999999999999999999s"), Err(DurationError::TooLong));
        assert_eq!(parse_duration(&format!("{}h", "9".repeat(400))), Err(DurationError::TooLong));
        assert_eq!(parse_duration("4000000000000000h4000000000000000h"), Err(DurationError::TooLong));
        // Fits in a Duration: the range check is the caller's (2777777777777777h ≈ 10^19 s).
        assert_eq!(parse_duration("2777777777777777h").map(|d| d > MAX_IDLE_TTL), Ok(true));
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        assert_eq!(parse_duration(" -1m30s"), Err(DurationError::Negative));
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        assert_eq!(format_duration(MAX_TIMEOUT), "24h");
        assert_eq!(format_duration(MAX_IDLE_TTL), "8760h");
        assert_eq!(format_duration(MIN_DURATION), "1ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn sizes_parse_and_never_overflow() {
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size("1.5GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("100TB"), Some(MAX_SNAPSHOT_BUDGET));
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(parse_size("-5GB"), None);
        assert_eq!(parse_size("99999999999999999999TB"), None);
        assert_eq!(parse_size(&"9".repeat(400)), None);
    }
}
