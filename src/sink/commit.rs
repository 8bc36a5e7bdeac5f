//! The committing sink: changelog and late rows written exactly once across crashes.
//!
//! One operator on worker 0 (of process 0) takes both the changelog and the late rows. It holds
//! every row back, by its timely time, until the frontier of both inputs has passed the next
//! checkpoint time `c = k * interval`; then it writes the rows at times `<= c`, ordered by
//! (time, row bytes), flushes and fsyncs both files, and commits the checkpoint through
//! [`CheckpointDir::commit`]. Why this cut is exact, and how recovery uses it, is in
//! [`crate::checkpoint`]. Rows at times `<=` the checkpoint a run resumed from are counted but
//! not written: the committed prefix of the files already holds them.
//!
//! Commits are paced in wall-clock time, like Flink's minimum pause between checkpoints
//! (`execution.checkpointing.min-pause`): after a commit (and after the sink starts) the next
//! one waits `min_pause`, and then covers the *latest* cut passed, so the cuts passed in the
//! meantime coalesce into one commit. This keeps exactly-once and the bytes: a commit at any
//! cut `c` writes exactly the rows at times `<= c` in (time, row bytes) order, so the files
//! after commits at `c1 < c2` equal those after one at `c2`, and recovery resumes from whichever
//! cut is in force. The end of the input commits at once. An activation is scheduled for the
//! end of the pause, so a frontier that stops moving does not hold a passed cut back.
//!
//! With operator snapshots (`--emit final`), every worker's operators hand their states for
//! each range of cuts (one cut, or all those a gap in time passes at once) to the worker's
//! [`Collector`]; [`snapshot_stream`] sends a range's states once all are in, and the sink,
//! whose frontier includes that stream's, writes for a commit at `c` one snapshot file per
//! worker, from the range covering `c`. Why those states are exactly those at the cut is in
//! [`crate::checkpoint`] and [`crate::stash::Cut::take_passed`].
//!
//! Memory: the rows of one checkpoint interval (at most), plus those ahead of it, and the
//! workers' states of the cuts not yet committed.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::fs::File;
use std::io::Write;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::{Concat, Exchange as _, Operator, Probe};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};
use timely::scheduling::Activator;
use timely::ExchangeData;

use super::{write_changelog_row, write_late_row, ChangelogCounts, LateFields};
use crate::checkpoint::{begin_checkpoint, crash, CheckpointDir, CrashPoint, Snapshot, States};
use crate::output::OutputWriter;
use crate::stash::{Checkpoints, Cuts, SnapshotSink};
use crate::window::{Late, WindowResult};

/// One file a committing sink writes: its name (as given), its writer, and a handle to fsync.
pub struct CommitFile {
    /// The name as given, for the snapshot and messages.
    pub name: String,
    /// Where the rows go (appended after the committed prefix).
    pub writer: OutputWriter,
    /// The same file, for `sync_all` and its length.
    pub sync: File,
}

/// What worker 0's committing sink needs.
pub struct CommitFiles {
    /// The changelog.
    pub output: CommitFile,
    /// The late output, if any (late rows are dropped, but counted, without one).
    pub late: Option<CommitFile>,
    /// The checkpoint directory.
    pub dir: Arc<CheckpointDir>,
    /// Checkpoint every this many milliseconds of event time (positive).
    pub interval: u64,
    /// Wall-clock time from one commit (or the start) to the next; zero commits every cut.
    pub min_pause: Duration,
    /// The checkpoint the run resumed from: rows at times up to it are already committed.
    pub resumed: Option<u64>,
    /// After the end of the input: the snapshot of the last commit, which holds every row;
    /// the caller marks it complete once the run succeeded.
    pub last: Arc<Mutex<Option<Snapshot>>>,
    /// Workers in all processes: with operator snapshots, every commit holds one per worker.
    pub workers: u32,
}

/// One worker's operator states for a range of cuts, on their way to the committing sink.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerSnapshot {
    /// The worker's global index.
    pub worker: u32,
    /// The first cut of the range.
    pub cut: u64,
    /// The last cut of the range: the states stand for every cut from `cut` to `until`.
    /// `u64::MAX` once every operator of the worker has taken its last cut (its input ended).
    pub until: u64,
    /// The states, by operator id, sorted.
    pub states: States,
}

