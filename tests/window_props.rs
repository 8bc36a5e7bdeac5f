//! The window operators against the brute-force reference, on random out-of-order inputs,
//! under 1, 2 and 4 workers and every partitioner.
//!
//! Protects: exact results (consolidated changelog == reference), the late output (exactly the
//! reference's late rows), and determinism of the raw changelog itself (the same multiset of
//! rows whatever the workers and partitioner).

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use tidemark::keyed::{KeyBy, KeyByWith, WindowedStream};
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source, SourceOptions, VecFeed};
use tidemark::window::{Aggregator, Count, WindowAssigner};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Inspect;

use common::dataflow::{
    keyed_records, run_fed, same_on_every_layout, source, with_agg, Case, Collect, Rec, WithAgg,
};
use common::gen;
use common::reference::{reference, windows_of, Agg, Event, Outcome, Params, WindowKind, SCALE};

/// A changelog row: (start, end, key, value mantissa, diff).
type Row = (i64, u64, String, i128, i64);

/// A run's sorted changelog and late rows `(input index, start, end)`.
#[derive(Debug, PartialEq)]
pub struct Run {
    changelog: Vec<Row>,
    late: Vec<(usize, i64, u64)>,
}

/// A run of the window operator on a case's events: keyed by `key_by`, or (`fused`) read as
/// `Option`s, each record followed by a `None` at its time, and keyed by a filtering map that
/// drops the `None`s (`key_by_with`: fused into the window's input on one worker, an operator of
/// its own before the exchange otherwise). The keys are the case's strings, or (`integer`)
/// integers standing for them (see [`integer_key`]). With `local`, the window aggregates
/// locally before the exchange (`local_aggregation`).
struct Windows<'a> {
    case: Case<'a, Event>,
    fused: bool,
    integer: Option<bool>,
    local: bool,
}

/// The integer standing for a generated key: its position in [`gen::KEYS`], and when `far`,
/// the odd positions moved far out of a dense key table's range (`2^40` times), so that a
/// table of small keys meets one mid-stream and turns hashed.
fn integer_key(key: &str, far: bool) -> u64 {
    let index = gen::KEYS
        .iter()
        .position(|k| *k == key)
        .expect("a generated key") as u64;
    if far && index % 2 == 1 {
        index << 40
    } else {
        index
    }
}

impl WithAgg for Windows<'_> {
    type Out = Run;
    fn run<A>(self, agg: A, mantissa: fn(&A::Output) -> i128) -> Run
    where
        A: Aggregator<Rec> + Send + Sync,
    {
        let (_, _, partitioner) = self.case.windows();
        let Some(far) = self.integer else {
            let run = run_keyed(&self, agg, mantissa, |key| key.to_string(), partitioner);
            return Run {
                changelog: run.changelog,
                late: run.late,
            };
        };
        let integer = |key: &String| integer_key(key, far);
        let partitioner = match partitioner {
            Partitioner::Range(split) => {
                let mut split: Vec<u64> = split.iter().map(integer).collect();
                split.sort_unstable();
                Partitioner::Range(split)
            }
            Partitioner::Hash => Partitioner::Hash,
            Partitioner::Random => Partitioner::Random,
            Partitioner::Broadcast => Partitioner::Broadcast,
        };
        let key_of = move |key: &str| integer_key(key, far);
        let run = run_keyed(&self, agg, mantissa, key_of, partitioner);
        // Back to the reference's keys: each integer stands for one generated key.
        let text = |key: u64| {
            gen::KEYS
                .iter()
                .find(|k| integer_key(k, far) == key)
                .expect("an integer of a generated key")
                .to_string()
        };
        let mut changelog: Vec<Row> = run
            .changelog
            .into_iter()
            .map(|(start, end, key, value, diff)| (start, end, text(key), value, diff))
            .collect();
        changelog.sort();
        Run {
            changelog,
            late: run.late,
        }
    }
}

/// A run's sorted changelog over keys of type `K`, and its late rows.
struct KeyedRun<K> {
    changelog: Vec<(i64, u64, K, i128, i64)>,
    late: Vec<(usize, i64, u64)>,
}

