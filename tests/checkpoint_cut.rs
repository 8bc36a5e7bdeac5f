//! Checkpoint cuts are exact: the state every stateful keyed operator hands to its cut at time
//! `c` equals the state of a run that saw only the records at times `<= c`, on 1, 2 and 4
//! workers and under every partitioner.
//!
//! Protects: the frontier stash's cut rules (`tidemark::stash`): records beyond a pending cut
//! are not applied (the window operator's in-order fast path, the join's on-arrival matching)
//! until the snapshot has been taken, and the snapshot is taken after everything at times up to
//! the cut (deferred records, window closes, reduce updates) and before anything later.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::stash::{Checkpoints, SnapshotSink};
use tidemark::window::{Count, WindowAssigner};
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

/// (worker, operator, cut) -> encoded state.
type Snapshots = BTreeMap<(usize, String, u64), Vec<u8>>;

/// Takes the cuts of a list, recording what each operator hands over.
struct Recorder {
    worker: usize,
    cuts: Vec<u64>,
    seen: Arc<Mutex<Snapshots>>,
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
        };
        let checkpoints = Checkpoints::new(Rc::new(RefCell::new(sink)));
        let mut input = InputHandleVec::<u64, (u64, u64)>::new();
        let probe = ProbeHandle::new();
        let partitioner = partitioner.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let stream = input.to_stream(scope);
            let windows = stream
                .clone()
                .key_by(partitioner.clone())
                .checkpoints(&checkpoints)
                .window(assigner)
                .allowed_lateness(3)
                .aggregate(|ts: &u64| *ts, Count);
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
            for (record, step) in records.iter().zip(steps.iter().cycle()) {
                input.advance_to(record.time);
                input.send((record.key, record.ts));
                if *step {
                    worker.step();
                }
            }
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

fn assigners() -> impl Strategy<Value = WindowAssigner> {
    prop_oneof![
        (1u64..6).prop_map(WindowAssigner::Tumbling),
        (1u64..4, 1u64..4).prop_map(|(slide, k)| WindowAssigner::Sliding(slide * k, slide)),
        (1u64..5).prop_map(WindowAssigner::Session),
    ]
}

fn partitioners() -> Vec<Partitioner<u64>> {
    vec![
        Partitioner::Hash,
        Partitioner::Range(vec![2, 4]),
        Partitioner::Random,
        Partitioner::Broadcast,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_operator_snapshots_exactly_the_records_up_to_its_cut(
        records in records(),
        steps in prop::collection::vec(any::<bool>(), 1..8),
        cut_gaps in prop::collection::vec(1u64..12, 1..4),
        assigner in assigners(),
        workers in prop::sample::select(vec![1usize, 2, 4]),
        partitioner in prop::sample::select(partitioners()),
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
