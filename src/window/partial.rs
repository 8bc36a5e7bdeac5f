//! Phase one of two-phase window aggregation: partial aggregates per worker, before the
//! exchange by key.
//!
//! Used when records are spread without regard to their key (random partitioning). Records at
//! the same timely time are folded per key and pane (tumbling, sliding) or per key and run of
//! event times closer than the gap (sessions). Folding records that share a time and a set of
//! windows is exact for tumbling and sliding windows: their lateness rule depends only on the
//! time and the window, so phase two treats a partial exactly as it would treat its records one
//! by one, and late records are split off here, since only here are the records themselves
//! still at hand. For sessions only on-time records (event time at or after their time) are
//! folded: they are never late. Whether a record behind the watermark is late depends on the
//! sessions phase two holds and on the records of its time before it, so it is passed on whole,
//! with its number from [`crate::keyed::spread_numbered`], and phase two applies such records in
//! that order.

use hashbrown::HashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::dataflow::StreamVec;

use super::fixed::Part;
use super::keys::KeyTable;
use super::{Aggregator, Late, Panes, Window};
use crate::keyed::window::Aggregate;
use crate::keyed::{Key, Prepare, Value};

/// One time's batches of `(key, record, number)` records, as phase one hands them to a fold.
pub(crate) type Batches<'a, K, V> = dyn Iterator<Item = &'a mut Vec<(K, V, u64)>> + 'a;

/// What phase one does for one window kind: `fold(time, batches, out)` folds the records of
/// one time and pushes to `out` the parts phase two receives at that time.
pub(crate) trait Fold<K, V, Acc>:
    FnMut(u64, &mut Batches<'_, K, V>, &mut Vec<Part<K, V, Acc>>) + 'static
{
}

impl<K, V, Acc, F> Fold<K, V, Acc> for F where
    F: FnMut(u64, &mut Batches<'_, K, V>, &mut Vec<Part<K, V, Acc>>) + 'static
{
}

/// Phase one: runs `fold` on the records of each time.
pub(crate) fn phase_one<'scope, K, V, Acc, F>(
    stream: StreamVec<'scope, u64, (K, V, u64)>,
    mut fold: F,
) -> StreamVec<'scope, u64, Part<K, V, Acc>>
where
    K: 'static,
    V: 'static,
    Acc: 'static,
    F: Fold<K, V, Acc>,
{
    stream
        .unary(Pipeline, "PartialAggregate", move |_cap, _info| {
            let mut out = Vec::new();
            move |input, output| {
                input.for_each_stamp(|cap, mut batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    fold(time, &mut batches, &mut out);
                    output.session(&cap).give_iterator(out.drain(..));
                });
            }
        })
        .container::<Vec<_>>()
}

impl<K, V, A, T, I, P> Aggregate<'_, K, V, A, T, I, P>
where
    K: Key,
    V: Value,
    A: Aggregator<V>,
    T: Fn(&V) -> u64 + Clone + 'static,
{
    /// Phase one's fold for tumbling and sliding windows of the geometry `panes`: folds one
    /// time's records into partial aggregates per key and pane, and late records (beyond the
    /// allowed lateness) once per window missed.
    pub(crate) fn fold_fixed(&self, panes_of: Panes) -> impl Fold<K, V, A::Acc> {
        let mut combine = PaneCombine::new(
            panes_of,
            self.windowed.lateness,
            self.event_time.clone(),
            self.agg.clone(),
        );
        move |time, batches, out| {
            for batch in batches {
                for (key, record, _seq) in batch.drain(..) {
                    combine.add(time, key, record, out);
                }
            }
            combine.flush(out);
        }
    }

    /// Phase one's fold for sessions of `gap`: folds one time's on-time records into partial
    /// aggregates per key and run of event times closer than `gap`, and passes records behind
    /// their time on whole, with their number, to be applied in order by phase two.
    pub(crate) fn fold_sessions(&self, gap: u64) -> impl Fold<K, V, A::Acc> {
        let (event_time, agg) = (self.event_time.clone(), self.agg.clone());
        let mut runs: HashMap<K, Vec<(u64, V)>> = HashMap::new();
        move |time, batches, out| {
            for batch in batches {
                for (key, record, seq) in batch.drain(..) {
                    let ts = event_time(&record);
                    if ts < time {
                        out.push(Part::Sequenced {
                            key,
                            ts,
                            record,
                            seq,
                        });
                        continue;
                    }
                    runs.entry(key).or_default().push((ts, record));
                }
            }
            for (key, mut records) in runs.drain() {
                records.sort_unstable_by_key(|(ts, _)| *ts);
                let mut records = records.into_iter();
                let Some((first, record)) = records.next() else {
                    continue;
                };
                let (mut lo, mut hi, mut acc) = (first, first, agg.init());
                agg.add(&mut acc, &record);
                for (ts, record) in records {
                    if ts >= hi.saturating_add(gap) {
                        let piece = std::mem::replace(&mut acc, agg.init());
                        out.push(Part::Partial {
                            key: key.clone(),
                            lo,
                            hi,
                            acc: piece,
                        });
                        lo = ts;
                    }
                    hi = ts;
                    agg.add(&mut acc, &record);
                }
                out.push(Part::Partial { key, lo, hi, acc });
            }
        }
    }
}

