//! Keyed windows: `window`, `allowed_lateness`, `gauge` and `aggregate` on a keyed stream.
//!
//! This file is the keyed window operator's home: its builder, and how each partitioner routes
//! records to the window driver (`crate::window::driver`), which owns time (deferral, closes,
//! capabilities, checkpoint cuts). The window kinds' state machines live in `crate::window`.

use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::{Broadcast, Filter};
use timely::dataflow::StreamVec;
use timely::ExchangeData;

use super::{owns, spread_numbered, Key, KeyedStream, Pairs, Prepare, Routing, Value};
use crate::partition::route_hash;
use crate::window::driver::{drive, WindowState};
use crate::window::fixed::{FixedWindows, Part, StateGauge};
use crate::window::kind::WithKind;
use crate::window::partial::{combined, phase_one, Combine, Fold, PaneCombine};
use crate::window::session::Sessions;
use crate::window::{Aggregator, Emit, Late, Panes, WindowAssigner, WindowResult};

/// A keyed window, configured but not yet aggregated; see [`KeyedStream::window`]. `I` and `P`
/// are the keyed stream's items and how they become pairs (see [`KeyedStream`]).
pub struct WindowedStream<'scope, K, V, I = (K, V), P = Pairs> {
    keyed: KeyedStream<'scope, K, V, I, P>,
    assigner: WindowAssigner,
    pub(crate) lateness: u64,
    gauge: StateGauge,
    order: Option<fn(&V) -> u64>,
    local: bool,
}

/// The two outputs of a keyed window aggregation.
pub struct Windowed<'scope, K, O, V> {
    /// The changelog of window results: each window once when it closes, and corrections.
    pub results: StreamVec<'scope, u64, WindowResult<K, O>>,
    /// Records that arrived beyond the allowed lateness, once per window missed.
    pub late: StreamVec<'scope, u64, Late<K, V>>,
}

impl<'scope, K: Key, V: Value, I, P> KeyedStream<'scope, K, V, I, P> {
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
    pub fn window(self, assigner: WindowAssigner) -> WindowedStream<'scope, K, V, I, P> {
        WindowedStream {
            keyed: self,
            assigner,
            lateness: 0,
            gauge: StateGauge::default(),
            order: None,
            local: false,
        }
    }
}

