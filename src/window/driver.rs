//! The operator shell shared by the keyed window operators: frontier-driven, time-ordered.
//!
//! This module owns *when* things happen; [`WindowState`] implementations own *what* happens
//! (their contract is in `super::state`, and the driver checks it in debug builds).
//! Invariants kept here:
//!
//! * A part at time `T` that cannot touch a closed window is applied as soon as it arrives
//!   ([`WindowState::offer`]): the hot path for in-order data.
//! * Every other part is deferred and applied when the frontier passes `T`, in timestamp order,
//!   interleaved with window closes: closes at times `< T` happen first, closes at `>= T` after.
//!   This makes corrections (and so the changelog) independent of arrival timing.
//! * The operator holds one capability at the earliest pending close (plus one per deferred
//!   time), so the output frontier tracks exactly what may still be emitted.

use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;

pub(crate) use super::state::WindowState;
use super::{Emit, Late, WindowResult};
use crate::stash::{limit, Cut, Stash};

/// Builds the operator around `state`: `split` turns each input item into a part, or drops it
/// (`None`: a filter fused into the operator's input, see [`crate::keyed::Prepare`]). Returns the
/// results and the late records, the operator's two outputs. At each of `cut`'s times the
/// driver hands the state value to the cut's hook, exactly as of the parts at times `<=` the cut
/// (see [`crate::stash`]): while a cut is pending, parts beyond it are deferred, not offered.
/// `state` may come restored from a checkpoint ([`WindowState::restore`]): its pending closes
/// get their capability from the operator's initial one.
#[allow(clippy::type_complexity)]
pub(crate) fn drive<'scope, I, S, P, F, K, O, V>(
    stream: StreamVec<'scope, u64, I>,
    pact: P,
    name: &str,
    mut split: F,
    mut state: S,
    mut cut: Cut<S::State>,
) -> (
    StreamVec<'scope, u64, WindowResult<K, O>>,
    StreamVec<'scope, u64, Late<K, V>>,
)
where
    I: 'static,
    S: WindowState<Out = Emit<K, O, V>>,
    S::Part: 'static,
    K: 'static,
    O: 'static,
    V: 'static,
    P: ParallelizationContract<u64, Vec<I>>,
    F: FnMut(I) -> Option<S::Part> + 'static,
{
    let mut builder = OperatorBuilder::new(name.to_owned(), stream.scope());
    let mut input = builder.new_input(stream, pact);
    let (results, results_stream) = builder.new_output::<Vec<WindowResult<K, O>>>();
    let (late, late_stream) = builder.new_output::<Vec<Late<K, V>>>();
    let (mut results, mut late) = (OutputBuilder::from(results), OutputBuilder::from(late));
    builder.build(move |capabilities| {
        // The closing capability (results port) and per deferred time one per port. A state
        // restored from a checkpoint has pending closes: the first holds the initial
        // capability's successor on the results port.
        let mut held: Option<Capability<u64>> = state
            .next_close()
            .and_then(|close| capabilities.first().map(|cap| cap.delayed(&close)));
        drop(capabilities);
        let mut deferred: Stash<Vec<S::Part>, 2> = Stash::new();
        let mut out = Vec::new();
        let mut waiting = Vec::new();
        move |frontiers| {
            let frontier = &frontiers[0];
            let (mut results, mut late) = (results.activate(), late.activate());
            input.for_each_stamp(|cap, batches| {
                let time = *cap.least().expect("u64 stamps are never empty");
                if cut.beyond(time) {
                    // Beyond a pending cut: applied only after the snapshot.
                    for batch in batches {
                        waiting.extend(batch.drain(..).filter_map(&mut split));
                    }
                } else {
                    let before = state.next_close();
                    for batch in batches {
                        state.offer_batch(
                            batch.drain(..).filter_map(&mut split),
                            time,
                            &mut waiting,
                        );
                    }
                    debug_assert!(
                        state
                            .next_close()
                            .is_none_or(|c| c >= time || Some(c) == before),
                        "an offered part opened a window closing before its time {time}"
                    );
                }
                if !waiting.is_empty() {
                    deferred.at(&cap).append(&mut waiting);
                }
                // Immediate parts only open windows closing at or after `time`.
                if let Some(close) = state.next_close() {
                    if held.as_ref().is_none_or(|h| close < *h.time()) {
                        held = Some(cap.delayed(&close, 0));
                    }
                }
            });

            let limit = limit(frontier.frontier());
            let passed = |t: u64| limit.is_none_or(|f| t < f);
            loop {
                let next_deferred = deferred.first_time().filter(|t| passed(*t));
                let next_close = state.next_close().filter(|t| passed(*t));
                // Once the input has ended and no record is deferred, the closes after the
                // pending cut are left out of the work that bounds it: the state implies them,
                // so the state taken before them is the operator's last, and a restore from
                // any later cut `c` closes those windows again, emitting rows at times `<= c`
                // that the committing sink already holds and drops. Taking a cut between every
                // two closes instead copied the whole state once per slide of a long sliding
                // window after the end (review, 2026-11-30: minutes). While records are
                // deferred the state is no last one, and every close bounds its range.
                let next_work = match (next_deferred, next_close) {
                    (None, close) if limit.is_none() => close.filter(|c| !cut.beyond(*c)),
                    (Some(d), Some(c)) => Some(d.min(c)),
                    (d, c) => d.or(c),
                };
                // The state as of the cut is canonical: freed as the frontier `cut + 1` allows,
                // whatever frontiers the worker happened to see before.
                cut.take_passed(limit, next_work, |cut| {
                    state.free(Some(cut + 1));
                    state.state()
                });
                match (next_deferred, next_close) {
                    (Some(t), close) if close.is_none_or(|c| t <= c) => {
                        let (_, [result_cap, late_cap], mut parts) =
                            deferred.pop_passed(limit).expect("time was just read");
                        state.order(&mut parts);
                        debug_assert!(
                            state.next_close().is_none_or(|c| c >= t),
                            "a close before {t} is still pending when its parts apply"
                        );
                        for part in parts {
                            state.apply(part, t, &mut out);
                        }
                        state.flush_corrections(t, &mut out);
                        debug_assert!(
                            state.next_close().is_none_or(|c| c >= t),
                            "a part applied at {t} opened a window closing before it"
                        );
                        if let Some(close) = state.next_close() {
                            if held.as_ref().is_none_or(|h| close < *h.time()) {
                                held = Some(result_cap.delayed(&close));
                            }
                        }
                        let mut result_session = results.session(&result_cap);
                        let mut late_session = late.session(&late_cap);
                        for emit in out.drain(..) {
                            match emit {
                                Emit::Result(row) => result_session.give(row),
                                Emit::Late(record) => late_session.give(record),
                            }
                        }
                    }
                    (_, Some(c)) => {
                        state.close(c, &mut out);
                        debug_assert!(
                            state.next_close().is_none_or(|n| n > c),
                            "close({c}) left a window closing at or before {c}"
                        );
                        let held_cap = held.as_ref().expect("a pending close holds a capability");
                        let at = held_cap.delayed(&c);
                        let mut result_session = results.session(&at);
                        for emit in out.drain(..) {
                            match emit {
                                Emit::Result(row) => result_session.give(row),
                                Emit::Late(_) => unreachable!("closing emits results only"),
                            }
                        }
                    }
                    _ => break,
                }
            }
            state.free(limit);
            match state.next_close() {
                Some(close) => {
                    if let Some(h) = held.as_mut() {
                        h.downgrade(&close);
                    }
                }
                None => held = None,
            }
        }
    });
    (results_stream, late_stream)
}
