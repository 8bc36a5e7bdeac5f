//! The source's pacing against the brute-force reference: sending on-time records at the
//! watermark (`SendAt::Watermark`, what `tidemark window --emit final` does) and holding the
//! reader back behind a probe change nothing in the window operators' output.
//!
//! Protects: the changelog *with its timestamps* and the late rows are identical to those of
//! `SendAt::Stamp` (each record at its own stamp), and consolidate to the reference, on 1, 2
//! and 4 workers, every partitioner, every window kind, small batches and tight bounds.
//!
//! And parallel reading of a file (`source::blocks`) against the single reader (`CsvFeed`):
//! random files with late lines, quoted fields, quoted newlines, `\r\n`, empty lines and bad
//! lines at random places, cut into blocks of random (often tiny) sizes, give every record
//! the same stamp, the same error (file, line, field) or the same skipped-line warnings and
//! counts, and the same window changelog with its times and late rows, on 1, 2 and 4 workers
//! and every partitioner. (Two processes, through the CLI: tests/ingest_cli.rs.)

mod common;

use proptest::prelude::*;
use tidemark::keyed::KeyBy;
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source_paced, Pacing, SendAt};
use tidemark::stash::Cut;
use tidemark::window::{on, Count, Sum};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use common::dataflow::{
    assigner, keyed_records, layouts, run_fed, same_on_every_layout, Collect, Rec, OPTIONS,
};
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
        let partitioner = partitioner.clone();
        let error = std::rc::Rc::new(std::cell::RefCell::new(None));
        let consumed = ProbeHandle::new();
        let pacing = Pacing {
            send_at,
            ahead: ahead.map(|batches| (consumed.clone(), batches)),
        };
        let keyed = feed_source_paced::<_, (String, (u64, tidemark::Fixed, usize))>(
            scope,
            feed,
            OPTIONS,
            pacing,
            error,
            Cut::none(),
        )
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
        out.timed(results, |time, (window, key, value, diff)| {
            (time, window.start, window.end, key.clone(), *value, *diff)
        });
        late_out.timed(late.probe_with(&consumed), |time, l| {
            (time, l.record.2, l.window.start, l.window.end)
        });
    });
    Run {
        changelog: changelog.sorted(),
        late: late.sorted(),
    }
}

