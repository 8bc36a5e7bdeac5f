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

use crate::partition::Scheme;
use crate::stash::Checkpoints;

/// The workload registry: `tidemark bench`'s workloads, each its doc line (the `--help` text),
/// its variant of [`WorkloadName`], its field in [`WorkloadFlags`] (also its name on the
/// command line) and its type, which implements [`Registered`]. Adding a workload is its file,
/// its `pub mod` line above and one entry here. The `pub mod` line stays outside the macro on
/// purpose: rustfmt does not follow modules a macro declares, so `cargo fmt --check` would no
/// longer check the workload's file.
macro_rules! workloads {
    ($( $(#[$doc:meta])* $variant:ident $field:ident => $workload:ty, )*) => {
        /// The workloads of `tidemark bench`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
        pub enum WorkloadName {
            $( $(#[$doc])* $variant, )*
        }

        /// Every workload's own flags, flattened into `tidemark bench`'s arguments.
        #[derive(Clone, Debug, clap::Args)]
        pub struct WorkloadFlags {
            $(
                #[allow(missing_docs)]
                #[command(flatten)]
                pub $field: <$workload as Registered>::Flags,
            )*
        }

        impl WorkloadName {
            /// The workload's name, as typed and reported (`ysb`, `wordcount`, `nexmark`).
            pub fn name(self) -> &'static str {
                match self {
                    $( WorkloadName::$variant => stringify!($field), )*
                }
            }

            /// The workloads that read the shared flag `flag` (`window`, `partitioner`), by
            /// name, in registry order: the registry is the one list of who reads what.
            fn reading(flag: &str) -> Vec<&'static str> {
                let mut names = Vec::new();
                $(
                    if <$workload as Registered>::SHARED.contains(&flag) {
                        names.push(stringify!($field));
                    }
                )*
                names
            }

            /// Builds the workload from the flags (checking them all: another workload's own
            /// flags are refused, as they would be ignored) and hands it to `run`.
            pub fn build<R: WithWorkload>(
                self,
                flags: &WorkloadFlags,
                shared: &SharedFlags,
                run: R,
            ) -> Result<R::Out, FlagError> {
                let mut others: Vec<&'static str> = Vec::new();
                $(
                    if self != WorkloadName::$variant {
                        others.extend(<$workload as Registered>::given(&flags.$field));
                    }
                )*
                if let Some(flag) = others.first() {
                    return Err(self.not_applying(flag));
                }
                match self {
                    $(
                        WorkloadName::$variant => {
                            let shared = shared.for_workload::<$workload>(self)?;
                            let workload = <$workload as Registered>::from_flags(&flags.$field, &shared)?;
                            Ok(run.run(workload))
                        }
                    )*
                }
            }
        }
    };
}

workloads! {
    /// Yahoo Streaming Benchmark: 10 s tumbling view count per campaign.
    Ysb ysb => ysb::Ysb,
    /// Keyed running count of words.
    Wordcount wordcount => wordcount::WordCount,
    /// NEXMark auctions, persons and bids; choose the query with `--query`.
    Nexmark nexmark => nexmark::Nexmark,
}

/// A workload `tidemark bench` runs: its own command-line flags and how it is built from them.
/// Registered in the registry of `src/workloads/mod.rs`, which makes it a [`WorkloadName`].
pub trait Registered: Workload + Sized {
    /// The workload's own flags (a clap argument group; every field optional, so that a flag
    /// given for another workload can be refused by name).
    type Flags: clap::Args + Clone + Debug;
    /// The flags shared by several workloads that this one reads, by name (`window`,
    /// `partitioner`); the others are refused for it.
    const SHARED: &'static [&'static str];
    /// The names (without `--`) of the workload's own flags that were given.
    fn given(flags: &Self::Flags) -> Vec<&'static str>;
    /// The workload the flags describe; an error names the flag and its bounds.
    fn from_flags(flags: &Self::Flags, shared: &SharedFlags) -> Result<Self, FlagError>;
}

/// A run over whichever workload was chosen (the registry calls [`WithWorkload::run`] with it).
pub trait WithWorkload {
    /// What the run returns.
    type Out;
    /// Runs with `workload`.
    fn run<W: Registered>(self, workload: W) -> Self::Out;
}

/// The flags several workloads share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedFlags {
    /// `--window` (ns), where given.
    pub window: Option<u64>,
    /// `--partitioner`.
    pub partitioner: Scheme,
}

impl SharedFlags {
    /// The shared flags, refusing those `W` does not read (`--window` given, or a
    /// `--partitioner` other than the default `hash`) and a zero `--window`.
    fn for_workload<W: Registered>(self, name: WorkloadName) -> Result<SharedFlags, FlagError> {
        if self.window.is_some() && !W::SHARED.contains(&"window") {
            return Err(name.not_applying("window"));
        }
        if self.window == Some(0) {
            return Err(FlagError("--window must be positive".into()));
        }
        if self.partitioner != Scheme::Hash && !W::SHARED.contains(&"partitioner") {
            return Err(FlagError(format!(
                "--partitioner applies to {}; {} uses hash",
                WorkloadName::reading("partitioner").join(", "),
                name.name()
            )));
        }
        Ok(self)
    }
}

