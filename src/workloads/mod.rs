//! Named benchmark workloads: a deterministic generator, a query built from tidemark's
//! operators, and a competent single-threaded baseline over the same events (COST).
//!
//! This module owns *what* is computed; the harness ([`crate::harness`]) owns how it is fed and
//! measured. Every workload's engine dataflow and baseline produce the same outputs on the same
//! events (tested on small inputs), so the engine/baseline ratio compares equal work.
//!
//! Time: the harness stamps each event with an event time in nanoseconds (its due time) and
//! sends it at the epoch containing it (`time - time % epoch`, never above the event time), so
//! in-order generated data is never late and windows close when the epoch frontier passes them.

use std::fmt::Debug;

use differential_dataflow::VecCollection;
use timely::dataflow::StreamVec;
use timely::ExchangeData;

pub mod nexmark;
pub mod wordcount;
pub mod ysb;

/// A benchmark workload.
pub trait Workload: Clone + Send + Sync + 'static {
    /// One input event.
    type Event: ExchangeData + Clone + Sync;
    /// One output row; engine and baseline must produce the same multiset of rows.
    type Output: ExchangeData + Clone + Ord + Debug;
    /// The events of one worker, in order (an endless or long iterator; the harness takes what
    /// it needs, before timing).
    type Generator: Iterator<Item = Self::Event>;
    /// The single-threaded baseline.
    type Baseline: Baseline<Self::Event, Self::Output>;

    /// The workload's name, as reported (`ysb`, `wordcount`, `nexmark`).
    fn name(&self) -> &'static str;
    /// The query within the workload (`q7` for NEXMark; otherwise the name).
    fn query(&self) -> String;
    /// The workload's parameters, for the report and the configuration hash.
    fn parameters(&self) -> String;
    /// The deterministic event stream of `worker` among `workers`, for `seed`. Together the
    /// workers' streams form the workload's single logical stream.
    fn generator(&self, seed: u64, worker: usize, workers: usize) -> Self::Generator;
    /// The event time of an event, in nanoseconds.
    fn event_time(event: &Self::Event) -> u64;
    /// Sets the event time of an event (the harness replays a pool with shifted times).
    fn set_event_time(event: &mut Self::Event, time_ns: u64);
    /// The engine's dataflow over the events; its output is what the harness probes.
    fn dataflow<'scope>(
        &self,
        events: StreamVec<'scope, u64, Self::Event>,
    ) -> StreamVec<'scope, u64, Self::Output>;
    /// A fresh baseline.
    fn baseline(&self) -> Self::Baseline;
    /// Whether the workload has an incremental version ([`Workload::incremental`]).
    fn has_incremental(&self) -> bool {
        false
    }
    /// The query as an incremental differential-dataflow view (`--engine differential`): a
    /// collection whose consolidation, once the input has ended, is the multiset of rows the
    /// timely dataflow emits (for queries whose timely rows are a running answer, such as q4's
    /// running averages, the view holds the latest row of each group). `None` where
    /// [`Workload::has_incremental`] is false.
    fn incremental<'scope>(
        &self,
        events: StreamVec<'scope, u64, Self::Event>,
    ) -> Option<VecCollection<'scope, u64, Self::Output>> {
        drop(events);
        None
    }
}

/// A hand-written single-threaded implementation of a workload's query.
pub trait Baseline<E, O> {
    /// Processes a batch of events. Their times are at or above every earlier `advance`.
    fn process(&mut self, events: &mut Vec<E>, out: &mut Vec<O>);
    /// No event with a time below `frontier` (ns) follows: emits what that completes.
    fn advance(&mut self, frontier: u64, out: &mut Vec<O>);
}
