//! Exact decimal numbers for aggregation.
//!
//! Invariants:
//!
//! * A [`Fixed`] is an integer count of nano-units (`10^-9`) held in an `i128`, so every value
//!   with at most nine fractional digits and a magnitude of at most [`Fixed::MAX`]
//!   (`170141183460469231731687303715.884105727`, about `1.7e29`) is represented
//!   exactly. Input values are `Fixed`; a text outside that range is refused when it is read.
//! * A [`WideFixed`] is the same nano-unit count in 256-bit two's complement. Sums accumulate in
//!   it: `2^64` inputs of the largest magnitude add up to less than `2^191` nano-units, far
//!   inside its range, so a sum of any number of in-range inputs is exact, can never overflow,
//!   and does not depend on the order or grouping of the additions. That order independence is
//!   what lets windowed sums be identical under every worker count, partitioner and batching;
//!   `f64`, or an `i128` that overflows for some orders and not others, would not be.
//! * A mean is the exact wide sum divided by the count, rounded once; its magnitude is at most
//!   the largest input's, so it is a `Fixed` again.

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
    /// A non-zero digit beyond the ninth after the decimal point (trailing zeros are read).
    #[error("{0:?} has a non-zero digit beyond the 9th after the decimal point")]
    TooPrecise(String),
    /// The magnitude does not fit.
    #[error("{0:?} is out of range")]
    OutOfRange(String),
}

impl Fixed {
    /// Zero.
    pub const ZERO: Fixed = Fixed(0);
    /// The largest value, `(2^127 - 1) * 10^-9`; the smallest is its negation.
    pub const MAX: Fixed = Fixed(i128::MAX);

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
        // The common case, a plain integer: up to 18 digits fit a u64 and, scaled, an i128,
        // so one pass without overflow checks reads it as the general path below would.
        if !body.is_empty() && body.len() <= 18 && body.bytes().all(|b| b.is_ascii_digit()) {
            let n = body.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
            let nanos = i128::from(n) * SCALE;
            return Ok(Fixed(if negative { -nanos } else { nanos }));
        }
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
        // Zeros beyond the ninth fractional digit do not change the value, so `1.5000000000` is
        // read exactly; only a digit that cannot be held is refused.
        let (frac_part, beyond) = frac_part.split_at(frac_part.len().min(FRACTION_DIGITS));
        if beyond.bytes().any(|b| b != b'0') {
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
        let (int, frac) = (magnitude / SCALE as u128, magnitude % SCALE as u128);
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{int}")?;
        write_fraction(f, frac as u64)
    }
}

/// Writes the fraction `frac` (nano-units, below [`SCALE`]) as `.digits` without trailing
/// zeros; nothing when it is zero.
fn write_fraction(f: &mut fmt::Formatter<'_>, mut frac: u64) -> fmt::Result {
    if frac != 0 {
        let mut width = FRACTION_DIGITS;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        write!(f, ".{frac:0width$}")?;
    }
    Ok(())
}

/// An exact decimal with nine fractional digits and a 256-bit range: the accumulator and
/// result of exact sums (see the module documentation for why it cannot overflow).
///
/// ```
/// use tidemark::number::{Fixed, WideFixed};
/// let big: Fixed = "100000000000000000000000000000".parse().unwrap(); // 1e29
/// let mut sum = WideFixed::ZERO;
/// for _ in 0..3 {
///     sum = sum + WideFixed::from(big);
/// }
/// assert_eq!(sum.to_string(), "300000000000000000000000000000");
/// assert_eq!(sum.to_fixed(), None); // beyond Fixed's range, but exact
/// assert_eq!(sum.div_round(3), Some(big));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct WideFixed {
    // The nano-unit count is `hi * 2^128 + lo`; field order makes the derived order numeric.
    hi: i128,
    lo: u128,
}

impl From<Fixed> for WideFixed {
    fn from(value: Fixed) -> WideFixed {
        WideFixed {
            hi: if value.0 < 0 { -1 } else { 0 },
            lo: value.0 as u128,
        }
    }
}

impl std::ops::Add for WideFixed {
    type Output = WideFixed;

