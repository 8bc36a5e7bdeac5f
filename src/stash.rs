//! The frontier stash: data kept per timestamp under a capability and released in time order
//! once the input frontier has passed that time; and the checkpoint cut that stateful operators
//! snapshot at.
//!
//! Every stateful operator of the engine that must not act on a time before its input is
//! complete (the window driver's deferred parts, the rolling reduce's updates, the NEXMark
//! auction operators' bids) keeps its pending input in a [`Stash`]; `delay_to` and `retime`
//! in [`crate::incremental`], whose updates wait at thousands of times, keep theirs under one
//! capability instead (see there). Invariants:
//!
//! * Each stashed time holds one capability per output port at that time, so the operator's
//!   output frontier cannot pass a time whose data has not been released.
//! * [`Stash::pop_passed`] releases times in increasing order, and only times the input frontier
//!   has passed (`t < limit`), so no record at a released time can still arrive.
//!   [`Stash::pop_through`] with the frontier's limit releases a time the frontier has
//!   reached (`t <= limit`), for an operator whose records at a time never add to the stash at
//!   that time.
//!
//! # Checkpoint cuts
//!
//! A checkpoint at time `c` must capture every operator's state as of *exactly* the records at
//! times `<= c`: the source's replay position at `c` then says which records come again. Two
//! rules make an operator's snapshot exact:
//!
//! 1. While a cut at `c` is pending ([`Cut::beyond`]), an operator that would apply records on
//!    arrival (the window driver's in-order fast path, the join) stashes records at times `> c`
//!    instead of applying them.
//! 2. It takes the snapshot ([`Cut::take_passed`]) once its input frontier has passed `c` and
//!    everything at times `<= c` (stashed data, window closes) has been applied, before
//!    anything at a time `> c`.
//!
//! The snapshot is then the operator's state value alone: its stash holds only times `> c`,
//! which the replay delivers again, and its capabilities follow from the state (pending closes)
//! and are re-created from the operator's initial capability on restore.
//!
//! # Restoring
//!
//! A dataflow built with [`Checkpoints::restoring`] hands each operator that asks through
//! [`Checkpoints::cut_restored`] its state value at the checkpoint, by operator id; the operator
//! starts from it (the window operators through their `restore`, the rolling reduce with its
//! running values) and the input must resume with exactly the records after the cut.
//! [`Checkpoints::restore_result`] reports a missing or undecodable state, an operator that
//! cannot restore (the join, the NEXMark auction operators: they use [`Checkpoints::cut`]),
//! and a state no operator took.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::progress::frontier::AntichainRef;

/// Data of type `D` stashed per time, with one capability per output port (`PORTS`) held at
/// each stashed time.
///
/// # Examples
///
/// ```
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use timely::dataflow::operators::vec::ToStream;
/// use timely::dataflow::operators::{Operator, Probe};
/// use timely::dataflow::channels::pact::Pipeline;
/// use tidemark::stash::{limit, Stash};
///
/// // Sums the records of each time, emitted once the frontier has passed the time.
/// let captured = timely::example(|scope| {
///     vec![3u64, 4, 5]
///         .to_stream(scope)
///         .unary_frontier(Pipeline, "SumPerTime", |_cap, _info| {
///             let mut stash: Stash<Vec<u64>> = Stash::new();
///             move |(input, frontier), output| {
///                 input.for_each_stamp(|cap, batches| {
///                     let pending = stash.at(&cap);
///                     for batch in batches {
///                         pending.append(batch);
///                     }
///                 });
///                 while let Some((_time, [cap], values)) = stash.pop_passed(limit(frontier.frontier())) {
///                     output.session(&cap).give(values.iter().sum::<u64>());
///                 }
///             }
///         })
///         .container::<Vec<u64>>()
///         .capture()
/// });
/// let sums: Vec<_> = captured.extract();
/// assert_eq!(sums, vec![(0, vec![12])]);
/// ```
pub struct Stash<D, const PORTS: usize = 1> {
    pending: BTreeMap<u64, ([Capability<u64>; PORTS], D)>,
}

impl<D: Default, const PORTS: usize> Default for Stash<D, PORTS> {
    fn default() -> Self {
        Stash {
            pending: BTreeMap::new(),
        }
    }
}

impl<D: Default, const PORTS: usize> Stash<D, PORTS> {
    /// An empty stash.
    pub fn new() -> Self {
        Self::default()
    }

