//! Tumbling and sliding windows: keyed state per window end, emitted when the frontier passes
//! the window's last instant.
//!
//! State layout: `windows` holds, sorted by window end, the per-key accumulators of every live
//! window. A window is *open* until emitted; emitted windows stay (with their emitted values, so
//! a correction can retract them) until the frontier passes `end - 1 + lateness`, and are freed
//! then, from the front. State is therefore bounded by the windows that are open or within the
//! allowed lateness, a handful, which is why a sorted deque beats a tree here.
//!
//! The hot path is an in-order record: it hits the pane and window it hit last time, so it
//! costs two comparisons, an index check and one hash lookup, with no division. The caches
//! (`pane`, `hot`) are hints: a miss recomputes, and `free` invalidates `hot`.
//!
//! Sliding windows: a record belongs to `size / slide` windows, and folding it into each would
//! cost that many lookups (five for NEXMark q5's 10 s windows every 2 s), where a hand-written
//! loop counts per pane and merges panes when a window closes. So in-order records of a
//! sliding pane are folded per key into one pane table (`pane_keys`), which is merged into each
//! of the pane's windows (one merge per key and window) when records move on to another pane,
//! before a window closes, and seen merged by `state`. This is exact because aggregators are
//! associative and commutative (the contract two-phase aggregation already relies on), and
//! safe because the pane's windows exist (created by the run's first record) and stay open
//! while it is pending: nothing reads them before the merge.

use std::collections::VecDeque;
use std::hash::Hash;

use super::keys::KeyTable;

use super::driver::WindowState;
use super::{Aggregator, Emit, Late, Panes, WindowResult};

/// One contribution to a keyed window operator.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Part<K, V, Acc> {
    /// A raw record with its event time.
    Record {
        /// The key.
        key: K,
        /// The record's event time.
        ts: u64,
        /// The record.
        record: V,
    },
    /// A raw record with the number its sender gave it: records of one time are applied in
    /// the order of these numbers (random partitioning, where records of one key reach the
    /// operator from several workers; see [`super::session`]).
    Sequenced {
        /// The key.
        key: K,
        /// The record's event time.
        ts: u64,
        /// The record.
        record: V,
        /// Its number in the input order: its position in the input where the stream gives
        /// one ([`crate::keyed::window::WindowedStream::ordered_by`]), else in its sender's
        /// output.
        seq: u64,
    },
    /// A partial aggregate of records of one key whose event times lie in `[lo, hi]` and that
    /// all belong to the same windows (one pane, or one piece of a session).
    Partial {
        /// The key.
        key: K,
        /// Smallest event time covered.
        lo: u64,
        /// Largest event time covered.
        hi: u64,
        /// The partial aggregate.
        acc: Acc,
    },
    /// A record found late before this operator; passed through to the output.
    Late(Late<K, V>),
}

impl<K, V, Acc> Part<K, V, Acc> {
    /// The key this part belongs to.
    pub fn key(&self) -> &K {
        match self {
            Part::Record { key, .. } | Part::Sequenced { key, .. } | Part::Partial { key, .. } => {
                key
            }
            Part::Late(late) => &late.key,
        }
    }
}

/// One live window. Accumulators and emitted values live apart so that the table the hot path
/// probes is as small as a hand-written loop's (key and accumulator only).
struct PerWindow<K, Acc, O> {
    end: u64,
    open: bool,
    keys: KeyTable<K, Acc>,
    /// Values emitted so far; kept only while corrections are possible (lateness > 0).
    emitted: KeyTable<K, O>,
}

/// One live window of [`FixedState`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct WindowEntries<K, Acc, O> {
    /// The window's end (exclusive).
    end: u64,
    /// Whether the window has not been emitted yet.
    open: bool,
    /// Accumulator per key.
    keys: Vec<(K, Acc)>,
    /// Value emitted per key (only while corrections are possible).
    emitted: Vec<(K, O)>,
}

/// The tumbling / sliding operator's state on one worker as one value: its live windows by
/// end, open or within the allowed lateness (the caches and spare tables are not state).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct FixedState<K, Acc, O> {
    windows: Vec<WindowEntries<K, Acc, O>>,
}

/// The last pane looked up: `[lo, hi)` and the ends of its first and last window.
#[derive(Clone, Copy)]
struct PaneHint {
    lo: u64,
    hi: u64,
    first: u64,
    last: u64,
}