impl WorkloadName {
    fn not_applying(self, flag: &str) -> FlagError {
        FlagError(format!(
            "--{flag} does not apply to {} (it would be ignored)",
            self.name()
        ))
    }
}

/// The value of the flag `--{flag}`, if given, checked to lie in `1..=max`.
///
/// Errors: [`FlagError`] naming the flag, its bounds and the value.
fn bounded<T>(flag: &str, value: Option<T>, max: T) -> Result<Option<T>, FlagError>
where
    T: Copy + PartialOrd + From<u8> + std::fmt::Display,
{
    match value {
        Some(value) if value < T::from(1) || value > max => Err(FlagError(format!(
            "--{flag} must be between 1 and {max}, got {value}"
        ))),
        _ => Ok(value),
    }
}

/// A workload's flags out of bounds or not its own: the one-line message, naming the flag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

/// A benchmark workload.
pub trait Workload: Clone + Send + Sync + 'static {
    /// One input event.
    type Event: ExchangeData + Clone + Sync;
    /// One output row; engine and baseline must produce the same multiset of rows.
    type Output: ExchangeData + Clone + Ord + Debug;

    /// The workload's name, as reported (`ysb`, `wordcount`, `nexmark`): a property of the
    /// type, the same for every parameter choice.
    const NAME: &'static str;
    /// The query within the workload (`q7` for NEXMark); by default the workload's name.
    fn query(&self) -> String {
        Self::NAME.to_string()
    }
    /// The workload's parameters, for the report and the configuration hash.
    fn parameters(&self) -> String;
    /// The deterministic event stream of `worker` among `workers`, for `seed`, in order (an
    /// endless or long iterator; the harness takes what it needs, before timing). Together the
    /// workers' streams form the workload's single logical stream. It borrows nothing from
    /// the workload (`use<Self>`), so a caller may keep it after the workload is gone.
    fn generator(
        &self,
        seed: u64,
        worker: usize,
        workers: usize,
    ) -> impl Iterator<Item = Self::Event> + use<Self>;
    /// The event time of an event, in nanoseconds.
    fn event_time(event: &Self::Event) -> u64;
    /// Sets the event time of an event (the harness replays a pool with shifted times).
    fn set_event_time(event: &mut Self::Event, time_ns: u64);
    /// The engine's dataflow over the events; its output is what the harness probes:
    /// [`Workload::checkpointed`] without checkpoints.
    fn dataflow<'scope>(
        &self,
        events: StreamVec<'scope, u64, Self::Event>,
    ) -> StreamVec<'scope, u64, Self::Output> {
        self.checkpointed(events, &Checkpoints::default())
    }
    /// A fresh single-threaded baseline. Boxed: the harness calls it once per batch, so the
    /// indirect call does not show in its rate, and a workload with one baseline per query
    /// (NEXMark) needs no forwarding wrapper.
    fn baseline(&self) -> Box<dyn Baseline<Self::Event, Self::Output>>;
    /// Whether [`Workload::checkpointed`] hands the workload's operator state to checkpoints
    /// (`tidemark bench --checkpoint-dir`).
    fn has_checkpoints(&self) -> bool {
        false
    }
    /// The engine's dataflow with every stateful operator handing its state value to
    /// `checkpoints` at each cut ([`crate::stash`]); with `Checkpoints::default()` it is
    /// [`Workload::dataflow`]. A workload whose operators do not snapshot ignores
    /// `checkpoints` and says so with [`Workload::has_checkpoints`] (false by default).
    fn checkpointed<'scope>(
        &self,
        events: StreamVec<'scope, u64, Self::Event>,
        checkpoints: &Checkpoints,
    ) -> StreamVec<'scope, u64, Self::Output>;
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

/// The seed of `worker`'s generator among `workers` for the run's `seed`: distinct per worker
/// and per worker count, so that no two workers, and no two layouts, replay one stream.
pub(crate) fn worker_seed(seed: u64, worker: usize, workers: usize) -> u64 {
    seed ^ ((worker as u64) << 32) ^ workers as u64
}

/// A hand-written single-threaded implementation of a workload's query.
pub trait Baseline<E, O> {
    /// Processes a batch of events. Their times are at or above every earlier `advance`.
    fn process(&mut self, events: &mut Vec<E>, out: &mut Vec<O>);
    /// No event with a time below `frontier` (ns) follows: emits what that completes.
    fn advance(&mut self, frontier: u64, out: &mut Vec<O>);
}

/// A boxed baseline ([`Workload::baseline`]) is a baseline.
impl<E, O, B: Baseline<E, O> + ?Sized> Baseline<E, O> for Box<B> {
    fn process(&mut self, events: &mut Vec<E>, out: &mut Vec<O>) {
        (**self).process(events, out);
    }

    fn advance(&mut self, frontier: u64, out: &mut Vec<O>) {
        (**self).advance(frontier, out);
    }
}