    /// The data stashed at `cap`'s time, created empty (retaining a capability at that time on
    /// every output port) when the time is new.
    #[inline]
    pub fn at(&mut self, cap: &InputCapability<u64>) -> &mut D {
        let time = *cap.least().expect("u64 stamps are never empty");
        self.at_time(cap, time)
    }

    /// The data stashed at `time`, which must be at or after `cap`'s time: for an operator
    /// that moves data to a later time. Created empty when the time is new, retaining
    /// capabilities at `time` delayed from `cap`.
    ///
    /// Panics if `time` is before `cap`'s time (timely cannot delay a capability backwards).
    #[inline]
    pub fn at_time(&mut self, cap: &InputCapability<u64>, time: u64) -> &mut D {
        &mut self
            .pending
            .entry(time)
            .or_insert_with(|| {
                (
                    std::array::from_fn(|port| cap.delayed(&time, port)),
                    D::default(),
                )
            })
            .1
    }

    /// The earliest stashed time, if any.
    #[inline]
    pub fn first_time(&self) -> Option<u64> {
        self.pending.first_key_value().map(|(time, _)| *time)
    }

    /// Whether nothing is stashed.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes and returns the earliest stashed time with its capabilities and data, if the
    /// input frontier has passed it: `limit` is the frontier's least time, `None` when the
    /// input has ended (see [`limit`]).
    #[inline]
    pub fn pop_passed(&mut self, limit: Option<u64>) -> Option<(u64, [Capability<u64>; PORTS], D)> {
        self.pop_first_if(|time| limit.is_none_or(|least| time < least))
    }

    /// Removes and returns the earliest stashed time if it is at or before `bound` (any time
    /// when `bound` is `None`). Two uses: data held back only by a checkpoint cut, released
    /// once the cut is taken up to the next one ([`Cut::pending`]); and, with the frontier's
    /// [`limit`] as `bound`, a time the input frontier has *reached*, for an operator that
    /// sends what arrives at a time at once and stashes only data moved to later times, so
    /// that nothing can add to a stashed time once the frontier reaches it.
    #[inline]
    pub fn pop_through(
        &mut self,
        bound: Option<u64>,
    ) -> Option<(u64, [Capability<u64>; PORTS], D)> {
        self.pop_first_if(|time| bound.is_none_or(|bound| time <= bound))
    }

    /// Removes and returns the earliest stashed time if `release(time)`: the one rule of the
    /// `pop_*` methods is which earliest time they release.
    #[inline]
    fn pop_first_if(
        &mut self,
        release: impl FnOnce(u64) -> bool,
    ) -> Option<(u64, [Capability<u64>; PORTS], D)> {
        let entry = self.pending.first_entry()?;
        if !release(*entry.key()) {
            return None;
        }
        let (time, (caps, data)) = entry.remove_entry();
        Some((time, caps, data))
    }
}

/// The least time of a `u64` frontier, `None` when it is empty (the input has ended): every time
/// below it has passed.
#[inline]
pub fn limit(frontier: AntichainRef<'_, u64>) -> Option<u64> {
    frontier.first().copied()
}

/// A cut's hook: receives the pending cut, the bound of a range of cuts that may be taken at
/// once (every cut from the pending one up to the bound has passed, with no work between), a
/// function building the state value at a cut, and whether this is the last cut the operator
/// takes (its input ended: the value holds for every later cut too); returns the next cut,
/// later than every cut it took.
type Hook<V> = Box<dyn FnMut(u64, u64, &mut dyn FnMut(u64) -> V, bool) -> Option<u64>>;

/// Where an operator takes its checkpoint snapshots: the pending cut time and the hook that
/// receives the operator's state value `V` there (see the module docs for the two rules).
///
/// The hook returns the next cut, which must be later than the one just taken; `None` ends
/// checkpointing.
pub struct Cut<V> {
    next: Option<u64>,
    hook: Option<Hook<V>>,
}

impl<V> Default for Cut<V> {
    fn default() -> Self {
        Cut::none()
    }
}

impl<V> Cut<V> {
    /// No checkpoints: nothing is held back, no snapshot is taken.
    pub fn none() -> Self {
        Cut {
            next: None,
            hook: None,
        }
    }

    /// Cuts starting at `first`; at each, `hook(cut, state)` receives the state value and
    /// returns the next cut.
    pub fn new(first: u64, mut hook: impl FnMut(u64, V) -> Option<u64> + 'static) -> Self {
        Cut::with_last(first, move |cut, state, _last| hook(cut, state))
    }