    /// `self + other`, exact: the high half cannot wrap for sums of fewer than `2^127` values of
    /// `Fixed`'s range (each moves it by at most one), which no run can reach.
    #[inline]
    fn add(self, other: WideFixed) -> WideFixed {
        let (lo, carry) = self.lo.overflowing_add(other.lo);
        WideFixed {
            hi: self.hi.wrapping_add(other.hi).wrapping_add(carry as i128),
            lo,
        }
    }
}

impl WideFixed {
    /// Zero.
    pub const ZERO: WideFixed = WideFixed { hi: 0, lo: 0 };

    /// The value as a [`Fixed`], if it is within `Fixed`'s range.
    pub fn to_fixed(self) -> Option<Fixed> {
        let fits = (self.hi == 0 && self.lo <= i128::MAX as u128)
            || (self.hi == -1 && self.lo > i128::MAX as u128);
        fits.then_some(Fixed(self.lo as i128))
    }

    /// Sign and magnitude, the magnitude as four 64-bit limbs, most significant first.
    fn magnitude(self) -> (bool, [u64; 4]) {
        let negative = self.hi < 0;
        let (mut hi, mut lo) = (self.hi as u128, self.lo);
        if negative {
            lo = (!lo).wrapping_add(1);
            hi = (!hi).wrapping_add((lo == 0) as u128);
        }
        let limbs = [(hi >> 64) as u64, hi as u64, (lo >> 64) as u64, lo as u64];
        (negative, limbs)
    }

    /// `self / n` rounded to the nearest nano-unit, ties away from zero; `None` if `n == 0` or
    /// the quotient is beyond `Fixed`'s range (never for a mean: it lies between the inputs).
    pub fn div_round(self, n: u64) -> Option<Fixed> {
        if n == 0 {
            return None;
        }
        let (negative, limbs) = self.magnitude();
        let (q, r) = div_limbs(limbs, n);
        if q[0] != 0 || q[1] != 0 {
            return None;
        }
        let mut q = ((q[2] as u128) << 64) | q[3] as u128;
        // r >= n - r means the fraction is at least one half: round away from zero.
        if r >= n - r {
            q = q.checked_add(1)?;
        }
        let q = i128::try_from(q).ok()?;
        Some(Fixed(if negative { -q } else { q }))
    }
}

/// Long division of a 256-bit magnitude (limbs most significant first) by `d > 0`.
fn div_limbs(limbs: [u64; 4], d: u64) -> ([u64; 4], u64) {
    let mut quotient = [0u64; 4];
    let mut rem: u64 = 0;
    for (q, limb) in quotient.iter_mut().zip(limbs) {
        let cur = ((rem as u128) << 64) | limb as u128;
        *q = (cur / d as u128) as u64;
        rem = (cur % d as u128) as u64;
    }
    (quotient, rem)
}