impl<'scope, K: Key, V: Value, I, P> WindowedStream<'scope, K, V, I, P>
where
    I: 'static,
    P: Prepare<I, K, V>,
{
    /// Keeps windows open for corrections until the frontier is `lateness` past their end.
    ///
    /// # Examples
    ///
    /// A record behind the watermark within the lateness corrects its emitted window (the old
    /// value retracted, the new one added); one beyond it goes to the late output.
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::InputHandleVec;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Count, Window, WindowAssigner};
    ///
    /// let (results, late) = timely::execute_directly(|worker| {
    ///     let mut input = InputHandleVec::<u64, (char, u64)>::new();
    ///     let captured = worker.dataflow::<u64, _, _>(|scope| {
    ///         let windowed = input
    ///             .to_stream(scope)
    ///             .key_by(Partitioner::Hash)
    ///             .window(WindowAssigner::Tumbling(10))
    ///             .allowed_lateness(5)
    ///             .aggregate(|ts: &u64| *ts, Count);
    ///         (windowed.results.capture(), windowed.late.capture())
    ///     });
    ///     input.send(('a', 3));
    ///     input.advance_to(12); // the watermark passes 9: [0, 10) is emitted
    ///     input.send(('a', 4)); // 12 < 10 + 5: a correction
    ///     input.advance_to(16);
    ///     input.send(('a', 5)); // 16 >= 10 + 5: late
    ///     captured
    /// });
    /// let mut rows: Vec<_> = results.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|r| (r.value, r.diff)).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![(1, -1), (1, 1), (2, 1)]);
    /// let late: Vec<_> = late.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|l| (l.window, l.record)).collect();
    /// assert_eq!(late, vec![(Window { start: 0, end: 10 }, 5)]);
    /// ```
    pub fn allowed_lateness(mut self, lateness: u64) -> Self {
        self.lateness = lateness;
        self
    }

    /// Applies records that share a time in the order of `order`, a record's position in the
    /// input, instead of the order they arrive in.
    ///
    /// Only session windows need it: whether a record behind the watermark is late depends on
    /// the sessions the records of its time before it opened (Flink's rule for merging windows,
    /// see [`crate::window::session`]). Where one worker reads the input, arrival order is the
    /// input order and this is not needed. Where several workers read one input (a file's
    /// blocks, a topic's partitions), records that share a time arrive from several readers in
    /// an order that depends on timing, and results with them; `order` makes them the
    /// results of the input order. Numbers must be distinct among records that share a time
    /// and key, and increase in the input order (`tidemark window` uses
    /// [`crate::source::csv::CsvRecord::pos`]).
    ///
    /// # Examples
    ///
    /// Two records behind the watermark at time 21 arrive in the reverse of their input order.
    /// In input order, event time 0 comes first: its session `[0, 14)` is beyond the lateness
    /// (`14 + 6 <= 21`), so it is late, and event time 10 opens `[10, 24)` alone. In arrival
    /// order, 10 would come first and 0 would merge into `[0, 24)`.
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::InputHandleVec;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Count, Window, WindowAssigner};
    ///
    /// /// An event time and a position in the input.
    /// type Event = (u64, u64);
    /// let (results, late) = timely::execute_directly(|worker| {
    ///     let mut input = InputHandleVec::<u64, (char, Event)>::new();
    ///     let captured = worker.dataflow::<u64, _, _>(|scope| {
    ///         let windowed = input
    ///             .to_stream(scope)
    ///             .key_by(Partitioner::Hash)
    ///             .window(WindowAssigner::Session(14))
    ///             .allowed_lateness(6)
    ///             .ordered_by(|e: &Event| e.1)
    ///             .aggregate(|e: &Event| e.0, Count);
    ///         (windowed.results.capture(), windowed.late.capture())
    ///     });
    ///     input.advance_to(21);
    ///     input.send(('a', (10, 1)));
    ///     input.send(('a', (0, 0)));
    ///     captured
    /// });
    /// let rows: Vec<_> = results.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|r| (r.window, r.value)).collect();
    /// assert_eq!(rows, vec![(Window { start: 10, end: 24 }, 1)]);
    /// let late: Vec<_> = late.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|l| (l.window, l.record)).collect();
    /// assert_eq!(late, vec![(Window { start: 0, end: 14 }, (0, 0))]);
    /// ```
    pub fn ordered_by(mut self, order: fn(&V) -> u64) -> Self {
        self.order = Some(order);
        self
    }

    /// Local aggregation before the exchange (Flink SQL's local-global, or two-phase,
    /// aggregation): with the `Hash` and `Range` partitioners on several workers, each worker
    /// folds the records it keys into one partial aggregate per key and pane for each time
    /// (timestamp) of its input, in the operator that keys them, and only the partials cross
    /// the exchange. Results, corrections and late rows are exactly those without it: a
    /// partial holds on-time records of one pane (whose windows are all open at the time, as
    /// for the records themselves), merged with [`Aggregator::merge`], and a record behind the
    /// watermark is still sent once per window it missed (see `crate::window::partial`).
    ///
    /// It pays where keys repeat within a timestamp (few or hot keys: NEXMark q5 on 2 workers
    /// ran 3.4x to 4.6x faster with it, see `experiments/README.md`) and costs a table probe
    /// per record where they seldom do; where a timestamp's records as one activation of the
    /// keying operator finds them (a stamp), 256 or more, fold into more partials than half
    /// their number, records pass unfolded for the next 16 stamps (doubling up to 1024) and
    /// folding is tried again. Even so, a file of 10 k keys
    /// read in blocks took 1.25x the CPU time with it on 2 workers, so it is off unless asked
    /// for. Session windows, one worker and the other partitioners ignore it (the random
    /// partitioner always aggregates in two phases).
    ///
    /// # Examples
    ///
    /// Two workers, each folding its share of key `'a'` before the exchange: one count.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use timely::dataflow::operators::Inspect;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{Count, WindowAssigner};
    ///
    /// let rows = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&rows);
    /// timely::execute(timely::Config::process(2), move |worker| {
    ///     let sink = Arc::clone(&sink);
    ///     let index = worker.index() as u64;
    ///     worker.dataflow::<u64, _, _>(|scope| {
    ///         vec![('a', 1 + index), ('a', 3 + index), ('b', 5)]
    ///             .to_stream(scope)
    ///             .key_by(Partitioner::Hash)
    ///             .window(WindowAssigner::Tumbling(10))
    ///             .local_aggregation()
    ///             .aggregate(|ts: &u64| *ts, Count)
    ///             .results
    ///             .inspect(move |r| sink.lock().unwrap().push((r.key, r.value)));
    ///     });
    /// })
    /// .unwrap();
    /// let mut rows = rows.lock().unwrap().clone();
    /// rows.sort();
    /// assert_eq!(rows, vec![('a', 4), ('b', 2)]);
    /// ```
    pub fn local_aggregation(mut self) -> Self {
        self.local = true;
        self
    }

    /// Reports this worker's live window state on `gauge` (entries of window and key).
    ///
    /// # Examples
    ///
    /// Two keys in one window: two live entries at the peak, none once the input has ended and
    /// the window is freed.
    ///
    /// ```
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::fixed::StateGauge;
    /// use tidemark::window::{Count, WindowAssigner};
    ///
    /// let (peak, live) = timely::execute_directly(|worker| {
    ///     let gauge = StateGauge::default();
    ///     worker.dataflow::<u64, _, _>(|scope| {
    ///         vec![('a', 1u64), ('b', 2), ('a', 3)]
    ///             .to_stream(scope)
    ///             .key_by(Partitioner::Hash)
    ///             .window(WindowAssigner::Tumbling(10))
    ///             .gauge(&gauge)
    ///             .aggregate(|ts: &u64| *ts, Count);
    ///     });
    ///     while worker.step() {}
    ///     (gauge.peak(), gauge.live())
    /// });
    /// assert_eq!((peak, live), (2, 0));
    /// ```
    pub fn gauge(mut self, gauge: &StateGauge) -> Self {
        self.gauge = gauge.clone();
        self
    }

    /// Aggregates each window and key with `agg`; `event_time` reads a record's event time.
    ///
    /// # Examples
    ///
    /// The mean amount per key in sliding windows of 10 every 5:
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Extract};
    /// use timely::dataflow::operators::vec::ToStream;
    /// use tidemark::keyed::KeyBy;
    /// use tidemark::partition::Partitioner;
    /// use tidemark::window::{on, Mean, WindowAssigner};
    ///
    /// /// An event time and an amount.
    /// type Payment = (u64, i64);
    /// let captured = timely::example(|scope| {
    ///     vec![('a', (1u64, 4i64)), ('a', (7, 8))]
    ///         .to_stream(scope)
    ///         .key_by(Partitioner::Random)
    ///         .window(WindowAssigner::Sliding(10, 5))
    ///         .aggregate(|p: &Payment| p.0, on(Mean, |p: &Payment| p.1))
    ///         .results
    ///         .capture()
    /// });
    /// let mut rows: Vec<_> = captured.extract().into_iter().flat_map(|(_, rows)| rows)
    ///     .map(|r| (r.window.start, r.value.to_string())).collect();
    /// rows.sort();
    /// assert_eq!(rows, vec![(-5, "4".into()), (0, "6".into()), (5, "8".into())]);
    /// ```
    pub fn aggregate<A, T>(self, event_time: T, agg: A) -> Windowed<'scope, K, A::Output, V>
    where
        A: Aggregator<V>,
        T: Fn(&V) -> u64 + Clone + 'static,
    {
        self.assigner.with_kind(Aggregate {
            windowed: self,
            event_time,
            agg,
        })
    }
}