/// Phase one fused with the map and filter before it, for keyed windows whose records are
/// exchanged by key (`Hash`, `Range`): each worker folds the records it prepares into partial
/// aggregates, and only the partials cross the exchange. One record at a time, so that the
/// fold is the hot loop itself, with no container of pairs before it.
pub(crate) trait Combine<K, V, Acc>: 'static {
    /// Folds `record` of `key` at `time`, pushing to `out` what is not folded (late records).
    fn add(&mut self, time: u64, key: K, record: V, out: &mut Vec<Part<K, V, Acc>>);
    /// Pushes the partial aggregates folded so far to `out`, forgets them, and returns how many
    /// there were.
    fn flush(&mut self, out: &mut Vec<Part<K, V, Acc>>) -> usize;
    /// `record` of `key` as phase two takes it unfolded.
    fn part(&self, key: K, record: V) -> Part<K, V, Acc>;
}

/// A stamp (the records of one timestamp that one activation of the operator finds) whose
/// partials number more than this fraction of its records (keys that seldom repeat within a
/// timestamp: a file of many keys, read in small batches) turns folding off: the fold's probe
/// per record then costs more than the exchange saves (a 10 M-row file of 10 k keys took 1.4x
/// the CPU time folded on 2 workers; 1.25x with this rule, which is why local aggregation is
/// asked for, not the default). Records then pass unfolded, as phase two takes them anyway,
/// for [`PASS_MIN`] stamps, doubled after each further such stamp up to [`PASS_MAX`], and
/// folding is tried again. Exact either way.
const FOLD_MAX_SHARE: f64 = 0.5;
/// Stamps of fewer records do not decide whether to fold: they cost little to fold and say
/// little about how often keys repeat. While folding is on they fold, whatever their share;
/// while it is off they pass, and count among the stamps passed.
const FOLD_JUDGED: usize = 256;
/// Stamps passed unfolded after the first stamp that folded too little.
const PASS_MIN: u32 = 16;
/// The most stamps passed unfolded between two tries.
const PASS_MAX: u32 = 1024;

/// Phase one's fold for tumbling and sliding windows, one record at a time (local aggregation,
/// and the random partitioner's [`Aggregate::fold_fixed`]): partial aggregates per key and
/// pane, in a key table per pane ([`KeyTable`]: small integer keys index an array, as in the window
/// itself), and late records once per window missed.
pub(crate) struct PaneCombine<K, V, A: Aggregator<V>, T> {
    panes_of: Panes,
    lateness: u64,
    event_time: T,
    agg: A,
    /// `(pane start, (least event time, partial) per key)`, the pane of the last record first
    /// looked at; tables are kept, cleared, for the next time.
    tables: Vec<(u64, PaneTable<K, A::Acc>)>,
    last: usize,
}

/// One pane's partials: the least event time folded and the partial aggregate, per key.
type PaneTable<K, Acc> = KeyTable<K, (u64, Acc)>;

/// Pane tables kept across flushes (a time's records fall into one pane or two, mostly).
const KEPT_PANE_TABLES: usize = 4;

impl<K, V, A: Aggregator<V>, T> PaneCombine<K, V, A, T> {
    /// Phase one for windows of `panes_of` with `lateness`.
    pub(crate) fn new(panes_of: Panes, lateness: u64, event_time: T, agg: A) -> Self {
        PaneCombine {
            panes_of,
            lateness,
            event_time,
            agg,
            tables: Vec::new(),
            last: 0,
        }
    }
}

