//! The incremental (differential) window views against a brute-force reference, on random
//! out-of-order inputs with retractions, under 1, 2 and 4 workers; the CLI's `--emit updates`
//! against `--emit final`; and the bound on the view's state.
//!
//! Protects: consolidated view == reference (with retractions applied), late rows (insertions
//! and retractions) == reference, the same consolidated answer for every number of workers,
//! the CLI contract (consolidating the updates changelog gives the final changelog's answer)
//! and state that does not grow with the number of expired windows.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
use proptest::prelude::*;
use proptest::sample::Index;
use tidemark::incremental::{to_updates, WindowedCollection};
use tidemark::partition::Partitioner;
use tidemark::source::{feed_source, SourceOptions, VecFeed};
use tidemark::window::{Aggregator, Count, WindowAssigner};
use tidemark::Fixed;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Inspect;

use common::cli;
use common::dataflow::{layouts, run_fed, source, Case, Collect, Rec, WithAgg};
use common::gen;
use common::reference::{aggregate, fixed_windows_of, watermarks, Event, Params, WindowKind};

// A record as the view sees it (`Rec`): event time, value, and the id of the inserted row (a
// retraction carries the id of the row it retracts, so the two are equal records).

/// One input row: an event, the id of the row it inserts or retracts, and the change.
#[derive(Clone, Debug)]
struct Update {
    event: Event,
    id: usize,
    diff: isize,
}

/// The final answer: `(start, end, key) -> value mantissa`, and late rows
/// `(id, start, end, diff)`, sorted.
type Answer = BTreeMap<(i64, u64, String), i128>;
type LateRows = Vec<(usize, i64, u64, isize)>;
/// A record: `(ts, value, id)`.
type Record = (u64, i128, usize);
/// Net count of each record.
type Members = BTreeMap<Record, isize>;
/// Input rows for the feed: `(time, ((key, record), diff))`.
type Rows<K, R> = Vec<(u64, ((K, R), isize))>;

