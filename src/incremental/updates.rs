//! Moving data between timely streams and differential collections, and moving updates in time.
//!
//! Invariant of every function here: an update is only ever moved to a time at or after the
//! time it had, and it is sent under a capability for exactly its new time, so the frontier of
//! the result says precisely which updates can still arrive.

use std::collections::BTreeMap;
use std::hash::Hash;

use differential_dataflow::{AsCollection, Data, VecCollection};
use hashbrown::HashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Capability, InputCapability, Operator};
use timely::dataflow::StreamVec;

use crate::stash::limit;

/// The updates of a stream of `(data, diff)` pairs: each pair becomes the update `(data, t,
/// diff)` at the logical time `t` the pair travels at.
///
/// ```
/// use differential_dataflow::operators::CountTotal;
/// use timely::dataflow::operators::{Capture, ToStream};
/// use timely::dataflow::operators::capture::Extract;
/// use tidemark::incremental::to_updates;
///
/// let captured = timely::example(|scope| {
///     let pairs = vec![("a", 1), ("b", 1), ("a", 1), ("b", -1)].to_stream(scope);
///     to_updates(pairs).map(|word: &str| word.to_string()).count_total().inner.capture()
/// });
/// let mut updates: Vec<_> = captured.extract().into_iter().flat_map(|(_, u)| u).collect();
/// updates.sort();
/// assert_eq!(updates, vec![(("a".to_string(), 2), 0, 1)]);
/// ```
pub fn to_updates<'scope, D: Data>(
    stream: StreamVec<'scope, u64, (D, isize)>,
) -> VecCollection<'scope, u64, D> {
    stream
        .unary(Pipeline, "ToUpdates", |_cap, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    let mut session = output.session(&cap);
                    for batch in batches {
                        session.give_iterator(batch.drain(..).map(|(d, r)| (d, time, r)));
                    }
                });
            }
        })
        .container::<Vec<_>>()
        .as_collection()
}

/// As [`to_updates`], but each batch is consolidated first: equal data of one batch become one
/// update whose diff is their sum (and vanish if it is zero).
///
/// This is exact local pre-aggregation, as a combiner in MapReduce or the first phase of a
/// two-phase aggregation: a batch of a million views of a hundred campaigns enters differential
/// as at most a hundred updates, which is where an incremental count's throughput comes from.
pub fn to_consolidated_updates<'scope, D: Data + Hash>(
    stream: StreamVec<'scope, u64, (D, isize)>,
) -> VecCollection<'scope, u64, D> {
    stream
        .unary(Pipeline, "ToConsolidatedUpdates", |_cap, _info| {
            let mut totals: HashMap<D, isize> = HashMap::new();
            move |input, output| {
                input.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    for batch in batches {
                        for (d, r) in batch.drain(..) {
                            *totals.entry(d).or_insert(0) += r;
                        }
                    }
                    let updates = nonzero_at(totals.drain(), time);
                    output.session(&cap).give_iterator(updates);
                });
            }
        })
        .container::<Vec<_>>()
        .as_collection()
}

/// Moves every update to time `max(t, when(&data))`: a data-dependent `delay`.
///
/// Differential's `delay` moves times by a function of the time alone; retiring a window's
/// input when the window expires needs a time that depends on the window, that is, on the data.
/// Updates moved to a later time wait here, consolidated (one entry per distinct datum and
/// time), until the input frontier reaches that time: a window's retirement then enters the
/// next operator as one update per distinct record, not one per epoch that touched it.
///
/// ```
/// use differential_dataflow::input::Input;
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use tidemark::incremental::delay_to;
///
/// let captured = timely::example(|scope| {
///     // Two copies of 3 and one of 12, at time 0; each moves to the end of its 10-wide slot.
///     let (_input, numbers) = scope.new_collection_from(vec![3u64, 3, 12]);
///     delay_to(numbers, |n| n - n % 10 + 9).inner.capture()
/// });
/// let mut updates: Vec<_> = captured.extract().into_iter().flat_map(|(_, u)| u).collect();
/// updates.sort();
/// assert_eq!(updates, vec![(3, 9, 2), (12, 19, 1)]);
/// ```
pub fn delay_to<'scope, D, F>(
    collection: VecCollection<'scope, u64, D>,
    when: F,
) -> VecCollection<'scope, u64, D>
where
    D: Data + Hash,
    F: Fn(&D) -> u64 + 'static,
{
    move_updates::<D, F, Totals<D>>(collection, when)
}

