//! Session windows: per key, the union of overlapping `[t, t + gap)` over its records.
//!
//! # Lateness: Flink's rule for merging windows
//!
//! A record with event time `t` arriving at time `T` (the watermark, or `t` if it is ahead of
//! it) meets the sessions of its key that are still *kept* at `T`: those with
//! `end + lateness > T`, given the records counted before it. A session beyond the allowed
//! lateness is forgotten: Flink's `WindowOperator` purges a merging window's state at its
//! cleanup time `end + allowed lateness`, and a later record cannot merge with it. The record
//! merges its own window `[t, t + gap)` with every kept session it overlaps. It is *late* only
//! if that merged session is beyond the allowed lateness, `end + lateness <= T` (Flink's
//! `isWindowLate` of the merged window); the late output then names that session. Otherwise it
//! counts: the sessions it merged are retracted if they were emitted, and the merged session is
//! emitted when it closes (at once, as a correction, if its end has already passed). A
//! forgotten session stays as it was emitted, even where a later session overlaps it (a record
//! that would have bridged it to an open session merges with the open one only).
//!
//! Records that share a time are applied in the order they were sent (the input order: one
//! worker reads the input, and a channel between two workers keeps order; with random
//! partitioning, where records reach the operator by several paths, phase one numbers them and
//! the operator sorts by that number). A record ahead of the watermark never changes whether an
//! earlier record is late, and never meets a forgotten session (it only touches sessions ending
//! after its own time), so applying it on arrival gives the outcome of input order, for every
//! number of workers and processes, every partitioner and every batching.
//!
//! # State
//!
//! Each key has its kept sessions sorted by start and pairwise disjoint (as intervals
//! `[start, last + gap)`), so their ends are sorted too. A session closes when the frontier
//! passes `last + gap - 1`. It is kept after it is emitted, with its emitted value, until the
//! frontier reaches `end + lateness`: every later record arrives at `T >= end + lateness`, for
//! which the session is forgotten, so it is freed then (`frees`). A record behind the watermark,
//! applied at `T` once the frontier has passed `T`, first drops its key's sessions forgotten at
//! `T` (a prefix of them), which the frontier may not have freed yet. Whether a session is
//! forgotten depends only on `T`, a function of the input order, so freeing it changes no
//! result. State is bounded by the sessions within the lateness, not by all closed sessions.
//!
//! `closes` and `frees` are queues keyed by time; merging leaves stale entries behind, which are
//! recognised (no session of that key matches) and skipped when they come up. `closes` is lazy,
//! as a hand-written loop's timer queue: every open session has an entry of its key at or
//! before its close time, and a record that only extends an open session (the hot path: a key's
//! next record in order) queues nothing. When an entry comes up before its session's close,
//! the session is queued again at its close then. The one exception is a session that a part
//! behind the watermark opened or grew at time `T` and that closes before `T`: it is not queued
//! but emitted once the parts of `T` are applied (`dirty`), and a part that grows it past `T`
//! queues it then. A queue insertion per record (a B-tree
//! insertion of `(time, key)`) cost more than the rest of the record's work.

use std::collections::BTreeSet;
use std::hash::Hash;

use smallvec::SmallVec;

use super::driver::WindowState;
use super::fixed::{Part, StateGauge, HOT_CHUNK};
use super::keys::KeyTable;
use super::{Aggregator, Emit, Late, Window, WindowResult};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Session<Acc, O> {
    start: u64,
    last: u64,
    acc: Acc,
    emitted: Option<O>,
}

/// The sessions of one key, sorted by start: inline in the key's map slot while there is one
/// (the usual case: a key's sessions are its open one and those within the lateness), so that
/// the hot path reads one slot, as a hand-written loop's map of sessions would.
type KeySessions<A, V> =
    SmallVec<[Session<<A as Aggregator<V>>::Acc, <A as Aggregator<V>>::Output>; 1]>;

