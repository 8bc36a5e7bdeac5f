//! Keyed streams: `key_by` with a partitioner, then keyed windows or a rolling reduce.
//!
//! This module owns the *plumbing* between a stream of `(key, value)` pairs and the keyed
//! operators: which exchange (or two) a partitioner needs, so that every keyed operator gives
//! identical results under every partitioner. It owns no aggregation logic.
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

use std::hash::Hash;

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::{Broadcast, Filter, Map};
use timely::dataflow::operators::Exchange as _;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use crate::partition::{route_hash, Partitioner};
use crate::stash::Checkpoints;
use crate::window::driver::{drive, WindowState};
use crate::window::fixed::{FixedWindows, Part, StateGauge};
use crate::window::partial::partial_aggregate;
use crate::window::session::Sessions;
use crate::window::{Aggregator, Emit, Late, WindowAssigner, WindowResult};

/// Requirements on keys: exchangeable, hashable, ordered (for range partitioning and sessions).
pub trait Key: ExchangeData + Hash + Eq + Ord + Clone {}
impl<K: ExchangeData + Hash + Eq + Ord + Clone> Key for K {}

/// Requirements on values.
pub trait Value: ExchangeData + Clone {}
impl<V: ExchangeData + Clone> Value for V {}

/// A stream of `(key, value)` pairs with the partitioner that keyed operators will use.
pub struct KeyedStream<'scope, K, V> {
    stream: StreamVec<'scope, u64, (K, V)>,
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
    /// use tidemark::keyed::KeyBy;
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
            partitioner,
            checkpoints: Checkpoints::default(),
            what: None,
        }
    }
}

/// A keyed window, configured but not yet aggregated; see [`KeyedStream::window`].
pub struct WindowedStream<'scope, K, V> {
    keyed: KeyedStream<'scope, K, V>,
    assigner: WindowAssigner,
    lateness: u64,
    gauge: StateGauge,
}

/// The two outputs of a keyed window aggregation.
pub struct Windowed<'scope, K, O, V> {
    /// The changelog of window results: each window once when it closes, and corrections.
    pub results: StreamVec<'scope, u64, WindowResult<K, O>>,
    /// Records that arrived beyond the allowed lateness, once per window missed.
    pub late: StreamVec<'scope, u64, Late<K, V>>,
}

impl<'scope, K: Key, V: Value> KeyedStream<'scope, K, V> {
    /// Groups the stream into windows of event time chosen by `assigner`.
    ///
    /// # Examples
    ///
    /// A keyed tumbling count; time is the watermark, so input at time 10 closes `[0, 10)`.
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Count, Window, WindowAssigner};
    ///
    /// let captured = timely::example(|scope| {
    ///     // (key, event time) pairs, each sent at its own event time by `to_stream`'s time 0.
    ///     let windows = vec![('a', 1u64), ('b', 4), ('a', 7), ('a', 12)]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Hash)
    ///         .window(WindowAssigner::Tumbling(10))
    ///         .aggregate(|ts: &u64| *ts, Count);
    ///     windows.results.capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|r| (r.window, r.key, r.value, r.diff)).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![
    ///     (Window { start: 0, end: 10 }, 'a', 2, 1),
    ///     (Window { start: 0, end: 10 }, 'b', 1, 1),
    ///     (Window { start: 10, end: 20 }, 'a', 1, 1),
    /// ]);
    /// ```
    pub fn window(self, assigner: WindowAssigner) -> WindowedStream<'scope, K, V> {
        WindowedStream {
            keyed: self,
            assigner,
            lateness: 0,
            gauge: StateGauge::default(),
        }
    }

    /// Names the keyed operator after what it computes, in timely's logs: `Join[what]`,
    /// `Reduce[what]`, `Window[what]` (windows are named by their assigner, in milliseconds,
    /// when not named).
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
    pub fn checkpoints(mut self, checkpoints: &Checkpoints) -> Self {
        self.checkpoints = checkpoints.clone();
        self
    }
}

impl<'scope, K: Key, V: Value> WindowedStream<'scope, K, V> {
    /// Keeps windows open for corrections until the frontier is `lateness` past their end.
    pub fn allowed_lateness(mut self, lateness: u64) -> Self {
        self.lateness = lateness;
        self
    }

    /// Reports this worker's live window state on `gauge` (entries of window and key).
    pub fn gauge(mut self, gauge: &StateGauge) -> Self {
        self.gauge = gauge.clone();
        self
    }