/// One operator's state for the cuts `first..=last` (`last` is `u64::MAX` for its last state,
/// taken after its input ended).
struct Range {
    first: u64,
    last: u64,
    state: Vec<u8>,
}

/// A worker's [`SnapshotSink`]: gathers its operators' states per range of cuts
/// ([`SnapshotSink::last_cut_through`]: a gap in the input's event times is one range);
/// [`snapshot_stream`] sends them once every operator has handed its state over.
pub struct Collector {
    first: u64,
    interval: u64,
    /// Ranges handed over and not yet sent, per operator, oldest first.
    ranges: BTreeMap<String, VecDeque<Range>>,
    activator: Option<Activator>,
}

impl Collector {
    /// Cuts at `first`, `first + interval`, ... (`interval` positive).
    pub fn new(first: u64, interval: u64) -> Self {
        Collector {
            first,
            interval: interval.max(1),
            ranges: BTreeMap::new(),
            activator: None,
        }
    }

    fn wake(&self) {
        if let Some(activator) = &self.activator {
            activator.activate();
        }
    }
}

impl SnapshotSink for Collector {
    fn first_cut(&self) -> Option<u64> {
        Some(self.first)
    }

    fn write(&mut self, operator: &str, cut: u64, state: Vec<u8>) -> Option<u64> {
        self.write_range(operator, cut..=cut, state)
    }

    fn write_last(&mut self, operator: &str, cut: u64, state: Vec<u8>) {
        self.write_range(operator, cut..=u64::MAX, state);
    }

    fn last_cut_through(&self, first: u64, bound: u64) -> u64 {
        // Cuts lie `interval` apart from the first.
        first + (bound - first) / self.interval * self.interval
    }

    fn write_range(&mut self, operator: &str, cuts: Cuts, state: Vec<u8>) -> Option<u64> {
        let (first, last) = cuts.into_inner();
        self.ranges
            .entry(operator.to_owned())
            .or_default()
            .push_back(Range { first, last, state });
        self.wake();
        last.checked_add(self.interval)
    }
}

/// The stream of this worker's [`WorkerSnapshot`]s, each at its first cut's time: the states
/// for a range of cuts are sent once all `checkpoints.operators()` operators of the worker
/// handed over a state for its first cut, and the range ends at the first end of theirs. Its
/// frontier passing `c` so means that the worker's states at `c` are on their way, and it stands
/// at the next cut whose states are still to come; it never holds back the records' dataflow.
pub fn snapshot_stream<'scope>(
    scope: Scope<'scope, u64>,
    collector: Rc<RefCell<Collector>>,
    checkpoints: Checkpoints,
) -> StreamVec<'scope, u64, WorkerSnapshot> {
    let worker = scope.index() as u32;
    source(scope, "SnapshotCut", move |cap, info| {
        collector.borrow_mut().activator = Some(scope.activator_for(info.address));
        let mut cap = Some(cap);
        let mut next = collector.borrow().first;
        move |output| {
            let Some(held) = cap.as_mut() else { return };
            // Nothing goes out before the next cut: held there from the start, not at the
            // initial 0 until the first cut's states are in. A run restored from a checkpoint
            // starts its cuts an interval later, and its readers, paced by a probe of this
            // stream, waited at 0 for a cut they could not reach (2 workers, 7-byte blocks, a
            // 20 ms interval: the restart never ended).
            if *held.time() < next {
                held.downgrade(&next);
            }
            let operators = checkpoints.operators();
            if operators == 0 {
                cap = None;
                return;
            }
            let mut collector = collector.borrow_mut();
            loop {
                if collector.ranges.len() < operators {
                    return;
                }
                let mut until = u64::MAX;
                let mut states = States::with_capacity(operators);
                for (operator, ranges) in collector.ranges.iter_mut() {
                    // Ranges sent before: every cut in them is below `next`.
                    while ranges.front().is_some_and(|r| r.last < next) {
                        ranges.pop_front();
                    }
                    match ranges.front() {
                        Some(range) if range.first <= next => {
                            until = until.min(range.last);
                            states.push((operator.clone(), range.state.clone()));
                        }
                        _ => return,
                    }
                }
                held.downgrade(&next);
                output.session(&*held).give(WorkerSnapshot {
                    worker,
                    cut: next,
                    until,
                    states,
                });
                match until.checked_add(collector.interval) {
                    // Held at the next cut at once, not until its states are in: the frontier
                    // passes the cut just sent. A probe of this stream paces the sources; held
                    // at the last cut sent, it stood a whole interval behind them, and readers
                    // that need more than their allowance of batches to cross an interval
                    // waited for a cut they were to reach (2 workers, 1 KB blocks, 2 s
                    // interval: no checkpoint ever committed).
                    Some(later) => {
                        next = later;
                        held.downgrade(&next);
                    }
                    None => {
                        cap = None;
                        return;
                    }
                }
            }
        }
    })
    .container::<Vec<WorkerSnapshot>>()
}

