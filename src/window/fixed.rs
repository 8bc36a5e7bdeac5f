//! Tumbling and sliding windows: keyed state per window end, emitted when the frontier passes
//! the window's last instant.
//!
//! State layout: `windows` maps a window end to the per-key accumulators of that window. A
//! window is *open* until emitted; emitted windows stay (with their emitted values, so a
//! correction can retract them) until the frontier passes `end - 1 + lateness`, and are freed
//! then. Invariant: every open window ends after `closed_upto` and after every freed one, so
//! the open windows are found by a range scan and state is bounded by the windows that are
//! open or within the allowed lateness.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::ops::Bound;

use super::keys::{slot_of, KeyTable};

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
            Part::Record { key, .. } | Part::Partial { key, .. } => key,
            Part::Late(late) => &late.key,
        }
    }
}

struct Slot<Acc, O> {
    acc: Acc,
    emitted: Option<O>,
    dirty: bool,
}

impl<Acc, O> Slot<Acc, O> {
    fn new(acc: Acc) -> Self {
        Slot {
            acc,
            emitted: None,
            dirty: false,
        }
    }
}

struct PerWindow<K, Acc, O> {
    open: bool,
    keys: KeyTable<K, Slot<Acc, O>>,
}

/// State of the tumbling / sliding window operator on one worker.
pub(crate) struct FixedWindows<K, V, A: Aggregator<V>> {
    panes: Panes,
    lateness: u64,
    agg: A,
    windows: BTreeMap<u64, PerWindow<K, A::Acc, A::Output>>,
    /// Every window ending at or before this has been emitted.
    closed_upto: u64,
    dirty: Vec<(u64, K)>,
    /// Shared gauge of live (window, key) entries, for tests and metrics.
    gauge: StateGauge,
}

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

impl<K, V, A: Aggregator<V>> FixedWindows<K, V, A> {
    pub(crate) fn new(size: u64, slide: u64, lateness: u64, agg: A, gauge: StateGauge) -> Self {
        FixedWindows {
            panes: Panes::new(size, slide),
            lateness,
            agg,
            windows: BTreeMap::new(),
            closed_upto: 0,
            dirty: Vec::new(),
            gauge,
        }
    }
}

impl<K, V, A> WindowState for FixedWindows<K, V, A>
where
    K: Hash + Eq + Clone + 'static,
    V: Clone + 'static,
    A: Aggregator<V>,
{
    type Part = Part<K, V, A::Acc>;
    type Out = Emit<K, A::Output, V>;

    #[inline]
    fn ready_before(&self, part: &Self::Part) -> u64 {
        match part {
            Part::Record { ts, .. } => self.panes.pane_start(*ts) + self.panes.width,
            Part::Partial { lo, .. } => self.panes.pane_start(*lo) + self.panes.width,
            Part::Late(_) => 0,
        }
    }

    #[inline]
    fn apply(&mut self, part: Self::Part, time: u64, out: &mut Vec<Self::Out>) {
        let (key, pane, contribution) = match part {
            Part::Record { key, ts, record } => (key, self.panes.pane_start(ts), Ok(record)),
            Part::Partial { key, lo, acc, .. } => (key, self.panes.pane_start(lo), Err(acc)),
            Part::Late(late) => return out.push(Emit::Late(late)),
        };
        let (first, last) = self.panes.window_ends(pane);
        let mut end = first;
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
                let open = end > time;
                let per_window = self.windows.entry(end).or_insert_with(|| PerWindow {
                    open,
                    keys: KeyTable::default(),
                });
                let agg = &self.agg;
                let slot = slot_of(&mut per_window.keys, &key, &self.gauge, || {
                    Slot::new(agg.init())
                });
                match &contribution {
                    Ok(record) => self.agg.add(&mut slot.acc, record),
                    Err(acc) => self.agg.merge(&mut slot.acc, acc),
                }
                if !per_window.open && !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push((end, key.clone()));
                }
            }
            if end >= last {
                break;
            }
            end += self.panes.slide;
        }
    }

    fn flush_corrections(&mut self, _time: u64, out: &mut Vec<Self::Out>) {
        for (end, key) in self.dirty.drain(..) {
            let window = self.panes.window(end);
            let slot = self
                .windows
                .get_mut(&end)
                .and_then(|w| w.keys.get_mut(&key))
                .expect("dirty slots are live");
            slot.dirty = false;
            let value = self.agg.finish(&slot.acc);
            match slot.emitted.replace(value.clone()) {
                Some(old) if old == value => {}
                Some(old) => {
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
                None => out.push(Emit::Result(WindowResult {
                    window,
                    key,
                    value,
                    diff: 1,
                })),
            }
        }
    }

    fn next_close(&self) -> Option<u64> {
        self.windows
            .range((Bound::Excluded(self.closed_upto), Bound::Unbounded))
            .find(|(_, w)| w.open)
            .map(|(end, _)| end - 1)
    }

    fn close(&mut self, time: u64, out: &mut Vec<Self::Out>) {
        let end = time + 1;
        let window = self.panes.window(end);
        let per_window = self.windows.get_mut(&end).expect("closing a live window");
        per_window.open = false;
        self.closed_upto = end;
        for (key, slot) in per_window.keys.iter_mut() {
            let value = self.agg.finish(&slot.acc);
            slot.emitted = Some(value.clone());
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
        while let Some(entry) = self.windows.first_entry() {
            let end = *entry.key();
            let done = frontier.is_none_or(|f| end.saturating_add(self.lateness) <= f);
            if !done || entry.get().open {
                break;
            }
            self.gauge.sub(entry.remove().keys.len());
        }
    }
}
