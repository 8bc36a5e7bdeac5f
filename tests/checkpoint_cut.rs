//! Checkpoint cuts are exact: the state every stateful keyed operator hands to its cut at time
//! `c` equals the state of a run that saw only the records at times `<= c`, on 1, 2 and 4
//! workers and under every partitioner. And a restore is exact: operators built from their
//! states at `c` (`Checkpoints::restoring`) and fed only the records at times `> c` emit, at
//! every time `> c`, what the uninterrupted run emits.
//!
//! Protects: the frontier stash's cut rules (`tidemark::stash`): records beyond a pending cut
//! are not applied (the window operator's in-order fast path, the join's on-arrival matching)
//! until the snapshot has been taken, and the snapshot is taken after everything at times up to
//! the cut (deferred records, window closes, reduce updates) and before anything later.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use common::dataflow::partitioners_split;
use common::gen;
use proptest::prelude::*;
use tidemark::keyed::{Join, KeyBy, Reduce};
use tidemark::partition::Partitioner;
use tidemark::stash::{Checkpoints, Cuts, SnapshotSink};
use tidemark::window::{Count, WindowAssigner};
use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

/// (worker, operator, cut) -> encoded state.
type Snapshots = BTreeMap<(usize, String, u64), Vec<u8>>;

/// (worker, operator, first cut of a range) -> (its last cut, encoded state).
type Ranges = BTreeMap<(usize, String, u64), (u64, Vec<u8>)>;

/// Takes the cuts of a list, recording what each operator hands over; or, with `every`, the
/// cuts `cuts[0] + k * every` a range at a time (as the checkpoint writer does), recording the
/// ranges in `ranges`.
struct Recorder {
    worker: usize,
    cuts: Vec<u64>,
    seen: Arc<Mutex<Snapshots>>,
    every: Option<u64>,
    ranges: Arc<Mutex<Ranges>>,
}

impl SnapshotSink for Recorder {
    fn first_cut(&self) -> Option<u64> {
        self.cuts.first().copied()
    }

    fn write(&mut self, operator: &str, cut: u64, state: Vec<u8>) -> Option<u64> {
        let key = (self.worker, operator.to_owned(), cut);
        let previous = self.seen.lock().unwrap().insert(key, state);
        assert!(previous.is_none(), "{operator} took cut {cut} twice");
        self.cuts.iter().copied().find(|c| *c > cut)
    }

    fn last_cut_through(&self, first: u64, bound: u64) -> u64 {
        match self.every {
            Some(every) => first + (bound - first) / every * every,
            None => first,
        }
    }

    fn write_range(&mut self, operator: &str, cuts: Cuts, state: Vec<u8>) -> Option<u64> {
        let (first, last) = cuts.into_inner();
        let Some(every) = self.every else {
            return self.write(operator, first, state);
        };
        let key = (self.worker, operator.to_owned(), first);
        let previous = self.ranges.lock().unwrap().insert(key, (last, state));
        assert!(previous.is_none(), "{operator} took cut {first} twice");
        last.checked_add(every)
    }

    fn write_last(&mut self, operator: &str, cut: u64, state: Vec<u8>) {
        match self.every {
            Some(_) => {
                // The last state stands for every later cut.
                self.write_range(operator, cut..=u64::MAX, state);
            }
            None => {
                self.write(operator, cut, state);
            }
        }
    }
}

/// One input record: the time it travels at, its key and its event time.
#[derive(Clone, Debug)]
struct Record {
    time: u64,
    key: u64,
    ts: u64,
}

