//! The window-state contract: what a keyed window kind (tumbling and sliding in
//! [`super::fixed`], sessions in [`super::session`]) implements so that the driver
//! (`super::driver`) can run it.
//!
//! The driver owns time: capabilities, deferral, timestamp order, checkpoint cuts. A window
//! state owns what happens to its windows. The driver calls the methods below only as stated
//! under "may assume", and checks the "must guarantee" parts that concern time with
//! `debug_assert!` in debug builds. Times are the watermark times of the input (`u64`); a
//! window "closes" (is emitted) at a time `c` once the input frontier has passed `c`.
//!
//! Users extend windows through [`super::Aggregator`] (what is computed per window and key;
//! README "Adding an operator"); a new window *kind* implements this trait inside the crate and
//! is registered as one more method of `WithKind` in `super::kind`, the one place that matches
//! an assigner, which each window operator implements.

/// A keyed window state machine driven by `super::driver::drive`. See the module docs.
pub(crate) trait WindowState: 'static {
    /// What arrives at the operator.
    type Part;
    /// What the operator emits.
    type Out;
    /// The state as one serializable value: what a checkpoint stores for this worker.
    type State: serde::Serialize + serde::de::DeserializeOwned + 'static;
    /// Replaces this state, freshly built and empty, by `state`, a value [`WindowState::state`]
    /// returned at a checkpoint cut (freed to `cut + 1`): afterwards the state behaves exactly
    /// as the one that returned it (same closes, corrections, late records and frees). The
    /// driver then re-creates the capability of [`WindowState::next_close`].
    fn restore(&mut self, state: Self::State);
    /// The state value now. Must be canonical: equal for two states that received the same
    /// records at the same times and were freed to the same frontier, whatever the batching
    /// and the order of hash maps (the driver frees to `cut + 1` first; see [`crate::stash`]).
    fn state(&self) -> Self::State;
    /// Applies `part`, arriving at `time`, at once if it cannot touch a closed window (the hot
    /// path: nothing to emit); otherwise hands it back to be deferred.
    ///
    /// May assume: the frontier has not passed `time`, so no window closing at or after `time`
    /// has been closed. Must guarantee: a part is applied here only if applying it now gives the
    /// same state as applying it when the frontier passes `time`; nothing is emitted; every
    /// window it opens closes at or after `time` (checked).
    fn offer(&mut self, part: Self::Part, time: u64) -> Option<Self::Part>;
    /// Offers every part of a batch arriving at `time`, pushing those that must wait to `defer`.
    /// Implementations may override it with a tighter loop for the common case; the contract is
    /// that of [`WindowState::offer`] for each part.
    #[inline]
    fn offer_batch(
        &mut self,
        parts: impl Iterator<Item = Self::Part>,
        time: u64,
        defer: &mut Vec<Self::Part>,
    ) {
        for part in parts {
            if let Some(part) = self.offer(part, time) {
                defer.push(part);
            }
        }
    }
    /// Puts the deferred parts of one time in the order they must be applied in; they come in
    /// arrival order, which is right unless parts carry their own sequence numbers or the
    /// records their positions in the input (several workers read it).
    fn order(&self, _parts: &mut [Self::Part]) {}
    /// Applies a deferred `part` at `time`; late records and corrections go to `out`.
    ///
    /// May assume: the frontier has passed `time`; parts are applied in increasing `time`, all
    /// of one time together; every close at a time before `time` has happened and none at or
    /// after it (checked). Must guarantee: every window it opens closes at or after `time`
    /// (checked); a record beyond the allowed lateness goes to `out` as late, never dropped.
    fn apply(&mut self, part: Self::Part, time: u64, out: &mut Vec<Self::Out>);
    /// Emits corrections for everything changed by the parts applied at `time`; called once
    /// after the last of them.
    fn flush_corrections(&mut self, time: u64, out: &mut Vec<Self::Out>);
    /// The earliest time at which a pending window closes (emits), if any, or an earlier time
    /// at which the state wants [`WindowState::close`] called to look again (a lazy queue's
    /// entry, see `super::session`): a lower bound, which the driver holds its capability at.
    fn next_close(&self) -> Option<u64>;
    /// Emits every window whose close time is `time` (possibly none, at a time that was only a
    /// lower bound).
    ///
    /// May assume: `time` is [`WindowState::next_close`] and the frontier has passed it. Must
    /// guarantee: afterwards no window closes at or before `time` (checked), so closes advance.
    fn close(&mut self, time: u64, out: &mut Vec<Self::Out>);
    /// Frees the state that no future record can change, given the input frontier (`None` when
    /// it is empty).
    ///
    /// May assume: every part and close at times before `frontier` has been applied; `frontier`
    /// never decreases. Must guarantee: a record arriving at a time at or after `frontier` gives
    /// the same result as before the call; calling it again with the same or a smaller frontier
    /// changes nothing.
    fn free(&mut self, frontier: Option<u64>);
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt::Debug;

    use super::WindowState;
    use crate::window::fixed::Part;
    use crate::window::Emit;

    /// A key of [`agree`] that is a small integer except for key 5, far out of a dense key
    /// table's range: the table turns hashed when 5 first arrives, mid-stream.
    pub(crate) fn far_key(k: u8) -> u64 {
        if k == 5 {
            5 << 40
        } else {
            u64::from(k)
        }
    }

    /// Runs `state` through the steps the driver takes for one batch of `parts` at `time`, with
    /// `offer_batch` (`batched`) or with `offer` part by part: closes before `time`, the
    /// offers, the deferred parts applied at `time`, and frees up to `time`.
    pub(crate) fn step<S: WindowState>(
        state: &mut S,
        parts: Vec<S::Part>,
        time: u64,
        batched: bool,
        out: &mut Vec<S::Out>,
    ) {
        while let Some(close) = state.next_close().filter(|c| *c < time) {
            state.close(close, out);
        }
        let mut deferred = Vec::new();
        if batched {
            state.offer_batch(parts.into_iter(), time, &mut deferred);
        } else {
            for part in parts {
                deferred.extend(state.offer(part, time));
            }
        }
        state.order(&mut deferred);
        for part in deferred {
            state.apply(part, time, out);
        }
        state.flush_corrections(time, out);
        state.free(Some(time));
    }

    /// Runs each of `states`, each offering by batch or part by part (its flag, see [`step`]),
    /// through the same 400 random batches of records at growing times: mostly in order (at or
    /// a little after the time, often a run of one key), sometimes behind it, with now and then
    /// a pause longer than `span` (a window's size or a session's gap), with partial aggregates
    /// (of phase one) among the records. Asserts that their
    /// states agree after every batch and that they emitted the same rows; returns how many
    /// results they emitted. The six keys are `key_of(0..6)`: small integers probe a dense key
    /// table, other key types a hashed one, and an integer far out of the dense range turns a
    /// dense table hashed when it first arrives.
    pub(crate) fn agree<K, S>(
        states: &mut [(S, bool)],
        span: u64,
        key_of: impl Fn(u8) -> K,
        what: &str,
    ) -> usize
    where
        K: Clone,
        S: WindowState<Part = Part<K, u64, u64>, Out = Emit<K, u64, u64>>,
        S::State: Debug,
        S::Out: Debug,
    {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut outs: Vec<Vec<S::Out>> = states.iter().map(|_| Vec::new()).collect();
        let (mut time, mut key) = (0u64, key_of(0));
        for round in 0..400u64 {
            let parts: Vec<_> = (0..next() % 48)
                .map(|_| {
                    let r = next();
                    let ts = if r % 8 == 0 {
                        time.saturating_sub((r >> 8) & 63)
                    } else {
                        time + (r >> 8) % (2 * span + 3)
                    };
                    if r % 3 != 0 {
                        key = key_of((r >> 20) as u8 % 6);
                    }
                    // Now and then a partial aggregate of phase one, as on time as its records.
                    if r % 5 == 1 && ts >= time {
                        return Part::Partial {
                            key: key.clone(),
                            lo: ts,
                            hi: ts,
                            acc: 1 + (r >> 30) % 3,
                        };
                    }
                    Part::Record {
                        key: key.clone(),
                        ts,
                        record: ts,
                    }
                })
                .collect();
            for ((state, batched), out) in states.iter_mut().zip(&mut outs) {
                step(state, parts.clone(), time, *batched, out);
            }
            let first = format!("{:?}", states[0].0.state());
            for (state, _) in &states[1..] {
                let state = format!("{:?}", state.state());
                assert_eq!(state, first, "{what}, round {round}");
            }
            time += match next() % 8 {
                0 => 2 * span + 1,
                _ => next() % (span + 2),
            };
        }
        for ((state, batched), out) in states.iter_mut().zip(&mut outs) {
            step(state, Vec::new(), u64::MAX, *batched, out);
        }
        // As multisets: the rows a close emits come in its key table's order, which depends on
        // the table's history (a reused table keeps its capacity), not on what it holds.
        let rows = |out: &Vec<S::Out>| {
            let mut rows: Vec<String> = out.iter().map(|row| format!("{row:?}")).collect();
            rows.sort();
            rows
        };
        let first = rows(&outs[0]);
        for out in &outs[1..] {
            assert_eq!(rows(out), first, "{what}");
        }
        let results = outs[0].iter().filter(|e| matches!(e, Emit::Result(_)));
        results.count()
    }
}