use timely::dataflow::operators::vec::Map;

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
    // Without their times, the rows are the reference's.
    let changelog = exact.changelog.iter();
    let late: Vec<_> = exact.late.iter().map(|(_, i, s, e)| (*i, *s, *e)).collect();
    expected.assert_run(
        changelog.map(|(_, s, e, key, value, diff)| (*s, *e, key.clone(), *value, *diff)),
        &late,
        &format!("{p:?}"),
    );
    for ahead in [None, Some(1), Some(4)] {
        let what = format!("paced, ahead {ahead:?}, {p:?}");
        same_on_every_layout(&exact, &what, |workers, partitioner| {
            run(events, &p, workers, partitioner, SendAt::Watermark, ahead)
        });
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

// ---------------------------------------------------------------------------------------------
// Parallel reading of files against the single reader.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidemark::source::blocks::{block_source, BlockPlan, BLOCK_BYTES};
use tidemark::source::csv::{BadLines, Columns, CsvFeed, CsvItem, CsvKey, CsvRecord};
use tidemark::source::{Payload, SourceOptions, Stamped};

/// One line of a generated file.
#[derive(Clone, Debug)]
enum Line {
    /// A row: event time, key number, key spelling, value.
    Row(u64, u8, u8, i64),
    /// A row that is bad in one of several ways.
    Bad(u8),
    /// An empty line.
    Empty,
}

/// A generated file: its lines, each line's terminator (`\n`, `\r\n`, `\r` for 0, 1, 2), whether
/// the last line has one, and whether it has no quote character at all (cut by the plain scan).
#[derive(Clone, Debug)]
struct File {
    lines: Vec<(Line, u8)>,
    trailing: bool,
    plain: bool,
}

fn lines(max: usize) -> impl Strategy<Value = File> {
    let row = (
        0u64..4,
        prop::option::weighted(0.2, 1u64..40),
        0u8..5,
        0u8..6,
        -50i64..50,
    );
    let line = prop_oneof![
        12 => row.prop_map(|(step, back, key, spelling, value)| (step, back, Line::Row(0, key, spelling, value))),
        1 => (0u8..7).prop_map(|kind| (0, None, Line::Bad(kind))),
        1 => Just((0, None, Line::Empty)),
    ];
    (
        prop::collection::vec((line, 0u8..3), 0..max),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(raw, trailing, plain)| {
            // Event times walk up; some rows jump back (late when beyond the delay).
            let mut walk = 0;
            let lines = raw
                .into_iter()
                .map(|((step, back, line), terminator)| {
                    walk += step;
                    let line = match line {
                        Line::Row(_, key, spelling, value) => {
                            Line::Row(walk.saturating_sub(back.unwrap_or(0)), key, spelling, value)
                        }
                        other => other,
                    };
                    (line, terminator)
                })
                .collect();
            File {
                lines,
                trailing,
                plain,
            }
        })
}

/// The text of `file`, and the byte offsets at which its bad lines start.
fn render(file: &File) -> (String, Vec<usize>) {
    let mut text = String::from("ts,key,value\n");
    let mut bad = Vec::new();
    for (i, (line, terminator)) in file.lines.iter().enumerate() {
        if matches!(line, Line::Bad(_)) {
            bad.push(text.len());
        }
        match line {
            Line::Row(ts, key, spelling, _) if file.plain || *spelling == 0 => {
                text.push_str(&format!("{ts},k{key}"));
            }
            Line::Row(ts, key, spelling, _) => {
                let key = match spelling {
                    1 => format!("\"k{key}\rr\""),
                    2 => format!("\"k{key},c\""),
                    3 => format!("\"k{key}\nn\""),
                    4 => format!("\"k{key}\r\n\"\"q\"\"\""),
                    _ => format!("\"k{key}\""),
                };
                text.push_str(&format!("{ts},{key}"));
            }
            Line::Bad(0) => text.push_str("x1,k0,1"),
            Line::Bad(1) => text.push_str("5,k0"),
            Line::Bad(2) => text.push_str("5,k0,1.2.3"),
            Line::Bad(3) if file.plain => text.push_str("-4,k0,1"),
            Line::Bad(3) => text.push_str("-4,\"k\n0\",1"),
            // A byte order mark is part of a line after the header, and a quote after it opens
            // no quoted field: a parser that starts at the line must not drop it.
            Line::Bad(4) => text.push_str("\u{feff}5,k0,1"),
            Line::Bad(5) if file.plain => text.push_str("\u{feff}5,k0,x"),
            Line::Bad(5) => text.push_str("\u{feff}\"5\",k0,1"),
            Line::Bad(_) => text.push_str("5,k0,1,extra"),
            Line::Empty => {}
        }
        if let Line::Row(.., value) = line {
            text.push_str(&format!(",{value}"));
        }
        if i + 1 < file.lines.len() || file.trailing {
            text.push_str(["\n", "\r\n", "\r"][usize::from(*terminator)]);
        }
    }
    (text, bad)
}

/// The brute-force line number of the byte at `offset`: one more than the line ends before it,
/// `\n`, `\r\n` and a bare `\r` each ending one line.
fn line_at(text: &str, offset: usize) -> u64 {
    let bytes = text.as_bytes();
    let mut line = 1;
    for i in 0..offset {
        let ends = bytes[i] == b'\r' || (bytes[i] == b'\n' && (i == 0 || bytes[i - 1] != b'\r'));
        line += u64::from(ends);
    }
    line
}

/// The line that an error message `path:LINE: ...` names.
fn error_line(error: &str, path: &Path) -> u64 {
    let prefix = format!("{}:", path.display());
    let rest = error
        .strip_prefix(&prefix)
        .expect("the error names the file");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("the error names a line")
}

/// Who reads: the single reader, or every worker with blocks of this many bytes.
#[derive(Clone, Copy, Debug)]
enum Readers {
    One,
    All(u64),
}

/// One way of reading a test file: the file, by whom, on how many workers, the bad-line
/// policy, the watermark's delay (event-time units) and whether rows carry a diff column.
#[derive(Clone, Copy, Debug)]
struct Reading<'a> {
    path: &'a Path,
    readers: Readers,
    workers: usize,
    bad: BadLines,
    delay: u64,
    retractions: bool,
}

