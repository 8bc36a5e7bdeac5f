//! Per-record cost of the keyed window operator against a hand-written single-threaded loop.
//!
//! Both aggregate the same in-memory events (10k keys, event times increasing, 1000 events per
//! millisecond) into a tumbling count per key and 100 ms window, with the same hash map
//! (hashbrown's default). The engine runs on one worker and receives the events, cut into
//! batches of `BATCH` records before timing, one batch per timely epoch; the target is at least 0.8x the loop's throughput, read as
//! the ratio of the two `thrpt` lines of one `cargo bench --bench window` run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hashbrown::HashMap;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::window::{Count, WindowAssigner};
use timely::dataflow::operators::Probe;
use timely::dataflow::{InputHandleVec, ProbeHandle};

const EVENTS: usize = 4_000_000;
const KEYS: u64 = 10_000;
const WINDOW_MS: u64 = 100;
const BATCH: usize = 16_384;

/// `(key, event time)` pairs: keys scattered by a multiplicative hash, times in order.
fn events() -> Vec<(u64, u64)> {
    (0..EVENTS as u64)
        .map(|i| {
            (
                (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % KEYS,
                i / 1000,
            )
        })
        .collect()
}

/// The hand-written loop: one map per open window, emitted and cleared when time passes it.
fn baseline(events: &[(u64, u64)]) -> u64 {
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut window_end = WINDOW_MS;
    let mut emitted = 0u64;
    for &(key, ts) in events {
        if ts >= window_end {
            for (key, count) in counts.drain() {
                emitted = emitted.wrapping_add(black_box(key ^ count));
            }
            window_end = ts - ts % WINDOW_MS + WINDOW_MS;
        }
        *counts.entry(key).or_insert(0) += 1;
    }
    for (key, count) in counts.drain() {
        emitted = emitted.wrapping_add(black_box(key ^ count));
    }
    emitted
}

/// The events cut into the batches the engine receives (done before timing, as the loop's
/// events are also ready in memory).
fn batches(events: &[(u64, u64)]) -> Vec<Vec<(u64, u64)>> {
    events.chunks(BATCH).map(<[_]>::to_vec).collect()
}

/// The engine on one worker: key_by + tumbling window + count, fed batch by batch.
fn engine(batches: Vec<Vec<(u64, u64)>>) -> u64 {
    timely::execute_directly(move |worker| {
        let mut input = InputHandleVec::<u64, (u64, u64)>::new();
        let probe = ProbeHandle::new();
        let emitted = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let sink = std::rc::Rc::clone(&emitted);
        worker.dataflow::<u64, _, _>(|scope| {
            let windowed = input
                .to_stream(scope)
                .key_by(Partitioner::Hash)
                .window(WindowAssigner::Tumbling(WINDOW_MS))
                .aggregate(|ts: &u64| *ts, Count);
            use timely::dataflow::operators::Inspect;
            windowed
                .results
                .inspect(move |row| {
                    sink.set(sink.get().wrapping_add(black_box(row.key ^ row.value)))
                })
                .probe_with(&probe);
        });
        for mut batch in batches {
            input.advance_to(batch[0].1);
            input.send_batch(&mut batch);
            worker.step();
        }
        input.close();
        while worker.step() {}
        emitted.get()
    })
}

fn tumbling_count(c: &mut Criterion) {
    let events = events();
    assert_eq!(
        baseline(&events),
        engine(batches(&events)),
        "engine and loop disagree"
    );
    let mut group = c.benchmark_group("tumbling_count_1_worker");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function("hand_written_loop", |b| {
        b.iter(|| baseline(black_box(&events)))
    });
    group.bench_function("engine", |b| {
        b.iter_batched(|| batches(&events), engine, BatchSize::LargeInput)
    });
    group.finish();
}

criterion_group!(benches, tumbling_count);
criterion_main!(benches);
