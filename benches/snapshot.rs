//! Encoding and decoding a window operator's state snapshot: bincode (serde, what
//! `tidemark::checkpoint` writes) against abomonation (what timely once used, and the design
//! card named).
//!
//! The state is shaped like a keyed window operator's with `KEYS` keys: per key
//! `OPEN_PER_KEY` open windows (window bounds, count, a 128-bit sum as two words), `DEFERRED`
//! records held back behind the cut (time, key, event time, value), the pending close times and
//! the watermark pair. Keys are strings like the CLI's (`user-123456`). Each benchmark gives its
//! throughput in encoded bytes; the sizes are printed once.
//!
//! * `snapshot/bincode_encode` and `snapshot/abomonation_encode`: into a reused buffer.
//! * `snapshot/bincode_decode`: back to an owned state (what a restore needs).
//! * `snapshot/abomonation_decode`: in-place decoding of a copy of the bytes (the copy is made
//!   outside the timing), plus `clone` to an owned state, since the decoded value borrows the
//!   buffer and a restored operator must own its state.
//!
//! abomonation carries RUSTSEC-2021-0120 (decoding can be unsound on untrusted or damaged
//! bytes), which is why it is a dev-dependency of this bench only.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const KEYS: u64 = 10_000;
const OPEN_PER_KEY: u64 = 3;
const DEFERRED: u64 = 20_000;

/// `(key, window start, window end, count, sum high word, sum low word)`.
type Open = (String, i64, u64, u64, u64, u64);
/// `(time, key, event time, value)`.
type Deferred = (u64, String, u64, u64);
/// Open windows, deferred records, pending close times, watermark and largest event time.
type State = (Vec<Open>, Vec<Deferred>, Vec<u64>, u64, u64);

fn state() -> State {
    let mut open = Vec::new();
    for key in 0..KEYS {
        for w in 0..OPEN_PER_KEY {
            let start = (w * 10_000) as i64;
            let mix = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            open.push((
                format!("user-{key:06}"),
                start,
                start as u64 + 10_000,
                mix % 1000,
                0,
                mix,
            ));
        }
    }
    let deferred = (0..DEFERRED)
        .map(|i| {
            (
                30_000 + i / 100,
                format!("user-{:06}", i % KEYS),
                29_000 + i % 1000,
                i,
            )
        })
        .collect();
    let closes = (0..OPEN_PER_KEY).map(|w| w * 10_000 + 9_999).collect();
    (open, deferred, closes, 30_000, 31_999)
}

fn bench(c: &mut Criterion) {
    let state = state();
    let encoded = bincode::serialize(&state).expect("bincode into memory");
    let mut abomonated = Vec::new();
    // SAFETY: encoding writes the value's bytes into a Vec; it reads only `state`.
    unsafe { abomonation::encode(&state, &mut abomonated) }.expect("into memory");
    eprintln!(
        "snapshot of {KEYS} keys: bincode {} bytes, abomonation {} bytes",
        encoded.len(),
        abomonated.len()
    );

    let mut group = c.benchmark_group("snapshot");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    let mut buffer = Vec::with_capacity(encoded.len());
    group.bench_function("bincode_encode", |b| {
        b.iter(|| {
            buffer.clear();
            bincode::serialize_into(&mut buffer, black_box(&state)).expect("into memory");
        })
    });
    group.bench_function("bincode_decode", |b| {
        b.iter(|| {
            let state: State = bincode::deserialize(black_box(&encoded)).expect("decodes");
            state
        })
    });
    group.throughput(Throughput::Bytes(abomonated.len() as u64));
    let mut buffer = Vec::with_capacity(abomonated.len());
    group.bench_function("abomonation_encode", |b| {
        b.iter(|| {
            buffer.clear();
            // SAFETY: as above.
            unsafe { abomonation::encode(black_box(&state), &mut buffer) }.expect("into memory");
        })
    });
    group.bench_function("abomonation_decode", |b| {
        b.iter_batched(
            || abomonated.clone(),
            |mut bytes| {
                // SAFETY: the bytes were just produced by `encode` of a `State` in this process,
                // the only case in which abomonation's decoding is sound.
                let (state, _) =
                    unsafe { abomonation::decode::<State>(&mut bytes) }.expect("decodes");
                state.clone()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
