//! Aggregators: how a window (or a rolling reduce) folds its records into one value.
//!
//! An [`Aggregator`] is a commutative monoid over an accumulator plus a final projection:
//! `init` is the identity, `add` folds one record in, `merge` combines two partial accumulators,
//! and `finish` reads the result. The engine relies on `add` and `merge` being associative and
//! commutative: records are folded per worker in whatever order they arrive, and partial
//! aggregates from different workers are merged (two-phase aggregation). The built-in
//! aggregators are exact, so results are identical under every partitioning.
//!
//! # Ranges (see [`crate::number`])
//!
//! * [`Count`]: `0 ..= 2^64 - 1` records (a run cannot read more).
//! * [`Sum`]: a [`WideFixed`], exact for any number of inputs in [`Fixed`]'s range (`|v|` up to
//!   about `1.7e29`, nine fractional digits); it accumulates in 256 bits and cannot overflow, so
//!   no order, partitioning or batching of the additions can make it fail.
//! * [`Min`], [`Max`]: the inputs' range.
//! * [`Mean`]: the exact wide sum divided by the count and rounded once (ties away from zero);
//!   it lies between the smallest and largest input, so within the inputs' range.

use std::marker::PhantomData;

use timely::ExchangeData;

use crate::number::{Fixed, WideFixed};

/// Folds records of type `V` into a result.
///
/// Implement it for your own aggregation; `add` and `merge` must be associative and commutative
/// (up to what `finish` can observe), or results will depend on arrival order.
///
/// # Examples
///
/// A user-defined aggregator that counts distinct event times:
///
/// ```
/// use std::collections::BTreeSet;
/// use tidemark::window::Aggregator;
///
/// #[derive(Clone)]
/// struct DistinctTimes;
///
/// impl Aggregator<u64> for DistinctTimes {
///     type Acc = BTreeSet<u64>;
///     type Output = usize;
///     fn init(&self) -> BTreeSet<u64> { BTreeSet::new() }
///     fn add(&self, acc: &mut BTreeSet<u64>, ts: &u64) { acc.insert(*ts); }
///     fn merge(&self, acc: &mut BTreeSet<u64>, other: &BTreeSet<u64>) { acc.extend(other); }
///     fn finish(&self, acc: &BTreeSet<u64>) -> usize { acc.len() }
/// }
///
/// let agg = DistinctTimes;
/// let mut acc = agg.init();
/// for ts in [3, 1, 3] { agg.add(&mut acc, &ts); }
/// assert_eq!(agg.finish(&acc), 2);
/// ```
pub trait Aggregator<V>: Clone + 'static {
    /// The running state of one window and key.
    type Acc: ExchangeData + Clone;
    /// The result.
    type Output: ExchangeData + Clone + PartialEq;
    /// The empty accumulator.
    fn init(&self) -> Self::Acc;
    /// Folds one record in.
    fn add(&self, acc: &mut Self::Acc, record: &V);
    /// Folds another partial accumulator in.
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc);
    /// The result of an accumulator that has seen at least one record.
    fn finish(&self, acc: &Self::Acc) -> Self::Output;
    /// Folds `copies` copies of one record in (differential collections hold records with
    /// multiplicities): `O(log copies)` merges by doubling unless an aggregator knows better.
    fn add_copies(&self, acc: &mut Self::Acc, record: &V, copies: u64) {
        let mut power = self.init();
        self.add(&mut power, record);
        let mut remaining = copies;
        while remaining > 0 {
            if remaining & 1 == 1 {
                self.merge(acc, &power);
            }
            remaining >>= 1;
            if remaining > 0 {
                let twice = power.clone();
                self.merge(&mut power, &twice);
            }
        }
    }
}

