//! Keyed per-window distinct count: how many different values a field takes, per window and
//! key.
//!
//! This file is the whole operator: an [`Aggregator`] whose accumulator is the set of values
//! seen, and an extension trait on [`WindowedStream`] that plugs it into the keyed window
//! operator. Routing (every partitioner, one or many workers), time (windows close when the
//! frontier passes their end, corrections within the allowed lateness, late output beyond it)
//! and checkpoint state all come from the window operator. The set merges by union, which is
//! associative, commutative and idempotent, so two-phase aggregation under `Random`
//! partitioning is exact. State is one set per open window and key: it grows with the number of
//! distinct values, which is inherent to an exact distinct count.

use std::collections::BTreeSet;

use timely::ExchangeData;

use super::{Key, Value, Windowed, WindowedStream};
use crate::window::{on, Aggregator};

/// The number of distinct values (of type `D`) among the records of a window and key.
#[derive(Clone, Copy, Debug, Default)]
pub struct Distinct;

impl<D: ExchangeData + Ord + Clone> Aggregator<D> for Distinct {
    type Acc = BTreeSet<D>;
    type Output = u64;
    fn init(&self) -> BTreeSet<D> {
        BTreeSet::new()
    }
    fn add(&self, acc: &mut BTreeSet<D>, record: &D) {
        if !acc.contains(record) {
            acc.insert(record.clone());
        }
    }
    fn merge(&self, acc: &mut BTreeSet<D>, other: &BTreeSet<D>) {
        acc.extend(other.iter().cloned());
    }
    fn finish(&self, acc: &BTreeSet<D>) -> u64 {
        acc.len() as u64
    }
    fn add_copies(&self, acc: &mut BTreeSet<D>, record: &D, _copies: u64) {
        // Copies of a value count once.
        self.add(acc, record);
    }
}

/// Adds [`distinct_count`](DistinctCount::distinct_count) to keyed windows.
pub trait DistinctCount<'scope, K: Key, V: Value>: Into<WindowedStream<'scope, K, V>> {
    /// Per window and key, the number of distinct values that `field` reads from the records;
    /// `event_time` reads a record's event time. The outputs are those of
    /// [`WindowedStream::aggregate`]: the changelog of `u64` counts and the late records.
    ///
    /// # Examples
    ///
    /// Distinct visitors per page in 10 ms tumbling windows:
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::distinct::DistinctCount;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Window, WindowAssigner};
    ///
    /// /// A visit: its event time (ms) and the visitor.
    /// type Visit = (u64, char);
    /// let visits: Vec<(char, Visit)> = vec![
    ///     ('h', (1, 'a')), ('h', (2, 'b')), ('h', (3, 'a')), ('s', (4, 'a')), ('h', (12, 'a')),
    /// ];
    /// let captured = timely::example(move |scope| {
    ///     visits
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash)
    ///         .window(WindowAssigner::Tumbling(10))
    ///         .distinct_count(|v: &Visit| v.0, |v: &Visit| v.1)
    ///         .results
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|r| (r.window, r.key, r.value)).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![
    ///     (Window { start: 0, end: 10 }, 'h', 2),
    ///     (Window { start: 0, end: 10 }, 's', 1),
    ///     (Window { start: 10, end: 20 }, 'h', 1),
    /// ]);
    /// ```
    fn distinct_count<D, T, F>(self, event_time: T, field: F) -> Windowed<'scope, K, u64, V>
    where
        D: ExchangeData + Ord + Clone,
        T: Fn(&V) -> u64 + Clone + 'static,
        F: Fn(&V) -> D + Clone + 'static,
    {
        let this: WindowedStream<'scope, K, V> = self.into();
        this.aggregate(event_time, on(Distinct, field))
    }
}

impl<'scope, K: Key, V: Value> DistinctCount<'scope, K, V> for WindowedStream<'scope, K, V> {}
