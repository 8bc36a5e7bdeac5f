//! Keyed streams: `key_by` with a partitioner, then one keyed operator per file, each an
//! extension trait: `window` (keyed windows), [`Reduce`] (rolling reduce), [`Join`] (symmetric
//! join), `distinct` (per-window distinct count). [`crate::prelude`] imports `key_by`, `reduce`
//! and `join` at once.
//!
//! This module owns the *plumbing* between a stream of `(key, value)` pairs and the keyed
//! operators: the `Routing` plan, decided once from the partitioner and the number of workers
//! and matched by every keyed operator (the final windows here and the differential views in
//! `crate::incremental`), so that every keyed operator gives identical results under every
//! partitioner. It owns no aggregation logic.
//!
//! * `Hash` and `Range` exchange records by key once; the operator sees every record of a key.
//! * `Random` spreads records evenly, aggregates them partially on each worker, and exchanges
//!   the partials by the key's hash (two phases).
//! * `Broadcast` gives every worker every record; each worker reports only the keys that hash
//!   to it, so every result appears once.
//!
//! With one worker, no exchange happens at all.

pub mod distinct;
pub mod join;
pub mod reduce;
pub mod window;

pub use join::Join;
pub use reduce::Reduce;
pub use window::{Windowed, WindowedStream};

use std::hash::Hash;
use std::marker::PhantomData;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Exchange as _, Operator};
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::partition::{route_hash, Partitioner};
use crate::stash::Checkpoints;

/// Requirements on keys: exchangeable, hashable, ordered (for range partitioning and sessions).
pub trait Key: ExchangeData + Hash + Eq + Ord + Clone {}
impl<K: ExchangeData + Hash + Eq + Ord + Clone> Key for K {}

/// Requirements on values.
pub trait Value: ExchangeData + Clone {}
impl<V: ExchangeData + Clone> Value for V {}

/// A stream of `(key, value)` pairs with the partitioner that keyed operators will use.
///
/// `I` and `P` are the stream's items and how each becomes a pair: a stream of pairs by
/// default ([`Pairs`]), or any items with a filtering map ([`KeyByWith::key_by_with`]) that the
/// window operator fuses into its input.
pub struct KeyedStream<'scope, K, V, I = (K, V), P = Pairs> {
    stream: StreamVec<'scope, u64, I>,
    prepare: P,
    /// The values `prepare` gives (the stream holds `I`s).
    values: PhantomData<fn() -> V>,
    partitioner: Partitioner<K>,
    checkpoints: Checkpoints,
    /// What the keyed operator computes, for its name in timely's logs.
    what: Option<String>,
}

/// Turns a stream of `(key, value)` pairs into a [`KeyedStream`].
pub trait KeyBy<'scope, K, V> {
    /// Declares how records are spread over workers by key; keyed operators follow it.
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
    ///     vec![('a', 1u64), ('b', 2), ('a', 3)]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash)
    ///         .reduce(|total, v| *total += v)
    ///         .capture()
    /// });
    /// let mut latest: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows).collect();
    /// latest.sort();
    /// assert_eq!(latest, vec![('a', 4), ('b', 2)]);
    /// ```
    fn key_by(self, partitioner: Partitioner<K>) -> KeyedStream<'scope, K, V>;
}

impl<'scope, K: Key, V: Value> KeyBy<'scope, K, V> for StreamVec<'scope, u64, (K, V)> {
    fn key_by(self, partitioner: Partitioner<K>) -> KeyedStream<'scope, K, V> {
        KeyedStream {
            stream: self,
            prepare: Pairs,
            values: PhantomData,
            partitioner,
            checkpoints: Checkpoints::default(),
            what: None,
        }
    }
}

/// How a keyed stream's items become `(key, value)` pairs, or are dropped: the map and filter
/// that precede a keyed operator. The window operator applies it to each item as it reads its
/// input on one worker (no pass and no container between them); elsewhere, and for the other
/// keyed operators, [`Prepare::pairs`] applies it in an operator of its own first.
pub trait Prepare<I: 'static, K: 'static, V: 'static>: 'static {
    /// The pair `item` stands for, or `None` to drop it.
    fn prepare(&mut self, item: I) -> Option<(K, V)>;

    /// `stream`'s items as pairs, by an operator named `name` in timely's logs (or as they are,
    /// when they already are pairs).
    fn pairs<'s>(self, stream: Timed<'s, I>, name: &str) -> Timed<'s, (K, V)>;
}

/// A stream in the keyed operators' time domain (`u64`).
type Timed<'scope, D> = StreamVec<'scope, u64, D>;

/// The items are the pairs: [`KeyBy::key_by`]'s stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pairs;

impl<K: 'static, V: 'static> Prepare<(K, V), K, V> for Pairs {
    #[inline]
    fn prepare(&mut self, item: (K, V)) -> Option<(K, V)> {
        Some(item)
    }

    fn pairs<'s>(self, stream: Timed<'s, (K, V)>, _name: &str) -> Timed<'s, (K, V)> {
        stream
    }
}