/// State of the tumbling / sliding window operator on one worker.
pub(crate) struct FixedWindows<K, V, A: Aggregator<V>> {
    panes: Panes,
    lateness: u64,
    agg: A,
    windows: VecDeque<PerWindow<K, A::Acc, A::Output>>,
    /// How many windows at the front of `windows` are closed (emitted). Windows close in order
    /// of their ends, and a window inserted closed (by a correction at time `t`) ends at or
    /// before `t`, before every open window, so the closed windows are always a prefix. Keeping
    /// its length makes finding the first open window O(1): a scan from the front would cost
    /// one step per closed window on every close, quadratic when one activation closes many
    /// windows (a sliding window of `2^20` windows per record at the end of the input).
    closed: usize,
    pane: Option<PaneHint>,
    hot: usize,
    dirty: Vec<(u64, K)>,
    /// Tables of freed windows, cleared, kept to spare the next windows their growth.
    spare: Vec<KeyTable<K, A::Acc>>,
    gauge: StateGauge,
    /// Sliding windows: the pane whose in-order records `pane_keys` holds, not yet merged into
    /// its windows (see the module docs).
    pending: Option<PaneHint>,
    /// Accumulators per key of the `pending` pane's records.
    pane_keys: KeyTable<K, A::Acc>,
    /// Counts `pane_keys`' entries, which are not window state: the windows count them when
    /// the pane is merged into them. Read by nothing.
    pane_gauge: StateGauge,
}

/// How many freed key tables are kept for reuse.
const SPARE_TABLES: usize = 4;

/// A shared, cheaply cloned count of the live (window, key) entries of a window operator.
///
/// Tests use it to check that state does not grow with the number of closed windows; it is
/// also a cheap memory metric.
#[derive(Clone, Debug, Default)]
pub struct StateGauge(std::rc::Rc<std::cell::Cell<(usize, usize)>>);

impl StateGauge {
    /// Live entries now.
    pub fn live(&self) -> usize {
        self.0.get().0
    }
    /// The most entries that were ever live at once.
    pub fn peak(&self) -> usize {
        self.0.get().1
    }
    pub(crate) fn add(&self, n: usize) {
        let (live, peak) = self.0.get();
        self.0.set((live + n, peak.max(live + n)));
    }
    pub(crate) fn sub(&self, n: usize) {
        let (live, peak) = self.0.get();
        self.0.set((live - n, peak));
    }
}