/// The workers' snapshots received by the committing sink: per worker, by the range's first
/// cut, the range's last cut and the states.
#[derive(Default)]
struct Gathered {
    ranges: BTreeMap<u32, BTreeMap<u64, (u64, States)>>,
}

impl Gathered {
    /// Whether a worker has taken no cut up to `cut` yet: its first cut is later (a run's first
    /// cut is the last one below its input's first event time, see [`Collector::new`]; each
    /// process finds it in its own look at the input, and a topic written meanwhile may answer
    /// them differently), so `cut` cannot commit; a later one will.
    fn starts_later(&self, cut: u64, workers: u32) -> bool {
        (0..workers).any(|w| {
            self.ranges
                .get(&w)
                .is_none_or(|ranges| ranges.range(..=cut).next().is_none())
        })
    }

    /// Every worker's states at `cut`, from the range covering it; forgets the ranges before.
    fn take(&mut self, cut: u64, workers: u32) -> Result<Vec<States>, String> {
        (0..workers)
            .map(|w| {
                let ranges = self.ranges.entry(w).or_default();
                ranges.retain(|_, (until, _)| *until >= cut);
                match ranges.range(..=cut).next_back() {
                    Some((_, (_, states))) => Ok(states.clone()),
                    None => Err(format!(
                        "checkpoint at {cut}: worker {w} sent no snapshot (a bug: please report it)"
                    )),
                }
            })
            .collect()
    }
}

/// Rows waiting for their checkpoint, per time: encoded changelog rows and late rows.
type Pending = BTreeMap<u64, (Vec<Vec<u8>>, Vec<Vec<u8>>)>;