    /// [`Cut::new`] with a hook that is also told whether the cut is the operator's last: the
    /// input ended, and the state value stands for every later cut (a restore from one does
    /// again the closes the state implies, and emits their rows once more, at times up to it).
    pub fn with_last(
        first: u64,
        mut hook: impl FnMut(u64, V, bool) -> Option<u64> + 'static,
    ) -> Self {
        Cut::ranged(first, move |cut, _bound, state, last| {
            hook(cut, state(cut), last)
        })
    }

    /// Cuts starting at `first`, taken a range at a time: `hook(cut, bound, state, last)`
    /// receives the pending cut and the bound of the cuts passed with no work between them
    /// (`bound >= cut`), chooses the last cut `l` of the range it takes (`cut <= l <= bound`),
    /// builds the state value there with `state(l)`, and returns the next cut (`> l`). The
    /// state at `l` stands for every cut of the range: see [`Cut::take_passed`].
    fn ranged(
        first: u64,
        hook: impl FnMut(u64, u64, &mut dyn FnMut(u64) -> V, bool) -> Option<u64> + 'static,
    ) -> Self {
        Cut {
            next: Some(first),
            hook: Some(Box::new(hook)),
        }
    }

    /// The pending cut, if any.
    pub fn pending(&self) -> Option<u64> {
        self.next
    }

    /// Whether records at `time` lie beyond the pending cut: they must be stashed, not applied,
    /// until the cut has been taken.
    #[inline]
    pub fn beyond(&self, time: u64) -> bool {
        self.next.is_some_and(|cut| time > cut)
    }

    /// Takes every pending cut that the input frontier has passed (`limit`, as in
    /// [`Stash::pop_passed`]) and that lies before `next_work`, the time of the operator's
    /// earliest pending work that has passed (`None`: none has). `state(cut)` builds the state
    /// value. Returns whether a cut was taken.
    ///
    /// Cuts are taken a range at a time when the sink allows it
    /// ([`SnapshotSink::last_cut_through`]): every cut from the pending one up to the bound
    /// `min(limit, next_work) - 1` gets one state value, built at the range's last cut. That
    /// value is the state at each cut of the range. Rule 1 of the module docs stashes every
    /// record at a time after the pending cut, so a record at a time in the range would be
    /// pending work below the bound: there is none, and every operator's state changes only
    /// by what the frontier alone does across the range (a window freed once the frontier
    /// passes its retention). No record at a time inside the range exists, before or after a
    /// restore from any of its cuts, so no record can tell the difference. A gap of a day in
    /// the event times of the input costs one snapshot, not one per interval.
    #[inline]
    pub fn take_passed(
        &mut self,
        limit: Option<u64>,
        next_work: Option<u64>,
        mut state: impl FnMut(u64) -> V,
    ) -> bool {
        let mut taken = false;
        while let Some(cut) = self.next {
            let passed = limit.is_none_or(|least| cut < least);
            if !passed || next_work.is_some_and(|work| work <= cut) {
                break;
            }
            // Both are above `cut`: the bound is at least the pending cut.
            let bound = limit
                .into_iter()
                .chain(next_work)
                .min()
                .map_or(u64::MAX, |least| least - 1);
            let hook = self.hook.as_mut().expect("a pending cut has a hook");
            // Once the input has ended and no work is left, every later cut would store the
            // same final state: the one just taken is the last, and the hook is told so.
            // Records still stashed change the state: a state taken before them is no last
            // one (the cuts before them are a range like any other). Work the state itself
            // implies, such as window closes, the operator may leave out of `next_work` once
            // its input ended (see the window driver).
            let last = limit.is_none() && next_work.is_none();
            let next = hook(cut, bound, &mut state, last);
            debug_assert!(next.is_none_or(|n| n > cut), "cuts must increase");
            self.next = next.filter(|_| !last);
            taken = true;
        }
        taken
    }
}

/// The cuts from a first to a last, both included, that one state value stands for
/// ([`SnapshotSink::write_range`]).
pub type Cuts = std::ops::RangeInclusive<u64>;