/// The session operator's state on one worker as one value: each key's sessions (open or
/// within the allowed lateness), sorted by key. The `closes` and `frees` queues are not part of
/// it: they follow from the sessions (an open session closes at `last + gap - 1`, an emitted
/// one is freed at `last + gap + lateness`), and their stale entries depend on the order in
/// which sessions merged, not on the records.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionsState<K, Acc, O> {
    keys: Vec<(K, Vec<Session<Acc, O>>)>,
}

/// State of the session window operator on one worker.
pub(crate) struct Sessions<K, V, A: Aggregator<V>> {
    gap: u64,
    lateness: u64,
    agg: A,
    keys: KeyTable<K, KeySessions<A, V>>,
    closes: BTreeSet<(u64, K)>,
    /// `(end + lateness, key)` of emitted sessions: from that frontier on they are forgotten.
    frees: BTreeSet<(u64, K)>,
    dirty: Vec<K>,
    gauge: StateGauge,
    /// On-time records of [`WindowState::offer_batch`]'s hot loop with their keys' hashes,
    /// between its two passes.
    chunk: Vec<(u64, K, u64, V)>,
}

impl<K, V, A: Aggregator<V>> Sessions<K, V, A> {
    pub(crate) fn new(gap: u64, lateness: u64, agg: A, gauge: StateGauge) -> Self {
        Sessions {
            gap,
            lateness,
            agg,
            keys: KeyTable::default(),
            closes: BTreeSet::new(),
            frees: BTreeSet::new(),
            dirty: Vec::new(),
            gauge,
            chunk: Vec::with_capacity(HOT_CHUNK),
        }
    }
}