/// Writes `results` and `late` exactly once through `files` (on worker 0 of process 0; every
/// other worker passes `None`), counting changelog rows in `counts` and late rows in
/// `late_count`. A write or commit error stops writing and is stored in `error`. `written`
/// probes both inputs after their exchange to worker 0 (see [`super::csv_sink`]): a source
/// paced by it waits for rows still queued there.
///
/// `snapshots`, with operator snapshots (see [`snapshot_stream`]), go to worker 0 too: a
/// commit at `c` waits for every worker's states at `c` and writes one snapshot file per
/// worker. Without them a commit holds the outputs' lengths only, and recovery replays.
#[allow(clippy::too_many_arguments)]
pub fn commit_sink<'scope, K, O>(
    results: StreamVec<'scope, u64, WindowResult<K, O>>,
    late: StreamVec<'scope, u64, Late<K, LateFields>>,
    snapshots: Option<StreamVec<'scope, u64, WorkerSnapshot>>,
    files: Option<CommitFiles>,
    counts: Rc<RefCell<ChangelogCounts>>,
    late_count: Rc<RefCell<u64>>,
    error: Rc<RefCell<Option<String>>>,
    written: &ProbeHandle<u64>,
) where
    K: ExchangeData + AsRef<str>,
    O: ExchangeData + Display,
{
    let mut files = files;
    let mut pending: Pending = BTreeMap::new();
    let mut last_cut = files.as_ref().and_then(|f| f.resumed);
    let resumed = last_cut;
    let mut done = false;
    // The start counts as a commit: a run shorter than the pause commits once, at its end.
    let mut last_commit = Instant::now();
    let scope = results.scope();
    let encoded = Rc::new(RefCell::new(Vec::new()));
    // Flexible: changelog and late rows, of different widths, share the encoder.
    let mut encoder = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Shared(Rc::clone(&encoded)));
    // The snapshots are stored as they arrive; their frontier joins the late rows' (the
    // gathering operator emits nothing), so a cut passed by both inputs has every worker's.
    let gathered = Rc::new(RefCell::new(Gathered::default()));
    let with_states = snapshots.is_some();
    let results = results.exchange(|_| 0).probe_with(written);
    let late = late.exchange(|_| 0);
    let late = match snapshots {
        Some(snapshots) => {
            let store = Rc::clone(&gathered);
            let frontier_only = snapshots.unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(
                Exchange::new(|_: &WorkerSnapshot| 0),
                "GatherSnapshots",
                move |_cap, _info| {
                    move |input, _output| {
                        let mut store = store.borrow_mut();
                        input.for_each(|_cap, data| {
                            for snapshot in data.drain(..) {
                                store
                                    .ranges
                                    .entry(snapshot.worker)
                                    .or_default()
                                    .insert(snapshot.cut, (snapshot.until, snapshot.states));
                            }
                        });
                    }
                },
            );
            late.concat(frontier_only)
        }
        None => late,
    }
    .probe_with(written);
    // Nothing is sent (timely has no sink of two inputs): the output is left unconnected.
    results.binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
        late,
        Pipeline,
        Pipeline,
        "CommitSink",
        |_cap, info| {
            let activator = scope.activator_for(info.address);
            move |(results, results_frontier), (late, late_frontier), _output| {
                let keep = |time: u64| resumed.is_none_or(|c| time > c);
                results.for_each(|cap, data| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    for row in data.drain(..) {
                        let mut counts = counts.borrow_mut();
                        if row.diff > 0 {
                            counts.insertions += 1;
                        } else {
                            counts.retractions += 1;
                        }
                        if files.is_some() && keep(time) {
                            let bytes =
                                encode(&mut encoder, &encoded, |w| write_changelog_row(w, &row));
                            pending.entry(time).or_default().0.push(bytes);
                        }
                    }
                });
                late.for_each(|cap, data| {
                    let time = *cap.least().expect("u64 stamps are never empty");
                    for row in data.drain(..) {
                        *late_count.borrow_mut() += 1;
                        let wanted = files.as_ref().is_some_and(|f| f.late.is_some());
                        if wanted && keep(time) {
                            let bytes = encode(&mut encoder, &encoded, |w| write_late_row(w, &row));
                            pending.entry(time).or_default().1.push(bytes);
                        }
                    }
                });
                let Some(sink) = files.as_mut() else { return };
                if done {
                    return;
                }
                let frontier = [results_frontier, late_frontier]
                    .iter()
                    .filter_map(|f| f.frontier().first().copied())
                    .min();
                let cut = match frontier {
                    // Every row is here: the last commit holds all of them.
                    None => u64::MAX,
                    Some(0) => return,
                    Some(f) => (f - 1) / sink.interval * sink.interval,
                };
                if last_cut.is_some_and(|c| c >= cut) {
                    return;
                }
                if frontier.is_some() {
                    let due = last_commit + sink.min_pause;
                    let now = Instant::now();
                    if now < due {
                        // Coalesce: come back when the pause is over, and commit the cut the
                        // frontier will have passed by then.
                        activator.activate_after(due - now);
                        return;
                    }
                }
                if with_states
                    && frontier.is_some()
                    && gathered.borrow().starts_later(cut, sink.workers)
                {
                    return;
                }
                let states = match (with_states, frontier.is_some()) {
                    (true, true) => match gathered.borrow_mut().take(cut, sink.workers) {
                        Ok(states) => Some(states),
                        Err(e) => {
                            *error.borrow_mut() = Some(e);
                            files = None;
                            return;
                        }
                    },
                    _ => None,
                };
                let result = commit(sink, &mut pending, cut, states);
                match result {
                    Ok(snapshot) => {
                        last_cut = Some(cut);
                        last_commit = Instant::now();
                        if frontier.is_none() {
                            done = true;
                            *sink.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
                        }
                    }
                    Err(e) => {
                        *error.borrow_mut() = Some(e);
                        files = None;
                    }
                }
            }
        },
    );
}