/// A filtering map from items to pairs: [`KeyByWith::key_by_with`]'s stream.
#[derive(Clone, Copy, Debug)]
pub struct FilterMap<F>(F);

impl<I: 'static, K: 'static, V: 'static, F> Prepare<I, K, V> for FilterMap<F>
where
    F: Fn(I) -> Option<(K, V)> + 'static,
{
    #[inline]
    fn prepare(&mut self, item: I) -> Option<(K, V)> {
        (self.0)(item)
    }

    fn pairs<'s>(self, stream: Timed<'s, I>, name: &str) -> Timed<'s, (K, V)> {
        filter_map(stream, name, self.0)
    }
}

/// `f` applied to every item of `stream`, keeping the `Some`s (timely's `map` and `flat_map`,
/// named `name` in timely's logs): one pass over each batch into one container, sized for all
/// of it (growing by doubling would copy the kept items again and again). Timely's own `map` and
/// `flat_map` push record by record through a container builder (a call, a capacity check and
/// a copy into a fresh small container per record), which cost as much as a windowed query's
/// own work per event (experiments/README.md, "NEXMark on one worker").
pub(crate) fn filter_map<'scope, I: 'static, T: 'static>(
    stream: StreamVec<'scope, u64, I>,
    name: &str,
    f: impl Fn(I) -> Option<T> + 'static,
) -> StreamVec<'scope, u64, T> {
    stream
        .unary(Pipeline, name, move |_, _| {
            move |input, output| {
                input.for_each(|cap, items| {
                    let mut kept = Vec::with_capacity(items.len());
                    kept.extend(items.drain(..).filter_map(&f));
                    if !kept.is_empty() {
                        output.session(&cap).give_container(&mut kept);
                    }
                });
            }
        })
        .container::<Vec<T>>()
}

/// Keys a stream of any items with a filtering map; see [`KeyByWith::key_by_with`].
pub trait KeyByWith<'scope, I> {
    /// Declares each item's `(key, value)` pair, `None` dropping it, and how pairs are spread
    /// over workers by key (`by`), as [`KeyBy::key_by`] does for a stream of pairs. A window over it
    /// is exactly the window over the stream of `f`'s pairs; on one worker it reads the items
    /// themselves, with `f` fused into its input (no operator, pass or container between them).
    /// The other keyed operators take a stream of pairs ([`KeyBy::key_by`]).
    ///
    /// # Examples
    ///
    /// Counting the even numbers per last digit in tumbling windows of 10 (the number is its
    /// own event time):
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::KeyByWith;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Count, WindowAssigner};
    ///
    /// let captured = timely::example(|scope| {
    ///     vec![2u64, 3, 12, 14, 22]
    ///         .to_stream(scope)
    ///         .key_by_with(Partitioner::Hash, |n: u64| (n % 2 == 0).then_some((n % 10, n)))
    ///         .window(WindowAssigner::Tumbling(10))
    ///         .aggregate(|n: &u64| *n, Count)
    ///         .results
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|r| (r.window.end, r.key, r.value)).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![(10, 2, 1), (20, 2, 1), (20, 4, 1), (30, 2, 1)]);
    /// ```
    fn key_by_with<K, V, F>(self, by: Partitioner<K>, f: F) -> KeyedWith<'scope, K, V, I, F>
    where
        F: Fn(I) -> Option<(K, V)> + 'static;
}

/// A stream of items keyed by a filtering map `F` ([`KeyByWith::key_by_with`]).
pub type KeyedWith<'scope, K, V, I, F> = KeyedStream<'scope, K, V, I, FilterMap<F>>;

impl<'scope, I: 'static> KeyByWith<'scope, I> for StreamVec<'scope, u64, I> {
    fn key_by_with<K, V, F>(self, by: Partitioner<K>, f: F) -> KeyedWith<'scope, K, V, I, F>
    where
        F: Fn(I) -> Option<(K, V)> + 'static,
    {
        KeyedStream {
            stream: self,
            prepare: FilterMap(f),
            values: PhantomData,
            partitioner: by,
            checkpoints: Checkpoints::default(),
            what: None,
        }
    }
}

impl<'scope, K: Key, V: Value, I, P> KeyedStream<'scope, K, V, I, P> {
    /// Names the keyed operator after what it computes, in timely's logs: `Join[what]`,
    /// `Reduce[what]`, `Window[what]` (windows are named by their assigner, in milliseconds,
    /// when not named).
    ///
    /// # Examples
    ///
    /// The reduce below appears as `Reduce[total per key]`; the name changes nothing else.
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::{KeyBy, Reduce};
    /// use tidemark::partition::Partitioner;
    ///
    /// let captured = timely::example(|scope| {
    ///     vec![('a', 1u64), ('a', 2)]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash)
    ///         .named("total per key")
    ///         .reduce(|total, v| *total += v)
    ///         .capture()
    /// });
    /// let rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows).collect();
    /// assert_eq!(rows, vec![('a', 3)]);
    /// ```
    pub fn named(mut self, what: &str) -> Self {
        self.what = Some(what.to_owned());
        self
    }

