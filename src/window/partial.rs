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
use super::{Aggregator, Late, Panes, Window};
use crate::keyed::window::Aggregate;
use crate::keyed::{Key, Value};

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
        let (lateness, event_time, agg) = (
            self.windowed.lateness,
            self.event_time.clone(),
            self.agg.clone(),
        );
        let mut panes: HashMap<(K, u64), (u64, A::Acc)> = HashMap::new();
        move |time, batches, out| {
            let is_late = |window: &Window| window.end.saturating_add(lateness) <= time;
            for batch in batches {
                for (key, record, _seq) in batch.drain(..) {
                    let ts = event_time(&record);
                    if ts < time {
                        for window in panes_of.windows_of(ts).filter(is_late) {
                            let late = Late {
                                window,
                                key: key.clone(),
                                record: record.clone(),
                            };
                            out.push(Part::Late(late));
                        }
                    }
                    let pane = panes_of.pane_start(ts);
                    let entry = panes.entry((key, pane)).or_insert_with(|| (ts, agg.init()));
                    entry.0 = entry.0.min(ts);
                    agg.add(&mut entry.1, &record);
                }
            }
            for ((key, _), (lo, acc)) in panes.drain() {
                out.push(Part::Partial {
                    key,
                    lo,
                    hi: lo,
                    acc,
                });
            }
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
