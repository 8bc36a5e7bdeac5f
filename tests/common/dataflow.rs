//! The "feed worker 0, run on N workers, collect" kit of the property tests: records go in
//! through worker 0's [`VecFeed`] (the other workers read nothing, so every exchange is
//! exercised), each worker builds the same dataflow, and inspectors push rows into a
//! [`Collect`] read after the run. Also the window kinds, partitioners and aggregations every
//! property test runs through.

use std::cell::RefCell;
use std::fmt::Debug;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use differential_dataflow::ExchangeData;
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source, SourceOptions, VecFeed};
use tidemark::window::{on, Aggregator, Count, Max, Mean, Min, Sum, WindowAssigner};
use tidemark::{Fixed, WideFixed};
use timely::dataflow::operators::Inspect;
use timely::dataflow::{Scope, StreamVec};

use super::reference::{Agg, Event, Params, WindowKind, SCALE};

/// A record as the window operators see it: event time, value, index in the input (for late
/// rows).
pub type Rec = (u64, Fixed, usize);

/// `events` as the window operators read them: `(time, (key, (time, value, index)))`.
pub fn keyed_records(events: &[Event]) -> Vec<(u64, (String, Rec))> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.ts, (e.key.clone(), (e.ts, Fixed::from_nanos(e.value), i))))
        .collect()
}

/// Small batches exercise many activations and interleavings.
pub const OPTIONS: SourceOptions = SourceOptions {
    batch: 3,
    idle_timeout: None,
};

/// Rows pushed by every worker's inspectors, read once the run is over.
pub struct Collect<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Collect<T> {
    fn clone(&self) -> Self {
        Collect(Arc::clone(&self.0))
    }
}