/// Brute force from the rules: an update counts in window `w` iff `T < end(w) + lateness`
/// (`T` its watermark time); for sessions `w` is the session it merges into, given the updates
/// counted before it, among the sessions kept at `T` (`end + lateness > T`; Flink's rule, the
/// others are forgotten); sessions are runs of records whose net count is non-zero, and a
/// retraction cancels a copy of its record where it went: counted in a kept session, else late
/// for the forgotten session counting it, else late for the window its earliest uncancelled
/// late insertion missed.
fn reference(updates: &[Update], p: &Params) -> (Answer, LateRows) {
    let events: Vec<Event> = updates.iter().map(|u| u.event.clone()).collect();
    let wm = watermarks(&events, p.max_delay);
    let stamp = |i: usize| wm[i].max(events[i].ts) as u128;
    let lateness = p.lateness as u128;
    let mut late = Vec::new();
    // (start, end, key) -> (ts, value, id) -> net count
    let mut groups: BTreeMap<(i64, u64, String), Members> = BTreeMap::new();
    match p.kind {
        WindowKind::Tumbling { .. } | WindowKind::Sliding { .. } => {
            for (i, u) in updates.iter().enumerate() {
                for (start, end) in fixed_windows_of(u.event.ts, &p.kind) {
                    if stamp(i) >= end as u128 + lateness {
                        late.push((u.id, start, end, u.diff));
                    } else {
                        *groups
                            .entry((start, end, u.event.key.clone()))
                            .or_default()
                            .entry((u.event.ts, u.event.value, u.id))
                            .or_default() += u.diff;
                    }
                }
            }
        }
        WindowKind::Session { gap } => {
            let gap = gap as u128;
            let window_of = |m: &Members| {
                let first = m.keys().next().unwrap().0 as u128;
                let last = m.keys().next_back().unwrap().0 as u128;
                (first, last + gap)
            };
            // key -> sessions formed (their net counts, never zero), in creation order
            let mut sessions: BTreeMap<String, Vec<Members>> = BTreeMap::new();
            // (key, record) -> the windows its late insertions missed, not yet cancelled
            let mut missed: BTreeMap<(String, Record), Vec<(i64, u64)>> = BTreeMap::new();
            // (key, record) whose copy in a forgotten session a retraction has cancelled
            let mut cancelled: BTreeSet<(String, Record)> = BTreeSet::new();
            for (i, u) in updates.iter().enumerate() {
                let time = stamp(i);
                let record = (u.event.ts, u.event.value, u.id);
                let mine = sessions.entry(u.event.key.clone()).or_default();
                // Flink's rule: only sessions with end + lateness > T are kept; the others
                // are forgotten and never merged again.
                let kept = |m: &Members| window_of(m).1 + lateness > time;
                if u.diff < 0 && !mine.iter().any(|m| kept(m) && m.contains_key(&record)) {
                    // Retracting a record counted only in a forgotten session: late for it.
                    let forgotten = mine.iter().find(|m| m.contains_key(&record));
                    if let Some(m) =
                        forgotten.filter(|_| cancelled.insert((u.event.key.clone(), record)))
                    {
                        let (start, end) = window_of(m);
                        late.push((u.id, start as i64, end as u64, u.diff));
                        continue;
                    }
                    // Retracting a late insertion: late where it was.
                    let windows = missed.entry((u.event.key.clone(), record)).or_default();
                    if !windows.is_empty() {
                        let (start, end) = windows.remove(0);
                        late.push((u.id, start, end, u.diff));
                        continue;
                    }
                }
                let (ts, own_end) = (u.event.ts as u128, u.event.ts as u128 + gap);
                let joins = |m: &Members| {
                    let (start, end) = window_of(m);
                    kept(m) && start < own_end && ts < end
                };
                let start = mine.iter().filter(|m| joins(m)).map(|m| window_of(m).0);
                let start = start.fold(ts, u128::min);
                let end = mine.iter().filter(|m| joins(m)).map(|m| window_of(m).1);
                let end = end.fold(own_end, u128::max);
                if end + lateness <= time {
                    assert!(u.diff > 0, "the generator never over-retracts");
                    late.push((u.id, start as i64, end as u64, u.diff));
                    missed
                        .entry((u.event.key.clone(), record))
                        .or_default()
                        .push((start as i64, end as u64));
                    continue;
                }
                let mut merged = Members::new();
                for m in mine.iter().filter(|m| joins(m)) {
                    merged.extend(m.iter().map(|(r, n)| (*r, *n)));
                }
                mine.retain(|m| !joins(m));
                *merged.entry(record).or_default() += u.diff;
                merged.retain(|_, n| *n != 0);
                // The runs of the merged records' times (a retraction may cut one in two).
                let mut run = Members::new();
                for (r, n) in merged {
                    let cut = run
                        .keys()
                        .next_back()
                        .is_some_and(|last| r.0 as u128 >= last.0 as u128 + gap);
                    if cut {
                        mine.push(std::mem::take(&mut run));
                    }
                    run.insert(r, n);
                }
                if !run.is_empty() {
                    mine.push(run);
                }
            }
            for (key, mine) in sessions {
                for members in mine {
                    let (start, end) = window_of(&members);
                    let window = (start as i64, end as u64, key.clone());
                    let clash = groups.insert(window, members);
                    assert!(clash.is_none(), "two sessions with one window");
                }
            }
        }
    }
    let mut answer = BTreeMap::new();
    for (window, members) in groups {
        let mut values = Vec::new();
        for ((_, value, _), n) in members {
            assert!(n >= 0, "the generator never retracts more than it inserted");
            values.extend(std::iter::repeat_n(value, n as usize));
        }
        if !values.is_empty() {
            answer.insert(window, aggregate(p.agg, &values));
        }
    }
    late.sort();
    (answer, late)
}