/// Runs a window (`assigner`, lateness 3), a rolling reduce and a join over `records`, fed by
/// worker 0 in order of time with a step of the workers after the records flagged in `steps`;
/// returns every snapshot taken at `cuts`. With `settle`, the input then advances to that time
/// and the workers run until every operator has seen it before the input closes; without, it
/// closes at once (an operator may then see the input end without a finite frontier past a
/// cut, and takes the pending cut then).
#[allow(clippy::too_many_arguments)]
fn run(
    records: &[Record],
    steps: &[bool],
    cuts: &[u64],
    settle: Option<u64>,
    workers: usize,
    partitioner: &Partitioner<u64>,
    assigner: WindowAssigner,
) -> Snapshots {
    let seen = Arc::new(Mutex::new(Snapshots::new()));
    let (records, steps, cuts) = (records.to_vec(), steps.to_vec(), cuts.to_vec());
    let (shared, partitioner) = (Arc::clone(&seen), partitioner.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let sink = Recorder {
            worker: index,
            cuts: cuts.clone(),
            seen: Arc::clone(&shared),
            every: None,
            ranges: Arc::default(),
        };
        let checkpoints = Checkpoints::new(Rc::new(RefCell::new(sink)));
        let mut input = InputHandleVec::<u64, (u64, u64)>::new();
        let probe = ProbeHandle::new();
        let partitioner = partitioner.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let stream = input.to_stream(scope);
            let windows = counted(stream.clone(), &partitioner, &checkpoints, assigner);
            windows.results.probe_with(&probe);
            windows.late.probe_with(&probe);
            stream
                .clone()
                .key_by(partitioner.clone())
                .checkpoints(&checkpoints)
                .reduce(|max, ts| *max = (*max).max(ts))
                .probe_with(&probe);
            let odd = stream.clone().key_by(partitioner.clone());
            odd.checkpoints(&checkpoints)
                .join(stream.key_by(partitioner), |key, a, b| (*key, *a, *b))
                .probe_with(&probe);
        });
        if index == 0 {
            send(&mut input, worker, &records, &steps);
        }
        if let Some(time) = settle {
            input.advance_to(time.max(*input.time()));
            while probe.less_than(&time) {
                worker.step();
            }
        }
        input.close();
        while worker.step_or_park(None) {}
    })
    .expect("timely runs");
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

/// The window operator both runs build: `assigner`, lateness 3, counting.
/// Sends `records` in order at their times, stepping the worker after each record whose `steps`
/// entry (cycled) is set, so operators see the input in batches of varied sizes.
fn send(
    input: &mut InputHandleVec<u64, (u64, u64)>,
    worker: &mut timely::worker::Worker,
    records: &[Record],
    steps: &[bool],
) {
    for (record, step) in records.iter().zip(steps.iter().cycle()) {
        input.advance_to(record.time);
        input.send((record.key, record.ts));
        if *step {
            worker.step();
        }
    }
}

fn counted<'s>(
    stream: timely::dataflow::StreamVec<'s, u64, (u64, u64)>,
    partitioner: &Partitioner<u64>,
    checkpoints: &Checkpoints,
    assigner: WindowAssigner,
) -> tidemark::keyed::window::Windowed<'s, u64, u64, u64> {
    stream
        .key_by(partitioner.clone())
        .checkpoints(checkpoints)
        .window(assigner)
        .allowed_lateness(3)
        .aggregate(|ts: &u64| *ts, Count)
}

fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec((0u64..4, 0u64..6, 0u64..8), 1..40).prop_map(|steps| {
        let mut time = 0;
        steps
            .into_iter()
            .map(|(advance, key, ahead)| {
                time += advance;
                // Mostly ahead of the watermark (in order), sometimes behind it (late).
                let ts = if ahead == 0 {
                    time.saturating_sub(5)
                } else {
                    time + ahead
                };
                Record { time, key, ts }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_operator_snapshots_exactly_the_records_up_to_its_cut(
        records in records(),
        steps in prop::collection::vec(any::<bool>(), 1..8),
        cut_gaps in prop::collection::vec(1u64..12, 1..4),
        assigner in gen::assigners(6, 5),
        workers in prop::sample::select(vec![1usize, 2, 4]),
        partitioner in prop::sample::select(partitioners_split(vec![2, 4])),
    ) {
        let cuts: Vec<u64> = cut_gaps
            .iter()
            .scan(0, |at, gap| {
                *at += gap;
                Some(*at - 1)
            })
            .collect();
        let settle = cuts.last().map(|c| c + 1);
        let full = run(&records, &steps, &cuts, settle, workers, &partitioner, assigner);
        for &cut in &cuts {
            let prefix: Vec<Record> = records.iter().filter(|r| r.time <= cut).cloned().collect();
            let alone = run(&prefix, &steps, &[cut], None, workers, &partitioner, assigner);
            let at_cut: Snapshots = full
                .iter()
                .filter(|((_, _, c), _)| *c == cut)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            // Three operators on every worker took the cut in both runs.
            prop_assert_eq!(at_cut.len(), 3 * workers);
            prop_assert_eq!(alone.len(), 3 * workers);
            prop_assert_eq!(&at_cut, &alone, "cut {}", cut);
        }
    }
}

/// What the restorable operators emit, with the time each row travels at: window results and
/// late records (`Debug` text, the rows' own order), and reduce rows.
type Emitted = Vec<(u64, String)>;

/// Runs a window (`assigner`, lateness 3) and a rolling reduce (the operators that restore)
/// over `records` (fed by worker 0 in order of time, stepping as `steps` says), taking a cut at
/// `cut` (recorded in the returned snapshots), or with `every` at `cut + k * every` a range at
/// a time (recorded in the returned ranges), or, with `restore`, building every worker's
/// operators from its states in it. Returns the snapshots, the ranges and every row emitted.
#[allow(clippy::too_many_arguments)]
fn run_restorable(
    records: &[Record],
    steps: &[bool],
    cut: Option<u64>,
    every: Option<u64>,
    restore: Option<&Snapshots>,
    workers: usize,
    partitioner: &Partitioner<u64>,
    assigner: WindowAssigner,
) -> (Snapshots, Ranges, Emitted) {
    let seen = Arc::new(Mutex::new(Snapshots::new()));
    let ranged = Arc::new(Mutex::new(Ranges::new()));
    let ranges = Arc::clone(&ranged);
    let emitted = Arc::new(Mutex::new(Emitted::new()));
    let (records, steps) = (records.to_vec(), steps.to_vec());
    let (shared, rows, partitioner) =
        (Arc::clone(&seen), Arc::clone(&emitted), partitioner.clone());
    let restore = restore.cloned();
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let sink = Rc::new(RefCell::new(Recorder {
            worker: index,
            cuts: cut.into_iter().collect(),
            seen: Arc::clone(&shared),
            every,
            ranges: Arc::clone(&ranges),
        }));
        let checkpoints = match &restore {
            Some(snapshots) => {
                let states = snapshots
                    .iter()
                    .filter(|((w, _, _), _)| *w == index)
                    .map(|((_, operator, _), state)| (operator.clone(), state.clone()))
                    .collect();
                Checkpoints::restoring(sink, states)
            }
            None => Checkpoints::new(sink),
        };
        let mut input = InputHandleVec::<u64, (u64, u64)>::new();
        let partitioner = partitioner.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let stream = input.to_stream(scope);
            let windows = counted(stream.clone(), &partitioner, &checkpoints, assigner);
            // Every row with the time it travels at, tagged with the output it left by.
            let push = |rows: &Arc<Mutex<Emitted>>, tag: &'static str| {
                let rows = Arc::clone(rows);
                move |time: u64, row: String| {
                    rows.lock().unwrap().push((time, format!("{tag} {row}")))
                }
            };
            let result = push(&rows, "result");
            windows.results.inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let time = *stamp.least().expect("one time");
                    data.iter().for_each(|row| result(time, format!("{row:?}")));
                }
            });
            let late = push(&rows, "late");
            windows.late.inspect_core(move |event| {
                if let Ok((stamp, data)) = event {
                    let time = *stamp.least().expect("one time");
                    data.iter().for_each(|row| late(time, format!("{row:?}")));
                }
            });
            let reduced = push(&rows, "reduce");
            stream
                .key_by(partitioner.clone())
                .checkpoints(&checkpoints)
                .reduce(|max, ts| *max = (*max).max(ts))
                .inspect_core(move |event| {
                    if let Ok((stamp, data)) = event {
                        let time = *stamp.least().expect("one time");
                        data.iter()
                            .for_each(|row| reduced(time, format!("{row:?}")));
                    }
                });
        });
        checkpoints
            .restore_result()
            .expect("every operator restores");
        if index == 0 {
            send(&mut input, worker, &records, &steps);
        }
        input.close();
        while worker.step_or_park(None) {}
    })
    .expect("timely runs");
    let mut rows = std::mem::take(&mut *emitted.lock().unwrap());
    rows.sort();
    let ranged = std::mem::take(&mut *ranged.lock().unwrap());
    (
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap(),
        ranged,
        rows,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn restoring_at_a_cut_then_continuing_equals_the_uninterrupted_run(
        records in records(),
        steps in prop::collection::vec(any::<bool>(), 1..8),
        cut in 0u64..40,
        assigner in gen::assigners(6, 5),
        workers in prop::sample::select(vec![1usize, 2, 4]),
        partitioner in prop::sample::select(partitioners_split(vec![2, 4])),
    ) {
        let (snapshots, _, full) = run_restorable(
            &records, &steps, Some(cut), None, None, workers, &partitioner, assigner,
        );
        // Two operators on every worker took the cut.
        prop_assert_eq!(snapshots.len(), 2 * workers);
        let rest: Vec<Record> = records.iter().filter(|r| r.time > cut).cloned().collect();
        let (_, _, resumed) = run_restorable(
            &rest, &steps, None, None, Some(&snapshots), workers, &partitioner, assigner,
        );
        let after: Emitted = full.into_iter().filter(|(t, _)| *t > cut).collect();
        // Nothing at or before the cut is emitted again, and everything after it is.
        prop_assert_eq!(resumed, after);
    }
}

