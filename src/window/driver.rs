//! The operator shell shared by the keyed window operators: frontier-driven, time-ordered.
//!
//! This module owns *when* things happen; [`WindowState`] implementations own *what* happens.
//! Invariants kept here:
//!
//! * A part at time `T` that cannot touch a closed window (`T < state.ready_before(part)`) is
//!   applied as soon as it arrives: the hot path for in-order data.
//! * Every other part is deferred and applied when the frontier passes `T`, in timestamp order,
//!   interleaved with window closes: closes at times `< T` happen first, closes at `>= T` after.
//!   This makes corrections (and so the changelog) independent of arrival timing.
//! * The operator holds one capability at the earliest pending close (plus one per deferred
//!   time), so the output frontier tracks exactly what may still be emitted.

use std::collections::BTreeMap;

use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::{Capability, Operator};
use timely::dataflow::StreamVec;

/// A keyed window state machine driven by [`drive`].
pub(crate) trait WindowState: 'static {
    /// What arrives at the operator.
    type Part;
    /// What the operator emits.
    type Out;
    /// Parts at a time below this may be applied on arrival.
    fn ready_before(&self, part: &Self::Part) -> u64;
    /// Applies `part` at time `time`; late records and immediate corrections go to `out`.
    fn apply(&mut self, part: Self::Part, time: u64, out: &mut Vec<Self::Out>);
    /// Emits corrections for everything changed by the parts applied at `time`.
    fn flush_corrections(&mut self, time: u64, out: &mut Vec<Self::Out>);
    /// The earliest time at which a pending window closes (emits), if any.
    fn next_close(&self) -> Option<u64>;
    /// Emits every window whose close time is `time`.
    fn close(&mut self, time: u64, out: &mut Vec<Self::Out>);
    /// Frees the state that no future record can change, given the input frontier
    /// (`None` when it is empty).
    fn free(&mut self, frontier: Option<u64>);
}

/// Builds the operator around `state`: `split` turns each input item into a part.
pub(crate) fn drive<'scope, I, S, P, F>(
    stream: StreamVec<'scope, u64, I>,
    pact: P,
    name: &str,
    mut split: F,
    mut state: S,
) -> StreamVec<'scope, u64, S::Out>
where
    I: Clone + 'static,
    S: WindowState,
    S::Part: 'static,
    S::Out: Clone + 'static,
    P: ParallelizationContract<u64, Vec<I>>,
    F: FnMut(I) -> S::Part + 'static,
{
    stream
        .unary_frontier(pact, name, move |_cap, _info| {
            let mut held: Option<Capability<u64>> = None;
            let mut deferred: BTreeMap<u64, (Capability<u64>, Vec<S::Part>)> = BTreeMap::new();
            let mut out = Vec::new();
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    for batch in batches {
                        for item in batch.drain(..) {
                            let part = split(item);
                            if time < state.ready_before(&part) {
                                state.apply(part, time, &mut out);
                            } else {
                                deferred
                                    .entry(time)
                                    .or_insert_with(|| (cap.delayed(&time, 0), Vec::new()))
                                    .1
                                    .push(part);
                            }
                        }
                    }
                    // Immediate parts only open windows closing at or after `time`.
                    if let Some(close) = state.next_close() {
                        if held.as_ref().is_none_or(|h| close < *h.time()) {
                            held = Some(cap.delayed(&close, 0));
                        }
                    }
                    debug_assert!(out.is_empty(), "on-time parts emit nothing");
                });

                let limit = frontier.frontier().first().copied();
                let passed = |t: u64| limit.is_none_or(|f| t < f);
                loop {
                    let next_deferred = deferred
                        .first_key_value()
                        .map(|(t, _)| *t)
                        .filter(|t| passed(*t));
                    let next_close = state.next_close().filter(|t| passed(*t));
                    match (next_deferred, next_close) {
                        (Some(t), close) if close.is_none_or(|c| t <= c) => {
                            let (cap, parts) = deferred.remove(&t).expect("key was just read");
                            for part in parts {
                                state.apply(part, t, &mut out);
                            }
                            state.flush_corrections(t, &mut out);
                            if let Some(close) = state.next_close() {
                                if held.as_ref().is_none_or(|h| close < *h.time()) {
                                    held = Some(cap.delayed(&close));
                                }
                            }
                            output.session(&cap).give_iterator(out.drain(..));
                        }
                        (_, Some(c)) => {
                            state.close(c, &mut out);
                            let held_cap =
                                held.as_ref().expect("a pending close holds a capability");
                            output
                                .session(&held_cap.delayed(&c))
                                .give_iterator(out.drain(..));
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
        })
        .container::<Vec<S::Out>>()
}