/// The view on the case's updates: consolidated results (each `(window, key)` must end with
/// exactly one value) and late rows.
impl WithAgg for Case<'_, Update> {
    type Out = (Answer, LateRows);
    fn run<A>(self, agg: A, mantissa: fn(&A::Output) -> i128) -> (Answer, LateRows)
    where
        A: Aggregator<Rec> + Send + Sync,
        A::Output: differential_dataflow::ExchangeData + Ord,
    {
        let input: Rows<String, Rec> = self
            .input
            .iter()
            .map(|u| {
                let rec = (u.event.ts, Fixed::from_nanos(u.event.value), u.id);
                (u.event.ts, ((u.event.key.clone(), rec), u.diff))
            })
            .collect();
        let (results, late) = (Collect::new(), Collect::new());
        let (out, late_out) = (results.clone(), late.clone());
        let (assigner, lateness, partitioner) = self.windows();
        run_fed(self.workers, input, self.p.max_delay, move |scope, feed| {
            let (out, late_out) = (out.clone(), late_out.clone());
            let view = to_updates(source(scope, feed)).window_view(
                partitioner.clone(),
                assigner,
                lateness,
                |r: &Rec| r.0,
                agg.clone(),
            );
            view.results.inner.inspect(move |((w, key, value), _t, r)| {
                let window = (w.start, w.end, key.clone());
                out.push((window, mantissa(value), *r as i64));
            });
            view.late.inner.inspect(move |(l, _t, r)| {
                late_out.push((l.record.2, l.window.start, l.window.end, *r));
            });
            view.invalid
                .inner
                .inspect(|u| panic!("the generator never over-retracts: {u:?}"));
        });
        (common::consolidate(results.sorted()), late.sorted())
    }
}

fn run_view(
    updates: &[Update],
    p: &Params,
    workers: usize,
    partitioner: &Partitioner<String>,
) -> (Answer, LateRows) {
    Case {
        input: updates,
        p,
        workers,
        partitioner,
    }
    .run()
}

/// Events as insertions, and retractions of some of them placed later in the input.
fn with_retractions(events: Vec<Event>, picks: Vec<(Index, Index)>) -> Vec<Update> {
    let n = events.len();
    // after[k]: rows retracted right after original row k.
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut retracted = vec![false; n];
    for (which, when) in picks {
        if n == 0 {
            break;
        }
        let i = which.index(n);
        if std::mem::replace(&mut retracted[i], true) {
            continue;
        }
        after[i + when.index(n - i)].push(i);
    }
    let mut updates = Vec::new();
    for (k, event) in events.iter().enumerate() {
        updates.push(Update {
            event: event.clone(),
            id: k,
            diff: 1,
        });
        for &i in &after[k] {
            updates.push(Update {
                event: events[i].clone(),
                id: i,
                diff: -1,
            });
        }
    }
    updates
}

/// Random updates, then one key's late row retracted after its session may have grown back over
/// the row's time: an anchor row `a`, the late row `x` (`x + gap + lateness <= a - max_delay`,
/// after every earlier session), rows stepping back from `a` by a step of at most `gap` (each
/// joins the session above it, unless the step is `gap`), and the retraction of `x`.
/// Flink's rule keeps `x` late, so its retraction is late for the same window, even where the
/// chain now reaches `x`; a copy that the bridge would count is a different answer.
fn late_then_bridged() -> impl Strategy<Value = (Vec<Update>, Params)> {
    let scenario = (
        0..gen::KEYS.len(),
        0u64..50,
        0u64..60,
        1u64..=40,
        0usize..60,
    );
    (
        gen::events(16),
        picks(),
        gen::session(),
        gen::agg(),
        gen::delays(),
        scenario,
    )
        .prop_map(
            |(events, picks, kind, agg, (max_delay, lateness), (key, x_off, d, step, chain))| {
                let WindowKind::Session { gap } = kind else {
                    unreachable!("session windows")
                };
                let step = 1 + (step - 1) % gap;
                let mut updates = with_retractions(events, picks);
                let last = updates.iter().map(|u| u.event.ts).max().unwrap_or(0);
                let x = last + 2 * (gap + lateness + max_delay) + 1 + x_off;
                let a = x + gap + lateness + max_delay + d;
                let key = gen::KEYS[key].to_string();
                let mut id = updates.iter().map(|u| u.id + 1).max().unwrap_or(0);
                let mut insert = |ts: u64, updates: &mut Vec<Update>| {
                    let event = Event {
                        ts,
                        key: key.clone(),
                        value: (id as i128 % 7 - 3) * 1_000_000_000,
                    };
                    updates.push(Update { event, id, diff: 1 });
                    id += 1;
                };
                insert(a, &mut updates);
                insert(x, &mut updates);
                let late = updates.last().expect("x").clone();
                for k in 1..=chain as u64 {
                    insert(a.saturating_sub(k * step), &mut updates);
                }
                updates.push(Update { diff: -1, ..late });
                let p = Params {
                    kind,
                    agg,
                    max_delay,
                    lateness,
                };
                (updates, p)
            },
        )
}