impl<K, V, A, T> Combine<K, V, A::Acc> for PaneCombine<K, V, A, T>
where
    K: Key,
    V: Value,
    A: Aggregator<V>,
    T: Fn(&V) -> u64 + 'static,
{
    #[inline]
    fn add(&mut self, time: u64, key: K, record: V, out: &mut Vec<Part<K, V, A::Acc>>) {
        let ts = (self.event_time)(&record);
        if ts < time {
            let lateness = self.lateness;
            let is_late = |window: &Window| window.end.saturating_add(lateness) <= time;
            for window in self.panes_of.windows_of(ts).filter(is_late) {
                let late = Late {
                    window,
                    key: key.clone(),
                    record: record.clone(),
                };
                out.push(Part::Late(late));
            }
        }
        let pane = self.panes_of.pane_start(ts);
        if self.tables.get(self.last).is_none_or(|(p, _)| *p != pane) {
            self.last = match self.tables.iter().position(|(p, _)| *p == pane) {
                Some(i) => i,
                None => {
                    self.tables.push((pane, KeyTable::default()));
                    self.tables.len() - 1
                }
            };
        }
        let table = &mut self.tables[self.last].1;
        let agg = &self.agg;
        let entry = match table.dense_get_mut(&key) {
            Some(entry) => entry,
            None => table.slot_uncounted(&key, || (ts, agg.init())),
        };
        entry.0 = entry.0.min(ts);
        agg.add(&mut entry.1, &record);
    }

    fn part(&self, key: K, record: V) -> Part<K, V, A::Acc> {
        Part::Record {
            ts: (self.event_time)(&record),
            key,
            record,
        }
    }

    fn flush(&mut self, out: &mut Vec<Part<K, V, A::Acc>>) -> usize {
        let before = out.len();
        for (_, table) in &mut self.tables {
            for (key, (lo, acc)) in table.iter_mut() {
                out.push(Part::Partial {
                    key: key.clone(),
                    lo: *lo,
                    hi: *lo,
                    acc: std::mem::replace(acc, self.agg.init()),
                });
            }
            table.clear();
        }
        // The tables of the panes seen last are kept for the next time's records.
        if self.tables.len() > KEPT_PANE_TABLES {
            let drop = self.tables.len() - KEPT_PANE_TABLES;
            self.tables.drain(..drop);
        }
        self.last = self.tables.len().saturating_sub(1);
        out.len() - before
    }
}

/// Phase one fused with `prepare` (see [`Combine`]): each item of `stream` prepared and folded
/// by `combine`, the partials of each time sent at that time, by an operator named `name`;
/// where folding reduces a stamp's records less than [`FOLD_MAX_SHARE`] says, the records of
/// the next stamps pass unfolded.
pub(crate) fn combined<'scope, I, K, V, Acc, P, C>(
    stream: StreamVec<'scope, u64, I>,
    mut prepare: P,
    mut combine: C,
    name: &str,
) -> StreamVec<'scope, u64, Part<K, V, Acc>>
where
    I: 'static,
    K: 'static,
    V: 'static,
    Acc: 'static,
    P: Prepare<I, K, V>,
    C: Combine<K, V, Acc>,
{
    stream
        .unary(Pipeline, name, move |_cap, _info| {
            let mut out = Vec::new();
            // Stamps left to pass unfolded, and how many the next poor fold earns.
            let (mut passing, mut earned) = (0u32, PASS_MIN);
            move |input, output| {
                input.for_each_stamp(|cap, batches| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    if passing > 0 {
                        passing -= 1;
                        for batch in batches {
                            for item in batch.drain(..) {
                                if let Some((key, record)) = prepare.prepare(item) {
                                    out.push(combine.part(key, record));
                                }
                            }
                        }
                    } else {
                        let mut records = 0usize;
                        for batch in batches {
                            for item in batch.drain(..) {
                                if let Some((key, record)) = prepare.prepare(item) {
                                    records += 1;
                                    combine.add(time, key, record, &mut out);
                                }
                            }
                        }
                        let partials = combine.flush(&mut out);
                        if records < FOLD_JUDGED {
                            // Too few to judge by.
                        } else if partials as f64 > FOLD_MAX_SHARE * records as f64 {
                            passing = earned;
                            earned = (earned * 2).min(PASS_MAX);
                        } else {
                            earned = PASS_MIN;
                        }
                    }
                    output.session(&cap).give_iterator(out.drain(..));
                });
            }
        })
        .container::<Vec<_>>()
}
