//! Cost of progress tracking per epoch: how many epochs per second one worker can close.
//!
//! The dataflow is `input -> MAPS pass-through maps -> probe` on one worker. Each iteration
//! advances the input `EPOCHS` times by one, and after each advance steps the worker until the
//! probe has passed the previous epoch, which is what the harness does once per epoch. So the
//! time is that of the frontier moving through the dataflow and being observed, epoch by epoch:
//!
//! * `empty_epochs`: no data at all, only progress messages;
//! * `one_record_per_epoch`: one record sent at each epoch before advancing, which adds a
//!   message per operator per epoch on top of the progress.
//!
//! Throughput is epochs per second. Its inverse is the least time an epoch costs the engine,
//! which bounds how fine the harness's epochs can be (1 ms epochs use a thousandth of it per
//! second). Both variants run in one `cargo bench --bench progress`, so their ratio is the cost
//! of a record's message relative to the progress round.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use timely::communication::allocator::Thread;
use timely::communication::Allocator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;
use timely::WorkerConfig;

const EPOCHS: u64 = 1_000;
const MAPS: usize = 4;

fn epochs(c: &mut Criterion) {
    let mut group = c.benchmark_group("progress_1_worker");
    group.throughput(Throughput::Elements(EPOCHS));
    for (name, with_record) in [("empty_epochs", false), ("one_record_per_epoch", true)] {
        // The worker lives on the bench thread, so one dataflow serves every iteration.
        let mut worker = Worker::new(
            WorkerConfig::default(),
            Allocator::Thread(Thread::default()),
            Some(std::time::Instant::now()),
        );
        let mut input = InputHandleVec::<u64, u64>::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let mut stream = input.to_stream(scope);
            for _ in 0..MAPS {
                stream = stream.map(|x| x);
            }
            stream.probe_with(&probe);
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..EPOCHS {
                    let now = *input.time();
                    if with_record {
                        input.send(now);
                    }
                    input.advance_to(now + 1);
                    worker.step_while(|| probe.less_than(input.time()));
                }
            })
        });
        input.close();
        while worker.step() {}
    }
    group.finish();
}

criterion_group!(benches, epochs);
criterion_main!(benches);