/// A byte buffer the CSV encoder writes into and the sink takes rows out of.
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The bytes of one CSV row, as `write` puts them.
fn encode(
    encoder: &mut csv::Writer<Shared>,
    encoded: &RefCell<Vec<u8>>,
    write: impl FnOnce(&mut csv::Writer<Shared>) -> csv::Result<()>,
) -> Vec<u8> {
    // Writing into memory cannot fail: `Shared` never returns an error.
    write(encoder).expect("csv into memory");
    encoder.flush().expect("csv into memory");
    std::mem::take(&mut *encoded.borrow_mut())
}

/// Writes the rows at times `<= cut` (in (time, bytes) order), makes both files durable and
/// commits the checkpoint at `cut`; returns the snapshot committed.
/// `states`: every worker's operator states at `cut`, by worker, each written as that worker's
/// snapshot (worker 0's with the lengths); `None`: worker 0's snapshot with the lengths alone.
fn commit(
    sink: &mut CommitFiles,
    pending: &mut Pending,
    cut: u64,
    states: Option<Vec<States>>,
) -> Result<Snapshot, String> {
    begin_checkpoint();
    let later = match cut.checked_add(1) {
        Some(next) => pending.split_off(&next),
        None => BTreeMap::new(),
    };
    let ready = std::mem::replace(pending, later);
    let (mut rows, mut lates) = (Vec::new(), Vec::new());
    for (_, (mut r, mut l)) in ready {
        r.sort_unstable();
        l.sort_unstable();
        rows.extend(r);
        lates.extend(l);
    }
    let half = rows.len() / 2;
    write_rows(&mut sink.output, &rows[..half])?;
    // A crash in the middle of an interval's rows: the committed length must cut them off.
    crash(CrashPoint::Output);
    write_rows(&mut sink.output, &rows[half..])?;
    let mut sinks = vec![(sink.output.name.clone(), durable(&sink.output)?)];
    if let Some(late) = sink.late.as_mut() {
        write_rows(late, &lates)?;
        sinks.push((late.name.clone(), durable(late)?));
    }
    let mut snapshots: Vec<Snapshot> = match states {
        Some(states) => states
            .into_iter()
            .enumerate()
            .map(|(worker, operators)| Snapshot {
                worker: worker as u32,
                sinks: Vec::new(),
                operators,
            })
            .collect(),
        None => Vec::new(),
    };
    match snapshots.first_mut() {
        Some(first) => first.sinks = sinks,
        None => snapshots.push(Snapshot {
            worker: 0,
            sinks,
            operators: Vec::new(),
        }),
    }
    sink.dir
        .commit(cut, &snapshots, false)
        .map_err(|e| e.to_string())?;
    // Only the lengths are needed at the end (the final, complete commit).
    let mut first = snapshots.swap_remove(0);
    first.operators.clear();
    Ok(first)
}

fn write_rows(file: &mut CommitFile, rows: &[Vec<u8>]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("writing {}: {e}", file.name);
    for row in rows {
        file.writer.write_all(row).map_err(fail)?;
    }
    file.writer.flush().map_err(fail)
}

/// Fsyncs `file`'s data (and its length, which `fdatasync` includes) and returns its length:
/// the committed prefix.
fn durable(file: &CommitFile) -> Result<u64, String> {
    let fail = |e: std::io::Error| format!("writing {}: {e}", file.name);
    file.sync.sync_data().map_err(fail)?;
    Ok(file.sync.metadata().map_err(fail)?.len())
}