impl<K, V, A> WindowState for Sessions<K, V, A>
where
    K: Hash + Eq + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: Clone + 'static,
    A: Aggregator<V>,
{
    type Part = Part<K, V, A::Acc>;
    type Out = Emit<K, A::Output, V>;
    type State = SessionsState<K, A::Acc, A::Output>;

    fn state(&self) -> Self::State {
        let mut keys: Vec<_> = self
            .keys
            .iter()
            .map(|(key, sessions)| (key.clone(), sessions.to_vec()))
            .collect();
        // Sorted so that equal states encode alike whatever the hash map's order.
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        SessionsState { keys }
    }

    fn restore(&mut self, state: Self::State) {
        debug_assert!(self.keys.is_empty(), "restored into a fresh state");
        // The queues follow from the sessions (see `SessionsState`): an open session closes at
        // `end - 1`, an emitted one is forgotten from `end + lateness` on.
        let (gap, lateness) = (self.gap, self.lateness);
        for (key, sessions) in state.keys {
            for session in &sessions {
                let end = session.last.saturating_add(gap);
                match session.emitted {
                    None => self.closes.insert((end - 1, key.clone())),
                    Some(_) => self
                        .frees
                        .insert((end.saturating_add(lateness), key.clone())),
                };
            }
            self.gauge.add(sessions.len());
            self.keys.insert(key, SmallVec::from_vec(sessions));
        }
    }

    fn offer(&mut self, part: Self::Part, time: u64) -> Option<Self::Part> {
        // Every event time at or after `time`: no session it touches can have closed.
        let lo = match &part {
            Part::Record { ts, .. } | Part::Sequenced { ts, .. } => *ts,
            Part::Partial { lo, .. } => *lo,
            Part::Late(_) => return Some(part),
        };
        if time > lo {
            return Some(part);
        }
        let mut none = Vec::new();
        self.apply(part, time, &mut none);
        debug_assert!(none.is_empty(), "on-time parts emit nothing");
        None
    }

    /// The hot loop: on-time records are hashed a chunk at a time, then each is folded in
    /// place into its key's newest session when it falls inside it (`apply`'s hot path, for
    /// the usual next record of a key in order), and applied by `offer` otherwise. In order:
    /// every part is applied or deferred exactly as `offer` would, in the batch's order.
    fn offer_batch(
        &mut self,
        parts: impl Iterator<Item = Self::Part>,
        time: u64,
        defer: &mut Vec<Self::Part>,
    ) {
        let mut chunk = std::mem::take(&mut self.chunk);
        for part in parts {
            match part {
                Part::Record { key, ts, record } if ts >= time => {
                    chunk.push((self.keys.hash(&key), key, ts, record));
                    if chunk.len() == HOT_CHUNK {
                        self.extend_sessions(&mut chunk, time, defer);
                    }
                }
                other => {
                    self.extend_sessions(&mut chunk, time, defer);
                    if let Some(part) = self.offer(other, time) {
                        defer.push(part);
                    }
                }
            }
        }
        self.extend_sessions(&mut chunk, time, defer);
        self.chunk = chunk;
    }

    fn order(&self, parts: &mut [Self::Part]) {
        // Sequenced parts all come from random partitioning's phase one, and are the only
        // deferred parts there (its pieces are on time); a stable sort keeps any others' order.
        parts.sort_by_key(|part| match part {
            Part::Sequenced { seq, .. } => *seq,
            _ => 0,
        });
    }

    fn apply(&mut self, part: Self::Part, time: u64, out: &mut Vec<Self::Out>) {
        let (key, lo, hi, mut acc, record) = match part {
            Part::Record { key, ts, record }
            | Part::Sequenced {
                key, ts, record, ..
            } => (key, ts, ts, self.agg.init(), Some(record)),
            // Phase one builds pieces of on-time records only (`lo >= time`): never late.
            Part::Partial { key, lo, hi, acc } => (key, lo, hi, acc, None),
            Part::Late(late) => return out.push(Emit::Late(late)),
        };
        let gap = self.gap;
        let own_end = hi.saturating_add(gap);
        let sessions = self.keys.slot_uncounted(&key, SmallVec::new);
        let lateness = self.lateness;
        // Whether a session has a queued close (see the module docs): every open session does
        // but one reopened behind the watermark at this time, closing before it, which goes to
        // `dirty` instead and is emitted when this time's parts are all applied.
        let queued = |s: &Session<A::Acc, A::Output>| {
            s.emitted.is_none() && s.last.saturating_add(gap) > time
        };
        if lo < time {
            // Behind the watermark: the sessions beyond the lateness at `time` are forgotten
            // (Flink's purge). Every later part arrives at `time` or after (the frontier has
            // passed `time`), so they are dropped now. Ends are sorted: they are a prefix.
            let forgotten = sessions
                .partition_point(|s| s.last.saturating_add(gap).saturating_add(lateness) <= time);
            for old in sessions.drain(..forgotten) {
                // It closed at `end - 1 < time`, before this time's parts were applied.
                debug_assert!(old.emitted.is_some(), "a forgotten session was emitted");
            }
            self.gauge.sub(forgotten);
        }
        // Kept sessions overlapping [lo, hi + gap) form one contiguous run.
        let first = sessions.partition_point(|s| s.last.saturating_add(gap) <= lo);
        let mut past = first;
        while past < sessions.len() && sessions[past].start < own_end {
            past += 1;
        }
        let start = sessions
            .get(first)
            .filter(|_| past > first)
            .map_or(lo, |s| s.start.min(lo));
        let end = match past.checked_sub(1).filter(|last| *last >= first) {
            Some(last) => sessions[last].last.saturating_add(gap).max(own_end),
            None => own_end,
        };
        if let Some(record) = &record {
            if end.saturating_add(lateness) <= time {
                // Late: the session it would merge into is beyond the allowed lateness.
                if sessions.is_empty() {
                    self.keys.remove(&key);
                }
                let window = Window {
                    start: start as i64,
                    end,
                };
                return out.push(Emit::Late(Late {
                    window,
                    key,
                    record: record.clone(),
                }));
            }
        }
        // The hot path: the part falls into exactly one session, still open and closing at or
        // after `time` (so its close is queued, and stays queued: the session only grows).
        // Folded in place, with no queue entry and no move of the key's sessions.
        if past == first + 1 && queued(&sessions[first]) {
            let session = &mut sessions[first];
            session.start = start;
            session.last = session.last.max(hi);
            match &record {
                Some(record) => self.agg.add(&mut session.acc, record),
                None => self.agg.merge(&mut session.acc, &acc),
            }
            return;
        }
        if let Some(record) = &record {
            self.agg.add(&mut acc, record);
        }
        let last = sessions[first..past]
            .iter()
            .fold(hi, |last, s| last.max(s.last));
        let mut retracted = false;
        // Whether a session merged here has a queued close: it covers the merged one.
        let mut covered = false;
        for old in sessions.drain(first..past) {
            self.agg.merge(&mut acc, &old.acc);
            self.gauge.sub(1);
            covered |= queued(&old);
            if let Some(value) = old.emitted {
                let window = Window {
                    start: old.start as i64,
                    end: old.last.saturating_add(gap),
                };
                out.push(Emit::Result(WindowResult {
                    window,
                    key: key.clone(),
                    value,
                    diff: -1,
                }));
                retracted = true;
            }
        }
        sessions.insert(
            first,
            Session {
                start,
                last,
                acc,
                emitted: None,
            },
        );
        self.gauge.add(1);
        let close = end - 1;
        if close < time {
            // Already past its end: emitted as a correction at `time`.
            debug_assert!(retracted || time > hi);
            self.dirty.push(key);
        } else if !covered {
            self.closes.insert((close, key));
        }
    }

    fn flush_corrections(&mut self, time: u64, out: &mut Vec<Self::Out>) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            self.emit_closed(&key, |close| close < time, out);
        }
    }

    fn next_close(&self) -> Option<u64> {
        self.closes.first().map(|(t, _)| *t)
    }

    fn close(&mut self, time: u64, out: &mut Vec<Self::Out>) {
        while let Some((t, _)) = self.closes.first() {
            if *t != time {
                break;
            }
            let (_, key) = self.closes.pop_first().expect("first exists");
            self.emit_closed(&key, |close| close == time, out);
            // Open sessions of the key that grew since this entry was queued: queued again at
            // their close now (after `time`, so this loop ends).
            let gap = self.gap;
            for session in self.keys.get(&key).into_iter().flatten() {
                if session.emitted.is_none() {
                    let close = session.last.saturating_add(gap) - 1;
                    debug_assert!(
                        close > time,
                        "an open session closing at {close} was missed"
                    );
                    self.closes.insert((close, key.clone()));
                }
            }
        }
    }

    fn free(&mut self, frontier: Option<u64>) {
        // A session with `end + lateness <= frontier` is forgotten for every record still to
        // come (see the module documentation).
        let (gap, lateness) = (self.gap, self.lateness);
        let forgotten = |s: &Session<A::Acc, A::Output>| {
            s.emitted.is_some()
                && frontier.is_none_or(|f| s.last.saturating_add(gap).saturating_add(lateness) <= f)
        };
        while let Some((t, _)) = self.frees.first() {
            if frontier.is_some_and(|f| *t > f) {
                break;
            }
            let (_, key) = self.frees.pop_first().expect("first exists");
            let Some(sessions) = self.keys.get_mut(&key) else {
                continue;
            };
            let before = sessions.len();
            sessions.retain(|s| !forgotten(s));
            self.gauge.sub(before - sessions.len());
            if sessions.is_empty() {
                self.keys.remove(&key);
            }
        }
    }
}