/// Applies `agg` to a field of the record, picked by `field`.
///
/// ```
/// use tidemark::window::{on, Aggregator, Sum};
/// use tidemark::Fixed;
/// let agg = on(Sum, |pair: &(u64, i64)| pair.1);
/// let mut acc = agg.init();
/// agg.add(&mut acc, &(7, 5));
/// agg.add(&mut acc, &(8, -2));
/// assert_eq!(agg.finish(&acc).to_string(), "3");
/// ```
pub fn on<R, X, A, F>(agg: A, field: F) -> On<A, F, X>
where
    A: Aggregator<X>,
    F: Fn(&R) -> X + Clone + 'static,
{
    On {
        inner: agg,
        field,
        marker: PhantomData,
    }
}

/// An aggregator applied to a field of the record; see [`on`].
pub struct On<A, F, X> {
    inner: A,
    field: F,
    marker: PhantomData<fn() -> X>,
}

impl<A: Clone, F: Clone, X> Clone for On<A, F, X> {
    fn clone(&self) -> Self {
        On {
            inner: self.inner.clone(),
            field: self.field.clone(),
            marker: PhantomData,
        }
    }
}

impl<R, X: 'static, A: Aggregator<X>, F: Fn(&R) -> X + Clone + 'static> Aggregator<R>
    for On<A, F, X>
{
    type Acc = A::Acc;
    type Output = A::Output;
    fn init(&self) -> A::Acc {
        self.inner.init()
    }
    #[inline]
    fn add(&self, acc: &mut A::Acc, record: &R) {
        self.inner.add(acc, &(self.field)(record))
    }
    fn merge(&self, acc: &mut A::Acc, other: &A::Acc) {
        self.inner.merge(acc, other)
    }
    fn add_copies(&self, acc: &mut A::Acc, record: &R, copies: u64) {
        self.inner.add_copies(acc, &(self.field)(record), copies)
    }
    fn finish(&self, acc: &A::Acc) -> A::Output {
        self.inner.finish(acc)
    }
}

