//! `distinct_count` against a brute-force reference, on random out-of-order inputs, under 1, 2
//! and 4 workers and every partitioner.
//!
//! Protects: the consolidated changelog of `distinct_count` is exactly, per window and key, the
//! number of distinct values among the records the reference puts in that window (tumbling,
//! sliding and session windows; records ahead of the watermark in any order, none late).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::dataflow::layouts_split;
use common::gen;
use common::windowed::{members, records, run, Record, WindowKey};
use proptest::prelude::*;
use tidemark::keyed::distinct::DistinctCount;
use tidemark::window::WindowAssigner;

/// The distinct count of every window and key, from the values the definitions put there.
fn reference(records: &[Record], assigner: WindowAssigner) -> BTreeMap<WindowKey, u64> {
    let windows = members(records, assigner);
    let distinct = |values: Vec<u64>| values.into_iter().collect::<BTreeSet<_>>().len() as u64;
    windows
        .into_iter()
        .map(|(w, values)| (w, distinct(values)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn distinct_count_matches_the_reference_on_every_worker_count_and_partitioner(
        records in records(),
        assigner in gen::assigners(8, 6),
    ) {
        let expected = reference(&records, assigner);
        for (workers, partitioner) in layouts_split(vec![1, 3]) {
            let got = run(&records, workers, &partitioner, assigner, |windowed| {
                windowed.distinct_count(|r: &(u64, u64)| r.0, |r: &(u64, u64)| r.1).results
            });
            prop_assert_eq!(&got, &expected, "{} workers, {:?}", workers, partitioner);
        }
    }
}