/// Where one worker's checkpoint snapshots go; implemented by the checkpoint writer.
pub trait SnapshotSink {
    /// The first cut, `None` for no checkpoints.
    fn first_cut(&self) -> Option<u64>;
    /// Receives `operator`'s state value at `cut`, encoded by [`encode`]; returns the next cut
    /// (later than `cut`), `None` to stop.
    fn write(&mut self, operator: &str, cut: u64, state: Vec<u8>) -> Option<u64>;
    /// Receives `operator`'s last state value, at `cut`, after its input ended: the value
    /// stands for `cut` and every later cut: restored at a later cut, the operator does the
    /// work the state implies (window closes) again, emitting its rows at times up to that cut
    /// once more, which a consumer resuming there already holds ([`crate::sink::commit`] drops
    /// them). The default hands it to [`SnapshotSink::write`].
    fn write_last(&mut self, operator: &str, cut: u64, state: Vec<u8>) {
        self.write(operator, cut, state);
    }
    /// The last cut of a range an operator may hand one state over for: its pending cut
    /// `first` and the later cuts up to `bound` (`bound >= first`) have passed with no work
    /// between them ([`Cut::take_passed`] says why one state stands for all of them). The
    /// default, `first`, takes one cut at a time; a sink that returns a later cut receives the
    /// range through [`SnapshotSink::write_range`].
    fn last_cut_through(&self, first: u64, bound: u64) -> u64 {
        let _ = bound;
        first
    }
    /// Receives `operator`'s state value for every cut of `cuts` (`first..=last`), the range
    /// [`SnapshotSink::last_cut_through`] chose; returns the next cut (later than `last`),
    /// `None` to stop. The default hands it to [`SnapshotSink::write`] at `first`, which is
    /// `last` under the default `last_cut_through`.
    fn write_range(&mut self, operator: &str, cuts: Cuts, state: Vec<u8>) -> Option<u64> {
        let (first, last) = cuts.into_inner();
        debug_assert_eq!(
            first, last,
            "a sink that ranges cuts implements write_range"
        );
        self.write(operator, first, state)
    }
}

/// A worker's checkpoint sink, shared by its operators, or none (the default).
#[derive(Clone, Default)]
pub struct Checkpoints(Option<Shared>);

/// What a worker's operators share: the sink, the operators counted so far, the states to
/// restore (by operator id) and the first error met restoring one.
#[derive(Clone)]
struct Shared {
    sink: SharedSink,
    count: Rc<Cell<usize>>,
    restored: Option<Rc<RefCell<OperatorStates>>>,
    error: Rc<RefCell<Option<RestoreError>>>,
}

/// Encoded state values by operator id (`N:name`): what a worker restores from.
pub type OperatorStates = BTreeMap<String, Vec<u8>>;

/// An operator's cut and, when restoring, its state at the checkpoint: what
/// [`Checkpoints::cut_restored`] returns.
pub type Restorable<V> = (Cut<V>, Option<V>);

/// A worker's sink, shared by its operators.
type SharedSink = Rc<RefCell<dyn SnapshotSink>>;

/// Why an operator could not be built from its restored state; the caller names the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot holds no state for an operator of this dataflow.
    #[error("it holds no state for operator {0} (written by another dataflow)")]
    Missing(String),
    /// The operator's state does not decode as this build's state type.
    #[error("the state of operator {operator} does not decode ({why})")]
    Undecodable {
        /// The operator id (`N:name`).
        operator: String,
        /// The decoder's message.
        why: String,
    },
    /// The operator takes snapshots but cannot be built from one.
    #[error("operator {0} cannot be restored from a snapshot")]
    Unsupported(String),
    /// The snapshot holds states of operators this dataflow does not have.
    #[error("it holds the state of operator {0}, which this dataflow does not have")]
    Unused(String),
}

impl Checkpoints {
    /// Snapshots of this worker's operators go to `sink`.
    pub fn new(sink: Rc<RefCell<dyn SnapshotSink>>) -> Self {
        Checkpoints(Some(Shared {
            sink,
            count: Rc::default(),
            restored: None,
            error: Rc::default(),
        }))
    }

    /// Snapshots go to `sink`, and every operator is built from its state in `states` (the
    /// encoded values a previous run handed to its sink, by operator id `N:name`, see
    /// [`Checkpoints::cut`]): the restore of a checkpoint.
    pub fn restoring(sink: Rc<RefCell<dyn SnapshotSink>>, states: OperatorStates) -> Self {
        Checkpoints(Some(Shared {
            sink,
            count: Rc::default(),
            restored: Some(Rc::new(RefCell::new(states))),
            error: Rc::default(),
        }))
    }

    /// The operators that asked for their cut so far on this worker.
    pub fn operators(&self) -> usize {
        self.0.as_ref().map_or(0, |shared| shared.count.get())
    }

