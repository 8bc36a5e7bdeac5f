//! Cost of the latency recorder: per sample, and per merge and transfer of a filled recorder.
//!
//! * `recorder_record`: `Recorder::record(due, now)` for `SAMPLES` pre-built samples (latencies
//!   from 50 us to about 5 ms, due times over `RECORD_SECONDS` seconds), into one recorder that
//!   lives across iterations, as a worker's does during a run. `total_only` is
//!   `Recorder::new(0, false)`; `with_intervals` also keeps per-second histograms
//!   (`Recorder::new(0, true)`), which costs a map lookup more per sample. Throughput is samples
//!   per second; the harness records one sample per epoch per worker, so anything above a few
//!   million per second is far from mattering.
//! * `recorder_merge` and `recorder_transfer`: recorders filled with `SAMPLES` samples over
//!   `FILLED_SECONDS` seconds (a one-minute run), with and without intervals. `merge` of one into
//!   a copy of another (the copy is made outside the timing), then `to_bytes` and `from_bytes`
//!   (throughput in encoded bytes): together what collecting one worker's recorder at the end
//!   of a run costs.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tidemark::harness::recorder::Recorder;

const SAMPLES: u64 = 1_000_000;
const RECORD_SECONDS: u64 = 10;
const FILLED_SECONDS: u64 = 60;
const NS_PER_S: u64 = 1_000_000_000;

/// `(due, now)` pairs spread evenly over `seconds`, with scattered latencies of 50 us to ~5 ms.
fn samples(seconds: u64, seed: u64) -> Vec<(u64, u64)> {
    let step = seconds * NS_PER_S / SAMPLES;
    (0..SAMPLES)
        .map(|i| {
            let due = i * step;
            let scatter = (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 51; // < 8192
            (due, due + 50_000 + scatter * 600)
        })
        .collect()
}

fn filled(intervals: bool, seed: u64) -> Recorder {
    let mut recorder = Recorder::new(0, intervals);
    for (due, now) in samples(FILLED_SECONDS, seed) {
        recorder.record(due, now);
    }
    assert_eq!(recorder.samples(), SAMPLES);
    recorder
}

fn label(intervals: bool) -> &'static str {
    if intervals {
        "with_intervals"
    } else {
        "total_only"
    }
}

fn record(c: &mut Criterion) {
    let samples = samples(RECORD_SECONDS, 0);
    let mut group = c.benchmark_group("recorder_record");
    group.throughput(Throughput::Elements(SAMPLES));
    for intervals in [false, true] {
        let mut recorder = Recorder::new(0, intervals);
        group.bench_function(label(intervals), |b| {
            b.iter(|| {
                for &(due, now) in &samples {
                    recorder.record(black_box(due), black_box(now));
                }
            })
        });
        assert!(recorder.samples() >= SAMPLES);
    }
    group.finish();
}

fn merge_and_transfer(c: &mut Criterion) {
    let recorders = [false, true]
        .map(|intervals| (label(intervals), filled(intervals, 1), filled(intervals, 2)));
    let mut group = c.benchmark_group("recorder_merge");
    for (name, mine, theirs) in &recorders {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || mine.clone(),
                |mut merged| {
                    merged.merge(theirs);
                    merged
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    let mut group = c.benchmark_group("recorder_transfer");
    for (name, mine, _) in &recorders {
        let bytes = mine.to_bytes();
        assert_eq!(Recorder::from_bytes(&bytes).samples(), SAMPLES);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("to_bytes/{name}"), |b| {
            b.iter(|| black_box(mine).to_bytes())
        });
        group.bench_function(format!("from_bytes/{name}"), |b| {
            b.iter(|| Recorder::from_bytes(black_box(&bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, record, merge_and_transfer);
criterion_main!(benches);
