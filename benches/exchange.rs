//! Exchange cost of each partitioner: a keyed rolling sum on two workers, fed the same records.
//!
//! `EVENTS` `(key, value)` pairs over 10k keys are cut into batches of `BATCH` records before
//! timing; batch `i` is epoch `i` and is sent by worker `i % 2`, so each worker is a source for
//! half of the stream. Each worker runs `key_by(partitioner).reduce(|a, b| *a += b)`, the keyed
//! operator that moves records to their key's worker:
//!
//! * `hash` and `range` (one split point at the middle key) exchange every record once;
//! * `random` spreads records, pre-reduces them per worker and epoch, then exchanges the
//!   partial sums by key (two exchanges, the second of at most one record per key and epoch);
//! * `broadcast` copies every record to both workers, so both reduce the whole stream.
//!
//! `timely_exchange` is the reference point: timely's own `exchange` of the same pairs by
//! `route_hash`, with no operator behind it but a record count, which is the floor under `hash`.
//! Every run outside the timed part is checked against a single-threaded reference first.
//!
//! Throughput is input records per second, including starting the two worker threads and
//! building the dataflow (well under 1% of a run). Two spinning workers on the 2-core dev VM
//! oversubscribe it as soon as anything else runs (criterion itself, a generator, other builds),
//! so read the partitioners against each other and against `timely_exchange` within one
//! `cargo bench --bench exchange` run, not as absolute numbers; scaling figures come from the
//! 16-core machine.

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hashbrown::HashMap;
use tidemark::keyed::{KeyBy, Reduce};
use tidemark::partition::{route_hash, Partitioner};
use timely::dataflow::operators::{Exchange, Inspect, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle};

const EVENTS: usize = 4_000_000;
const KEYS: u64 = 10_000;
const BATCH: usize = 65_536;
const WORKERS: usize = 2;

/// What each worker runs on its input.
#[derive(Clone)]
enum Plan {
    /// `key_by(partitioner).reduce(sum)`, checksummed over its output.
    KeyedReduce(Partitioner<u64>),
    /// timely's `exchange` by `route_hash` of the key, counted.
    TimelyExchange,
}

/// One worker's share of the input: its epochs and their batches.
type Share = Vec<(u64, Vec<(u64, u64)>)>;

/// `(key, value)` pairs: keys scattered by a multiplicative hash, small values.
fn events() -> Vec<(u64, u64)> {
    (0..EVENTS as u64)
        .map(|i| {
            (
                (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20) % KEYS,
                i % 100,
            )
        })
        .collect()
}

/// An order-independent fingerprint of one output row (summed with wrapping addition).
fn fingerprint(key: u64, value: u64) -> u64 {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ value).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// The rolling sum's output fingerprint computed on one thread: at each epoch, every key that
/// received records emits its running sum.
fn reference(events: &[(u64, u64)]) -> u64 {
    let mut running: HashMap<u64, u64> = HashMap::new();
    let mut touched = Vec::new();
    let mut checksum = 0u64;
    for batch in events.chunks(BATCH) {
        touched.clear();
        for &(key, value) in batch {
            let sum = running.entry(key).or_insert(0);
            *sum += value;
            touched.push(key);
        }
        touched.sort_unstable();
        touched.dedup();
        for key in &touched {
            checksum = checksum.wrapping_add(fingerprint(*key, running[key]));
        }
    }
    checksum
}

/// The events cut into epochs and dealt to the workers round-robin (done before timing).
fn shares(events: &[(u64, u64)]) -> Vec<Share> {
    let mut shares = vec![Share::new(); WORKERS];
    for (epoch, batch) in events.chunks(BATCH).enumerate() {
        shares[epoch % WORKERS].push((epoch as u64, batch.to_vec()));
    }
    shares
}

/// Runs `plan` on two workers, each feeding its share one epoch per step; returns the summed
/// result of the workers (output fingerprint or record count).
fn engine(plan: &Plan, shares: Vec<Share>) -> u64 {
    let plan = plan.clone();
    let shares = Arc::new(Mutex::new(shares));
    let guards = timely::execute(timely::Config::process(WORKERS), move |worker| {
        let mine = std::mem::take(&mut shares.lock().expect("no worker panicked")[worker.index()]);
        let mut input = InputHandleVec::<u64, (u64, u64)>::new();
        let probe = ProbeHandle::new();
        let result = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let sink = std::rc::Rc::clone(&result);
        worker.dataflow::<u64, _, _>(|scope| {
            let stream = input.to_stream(scope);
            match plan.clone() {
                Plan::KeyedReduce(partitioner) => stream
                    .key_by(partitioner)
                    .reduce(|a, b| *a += b)
                    .inspect(move |(key, value)| {
                        sink.set(sink.get().wrapping_add(fingerprint(*key, *value)))
                    })
                    .probe_with(&probe),
                Plan::TimelyExchange => stream
                    .exchange(|(key, _)| route_hash(key))
                    .inspect_core(move |event| {
                        if let Ok((_, batch)) = event {
                            sink.set(sink.get() + batch.len() as u64);
                        }
                    })
                    .probe_with(&probe),
            };
        });
        for (epoch, mut batch) in mine {
            input.advance_to(epoch);
            input.send_batch(&mut batch);
            worker.step();
        }
        input.close();
        while worker.step() {}
        result.get()
    })
    .expect("timely starts");
    guards
        .join()
        .into_iter()
        .map(|r| r.expect("worker finished"))
        .fold(0u64, u64::wrapping_add)
}

fn partitioners(c: &mut Criterion) {
    let events = events();
    let expected = reference(&events);
    let range = Partitioner::range(vec![KEYS / 2]).expect("one split point");
    let plans = [
        ("hash", Plan::KeyedReduce(Partitioner::Hash), expected),
        ("range", Plan::KeyedReduce(range), expected),
        ("random", Plan::KeyedReduce(Partitioner::Random), expected),
        (
            "broadcast",
            Plan::KeyedReduce(Partitioner::Broadcast),
            expected,
        ),
        ("timely_exchange", Plan::TimelyExchange, EVENTS as u64),
    ];
    for (name, plan, expected) in &plans {
        assert_eq!(
            engine(plan, shares(&events)),
            *expected,
            "{name} disagrees with the reference"
        );
    }

    let mut group = c.benchmark_group("key_by_reduce_2_workers");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    for (name, plan, _) in &plans {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || shares(&events),
                |shares| black_box(engine(plan, shares)),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, partitioners);
criterion_main!(benches);