impl<K, V, A> FixedWindows<K, V, A>
where
    K: Hash + Eq + Clone + 'static,
    A: Aggregator<V>,
{
    pub(crate) fn new(size: u64, slide: u64, lateness: u64, agg: A, gauge: StateGauge) -> Self {
        FixedWindows {
            panes: Panes::new(size, slide),
            lateness,
            agg,
            windows: VecDeque::new(),
            closed: 0,
            pane: None,
            hot: 0,
            dirty: Vec::new(),
            spare: Vec::new(),
            gauge,
            pending: None,
            pane_keys: KeyTable::default(),
            pane_gauge: StateGauge::default(),
        }
    }

    /// Merges the pending pane's accumulators into each of its windows, which exist and are
    /// open (see the module docs), and empties the pane table.
    fn flush_pane(&mut self) {
        let Some(pane) = self.pending.take() else {
            return;
        };
        let mut end = pane.first;
        loop {
            let index = self.windows.partition_point(|w| w.end < end);
            let window = &mut self.windows[index];
            debug_assert!(
                window.end == end && window.open,
                "a pending pane's window is open"
            );
            let agg = &self.agg;
            for (key, acc) in self.pane_keys.iter() {
                agg.merge(window.keys.slot(key, &self.gauge, || agg.init()), acc);
            }
            if end >= pane.last {
                break;
            }
            end += self.panes.slide;
        }
        // Clearing costs the table's capacity, not its entries: a large hashed table that held
        // few keys this time (records switching panes often, out of order) is dropped instead,
        // so that a flush costs what the pane's records added. A dense table (small integer
        // keys) costs its array's length either way, the largest key's index plus one: at most
        // 64 KiB of slots (`keys::dense_limit`), even for a pane of a few sparse keys (rev29).
        if self.pane_keys.capacity() > 4 * self.pane_keys.len() + 64 {
            self.pane_keys = KeyTable::default();
        } else {
            self.pane_keys.clear();
        }
    }

    /// The pane containing `ts`, from the hint when it matches.
    #[inline]
    fn pane_of(&mut self, ts: u64) -> PaneHint {
        if let Some(hint) = self.pane {
            if hint.lo <= ts && ts < hint.hi {
                return hint;
            }
        }
        let lo = self.panes.pane_start(ts);
        let (first, last) = self.panes.window_ends(lo);
        let hint = PaneHint {
            lo,
            hi: lo + self.panes.width,
            first,
            last,
        };
        self.pane = Some(hint);
        hint
    }

    /// The index of the window ending at `end`, inserted (open iff it ends after `time`) if absent.
    #[inline]
    fn window_index(&mut self, end: u64, time: u64) -> usize {
        for guess in [self.hot, self.hot + 1] {
            if self.windows.get(guess).is_some_and(|w| w.end == end) {
                self.hot = guess;
                return guess;
            }
        }
        let index = self.windows.partition_point(|w| w.end < end);
        if self.windows.get(index).is_none_or(|w| w.end != end) {
            let open = end > time;
            debug_assert!(open || index <= self.closed, "closed windows are a prefix");
            self.closed += usize::from(!open);
            let keys = self.spare.pop().unwrap_or_default();
            let emitted = KeyTable::default();
            self.windows.insert(
                index,
                PerWindow {
                    end,
                    open,
                    keys,
                    emitted,
                },
            );
        }
        self.hot = index;
        index
    }

    /// Folds `contribution` into every window of the pane of `ts` that it is not late for.
    #[inline]
    fn fold(
        &mut self,
        key: K,
        ts: u64,
        contribution: Result<V, A::Acc>,
        time: u64,
        out: &mut Vec<Emit<K, A::Output, V>>,
    ) where
        V: Clone,
    {
        let pane = self.pane_of(ts);
        let mut end = pane.first;
        loop {
            if end.saturating_add(self.lateness) <= time {
                if let Ok(record) = &contribution {
                    let window = self.panes.window(end);
                    out.push(Emit::Late(Late {
                        window,
                        key: key.clone(),
                        record: record.clone(),
                    }));
                }
            } else {
                let index = self.window_index(end, time);
                let per_window = &mut self.windows[index];
                let agg = &self.agg;
                let slot = per_window.keys.slot(&key, &self.gauge, || agg.init());
                match &contribution {
                    Ok(record) => agg.add(slot, record),
                    Err(acc) => agg.merge(slot, acc),
                }
                if !per_window.open {
                    self.dirty.push((end, key.clone()));
                }
            }
            if end >= pane.last {
                break;
            }
            end += self.panes.slide;
        }
    }

    fn first_open(&self) -> Option<usize> {
        (self.closed < self.windows.len()).then_some(self.closed)
    }
}

