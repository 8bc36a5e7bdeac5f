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
//! Records that share a time are applied in the input order. Where one worker reads the input,
//! that is the order they were sent in (a channel between two workers keeps order; with random
//! partitioning, where records reach the operator by several paths, phase one numbers them and
//! the operator sorts by that number). Where several workers read one input (a file's blocks,
//! a topic's partitions), records that share a time reach the operator from several readers in
//! an order that depends on timing: the records then carry their position in the input, and
//! the operator sorts by it ([`crate::keyed::window::WindowedStream::ordered_by`]; phase one
//! numbers records by it too). A record ahead of the watermark never changes whether an
//! earlier record is late, and never meets a forgotten session (it only touches sessions ending
//! after its own time), so applying it on arrival gives the outcome of input order, for every
//! number of workers and processes, every partitioner and every batching.
//!
//! # State
//!
//! Each key has its kept sessions sorted by start and pairwise disjoint (as intervals
//! `[start, last + gap)`), so their ends are sorted too. A session closes when the frontier
//! passes `last + gap - 1`. It is kept after it is emitted (its accumulator, and so the value
//! emitted, frozen) until the frontier reaches `end + lateness`: every later record arrives at
//! `T >= end + lateness`, for which the session is forgotten, so it is freed then (`frees`). A
//! record behind the watermark, applied at `T` once the frontier has passed `T`, first drops its
//! key's sessions forgotten at `T` (a prefix of them), which the frontier may not have freed
//! yet. Whether a session is forgotten depends only on `T`, a function of the input order, so
//! freeing it changes no result. State is bounded by the sessions within the lateness, not by all closed sessions.
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
use super::fixed::{Part, StateGauge};
use super::keys::KeyTable;
use super::{Aggregator, Emit, Late, Window, WindowResult};

/// One session of a key. An emitted session's accumulator never changes again (a record that
/// reaches it merges it into a new session, retracting it), so its emitted value is
/// `finish(acc)`, recomputed for the retraction rather than kept: a flag instead of an
/// `Option<Output>` (for a count, 32 bytes instead of 40).
#[derive(Clone, Debug)]
struct Session<Acc> {
    start: u64,
    last: u64,
    acc: Acc,
    emitted: bool,
}

/// A session as checkpoints hold it, with its emitted value (the encoding of checkpoint format
/// 3, from before [`Session`] kept a flag).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SavedSession<Acc, O> {
    start: u64,
    last: u64,
    acc: Acc,
    emitted: Option<O>,
}

/// The sessions of one key, sorted by start: one inline in the key's map slot (the usual case:
/// a key's sessions are its open one and those within the lateness), so that the hot path
/// reads one slot, as a hand-written loop's map of sessions would; several in a vector. The
/// variant is told by [`Session::emitted`]'s spare values, so a count's key slot is 40 bytes,
/// as the hand-written q11's (a `SmallVec` took 8 more, and one more cache line on most probes
/// of a table larger than the cache).
#[derive(Debug)]
enum KeySessions<S> {
    /// Exactly one session.
    One(S),
    /// Any other number of sessions (none: an empty vector, which does not allocate).
    Many(Vec<S>),
}

impl<S> KeySessions<S> {
    fn new() -> Self {
        KeySessions::Many(Vec::new())
    }

    fn from_vec(mut sessions: Vec<S>) -> Self {
        match sessions.pop() {
            Some(one) if sessions.is_empty() => KeySessions::One(one),
            Some(last) => {
                sessions.push(last);
                KeySessions::Many(sessions)
            }
            None => KeySessions::new(),
        }
    }

    /// The last session (the newest: they are sorted by start), if any. Read per record by
    /// the hot loop: one test of the variant, where the slice's `last_mut` also computed an
    /// index.
    #[inline]
    fn newest_mut(&mut self) -> Option<&mut S> {
        match self {
            KeySessions::One(one) => Some(one),
            KeySessions::Many(sessions) => sessions.last_mut(),
        }
    }