impl<T> Default for Collect<T> {
    fn default() -> Self {
        Collect(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T> Collect<T> {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one row.
    pub fn push(&self, row: T) {
        self.0.lock().unwrap().push(row);
    }

    /// The rows pushed so far, sorted (their order across workers is not defined).
    pub fn sorted(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut rows = std::mem::take(&mut *self.0.lock().unwrap());
        rows.sort();
        rows
    }

    /// Pushes `row(time, record)` for every record of `stream`, `time` being the timely time it
    /// travels at (the changelog *with its times*); returns the stream.
    pub fn timed<'s, D: 'static>(
        &self,
        stream: StreamVec<'s, u64, D>,
        row: impl Fn(u64, &D) -> T + 'static,
    ) -> StreamVec<'s, u64, D>
    where
        T: 'static,
    {
        let out = self.clone();
        stream.inspect_core(move |event| {
            if let Ok((stamp, records)) = event {
                let time = *stamp.expect_singleton();
                for record in records.iter() {
                    out.push(row(time, record));
                }
            }
        })
    }
}

/// Runs on `workers` workers of one process: worker 0 gets a [`VecFeed`] of `records` (its
/// watermark `max_delay` behind the largest time read), the others `None`; `build` makes each
/// worker's dataflow from its scope and feed.
pub fn run_fed<D, F>(workers: usize, records: Vec<(u64, D)>, max_delay: u64, build: F)
where
    D: Send + 'static,
    F: for<'s> Fn(Scope<'s, u64>, Option<VecFeed<D>>) + Send + Sync + 'static,
{
    let input = Mutex::new(Some(records));
    timely::execute(timely::Config::process(workers), move |worker| {
        let feed = if worker.index() == 0 {
            let records = input.lock().unwrap().take();
            records.map(|records| VecFeed::new(records, max_delay))
        } else {
            None
        };
        worker.dataflow::<u64, _, _>(|scope| build(scope, feed));
    })
    .expect("timely runs");
}

/// The source every kit run reads: `feed` in batches of [`OPTIONS`], no error expected.
pub fn source<'s, D>(scope: Scope<'s, u64>, feed: Option<VecFeed<D>>) -> StreamVec<'s, u64, D>
where
    D: 'static,
{
    feed_source(scope, feed, OPTIONS, Rc::new(RefCell::new(None)))
}

/// The engine's assigner for a reference window kind.
pub fn assigner(kind: &WindowKind) -> WindowAssigner {
    match *kind {
        WindowKind::Tumbling { size } => WindowAssigner::Tumbling(size),
        WindowKind::Sliding { size, slide } => WindowAssigner::Sliding(size, slide),
        WindowKind::Session { gap } => WindowAssigner::Session(gap),
    }
}

/// Every partitioner, the range one with split points inside the generated keys.
pub fn partitioners() -> Vec<Partitioner<String>> {
    partitioners_split(vec!["b".into(), "k3".into()])
}

/// Every partitioner over keys of any type, the range one split at `split` (points a test
/// chooses inside its own keys).
pub fn partitioners_split<K>(split: Vec<K>) -> Vec<Partitioner<K>> {
    vec![
        Partitioner::Hash,
        Partitioner::Range(split),
        Partitioner::Random,
        Partitioner::Broadcast,
    ]
}

/// The worker counts every property test runs on.
pub const WORKERS: [usize; 3] = [1, 2, 4];

/// Every run shape of a property test: 1, 2 and 4 workers, each under every partitioner (see
/// [`partitioners`]).
pub fn layouts() -> Vec<(usize, Partitioner<String>)> {
    layouts_split(vec!["b".into(), "k3".into()])
}

/// Asserts that `run(workers, partitioner)` equals `first` (a run on 1 worker, hash) on every
/// one of [`layouts`]: the same rows whatever the workers and partitioner. `what` names the case
/// in a failure.
pub fn same_on_every_layout<R: PartialEq + Debug>(
    first: &R,
    what: &str,
    run: impl Fn(usize, &Partitioner<String>) -> R,
) {
    for (workers, partitioner) in layouts() {
        let got = run(workers, &partitioner);
        assert_eq!(&got, first, "{workers} workers, {partitioner:?}, {what}");
    }
}

/// [`layouts`] over keys of any type, the range partitioner split at `split`.
pub fn layouts_split<K: Clone>(split: Vec<K>) -> Vec<(usize, Partitioner<K>)> {
    WORKERS
        .into_iter()
        .flat_map(|workers| {
            partitioners_split(split.clone())
                .into_iter()
                .map(move |partitioner| (workers, partitioner))
        })
        .collect()
}

/// A run generic in its aggregation, called by [`with_agg`] with the engine's aggregator for a
/// reference [`Agg`] and how to read its output as a mantissa of [`SCALE`].
pub trait WithAgg {
    /// What the run returns.
    type Out;
    /// Runs with `agg`.
    fn run<A>(self, agg: A, mantissa: fn(&A::Output) -> i128) -> Self::Out
    where
        A: Aggregator<Rec> + Send + Sync,
        A::Output: ExchangeData + Ord;
}

/// One run of a property test: its input, the reference's parameters, the number of workers
/// and the partitioner. A test implements [`WithAgg`] for it and calls [`Case::run`].
pub struct Case<'a, I> {
    /// The input rows.
    pub input: &'a [I],
    /// Window kind, aggregation, delay and lateness.
    pub p: &'a Params,
    /// Workers of the one process.
    pub workers: usize,
    /// How keys are routed.
    pub partitioner: &'a Partitioner<String>,
}

impl<I> Case<'_, I> {
    /// The engine's assigner, the allowed lateness and the partitioner of the case.
    pub fn windows(&self) -> (WindowAssigner, u64, Partitioner<String>) {
        let kind = &self.p.kind;
        (assigner(kind), self.p.lateness, self.partitioner.clone())
    }

    /// Runs with the engine's aggregator for the case's aggregation.
    pub fn run(self) -> <Self as WithAgg>::Out
    where
        Self: WithAgg,
    {
        let agg = self.p.agg;
        with_agg(agg, self)
    }
}

/// Calls `run` with the engine's aggregator for `agg`.
pub fn with_agg<W: WithAgg>(agg: Agg, run: W) -> W::Out {
    let value = |r: &Rec| r.1;
    match agg {
        Agg::Count => run.run(Count, |n: &u64| *n as i128 * SCALE),
        Agg::Sum => run.run(on(Sum, value), |f: &WideFixed| {
            f.to_fixed().expect("small sums").nanos()
        }),
        Agg::Min => run.run(on(Min, value), |f: &Fixed| f.nanos()),
        Agg::Max => run.run(on(Max, value), |f: &Fixed| f.nanos()),
        Agg::Mean => run.run(on(Mean, value), |f: &Fixed| f.nanos()),
    }
}