/// [`Windows`]' run with each generated key replaced by `key_of(key)`, routed by `partitioner`.
fn run_keyed<K, A>(
    windows: &Windows<'_>,
    agg: A,
    mantissa: fn(&A::Output) -> i128,
    key_of: impl Fn(&str) -> K,
    partitioner: Partitioner<K>,
) -> KeyedRun<K>
where
    K: tidemark::keyed::Key + Send + Sync,
    A: Aggregator<Rec> + Send + Sync,
{
    let (fused, local) = (windows.fused, windows.local);
    let input = keyed_records(windows.case.input)
        .into_iter()
        .flat_map(|(time, (key, record))| {
            let decoy = fused.then_some((time, None));
            [Some((time, Some((key_of(&key), record)))), decoy]
                .into_iter()
                .flatten()
        })
        .collect();
    let (changelog, late) = (Collect::new(), Collect::new());
    let (out, late_out) = (changelog.clone(), late.clone());
    let (assigner, lateness, _) = windows.case.windows();
    run_fed(
        windows.case.workers,
        input,
        windows.case.p.max_delay,
        move |scope, feed| {
            let (out, late_out) = (out.clone(), late_out.clone());
            let items = source(scope, feed);
            let keyed = |item: Option<(K, Rec)>| item;
            let windowed = if fused {
                let windows = items
                    .key_by_with(partitioner.clone(), keyed)
                    .window(assigner);
                locally(windows, local)
                    .allowed_lateness(lateness)
                    .aggregate(|r: &Rec| r.0, agg.clone())
            } else {
                let windows = items
                    .flat_map(keyed)
                    .key_by(partitioner.clone())
                    .window(assigner);
                locally(windows, local)
                    .allowed_lateness(lateness)
                    .aggregate(|r: &Rec| r.0, agg.clone())
            };
            windowed.results.inspect(move |r| {
                let value = mantissa(&r.value);
                out.push((r.window.start, r.window.end, r.key.clone(), value, r.diff));
            });
            windowed.late.inspect(move |l| {
                late_out.push((l.record.2, l.window.start, l.window.end));
            });
        },
    );
    KeyedRun {
        changelog: changelog.sorted(),
        late: late.sorted(),
    }
}

/// `windows`, aggregating locally before the exchange where `local`.
fn locally<K, V, I, P>(
    windows: WindowedStream<'_, K, V, I, P>,
    local: bool,
) -> WindowedStream<'_, K, V, I, P>
where
    K: tidemark::keyed::Key,
    V: tidemark::keyed::Value,
    I: 'static,
    P: tidemark::keyed::Prepare<I, K, V>,
{
    if local {
        windows.local_aggregation()
    } else {
        windows
    }
}

fn run_engine(
    events: &[Event],
    p: &Params,
    workers: usize,
    partitioner: &Partitioner<String>,
    fused: bool,
) -> Run {
    run_engine_keyed(events, p, workers, partitioner, fused, None, false)
}

/// [`run_engine`] with the keys as integers (`integer`: whether some are far; see
/// [`integer_key`]) or as the generated strings (`None`), aggregating locally before the
/// exchange where `local`.
fn run_engine_keyed(
    events: &[Event],
    p: &Params,
    workers: usize,
    partitioner: &Partitioner<String>,
    fused: bool,
    integer: Option<bool>,
    local: bool,
) -> Run {
    let case = Case {
        input: events,
        p,
        workers,
        partitioner,
    };
    with_agg(
        p.agg,
        Windows {
            case,
            fused,
            integer,
            local,
        },
    )
}

/// The reference's windows on 1 worker, and the same changelog on every layout, with or
/// without (`local`) local aggregation before the exchange.
fn check(events: &[Event], p: &Params, local: bool) {
    let expected: Outcome = reference(events, p);
    let first = run_engine(events, p, 1, &Partitioner::Hash, false);
    let what = format!("1 worker, hash, {p:?}");
    expected.assert_run(first.changelog.iter().cloned(), &first.late, &what);
    // The raw changelog and late rows, not only their consolidation, are the same everywhere.
    same_on_every_layout(
        &first,
        &format!("{p:?}, local {local}"),
        |workers, partitioner| {
            run_engine_keyed(events, p, workers, partitioner, false, None, local)
        },
    );
}

proptest! {
    // Half the cases of the tests below: the same layouts, and what differs is the input path.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A filtering map before the window (`key_by_with`) gives the reference's windows of the
    /// records it keeps, and the changelog of `key_by` over them, on every layout.
    #[test]
    fn windows_after_a_filtering_map_match_reference_under_all_layouts(events in gen::events(40), p in gen::params()) {
        let expected: Outcome = reference(&events, &p);
        let first = run_engine(&events, &p, 1, &Partitioner::Hash, true);
        expected.assert_run(first.changelog.iter().cloned(), &first.late, &format!("{p:?}"));
        prop_assert_eq!(&first, &run_engine(&events, &p, 1, &Partitioner::Hash, false));
        // Fused, and aggregated locally as the benchmark workloads are.
        same_on_every_layout(&first, &format!("{p:?}"), |workers, partitioner| {
            run_engine_keyed(&events, &p, workers, partitioner, true, None, true)
        });
    }
}