impl<'a> Reading<'a> {
    /// The single reader on one worker, skipping bad lines.
    fn single(path: &'a Path, delay: u64, retractions: bool) -> Self {
        Reading {
            path,
            readers: Readers::One,
            workers: 1,
            bad: BadLines::Skip,
            delay,
            retractions,
        }
    }
}

/// What reading a file gave: records with their stamps and positions (sorted), the error, and
/// the counts.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    stamped: Vec<(u64, CsvItem, u64)>,
    error: Option<String>,
    records: u64,
    bad_lines: u64,
}

fn columns(retractions: bool) -> Columns {
    Columns {
        time: "ts".into(),
        key: "key".into(),
        value: Some("value".into()),
        diff: "diff".into(),
        retractions,
    }
}

/// The source of a run: the single reader's feed (taken by worker 0), or the plan.
enum Source {
    One(Box<Mutex<Option<CsvFeed>>>),
    All(Arc<BlockPlan>),
}

impl Source {
    /// The records of the source on worker `index` of `scope`, in batches of `batch`, paced by
    /// `pacing`: the single reader's (worker 0 takes the feed, the others read nothing) or this
    /// worker's share of the plan's blocks; bare or with their stamps (`P`).
    fn stream<'s, P: Payload<CsvItem>>(
        &self,
        scope: timely::dataflow::Scope<'s, u64>,
        index: usize,
        batch: usize,
        pacing: Pacing,
        failed: Rc<RefCell<Option<tidemark::source::csv::ReadError>>>,
    ) -> timely::dataflow::StreamVec<'s, u64, P> {
        let options = SourceOptions {
            batch,
            idle_timeout: None,
        };
        match self {
            Source::One(feed) => {
                let feed = if index == 0 {
                    feed.lock().unwrap().take()
                } else {
                    None
                };
                feed_source_paced(scope, feed, options, pacing, failed, Cut::none())
            }
            Source::All(plan) => {
                block_source(scope, plan, options, pacing, failed, Cut::none(), None)
            }
        }
    }
}

/// Opens the file for its readers; returns the source and its counters.
fn open(reading: Reading) -> (Source, Arc<tidemark::source::csv::FeedStats>) {
    let Reading {
        path,
        bad,
        delay,
        retractions,
        ..
    } = reading;
    match reading.readers {
        Readers::One => {
            let (feed, _) = CsvFeed::open(path, columns(retractions), bad, delay).unwrap();
            let stats = feed.stats();
            (Source::One(Box::new(Mutex::new(Some(feed)))), stats)
        }
        Readers::All(block) => {
            let (plan, _) = BlockPlan::open(path, columns(retractions), bad, delay, block).unwrap();
            let stats = plan.stats();
            (Source::All(Arc::new(plan)), stats)
        }
    }
}

/// Runs `build` on the reading's workers over its source until the input ends or fails (then
/// every worker stops); returns the error and the counts of records and bad lines.
fn drive<B>(reading: Reading, build: B) -> (Option<String>, u64, u64)
where
    B: Fn(
            timely::dataflow::Scope<'_, u64>,
            &Source,
            Rc<RefCell<Option<tidemark::source::csv::ReadError>>>,
            usize,
        ) + Send
        + Sync
        + 'static,
{
    let (source, stats) = open(reading);
    let error = Arc::new(Mutex::new(None));
    let stop = Arc::new(AtomicBool::new(false));
    let (found, stop_all) = (Arc::clone(&error), Arc::clone(&stop));
    timely::execute(timely::Config::process(reading.workers), move |worker| {
        let failed = Rc::new(RefCell::new(None));
        let index = worker.index();
        worker.dataflow::<u64, _, _>(|scope| build(scope, &source, Rc::clone(&failed), index));
        while !stop_all.load(Ordering::SeqCst)
            && worker.step_or_park(Some(Duration::from_millis(1)))
        {
            if let Some(e) = failed.borrow_mut().take() {
                *found.lock().unwrap() = Some(e.to_string());
                stop_all.store(true, Ordering::SeqCst);
            }
        }
        // A failed input holds its capability (no window closes on input never read), so
        // the dataflow cannot complete: drop it, as the CLI ends the process.
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    })
    .expect("timely runs");
    let error = error.lock().unwrap().take();
    (
        error,
        stats.records.load(Ordering::Relaxed),
        stats.bad_lines.load(Ordering::Relaxed),
    )
}

