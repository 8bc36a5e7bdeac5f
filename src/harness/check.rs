//! Finite, untimed runs of a workload through the engine and through its baseline, for tests
//! that both compute the same thing.
//!
//! Events get event times `index * spacing_ns` (index global across workers, in order) and are
//! sent at epochs of `epoch_ns`, exactly as the timed harness does.

use std::sync::{Arc, Mutex};

use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

use crate::workloads::{Baseline, Workload};

/// The first `count` events of the workload's logical stream (worker streams interleaved),
/// with event times `index * spacing_ns`.
pub fn events<W: Workload>(
    workload: &W,
    seed: u64,
    count: usize,
    spacing_ns: u64,
) -> Vec<W::Event> {
    let mut events: Vec<W::Event> = workload.generator(seed, 0, 1).take(count).collect();
    for (index, event) in events.iter_mut().enumerate() {
        W::set_event_time(event, index as u64 * spacing_ns);
    }
    events
}

/// Which engine path of a workload a check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The timely dataflow ([`Workload::dataflow`]): every output row.
    Dataflow,
    /// The incremental view ([`Workload::incremental`]; the workload must have one): its
    /// consolidated contents at the end, each row repeated by its count. Panics if some row ends
    /// with a negative count: a view never retracts what it did not hold.
    View,
}

/// Runs `events` through the engine by `via` on `workers` threads; returns the rows (see
/// [`Via`]), sorted.
pub fn engine<W: Workload>(
    workload: &W,
    events: Vec<W::Event>,
    workers: usize,
    epoch_ns: u64,
    via: Via,
) -> Vec<W::Output> {
    let events = Arc::new(events);
    let rows = Arc::new(Mutex::new(Vec::new()));
    let (sink, workload) = (Arc::clone(&rows), workload.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut input = InputHandleVec::<u64, W::Event>::new();
        let probe = ProbeHandle::new();
        let sink = Arc::clone(&sink);
        worker.dataflow::<u64, _, _>(|scope| {
            let events = input.to_stream(scope);
            let updates = if via == Via::View {
                let view = workload
                    .incremental(events)
                    .expect("the workload has a view");
                view.inner.map(|(row, _time, diff)| (row, diff))
            } else {
                workload.dataflow(events).map(|row| (row, 1))
            };
            updates
                .inspect(move |update| {
                    sink.lock()
                        .expect("no panics while held")
                        .push(update.clone())
                })
                .probe_with(&probe);
        });
        // Worker `index` sends events `index, index + peers, ...`, epoch by epoch.
        for event in events.iter().skip(index).step_by(peers) {
            let time = W::event_time(event);
            input.advance_to(time - time % epoch_ns);
            input.send(event.clone());
            worker.step();
        }
        input.close();
        while worker.step() {}
    })
    .expect("timely runs");
    let mut updates = std::mem::take(&mut *rows.lock().expect("no poison"));
    updates.sort();
    let mut rows = Vec::new();
    for run in updates.chunk_by(|a, b| a.0 == b.0) {
        let count: isize = run.iter().map(|(_, diff)| diff).sum();
        assert!(count >= 0, "row {:?} has count {count}", run[0].0);
        rows.extend(std::iter::repeat_n(run[0].0.clone(), count as usize));
    }
    rows
}

/// Runs `events` through the baseline, epoch by epoch; returns every output row, sorted.
pub fn baseline<W: Workload>(
    workload: &W,
    mut events: Vec<W::Event>,
    epoch_ns: u64,
) -> Vec<W::Output> {
    let mut baseline = workload.baseline();
    let mut rows = Vec::new();
    let mut batch = Vec::new();
    let mut current = None;
    for event in events.drain(..) {
        let time = W::event_time(&event);
        let epoch = time - time % epoch_ns;
        if current != Some(epoch) {
            baseline.process(&mut batch, &mut rows);
            baseline.advance(epoch, &mut rows);
            current = Some(epoch);
        }
        batch.push(event);
    }
    baseline.process(&mut batch, &mut rows);
    baseline.advance(u64::MAX, &mut rows);
    rows.sort();
    rows
}
