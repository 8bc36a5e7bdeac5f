//! Shared test support, one of each: a brute-force reference implementation of exact windowed
//! aggregation (`reference`), proptest input generators (`gen`), the `tidemark` binary as CLI
//! tests drive it (`cli`), a Kafka broker (`kafka`), the "feed worker 0, run on N workers, collect" kit (`dataflow`), the
//! engine-against-baseline check (`agree`), a per-window operator of one's own against the
//! window definitions (`windowed`), and the changelog consolidation below.
//!
//! Each integration-test binary declares `mod common;` and uses only a subset
//! of these items, so dead-code warnings are silenced here.
#![allow(dead_code)]

pub mod agree;
pub mod cli;
pub mod dataflow;
pub mod gen;
pub mod kafka;
pub mod reference;
pub mod windowed;

use std::collections::BTreeMap;
use std::fmt::Debug;

/// Consolidates a changelog of `(window, value, diff)` rows (a window here is whatever names
/// one result: start, end and key): sums the diffs of equal rows and keeps the rows whose total
/// is not zero. Each kept row must total exactly +1 and a window may keep one value; panics
/// otherwise. Returns `window -> value`.
pub fn consolidate<W, V>(rows: impl IntoIterator<Item = (W, V, i64)>) -> BTreeMap<W, V>
where
    W: Ord + Clone + Debug,
    V: Ord + Debug,
{
    let mut totals: BTreeMap<(W, V), i64> = BTreeMap::new();
    for (window, value, diff) in rows {
        *totals.entry((window, value)).or_default() += diff;
    }
    let mut answer = BTreeMap::new();
    for ((window, value), total) in totals {
        assert!(
            total == 0 || total == 1,
            "row {window:?} {value:?} has total diff {total}"
        );
        if total == 1 {
            let previous = answer.insert(window.clone(), value);
            assert!(previous.is_none(), "two values for {window:?}");
        }
    }
    answer
}
