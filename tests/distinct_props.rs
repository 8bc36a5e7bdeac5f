//! `distinct_count` against a brute-force reference, on random out-of-order inputs, under 1, 2
//! and 4 workers and every partitioner.
//!
//! Protects: the consolidated changelog of `distinct_count` is exactly, per window and key, the
//! number of distinct values among the records the reference puts in that window (tumbling,
//! sliding and session windows; records ahead of the watermark in any order, none late).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tidemark::keyed::distinct::DistinctCount;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::window::WindowAssigner;
use timely::dataflow::operators::Inspect;
use timely::dataflow::InputHandleVec;

/// A record: the time it travels at (the watermark), its key, event time (at or after the
/// time: never late) and value.
#[derive(Clone, Debug)]
struct Record {
    time: u64,
    key: u64,
    ts: u64,
    value: u64,
}

/// (window start, window end, key) -> distinct count.
type Answer = BTreeMap<(i64, u64, u64), u64>;

fn engine(
    records: &[Record],
    workers: usize,
    partitioner: &Partitioner<u64>,
    assigner: WindowAssigner,
) -> Answer {
    let rows = Arc::new(Mutex::new(Vec::new()));
    let (records, shared, partitioner) = (records.to_vec(), Arc::clone(&rows), partitioner.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let mut input = InputHandleVec::<u64, (u64, (u64, u64))>::new();
        let (shared, partitioner) = (Arc::clone(&shared), partitioner.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            input
                .to_stream(scope)
                .key_by(partitioner)
                .window(assigner)
                .distinct_count(|r: &(u64, u64)| r.0, |r: &(u64, u64)| r.1)
                .results
                .inspect(move |r| {
                    let row = (r.window.start, r.window.end, r.key, r.value, r.diff);
                    shared.lock().unwrap().push(row);
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
    let mut totals: BTreeMap<(i64, u64, u64, u64), i64> = BTreeMap::new();
    for (start, end, key, value, diff) in rows.lock().unwrap().iter() {
        *totals.entry((*start, *end, *key, *value)).or_default() += diff;
    }
    let mut answer = Answer::new();
    for ((start, end, key, value), total) in totals {
        assert!(total == 0 || total == 1, "row total {total}");
        if total == 1 {
            let previous = answer.insert((start, end, key), value);
            assert!(previous.is_none(), "two values for {start},{end},{key}");
        }
    }
    answer
}

/// The distinct count of every window and key, straight from the definitions.
fn reference(records: &[Record], assigner: WindowAssigner) -> Answer {
    let mut sets: BTreeMap<(i64, u64, u64), BTreeSet<u64>> = BTreeMap::new();
    match assigner {
        WindowAssigner::Tumbling(size) | WindowAssigner::Sliding(size, _) => {
            let slide = match assigner {
                WindowAssigner::Sliding(_, slide) => slide,
                _ => size,
            };
            for r in records {
                // Every window [k * slide, k * slide + size) holding r.ts.
                for k in 0..=r.ts / slide {
                    let start = k * slide;
                    if r.ts < start + size {
                        let window = (start as i64, start + size, r.key);
                        sets.entry(window).or_default().insert(r.value);
                    }
                }
                // Windows that start before zero.
                let mut start = -(slide as i64);
                while start + size as i64 > r.ts as i64 {
                    let end = (start + size as i64) as u64;
                    sets.entry((start, end, r.key)).or_default().insert(r.value);
                    start -= slide as i64;
                }
            }
        }
        WindowAssigner::Session(gap) => {
            let mut by_key: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
            for r in records {
                by_key.entry(r.key).or_default().push((r.ts, r.value));
            }
            for (key, mut events) in by_key {
                events.sort();
                let mut session: Option<(u64, u64, BTreeSet<u64>)> = None;
                for (ts, value) in events {
                    match &mut session {
                        Some((_, last, values)) if ts < *last + gap => {
                            *last = ts;
                            values.insert(value);
                        }
                        _ => {
                            if let Some((start, last, values)) = session.take() {
                                sets.insert((start as i64, last + gap, key), values);
                            }
                            session = Some((ts, ts, BTreeSet::from([value])));
                        }
                    }
                }
                if let Some((start, last, values)) = session {
                    sets.insert((start as i64, last + gap, key), values);
                }
            }
        }
    }
    sets.into_iter()
        .map(|(window, values)| (window, values.len() as u64))
        .collect()
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((0u64..3, 0u64..5, 0u64..12, 0u64..4), 1..60).prop_map(|steps| {
        let mut time = 0;
        steps
            .into_iter()
            .map(|(advance, key, ahead, value)| {
                time += advance;
                let ts = time + ahead;
                Record {
                    time,
                    key,
                    ts,
                    value,
                }
            })
            .collect()
    })
}

fn assigners() -> impl Strategy<Value = WindowAssigner> {
    prop_oneof![
        (1u64..8).prop_map(WindowAssigner::Tumbling),
        (1u64..4, 1u64..4).prop_map(|(slide, k)| WindowAssigner::Sliding(slide * k, slide)),
        (1u64..6).prop_map(WindowAssigner::Session),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn distinct_count_matches_the_reference_on_every_worker_count_and_partitioner(
        records in records(),
        assigner in assigners(),
    ) {
        let expected = reference(&records, assigner);
        for workers in [1, 2, 4] {
            for partitioner in [
                Partitioner::Hash,
                Partitioner::Range(vec![1, 3]),
                Partitioner::Random,
                Partitioner::Broadcast,
            ] {
                let got = engine(&records, workers, &partitioner, assigner);
                prop_assert_eq!(&got, &expected, "{} workers, {:?}", workers, partitioner);
            }
        }
    }
}