    /// Removes the sessions at `range` and returns them, in order.
    fn take(&mut self, range: std::ops::Range<usize>) -> SmallVec<[S; 2]> {
        match self {
            KeySessions::Many(sessions) => {
                let taken = sessions.drain(range).collect();
                self.compact();
                taken
            }
            KeySessions::One(_) if range.is_empty() => SmallVec::new(),
            KeySessions::One(_) => {
                debug_assert_eq!(range, 0..1, "a range within one session");
                match std::mem::replace(self, KeySessions::new()) {
                    KeySessions::One(one) => smallvec::smallvec![one],
                    KeySessions::Many(_) => unreachable!("matched One"),
                }
            }
        }
    }

    /// Inserts `session` at `index`, shifting those after it.
    fn insert(&mut self, index: usize, session: S) {
        match self {
            KeySessions::Many(sessions) if !sessions.is_empty() => sessions.insert(index, session),
            KeySessions::Many(_) => *self = KeySessions::One(session),
            KeySessions::One(_) => {
                let KeySessions::One(one) = std::mem::replace(self, KeySessions::new()) else {
                    unreachable!("matched One")
                };
                let pair = if index == 0 {
                    vec![session, one]
                } else {
                    vec![one, session]
                };
                *self = KeySessions::Many(pair);
            }
        }
    }

    /// Keeps the sessions for which `keep` holds.
    fn retain(&mut self, mut keep: impl FnMut(&S) -> bool) {
        match self {
            KeySessions::One(one) if keep(one) => {}
            KeySessions::One(_) => *self = KeySessions::new(),
            KeySessions::Many(sessions) => {
                sessions.retain(|s| keep(s));
                self.compact();
            }
        }
    }

    /// One session inline rather than in a vector.
    fn compact(&mut self) {
        if let KeySessions::Many(sessions) = self {
            if sessions.len() == 1 {
                let one = sessions.pop().expect("one session");
                *self = KeySessions::One(one);
            }
        }
    }
}

impl<S> std::ops::Deref for KeySessions<S> {
    type Target = [S];
    #[inline]
    fn deref(&self) -> &[S] {
        match self {
            KeySessions::One(one) => std::slice::from_ref(one),
            KeySessions::Many(sessions) => sessions,
        }
    }
}

impl<S> std::ops::DerefMut for KeySessions<S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [S] {
        match self {
            KeySessions::One(one) => std::slice::from_mut(one),
            KeySessions::Many(sessions) => sessions,
        }
    }
}

/// The session operator's state on one worker as one value: each key's sessions (open or
/// within the allowed lateness), sorted by key. The `closes` and `frees` queues are not part of
/// it: they follow from the sessions (an open session closes at `last + gap - 1`, an emitted
/// one is freed at `last + gap + lateness`), and their stale entries depend on the order in
/// which sessions merged, not on the records.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionsState<K, Acc, O> {
    keys: Vec<(K, Vec<SavedSession<Acc, O>>)>,
}