/// Like [`records`], with gaps in time of 20 to 60 now and then: the frontier passes many cuts
/// at once there, with no record between them.
fn records_with_gaps() -> impl Strategy<Value = Vec<Record>> {
    (
        records(),
        prop::collection::vec((any::<bool>(), 20u64..60), 1..40),
    )
        .prop_map(|(records, gaps)| {
            let mut shift = 0;
            records
                .into_iter()
                .zip(gaps.iter().cycle())
                .map(|(record, (gap, by))| {
                    if *gap && record.key == 0 {
                        shift += by;
                    }
                    Record {
                        time: record.time + shift,
                        ts: record.ts + shift,
                        ..record
                    }
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Cuts taken a range at a time (a gap in the times passes many at once, review of
    /// 2026-11-30: one snapshot per cut walked a day's gap for seconds and epoch times from 0
    /// forever): the one state of a range, restored at *any* cut inside it, continues exactly
    /// as the uninterrupted run, as the per-cut states do.
    #[test]
    fn a_state_taken_for_a_range_of_cuts_restores_at_every_cut_in_it(
        records in records_with_gaps(),
        steps in prop::collection::vec(any::<bool>(), 1..8),
        first in 0u64..10,
        every in 1u64..6,
        assigner in gen::assigners(6, 5),
        workers in prop::sample::select(vec![1usize, 2, 4]),
        partitioner in prop::sample::select(partitioners_split(vec![2, 4])),
    ) {
        let (_, ranges, full) = run_restorable(
            &records, &steps, Some(first), Some(every), None, workers, &partitioner, assigner,
        );
        // Each operator's ranges follow one another on the grid.
        let mut next: BTreeMap<(usize, String), u64> = BTreeMap::new();
        for ((worker, operator, start), (last, _)) in &ranges {
            let expected = next.get(&(*worker, operator.clone())).copied().unwrap_or(first);
            prop_assert_eq!(*start, expected, "{} on worker {}", operator, worker);
            // `u64::MAX`: the operator's last state, for every later cut.
            prop_assert!(*last == u64::MAX || (last >= start && (last - start) % every == 0));
            next.insert((*worker, operator.clone()), last.saturating_add(every));
        }
        let end = records.iter().map(|r| r.time).max().unwrap_or(0) + 2 * every;
        for cut in (first..=end).step_by(every as usize) {
            // Every worker's two operators' states at `cut`: from the range covering it.
            let mut at_cut = Snapshots::new();
            for ((worker, operator, start), (last, state)) in &ranges {
                if *start <= cut && cut <= *last {
                    at_cut.insert((*worker, operator.clone(), cut), state.clone());
                }
            }
            if at_cut.len() < 2 * workers {
                // A cut no operator reached (the input ended before it on every worker).
                continue;
            }
            let rest: Vec<Record> = records.iter().filter(|r| r.time > cut).cloned().collect();
            let (_, _, mut resumed) = run_restorable(
                &rest, &steps, None, None, Some(&at_cut), workers, &partitioner, assigner,
            );
            // A last state (taken once the input ended) restored at a later cut does again
            // the closes it implies up to the cut; the committing sink drops those rows, as
            // it drops every row at a time up to the cut it resumed from.
            let last_after = ranges
                .iter()
                .any(|((_, _, start), (last, _))| *last == u64::MAX && *start < cut);
            if last_after {
                resumed.retain(|(t, _)| *t > cut);
            }
            let after: Emitted = full.iter().filter(|(t, _)| *t > cut).cloned().collect();
            prop_assert_eq!(resumed, after, "restored at cut {}", cut);
        }
    }
}

/// The gap itself: records at times 1 and 5000 with a cut every 1. Each operator hands over
/// a handful of states, one of them for the range of cuts across the gap, not one per cut.
#[test]
fn a_gap_in_time_is_one_range_of_cuts() {
    let records = [
        Record {
            time: 1,
            key: 1,
            ts: 2,
        },
        Record {
            time: 5_000,
            key: 1,
            ts: 5_001,
        },
    ];
    let (_, ranges, _) = run_restorable(
        &records,
        &[true],
        Some(0),
        Some(1),
        None,
        1,
        &Partitioner::Hash,
        WindowAssigner::Tumbling(4),
    );
    assert!(
        ranges.len() <= 8,
        "{} states: {:?}",
        ranges.len(),
        ranges.keys()
    );
    assert!(
        ranges
            .iter()
            .any(|((_, _, first), (last, _))| *first < 100 && *last >= 4_999),
        "no range spans the gap: {:?}",
        ranges.iter().map(|(k, (l, _))| (k, l)).collect::<Vec<_>>()
    );
}

/// A restored feed: its watermark starts where the checkpoint left it, its first poll finds
/// nothing yet (a parallel reader waiting for an earlier block's maximum), then it has records.
struct Restored {
    watermark: tidemark::time::Watermark,
    polls: usize,
    records: Vec<u64>,
}

impl tidemark::source::Feed for Restored {
    type Item = u64;
    type Error = std::convert::Infallible;

    fn poll(
        &mut self,
        max: usize,
        out: &mut Vec<tidemark::source::Stamped<u64>>,
    ) -> Result<tidemark::source::Poll, Self::Error> {
        use tidemark::source::{Poll, Stamped};
        self.polls += 1;
        if self.polls == 1 {
            return Ok(Poll::Pending);
        }
        if self.records.is_empty() {
            return Ok(Poll::Done);
        }
        let n = max.min(self.records.len());
        for ts in self.records.drain(..n) {
            out.push(Stamped::new(&mut self.watermark, ts, ts));
        }
        Ok(Poll::Ready)
    }

    fn watermark(&mut self) -> &mut tidemark::time::Watermark {
        &mut self.watermark
    }

    fn state(&self, done: bool) -> Option<tidemark::source::SourceState> {
        Some(tidemark::source::SourceState {
            position: tidemark::source::Position::default(),
            watermark: self.watermark.clone(),
            done,
            blocks: Vec::new(),
            partitions: Vec::new(),
        })
    }
}

/// A source whose cut falls on a poll that found nothing (its watermark, restored, is already
/// past the cut) has promised that nothing more goes at a time up to the watermark: every
/// later record must travel at or above it, never at the capability's initial time. (A
/// restored parallel reader sent the rest of its block at time 0, so the operators' states at
/// later cuts held records that a run restored from them sent again: review of 2026-11-30.)
#[test]
fn a_restored_source_sends_nothing_below_the_watermark_its_cut_promised() {
    use tidemark::source::{feed_source_paced, Pacing, SendAt, SourceOptions};
    use tidemark::stash::Cut;
    use timely::dataflow::operators::capture::{Capture, Extract};
    for send_at in [SendAt::Watermark, SendAt::Stamp] {
        let cuts = Arc::new(Mutex::new(Vec::new()));
        let taken = Arc::clone(&cuts);
        let captured = timely::example(move |scope| {
            let mut watermark = tidemark::time::Watermark::new(10);
            watermark.stamp(1_010);
            let feed = Restored {
                watermark,
                polls: 0,
                records: vec![1_020, 1_005, 1_030, 2_000],
            };
            let cut = Cut::new(500, move |cut, _state| {
                taken.lock().unwrap().push(cut);
                Some(cut + 500)
            });
            let pacing = Pacing {
                send_at,
                ahead: None,
            };
            let error = Rc::new(RefCell::new(None));
            feed_source_paced::<_, u64>(
                scope,
                Some(feed),
                SourceOptions::default(),
                pacing,
                error,
                cut,
            )
            .capture()
        });
        // The cut at 500 was taken on the first poll, with the watermark 1000 as its limit.
        assert_eq!(cuts.lock().unwrap().first(), Some(&500), "{send_at:?}");
        let times: Vec<u64> = captured.extract().iter().map(|(t, _)| *t).collect();
        assert!(!times.is_empty());
        assert!(
            times.iter().all(|t| *t >= 1_000),
            "{send_at:?}: records sent at {times:?}, below the watermark 1000 of the cut taken"
        );
    }
}
