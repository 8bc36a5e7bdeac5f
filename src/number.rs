//! Exact decimal numbers for aggregation.
//!
//! Invariant: a [`Fixed`] is an integer count of nano-units (`10^-9`) held in an `i128`, so every
//! value with at most nine fractional digits is represented exactly, integers stay integers, and
//! sums do not depend on the order in which they are added. That order independence is what lets
//! windowed sums be identical under every worker count and partitioner; `f64` would not be.
//! Overflow is reported, never wrapped: the largest magnitude is about `1.7e29`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Number of nano-units in one unit.
const SCALE: i128 = 1_000_000_000;
/// Number of fractional digits a [`Fixed`] holds.
const FRACTION_DIGITS: usize = 9;

/// An exact decimal with nine fractional digits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Fixed(i128);

/// Why a text could not be read as a [`Fixed`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseFixedError {
    /// The text is not an optionally signed decimal such as `-12` or `3.25`.
    #[error("expected a number such as 12 or -3.25, got {0:?}")]
    Syntax(String),
    /// More than nine digits after the decimal point.
    #[error("{0:?} has more than 9 digits after the decimal point")]
    TooPrecise(String),
    /// The magnitude does not fit.
    #[error("{0:?} is out of range")]
    OutOfRange(String),
}

impl Fixed {
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);

    /// The integer `n`.
    pub fn from_int(n: i64) -> Fixed {
        Fixed(n as i128 * SCALE)
    }

    /// The value `nanos * 10^-9`.
    pub fn from_nanos(nanos: i128) -> Fixed {
        Fixed(nanos)
    }

    /// The value in nano-units.
    pub fn nanos(self) -> i128 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Fixed) -> Option<Fixed> {
        self.0.checked_add(other.0).map(Fixed)
    }

    /// `self / n` rounded to the nearest nano-unit, ties away from zero; `None` if `n == 0`.
    pub fn div_round(self, n: u64) -> Option<Fixed> {
        if n == 0 {
            return None;
        }
        let n = n as i128;
        let (q, r) = (self.0 / n, self.0 % n);
        // |r| * 2 >= n means the fraction is at least one half: round away from zero.
        let bump = if r.unsigned_abs() * 2 >= n.unsigned_abs() {
            self.0.signum()
        } else {
            0
        };
        Some(Fixed(q + bump))
    }

    /// An approximation as `f64`, for display and plotting only.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }
}

impl FromStr for Fixed {
    type Err = ParseFixedError;

    fn from_str(text: &str) -> Result<Fixed, ParseFixedError> {
        let syntax = || ParseFixedError::Syntax(text.to_string());
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (int_part, frac_part) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty()) || !digits(int_part) || !digits(frac_part)
        {
            return Err(syntax());
        }
        if body.ends_with('.') && frac_part.is_empty() && body.contains('.') && int_part.is_empty()
        {
            return Err(syntax());
        }
        if frac_part.len() > FRACTION_DIGITS {
            return Err(ParseFixedError::TooPrecise(text.to_string()));
        }
        let out_of_range = || ParseFixedError::OutOfRange(text.to_string());
        let mut nanos: i128 = 0;
        for b in int_part.bytes() {
            nanos = nanos
                .checked_mul(10)
                .and_then(|n| n.checked_add((b - b'0') as i128))
                .ok_or_else(out_of_range)?;
        }
        nanos = nanos.checked_mul(SCALE).ok_or_else(out_of_range)?;
        let mut frac: i128 = 0;
        for b in frac_part.bytes() {
            frac = frac * 10 + (b - b'0') as i128;
        }
        frac *= 10i128.pow((FRACTION_DIGITS - frac_part.len()) as u32);
        nanos = nanos.checked_add(frac).ok_or_else(out_of_range)?;
        Ok(Fixed(if negative { -nanos } else { nanos }))
    }
}

impl fmt::Display for Fixed {
    /// Canonical form: the integer part, then the fraction without trailing zeros if non-zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.unsigned_abs();
        let (int, mut frac) = (magnitude / SCALE as u128, magnitude % SCALE as u128);
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        if frac != 0 {
            let mut width = FRACTION_DIGITS;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            write!(f, ".{frac:0width$}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fx(s: &str) -> Fixed {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, printed) in [
            ("12", "12"),
            ("-3", "-3"),
            ("2.50", "2.5"),
            ("-0.125", "-0.125"),
            ("+7", "7"),
            ("0.000000001", "0.000000001"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-0", "0"),
        ] {
            assert_eq!(fx(input).to_string(), printed, "input {input}");
        }
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "-", ".", "1e3", "abc", "1.2.3", " 1", "0x10", "--1"] {
            assert!(
                matches!(bad.parse::<Fixed>(), Err(ParseFixedError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "0.0000000001".parse::<Fixed>(),
            Err(ParseFixedError::TooPrecise(_))
        ));
        assert!(matches!(
            "1".repeat(40).parse::<Fixed>(),
            Err(ParseFixedError::OutOfRange(_))
        ));
    }

    #[test]
    fn mean_rounds_half_away_from_zero() {
        assert_eq!(
            Fixed::from_nanos(5).div_round(2),
            Some(Fixed::from_nanos(3))
        );
        assert_eq!(
            Fixed::from_nanos(-5).div_round(2),
            Some(Fixed::from_nanos(-3))
        );
        assert_eq!(
            Fixed::from_nanos(7).div_round(3),
            Some(Fixed::from_nanos(2))
        );
        assert_eq!(
            Fixed::from_nanos(-7).div_round(3),
            Some(Fixed::from_nanos(-2))
        );
        assert_eq!(fx("1").div_round(3).unwrap().to_string(), "0.333333333");
        assert_eq!(fx("2").div_round(3).unwrap().to_string(), "0.666666667");
        assert_eq!(Fixed::ZERO.div_round(0), None);
    }
}
