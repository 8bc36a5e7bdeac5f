//! Session windows: per key, the union of overlapping `[t, t + gap)` over its records.
//!
//! State layout: each key has its sessions sorted by start and pairwise disjoint (as intervals
//! `[start, last + gap)`). A session closes when the frontier passes `last + gap - 1`. After it
//! is emitted it is kept, with its emitted value, for as long as a record that still counts can
//! merge into it: a record at time `T` counts only if `t + gap + lateness > T`, and it overlaps
//! the session only if `t < last + gap`, so once the frontier passes
//! `last + 2 * gap + lateness - 2` no record can change the session and it is freed. A record
//! that merges emitted sessions retracts each of them; the merged session is emitted when it
//! closes (at once, if its end has already passed).
//!
//! `closes` and `frees` are queues keyed by time; merging leaves stale entries behind, which are
//! recognised (no session of that key matches) and skipped when they come up.

use std::collections::BTreeSet;
use std::hash::Hash;

use hashbrown::HashMap;

use super::driver::WindowState;
use super::fixed::{Part, StateGauge};
use super::{Aggregator, Emit, Late, Window, WindowResult};

struct Session<Acc, O> {
    start: u64,
    last: u64,
    acc: Acc,
    emitted: Option<O>,
}

/// The sessions of one key, sorted by start.
type KeySessions<A, V> = Vec<Session<<A as Aggregator<V>>::Acc, <A as Aggregator<V>>::Output>>;

/// State of the session window operator on one worker.
pub(crate) struct Sessions<K, V, A: Aggregator<V>> {
    gap: u64,
    lateness: u64,
    agg: A,
    keys: HashMap<K, KeySessions<A, V>>,
    closes: BTreeSet<(u64, K)>,
    frees: BTreeSet<(u64, K)>,
    dirty: Vec<K>,
    gauge: StateGauge,
}

impl<K, V, A: Aggregator<V>> Sessions<K, V, A> {
    pub(crate) fn new(gap: u64, lateness: u64, agg: A, gauge: StateGauge) -> Self {
        Sessions {
            gap,
            lateness,
            agg,
            keys: HashMap::new(),
            closes: BTreeSet::new(),
            frees: BTreeSet::new(),
            dirty: Vec::new(),
            gauge,
        }
    }

    fn window(&self, start: u64, last: u64) -> Window {
        Window {
            start: start as i64,
            end: last.saturating_add(self.gap),
        }
    }
}

impl<K, V, A> WindowState for Sessions<K, V, A>
where
    K: Hash + Eq + Ord + Clone + 'static,
    V: Clone + 'static,
    A: Aggregator<V>,
{
    type Part = Part<K, V, A::Acc>;
    type Out = Emit<K, A::Output, V>;

    fn offer(&mut self, part: Self::Part, time: u64) -> Option<Self::Part> {
        // Every event time at or after `time`: no session it touches can have closed.
        let lo = match &part {
            Part::Record { ts, .. } => *ts,
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

    fn apply(&mut self, part: Self::Part, time: u64, out: &mut Vec<Self::Out>) {
        let late_at = |hi: u64| hi.saturating_add(self.gap).saturating_add(self.lateness) <= time;
        let (key, lo, hi, mut acc) = match part {
            Part::Record { key, ts, record } => {
                if late_at(ts) {
                    let window = self.window(ts, ts);
                    return out.push(Emit::Late(Late {
                        window,
                        key,
                        record,
                    }));
                }
                let mut acc = self.agg.init();
                self.agg.add(&mut acc, &record);
                (key, ts, ts, acc)
            }
            Part::Partial { key, lo, hi, acc } => {
                // Phase one drops late records before building pieces.
                debug_assert!(!late_at(hi));
                (key, lo, hi, acc)
            }
            Part::Late(late) => return out.push(Emit::Late(late)),
        };
        let gap = self.gap;
        let sessions = match self.keys.get_mut(&key) {
            Some(sessions) => sessions,
            None => self.keys.entry(key.clone()).or_default(),
        };
        // Sessions overlapping [lo, hi + gap) form one contiguous run.
        let first = sessions.partition_point(|s| s.last.saturating_add(gap) <= lo);
        let mut past = first;
        while past < sessions.len() && sessions[past].start < hi.saturating_add(gap) {
            past += 1;
        }
        let (mut start, mut last) = (lo, hi);
        let mut retracted = false;
        for old in sessions.drain(first..past) {
            start = start.min(old.start);
            last = last.max(old.last);
            self.agg.merge(&mut acc, &old.acc);
            self.gauge.sub(1);
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
        let close = last.saturating_add(gap) - 1;
        if close < time {
            // Already past its end: emitted as a correction at `time`.
            debug_assert!(retracted || time > hi);
            self.dirty.push(key);
        } else {
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
        }
    }

    fn free(&mut self, frontier: Option<u64>) {
        while let Some((t, _)) = self.frees.first() {
            if frontier.is_some_and(|f| *t >= f) {
                break;
            }
            let (_, key) = self.frees.pop_first().expect("first exists");
            let Some(sessions) = self.keys.get_mut(&key) else {
                continue;
            };
            let before = sessions.len();
            let (gap, lateness) = (self.gap, self.lateness);
            sessions.retain(|s| {
                let free_at = s
                    .last
                    .saturating_add(2 * gap)
                    .saturating_add(lateness)
                    .saturating_sub(2);
                s.emitted.is_none() || frontier.is_some_and(|f| free_at >= f)
            });
            self.gauge.sub(before - sessions.len());
            if sessions.is_empty() {
                self.keys.remove(&key);
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
            let free_at = end
                .saturating_add(gap)
                .saturating_add(lateness)
                .saturating_sub(2);
            self.frees.insert((free_at, key.clone()));
        }
    }
}
