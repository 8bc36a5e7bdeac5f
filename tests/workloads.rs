//! Every workload's engine dataflow (and incremental view, where it has one) agrees with its
//! single-threaded baseline on small inputs, under 1, 2 and 4 workers.

mod common;

use tidemark::harness::check;
use tidemark::workloads::wordcount::WordCount;
use tidemark::workloads::ysb::Ysb;
use tidemark::workloads::Workload;

use common::agree;

fn agree<W: Workload>(workload: &W, count: usize, spacing_ns: u64, epoch_ns: u64) -> usize {
    let events = check::events(workload, 42, count, spacing_ns);
    let expected = agree::engine_matches_baseline(workload, events.clone(), epoch_ns);
    assert!(
        !expected.is_empty(),
        "{}: the baseline produced nothing",
        workload.query()
    );
    if workload.has_incremental() {
        agree::view_matches(workload, events, epoch_ns, &expected);
    }
    expected.len()
}

#[test]
fn ysb_engine_matches_baseline() {
    // 20k events 100 us apart: 2 s of data, 1 ms epochs, 100 ms windows: 20 windows.
    let ysb = Ysb::new(100_000_000, 20, 5);
    let rows = agree(&ysb, 20_000, 100_000, 1_000_000);
    assert!(
        rows >= 20 * 19,
        "every campaign in (almost) every window: {rows}"
    );
}

#[test]
fn wordcount_engine_matches_baseline() {
    let wc = WordCount {
        words: 500,
        ..WordCount::default()
    };
    agree(&wc, 20_000, 50_000, 1_000_000);
}

#[test]
fn every_partitioner_matches_baseline() {
    use tidemark::partition::Scheme;
    for scheme in [Scheme::Range, Scheme::Random] {
        let mut ysb = Ysb::new(100_000_000, 20, 5);
        ysb.partitioner = scheme;
        agree(&ysb, 10_000, 100_000, 1_000_000);
        let wc = WordCount {
            words: 500,
            partitioner: scheme,
        };
        agree(&wc, 10_000, 50_000, 1_000_000);
    }
}