    /// Aggregates each window and key with `agg`; `event_time` reads a record's event time.
    pub fn aggregate<A, T>(self, event_time: T, agg: A) -> Windowed<'scope, K, A::Output, V>
    where
        A: Aggregator<V>,
        T: Fn(&V) -> u64 + Clone + 'static,
    {
        let WindowedStream {
            keyed,
            assigner,
            lateness,
            gauge,
        } = self;
        let checkpoints = keyed.checkpoints.clone();
        let (results, late) = match assigner {
            WindowAssigner::Tumbling(size) => {
                let state = FixedWindows::new(size, size, lateness, agg.clone(), gauge);
                route_window(
                    keyed,
                    assigner,
                    lateness,
                    event_time,
                    agg,
                    state,
                    &checkpoints,
                )
            }
            WindowAssigner::Sliding(size, slide) => {
                let state = FixedWindows::new(size, slide, lateness, agg.clone(), gauge);
                route_window(
                    keyed,
                    assigner,
                    lateness,
                    event_time,
                    agg,
                    state,
                    &checkpoints,
                )
            }
            WindowAssigner::Session(gap) => {
                let state = Sessions::new(gap, lateness, agg.clone(), gauge);
                route_window(
                    keyed,
                    assigner,
                    lateness,
                    event_time,
                    agg,
                    state,
                    &checkpoints,
                )
            }
        };
        Windowed { results, late }
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

/// As [`spread`], with each record's number (its position in its sender's output, the
/// sender's index in the high bits): the input order, for operators that apply records of one
/// time in that order.
pub(crate) fn spread_numbered<'scope, K: ExchangeData, V: ExchangeData>(
    stream: StreamVec<'scope, u64, (K, V)>,
) -> StreamVec<'scope, u64, (K, V, u64)> {
    let mut counter = (stream.scope().index() as u64) << 40;
    stream
        .map(move |(key, value)| {
            counter += 1;
            (key, value, counter)
        })
        .exchange(|(_, _, seq)| route_hash(seq))
}

/// Whether a broadcast worker reports `key`: each key is reported by the worker it hashes to.
pub(crate) fn owns<K: Hash>(key: &K, peers: usize, index: usize) -> bool {
    route_hash(key) % peers as u64 == index as u64
}

#[allow(clippy::type_complexity)]
fn route_window<'scope, K, V, A, T, S>(
    keyed: KeyedStream<'scope, K, V>,
    assigner: WindowAssigner,
    lateness: u64,
    event_time: T,
    agg: A,
    state: S,
    checkpoints: &Checkpoints,
) -> (
    StreamVec<'scope, u64, WindowResult<K, A::Output>>,
    StreamVec<'scope, u64, Late<K, V>>,
)
where
    K: Key,
    V: Value,
    A: Aggregator<V>,
    T: Fn(&V) -> u64 + Clone + 'static,
    S: WindowState<Part = Part<K, V, A::Acc>, Out = Emit<K, A::Output, V>>,
{
    let scope = keyed.stream.scope();
    let (peers, index) = (scope.peers(), scope.index());
    let name = keyed.name("Window", || assigner.describe(1_000_000));
    let cut = checkpoints.cut(&name);
    let time = event_time.clone();
    let record = move |(key, record): (K, V)| Part::Record {
        ts: time(&record),
        key,
        record,
    };
    match keyed.partitioner {
        _ if peers == 1 => drive(keyed.stream, Pipeline, &name, record, state, cut),
        Partitioner::Hash | Partitioner::Range(_) => {
            let partitioner = keyed.partitioner;
            let pact = Exchange::new(move |(key, _): &(K, V)| partitioner.route(key));
            drive(keyed.stream, pact, &name, record, state, cut)
        }
        Partitioner::Random => {
            let partials = partial_aggregate(
                spread_numbered(keyed.stream),
                assigner,
                lateness,
                event_time,
                agg,
            );
            let pact = Exchange::new(|part: &Part<K, V, A::Acc>| route_hash(part.key()));
            drive(partials, pact, &name, |part| part, state, cut)
        }
        Partitioner::Broadcast => {
            let (results, late) = drive(
                keyed.stream.broadcast(),
                Pipeline,
                &name,
                record,
                state,
                cut,
            );
            (
                results.filter(move |row| owns(&row.key, peers, index)),
                late.filter(move |record| owns(&record.key, peers, index)),
            )
        }
    }
}
