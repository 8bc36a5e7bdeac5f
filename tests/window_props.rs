//! The window operators against the brute-force reference, on random out-of-order inputs,
//! under 1, 2 and 4 workers and every partitioner.
//!
//! Protects: exact results (consolidated changelog == reference), the late output (exactly the
//! reference's late rows), and determinism of the raw changelog itself (the same multiset of
//! rows whatever the workers and partitioner).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source, SourceOptions, VecFeed};
use tidemark::window::{on, Aggregator, Count, Max, Mean, Min, Sum, WindowAssigner};
use tidemark::{Fixed, WideFixed};
use timely::dataflow::operators::Inspect;

use common::gen;
use common::reference::{reference, Agg, Event, Outcome, Params, WindowKind, SCALE};

/// A record as the engine sees it: event time, value, index in the input (for late rows).
type Rec = (u64, Fixed, usize);
/// A changelog row: (start, end, key, value mantissa, diff).
type Row = (i64, u64, String, i128, i64);

struct Run {
    changelog: Vec<Row>,
    late: Vec<(usize, i64, u64)>,
}

fn assigner(kind: &WindowKind) -> WindowAssigner {
    match *kind {
        WindowKind::Tumbling { size } => WindowAssigner::Tumbling(size),
        WindowKind::Sliding { size, slide } => WindowAssigner::Sliding(size, slide),
        WindowKind::Session { gap } => WindowAssigner::Session(gap),
    }
}

fn run_engine(
    events: &[Event],
    p: &Params,
    workers: usize,
    partitioner: &Partitioner<String>,
) -> Run {
    let value = |r: &Rec| r.1;
    match p.agg {
        Agg::Count => run_with(events, p, workers, partitioner, Count, |n: &u64| {
            *n as i128 * SCALE
        }),
        Agg::Sum => run_with(
            events,
            p,
            workers,
            partitioner,
            on(Sum, value),
            |f: &WideFixed| f.to_fixed().expect("small sums").nanos(),
        ),
        Agg::Min => run_with(
            events,
            p,
            workers,
            partitioner,
            on(Min, value),
            |f: &Fixed| f.nanos(),
        ),
        Agg::Max => run_with(
            events,
            p,
            workers,
            partitioner,
            on(Max, value),
            |f: &Fixed| f.nanos(),
        ),
        Agg::Mean => run_with(
            events,
            p,
            workers,
            partitioner,
            on(Mean, value),
            |f: &Fixed| f.nanos(),
        ),
    }
}

fn run_with<A>(
    events: &[Event],
    p: &Params,
    workers: usize,
    partitioner: &Partitioner<String>,
    agg: A,
    mantissa: fn(&A::Output) -> i128,
) -> Run
where
    A: Aggregator<Rec> + Send + Sync,
{
    let input: Vec<(u64, (String, Rec))> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.ts, (e.key.clone(), (e.ts, Fixed::from_nanos(e.value), i))))
        .collect();
    let input = Arc::new(Mutex::new(Some(input)));
    let changelog = Arc::new(Mutex::new(Vec::new()));
    let late = Arc::new(Mutex::new(Vec::new()));
    let (assigner, lateness, max_delay) = (assigner(&p.kind), p.lateness, p.max_delay);
    let (out, late_out, partitioner) = (
        Arc::clone(&changelog),
        Arc::clone(&late),
        partitioner.clone(),
    );
    // Small batches exercise many activations and interleavings.
    let options = SourceOptions {
        batch: 3,
        idle_timeout: None,
    };
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
        let (out, late_out, agg) = (Arc::clone(&out), Arc::clone(&late_out), agg.clone());
        let partitioner = partitioner.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let error = std::rc::Rc::new(std::cell::RefCell::new(None));
            let windowed = feed_source(scope, feed, options, error)
                .key_by(partitioner)
                .window(assigner)
                .allowed_lateness(lateness)
                .aggregate(|r: &Rec| r.0, agg);
            windowed.results.inspect(move |r| {
                let row = (
                    r.window.start,
                    r.window.end,
                    r.key.clone(),
                    mantissa(&r.value),
                    r.diff,
                );
                out.lock().unwrap().push(row);
            });
            windowed.late.inspect(move |l| {
                late_out
                    .lock()
                    .unwrap()
                    .push((l.record.2, l.window.start, l.window.end));
            });
        });
    })
    .expect("timely runs");
    let mut changelog = Arc::try_unwrap(changelog).unwrap().into_inner().unwrap();
    changelog.sort();
    let mut late = Arc::try_unwrap(late).unwrap().into_inner().unwrap();
    late.sort();
    Run { changelog, late }
}

/// Sums diffs per row and keeps rows whose total is non-zero; each must be exactly +1.
fn consolidate(changelog: &[Row]) -> BTreeMap<(i64, u64, String), i128> {
    let mut totals: BTreeMap<(i64, u64, String, i128), i64> = BTreeMap::new();
    for (start, end, key, value, diff) in changelog {
        *totals
            .entry((*start, *end, key.clone(), *value))
            .or_default() += diff;
    }
    let mut answer = BTreeMap::new();
    for ((start, end, key, value), total) in totals {
        assert!(
            total == 0 || total == 1,
            "row {start},{end},{key},{value} has total diff {total}"
        );
        if total == 1 {
            let previous = answer.insert((start, end, key.clone()), value);
            assert!(
                previous.is_none(),
                "two values for window {start},{end} key {key}"
            );
        }
    }
    answer
}

