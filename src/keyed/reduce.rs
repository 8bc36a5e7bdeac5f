//! Keyed rolling reduce: the running reduction of each key, one updated value per key per
//! timestamp (epoch).
//!
//! Updates at time `T` are folded per key as they arrive and applied to the running values when
//! the frontier passes `T`, in timestamp order, so each key's emitted value at `T` reflects
//! exactly the records at times `<= T`. The reduce function must be associative and commutative
//! (like a combinable Flink `ReduceFunction`): records of one time are folded in arrival order,
//! and with random partitioning partial reductions from several workers are folded together.

use hashbrown::HashMap;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::vec::{Broadcast, Filter};
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use super::{owns, spread, Key, KeyedStream, Routing, Value};
use crate::partition::route_hash;
use crate::stash::{limit, Restorable, Stash};

/// Adds [`reduce`](Reduce::reduce) to keyed streams; in [`crate::prelude`].
pub trait Reduce<'scope, K: Key, V: Value>: Into<KeyedStream<'scope, K, V>> {
    /// The running reduction of each key with `fold`, emitted as `(key, value)` at each time at
    /// which the key received records.
    ///
    /// # Examples
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::{KeyBy, Reduce};
    /// use tidemark::partition::Partitioner;
    ///
    /// let captured = timely::example(|scope| {
    ///     vec![('x', 5u64), ('y', 1), ('x', 9)]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Random)
    ///         .reduce(|max, v| *max = (*max).max(v))
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![('x', 9), ('y', 1)]);
    /// ```
    fn reduce<F>(self, fold: F) -> StreamVec<'scope, u64, (K, V)>
    where
        F: Fn(&mut V, V) + Clone + 'static,
    {
        let this: KeyedStream<'scope, K, V> = self.into();
        let routing = this.routing();
        let name = this.name("Reduce", || "fold".to_owned());
        // Restoring: the running values start from the checkpoint resumed from.
        let cut = this.checkpoints.cut_restored(&name);
        match routing {
            Routing::Local => rolling(this.stream, Pipeline, &name, fold, cut),
            Routing::ByKey(partitioner) => {
                let pact = Exchange::new(move |(key, _): &(K, V)| partitioner.route(key));
                rolling(this.stream, pact, &name, fold, cut)
            }
            Routing::TwoPhase => {
                let partial = pre_reduce(spread(this.stream), fold.clone());
                let pact = Exchange::new(|(key, _): &(K, V)| route_hash(key));
                rolling(partial, pact, &name, fold, cut)
            }
            Routing::Everywhere { peers, index } => {
                rolling(this.stream.broadcast(), Pipeline, &name, fold, cut)
                    .filter(move |(key, _)| owns(key, peers, index))
            }
        }
    }
}

impl<'scope, K: Key, V: Value> Reduce<'scope, K, V> for KeyedStream<'scope, K, V> {}

/// Folds each batch per key and time (phase one of the two-phase reduce).
fn pre_reduce<'scope, K: Key, V: Value, F: Fn(&mut V, V) + 'static>(
    stream: StreamVec<'scope, u64, (K, V)>,
    fold: F,
) -> StreamVec<'scope, u64, (K, V)> {
    stream
        .unary(Pipeline, "PreReduce", move |_cap, _info| {
            let mut folded: HashMap<K, V> = HashMap::new();
            move |input, output| {
                input.for_each_stamp(|cap, batches| {
                    for (key, value) in batches.flat_map(|batch| batch.drain(..)) {
                        fold_into(&mut folded, key, value, &fold);
                    }
                    output.session(&cap).give_iterator(folded.drain());
                });
            }
        })
        .container::<Vec<_>>()
}

fn fold_into<K: Key, V>(map: &mut HashMap<K, V>, key: K, value: V, fold: &impl Fn(&mut V, V)) {
    match map.get_mut(&key) {
        Some(current) => fold(current, value),
        None => {
            map.insert(key, value);
        }
    }
}

/// The rolling reduce's state on one worker as one value: the running value of every key seen.
/// Updates stashed at times beyond a cut are not part of it (see [`crate::stash`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct ReduceState<K, V> {
    running: Vec<(K, V)>,
}

fn rolling<'scope, K, V, F, P>(
    stream: StreamVec<'scope, u64, (K, V)>,
    pact: P,
    name: &str,
    fold: F,
    (mut cut, restored): Restorable<ReduceState<K, V>>,
) -> StreamVec<'scope, u64, (K, V)>
where
    K: Key,
    V: Value,
    F: Fn(&mut V, V) + 'static,
    P: ParallelizationContract<u64, Vec<(K, V)>>,
{
    stream
        .unary_frontier(pact, name, move |_cap, _info| {
            let mut pending: Stash<HashMap<K, V>> = Stash::new();
            // No capability follows from the running values: updates are emitted when applied.
            let mut running: HashMap<K, V> = restored
                .map(|state| state.running.into_iter().collect())
                .unwrap_or_default();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let updates = pending.at(&cap);
                    for (key, value) in batches.flat_map(|batch| batch.drain(..)) {
                        fold_into(updates, key, value, &fold);
                    }
                });
                let limit = limit(frontier.frontier());
                loop {
                    let next = pending
                        .first_time()
                        .filter(|t| limit.is_none_or(|l| *t < l));
                    cut.take_passed(limit, next, |_| {
                        let mut running: Vec<_> = running
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        running.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        ReduceState { running }
                    });
                    let Some((_, [cap], updates)) = pending.pop_passed(limit) else {
                        break;
                    };
                    let mut session = output.session(&cap);
                    for (key, value) in updates {
                        fold_into(&mut running, key.clone(), value, &fold);
                        let current = running.get(&key).expect("just folded").clone();
                        session.give((key, current));
                    }
                }
            }
        })
        .container::<Vec<_>>()
}