/// State of the session window operator on one worker.
pub(crate) struct Sessions<K, V, A: Aggregator<V>> {
    gap: u64,
    lateness: u64,
    agg: A,
    keys: KeyTable<K, KeySessions<Session<A::Acc>>>,
    closes: BTreeSet<(u64, K)>,
    /// `(end + lateness, key)` of emitted sessions: from that frontier on they are forgotten.
    frees: BTreeSet<(u64, K)>,
    dirty: Vec<K>,
    gauge: StateGauge,
    /// The input order of records, where it is not their arrival order (see the module docs).
    order: Option<fn(&V) -> u64>,
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
            order: None,
        }
    }

    /// Applies records that share a time in the order `order` gives them, not in arrival
    /// order (see [`crate::keyed::window::WindowedStream::ordered_by`]).
    pub(crate) fn ordered_by(mut self, order: Option<fn(&V) -> u64>) -> Self {
        self.order = order;
        self
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
            .map(|(key, sessions)| {
                let saved = sessions.iter().map(|s| SavedSession {
                    start: s.start,
                    last: s.last,
                    acc: s.acc.clone(),
                    emitted: s.emitted.then(|| self.agg.finish(&s.acc)),
                });
                (key.clone(), saved.collect())
            })
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
            let sessions = sessions.into_iter().map(|s| Session {
                start: s.start,
                last: s.last,
                acc: s.acc,
                emitted: s.emitted.is_some(),
            });
            self.keys
                .insert(key, KeySessions::from_vec(sessions.collect()));
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

    /// The hot loop: an on-time record inside its key's newest session, which is open, is
    /// folded into it in place (`apply`'s hot path, for the usual next record of a key in
    /// order), with one probe of the key table, as a hand-written loop's map of sessions does;
    /// any other part goes through `offer`. In order: every part is applied or deferred exactly
    /// as `offer` would, in the batch's order.
    ///
    /// The records are not hashed a chunk ahead of their probes (see the fixed windows' hot
    /// loop): for q11 that second pass over the records cost more than the overlapped misses
    /// saved, about a tenth of the samples; the window took 104 instructions an event with it
    /// and 75 without (callgrind), against the hand-written loop's 55.
    fn offer_batch(
        &mut self,
        parts: impl Iterator<Item = Self::Part>,
        time: u64,
        defer: &mut Vec<Self::Part>,
    ) {
        let mut parts = parts;
        let gap = self.gap;
        loop {
            let part = match self.keys.hashed_mut() {
                // A hashed table (NEXMark's bidders): a run of records extending their keys'
                // newest sessions, with the layout tested once for the run rather than per
                // probe; the first part that does not extend one comes back.
                Some(mut table) => {
                    let mut stop = None;
                    for part in parts.by_ref() {
                        match &part {
                            Part::Record { key, ts, record } if *ts >= time => {
                                let sessions = table.get_mut(key);
                                if extend_newest(sessions, &self.agg, gap, *ts, record) {
                                    continue;
                                }
                            }
                            _ => {}
                        }
                        stop = Some(part);
                        break;
                    }
                    match stop {
                        Some(part) => part,
                        None => break,
                    }
                }
                None => match parts.next() {
                    Some(Part::Record { key, ts, record }) if ts >= time => {
                        let sessions = self.keys.get_mut(&key);
                        if extend_newest(sessions, &self.agg, gap, ts, &record) {
                            continue;
                        }
                        Part::Record { key, ts, record }
                    }
                    Some(other) => other,
                    None => break,
                },
            };
            if let Some(part) = self.offer(part, time) {
                defer.push(part);
            }
        }
    }

    fn order(&self, parts: &mut [Self::Part]) {
        // Sequenced parts all come from random partitioning's phase one, and are the only
        // deferred parts there (its pieces are on time). Records are numbered by the input's
        // order, where one is given; a stable sort keeps any others' order.
        let order = self.order;
        parts.sort_by_key(|part| match part {
            Part::Sequenced { seq, .. } => *seq,
            Part::Record { record, .. } => order.map_or(0, |order| order(record)),
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
        let sessions = self.keys.slot_uncounted(&key, KeySessions::new);
        let lateness = self.lateness;
        // Whether a session has a queued close (see the module docs): every open session does
        // but one reopened behind the watermark at this time, closing before it, which goes to
        // `dirty` instead and is emitted when this time's parts are all applied.
        let queued = |s: &Session<A::Acc>| !s.emitted && s.last.saturating_add(gap) > time;
        if lo < time {
            // Behind the watermark: the sessions beyond the lateness at `time` are forgotten
            // (Flink's purge). Every later part arrives at `time` or after (the frontier has
            // passed `time`), so they are dropped now. Ends are sorted: they are a prefix.
            let forgotten = sessions
                .partition_point(|s| s.last.saturating_add(gap).saturating_add(lateness) <= time);
            for old in sessions.take(0..forgotten) {
                // It closed at `end - 1 < time`, before this time's parts were applied.
                debug_assert!(old.emitted, "a forgotten session was emitted");
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
        for old in sessions.take(first..past) {
            self.agg.merge(&mut acc, &old.acc);
            self.gauge.sub(1);
            covered |= queued(&old);
            if old.emitted {
                // Its value as emitted: its accumulator has not changed since (see `Session`).
                let value = self.agg.finish(&old.acc);
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
                emitted: false,
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
            for session in self.keys.get(&key).into_iter().flat_map(|s| s.iter()) {
                if !session.emitted {
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
        let forgotten = |s: &Session<A::Acc>| {
            s.emitted
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

/// Folds the on-time record `record` at `ts` (`ts >= time`, the batch's time) into its key's
/// newest session (of `sessions`, the key's slot, if any) if it falls inside it; `false`
/// (nothing changed) if not. This is `apply`'s hot path: the newest session starts at or before
/// `ts` and ends after it, so it is the one kept session the record's own window
/// `[ts, ts + gap)` overlaps (older ones end before it starts), and it closes after
/// `ts >= time`, so it is open and its close is queued.
///
/// That it is open needs no look at its flag: a session is emitted at its close `end - 1` once
/// the frontier has passed it (`close`, `flush_corrections`, or before the checkpoint it was
/// restored from), and every batch offered after that has a time past it, so
/// `ts >= time > end - 1`, and the record falls outside the session. (The test cost 3 of the
/// window's 72 instructions an event in q11.)
///
/// Always inlined into `offer_batch`: with the key table's probe inlined into it, the compiler
/// made it a call of its own, 8 instructions a record more.
#[inline(always)]
fn extend_newest<V, A: Aggregator<V>>(
    sessions: Option<&mut KeySessions<Session<A::Acc>>>,
    agg: &A,
    gap: u64,
    ts: u64,
    record: &V,
) -> bool {
    match sessions.and_then(KeySessions::newest_mut) {
        Some(session) if session.start <= ts && ts < session.last.saturating_add(gap) => {
            debug_assert!(
                !session.emitted,
                "an on-time record inside an emitted session"
            );
            session.last = session.last.max(ts);
            agg.add(&mut session.acc, record);
            true
        }
        _ => false,
    }
}

impl<K, V, A> Sessions<K, V, A>
where
    K: Hash + Eq + Ord + Clone + 'static,
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
            if session.emitted || !due(end - 1) {
                continue;
            }
            let value = self.agg.finish(&session.acc);
            session.emitted = true;
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
    use crate::window::state::tests::{agree, far_key};
    use crate::window::Count;

    /// q11's key slot (a bidder and its sessions of a count) is as small as the hand-written
    /// q11's: the variant lives in the flag's spare values.
    #[test]
    fn a_counting_keys_slot_is_forty_bytes() {
        assert_eq!(std::mem::size_of::<(u64, KeySessions<Session<u64>>)>(), 40);
    }

    /// `KeySessions` does what a vector does, whichever variant it is in, and holds one session
    /// inline.
    #[test]
    fn key_sessions_agree_with_a_vector() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let (mut sessions, mut model) = (KeySessions::new(), Vec::new());
        for step in 0..20_000u64 {
            let len = model.len() as u64;
            match next(4) {
                0 | 1 => {
                    let index = next(len + 1) as usize;
                    sessions.insert(index, step);
                    model.insert(index, step);
                }
                2 => {
                    let start = next(len + 1);
                    let end = start + next(len - start + 1);
                    let range = start as usize..end as usize;
                    let taken: Vec<_> = sessions.take(range.clone()).into_iter().collect();
                    assert_eq!(taken, model.drain(range).collect::<Vec<_>>());
                }
                _ => {
                    let odd = next(2);
                    sessions.retain(|s| s % 2 == odd);
                    model.retain(|s| s % 2 == odd);
                }
            }
            assert_eq!(&*sessions, &model[..], "step {step}");
            assert_eq!(matches!(sessions, KeySessions::One(_)), model.len() == 1);
        }
    }

    /// `offer_batch`'s hot loop leaves the state and emits exactly what offering the same
    /// parts one by one does: records extending a key's newest session, opening a new one,
    /// merging sessions, behind the watermark, late, with and without lateness; with dense
    /// keys, hashed keys, and integer keys one of which leaves the dense range.
    #[test]
    fn the_batch_hot_loop_agrees_with_offering_part_by_part() {
        fn agree_with<K>(key_of: fn(u8) -> K, keys: &str)
        where
            K: Hash + Ord + Clone + std::fmt::Debug + serde::Serialize + 'static,
            K: serde::de::DeserializeOwned,
        {
            for (gap, lateness) in [(5, 0), (5, 9), (1, 2), (30, 0), (30, 40)] {
                let mut states = [true, false].map(|batched| {
                    (
                        Sessions::new(gap, lateness, Count, StateGauge::default()),
                        batched,
                    )
                });
                let what = format!("{keys}, gap {gap}, lateness {lateness}");
                let results = agree(&mut states, gap, key_of, &what);
                assert!(
                    results > 100,
                    "{what}: {results} results, too few to cover closes"
                );
            }
        }
        agree_with(|k| k, "dense keys");
        agree_with(|k| (k,), "hashed keys");
        agree_with(far_key, "keys leaving the dense range");
    }
}