/// Counts records.
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<V> Aggregator<V> for Count {
    type Acc = u64;
    type Output = u64;
    fn init(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _: &V) {
        *acc += 1;
    }
    fn add_copies(&self, acc: &mut u64, _: &V, copies: u64) {
        *acc += copies;
    }
    fn merge(&self, acc: &mut u64, other: &u64) {
        *acc += other;
    }
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Exact sum of numbers (integers, or decimals with up to nine fractional digits), in 256 bits:
/// it never overflows, whatever the number and order of its inputs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sum;

impl<V: Copy + Into<Fixed>> Aggregator<V> for Sum {
    type Acc = WideFixed;
    type Output = WideFixed;
    fn init(&self) -> WideFixed {
        WideFixed::ZERO
    }
    #[inline]
    fn add(&self, acc: &mut WideFixed, value: &V) {
        *acc = *acc + WideFixed::from((*value).into());
    }
    fn merge(&self, acc: &mut WideFixed, other: &WideFixed) {
        *acc = *acc + *other;
    }
    fn finish(&self, acc: &WideFixed) -> WideFixed {
        *acc
    }
}

/// Smallest number.
#[derive(Clone, Copy, Debug, Default)]
pub struct Min;

/// Largest number.
#[derive(Clone, Copy, Debug, Default)]
pub struct Max;

macro_rules! extremum {
    ($name:ident, $pick:ident) => {
        impl<V: Copy + Into<Fixed>> Aggregator<V> for $name {
            type Acc = Option<Fixed>;
            type Output = Fixed;
            fn init(&self) -> Option<Fixed> {
                None
            }
            #[inline]
            fn add(&self, acc: &mut Option<Fixed>, value: &V) {
                let value = (*value).into();
                *acc = Some(acc.map_or(value, |a| a.$pick(value)));
            }
            fn merge(&self, acc: &mut Option<Fixed>, other: &Option<Fixed>) {
                if let Some(value) = other {
                    <Self as Aggregator<Fixed>>::add(self, acc, value);
                }
            }
            fn finish(&self, acc: &Option<Fixed>) -> Fixed {
                // Windows exist only once a record arrived, so the accumulator is never empty.
                acc.unwrap_or_default()
            }
        }
    };
}

extremum!(Min, min);
extremum!(Max, max);

/// Arithmetic mean, exact to nine fractional digits (ties rounded away from zero).
#[derive(Clone, Copy, Debug, Default)]
pub struct Mean;

impl<V: Copy + Into<Fixed>> Aggregator<V> for Mean {
    type Acc = (WideFixed, u64);
    type Output = Fixed;
    fn init(&self) -> (WideFixed, u64) {
        (WideFixed::ZERO, 0)
    }
    #[inline]
    fn add(&self, acc: &mut (WideFixed, u64), value: &V) {
        acc.0 = acc.0 + WideFixed::from((*value).into());
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (WideFixed, u64), other: &(WideFixed, u64)) {
        acc.0 = acc.0 + other.0;
        acc.1 += other.1;
    }
    fn finish(&self, acc: &(WideFixed, u64)) -> Fixed {
        // The count is positive (a window holds a record) and the mean lies between the
        // smallest and largest input, so the division always has a `Fixed` result.
        acc.0.div_round(acc.1).unwrap_or_default()
    }
}

impl From<i64> for Fixed {
    fn from(n: i64) -> Fixed {
        Fixed::from_int(n)
    }
}

impl From<u64> for Fixed {
    fn from(n: u64) -> Fixed {
        Fixed::from_nanos(n as i128 * 1_000_000_000)
    }
}

impl From<i32> for Fixed {
    fn from(n: i32) -> Fixed {
        Fixed::from_int(n as i64)
    }
}

impl From<u32> for Fixed {
    fn from(n: u32) -> Fixed {
        Fixed::from_int(n as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<A: Aggregator<i64>>(agg: A, values: &[i64]) -> A::Output {
        // Split in two partials to exercise merge as well as add.
        let (left, right) = values.split_at(values.len() / 2);
        let mut a = agg.init();
        left.iter().for_each(|v| agg.add(&mut a, v));
        let mut b = agg.init();
        right.iter().for_each(|v| agg.add(&mut b, v));
        agg.merge(&mut a, &b);
        agg.finish(&a)
    }

    #[test]
    fn built_ins_are_exact() {
        let values = [4, -7, 10, 3];
        assert_eq!(run(Count, &values), 4);
        assert_eq!(run(Sum, &values).to_fixed(), Some(Fixed::from_int(10)));
        assert_eq!(run(Min, &values), Fixed::from_int(-7));
        assert_eq!(run(Max, &values), Fixed::from_int(10));
        assert_eq!(run(Mean, &values).to_string(), "2.5");
        assert_eq!(run(Min, &[5]), Fixed::from_int(5));
    }

    /// `add_copies(v, n)` is `n` calls of `add(v)`, for the doubling default and the overrides.
    fn copies_match_repeated_adds<A: Aggregator<i64>>(agg: A)
    where
        A::Output: std::fmt::Debug,
    {
        for copies in [0u64, 1, 2, 3, 7, 8, 13, 100] {
            let (mut by_copies, mut by_adds) = (agg.init(), agg.init());
            agg.add(&mut by_copies, &-3);
            agg.add(&mut by_adds, &-3);
            agg.add_copies(&mut by_copies, &5, copies);
            (0..copies).for_each(|_| agg.add(&mut by_adds, &5));
            assert_eq!(
                agg.finish(&by_copies),
                agg.finish(&by_adds),
                "{copies} copies"
            );
        }
    }

    #[test]
    fn adding_copies_equals_adding_one_at_a_time() {
        copies_match_repeated_adds(Count);
        copies_match_repeated_adds(Sum);
        copies_match_repeated_adds(Min);
        copies_match_repeated_adds(Max);
        copies_match_repeated_adds(Mean);
        copies_match_repeated_adds(on(Sum, |v: &i64| *v * 2));
    }
}
