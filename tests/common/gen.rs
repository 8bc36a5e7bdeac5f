//! Proptest strategies producing random inputs and parameters, plus helpers
//! to render them in the engine's CSV / CLI forms.

use proptest::prelude::*;

use tidemark::window::WindowAssigner;

use super::reference::{format_fixed, Agg, Event, Params, WindowKind, SCALE};

/// Key alphabet. Includes a key with a comma and a quote, and one with an
/// inner space, to exercise CSV quoting.
pub const KEYS: [&str; 6] = ["a", "b", "k3", "x,y", "k 5", "q\"t"];

/// A random value mantissa: either an integer in -1000..1000, or a decimal
/// with 1..=3 fractional digits in the same range.
pub fn value() -> impl Strategy<Value = i128> {
    prop_oneof![
        (-1000i128..1000).prop_map(|v| v * SCALE),
        (1u32..=3).prop_flat_map(|d| {
            let unit = 10i128.pow(d); // 10^d units per 1
            (-1000 * unit..1000 * unit).prop_map(move |n| n * 10i128.pow(9 - d))
        }),
    ]
}

/// Raw ingredients of one event before the time walk is applied.
#[derive(Debug, Clone)]
struct RawEvent {
    step: u64,
    jitter: Option<u64>,
    key_idx: usize,
    value: i128,
}

/// `0..max_len` events (empty when `max_len <= 1`). Keys come from a random
/// non-empty subset of [`KEYS`]. Times are a mostly increasing walk from a
/// base in `0..50` with steps in `0..20`; about 1/4 of events are jittered
/// backwards by `1..=60` (saturating at 0). The walk itself is not affected
/// by jitter, so it keeps increasing.
pub fn events(max_len: usize) -> impl Strategy<Value = Vec<Event>> {
    let max_len = max_len.max(1);
    let keys = proptest::sample::subsequence(KEYS.to_vec(), 1..=KEYS.len());
    (keys, 0u64..50).prop_flat_map(move |(keys, base)| {
        let nkeys = keys.len();
        let raw = (
            0u64..20,
            prop_oneof![3 => Just(None), 1 => (1u64..=60).prop_map(Some)],
            0..nkeys,
            value(),
        )
            .prop_map(|(step, jitter, key_idx, value)| RawEvent {
                step,
                jitter,
                key_idx,
                value,
            });
        proptest::collection::vec(raw, 0..max_len).prop_map(move |raws| {
            let mut t = base;
            raws.into_iter()
                .map(|r| {
                    t += r.step;
                    let ts = match r.jitter {
                        Some(j) => t.saturating_sub(j),
                        None => t,
                    };
                    Event {
                        ts,
                        key: keys[r.key_idx].to_string(),
                        value: r.value,
                    }
                })
                .collect::<Vec<_>>()
        })
    })
}

/// Tumbling window, size 1..40.
pub fn tumbling() -> impl Strategy<Value = WindowKind> {
    (1u64..40).prop_map(|size| WindowKind::Tumbling { size })
}

/// Sliding window, size 2..40 and any slide in 1..=size (not only divisors).
pub fn sliding() -> impl Strategy<Value = WindowKind> {
    (2u64..40)
        .prop_flat_map(|size| (Just(size), 1..=size))
        .prop_map(|(size, slide)| WindowKind::Sliding { size, slide })
}

/// Session window, gap 1..30.
pub fn session() -> impl Strategy<Value = WindowKind> {
    (1u64..30).prop_map(|gap| WindowKind::Session { gap })
}

/// Any window kind, each shape equally likely.
pub fn window_kind() -> impl Strategy<Value = WindowKind> {
    prop_oneof![tumbling(), sliding(), session()]
}

/// An engine assigner of any kind: tumbling of size in `1..size`, sliding of slide in `1..4`
/// and size 1 to 3 slides, session of gap in `1..gap`.
pub fn assigners(size: u64, gap: u64) -> impl Strategy<Value = WindowAssigner> {
    prop_oneof![
        (1u64..size).prop_map(WindowAssigner::Tumbling),
        (1u64..4, 1u64..4).prop_map(|(slide, k)| WindowAssigner::Sliding(slide * k, slide)),
        (1u64..gap).prop_map(WindowAssigner::Session),
    ]
}

/// Only tumbling or sliding windows (for conservation checks).
pub fn fixed_window_kind() -> impl Strategy<Value = WindowKind> {
    prop_oneof![tumbling(), sliding()]
}

/// Every aggregate.
pub fn agg() -> impl Strategy<Value = Agg> {
    prop_oneof![
        Just(Agg::Count),
        Just(Agg::Sum),
        Just(Agg::Min),
        Just(Agg::Max),
        Just(Agg::Mean),
    ]
}

/// `(max_delay, lateness)`: each in 0..50, with both 0 about 1/5 of the time.
pub fn delays() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![1 => Just((0u64, 0u64)), 4 => (0u64..50, 0u64..50)]
}

/// Random query parameters over every window kind and aggregate.
pub fn params() -> impl Strategy<Value = Params> {
    (window_kind(), agg(), delays()).prop_map(|(kind, agg, (max_delay, lateness))| Params {
        kind,
        agg,
        max_delay,
        lateness,
    })
}

/// Render events as CSV with header `ts,key,value`; values via
/// [`format_fixed`], keys quoted as needed by the csv crate; `\n` line ends.
pub fn to_csv(events: &[Event]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::<u8>::new());
    w.write_record(["ts", "key", "value"])
        .expect("write header");
    for e in events {
        w.write_record([e.ts.to_string(), e.key.clone(), format_fixed(e.value)])
            .expect("write record");
    }
    String::from_utf8(w.into_inner().expect("flush csv")).expect("utf8 csv")
}

/// CLI form of the window spec: `tumbling:SIZE`, `sliding:SIZE/SLIDE`, `session:GAP`.
pub fn window_spec(p: &Params) -> String {
    match p.kind {
        WindowKind::Tumbling { size } => format!("tumbling:{size}"),
        WindowKind::Sliding { size, slide } => format!("sliding:{size}/{slide}"),
        WindowKind::Session { gap } => format!("session:{gap}"),
    }
}

/// CLI name of an aggregate.
pub fn agg_name(a: &Agg) -> &'static str {
    match a {
        Agg::Count => "count",
        Agg::Sum => "sum",
        Agg::Min => "min",
        Agg::Max => "max",
        Agg::Mean => "mean",
    }
}

/// The largest event time (`tidemark::time::MAX_TIME`, `2^62 - 1`).
pub const MAX_TIME: u64 = (1 << 62) - 1;

/// As [`events`], moved to the end of the time domain: the latest possible times are at most
/// [`MAX_TIME`] and within about a thousand of it.
pub fn events_near_the_end(max_len: usize) -> impl Strategy<Value = Vec<Event>> {
    events(max_len).prop_map(|events| {
        events
            .into_iter()
            .map(|e| Event {
                ts: e.ts + (MAX_TIME - 1_000),
                ..e
            })
            .collect()
    })
}