/// A keyed window aggregation waiting for its window kind, which gives the state machine the
/// driver runs and the fold of phase one (random partitioning, `crate::window::partial`);
/// [`route`] does the rest.
pub(crate) struct Aggregate<'scope, K, V, A, T, I = (K, V), P = Pairs> {
    pub(crate) windowed: WindowedStream<'scope, K, V, I, P>,
    pub(crate) event_time: T,
    pub(crate) agg: A,
}

impl<'scope, K, V, A, T, I, P> WithKind for Aggregate<'scope, K, V, A, T, I, P>
where
    K: Key,
    V: Value,
    A: Aggregator<V>,
    T: Fn(&V) -> u64 + Clone + 'static,
    I: 'static,
    P: Prepare<I, K, V>,
{
    type Out = Windowed<'scope, K, A::Output, V>;

    fn fixed(self, panes: Panes) -> Self::Out {
        let (lateness, gauge) = (self.windowed.lateness, self.windowed.gauge.clone());
        let state = FixedWindows::new(panes.size, panes.slide, lateness, self.agg.clone(), gauge);
        let fold = self.fold_fixed(panes);
        let combine = self
            .windowed
            .local
            .then(|| PaneCombine::new(panes, lateness, self.event_time.clone(), self.agg.clone()));
        route(self.windowed, self.event_time, state, fold, combine)
    }

    fn sessions(self, gap: u64) -> Self::Out {
        let (lateness, gauge) = (self.windowed.lateness, self.windowed.gauge.clone());
        let state =
            Sessions::new(gap, lateness, self.agg.clone(), gauge).ordered_by(self.windowed.order);
        let fold = self.fold_sessions(gap);
        // Sessions fold only on-time records, per key and run: folded before the exchange, a
        // time's records cost a sort per key, more than the exchange saves.
        let combine = None::<PaneCombine<K, V, A, T>>;
        route(self.windowed, self.event_time, state, fold, combine)
    }
}

