//! A keyed window operator of one's own against a brute-force reference: random records that
//! are never late, the values each window and key receives straight from the window
//! definitions ([`members`]), and the operator's consolidated changelog on any number of
//! workers and any partitioner ([`run`]). A per-window operator's property test is its
//! reference over [`members`] and one [`run`] per layout; `tests/distinct_props.rs` is the
//! worked example (README "Adding an operator", step 5).

use std::collections::BTreeMap;
use std::fmt::Debug;

use proptest::prelude::*;
use tidemark::keyed::{KeyBy, WindowedStream};
use tidemark::partition::Partitioner;
use tidemark::window::{WindowAssigner, WindowResult};
use timely::dataflow::operators::Inspect;
use timely::dataflow::{InputHandleVec, StreamVec};
use timely::ExchangeData;

use super::consolidate;
use super::dataflow::Collect;

/// A record: the time it travels at (the watermark), its key, event time (at or after the
/// time: never late) and value.
#[derive(Clone, Debug)]
pub struct Record {
    /// The time it is sent at.
    pub time: u64,
    /// Its key.
    pub key: u64,
    /// Its event time.
    pub ts: u64,
    /// Its value.
    pub value: u64,
}

/// What the operator under test reads per key: `(event time, value)`.
pub type Read = (u64, u64);

/// A window and key: `(start, end, key)`.
pub type WindowKey = (i64, u64, u64);

/// Records with keys in `0..5`, values in `0..4`, times rising by `0..3` and event times up to
/// 11 ahead of their time.
pub fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((0u64..3, 0u64..5, 0u64..12, 0u64..4), 1..60).prop_map(|steps| {
        let mut time = 0;
        steps
            .into_iter()
            .map(|(advance, key, ahead, value)| {
                time += advance;
                Record {
                    time,
                    key,
                    ts: time + ahead,
                    value,
                }
            })
            .collect()
    })
}

/// The values of the records in each window and key, straight from the definitions of the
/// window kinds: tumbling and sliding windows `[k * slide, k * slide + size)` for every
/// integer `k`, sessions the runs of a key's records less than `gap` apart, as
/// `[first, last + gap)`. Values are in the order of the records' event times (then values).
pub fn members(records: &[Record], assigner: WindowAssigner) -> BTreeMap<WindowKey, Vec<u64>> {
    let mut windows: BTreeMap<WindowKey, Vec<u64>> = BTreeMap::new();
    let mut sorted = records.to_vec();
    sorted.sort_by_key(|r| (r.ts, r.value));
    match assigner {
        WindowAssigner::Tumbling(size) | WindowAssigner::Sliding(size, _) => {
            let slide = match assigner {
                WindowAssigner::Sliding(_, slide) => slide,
                _ => size,
            };
            let (size, slide) = (size as i64, slide as i64);
            for r in &sorted {
                let ts = r.ts as i64;
                // The largest k with k * slide <= ts, down while the window still holds ts.
                let mut start = ts - ts.rem_euclid(slide);
                while start + size > ts {
                    let window = (start, (start + size) as u64, r.key);
                    windows.entry(window).or_default().push(r.value);
                    start -= slide;
                }
            }
        }
        WindowAssigner::Session(gap) => {
            let mut open: BTreeMap<u64, (u64, u64, Vec<u64>)> = BTreeMap::new();
            let mut close = |key, (first, last, values): (u64, u64, Vec<u64>)| {
                windows.insert((first as i64, last + gap, key), values);
            };
            for r in &sorted {
                match open.get_mut(&r.key) {
                    Some((_, last, values)) if r.ts < *last + gap => {
                        *last = r.ts;
                        values.push(r.value);
                    }
                    _ => {
                        if let Some(session) = open.insert(r.key, (r.ts, r.ts, vec![r.value])) {
                            close(r.key, session);
                        }
                    }
                }
            }
            for (key, session) in open {
                close(key, session);
            }
        }
    }
    windows
}

/// Runs `operator` over `records` keyed by `partitioner` in the windows of `assigner`, on
/// `workers` workers (worker 0 sends every record at its time, stepping after each), and
/// returns its consolidated changelog (see [`consolidate`]).
pub fn run<O, F>(
    records: &[Record],
    workers: usize,
    partitioner: &Partitioner<u64>,
    assigner: WindowAssigner,
    operator: F,
) -> BTreeMap<WindowKey, O>
where
    O: ExchangeData + Clone + Ord + Debug,
    F: for<'s> Fn(WindowedStream<'s, u64, Read>) -> StreamVec<'s, u64, WindowResult<u64, O>>
        + Send
        + Sync
        + 'static,
{
    let rows = Collect::new();
    let (records, shared, partitioner) = (records.to_vec(), rows.clone(), partitioner.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut input = InputHandleVec::<u64, (u64, Read)>::new();
        let shared = shared.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let windowed = input
                .to_stream(scope)
                .key_by(partitioner.clone())
                .window(assigner);
            operator(windowed).inspect(move |r| {
                let window = (r.window.start, r.window.end, r.key);
                shared.push((window, r.value.clone(), r.diff));
            });
        });
        if worker.index() == 0 {
            for record in &records {
                input.advance_to(record.time);
                input.send((record.key, (record.ts, record.value)));
                worker.step();
            }
        }
    })
    .expect("timely runs");
    consolidate(rows.sorted())
}