impl<K, V, A> WindowState for FixedWindows<K, V, A>
where
    K: Hash + Eq + Ord + Clone + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: Clone + 'static,
    A: Aggregator<V>,
{
    type Part = Part<K, V, A::Acc>;
    type Out = Emit<K, A::Output, V>;
    type State = FixedState<K, A::Acc, A::Output>;

    fn state(&self) -> Self::State {
        // Sorted by key so that equal states are equal values whatever the tables' order.
        fn entries<K: Hash + Ord + Clone + 'static, T: Clone>(
            table: &KeyTable<K, T>,
        ) -> Vec<(K, T)> {
            let mut entries: Vec<_> = table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            entries
        }
        // A window of the pending pane: its table with the pane's accumulators merged in, as
        // `flush_pane` would leave it.
        let merged = |table: &KeyTable<K, A::Acc>| {
            let mut merged = KeyTable::default();
            for (key, acc) in table.iter().chain(self.pane_keys.iter()) {
                let slot = merged.slot(key, &StateGauge::default(), || self.agg.init());
                self.agg.merge(slot, acc);
            }
            entries(&merged)
        };
        let pending = |end: u64| {
            self.pending
                .is_some_and(|p| p.first <= end && end <= p.last)
        };
        FixedState {
            windows: self
                .windows
                .iter()
                .map(|w| WindowEntries {
                    end: w.end,
                    open: w.open,
                    keys: if pending(w.end) {
                        merged(&w.keys)
                    } else {
                        entries(&w.keys)
                    },
                    emitted: entries(&w.emitted),
                })
                .collect(),
        }
    }

    fn restore(&mut self, state: Self::State) {
        debug_assert!(self.windows.is_empty(), "restored into a fresh state");
        fn table<K: Hash + Eq + 'static, T>(entries: Vec<(K, T)>) -> KeyTable<K, T> {
            let mut table = KeyTable::default();
            for (key, value) in entries {
                table.insert(key, value);
            }
            table
        }
        // Closed windows are a prefix (see `closed`): the value lists them by end.
        self.closed = state.windows.iter().take_while(|w| !w.open).count();
        for window in state.windows {
            self.gauge.add(window.keys.len());
            self.windows.push_back(PerWindow {
                end: window.end,
                open: window.open,
                keys: table(window.keys),
                emitted: table(window.emitted),
            });
        }
        self.pane = None;
        self.hot = 0;
    }

    #[inline]
    fn offer(&mut self, part: Self::Part, time: u64) -> Option<Self::Part> {
        let ts = match &part {
            Part::Record { ts, .. } | Part::Sequenced { ts, .. } => *ts,
            Part::Partial { lo, .. } => *lo,
            Part::Late(_) => return Some(part),
        };
        // Safe now iff every window of the pane ends after `time`: none can have closed.
        if time >= self.pane_of(ts).hi {
            return Some(part);
        }
        let mut none = Vec::new();
        match part {
            Part::Record { key, ts, record }
            | Part::Sequenced {
                key, ts, record, ..
            } => self.fold(key, ts, Ok(record), time, &mut none),
            Part::Partial { key, lo, acc, .. } => self.fold(key, lo, Err(acc), time, &mut none),
            Part::Late(_) => unreachable!("returned above"),
        }
        debug_assert!(none.is_empty(), "on-time parts emit nothing");
        None
    }

    /// The tight loop for in-order records: while records (or phase one's partials) stay in
    /// the pane of the last one, fold them straight into its window's table (tumbling), or into
    /// the pane table (sliding: see the module docs).
    fn offer_batch(
        &mut self,
        parts: impl Iterator<Item = Self::Part>,
        time: u64,
        defer: &mut Vec<Self::Part>,
    ) {
        let mut parts = parts;
        // The record that ended the last fast run, to be looked at again.
        let mut carried: Option<Self::Part> = None;
        while let Some(part) = carried.take().or_else(|| parts.next()) {
            let ts = match &part {
                Part::Record { ts, .. } => Some(*ts),
                Part::Partial { lo, .. } => Some(*lo),
                _ => None,
            };
            if let Some(part) = self.offer(part, time) {
                defer.push(part);
                continue;
            }
            // A record of a pane whose windows are all open (`offer` just folded it into
            // them): fold the records that follow in the same pane into one table, with
            // everything hoisted: the window's (a single window) or the pane's.
            let Some(ts) = ts else { continue };
            let pane = self.pane_of(ts);
            if time >= pane.hi {
                continue;
            }
            let (agg, keys, gauge) = if pane.first == pane.last {
                let index = self.window_index(pane.first, time);
                (&self.agg, &mut self.windows[index].keys, &self.gauge)
            } else {
                if self.pending.is_some_and(|p| p.lo != pane.lo) {
                    self.flush_pane();
                }
                self.pending = Some(pane);
                (&self.agg, &mut self.pane_keys, &self.pane_gauge)
            };
            // Each record is probed as it comes, as a hand-written loop does. Hashing a chunk of
            // records ahead of their probes, so that the processor would overlap the probes'
            // cache misses, cost more than it saved: NEXMark q5's window (auction ids, hashed)
            // took 96 instructions an event with it and 54 without (callgrind), and ran at
            // 0.75-0.81 of its baseline with it, 0.89-1.04 without (2-core VM, one sitting, 3
            // runs each). `ts - lo < width` is the pane test `lo <= ts < hi` in one compare
            // (below `lo` the difference wraps past `width`).
            let width = pane.hi - pane.lo;
            if keys.is_dense() && std::mem::size_of::<K>() != 0 {
                carried = fold_dense_run(&mut parts, keys, agg, gauge, pane.lo, width);
                continue;
            }
            // A hashed table, or the one key of a window over all records (a zero-sized key,
            // NEXMark q7's): a run of one key folds into the slot it found.
            let mut run: Option<(K, &mut A::Acc)> = None;
            for part in parts.by_ref() {
                match part {
                    Part::Record { key, ts, record } if ts.wrapping_sub(pane.lo) < width => {
                        match &mut run {
                            Some((k, slot)) if *k == key => agg.add(slot, &record),
                            _ => {
                                let slot = keys.slot(&key, gauge, || agg.init());
                                agg.add(slot, &record);
                                run = Some((key, slot));
                            }
                        }
                    }
                    // Phase one's partials (one per key and pane) merge as their records
                    // would fold.
                    Part::Partial { key, lo, acc, .. } if lo.wrapping_sub(pane.lo) < width => {
                        match &mut run {
                            Some((k, slot)) if *k == key => agg.merge(slot, &acc),
                            _ => {
                                let slot = keys.slot(&key, gauge, || agg.init());
                                agg.merge(slot, &acc);
                                run = Some((key, slot));
                            }
                        }
                    }
                    other => {
                        carried = Some(other);
                        break;
                    }
                }
            }
        }
    }

    fn apply(&mut self, part: Self::Part, time: u64, out: &mut Vec<Self::Out>) {
        match part {
            Part::Record { key, ts, record }
            | Part::Sequenced {
                key, ts, record, ..
            } => self.fold(key, ts, Ok(record), time, out),
            Part::Partial { key, lo, acc, .. } => self.fold(key, lo, Err(acc), time, out),
            Part::Late(late) => out.push(Emit::Late(late)),
        }
    }

    fn flush_corrections(&mut self, _time: u64, out: &mut Vec<Self::Out>) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
        for (end, key) in self.dirty.drain(..) {
            let window = self.panes.window(end);
            let index = self.windows.partition_point(|w| w.end < end);
            let per_window = &mut self.windows[index];
            let value = self
                .agg
                .finish(per_window.keys.get_mut(&key).expect("dirty keys are live"));
            match per_window.emitted.get_mut(&key) {
                Some(old) if *old == value => {}
                Some(old) => {
                    let old = std::mem::replace(old, value.clone());
                    out.push(Emit::Result(WindowResult {
                        window,
                        key: key.clone(),
                        value: old,
                        diff: -1,
                    }));
                    out.push(Emit::Result(WindowResult {
                        window,
                        key,
                        value,
                        diff: 1,
                    }));
                }
                None => {
                    // A window first opened by a correction: emitted now for the first time.
                    per_window.emitted.insert(key.clone(), value.clone());
                    out.push(Emit::Result(WindowResult {
                        window,
                        key,
                        value,
                        diff: 1,
                    }));
                }
            }
        }
    }

    fn next_close(&self) -> Option<u64> {
        self.first_open().map(|i| self.windows[i].end - 1)
    }

    fn close(&mut self, time: u64, out: &mut Vec<Self::Out>) {
        self.flush_pane();
        let index = self.first_open().expect("closing an open window");
        let per_window = &mut self.windows[index];
        debug_assert_eq!(per_window.end, time + 1);
        per_window.open = false;
        self.closed += 1;
        let window = self.panes.window(per_window.end);
        // Emitted values matter only for corrections, and without lateness there are none.
        let keep = self.lateness > 0;
        for (key, acc) in per_window.keys.iter_mut() {
            let value = self.agg.finish(acc);
            if keep {
                per_window.emitted.insert(key.clone(), value.clone());
            }
            out.push(Emit::Result(WindowResult {
                window,
                key: key.clone(),
                value,
                diff: 1,
            }));
        }
    }

    fn free(&mut self, frontier: Option<u64>) {
        // A window is final once every future record for it is late: end + lateness <= frontier.
        while let Some(front) = self.windows.front() {
            let done = frontier.is_none_or(|f| front.end.saturating_add(self.lateness) <= f);
            if !done || front.open {
                break;
            }
            let mut freed = self.windows.pop_front().expect("front exists");
            self.closed -= 1;
            self.gauge.sub(freed.keys.len());
            if self.spare.len() < SPARE_TABLES {
                freed.keys.clear();
                self.spare.push(freed.keys);
            }
            self.hot = self.hot.saturating_sub(1);
        }
    }
}