fn partitioners() -> Vec<Partitioner<String>> {
    vec![
        Partitioner::Hash,
        Partitioner::Range(vec!["b".into(), "k3".into()]),
        Partitioner::Random,
        Partitioner::Broadcast,
    ]
}

fn check(events: &[Event], p: &Params) {
    let expected: Outcome = reference(events, p);
    let first = run_engine(events, p, 1, &Partitioner::Hash);
    assert_eq!(
        consolidate(&first.changelog),
        expected.windows,
        "1 worker, hash, {p:?}"
    );
    assert_eq!(first.late, expected.late, "late rows, {p:?}");
    for workers in [1, 2, 4] {
        for partitioner in partitioners() {
            let run = run_engine(events, p, workers, &partitioner);
            assert_eq!(
                run.changelog, first.changelog,
                "changelog differs with {workers} workers, {partitioner:?}, {p:?}"
            );
            assert_eq!(
                run.late, first.late,
                "late rows differ with {workers} workers, {partitioner:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_reference_under_all_workers_and_partitioners(
        events in gen::events(40),
        p in gen::params(),
    ) {
        check(&events, &p);
    }

    #[test]
    fn windows_match_reference_at_the_end_of_the_time_domain(
        events in gen::events_near_the_end(30),
        p in gen::params(),
    ) {
        prop_assert_eq!(gen::MAX_TIME, tidemark::time::MAX_TIME);
        check(&events, &p);
    }
}

#[test]
fn count_conserves_records_across_results_and_late_output() {
    // Out of order with a small delay and no lateness: plenty of late rows.
    let keys = ["a", "b"];
    let events: Vec<Event> = (0..200u64)
        .map(|i| Event {
            ts: (i * 7919) % 97 + i / 2,
            key: keys[i as usize % 2].into(),
            value: SCALE,
        })
        .collect();
    for kind in [
        WindowKind::Tumbling { size: 10 },
        WindowKind::Sliding { size: 12, slide: 5 },
    ] {
        let p = Params {
            kind,
            agg: Agg::Count,
            max_delay: 3,
            lateness: 2,
        };
        let run = run_engine(&events, &p, 2, &Partitioner::Random);
        let counted = consolidate(&run.changelog);
        let mut late_per_window: BTreeMap<(i64, u64, String), u64> = BTreeMap::new();
        for (index, start, end) in &run.late {
            *late_per_window
                .entry((*start, *end, events[*index].key.clone()))
                .or_default() += 1;
        }
        assert!(
            !run.late.is_empty(),
            "the input is meant to have late records"
        );
        for (window, falling) in common::reference::conservation_counts(&events, &p) {
            let counted = counted.get(&window).copied().unwrap_or(0) / SCALE;
            let late = late_per_window.get(&window).copied().unwrap_or(0);
            assert_eq!(counted as u64 + late, falling, "window {window:?}");
        }
    }
}

/// Peak and final live window state of one worker over `n` in-order events of three keys.
fn state_after(n: u64, assigner: WindowAssigner, lateness: u64) -> (usize, usize) {
    timely::execute_directly(move |worker| {
        let gauge = tidemark::window::fixed::StateGauge::default();
        let records: Vec<(u64, (u64, u64))> = (0..n).map(|ts| (ts, (ts % 3, ts))).collect();
        let feed = Some(VecFeed::new(records, 2));
        let g = gauge.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let error = std::rc::Rc::new(std::cell::RefCell::new(None));
            feed_source(
                scope,
                feed,
                SourceOptions {
                    batch: 64,
                    idle_timeout: None,
                },
                error,
            )
            .key_by(Partitioner::Hash)
            .window(assigner)
            .allowed_lateness(lateness)
            .gauge(&g)
            .aggregate(|ts: &u64| *ts, Count);
        });
        while worker.step() {}
        (gauge.peak(), gauge.live())
    })
}

/// Sessions too: a session beyond the allowed lateness is forgotten (Flink's purge), so it is
/// freed (see `tidemark::window::session`).
#[test]
fn window_state_does_not_grow_with_the_number_of_closed_windows() {
    for (assigner, lateness) in [
        (WindowAssigner::Tumbling(10), 0),
        (WindowAssigner::Sliding(30, 10), 25),
        (WindowAssigner::Session(2), 15),
    ] {
        let (small_peak, small_live) = state_after(2_000, assigner, lateness);
        let (large_peak, large_live) = state_after(50_000, assigner, lateness);
        assert_eq!(
            (small_live, large_live),
            (0, 0),
            "{assigner:?}: state freed at the end"
        );
        assert!(small_peak > 0, "{assigner:?}");
        assert_eq!(
            large_peak, small_peak,
            "{assigner:?}: 25x more windows, same peak state"
        );
    }
}