/// Up to 12 (row, later position) picks of rows to retract ([`with_retractions`]).
fn picks() -> impl Strategy<Value = Vec<(Index, Index)>> {
    proptest::collection::vec((any::<Index>(), any::<Index>()), 0..12)
}

/// The view on 1, 2 and 4 workers and every partitioner holds the reference's answer.
fn check(updates: Vec<Update>, p: &Params) -> Result<(), TestCaseError> {
    let expected = reference(&updates, p);
    for (workers, partitioner) in layouts() {
        let got = run_view(&updates, p, workers, &partitioner);
        prop_assert_eq!(
            &got.0,
            &expected.0,
            "results, {} workers, {:?}, {:?}",
            workers,
            partitioner,
            p
        );
        prop_assert_eq!(
            &got.1,
            &expected.1,
            "late rows, {} workers, {:?}, {:?}",
            workers,
            partitioner,
            p
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn views_match_reference_with_retractions_under_1_2_4_workers(events in gen::events(40), picks in picks(), p in gen::params()) {
        check(with_retractions(events, picks), &p)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn retractions_of_late_rows_stay_late_after_a_session_grows_over_them((updates, p) in late_then_bridged()) {
        check(updates, &p)?;
    }

    #[test]
    fn views_match_reference_at_the_end_of_the_time_domain(events in gen::events_near_the_end(30), picks in picks(), p in gen::params()) {
        check(with_retractions(events, picks), &p)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// `tidemark window --emit updates`, consolidated, is `--emit final`, consolidated.
    #[test]
    fn emit_updates_consolidates_to_emit_final(events in gen::events(30), p in gen::params(), workers in prop_oneof![Just(1usize), Just(2), Just(4)], partition in prop_oneof![Just("hash"), Just("range:b,k3"), Just("random"), Just("broadcast")]) {
        let dir = cli::scratch(&format!("emit-{}", rand_suffix(&events)));
        let input = cli::write(&dir, "in.csv", &gen::to_csv(&events));
        let mut outputs = Vec::new();
        for emit in ["final", "updates"] {
            let output = dir.join(format!("{emit}.csv"));
            let late = dir.join(format!("late-{emit}.csv"));
            let status = cli::window(&input, &output, &gen::window_spec(&p), gen::agg_name(&p.agg))
                .arg("--late-output").arg(&late)
                .args(["--max-delay", &p.max_delay.to_string()])
                .args(["--allowed-lateness", &p.lateness.to_string()])
                .args(["--workers", &workers.to_string(), "--emit", emit, "--partition", partition])
                .output()
                .unwrap();
            prop_assert!(status.status.success(), "{}", cli::stderr(&status));
            let late_rows = std::fs::read_to_string(&late).unwrap().lines().count();
            outputs.push((cli::consolidated(&output), late_rows));
        }
        std::fs::remove_dir_all(&dir).ok();
        prop_assert_eq!(&outputs[0], &outputs[1], "{:?}, {} workers, {}", p, workers, partition);
    }
}

fn rand_suffix(events: &[Event]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    events.hash(&mut hasher);
    hasher.finish()
}

/// Peak number of updates held by the view's arrangements and batchers over `n` in-order
/// events of three keys.
fn peak_state(n: u64, assigner: WindowAssigner, lateness: u64) -> i64 {
    timely::execute_directly(move |worker| {
        let held = Rc::new(RefCell::new((0i64, 0i64)));
        let log = Rc::clone(&held);
        worker
            .log_register()
            .expect("logging is available")
            .insert::<DifferentialEventBuilder, _>("differential/arrange", move |_time, data| {
                let Some(batch) = data else { return };
                let mut held = log.borrow_mut();
                for (_, event) in batch.iter() {
                    let change = match event {
                        DifferentialEvent::Batch(b) => b.length as i64,
                        DifferentialEvent::Merge(m) => match m.complete {
                            Some(len) => len as i64 - (m.length1 + m.length2) as i64,
                            None => 0,
                        },
                        DifferentialEvent::Drop(d) => -(d.length as i64),
                        DifferentialEvent::Batcher(b) => b.records_diff as i64,
                        _ => 0,
                    };
                    held.0 += change;
                    held.1 = held.1.max(held.0);
                }
            });
        let records: Rows<u64, u64> = (0..n).map(|ts| (ts, ((ts % 3, ts), 1))).collect();
        let feed = Some(VecFeed::new(records, 2));
        worker.dataflow::<u64, _, _>(|scope| {
            let error = Rc::new(RefCell::new(None));
            let options = SourceOptions {
                batch: 64,
                idle_timeout: None,
            };
            let updates = to_updates(feed_source(scope, feed, options, error));
            let view =
                updates.window_view(Partitioner::Hash, assigner, lateness, |ts: &u64| *ts, Count);
            view.results.inner.map(|_| ()).inspect(|_| {});
        });
        while worker.step() {}
        let peak = held.borrow().1;
        peak
    })
}

#[test]
fn view_state_does_not_grow_with_the_number_of_expired_windows() {
    for (assigner, lateness) in [
        (WindowAssigner::Tumbling(10), 0),
        (WindowAssigner::Sliding(30, 10), 25),
    ] {
        let small = peak_state(2_000, assigner, lateness);
        let large = peak_state(50_000, assigner, lateness);
        assert!(small > 0, "{assigner:?}: the log reports state");
        // 25x more windows: a growing view would hold about 25x more; a bounded one holds the
        // open windows plus what the arrangements have not merged away yet.
        assert!(
            large < 2 * small,
            "{assigner:?}: peak state {small} for 2k events, {large} for 50k"
        );
    }
}

fn window_cli(dir: &std::path::Path, csv: &str, emit: &str) -> std::process::Output {
    let input = cli::write(dir, "in.csv", csv);
    cli::window(&input, dir.join("out.csv"), "tumbling:10", "sum")
        .args(["--emit", emit])
        .output()
        .unwrap()
}

/// `tidemark window --window session:300 --emit updates --max-delay 200 --allowed-lateness 300`
/// on `csv`, with a late output: its exit, the consolidated answer and the sorted late rows.
fn sessions_cli(dir: &std::path::Path, csv: &str) -> (std::process::Output, Vec<String>) {
    let input = cli::write(dir, "in.csv", csv);
    let late = dir.join("late.csv");
    let out = cli::window(&input, dir.join("out.csv"), "session:300", "sum")
        .args([
            "--emit",
            "updates",
            "--max-delay",
            "200",
            "--allowed-lateness",
            "300",
        ])
        .arg("--late-output")
        .arg(&late)
        .output()
        .unwrap();
    let mut rows: Vec<String> = std::fs::read_to_string(&late)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    rows.sort();
    (out, rows)
}

#[test]
fn a_retraction_of_a_late_row_is_late_where_its_insertion_was() {
    let dir = cli::scratch("late-retraction");
    // Row 2 (ts 100) is late at watermark 1800: its own session [100, 400) ends, plus the
    // lateness, at 700. Rows 3 to 9 then grow the open session [2000, 2300) back to 350, over
    // row 2's time; its retraction (last row) cancels the late copy, late for [100, 400) too,
    // rather than a copy counted in the session that was never there.
    let mut csv = String::from("ts,key,value,diff\n2000,k,1,1\n100,k,2,1\n");
    for ts in [1750, 1500, 1250, 1000, 750, 500, 350] {
        csv.push_str(&format!("{ts},k,1,1\n"));
    }
    csv.push_str("100,k,2,-1\n");
    let (out, late) = sessions_cli(&dir, &csv);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    let answer = cli::consolidated(&dir.join("out.csv"));
    assert_eq!(answer, cli::answer(&[("350", "2300", "k", "8")]));
    assert_eq!(
        late,
        vec![
            "100,k,2,100,400,-1",
            "100,k,2,100,400,1",
            "ts,key,value,window_start,window_end,diff",
        ]
    );

    // A late retraction of a row never inserted is named, as a counted one is.
    let (out, _) = sessions_cli(&dir, "ts,key,value,diff\n2000,k,1,1\n100,k,5,-1\n");
    assert!(!out.status.success());
    let stderr = cli::stderr(&out);
    assert!(
        stderr.contains("retracts rows it never inserted") && stderr.contains("[100, 400)"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn each_copy_in_a_forgotten_session_is_cancelled_once() {
    let dir = cli::scratch("forgotten-retraction");
    // Rows 1 and 2 form [400, 800), forgotten at watermark 2800 (800 + 300 <= 2800). Row 4
    // inserts row 2's row again, late for its own session [500, 800). Its two retractions
    // cancel the forgotten session's copy, then the late one: each copy once.
    let csv = "ts,key,value,diff\n400,k,1,1\n500,k,2,1\n3000,k,1,1\n500,k,2,1\n\
               500,k,2,-1\n500,k,2,-1\n";
    let (out, late) = sessions_cli(&dir, csv);
    assert!(out.status.success(), "{}", cli::stderr(&out));
    let answer = cli::consolidated(&dir.join("out.csv"));
    let sessions = [("400", "800", "k", "3"), ("3000", "3300", "k", "1")];
    assert_eq!(answer, cli::answer(&sessions));
    assert_eq!(
        late,
        vec![
            "500,k,2,400,800,-1",
            "500,k,2,500,800,-1",
            "500,k,2,500,800,1",
            "ts,key,value,window_start,window_end,diff",
        ]
    );

    // A second retraction of a row inserted once: nothing is left to cancel, so it is named.
    let csv = "ts,key,value,diff\n400,k,1,1\n500,k,2,1\n3000,k,1,1\n500,k,2,-1\n\
               500,k,2,-1\n";
    let (out, _) = sessions_cli(&dir, csv);
    assert!(!out.status.success());
    let stderr = cli::stderr(&out);
    assert!(
        stderr.contains("retracts rows it never inserted") && stderr.contains("[500, 800)"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn diff_column_retracts_earlier_rows_and_bad_retractions_are_named() {
    let dir = cli::scratch("diff");
    // Row 3 retracts row 1 (same columns): window [0, 10) of a ends as 5, b's window as 7.
    let csv = "ts,key,value,diff\n1,a,2,1\n3,a,5,1\n1,a,2,-1\n4,b,7,1\n12,a,1,1\n";
    let out = window_cli(&dir, csv, "updates");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = cli::consolidated(&dir.join("out.csv"));
    let rows: Vec<_> = answer
        .iter()
        .map(|((s, e, k), v)| format!("{s},{e},{k},{v}"))
        .collect();
    assert_eq!(rows, vec!["0,10,a,5", "0,10,b,7", "10,20,a,1"]);

    // (input, emit mode, what the error names)
    let never_inserted = "ts,key,value,diff\n1,a,2,1\n2,a,3,-1\n";
    for (input, emit, needles) in [
        (csv, "final", ["in.csv:4: field 'diff'", "--emit updates"]),
        (
            never_inserted,
            "updates",
            ["retracts rows it never inserted", "\"a\""],
        ),
    ] {
        let out = window_cli(&dir, input, emit);
        let stderr = cli::stderr(&out);
        assert!(!out.status.success());
        assert!(needles.iter().all(|n| stderr.contains(n)), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