/// The records of the file at their stamps (`SendAt::Stamp`).
fn read(reading: Reading) -> Read {
    let stamped = Collect::new();
    let out = stamped.clone();
    let (error, records, bad_lines) = drive(reading, move |scope, source, failed, index| {
        let stream = source.stream(scope, index, 3, Pacing::default(), failed);
        out.timed(stream, |time, item: &CsvItem| {
            (time, item.clone(), item.1.pos)
        });
    });
    Read {
        stamped: stamped.sorted(),
        error,
        records,
        bad_lines,
    }
}

/// A run's error, changelog `(time, start, end, key, count, diff)` and late rows
/// `(time, record, window start, window end)`.
type Windows = (
    Option<String>,
    Vec<(u64, i64, u64, String, u64, i64)>,
    Vec<(u64, CsvRecord, i64, u64)>,
);

/// `tidemark window`'s pacing: on-time records at the watermark, a batch ahead of `consumed`.
fn paced_by(consumed: &ProbeHandle<u64>) -> Pacing {
    Pacing {
        send_at: SendAt::Watermark,
        ahead: Some((consumed.clone(), 1)),
    }
}

/// The final windows (count) of the file as `tidemark window --emit final` computes them, bad
/// lines skipped: on-time records at the watermark, the reader paced; the changelog and late
/// rows with their times.
fn windows(
    reading: Reading,
    partitioner: &Partitioner<String>,
    kind: &WindowKind,
    lateness: u64,
) -> Windows {
    let (changelog, late) = (Collect::new(), Collect::new());
    let (out, late_out, partitioner, assigner) = (
        changelog.clone(),
        late.clone(),
        partitioner.clone().map_keys(CsvKey::from),
        assigner(kind),
    );
    let skipping = Reading {
        bad: BadLines::Skip,
        retractions: false,
        ..reading
    };
    let (error, _, _) = drive(skipping, move |scope, source, failed, index| {
        let consumed = ProbeHandle::new();
        let pacing = paced_by(&consumed);
        let stream = source.stream(scope, index, 2, pacing, failed);
        let w = stream
            .map(|(key, record, _)| (key, record))
            .key_by(partitioner.clone())
            .window(assigner)
            .allowed_lateness(lateness)
            .ordered_by(|r: &CsvRecord| r.pos)
            .aggregate(|r: &CsvRecord| r.ts, Count);
        out.timed(w.results, |time, r| {
            let (start, end) = (r.window.start, r.window.end);
            (time, start, end, r.key.to_string(), r.value, r.diff)
        });
        late_out.timed(w.late.probe_with(&consumed), |time, l| {
            (time, l.record.clone(), l.window.start, l.window.end)
        });
    });
    (error, changelog.sorted(), late.sorted())
}

/// A view's updates `(data, time, diff)`, consolidated: one per data and time, none of diff 0.
fn consolidated<D: Ord>(mut updates: Vec<(D, u64, isize)>) -> Vec<(D, u64, isize)> {
    updates.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out: Vec<(D, u64, isize)> = Vec::new();
    for (data, time, diff) in updates {
        match out.last_mut() {
            Some(last) if last.0 == data && last.1 == time => last.2 += diff,
            _ => out.push((data, time, diff)),
        }
    }
    out.retain(|u| u.2 != 0);
    out
}

/// A run's error, the view's results `((start, end, key, count), time, diff)` and late rows
/// `((record, window start, window end), time, diff)`, consolidated.
type Views = (
    Option<String>,
    Vec<((i64, u64, String, u64), u64, isize)>,
    Vec<((CsvRecord, i64, u64), u64, isize)>,
);

