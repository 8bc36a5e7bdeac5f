//! The keyed rolling reduce against a brute-force reference, under 1, 2 and 4 workers and every
//! partitioner: at each timestamp, every key that received records emits its running value.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source, SourceOptions, VecFeed};
use timely::dataflow::operators::Inspect;

use common::gen;
use common::reference::{watermarks, Event};

/// (time, key, running sum) rows, sorted.
type Rows = Vec<(u64, String, i128)>;

/// At each stamp `max(ts, W)`, in stamp order, the running sum of each key with records there.
fn reference(events: &[Event], max_delay: u64) -> Rows {
    let stamps = watermarks(events, max_delay);
    let mut by_time: BTreeMap<u64, BTreeMap<String, i128>> = BTreeMap::new();
    for (event, w) in events.iter().zip(stamps) {
        *by_time
            .entry(event.ts.max(w))
            .or_default()
            .entry(event.key.clone())
            .or_default() += event.value;
    }
    let mut running: BTreeMap<String, i128> = BTreeMap::new();
    let mut rows = Vec::new();
    for (time, updates) in by_time {
        for (key, delta) in updates {
            let total = running.entry(key.clone()).or_default();
            *total += delta;
            rows.push((time, key, *total));
        }
    }
    rows.sort();
    rows
}

fn engine(
    events: &[Event],
    max_delay: u64,
    workers: usize,
    partitioner: Partitioner<String>,
) -> Rows {
    let input: Vec<(u64, (String, i128))> = events
        .iter()
        .map(|e| (e.ts, (e.key.clone(), e.value)))
        .collect();
    let input = Arc::new(Mutex::new(Some(input)));
    let rows = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&rows);
    timely::execute(timely::Config::process(workers), move |worker| {
        let feed = if worker.index() == 0 {
            input
                .lock()
                .unwrap()
                .take()
                .map(|records| VecFeed::new(records, max_delay))
        } else {
            None
        };
        let (out, partitioner) = (Arc::clone(&out), partitioner.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let error = std::rc::Rc::new(std::cell::RefCell::new(None));
            let options = SourceOptions {
                batch: 3,
                idle_timeout: None,
            };
            feed_source(scope, feed, options, error)
                .key_by(partitioner)
                .reduce(|total, value| *total += value)
                .inspect_core(move |event| {
                    if let Ok((stamp, rows)) = event {
                        let time = *stamp.iter().next().unwrap();
                        let mut out = out.lock().unwrap();
                        out.extend(
                            rows.iter()
                                .map(|(k, v): &(String, i128)| (time, k.clone(), *v)),
                        );
                    }
                });
        });
    })
    .expect("timely runs");
    let mut rows = Arc::try_unwrap(rows).unwrap().into_inner().unwrap();
    rows.sort();
    rows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rolling_reduce_matches_reference(events in gen::events(40), (max_delay, _) in gen::delays()) {
        let expected = reference(&events, max_delay);
        for workers in [1, 2, 4] {
            for partitioner in [
                Partitioner::Hash,
                Partitioner::Range(vec!["b".into(), "k3".into()]),
                Partitioner::Random,
                Partitioner::Broadcast,
            ] {
                let got = engine(&events, max_delay, workers, partitioner.clone());
                prop_assert_eq!(&got, &expected, "{} workers, {:?}", workers, partitioner);
            }
        }
    }
}