proptest! {
    // Half the cases of the tests below, as for the filtering map.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Integer keys (which the window's key tables index densely while they are small, and
    /// hash once one is far out of range, mid-stream when `far`) give the reference's windows,
    /// and the same changelog as the string keys they stand for, on every layout.
    #[test]
    fn windows_over_integer_keys_match_reference_under_all_layouts(events in gen::events(40), p in gen::params(), far in any::<bool>(), fused in any::<bool>(), local in any::<bool>()) {
        let expected: Outcome = reference(&events, &p);
        let integer = Some(far);
        let first = run_engine_keyed(&events, &p, 1, &Partitioner::Hash, fused, integer, false);
        expected.assert_run(first.changelog.iter().cloned(), &first.late, &format!("{p:?}"));
        prop_assert_eq!(&first, &run_engine(&events, &p, 1, &Partitioner::Hash, fused));
        same_on_every_layout(&first, &format!("{p:?}, far {far}, local {local}"), |workers, partitioner| {
            run_engine_keyed(&events, &p, workers, partitioner, fused, integer, local)
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn windows_match_reference_under_all_workers_and_partitioners(events in gen::events(40), p in gen::params(), local in any::<bool>()) {
        check(&events, &p, local);
    }

    #[test]
    fn windows_match_reference_at_the_end_of_the_time_domain(events in gen::events_near_the_end(30), p in gen::params(), local in any::<bool>()) {
        prop_assert_eq!(gen::MAX_TIME, tidemark::time::MAX_TIME);
        check(&events, &p, local);
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
        let run = run_engine(&events, &p, 2, &Partitioner::Random, false);
        let counted = windows_of(run.changelog.iter().cloned());
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

/// Sliding counts of `(key, event time)` records on 2 workers keyed by hash, each worker
/// sending its share of `rounds` at the round's time (the watermark), with or without local
/// aggregation: the sorted results and late rows.
#[allow(clippy::type_complexity)]
fn two_workers(
    rounds: &[(u64, Vec<(u64, u64)>)],
    local: bool,
) -> (Vec<(i64, u64, u64, u64, i64)>, Vec<(i64, u64, u64)>) {
    let rounds = std::sync::Arc::new(rounds.to_vec());
    let (results, late) = (Collect::new(), Collect::new());
    let (out, late_out) = (results.clone(), late.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let (out, late_out) = (out.clone(), late_out.clone());
        let (index, peers) = (worker.index(), worker.peers());
        let mut input = timely::dataflow::InputHandleVec::<u64, (u64, u64)>::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let windows = input
                .to_stream(scope)
                .key_by(Partitioner::Hash)
                .window(WindowAssigner::Sliding(100, 30));
            let windowed = locally(windows, local)
                .allowed_lateness(50)
                .aggregate(|ts: &u64| *ts, Count);
            windowed
                .results
                .inspect(move |r| out.push((r.window.start, r.window.end, r.key, r.value, r.diff)));
            windowed
                .late
                .inspect(move |l| late_out.push((l.window.start, l.window.end, l.key)));
        });
        for (time, records) in rounds.iter() {
            input.advance_to(*time);
            for (i, record) in records.iter().enumerate() {
                if i % peers == index {
                    input.send(*record);
                }
            }
            worker.step();
        }
    })
    .unwrap();
    (results.sorted(), late.sorted())
}

/// Local aggregation over stamps too large and too varied to fold well, which pass unfolded
/// for a while (see `src/window/partial.rs`), then folding again, with records behind the
/// watermark (corrections and late rows) throughout: the same rows as without it.
#[test]
fn local_aggregation_that_passes_records_unfolded_changes_no_row() {
    let mut rounds = Vec::new();
    let mut state = 7u64;
    for round in 0..120u64 {
        let time = 10 * round;
        // Rounds 0-59: 2000 records of 2000 keys (too few repeats to fold; 1000 a worker, far
        // above the 256 a stamp needs to decide); then 2000 of 8 keys.
        let keys = if round < 60 { 2000 } else { 8 };
        let records = (0..2000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // A tenth of the records up to 150 behind the watermark.
                let behind = if state.is_multiple_of(10) {
                    (state >> 8) % 150
                } else {
                    0
                };
                (
                    state % keys,
                    (time + (state >> 20) % 20).saturating_sub(behind),
                )
            })
            .collect();
        rounds.push((time, records));
    }
    let (results, late) = two_workers(&rounds, false);
    assert!(!late.is_empty() && results.iter().any(|r| r.4 < 0));
    assert_eq!((results, late), two_workers(&rounds, true));
}
