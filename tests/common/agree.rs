//! The engine-against-baseline check: a workload's engine dataflow (and incremental view) on
//! 1, 2 and 4 workers produces exactly its single-threaded baseline's rows.

use tidemark::harness::check::{self, Via};
use tidemark::workloads::Workload;

use super::dataflow::WORKERS;

/// Checks that the engine on 1, 2 and 4 workers equals the baseline on `events` (sent in
/// epochs of `epoch_ns`), naming the first differing row; returns the baseline's rows
/// (possibly none).
pub fn engine_matches_baseline<W: Workload>(
    workload: &W,
    events: Vec<W::Event>,
    epoch_ns: u64,
) -> Vec<W::Output> {
    let expected = check::baseline(workload, events.clone(), epoch_ns);
    for workers in WORKERS {
        let got = check::engine(workload, events.clone(), workers, epoch_ns, Via::Dataflow);
        if got != expected {
            let first = got.iter().zip(&expected).position(|(g, e)| g != e);
            panic!(
                "{} on {workers} workers: {} rows, baseline {}; first difference at {first:?}: \
                 engine {:?}, baseline {:?}",
                workload.query(),
                got.len(),
                expected.len(),
                first.map(|i| &got[i]),
                first.map(|i| &expected[i]),
            );
        }
    }
    expected
}

/// Checks that the incremental view at the end of `events`, on 1, 2 and 4 workers, equals
/// `expected`.
pub fn view_matches<W: Workload>(
    workload: &W,
    events: Vec<W::Event>,
    epoch_ns: u64,
    expected: &[W::Output],
) {
    for workers in WORKERS {
        let view = check::engine(workload, events.clone(), workers, epoch_ns, Via::View);
        assert_eq!(
            view,
            expected,
            "{} view on {workers} workers",
            workload.query()
        );
    }
}
