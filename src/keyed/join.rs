//! Keyed joins: the symmetric hash join of two keyed streams.
//!
//! This module owns the incremental equi-join and nothing else (no windows, no expiry).
//!
//! Invariant: the operator joins the two inputs as *sets* of `(key, value)` records. Every pair
//! of distinct records with equal keys, one from each input, is emitted exactly once, whichever
//! arrives first and however records are batched or spread over workers, at the later of the
//! two records' times. A record equal to one already seen on its side is a duplicate: it is
//! dropped and emits nothing. Without duplicates (NEXMark's people and auctions have unique
//! ids) this is the ordinary join; with them (a replayed pool of events) output and state stay
//! bounded by the distinct records instead of growing with every copy.
//!
//! Both inputs are routed by the same function of the key, so a key's records from both sides
//! meet on one worker; each side's distinct records are kept, per key, for the life of the
//! dataflow. State therefore grows with the distinct inputs: use it where that is inherent to
//! the query (NEXMark q3) or where the inputs are bounded. An arriving record scans both sides
//! of its key (the other side to match, its own to drop duplicates), so keys with many records
//! cost in proportion.

use std::hash::Hash;

use hashbrown::HashMap;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use super::{Key, KeyedStream, Value};

impl<'scope, K: Key, V: Value> KeyedStream<'scope, K, V> {
    /// Joins this stream with `other` on equal keys: emits `result(key, left, right)` once for
    /// every pair of distinct records with the same key, as soon as both have arrived, at the
    /// later of their two times. Records equal to one already seen on their side are dropped
    /// (set semantics; see the module docs).
    ///
    /// Both inputs are routed by this stream's partitioner when it respects keys (`Hash`,
    /// `Range`); a join needs a key's records from both sides on one worker, so `Random` and
    /// `Broadcast` route by the key's hash here. `other`'s partitioner is not consulted.
    ///
    /// # Examples
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    ///
    /// let captured = timely::example(|scope| {
    ///     let people = vec![(1u64, "ann".to_string()), (2, "bob".to_string())]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash);
    ///     // Order 10 of person 1 arrives twice: it is joined once.
    ///     let orders = vec![(1u64, 10u64), (1, 11), (3, 12), (1, 10)]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash);
    ///     people
    ///         .join(orders, |id, name, order| (*id, name.clone(), *order))
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![(1, "ann".to_string(), 10), (1, "ann".to_string(), 11)]);
    /// ```
    pub fn join<V2, O, F>(
        self,
        other: KeyedStream<'scope, K, V2>,
        result: F,
    ) -> StreamVec<'scope, u64, O>
    where
        V: PartialEq,
        V2: Value + PartialEq,
        O: 'static,
        F: FnMut(&K, &V, &V2) -> O + 'static,
    {
        if self.stream.scope().peers() == 1 {
            return symmetric(self.stream, other.stream, Pipeline, Pipeline, result);
        }
        let (left, right) = (self.partitioner.clone(), self.partitioner);
        symmetric(
            self.stream,
            other.stream,
            Exchange::new(move |(key, _): &(K, V)| left.route(key)),
            Exchange::new(move |(key, _): &(K, V2)| right.route(key)),
            result,
        )
    }
}

/// The records of one key seen so far on each side, with their times.
struct Sides<V, V2> {
    left: Vec<(u64, V)>,
    right: Vec<(u64, V2)>,
}

impl<V, V2> Default for Sides<V, V2> {
    fn default() -> Self {
        Sides {
            left: Vec::new(),
            right: Vec::new(),
        }
    }
}

fn symmetric<'scope, K, V, V2, O, F, P1, P2>(
    left: StreamVec<'scope, u64, (K, V)>,
    right: StreamVec<'scope, u64, (K, V2)>,
    left_pact: P1,
    right_pact: P2,
    mut result: F,
) -> StreamVec<'scope, u64, O>
where
    K: Hash + Eq + 'static,
    V: PartialEq + 'static,
    V2: PartialEq + 'static,
    O: 'static,
    F: FnMut(&K, &V, &V2) -> O + 'static,
    P1: ParallelizationContract<u64, Vec<(K, V)>>,
    P2: ParallelizationContract<u64, Vec<(K, V2)>>,
{
    left.binary(
        right,
        left_pact,
        right_pact,
        "SymmetricJoin",
        |_cap, _info| {
            let mut state: HashMap<K, Sides<V, V2>> = HashMap::new();
            // Matches with a record stored at a later time than the arriving one.
            let mut later: Vec<(u64, O)> = Vec::new();
            move |left, right, output| {
                left.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    let mut session = output.session(&cap);
                    for (key, value) in batches.flat_map(|batch| batch.drain(..)) {
                        match state.get_mut(&key) {
                            Some(sides) if sides.left.iter().any(|(_, seen)| *seen == value) => {}
                            Some(sides) => {
                                for (at, other) in &sides.right {
                                    let row = result(&key, &value, other);
                                    if *at <= time {
                                        session.give(row);
                                    } else {
                                        later.push((*at, row));
                                    }
                                }
                                sides.left.push((time, value));
                            }
                            None => {
                                let mut sides = Sides::default();
                                sides.left.push((time, value));
                                state.insert(key, sides);
                            }
                        }
                    }
                    drop(session);
                    give_later(&mut later, |at, rows| {
                        output.session(&cap.delayed(&at, 0)).give_iterator(rows)
                    });
                });
                right.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    let mut session = output.session(&cap);
                    for (key, value) in batches.flat_map(|batch| batch.drain(..)) {
                        match state.get_mut(&key) {
                            Some(sides) if sides.right.iter().any(|(_, seen)| *seen == value) => {}
                            Some(sides) => {
                                for (at, other) in &sides.left {
                                    let row = result(&key, other, &value);
                                    if *at <= time {
                                        session.give(row);
                                    } else {
                                        later.push((*at, row));
                                    }
                                }
                                sides.right.push((time, value));
                            }
                            None => {
                                let mut sides = Sides::default();
                                sides.right.push((time, value));
                                state.insert(key, sides);
                            }
                        }
                    }
                    drop(session);
                    give_later(&mut later, |at, rows| {
                        output.session(&cap.delayed(&at, 0)).give_iterator(rows)
                    });
                });
            }
        },
    )
    .container::<Vec<_>>()
}

/// Hands `later`'s rows to `give`, grouped by time, and empties it.
fn give_later<O>(later: &mut Vec<(u64, O)>, mut give: impl FnMut(u64, std::vec::IntoIter<O>)) {
    if later.is_empty() {
        return;
    }
    later.sort_by_key(|(at, _)| *at);
    let mut rows = Vec::new();
    let mut current = later[0].0;
    for (at, row) in later.drain(..) {
        if at != current {
            give(current, std::mem::take(&mut rows).into_iter());
            current = at;
        }
        rows.push(row);
    }
    give(current, rows.into_iter());
}