    /// The operator's name: `kind[what]`, or `kind[fallback]`.
    fn name(&self, kind: &str, fallback: impl FnOnce() -> String) -> String {
        let what = self.what.clone().unwrap_or_else(fallback);
        format!("{kind}[{what}]")
    }

    /// Hands the state of this stream's keyed operator, on each worker, to `checkpoints` at each
    /// of its cuts, exactly as of the records at times up to the cut (see [`crate::stash`]).
    ///
    /// # Examples
    ///
    /// A sink that asks for one cut, at time 0, and records who wrote which cut; the reduce
    /// writes its state once its input frontier has passed 0, as `N:name`:
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use std::sync::{Arc, Mutex};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::{KeyBy, Reduce};
    /// use tidemark::partition::Partitioner;
    /// use tidemark::stash::{Checkpoints, SnapshotSink};
    ///
    /// /// The (operator, cut) pairs written.
    /// struct Written(Arc<Mutex<Vec<(String, u64)>>>);
    /// impl SnapshotSink for Written {
    ///     fn first_cut(&self) -> Option<u64> {
    ///         Some(0)
    ///     }
    ///     fn write(&mut self, operator: &str, cut: u64, _state: Vec<u8>) -> Option<u64> {
    ///         self.0.lock().unwrap().push((operator.to_string(), cut));
    ///         None
    ///     }
    /// }
    ///
    /// let written = Arc::new(Mutex::new(Vec::new()));
    /// let shared = Arc::clone(&written);
    /// timely::example(move |scope| {
    ///     let checkpoints = Checkpoints::new(Rc::new(RefCell::new(Written(shared))));
    ///     vec![('a', 1u64), ('a', 2)]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash)
    ///         .checkpoints(&checkpoints)
    ///         .named("total per key")
    ///         .reduce(|total, v| *total += v);
    /// });
    /// assert_eq!(*written.lock().unwrap(), vec![("0:Reduce[total per key]".to_string(), 0)]);
    /// ```
    pub fn checkpoints(mut self, checkpoints: &Checkpoints) -> Self {
        self.checkpoints = checkpoints.clone();
        self
    }
}

/// How records reach a keyed operator, decided once from the partitioner and the number of
/// workers (see the module docs); every keyed operator, final or incremental, matches on it.
pub(crate) enum Routing<K> {
    /// One worker: no exchange at all.
    Local,
    /// `Hash` or `Range`: one exchange by the partitioner's route of the key.
    ByKey(Partitioner<K>),
    /// `Random`: spread evenly, aggregate partially per worker, exchange the partials by the
    /// key's hash.
    TwoPhase,
    /// `Broadcast`: every worker sees every record and reports the keys it [`owns`].
    Everywhere {
        /// The number of workers.
        peers: usize,
        /// This worker's index.
        index: usize,
    },
}

impl<K> Routing<K> {
    /// The routing of `partitioner` on a worker `index` of `peers`.
    pub(crate) fn plan(partitioner: Partitioner<K>, peers: usize, index: usize) -> Self {
        match partitioner {
            _ if peers == 1 => Routing::Local,
            Partitioner::Hash | Partitioner::Range(_) => Routing::ByKey(partitioner),
            Partitioner::Random => Routing::TwoPhase,
            Partitioner::Broadcast => Routing::Everywhere { peers, index },
        }
    }
}

impl<'scope, K, V, I, P> KeyedStream<'scope, K, V, I, P> {
    /// This stream's routing plan on the worker building the dataflow.
    pub(crate) fn routing(&self) -> Routing<K>
    where
        K: Clone,
    {
        let scope = self.stream.scope();
        Routing::plan(self.partitioner.clone(), scope.peers(), scope.index())
    }
}

/// Spreads records evenly over workers, deterministically: each worker numbers its records.
pub(crate) fn spread<'scope, D: ExchangeData>(
    stream: StreamVec<'scope, u64, D>,
) -> StreamVec<'scope, u64, D> {
    let mut counter = (stream.scope().index() as u64) << 40;
    stream.exchange(move |_| {
        counter = counter.wrapping_add(1);
        route_hash(&counter)
    })
}

/// As [`spread`], with each record's number: the input order, for operators that apply
/// records of one time in that order. The number is `order`'s for the record where it is
/// given (the record's position in an input that several workers read), else its position in
/// its sender's output, with the sender's index in the high bits (where one worker reads).
pub(crate) fn spread_numbered<'scope, K: ExchangeData, V: ExchangeData>(
    stream: StreamVec<'scope, u64, (K, V)>,
    order: Option<fn(&V) -> u64>,
) -> StreamVec<'scope, u64, (K, V, u64)> {
    let mut counter = (stream.scope().index() as u64) << 40;
    stream
        .map(move |(key, value)| {
            counter += 1;
            let seq = order.map_or(counter, |order| order(&value));
            (key, value, seq)
        })
        .exchange(|(_, _, seq)| route_hash(seq))
}

/// Whether a broadcast worker reports `key`: each key is reported by the worker it hashes to.
pub(crate) fn owns<K: Hash>(key: &K, peers: usize, index: usize) -> bool {
    route_hash(key) % peers as u64 == index as u64
}