/// Runs `state` under the window driver, with records routed to it by the keyed stream's
/// routing plan; `fold` is phase one of the random partitioner (see [`phase_one`]). On one
/// worker the driver reads the keyed stream's items and prepares each as it offers it. With
/// `Hash` and `Range` on several workers, `combine` (where given, see
/// [`WindowedStream::local_aggregation`]) folds each worker's prepared
/// records into partial aggregates, in one operator with the map before it, and only the
/// partials are exchanged by key: exact for the reasons phase one is (see [`phase_one`]).
/// Every other routing exchanges pairs, prepared first by an operator of their own.
fn route<'scope, K, V, T, S, F, C, Acc, O, I, P>(
    windowed: WindowedStream<'scope, K, V, I, P>,
    event_time: T,
    mut state: S,
    fold: F,
    combine: Option<C>,
) -> Windowed<'scope, K, O, V>
where
    K: Key,
    V: Value,
    T: Fn(&V) -> u64 + 'static,
    S: WindowState<Part = Part<K, V, Acc>, Out = Emit<K, O, V>>,
    F: Fold<K, V, Acc>,
    C: Combine<K, V, Acc>,
    Acc: ExchangeData,
    O: 'static,
    I: 'static,
    P: Prepare<I, K, V>,
{
    let WindowedStream {
        keyed,
        assigner,
        order,
        ..
    } = windowed;
    let routing = keyed.routing();
    let name = keyed.name("Window", || assigner.describe(1_000_000));
    // Restoring: the operator starts from the state at the checkpoint resumed from.
    let (cut, restored) = keyed.checkpoints.cut_restored(&name);
    if let Some(restored) = restored {
        state.restore(restored);
    }
    let record = move |(key, record): (K, V)| {
        Some(Part::Record {
            ts: event_time(&record),
            key,
            record,
        })
    };
    // Off one worker, pairs are exchanged: prepared first, by an operator of their own.
    let prepare_name = keyed.name("Prepare", || assigner.describe(1_000_000));
    let KeyedStream {
        stream,
        mut prepare,
        ..
    } = keyed;
    let (results, late) = match routing {
        Routing::Local => {
            let prepared = move |item| prepare.prepare(item).and_then(&record);
            drive(stream, Pipeline, &name, prepared, state, cut)
        }
        Routing::ByKey(partitioner) => match combine {
            Some(combine) => {
                let partials = combined(stream, prepare, combine, &prepare_name);
                let pact =
                    Exchange::new(move |part: &Part<K, V, Acc>| partitioner.route(part.key()));
                drive(partials, pact, &name, Some, state, cut)
            }
            None => {
                let pact = Exchange::new(move |(key, _): &(K, V)| partitioner.route(key));
                let pairs = prepare.pairs(stream, &prepare_name);
                drive(pairs, pact, &name, record, state, cut)
            }
        },
        Routing::TwoPhase => {
            let pairs = prepare.pairs(stream, &prepare_name);
            let partials = phase_one(spread_numbered(pairs, order), fold);
            let pact = Exchange::new(|part: &Part<K, V, Acc>| route_hash(part.key()));
            drive(partials, pact, &name, Some, state, cut)
        }
        Routing::Everywhere { peers, index } => {
            let (results, late) = drive(
                prepare.pairs(stream, &prepare_name).broadcast(),
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
    };
    Windowed { results, late }
}