impl<K, V, A> Sessions<K, V, A>
where
    K: Hash + Eq + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: Clone + 'static,
    A: Aggregator<V>,
{
    /// Applies `chunk`'s on-time records (`ts >= time`, each with its key's hash), in order:
    /// one inside its key's newest session, which is open, is folded into it in place; any
    /// other goes through `offer`. The fold is `apply`'s hot path: the newest session starts
    /// at or before `ts` and ends after it, so it is the one kept session the record's own
    /// window `[ts, ts + gap)` overlaps (older ones end before it starts), and it closes after
    /// `ts >= time`, so its close is queued.
    fn extend_sessions(
        &mut self,
        chunk: &mut Vec<(u64, K, u64, V)>,
        time: u64,
        defer: &mut Vec<Part<K, V, A::Acc>>,
    ) {
        let gap = self.gap;
        for (hash, key, ts, record) in chunk.drain(..) {
            let newest = self
                .keys
                .get_hashed_mut(hash, &key)
                .and_then(|sessions| sessions.last_mut());
            if let Some(session) = newest {
                if session.emitted.is_none()
                    && session.start <= ts
                    && ts < session.last.saturating_add(gap)
                {
                    session.last = session.last.max(ts);
                    self.agg.add(&mut session.acc, &record);
                    continue;
                }
            }
            if let Some(part) = self.offer(Part::Record { key, ts, record }, time) {
                defer.push(part);
            }
        }
    }
}

