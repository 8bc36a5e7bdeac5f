//! The measuring harness: open-loop driver, latency recorder, one measured run from settings
//! to report, the sustainable-throughput search, and finite runs for checking engines against
//! baselines.

pub mod check;
pub mod driver;
pub mod experiment;
pub mod profile;
pub mod recorder;
pub mod report;
pub mod run;
pub mod snapshots;
pub mod sustainable;

use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;
use timely::ExchangeData;

/// Collects one value from every worker of every process on worker 0 (which gets them all,
/// in no particular order); the other workers get an empty vector.
pub fn gather<T: ExchangeData + Clone>(worker: &mut Worker, value: T) -> Vec<T> {
    let mut input = InputHandleVec::<u64, T>::new();
    let probe = ProbeHandle::new();
    let collected = std::rc::Rc::new(std::cell::RefCell::new(Vec::<T>::new()));
    let sink = std::rc::Rc::clone(&collected);
    worker.dataflow::<u64, _, _>(|scope| {
        input
            .to_stream(scope)
            .exchange(|_| 0)
            .inspect(move |v: &T| sink.borrow_mut().push(v.clone()))
            .probe_with(&probe);
    });
    input.send(value);
    input.close();
    while !probe.done() {
        worker.step();
    }
    collected.take()
}
