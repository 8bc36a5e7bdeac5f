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
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::{InputCapability, Operator};
use timely::dataflow::StreamVec;

use super::{Key, KeyedStream, Routing, Value};
use crate::stash::{limit, Cut, Stash};

/// Adds [`join`](Join::join) to keyed streams; in [`crate::prelude`].
pub trait Join<'scope, K: Key, V: Value>: Into<KeyedStream<'scope, K, V>> {
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
    /// use tidemark::keyed::{Join, KeyBy};
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
    fn join<V2, O, F>(
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
        let this: KeyedStream<'scope, K, V> = self.into();
        let name = &this.name("Join", || "equi-join".to_owned());
        let cut = this.checkpoints.cut(name);
        if let Routing::Local = this.routing() {
            let (left, right) = (this.stream, other.stream);
            return symmetric(left, right, Pipeline, Pipeline, name, cut, result);
        }
        let (left, right) = (this.partitioner.clone(), this.partitioner);
        symmetric(
            this.stream,
            other.stream,
            Exchange::new(move |(key, _): &(K, V)| left.route(key)),
            Exchange::new(move |(key, _): &(K, V2)| right.route(key)),
            name,
            cut,
            result,
        )
    }
}

impl<'scope, K: Key, V: Value> Join<'scope, K, V> for KeyedStream<'scope, K, V> {}

/// The records of one key seen so far on each side, with their times.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Sides<V, V2> {
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

/// The join's state on one worker as one value: every key's distinct records of both sides,
/// with their times. Records held back beyond a cut are not part of it (see [`crate::stash`]).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct JoinState<K, V, V2> {
    keys: Vec<(K, Sides<V, V2>)>,
}

/// Both sides' records of one time, held back beyond a checkpoint cut.
type HeldBack<K, V, V2> = (Vec<(K, V)>, Vec<(K, V2)>);

/// Joins a record arriving at `time` on one side with the stored records of the other side
/// and stores it, unless an equal record is stored already: `pair(key, arriving, stored)` builds
/// each result; matches with records stored at or before `time` go to `now`, later ones to
/// `later` with their time.
#[allow(clippy::too_many_arguments)]
#[inline]
fn arrive<K, A: PartialEq, B, O>(
    own: &mut Vec<(u64, A)>,
    other: &[(u64, B)],
    key: &K,
    value: A,
    time: u64,
    mut pair: impl FnMut(&K, &A, &B) -> O,
    now: &mut Vec<O>,
    later: &mut Vec<(u64, O)>,
) {
    if own.iter().any(|(_, seen)| *seen == value) {
        return;
    }
    for (at, stored) in other {
        let row = pair(key, &value, stored);
        if *at <= time {
            now.push(row);
        } else {
            later.push((*at, row));
        }
    }
    own.push((time, value));
}

/// Joins one time's records of both sides (left first) into `now` and `later`.
#[allow(clippy::too_many_arguments)]
fn join_time<K, V, V2, O>(
    state: &mut HashMap<K, Sides<V, V2>>,
    lefts: impl Iterator<Item = (K, V)>,
    rights: impl Iterator<Item = (K, V2)>,
    time: u64,
    result: &mut impl FnMut(&K, &V, &V2) -> O,
    now: &mut Vec<O>,
    later: &mut Vec<(u64, O)>,
) where
    K: Hash + Eq,
    V: PartialEq,
    V2: PartialEq,
{
    for (key, value) in lefts {
        match state.get_mut(&key) {
            Some(sides) => {
                let (own, other) = (&mut sides.left, &sides.right);
                arrive(own, other, &key, value, time, &mut *result, now, later);
            }
            None => {
                let mut sides = Sides::default();
                sides.left.push((time, value));
                state.insert(key, sides);
            }
        }
    }
    for (key, value) in rights {
        match state.get_mut(&key) {
            Some(sides) => {
                let (own, other) = (&mut sides.right, &sides.left);
                let pair = |k: &K, r: &V2, l: &V| result(k, l, r);
                arrive(own, other, &key, value, time, pair, now, later);
            }
            None => {
                let mut sides = Sides::default();
                sides.right.push((time, value));
                state.insert(key, sides);
            }
        }
    }
}

