//! Durations and rates as people type them on the command line, read exactly and checked.
//!
//! One parser for every duration flag of the CLI (`--duration`, `--warmup`, `--epoch`, window
//! sizes, timeouts, spec keys), so that every flag accepts the same spellings and rejects the
//! same mistakes:
//!
//! * a duration is a non-negative decimal number and a unit, `ns`, `us`, `ms`, `s`, `m` or `h`;
//!   a plain number is milliseconds (as `tidemark window` has always read it);
//! * the number is read exactly (no floating point): `1.5s` is 1 500 000 000 ns, and a fraction
//!   finer than a nanosecond is rejected rather than rounded;
//! * anything beyond the range is rejected, never wrapped or saturated: a `u64` of nanoseconds
//!   (about 584 years) for [`parse_nanos`], the time domain's 2^62 ms for [`parse_millis`].
//!
//! A rate is a positive number of events per second with an optional `k`, `M` or `G` suffix,
//! at most [`MAX_RATE`]; fractions of an event per second are rejected.

/// Why a duration was rejected: the text, as given (truncated), and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a duration such as 250ms, 10s, 1.5m or 2h (a plain number is milliseconds), got {text:?}: {reason}")]
pub struct DurationError {
    /// The rejected text (at most 40 characters of it).
    pub text: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// Why a rate was rejected: the text, as given (truncated), and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected events per second such as 500k, 2M or 1.5G, got {text:?}: {reason}")]
pub struct RateError {
    /// The rejected text (at most 40 characters of it).
    pub text: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// The highest rate [`parse_rate`] accepts: 10^12 events per second, a thousand times the
/// machine-wide ceiling measured on 16 cores (about 10^9 events/s, `experiments/results`).
/// Anything above is a typo, not an experiment.
pub const MAX_RATE: u64 = 1_000_000_000_000;

/// Echoed input is cut to this many characters: an error line stays one short line.
const ECHO_CHARS: usize = 40;

fn echo(text: &str) -> String {
    let mut shown: String = text.chars().take(ECHO_CHARS).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    shown
}

/// A non-negative decimal number times `scale`, exactly; an error when the text is not a
/// number, its product with `scale` is not whole, or it does not fit a `u128`.
fn scaled(number: &str, scale: u128) -> Result<u128, &'static str> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("no number");
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err("not a non-negative decimal number");
    }
    // At most 20 digits fit a u64; more is out of range whatever the unit (leading zeros aside).
    let whole = whole.trim_start_matches('0');
    if whole.len() > 20 {
        return Err("too large");
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| "too large")?
    };
    let mut total = whole.checked_mul(scale).ok_or("too large")?;
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        if fraction.len() > 30 {
            return Err("too many decimals");
        }
        let digits: u128 = fraction.parse().map_err(|_| "too many decimals")?;
        let denominator = 10u128.pow(fraction.len() as u32);
        let product = digits.checked_mul(scale).ok_or("too many decimals")?;
        if product % denominator != 0 {
            return Err("finer than the unit allows");
        }
        total = total
            .checked_add(product / denominator)
            .ok_or("too large")?;
    }
    Ok(total)
}

/// A duration's number and its unit's length in nanoseconds.
fn split_unit(text: &str) -> Result<(&str, u128), &'static str> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "" | "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ if number.is_empty() => return Err("no number"),
        _ => return Err("unknown unit (ns, us, ms, s, m, h)"),
    };
    Ok((number, scale))
}

/// Writes `ns` nanoseconds in the largest unit that `parse_nanos` reads and that divides it
/// exactly (`h`, `m`, `s`, `ms`, `us`, `ns`): for operator names in timely's logs.
///
/// ```
/// use tidemark::units::{format_nanos, parse_nanos};
/// assert_eq!(format_nanos(10_000_000_000), "10s");
/// assert_eq!(format_nanos(1_500_000), "1500us");
/// assert_eq!(format_nanos(0), "0ns");
/// assert_eq!(parse_nanos(&format_nanos(120_000_000_000)).unwrap(), 120_000_000_000);
/// ```
pub fn format_nanos(ns: u64) -> String {
    let units = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    match units
        .iter()
        .find(|(len, _)| ns != 0 && ns.is_multiple_of(*len))
    {
        Some((len, unit)) => format!("{}{unit}", ns / len),
        None => format!("{ns}ns"),
    }
}

/// Reads a duration in nanoseconds.
///
/// Errors: not a number and unit, a negative or fractional-nanosecond value, or more than
/// `u64::MAX` nanoseconds.
///
/// ```
/// use tidemark::units::parse_nanos;
/// assert_eq!(parse_nanos("250").unwrap(), 250_000_000); // plain numbers are milliseconds
/// assert_eq!(parse_nanos("1.5s").unwrap(), 1_500_000_000);
/// assert_eq!(parse_nanos("100us").unwrap(), 100_000);
/// assert_eq!(parse_nanos("2h").unwrap(), 7_200_000_000_000);
/// assert!(parse_nanos("99999999999999999h").is_err()); // does not fit: rejected, not wrapped
/// assert!(parse_nanos("-1s").is_err());
/// assert!(parse_nanos("0.5ns").is_err());
/// assert!(parse_nanos("ten").is_err());
/// ```
pub fn parse_nanos(text: &str) -> Result<u64, DurationError> {
    let ns = spelled_nanos(text)?;
    u64::try_from(ns).map_err(|_| duration_error(text, "too large"))
}