/// The hot loop over a dense key table (YSB's campaigns): folds the records (and merges the
/// partials) that follow in the pane `[lo, lo + width)` into `keys` and returns the part that
/// ended the run, if any. Probing
/// the dense table, a bounds check and a test, costs what a test for a run of one key would, so
/// there is none; a key the table lacks is inserted through `slot`, which may turn the table
/// hashed (later probes then miss and go through `slot` too, still exact).
///
/// Not inlined: as a function of its own the loop took YSB's window 14.8 instructions an event,
/// inlined into `offer_batch` beside the run loop 16.1 (callgrind, experiments/README.md
/// "*One-level dense tables*").
#[inline(never)]
fn fold_dense_run<K, V, A>(
    parts: &mut impl Iterator<Item = Part<K, V, A::Acc>>,
    keys: &mut KeyTable<K, A::Acc>,
    agg: &A,
    gauge: &StateGauge,
    lo: u64,
    width: u64,
) -> Option<Part<K, V, A::Acc>>
where
    K: Hash + Eq + Clone + 'static,
    A: Aggregator<V>,
{
    for part in parts {
        match part {
            Part::Record { key, ts, record } if ts.wrapping_sub(lo) < width => {
                match keys.dense_get_mut(&key) {
                    Some(slot) => agg.add(slot, &record),
                    None => agg.add(keys.slot(&key, gauge, || agg.init()), &record),
                }
            }
            Part::Partial {
                key, lo: at, acc, ..
            } if at.wrapping_sub(lo) < width => match keys.dense_get_mut(&key) {
                Some(slot) => agg.merge(slot, &acc),
                None => agg.merge(keys.slot(&key, gauge, || agg.init()), &acc),
            },
            other => return Some(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::state::tests::{agree, far_key};
    use crate::window::Count;

    /// `offer_batch`'s hot loop leaves the state and emits exactly what offering the same
    /// parts one by one does: runs of one key, several keys, panes of
    /// sliding windows, records behind the watermark, late, with and without lateness; with
    /// dense keys, hashed keys, and integer keys one of which leaves the dense range.
    #[test]
    fn the_batch_hot_loops_agree_with_offering_part_by_part() {
        fn agree_with<K>(key_of: fn(u8) -> K, keys: &str)
        where
            K: Hash + Ord + Clone + std::fmt::Debug + serde::Serialize + 'static,
            K: serde::de::DeserializeOwned,
        {
            for (size, slide, lateness) in [(5, 5, 0), (5, 5, 9), (10, 3, 0), (10, 2, 7), (1, 1, 2)]
            {
                let mut states = [true, false].map(|batched| {
                    let state =
                        FixedWindows::new(size, slide, lateness, Count, StateGauge::default());
                    (state, batched)
                });
                let what = format!("{keys}, size {size}, slide {slide}, lateness {lateness}");
                let results = agree(&mut states, size, key_of, &what);
                assert!(results > 100, "{what}: {results} results, too few");
            }
        }
        agree_with(|k| k, "dense keys");
        agree_with(|k| (k,), "hashed keys");
        agree_with(far_key, "keys leaving the dense range");
    }

    /// The kept count of closed windows agrees with a scan, whatever mix of on-time records,
    /// corrections (windows inserted closed), closes and frees the operator sees.
    #[test]
    fn the_first_open_window_is_found_without_a_scan() {
        let scan = |state: &FixedWindows<u8, u64, Count>| state.windows.iter().position(|w| w.open);
        for (size, slide, lateness) in [(10, 10, 0), (10, 3, 0), (10, 3, 7), (7, 1, 20)] {
            let mut state = FixedWindows::new(size, slide, lateness, Count, StateGauge::default());
            let mut out = Vec::new();
            // Times only grow, as the driver applies them; event times wander behind them.
            let mut time = 0u64;
            for step in 0u64..400 {
                let ts = time.saturating_sub(step * 7 % 23);
                let key = (step % 3) as u8;
                if let Some(part) = state.offer(
                    Part::Record {
                        key,
                        ts,
                        record: ts,
                    },
                    time,
                ) {
                    state.apply(part, time, &mut out);
                    state.flush_corrections(time, &mut out);
                }
                assert_eq!(state.first_open(), scan(&state), "after offering at {time}");
                time += step % 4;
                while let Some(close) = state.next_close().filter(|c| *c < time) {
                    state.close(close, &mut out);
                    assert_eq!(state.first_open(), scan(&state), "after closing {close}");
                }
                state.free(Some(time));
                assert_eq!(state.first_open(), scan(&state), "after freeing at {time}");
            }
            // The end of the input closes and frees everything.
            while let Some(close) = state.next_close() {
                state.close(close, &mut out);
                assert_eq!(state.first_open(), scan(&state));
            }
            state.free(None);
            assert!(state.windows.is_empty() && state.closed == 0);
        }
    }
}