/// The symmetric join operator. While a checkpoint cut is pending, records at times beyond it
/// are held back in a [`Stash`] and joined once the cut has been taken.
#[allow(clippy::too_many_arguments)]
fn symmetric<'scope, K, V, V2, O, F, P1, P2>(
    left: StreamVec<'scope, u64, (K, V)>,
    right: StreamVec<'scope, u64, (K, V2)>,
    left_pact: P1,
    right_pact: P2,
    name: &str,
    mut cut: Cut<JoinState<K, V, V2>>,
    mut result: F,
) -> StreamVec<'scope, u64, O>
where
    K: Hash + Ord + Clone + 'static,
    V: PartialEq + Clone + 'static,
    V2: PartialEq + Clone + 'static,
    O: 'static,
    F: FnMut(&K, &V, &V2) -> O + 'static,
    P1: ParallelizationContract<u64, Vec<(K, V)>>,
    P2: ParallelizationContract<u64, Vec<(K, V2)>>,
{
    left.binary_frontier(right, left_pact, right_pact, name, |_cap, _info| {
        let mut state: HashMap<K, Sides<V, V2>> = HashMap::new();
        let mut held: Stash<HeldBack<K, V, V2>> = Stash::new();
        let (mut now, mut later) = (Vec::new(), Vec::new());
        move |(left, left_frontier), (right, right_frontier), output| {
            left.for_each_stamp(|cap, batches| {
                let lefts = batches.flat_map(|batch| batch.drain(..));
                let joining = (&mut state, &mut result, &mut now, &mut later);
                receive(
                    cap,
                    lefts,
                    std::iter::empty(),
                    &cut,
                    &mut held,
                    joining,
                    output,
                );
            });
            right.for_each_stamp(|cap, batches| {
                let rights = batches.flat_map(|batch| batch.drain(..));
                let joining = (&mut state, &mut result, &mut now, &mut later);
                receive(
                    cap,
                    std::iter::empty(),
                    rights,
                    &cut,
                    &mut held,
                    joining,
                    output,
                );
            });
            if cut.pending().is_none() {
                return;
            }
            // The input frontier is the meet of both sides' (`None`: both ended).
            let limit = match (
                limit(left_frontier.frontier()),
                limit(right_frontier.frontier()),
            ) {
                (Some(l), Some(r)) => Some(l.min(r)),
                (l, r) => l.or(r),
            };
            // Everything at times up to the cut was joined on arrival; what is held back lies
            // beyond it and is joined before the next cut is taken.
            loop {
                let snapshot = |_| {
                    let mut keys: Vec<_> =
                        state.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
                    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    JoinState { keys }
                };
                if !cut.take_passed(limit, held.first_time(), snapshot) {
                    break;
                }
                while let Some((time, [cap], (lefts, rights))) = held.pop_through(cut.pending()) {
                    let (lefts, rights) = (lefts.into_iter(), rights.into_iter());
                    join_time(
                        &mut state,
                        lefts,
                        rights,
                        time,
                        &mut result,
                        &mut now,
                        &mut later,
                    );
                    output.session(&cap).give_iterator(now.drain(..));
                    give_later(&mut later, |at, rows| {
                        output.session(&cap.delayed(&at)).give_iterator(rows)
                    });
                }
            }
        }
    })
    .container::<Vec<_>>()
}

/// What joining one time's records changes: the state, the result function, and the rows for
/// now and for later times (see [`join_time`]).
type Joining<'a, K, V, V2, F, O> = (
    &'a mut HashMap<K, Sides<V, V2>>,
    &'a mut F,
    &'a mut Vec<O>,
    &'a mut Vec<(u64, O)>,
);

/// One time's records of both sides (one of them empty: they come in by side), arriving under
/// `cap`: held back in `held` while a pending cut lies before their time, otherwise joined at
/// once and sent to `output`, the rows for later times under capabilities for those times.
fn receive<K, V, V2, O, F>(
    cap: InputCapability<u64>,
    lefts: impl Iterator<Item = (K, V)>,
    rights: impl Iterator<Item = (K, V2)>,
    cut: &Cut<JoinState<K, V, V2>>,
    held: &mut Stash<HeldBack<K, V, V2>>,
    (state, result, now, later): Joining<'_, K, V, V2, F, O>,
    output: &mut OutputBuilderSession<'_, u64, CapacityContainerBuilder<Vec<O>>>,
) where
    K: Hash + Eq,
    V: PartialEq,
    V2: PartialEq,
    O: 'static,
    F: FnMut(&K, &V, &V2) -> O,
{
    let time = *cap.least().expect("u64 stamps are never empty");
    if cut.beyond(time) {
        let (held_lefts, held_rights) = held.at(&cap);
        held_lefts.extend(lefts);
        held_rights.extend(rights);
        return;
    }
    join_time(state, lefts, rights, time, result, now, later);
    output.session(&cap).give_iterator(now.drain(..));
    give_later(later, |at, rows| {
        output.session(&cap.delayed(&at, 0)).give_iterator(rows)
    });
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