impl fmt::Display for WideFixed {
    /// Canonical form, as for [`Fixed`]: every integer digit, then the fraction without
    /// trailing zeros if non-zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (negative, limbs) = self.magnitude();
        let (mut int, frac) = div_limbs(limbs, SCALE as u64);
        // Base 10^19 chunks of the integer part, least significant first.
        let mut chunks = Vec::new();
        loop {
            let (q, r) = div_limbs(int, 10_000_000_000_000_000_000);
            chunks.push(r);
            int = q;
            if int == [0; 4] {
                break;
            }
        }
        if negative {
            f.write_str("-")?;
        }
        let mut chunks = chunks.into_iter().rev();
        write!(f, "{}", chunks.next().unwrap_or(0))?;
        for chunk in chunks {
            write!(f, "{chunk:019}")?;
        }
        write_fraction(f, frac)
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
            ("1.5000000000", "1.5"),
            ("-0.0000000010000", "-0.000000001"),
            ("3.000000000000000000000000000000000000000000", "3"),
        ] {
            assert_eq!(fx(input).to_string(), printed, "input {input}");
        }
    }

    /// Plain integers take a fast path: it reads every integer as the general path does (a
    /// trailing `.0` sends the same number down the general path), up to and past its 18
    /// digits, with signs and leading zeros.
    #[test]
    fn integers_read_as_the_general_path_reads_them() {
        let mut texts = vec!["0".to_string(), "007".to_string(), "-0".to_string()];
        for digits in 1..=30 {
            for first in ['1', '9'] {
                let text: String = std::iter::once(first)
                    .chain((1..digits).map(|i| char::from(b'0' + (i * 7 % 10) as u8)))
                    .collect();
                texts.push(format!("+{text}"));
                texts.push(format!("-{text}"));
                texts.push(text);
            }
        }
        for text in texts {
            if let Ok(value) = format!("{text}.0").parse::<Fixed>() {
                assert_eq!(fx(&text), value, "{text}");
            } else {
                assert!(matches!(
                    text.parse::<Fixed>(),
                    Err(ParseFixedError::OutOfRange(_))
                ));
            }
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
        for bad in ["0.0000000001", "1.5000000001", "-2.0000000000007"] {
            assert!(
                matches!(bad.parse::<Fixed>(), Err(ParseFixedError::TooPrecise(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            "1".repeat(40).parse::<Fixed>(),
            Err(ParseFixedError::OutOfRange(_))
        ));
    }

    #[test]
    fn mean_rounds_half_away_from_zero() {
        // (nanos, divisor, quotient)
        for (nanos, divisor, quotient) in [(5, 2, 3), (-5, 2, -3), (7, 3, 2), (-7, 3, -2)] {
            let got = Fixed::from_nanos(nanos).div_round(divisor);
            assert_eq!(
                got,
                Some(Fixed::from_nanos(quotient)),
                "{nanos} / {divisor}"
            );
        }
        assert_eq!(fx("1").div_round(3).unwrap().to_string(), "0.333333333");
        assert_eq!(fx("2").div_round(3).unwrap().to_string(), "0.666666667");
        assert_eq!(Fixed::ZERO.div_round(0), None);
    }

    #[test]
    fn wide_sums_are_exact_beyond_fixed_in_any_order() {
        let big = fx("100000000000000000000000000000");
        let neg = fx("-100000000000000000000000000000");
        let values = [big, neg, big, big, neg];
        let mut a = WideFixed::ZERO;
        for v in values {
            a = a + v.into();
        }
        let mut b = WideFixed::ZERO;
        for v in values.iter().rev() {
            b = b + (*v).into();
        }
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "100000000000000000000000000000");
        assert_eq!(a.to_fixed(), Some(big));
        let two = WideFixed::from(big) + big.into();
        assert_eq!(two.to_string(), "200000000000000000000000000000");
        assert_eq!(two.to_fixed(), None);
        let neg_two = WideFixed::from(neg) + neg.into();
        assert_eq!(neg_two.to_string(), "-200000000000000000000000000000");
        assert!(neg_two < WideFixed::ZERO && WideFixed::ZERO < two);
        // 2^63 copies of the extremes, by doubling: still exact, mean back at the extreme.
        let (mut max, mut min) = (
            WideFixed::from(Fixed::MAX),
            WideFixed::from(Fixed(-i128::MAX)),
        );
        for _ in 0..63 {
            max = max + max;
            min = min + min;
        }
        assert_eq!(max + min, WideFixed::ZERO);
        assert_eq!(max.div_round(1 << 63), Some(Fixed::MAX));
        assert_eq!(min.div_round(1 << 63), Some(Fixed(-i128::MAX)));
        // (2^127 - 1) * 2^63 nano-units, printed by Python's integers.
        assert_eq!(
            max.to_string(),
            "1569275433846670190958947355801916604016365489079.153852416"
        );
        assert_eq!(
            min.to_string(),
            "-1569275433846670190958947355801916604016365489079.153852416"
        );
        assert_eq!(
            WideFixed::from(fx("1")).div_round(3).unwrap().to_string(),
            "0.333333333"
        );
        assert_eq!(
            WideFixed::from(fx("-5")).div_round(2).unwrap().to_string(),
            "-2.5"
        );
        assert_eq!(WideFixed::from(Fixed(-5)).div_round(2), Some(Fixed(-3)));
        assert_eq!(WideFixed::from(Fixed(7)).div_round(3), Some(Fixed(2)));
        assert_eq!(WideFixed::ZERO.div_round(0), None);
        assert_eq!(WideFixed::from(fx("-0.125")).to_string(), "-0.125");
        assert_eq!(WideFixed::ZERO.to_string(), "0");
    }
}
