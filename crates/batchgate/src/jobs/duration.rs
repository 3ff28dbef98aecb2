//! Prometheus-style durations (`90s`, `15m`, `1h30m`, `1d`), as operators already write them in
//! Prometheus and Alertmanager configs, so the config file reads like the rest of their stack.

use jiff::SignedDuration;

/// Units in the order Prometheus requires them, with their length in milliseconds.
const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("not a duration (expected e.g. 90s, 15m, 8h, 1d, 1h30m)")]
    Syntax,
    #[error("units out of order or repeated (write the largest unit first, e.g. 1h30m)")]
    Order,
    #[error("duration too long")]
    Overflow,
}

/// Parses a Prometheus duration: one or more `<integer><unit>` with units `y w d h m s ms`, largest
/// first, each at most once; `0` alone is zero. A year is 365 days and a day 24 hours, as in
/// Prometheus (they are fixed lengths, not calendar units).
pub fn parse_duration(input: &str) -> Result<SignedDuration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(SignedDuration::ZERO);
    }
    let (mut rest, mut total, mut next_unit) = (s, 0i64, 0usize);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Syntax);
        }
        let number: i64 = rest[..digits].parse().map_err(|_| DurationError::Overflow)?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let index = UNITS
            .iter()
            .position(|(u, _)| *u == &rest[..unit_len])
            .ok_or(DurationError::Syntax)?;
        if index < next_unit {
            return Err(DurationError::Order);
        }
        next_unit = index + 1;
        rest = &rest[unit_len..];
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or(DurationError::Overflow)?;
    }
    Ok(SignedDuration::from_millis(total))
}

/// Formats a duration the way [`parse_duration`] reads it and operators write it: days only for
/// whole days, else hours first (`26h`, as in the runbook, not `1d2h`); `0s`, `1m30s`, `8h`, `2d`.
/// Negative durations get a `-`.
pub fn format_duration(duration: SignedDuration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::from(if total_ms < 0 { "-" } else { "" });
    let mut rest = total_ms.unsigned_abs();
    let first = if rest.is_multiple_of(UNITS[2].1 as u128) { 2 } else { 3 };
    for (unit, len) in &UNITS[first..] {
        let len = *len as u128;
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("0", 0),
            ("90s", 90),
            ("15m", 900),
            ("8h", 28_800),
            ("1d", 86_400),
            ("1h30m", 5_400),
            ("1w", 604_800),
            ("1y", 31_536_000),
            ("1d2h3m4s", 93_784),
        ];
        for (input, secs) in cases {
            assert_eq!(parse_duration(input), Ok(SignedDuration::from_secs(secs)), "{input}");
        }
        assert_eq!(parse_duration("1s500ms"), Ok(SignedDuration::from_millis(1500)));
    }

    #[test]
    fn refuses_bad_durations() {
        for (input, err) in [
            ("", DurationError::Empty),
            ("5", DurationError::Syntax),
            ("h", DurationError::Syntax),
            ("5x", DurationError::Syntax),
            ("-5m", DurationError::Syntax),
            ("1.5h", DurationError::Syntax),
            ("30m1h", DurationError::Order),
            ("1h1h", DurationError::Order),
            ("99999999999999999999s", DurationError::Overflow),
            ("9999999999999y", DurationError::Overflow),
        ] {
            assert_eq!(parse_duration(input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for (secs, text) in [
            (0, "0s"),
            (90, "1m30s"),
            (28_800, "8h"),
            (93_600, "26h"),
            (172_800, "2d"),
            (-60, "-1m"),
        ] {
            assert_eq!(format_duration(SignedDuration::from_secs(secs)), text);
        }
        assert_eq!(format_duration(SignedDuration::from_millis(1500)), "1s500ms");
        for text in ["1m30s", "8h", "26h", "3d", "1s500ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
