//! The source's pacing against the brute-force reference: sending on-time records at the
//! watermark (`SendAt::Watermark`, what `tidemark window --emit final` does) and holding the
//! reader back behind a probe change nothing in the window operators' output.
//!
//! Protects: the changelog *with its timestamps* and the late rows are identical to those of
//! `SendAt::Stamp` (each record at its own stamp), and consolidate to the reference, on 1, 2
//! and 4 workers, every partitioner, every window kind, small batches and tight bounds.

mod common;

use proptest::prelude::*;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source_paced, Pacing, SendAt};
use tidemark::window::{on, Count, Sum};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

use common::dataflow::{assigner, keyed_records, partitioners, run_fed, Collect, Rec, OPTIONS};
use common::gen;
use common::reference::{reference, Agg, Event, Params, WindowKind, SCALE};

/// A changelog row with its timely time: (time, start, end, key, value mantissa, diff).
type Row = (u64, i64, u64, String, i128, i64);

#[derive(Debug, PartialEq, Eq)]
struct Run {
    changelog: Vec<Row>,
    /// (timely time, index of the input record, window start, window end).
    late: Vec<(u64, usize, i64, u64)>,
}

/// Runs a keyed count (or sum) with the given pacing; `ahead` bounds the reader by a probe on
/// the late output (whose frontier is the window operator's input frontier).
fn run(
    events: &[Event],
    p: &Params,
    workers: usize,
    partitioner: &Partitioner<String>,
    send_at: SendAt,
    ahead: Option<usize>,
) -> Run {
    let input = keyed_records(events);
    let (changelog, late) = (Collect::new(), Collect::new());
    let (out, late_out) = (changelog.clone(), late.clone());
    let (assigner, lateness, agg) = (assigner(&p.kind), p.lateness, p.agg);
    let partitioner = partitioner.clone();
    run_fed(workers, input, p.max_delay, move |scope, feed| {
        let (out, late_out, partitioner) = (out.clone(), late_out.clone(), partitioner.clone());
        let error = std::rc::Rc::new(std::cell::RefCell::new(None));
        let consumed = ProbeHandle::new();
        let pacing = Pacing {
            send_at,
            ahead: ahead.map(|batches| (consumed.clone(), batches)),
        };
        let keyed = feed_source_paced(scope, feed, OPTIONS, pacing, error)
            .key_by(partitioner)
            .window(assigner)
            .allowed_lateness(lateness);
        let (results, late) = match agg {
            Agg::Count => {
                let w = keyed.aggregate(|r: &Rec| r.0, Count);
                let results = w
                    .results
                    .map(|r| (r.window, r.key, r.value as i128 * SCALE, r.diff));
                (results, w.late)
            }
            _ => {
                let w = keyed.aggregate(|r: &Rec| r.0, on(Sum, |r: &Rec| r.1));
                let results = w.results.map(|r| {
                    let value = r.value.to_fixed().expect("small sums").nanos();
                    (r.window, r.key, value, r.diff)
                });
                (results, w.late)
            }
        };
        results.inspect_core(move |event| {
            if let Ok((stamp, rows)) = event {
                let time = *stamp.expect_singleton();
                for (window, key, value, diff) in rows {
                    let row = (time, window.start, window.end, key.clone(), *value, *diff);
                    out.push(row);
                }
            }
        });
        late.probe_with(&consumed).inspect_core(move |event| {
            if let Ok((stamp, rows)) = event {
                let time = *stamp.expect_singleton();
                for l in rows {
                    let row = (time, l.record.2, l.window.start, l.window.end);
                    late_out.push(row);
                }
            }
        });
    });
    Run {
        changelog: changelog.sorted(),
        late: late.sorted(),
    }
}

use timely::dataflow::operators::vec::Map;

/// The consolidated changelog: `(start, end, key) -> value`.
fn consolidate(changelog: &[Row]) -> std::collections::BTreeMap<(i64, u64, String), i128> {
    common::consolidate(
        changelog
            .iter()
            .map(|(_, start, end, key, value, diff)| ((*start, *end, key.clone()), *value, *diff)),
    )
}

fn check(events: &[Event], p: &Params) {
    // Count and sum are the two shapes of accumulator; the others fold like sum.
    let p = Params {
        agg: if p.agg == Agg::Count {
            Agg::Count
        } else {
            Agg::Sum
        },
        ..*p
    };
    let expected = reference(events, &p);
    let exact = run(events, &p, 1, &Partitioner::Hash, SendAt::Stamp, None);
    assert_eq!(consolidate(&exact.changelog), expected.windows, "{p:?}");
    let late: Vec<_> = exact.late.iter().map(|(_, i, s, e)| (*i, *s, *e)).collect();
    assert_eq!(late, expected.late, "late rows, {p:?}");
    for workers in [1, 2, 4] {
        for partitioner in partitioners() {
            for ahead in [None, Some(1), Some(4)] {
                let paced = run(events, &p, workers, &partitioner, SendAt::Watermark, ahead);
                assert_eq!(
                    paced, exact,
                    "{workers} workers, {partitioner:?}, ahead {ahead:?}, {p:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn watermark_pacing_changes_no_output_row_or_time(events in gen::events(40), p in gen::params()) {
        check(&events, &p);
    }
}

#[test]
fn in_order_runs_with_shared_times_and_late_records() {
    // Rising event times with repeats, then a stretch far behind the watermark, then on again.
    let mut events: Vec<Event> = (0..60u64)
        .map(|i| Event {
            ts: i / 3 * 2,
            key: ["a", "b", "k3", "z"][i as usize % 4].into(),
            value: (i as i128 % 7) * SCALE,
        })
        .collect();
    events.extend((0..20u64).map(|i| Event {
        ts: i,
        key: "b".into(),
        value: SCALE,
    }));
    events.extend((0..20u64).map(|i| Event {
        ts: 40 + i,
        key: "a".into(),
        value: SCALE,
    }));
    for kind in [
        WindowKind::Tumbling { size: 10 },
        WindowKind::Sliding { size: 12, slide: 4 },
        WindowKind::Session { gap: 3 },
    ] {
        for (max_delay, lateness) in [(0, 0), (5, 0), (3, 8)] {
            let p = Params {
                kind,
                agg: Agg::Sum,
                max_delay,
                lateness,
            };
            check(&events, &p);
        }
    }
}

#[test]
fn a_watermark_that_does_not_move_does_not_stall_the_bound() {
    // One event time throughout, and a delay longer than the input spans: the watermark stays
    // put for many batches, which a bound counting batches per time must not wait on.
    let same: Vec<Event> = (0..50u64)
        .map(|i| Event {
            ts: 7,
            key: ["a", "b"][i as usize % 2].into(),
            value: SCALE,
        })
        .collect();
    let rising: Vec<Event> = (0..50u64)
        .map(|i| Event {
            ts: i,
            key: "a".into(),
            value: SCALE,
        })
        .collect();
    for (events, max_delay) in [(&same, 0), (&rising, 1000)] {
        let p = Params {
            kind: WindowKind::Tumbling { size: 10 },
            agg: Agg::Count,
            max_delay,
            lateness: 0,
        };
        check(events, &p);
    }
}