/// Sends every update at its own time: differential may send an update under a capability for
/// an earlier time (its operators do; so does a source of stamped records, see
/// [`crate::source`]), and a sink that writes a changelog, or cuts it at checkpoints, wants
/// each update to travel at its own. Updates are neither consolidated nor reordered: those at
/// one time leave in the order they came, as they would had they travelled at it.
///
/// ```
/// use differential_dataflow::AsCollection;
/// use timely::dataflow::operators::capture::{Capture, Extract};
/// use timely::dataflow::operators::ToStream;
/// use tidemark::incremental::retime;
///
/// let captured = timely::example(|scope| {
///     // Three updates in one message at time 0, two of them for time 5.
///     let updates = vec![('a', 5u64, 1isize), ('b', 0, 1), ('a', 5, -1)].to_stream(scope);
///     retime(updates.as_collection()).inner.capture()
/// });
/// // Neither consolidated nor dropped (`extract` sorts each time's data).
/// assert_eq!(
///     captured.extract(),
///     vec![(0, vec![('b', 0, 1)]), (5, vec![('a', 5, -1), ('a', 5, 1)])],
/// );
/// ```
pub fn retime<'scope, D>(collection: VecCollection<'scope, u64, D>) -> VecCollection<'scope, u64, D>
where
    D: Data + Hash,
{
    move_updates::<D, _, Ordered<D>>(collection, |_| 0)
}

/// Updates waiting for their time in [`move_updates`]: [`Totals`] for [`delay_to`],
/// [`Ordered`] for [`retime`].
trait Waiting<D>: Default + 'static {
    /// Whether an update already at its message's time leaves at once, ahead of any updates
    /// waiting for that time (only where their order does not matter).
    const OVERTAKES: bool;
    /// Adds an update of `datum` by `diff`.
    fn add(&mut self, datum: D, diff: isize);
    /// The waiting updates, released at `time`.
    fn release(self, time: u64) -> impl Iterator<Item = (D, u64, isize)>;
}

/// Updates waiting in arrival order ([`retime`]).
struct Ordered<D>(Vec<(D, isize)>);

impl<D> Default for Ordered<D> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<D: 'static> Waiting<D> for Ordered<D> {
    const OVERTAKES: bool = false;
    fn add(&mut self, datum: D, diff: isize) {
        self.0.push((datum, diff));
    }
    fn release(self, time: u64) -> impl Iterator<Item = (D, u64, isize)> {
        self.0.into_iter().map(move |(d, r)| (d, time, r))
    }
}

/// Updates waiting summed per datum ([`delay_to`]).
struct Totals<D>(HashMap<D, isize>);

impl<D> Default for Totals<D> {
    fn default() -> Self {
        Totals(HashMap::new())
    }
}

impl<D: Eq + Hash + 'static> Waiting<D> for Totals<D> {
    const OVERTAKES: bool = true;
    fn add(&mut self, datum: D, diff: isize) {
        *self.0.entry(datum).or_insert(0) += diff;
    }
    fn release(self, time: u64) -> impl Iterator<Item = (D, u64, isize)> {
        nonzero_at(self.0, time)
    }
}

/// How many times [`move_updates`] releases in one activation.
const RELEASES: usize = 256;

