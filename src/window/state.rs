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
    /// arrival order, which is right unless parts carry their own sequence numbers.
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
