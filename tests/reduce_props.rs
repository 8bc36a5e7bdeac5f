//! The keyed rolling reduce against a brute-force reference, under 1, 2 and 4 workers and every
//! partitioner: at each timestamp, every key that received records emits its running value.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use tidemark::keyed::{KeyBy, Reduce};
use tidemark::partition::Partitioner;

use common::dataflow::{layouts, run_fed, source, Collect};
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
    let rows = Collect::new();
    let out = rows.clone();
    run_fed(workers, input, max_delay, move |scope, feed| {
        let totals = source(scope, feed)
            .key_by(partitioner.clone())
            .reduce(|total, value| *total += value);
        out.timed(totals, |time, (k, v): &(String, i128)| {
            (time, k.clone(), *v)
        });
    });
    rows.sorted()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rolling_reduce_matches_reference(events in gen::events(40), (max_delay, _) in gen::delays()) {
        let expected = reference(&events, max_delay);
        for (workers, partitioner) in layouts() {
            let got = engine(&events, max_delay, workers, partitioner.clone());
            prop_assert_eq!(&got, &expected, "{} workers, {:?}", workers, partitioner);
        }
    }
}