/// The nanoseconds a duration spells, of any size ([`parse_nanos`] and [`parse_millis`] bound
/// them).
fn spelled_nanos(text: &str) -> Result<u128, DurationError> {
    let fail = |reason| duration_error(text, reason);
    let (number, scale) = split_unit(text).map_err(fail)?;
    scaled(number, scale).map_err(fail)
}

fn duration_error(text: &str, reason: &'static str) -> DurationError {
    DurationError {
        text: echo(text),
        reason,
    }
}

/// Reads a duration in whole milliseconds, the unit of `tidemark window`'s event times: window
/// sizes, slides, gaps, watermark delay, allowed lateness and timeouts.
///
/// The same spellings as [`parse_nanos`]; the range is the time domain's,
/// [`crate::time::MAX_DURATION`] (2^62 ms), not `u64` nanoseconds.
///
/// Errors: as [`parse_nanos`], a duration that is not a whole number of milliseconds, and one
/// longer than [`crate::time::MAX_DURATION`].
///
/// ```
/// use tidemark::units::parse_millis;
/// assert_eq!(parse_millis("250").unwrap(), 250);
/// assert_eq!(parse_millis("10s").unwrap(), 10_000);
/// assert_eq!(parse_millis("1.5m").unwrap(), 90_000);
/// assert_eq!(parse_millis("4611686018427387904").unwrap(), 1 << 62);
/// assert!(parse_millis("4611686018427387905").is_err());
/// assert!(parse_millis("99999999999999999h").is_err());
/// assert!(parse_millis("1500us").is_err());
/// assert!(parse_millis("ten").is_err());
/// ```
pub fn parse_millis(text: &str) -> Result<u64, DurationError> {
    let fail = |reason| duration_error(text, reason);
    let ns = spelled_nanos(text)?;
    if ns % 1_000_000 != 0 {
        return Err(fail("not a whole number of milliseconds"));
    }
    u64::try_from(ns / 1_000_000)
        .ok()
        .filter(|ms| *ms <= crate::time::MAX_DURATION)
        .ok_or(fail("longer than the largest duration, 2^62 ms"))
}

/// Reads a rate in events per second: a positive decimal number with an optional `k`, `M` or
/// `G` suffix (10^3, 10^6, 10^9), a whole number of events per second, at most [`MAX_RATE`].
///
/// ```
/// use tidemark::units::parse_rate;
/// assert_eq!(parse_rate("500k").unwrap(), 500_000);
/// assert_eq!(parse_rate("1.5M").unwrap(), 1_500_000);
/// assert!(parse_rate("0").is_err());
/// assert!(parse_rate("1e400").is_err());
/// assert!(parse_rate("99999999999999999999").is_err());
/// ```
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let fail = |reason| RateError {
        text: echo(text),
        reason,
    };
    let (number, scale) = match text.char_indices().last() {
        Some((i, 'k')) => (&text[..i], 1_000),
        Some((i, 'M')) => (&text[..i], 1_000_000),
        Some((i, 'G')) => (&text[..i], 1_000_000_000),
        _ => (text, 1),
    };
    if number.starts_with('-') {
        return Err(fail("the rate must be positive"));
    }
    let events = scaled(number, scale).map_err(|reason| match reason {
        "finer than the unit allows" => fail("not a whole number of events per second"),
        other => fail(other),
    })?;
    if events == 0 {
        return Err(fail("the rate must be positive"));
    }
    let events = u64::try_from(events).map_err(|_| fail("too large"))?;
    if events > MAX_RATE {
        return Err(fail("more than 1000G events per second"));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_exact_and_bounded() {
        assert_eq!(parse_nanos("0").unwrap(), 0);
        assert_eq!(parse_nanos("1ns").unwrap(), 1);
        assert_eq!(parse_nanos("0.001ms").unwrap(), 1_000);
        assert_eq!(parse_nanos(".5s").unwrap(), 500_000_000);
        assert_eq!(parse_nanos("10.s").unwrap(), 10_000_000_000);
        assert_eq!(parse_nanos("18446744073709551615ns").unwrap(), u64::MAX);
        for bad in [
            "",
            ".",
            "s",
            "1x",
            "1 s",
            "1..2s",
            "-5ms",
            "+5ms",
            "18446744073709551616ns",
            "5124096h",
            "1e3s",
            "NaN",
            "inf",
            "0.0000000001s",
        ] {
            assert!(parse_nanos(bad).is_err(), "{bad:?} accepted");
        }
        let long = "9".repeat(10_000);
        let message = parse_nanos(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn rates_are_positive_whole_and_bounded() {
        assert_eq!(parse_rate("1").unwrap(), 1);
        assert_eq!(parse_rate("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_rate("1000G").unwrap(), MAX_RATE);
        for bad in [
            "",
            "k",
            "0",
            "0.0001k",
            "-5",
            "1001G",
            "1e6",
            "1e400",
            "inf",
            "NaN",
            "0.5",
            "99999999999999999999",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }
}