/// The updates of [`move_updates`] waiting for their times, by time, under one capability at
/// the earliest of them.
///
/// One capability, not one per time (as a [`crate::stash::Stash`] holds): with `retime` nearly
/// every update has a time of its own, and a frontier's jump leaves thousands waiting. Every
/// capability held is a pointstamp that timely's progress tracking and every downstream input
/// frontier keep, and each activation that releases some of them rebuilds those frontiers over
/// all that remain: releasing a jump of `n` times `RELEASES` at a time cost `n^2 / RELEASES`
/// (about 1.5x the CPU of a 4-worker `--emit updates` run). Sending at a later time needs only
/// a capability at or before it, so the earliest one serves them all.
struct Later<W> {
    waiting: BTreeMap<u64, W>,
    /// At the earliest waiting time; `None` when nothing waits.
    held: Option<Capability<u64>>,
}

impl<W: Default> Later<W> {
    /// The updates waiting for `time`, at or after `cap`'s time (created empty when new).
    fn at(&mut self, cap: &InputCapability<u64>, time: u64) -> &mut W {
        if self.held.as_ref().is_none_or(|held| *held.time() > time) {
            self.held = Some(cap.delayed(&time, 0));
        }
        self.waiting.entry(time).or_default()
    }

    /// The earliest waiting time, if at or before `bound` (any time when `None`: the input
    /// has ended), with a capability for it and its updates. The held capability moves on to
    /// the next waiting time.
    fn pop_through(&mut self, bound: Option<u64>) -> Option<(u64, Capability<u64>, W)> {
        let entry = self.waiting.first_entry()?;
        if bound.is_some_and(|bound| *entry.key() > bound) {
            return None;
        }
        let (time, updates) = entry.remove_entry();
        let held = self
            .held
            .as_mut()
            .expect("a capability is held while updates wait");
        let cap = held.delayed(&time);
        match self.waiting.first_key_value() {
            Some((next, _)) => held.downgrade(next),
            None => self.held = None,
        }
        Some((time, cap, updates))
    }
}

/// [`delay_to`] and [`retime`]: each update waits in a `W` for `max(t, when(&data))`.
fn move_updates<'scope, D, F, W>(
    collection: VecCollection<'scope, u64, D>,
    when: F,
) -> VecCollection<'scope, u64, D>
where
    D: Data + Hash,
    F: Fn(&D) -> u64 + 'static,
    W: Waiting<D>,
{
    let scope = collection.inner.scope();
    collection
        .inner
        .unary_frontier(Pipeline, "DelayTo", move |_cap, info| {
            let activator = scope.activator_for(info.address);
            let mut now: Vec<(D, u64, isize)> = Vec::new();
            let mut later = Later::<W> {
                waiting: BTreeMap::new(),
                held: None,
            };
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    for (d, t, r) in batches.flat_map(|batch| batch.drain(..)) {
                        let at = t.max(when(&d));
                        if W::OVERTAKES && at == time {
                            now.push((d, at, r));
                        } else {
                            // Where order matters, even at the message's time: an earlier
                            // message may have left updates at `at` waiting, which go first.
                            later.at(&cap, at).add(d, r);
                        }
                    }
                    output.session(&cap).give_iterator(now.drain(..));
                });
                // Release every time up to the frontier's least: no update can come for a time
                // it passed, and one for its least comes under a capability for exactly that
                // time, so it is released after these. At most `RELEASES` times an activation:
                // each time is a message, and a buffer, of its own downstream (8 KiB each
                // across an exchange), so releasing a frontier's jump of thousands of times at
                // once held them all at the same moment; the rest wait for the next activation
                // (the held capability holds the frontier, so nothing downstream runs ahead).
                for _ in 0..RELEASES {
                    let Some((at, cap, pending)) = later.pop_through(limit(frontier.frontier()))
                    else {
                        return;
                    };
                    output.session(&cap).give_iterator(pending.release(at));
                }
                activator.activate();
            }
        })
        .container::<Vec<_>>()
        .as_collection()
}

/// The consolidated `totals` as updates at `time`, without those that cancelled out.
fn nonzero_at<D>(
    totals: impl IntoIterator<Item = (D, isize)>,
    time: u64,
) -> impl Iterator<Item = (D, u64, isize)> {
    let nonzero = totals.into_iter().filter(|(_, r)| *r != 0);
    nonzero.map(move |(d, r)| (d, time, r))
}