/// The incremental view (count) of the file as `tidemark window --emit updates` computes it,
/// bad lines skipped: every record's update at its stamp, the reader paced, records that share
/// a time replayed in input order by their positions.
fn views(
    reading: Reading,
    partitioner: &Partitioner<String>,
    kind: &WindowKind,
    lateness: u64,
) -> Views {
    use differential_dataflow::AsCollection;
    use tidemark::incremental::WindowedCollection;
    let (results, late) = (Collect::new(), Collect::new());
    let (out, late_out, partitioner, assigner) = (
        results.clone(),
        late.clone(),
        partitioner.clone().map_keys(CsvKey::from),
        assigner(kind),
    );
    let skipping = Reading {
        bad: BadLines::Skip,
        ..reading
    };
    let (error, _, _) = drive(skipping, move |scope, source, failed, index| {
        let consumed = ProbeHandle::new();
        let pacing = paced_by(&consumed);
        let stream = source.stream::<Stamped<CsvItem>>(scope, index, 2, pacing, failed);
        let view = stream
            .map(|stamped| {
                let (key, record, diff) = stamped.record;
                ((key, record), stamped.time, diff)
            })
            .as_collection()
            .window_view_ordered(
                partitioner.clone(),
                assigner,
                lateness,
                (|r: &CsvRecord| r.ts, |r: &CsvRecord| r.pos),
                Count,
            );
        out.timed(view.results.inner, |_, ((w, key, count), t, r)| {
            ((w.start, w.end, key.to_string(), *count), *t, *r)
        });
        late_out.timed(view.late.inner.probe_with(&consumed), |_, (l, t, r)| {
            ((l.record.clone(), l.window.start, l.window.end), *t, *r)
        });
    });
    (
        error,
        consolidated(results.sorted()),
        consolidated(late.sorted()),
    )
}

/// A scratch file holding `text`, removed when dropped.
fn scratch_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
    file
}

/// Checks that both readers name the brute-force line of the first bad line (at byte offset
/// `bad[0]` of `text`) in their error, whatever the block size.
fn check_error_lines(text: &str, bad: &[usize]) {
    let file = scratch_file(text);
    let expected = bad.first().map(|offset| line_at(text, *offset));
    for readers in [
        Readers::One,
        Readers::All(1),
        Readers::All(7),
        Readers::All(1 << 20),
    ] {
        let workers = if matches!(readers, Readers::One) {
            1
        } else {
            2
        };
        let run = read(Reading {
            path: file.path(),
            readers,
            workers,
            bad: BadLines::Fail,
            delay: 0,
            retractions: false,
        });
        let line = run.error.as_deref().map(|e| error_line(e, file.path()));
        assert_eq!(line, expected, "{readers:?}: {:?}\n{text:?}", run.error);
    }
}

/// Reads `single`'s file (whose text is `text`) with the single reader and with block readers of
/// each size in `blocks` on each count of `workers`, failing on bad lines and skipping them:
/// every reading gives the single reader's rows, stamps and counts, or, where that fails, its
/// error (the first in the file).
fn check_blocks(single: Reading, blocks: &[u64], workers: &[usize], text: &str) {
    for bad in [BadLines::Fail, BadLines::Skip] {
        let one = read(Reading { bad, ..single });
        for &block in blocks {
            for &workers in workers {
                let all = read(Reading {
                    readers: Readers::All(block),
                    workers,
                    bad,
                    ..single
                });
                let context = format!("{bad:?}, block {block}, {workers} workers\n{text:?}");
                if one.error.is_some() {
                    // Records sent before the error differ (other workers read ahead).
                    assert_eq!(all.error, one.error, "{context}");
                } else {
                    assert_eq!(all, one, "{context}");
                }
            }
        }
    }
}