impl<K, V, A> Sessions<K, V, A>
where
    K: Hash + Eq + Ord + Clone,
    A: Aggregator<V>,
{
    /// Emits the not yet emitted sessions of `key` whose close time satisfies `due`.
    fn emit_closed(
        &mut self,
        key: &K,
        due: impl Fn(u64) -> bool,
        out: &mut Vec<Emit<K, A::Output, V>>,
    ) {
        let (gap, lateness) = (self.gap, self.lateness);
        let Some(sessions) = self.keys.get_mut(key) else {
            return;
        };
        for session in sessions.iter_mut() {
            let end = session.last.saturating_add(gap);
            if session.emitted.is_some() || !due(end - 1) {
                continue;
            }
            let value = self.agg.finish(&session.acc);
            session.emitted = Some(value.clone());
            let window = Window {
                start: session.start as i64,
                end,
            };
            out.push(Emit::Result(WindowResult {
                window,
                key: key.clone(),
                value,
                diff: 1,
            }));
            self.frees
                .insert((end.saturating_add(lateness), key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Count;

    /// Runs `state` through the steps the driver takes for one batch of `parts` at `time`, with
    /// `offer_batch` (`batched`) or with `offer` part by part: closes before `time`, the
    /// offers, the deferred parts applied at `time`, and frees up to `time`.
    fn step(
        state: &mut Sessions<u8, u64, Count>,
        parts: Vec<Part<u8, u64, u64>>,
        time: u64,
        batched: bool,
        out: &mut Vec<Emit<u8, u64, u64>>,
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

    /// `offer_batch`'s hot loop leaves the state and emits exactly what offering the same
    /// parts one by one does: records extending a key's newest session, opening a new one,
    /// merging sessions, behind the watermark, late, with and without lateness.
    #[test]
    fn the_batch_hot_loop_agrees_with_offering_part_by_part() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for (gap, lateness) in [(5, 0), (5, 9), (1, 2), (30, 0), (30, 40)] {
            let [mut batched, mut single] =
                [(); 2].map(|_| Sessions::new(gap, lateness, Count, StateGauge::default()));
            let (mut out_batched, mut out_single) = (Vec::new(), Vec::new());
            let mut time = 0u64;
            for round in 0..400u64 {
                // Mostly in order (at or a little after `time`), sometimes behind it.
                let parts: Vec<_> = (0..next() % 48)
                    .map(|_| {
                        let r = next();
                        let ts = if r % 8 == 0 {
                            time.saturating_sub((r >> 8) & 63)
                        } else {
                            time + (r >> 8) % (2 * gap + 3)
                        };
                        let key = (r >> 20) as u8 % 6;
                        Part::Record {
                            key,
                            ts,
                            record: ts,
                        }
                    })
                    .collect();
                step(&mut batched, parts.clone(), time, true, &mut out_batched);
                step(&mut single, parts, time, false, &mut out_single);
                assert_eq!(
                    format!("{:?}", batched.state()),
                    format!("{:?}", single.state()),
                    "gap {gap}, lateness {lateness}, round {round}"
                );
                // Now and then a pause longer than the gap, which closes every session.
                time += match next() % 8 {
                    0 => 2 * gap + 1,
                    _ => next() % (gap + 2),
                };
            }
            step(&mut batched, Vec::new(), u64::MAX, true, &mut out_batched);
            step(&mut single, Vec::new(), u64::MAX, false, &mut out_single);
            assert_eq!(format!("{out_batched:?}"), format!("{out_single:?}"));
            let results = out_batched
                .iter()
                .filter(|e| matches!(e, Emit::Result(_)))
                .count();
            assert!(
                results > 100,
                "gap {gap}: {results} results, too few to cover closes"
            );
        }
    }
}
