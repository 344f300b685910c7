//! Durations, as the config and the command line write them: one parser for every duration
//! lvsd reads (persistence, drain timeouts, check intervals and timeouts, `--resync-interval`),
//! strict enough that a typo is an error rather than a different time.

use std::time::Duration;

/// Why text is not a duration, said so that it can follow "`1s1s` is not a duration".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing at all.
    #[error("it is empty")]
    Empty,
    /// A unit without a number before it (`s`, `m5`).
    #[error("`{0}` has no number before it")]
    NoNumber(String),
    /// A number without a unit after the first part (`1m30`).
    #[error("`{0}` at the end has no unit; write it as `{0}s` (or the unit you mean)")]
    NoUnit(String),
    /// A unit lvsd does not know (`5x`, `5M`, `2w`).
    #[error("`{0}` is not a unit; use ms, s, m, h or d (lowercase)")]
    UnknownUnit(String),
    /// The same unit twice (`1s1s`).
    #[error("`{0}` appears twice; give each unit once, as in 1m30s")]
    Repeated(&'static str),
    /// A smaller unit before a larger one (`30s1m`).
    #[error("`{0}` comes after `{1}`; write the larger units first, as in 1h30m or 1m30s")]
    Order(&'static str, &'static str),
    /// A plain number with leading zeros (`010`), which YAML 1.1 readers take as octal.
    #[error("`{0}` has a leading zero, which some YAML readers take as octal; write {1}")]
    LeadingZero(String, String),
    /// A fraction (`1.5m`).
    #[error("fractions are not taken; write whole units, as in 1m30s or 1500ms")]
    Fraction,
    /// A sign (`-5s`, `+5s`).
    #[error("a duration has no sign")]
    Sign,
    /// A space or other character inside (`1m 30s`).
    #[error("{0} is not part of a duration")]
    Stray(String),
    /// Beyond what can be counted.
    #[error("it is longer than lvsd can count")]
    TooLong,
}

/// Units, largest first, with their length in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration: plain seconds (`300`), or whole numbers each followed by a unit, the
/// larger units first and each at most once: `500ms`, `30s`, `5m`, `1h30m`, `1d`, `1s500ms`.
/// Nothing else: no fractions, signs, spaces, uppercase units, repeated units (`1s1s`) or
/// leading zeros on a plain number (`010`, which YAML 1.1 reads as octal).
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        if s.len() > 1 && s.starts_with('0') {
            let fixed = s.trim_start_matches('0');
            let fixed = if fixed.is_empty() { "0" } else { fixed };
            return Err(DurationError::LeadingZero(s.to_owned(), fixed.to_owned()));
        }
        let secs: u64 = s.parse().map_err(|_| DurationError::TooLong)?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    // The index in UNITS that the next unit must come after.
    let mut next = 0;
    let mut last: Option<&'static str> = None;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (num, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = after.split_at(letters);
        if unit.is_empty() {
            return Err(match after.chars().next() {
                None => DurationError::NoUnit(num.to_owned()),
                Some('.' | ',') => DurationError::Fraction,
                Some('-' | '+') => DurationError::Sign,
                Some(' ') => DurationError::Stray("a space".to_owned()),
                Some(c) => DurationError::Stray(crate::error::describe(c)),
            });
        }
        if num.is_empty() {
            return Err(DurationError::NoNumber(unit.to_owned()));
        }
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit(unit.to_owned()));
        };
        let name = UNITS[idx].0;
        if idx < next {
            return Err(match last {
                Some(prev) if prev == name => DurationError::Repeated(name),
                Some(prev) => DurationError::Order(name, prev),
                None => DurationError::Repeated(name),
            });
        }
        let n: u64 = num.parse().map_err(|_| DurationError::TooLong)?;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|ms| total.checked_add(ms))
            .ok_or(DurationError::TooLong)?;
        next = idx + 1;
        last = Some(name);
        rest = tail;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_operators_write() {
        for (s, ms) in [
            ("0", 0),
            ("300", 300_000),
            ("300s", 300_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h05m", 3_900_000),
            ("500ms", 500),
            ("1s500ms", 1_500),
            ("2d", 172_800_000),
        ] {
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn sloppy_forms_are_refused_with_the_reason() {
        use DurationError::*;
        for (s, e) in [
            ("", Empty),
            ("s", NoNumber("s".into())),
            ("m5", NoNumber("m".into())),
            ("1m30", NoUnit("30".into())),
            ("5x", UnknownUnit("x".into())),
            ("5M", UnknownUnit("M".into())),
            ("1s1s", Repeated("s")),
            ("1m1m", Repeated("m")),
            ("30s1m", Order("m", "s")),
            ("500ms1s", Order("s", "ms")),
            ("010", LeadingZero("010".into(), "10".into())),
            ("00", LeadingZero("00".into(), "0".into())),
            ("1.5m", Fraction),
            ("-1", Sign),
            ("-1s", Sign),
            ("+5s", Sign),
            ("1m 30s", Stray("a space".into())),
            (
                "1m\u{a0}30s",
                Stray("U+00A0 (a space other than the ordinary one)".into()),
            ),
            ("99999999999999999999", TooLong),
            ("999999999999999d", TooLong),
        ] {
            assert_eq!(parse_duration(s), Err(e), "{s}");
        }
    }
}