fn check_readers(text: &str, delay: u64, kind: &WindowKind, lateness: u64, retractions: bool) {
    let file = scratch_file(text);
    let single = Reading::single(file.path(), delay, retractions);
    check_blocks(single, &[1, 9, 40, 1 << 20], &[1, 2, 4], text);
    let one = windows(single, &Partitioner::Hash, kind, lateness);
    let one_view = views(single, &Partitioner::Hash, kind, lateness);
    assert!(one.0.is_none() && one_view.0.is_none());
    for (workers, partitioner) in layouts() {
        for block in [1, 30] {
            let readers = Readers::All(block);
            let reading = Reading {
                readers,
                workers,
                ..single
            };
            let context = format!("block {block}, {workers} workers, {partitioner:?}\n{text:?}");
            let all = windows(reading, &partitioner, kind, lateness);
            assert_eq!(all, one, "{context}");
            let all = views(reading, &partitioner, kind, lateness);
            assert_eq!(all, one_view, "--emit updates, {context}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn parallel_readers_stamp_fail_and_count_as_one_reader(
        file in lines(40),
        delay in 0u64..12,
        kind in gen::window_kind(),
        lateness in 0u64..10,
        retractions in any::<bool>(),
    ) {
        check_readers(&render(&file).0, delay, &kind, lateness, retractions);
    }

    #[test]
    fn errors_name_the_physical_line_a_bad_record_starts_on(file in lines(30)) {
        let (text, bad) = render(&file);
        check_error_lines(&text, &bad);
    }
}

#[test]
fn error_lines_after_empty_lines_with_crlf_bare_cr_and_quoted_newlines() {
    // Each text's one bad line starts at `x`.
    for text in [
        "ts,key,value\n\n\n1,a,1\n\nx,a,1\n",
        "ts,key,value\r\n1,a,1\r\n\r\n2,a,1\r\nx,a,1\r\n",
        "ts,key,value\r1,a,1\r2,a,1\rx,a,1\r",
        "ts,key,value\n1,\"a\nb\r\nc\rd\",1\nx,a,1",
        "\u{feff}ts,key,value\r\n\r\n\u{feff}x,a,1\r\n",
        "\n\nts,key,value\n1,a,1\nx,a,1\n",
    ] {
        check_error_lines(text, &[text.find('x').expect("a bad line")]);
    }
}

#[test]
fn parallel_readers_on_files_without_quotes_and_with_many_blocks() {
    // The plain scan (no quote in the file): many blocks, late rows, bad rows, `\r\n`, empty
    // lines, a last line without terminator.
    let mut text = String::from("ts,key,value\r\n");
    let mut walk = 0u64;
    for i in 0..400u64 {
        walk += i % 3;
        let ts = if i % 11 == 0 {
            walk.saturating_sub(25)
        } else {
            walk
        };
        match i % 53 {
            7 => text.push_str("oops,k1,1\n"),
            9 => text.push('\n'),
            _ => text.push_str(&format!(
                "{ts},k{},{}{}",
                i % 7,
                i % 5,
                if i % 2 == 0 { "\n" } else { "\r\n" }
            )),
        }
    }
    text.push_str("999,k2,3");
    check_readers(&text, 5, &WindowKind::Tumbling { size: 10 }, 4, false);
}

#[test]
fn a_quote_in_an_unquoted_field_and_quoted_newlines_are_cut_as_the_parser_reads_them() {
    // A quote inside an unquoted field is a plain character to the CSV parser, so a newline
    // after it ends the record; inside a quoted field it does not.
    let text = "ts,key,value\n1,a\"b,1\n2,\"c\nd\",2\n3,\"e\"\"\n,f\",3\n4,g\"\n5,h,5\n";
    check_readers(text, 0, &WindowKind::Tumbling { size: 2 }, 0, false);
}

#[test]
fn a_file_with_a_header_only_reads_nothing_alike() {
    for text in ["ts,key,value\n", "ts,key,value", "ts,key,value\n\n\r\n"] {
        check_readers(text, 0, &WindowKind::Tumbling { size: 2 }, 0, false);
    }
}

/// Files whose record ends only the parser can find, read with every block size from 1 byte to
/// past the longest record: quoted fields with `\n`, `\r\n`, bare `\r` and empty lines inside,
/// longer than a block, and one that holds what looks like rows, so that workers guess their
/// block's start inside a quoted field (a guess that reads rows that are no rows), learn the
/// true start from the block before and parse again, in chains of such blocks; records longer
/// than several blocks (blocks left empty); a quote inside an unquoted field before a newline; a
/// bad row after multi-line fields; a last quoted record without a terminator. On 2 and 3
/// workers every reading is the single reader's: rows, stamps, counts, the first error and its
/// line.
#[test]
fn block_bounds_at_every_byte_and_guesses_inside_quoted_fields_read_as_one_reader() {
    let long = "x\n".repeat(12);
    let rows = "7,k,7\n8,k,8\r\n".repeat(3);
    let texts = [
        format!(
            "ts,key,value\n1,\"{long}\",1\n2,\"a\r\n\r\nb\",2\r\n3,c\"d\n5,\"\n\n\n\",5\n\
             6,\"{long}\"\"\n\",6\n9,\"{long}\""
        ),
        format!(
            "ts,key,value\r\n1,\"{rows}\",1\r\n2,k,2\r\n3,\"{long}\r\",3\r4,\"{rows}\",x\r\n\
             5,k,5\r\n6,\"\r\n{rows}\",6\r\n"
        ),
    ];
    for text in &texts {
        let file = scratch_file(text);
        let single = Reading::single(file.path(), 2, false);
        let blocks: Vec<u64> = (1..=text.len() as u64 / 2)
            .chain([text.len() as u64])
            .collect();
        check_blocks(single, &blocks, &[2, 3], text);
    }
}

/// A file with quotes and a record that ends exactly 1 MiB after the data's start (16-byte
/// rows). The scan that cut such files before the run fed the CSV parser 1 MiB at a time, and
/// after a record that ended at a chunk's end it handed the parser the chunk's empty rest, which
/// the parser takes for the end of the input: 2 workers read 65 536 of the 70 000 rows, and
/// said nothing. Block sizes that end blocks on record ends, too.
#[test]
fn a_quoted_file_with_a_record_ending_at_a_mebibyte_is_read_whole() {
    let mut text = String::from("ts,key,value\n");
    for i in 0..70_000 {
        text.push_str(&format!("{i:06},\"k{:03}\",{}\n", i % 1000, i % 10));
    }
    let file = scratch_file(&text);
    let single = Reading::single(file.path(), 0, false);
    check_blocks(single, &[BLOCK_BYTES, 1 << 16], &[2], &text);
}

/// Records longer than what a block's reader reads past the next block's nominal start (a few
/// KiB): the one parse that finds a block's end and reads its rows meets the end of the bytes
/// read inside the record that ends the block, so it reads on and parses the block again. A
/// record cut at the end of the bytes read would otherwise pass for a whole one (the parser
/// takes the end of its input for the end of the record). Quoted fields of 3-13 KiB with
/// newlines, short rows between them, a bad row after a long one, block sizes that put the
/// bytes read ahead's end inside the long records.
#[test]
fn records_longer_than_the_bytes_read_ahead_are_read_whole() {
    let mut text = String::from("ts,key,value\n");
    for i in 0..12usize {
        let long = format!("{}\n", "y".repeat(97)).repeat(30 + i * 9);
        text.push_str(&format!("{i},\"{long}\",{i}\n"));
        for j in 0..(i % 4) {
            text.push_str(&format!("{i},k{j},1\r\n"));
        }
        if i == 9 {
            text.push_str("x,k,1\n");
        }
    }
    let file = scratch_file(&text);
    let single = Reading::single(file.path(), 1, false);
    check_blocks(
        single,
        &[700, 1000, 2500, 4096, 6000, 9000],
        &[1, 2, 3],
        &text,
    );
}

/// A case proptest found in CI (stop 25): on 1-byte blocks, 2 workers and the random
/// partitioner, the row `0,k2,20` after the watermark passed 21 must be late for its session
/// (gap 14, allowed lateness 6), as the single reader finds.
#[test]
fn a_late_row_after_a_session_closes_is_late_on_parallel_readers() {
    let text = "ts,key,value\n0,k0,40\r\n1,k2,-18\n3,k0,36\r5,k1,-1\r8,k3,21\r0,k2,18\n\
                12,k0,-1\r12,k1,44\r0,k0,25\r0,k2,-10\n18,k4,-11\n15,k0,-2\r\n23,k2,-7\r\
                15,k2,-32\n\n0,k0,-38\r\n0,k2,20\r\n2,k2,34\r";
    check_readers(text, 2, &WindowKind::Session { gap: 14 }, 6, false);
}