    /// After the dataflow is built: the first operator that could not be restored, or a state
    /// that no operator took. `Ok` when not restoring.
    ///
    /// Errors: [`RestoreError`], for the caller to name the checkpoint file.
    pub fn restore_result(&self) -> Result<(), RestoreError> {
        let Some(shared) = &self.0 else { return Ok(()) };
        if let Some(error) = shared.error.borrow().clone() {
            return Err(error);
        }
        if let Some(restored) = &shared.restored {
            if let Some(operator) = restored.borrow().keys().next() {
                return Err(RestoreError::Unused(operator.clone()));
            }
        }
        Ok(())
    }

    fn fail(shared: &Shared, error: RestoreError) {
        shared.error.borrow_mut().get_or_insert(error);
    }

    /// The cut for an operator described by `operator`, encoding its state value with
    /// [`encode`]; [`Cut::none`] without a sink. The sink sees the operator as `N:operator`,
    /// `N` counting the operators of this worker in the order they asked for their cut: unique,
    /// and the same in every run of the same dataflow.
    ///
    /// For an operator that cannot be built from a restored state: on a restoring
    /// [`Checkpoints`] it records [`RestoreError::Unsupported`] (see
    /// [`Checkpoints::restore_result`]). Operators that can use [`Checkpoints::cut_restored`].
    pub fn cut<V: Serialize + 'static>(&self, operator: &str) -> Cut<V> {
        let (cut, id) = self.cut_with_id(operator);
        if let (Some(shared), Some(id)) = (&self.0, id) {
            if shared.restored.is_some() {
                Checkpoints::fail(shared, RestoreError::Unsupported(id));
            }
        }
        cut
    }

    /// The cut for `operator` (as [`Checkpoints::cut`]) and, when restoring, its state value
    /// at the checkpoint resumed from: the operator must then start from that state instead of
    /// an empty one, re-creating the capabilities its state implies (pending window closes)
    /// from its initial capability. `None` when not restoring, or when the state is missing or
    /// does not decode (recorded for [`Checkpoints::restore_result`]; the caller stops the run
    /// before stepping it).
    pub fn cut_restored<V: Serialize + DeserializeOwned + 'static>(
        &self,
        operator: &str,
    ) -> Restorable<V> {
        let (cut, id) = self.cut_with_id(operator);
        let (Some(shared), Some(id)) = (&self.0, id) else {
            return (cut, None);
        };
        let Some(restored) = &shared.restored else {
            return (cut, None);
        };
        let Some(bytes) = restored.borrow_mut().remove(&id) else {
            Checkpoints::fail(shared, RestoreError::Missing(id));
            return (cut, None);
        };
        match decode(&bytes) {
            Ok(state) => (cut, Some(state)),
            Err(why) => {
                Checkpoints::fail(shared, RestoreError::Undecodable { operator: id, why });
                (cut, None)
            }
        }
    }

    /// The cut and the operator's id (`None` without a sink).
    fn cut_with_id<V: Serialize + 'static>(&self, operator: &str) -> (Cut<V>, Option<String>) {
        let Some(shared) = self.0.clone() else {
            return (Cut::none(), None);
        };
        // Counted even without cuts to come: a restore needs the id.
        let id = format!("{}:{operator}", shared.count.get());
        shared.count.set(shared.count.get() + 1);
        let Some(first) = shared.sink.borrow().first_cut() else {
            return (Cut::none(), Some(id));
        };
        let (sink, operator) = (shared.sink, id.clone());
        let cut = Cut::ranged(
            first,
            move |cut, bound, state: &mut dyn FnMut(u64) -> V, last| {
                if last {
                    let state = encode(&state(cut));
                    sink.borrow_mut().write_last(&operator, cut, state);
                    return None;
                }
                let through = sink.borrow().last_cut_through(cut, bound);
                debug_assert!((cut..=bound).contains(&through), "a range within its bound");
                let state = encode(&state(through));
                sink.borrow_mut()
                    .write_range(&operator, cut..=through, state)
            },
        );
        (cut, Some(id))
    }
}

/// Encodes an operator's state value for a snapshot: bincode, the serde format timely's own
/// exchange uses, compact and with no unsafe code (RUSTSEC-2021-0120 rules out abomonation).
pub fn encode<V: Serialize>(state: &V) -> Vec<u8> {
    bincode::serialize(state)
        .expect("in-memory bincode encoding of serde-derived types cannot fail")
}

/// Decodes a state value [`encode`]d by this build.
///
/// Errors: the decoder's message (bytes of another type or layout).
pub fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    bincode::deserialize(bytes).map_err(|e| e.to_string())
}
