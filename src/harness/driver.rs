//! The open-loop driver: feeds a workload at an offered rate and measures epoch latency.
//!
//! Method (README, "`tidemark bench`"): event `j` of the workload's single logical stream is due
//! at `j * 1e9 / rate` nanoseconds after the common start (workers start together behind a
//! barrier, and the workers of a process share one start instant, see [`run_engine`]; worker `w`
//! of `P` sends events `w, w + P, ...`). Each event is stamped with its due
//! time as event time and sent at its epoch (`due - due % epoch`). Every loop sends what is
//! due, advances the input to the current epoch and steps the worker. An epoch `[e, e + epoch)`
//! is due at `e + epoch`; its latency is the wall time at which the output probe has passed it
//! minus that due time. Queueing therefore counts (no coordinated omission): an engine that falls
//! behind sends late and retires late, and the latency shows it.
//!
//! One loop, [`open_loop`], drives every system under test through the small
//! [`SystemUnderTest`] interface: the timely dataflow on one worker ([`run_engine`]) and the
//! single-threaded baseline, one or several independent copies at once ([`run_baselines`]).
//!
//! # Overload
//!
//! An engine slower than the offered rate must neither exhaust memory nor overrun the run:
//!
//! * at most [`in_flight_bound`] events per worker are sent and not yet processed; events that
//!   fall due beyond it wait unsent (and count their waiting in their epoch's latency);
//! * each loop sends at most [`MAX_PER_LOOP`] events before it steps the system and looks at the
//!   clock again;
//! * when one epoch alone holds the whole bound, the input advances within the epoch (to the due
//!   time of the next unsent event, never above an event's time), so that the probe can show the
//!   engine working through it;
//! * a run whose unsent events are more than [`HOPELESS_NS`] overdue is stopped as soon as it has
//!   measured `min(1 s, measured duration)`, and reported as overloaded, as is a run that ends
//!   that far behind, or whose drain (below) leaves measured events unsent or unprocessed.
//!
//! # Counting
//!
//! The achieved rate is the *measured* events that the output showed processed, per second of
//! the measured part: in open loop the events due in `[warm-up end, run end)`, in closed loop
//! those sent from the warm-up's end on. Events due in the warm-up that a system works off in
//! the measured part do not count, so an open-loop run never achieves more than its offered
//! rate (by at most the one event that rounding due times to nanoseconds can add). At the end
//! of its clock the run drains, for at most the drain limit (the larger of [`HOPELESS_NS`] and
//! two epochs, plus any injected delay): it sends what of the measured part is still unsent
//! (a run a little behind; events due after the end are never sent), moves the input to the
//! end, and steps until every measured event is processed. So the last epoch, which retires
//! only once the input leaves it, counts in full however long the epochs are, and a run that
//! keeps up, or keeps pace a little behind, achieves its offered rate. The epochs completed in
//! the drain are measured epochs: their latencies are recorded (an epoch that the run's end
//! cuts short never completes, and is not). What the drain leaves, unsent or unprocessed, is
//! not counted, and makes the run overloaded. A run stopped as hopeless is not drained: it is
//! overloaded whatever the drain would show, and it was stopped to save that time.
//!
//! Events are pre-generated into a pool per worker before the timed part (generation is not the
//! system under test) and replayed with shifted event times. With `rate = None` the driver runs
//! closed loop, for maximum throughput: each worker sends a batch, stamped with the current
//! time, whenever its *own* events in flight are within the bound, so that every worker keeps
//! its share of the stream flowing (the probe is global: a cue such as "the probe has passed my
//! input time" holds for the lagging worker only, and starves the others).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Operator, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};
use timely::synchronization::Barrier;
use timely::worker::Worker;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use super::profile::{Profiler, WorkerProfile};
use super::recorder::Recorder;
use super::snapshots::Writer;
use crate::stash::Checkpoints;
use crate::workloads::{Baseline, Workload};

/// What one run measures and how.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Offered events per second over all workers; `None` runs closed loop at maximum speed.
    pub rate: Option<u64>,
    /// Length of the run, warm-up included (ns).
    pub duration_ns: u64,
    /// Epochs due before this are not measured (ns).
    pub warmup_ns: u64,
    /// Epoch length: the granularity of timestamps and of latency measurement (ns).
    pub epoch_ns: u64,
    /// Seed of the generators.
    pub seed: u64,
    /// Events pre-generated per worker and replayed.
    pub pool: usize,
    /// Keep per-second histograms (for interval logs).
    pub intervals: bool,
    /// Also keep the latencies of epochs due at or after this (ns) apart: the late part of the
    /// run that the sustainability check looks at.
    pub tail_from_ns: Option<u64>,
    /// Holds the output frontier back by this long (ns; a calibration hook for tests).
    pub inject_delay_ns: u64,
    /// Show a progress bar (on one worker).
    pub progress: bool,
    /// Run the workload's incremental (differential) version instead of its timely dataflow.
    pub incremental: bool,
    /// Profile each engine worker from timely's event log ([`super::profile`]).
    pub profile: bool,
    /// Tear the dataflow down at this wall time (ns after the start) as a crash would, and
    /// rebuild it from its last complete checkpoint (`--fail-at`: checkpointed engine runs,
    /// open loop; see [`SystemUnderTest::fail`]).
    pub fail_at_ns: Option<u64>,
}

impl RunConfig {
    /// A plain open-loop run at `rate` events per second over all workers, `duration_ns` long
    /// with `warmup_ns` of warm-up (ns): 1 ms epochs, seed 1, a pool of 2^20 events per worker,
    /// and none of the extras (interval logs, tail, injected delay, progress bar, incremental
    /// engine, profile, failure). Callers change a field by struct update.
    pub fn open_loop(rate: u64, duration_ns: u64, warmup_ns: u64) -> RunConfig {
        RunConfig {
            rate: Some(rate),
            duration_ns,
            warmup_ns,
            epoch_ns: 1_000_000,
            seed: 1,
            pool: 1 << 20,
            intervals: false,
            tail_from_ns: None,
            inject_delay_ns: 0,
            progress: false,
            incremental: false,
            profile: false,
            fail_at_ns: None,
        }
    }
}

/// Events per closed-loop batch per worker.
const MAX_RATE_BATCH: usize = 16_384;
/// Most events handed to the input at once in open loop.
const MAX_SEND_BATCH: usize = 4_096;
/// Most events one loop sends before it steps the system and reads the clock again: far more
/// than falls due in one loop of an engine that keeps up (48 M/s for 1 ms is 48 000), so it
/// only bounds the catching up of one that does not.
pub const MAX_PER_LOOP: u64 = 1 << 18;
/// How far overdue the oldest unsent event may be before the run is hopelessly behind.
pub const HOPELESS_NS: u64 = 1_000_000_000;
/// The least a run measures before it may be stopped as hopelessly behind (or the whole
/// measured part, if shorter).
const MIN_MEASURED_NS: u64 = 1_000_000_000;
/// The in-flight bound without large epochs: 2^20 events per worker (tens of MB of YSB
/// events), about 20 ms at the engine's best one-worker rate.
const MIN_IN_FLIGHT: u64 = 1 << 20;
/// The in-flight bound's ceiling, whatever the epochs: 2^22 events per worker (about 170 MB of
/// YSB events; a fraction of a second of work for an engine that keeps up). An epoch holding
/// more than half of it per worker (16 M/s with 1 s epochs) is split when the bound fills.
const MAX_IN_FLIGHT: u64 = 1 << 22;

/// The most events one worker may have sent and not yet seen processed: two epochs' worth at
/// the offered rate (an epoch retires only once it is over, so its events are all in flight
/// at its end), at least `2^20` and at most `2^22`.
///
/// ```
/// use tidemark::harness::driver::in_flight_bound;
/// assert_eq!(in_flight_bound(Some(1_000_000), 1_000_000, 1), 1 << 20);
/// assert_eq!(in_flight_bound(Some(4_000_000), 1_000_000_000, 1), 1 << 22);
/// assert_eq!(in_flight_bound(None, 1_000_000, 1), 1 << 20);
/// ```
pub fn in_flight_bound(rate: Option<u64>, epoch_ns: u64, peers: usize) -> u64 {
    let per_epoch = rate.map_or(0, |rate| {
        (rate as u128 * epoch_ns as u128 / 1_000_000_000 / peers.max(1) as u128) as u64
    });
    per_epoch
        .saturating_mul(2)
        .clamp(MIN_IN_FLIGHT, MAX_IN_FLIGHT)
}

/// What one worker measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WorkerOutcome {
    /// The latency recorder, as bytes (see [`Recorder::to_bytes`]).
    pub recorder: Vec<u8>,
    /// Measured events this worker sent: open loop, due in `[warm-up end, run end)`; closed
    /// loop, sent from the warm-up's end on (each counted once, also when sent again after a
    /// failure).
    pub measured_events: u64,
    /// Of them, those whose processing the output probe showed by the end of the drain (see
    /// the module's "Counting"; each counted once): at most `measured_events`.
    pub retired_events: u64,
    /// Measured time: from the end of the warm-up to the end of the run, or to where it was
    /// stopped (ns).
    pub measured_ns: u64,
    /// Events per second this worker's generator produced while filling its pool.
    pub generator_rate: f64,
    /// How far overdue this worker's oldest unsent event was at the end of the run's clock, or
    /// where the run was stopped (ns; before the drain).
    pub backlog_ns: u64,
    /// Whether this worker fell hopelessly behind (stopped early, or ended more than
    /// [`HOPELESS_NS`] behind).
    pub overloaded: bool,
    /// Where this worker's time went, per operator (`--profile` runs of the engine).
    pub profile: Option<WorkerProfile>,
    /// `--fail-at` runs: the failure as this worker saw it.
    #[serde(default)]
    pub failure: Option<FailureOutcome>,
    /// Why the worker stopped, where it could not go on (a failed restore).
    #[serde(default)]
    pub error: Option<String>,
}

/// One worker's failure and recovery (`--fail-at`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FailureOutcome {
    /// When the dataflow was torn down (ns after the start).
    pub at_ns: u64,
    /// The cut of the checkpoint it was rebuilt from; `None`: none was complete, it started
    /// over from the first event.
    pub cut_ns: Option<u64>,
    /// From the failure until the output had caught up with the offered input: everything
    /// sent up to the input time of the failure processed again, and nothing due unsent (ns);
    /// `None`: not within the run.
    pub recovery_ns: Option<u64>,
    /// Each epoch completed from 2 s before the failure on: `(due time of its end, latency)`
    /// (ns).
    pub timeline: Vec<(u64, u64)>,
}

/// How long before a failure the epochs' latencies are kept for the timeline (ns).
pub const TIMELINE_BEFORE_NS: u64 = 2_000_000_000;

/// What the open loop drives: a system that takes batches of events at a (non-decreasing) input
/// time and says how far it has processed them.
pub trait SystemUnderTest<E> {
    /// Hands `batch` to the system at the current input time, leaving `batch` empty.
    fn send(&mut self, batch: &mut Vec<E>);
    /// Advances the input time to `time`, above the current one: nothing sent later is below it.
    fn advance_to(&mut self, time: u64);
    /// Lets the system work for one scheduling step.
    fn step(&mut self);
    /// Whether everything sent at input times up to `time` has been processed (asked only for
    /// times below the current input time).
    fn passed(&self, time: u64) -> bool;
    /// Ends the input and lets the system process everything sent.
    fn finish(&mut self);
    /// Tears the system down as a crash would leave it (everything in flight and in memory
    /// lost) and rebuilds it from its last complete checkpoint; returns the checkpoint's cut
    /// (`None`: there was none, the system starts over) and this worker's input position there
    /// (how many of its events the checkpoint holds: the driver sends again from the next).
    /// The rebuilt input is at a time after the cut. Every worker calls it (it synchronizes
    /// them).
    ///
    /// Errors: a line saying why the system cannot recover (by default: it has no
    /// checkpoints).
    fn fail(&mut self) -> Result<(Option<u64>, u64), String> {
        Err("this system has no checkpoints to recover from".to_string())
    }
}

/// The timely dataflow on one worker, probed at its output.
pub struct EngineSystem<'w, E: Clone + 'static> {
    worker: &'w mut Worker,
    input: InputHandleVec<u64, E>,
    probe: ProbeHandle<u64>,
    /// Events sent so far: the input position.
    sent: u64,
    /// With checkpoints: where to record positions, and how to rebuild.
    recovery: Option<Recovery<E>>,
}

/// Builds the dataflow on a worker with the given checkpoint hooks: its input and probe.
type Build<E> =
    Box<dyn FnMut(&mut Worker, &Checkpoints) -> (InputHandleVec<u64, E>, ProbeHandle<u64>)>;

/// What a checkpointed engine needs to record input positions and to rebuild after a failure.
struct Recovery<E: Clone + 'static> {
    writer: Arc<Writer>,
    /// The input position at each cut the input passed, read by the checkpoint sink.
    positions: Rc<RefCell<BTreeMap<u64, u64>>>,
    /// The dataflow's index on the worker, for dropping it.
    dataflow: usize,
    /// 0 for the first dataflow, one more per rebuild.
    generation: u64,
    build: Build<E>,
}

impl<E: Clone + 'static> EngineSystem<'_, E> {
    /// Records the input position at every cut in `[from, to)`: the events sent so far are
    /// those at times up to the cut (the driver sends its staged events before it advances).
    fn note_cuts(&mut self, from: u64, to: u64) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let interval = recovery.writer.interval_ns().max(1);
        let mut cut = from
            .div_ceil(interval)
            .saturating_mul(interval)
            .max(interval);
        let mut positions = recovery.positions.borrow_mut();
        while cut < to {
            positions.insert(cut, self.sent);
            cut = cut.saturating_add(interval);
        }
    }
}

impl<E: Clone + 'static> SystemUnderTest<E> for EngineSystem<'_, E> {
    #[inline]
    fn send(&mut self, batch: &mut Vec<E>) {
        if !batch.is_empty() {
            self.sent += batch.len() as u64;
            // The input keeps the allocation; regrowing from nothing by doubling costs copies
            // and page faults: the next batch gets this one's capacity (a closed-loop batch,
            // `MAX_RATE_BATCH`, is larger than `MAX_SEND_BATCH`; regrowing it to that cost
            // the engine a tenth of its time per event on YSB and NEXMark q7).
            let capacity = batch.capacity().max(MAX_SEND_BATCH);
            self.input.send_batch(batch);
            batch.reserve(capacity);
        }
    }
    fn advance_to(&mut self, time: u64) {
        let from = *self.input.time();
        self.note_cuts(from, time);
        self.input.advance_to(time);
    }
    fn step(&mut self) {
        self.worker.step();
    }
    fn passed(&self, time: u64) -> bool {
        !self.probe.less_equal(&time)
    }
    fn finish(&mut self) {
        // Nothing is sent after this: every later cut holds every event sent. Only the first
        // cut at or after the input time can still be pending (the operators took the earlier
        // ones, or their positions were recorded as the input passed them).
        let from = *self.input.time();
        let interval = self.recovery.as_ref().map_or(1, |r| r.writer.interval_ns());
        self.note_cuts(from, from.saturating_add(interval));
        // Closing takes the handle: leave an unconnected one in its place.
        std::mem::replace(&mut self.input, InputHandleVec::new()).close();
        // The barrier's dataflow stays installed: wait for ours to drain, not for all of them.
        while !self.probe.done() {
            self.worker.step();
        }
    }
    /// Drops the dataflow (its operators' state, everything in flight) and the input, waits
    /// for every worker to have done so, reads the checkpoint in force (the writer commits
    /// nothing meanwhile), and builds the same dataflow again from it, its operators restored
    /// from their states and its input at the time after the cut.
    fn fail(&mut self) -> Result<(Option<u64>, u64), String> {
        let Some(recovery) = self.recovery.as_mut() else {
            return Err("--fail-at needs checkpoints (--checkpoint-dir)".to_string());
        };
        recovery.writer.freeze();
        self.worker.drop_dataflow(recovery.dataflow);
        drop(std::mem::replace(&mut self.input, InputHandleVec::new()));
        self.probe = ProbeHandle::new();
        // Every worker has torn its dataflow down and frozen the writer: the checkpoint in
        // force no longer changes.
        Barrier::new(self.worker).wait();
        let index = self.worker.index();
        let resume = recovery.writer.in_force(index).map_err(|e| e.to_string())?;
        // Every worker has read it before any rebuilt dataflow commits a new one.
        Barrier::new(self.worker).wait();
        recovery.generation += 1;
        let cut = resume.as_ref().map(|(cut, _)| *cut);
        let position = match &resume {
            Some((cut, snapshot)) => snapshot.position.ok_or_else(|| {
                format!("the checkpoint at {cut} ns holds no input position of worker {index}")
            })?,
            None => 0,
        };
        recovery.writer.restart(recovery.generation);
        recovery.positions = Rc::default();
        let checkpoints = recovery.writer.checkpoints(
            index,
            resume,
            recovery.generation,
            Rc::clone(&recovery.positions),
        );
        recovery.dataflow = self.worker.next_dataflow_index();
        let (input, probe) = (recovery.build)(self.worker, &checkpoints);
        checkpoints
            .restore_result()
            .map_err(|e| format!("restoring worker {index} from its checkpoint: {e}"))?;
        self.input = input;
        self.probe = probe;
        self.sent = position;
        if let Some(cut) = cut {
            self.input.advance_to(cut + 1);
        }
        Ok((cut, position))
    }
}

/// A workload's single-threaded baseline: processes synchronously as events arrive.
pub struct BaselineSystem<B, O> {
    baseline: B,
    out: Vec<O>,
}

impl<E, O, B: Baseline<E, O>> SystemUnderTest<E> for BaselineSystem<B, O> {
    #[inline]
    fn send(&mut self, batch: &mut Vec<E>) {
        self.baseline.process(batch, &mut self.out);
        // Outputs are produced, then dropped: the engine's outputs also end at its probe.
        self.out.clear();
    }
    fn advance_to(&mut self, time: u64) {
        self.baseline.advance(time, &mut self.out);
        self.out.clear();
    }
    fn step(&mut self) {}
    fn passed(&self, _time: u64) -> bool {
        // Synchronous: whatever was sent and advanced past is done.
        true
    }
    fn finish(&mut self) {
        self.baseline.advance(u64::MAX, &mut self.out);
        self.out.clear();
    }
}

/// A worker's pre-generated events, replayed in a cycle with new event times.
struct Replay<W: Workload> {
    pool: Vec<W::Event>,
    next: usize,
    /// The index in the worker's stream of the event at `next`.
    k: u64,
}

impl<W: Workload> Replay<W> {
    /// Event `k` of the worker's stream, stamped with `time_ns`. A cursor, not `k % len`: a
    /// division per event would cost more than the copy; only a jump (the driver sending
    /// again from a checkpoint's position) moves it.
    #[inline]
    fn next(&mut self, k: u64, time_ns: u64) -> W::Event {
        if k != self.k {
            self.next = (k % self.pool.len() as u64) as usize;
        }
        self.k = k + 1;
        let mut event = self.pool[self.next].clone();
        W::set_event_time(&mut event, time_ns);
        self.next += 1;
        if self.next == self.pool.len() {
            self.next = 0;
        }
        event
    }
}

/// The pool of one worker's events, and the generator's speed in events per second.
fn pool<W: Workload>(
    workload: &W,
    config: &RunConfig,
    index: usize,
    peers: usize,
) -> (Replay<W>, f64) {
    let start = Instant::now();
    let pool: Vec<W::Event> = workload
        .generator(config.seed, index, peers)
        .take(config.pool.max(1))
        .collect();
    let rate = pool.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    (
        Replay {
            pool,
            next: 0,
            k: 0,
        },
        rate,
    )
}

#[inline]
fn due(j: u64, rate: u64) -> u64 {
    // Saturates rather than wraps: an index this far out is past any run's end.
    u64::try_from(j as u128 * 1_000_000_000 / rate as u128).unwrap_or(u64::MAX)
}

fn bar(config: &RunConfig, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(config.duration_ns / 1_000_000);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message("warming up");
    bar
}

/// Events sent and not yet processed, by the input time they were sent at, in time order.
struct Pending {
    /// `(input time, events, measured events among them)`.
    entries: VecDeque<(u64, u64, u64)>,
    /// Their total.
    events: u64,
    /// Their total of measured events: those that count in the achieved rate once retired.
    measured: u64,
    epoch_ns: u64,
    /// The epoch whose sent events are all processed, waiting for the input to leave it.
    open: Option<u64>,
    /// Epochs ending at or before this are recorded: after a failure, epochs completed before
    /// it are not recorded again when the rebuilt dataflow completes them a second time.
    recorded_upto: u64,
    /// `--fail-at`: epochs ending from this time on are also kept, `(end, latency)`.
    timeline: Option<(u64, Vec<(u64, u64)>)>,
}

impl Pending {
    fn new(epoch_ns: u64) -> Pending {
        Pending {
            entries: VecDeque::new(),
            events: 0,
            measured: 0,
            epoch_ns,
            open: None,
            recorded_upto: 0,
            timeline: None,
        }
    }

    /// Nothing pending, after a failure lost it all; what was recorded stays recorded.
    fn clear(&mut self) {
        self.entries.clear();
        self.events = 0;
        self.measured = 0;
        self.open = None;
    }

    /// The epoch ending at `end` completed at `now`.
    fn complete(&mut self, end: u64, now: u64, recorder: &mut Recorder) {
        if end <= self.recorded_upto {
            return;
        }
        self.recorded_upto = end;
        recorder.record(end, now);
        if let Some((from, timeline)) = &mut self.timeline {
            if end >= *from {
                timeline.push((end, now.saturating_sub(end)));
            }
        }
    }

    /// `events` sent at input time `time`, `measured` of them measured.
    #[inline]
    fn count(&mut self, time: u64, events: u64, measured: u64) {
        self.events += events;
        self.measured += measured;
        match self.entries.back_mut() {
            Some((t, n, m)) if *t == time => {
                *n += events;
                *m += measured;
            }
            _ => self.entries.push_back((time, events, measured)),
        }
    }

    /// Retires what `passed` says is processed (of what was sent below `sent_upto`); records
    /// the latency of every epoch that is then complete, as completed at `now`. Returns the
    /// measured events retired.
    fn retire(
        &mut self,
        now: u64,
        sent_upto: u64,
        passed: impl Fn(u64) -> bool,
        recorder: &mut Recorder,
    ) -> u64 {
        let epoch_ns = self.epoch_ns;
        let mut measured = 0;
        while let Some(&(time, n, m)) = self.entries.front() {
            if time >= sent_upto || !passed(time) {
                break;
            }
            self.entries.pop_front();
            self.events -= n;
            self.measured -= m;
            measured += m;
            let epoch = time - time % epoch_ns;
            match self.open {
                // Something of a later epoch is done: the open one is complete.
                Some(open) if open != epoch => self.complete(open + epoch_ns, now, recorder),
                _ => {}
            }
            self.open = Some(epoch);
        }
        if let Some(open) = self.open {
            let more = self
                .entries
                .front()
                .is_some_and(|&(t, _, _)| t - t % epoch_ns == open);
            if !more && sent_upto >= open + epoch_ns {
                self.complete(open + epoch_ns, now, recorder);
                self.open = None;
            }
        }
        measured
    }
}

/// How long the drain at the end of a run ([`open_loop`]) may take to send and retire the
/// measured events (ns): [`HOPELESS_NS`], or two epochs if longer, plus the injected output
/// delay. An event not processed by then was more than a second late, as late as the unsent
/// events that make a run overloaded. Two epochs: a system that keeps up may work on an epoch
/// only once its input leaves the epoch, at the drain's start for the last one, and take up to
/// an epoch to do it. The injected delay holds every epoch back by that long by design.
fn drain_limit(config: &RunConfig) -> u64 {
    HOPELESS_NS
        .max(config.epoch_ns.saturating_mul(2))
        .saturating_add(config.inject_delay_ns)
}

/// The wall time since `start` (ns): the clock of a real run.
pub fn wall_clock(start: Instant) -> impl Fn() -> u64 {
    move || start.elapsed().as_nanos() as u64
}

/// The open loop over `system` for worker `index` of `peers`; `next(k, due)` is event `k` of
/// the worker's stream, stamped with `due` (`k` increases by one per call, except after a
/// failure, when it starts again from the checkpoint's position). `clock()` reads the time since
/// the run's start (ns; the run ends when it reaches the duration): [`wall_clock`] from the
/// instant the run's workers share, or a simulated one in tests.
///
/// With `config.fail_at_ns` (open loop only), the first loop at or after that time calls
/// [`SystemUnderTest::fail`] and goes on from the position it returns: the events from there
/// are sent again, on their original schedule, so that those already due are overdue and their
/// waiting counts in their epochs' latency. Epochs recorded before the failure are not recorded
/// again, events processed twice count once, and the run is not stopped as hopeless while it
/// catches up.
pub fn open_loop<E, S: SystemUnderTest<E>>(
    system: &mut S,
    mut next: impl FnMut(u64, u64) -> E,
    config: &RunConfig,
    index: usize,
    peers: usize,
    bar: &ProgressBar,
    clock: impl Fn() -> u64,
) -> WorkerOutcome {
    let mut recorder = Recorder::new(config.warmup_ns, config.intervals);
    if let Some(from) = config.tail_from_ns {
        recorder = recorder.with_tail(from);
    }
    let mut pending = Pending::new(config.epoch_ns);
    let fail_at = config.fail_at_ns.filter(|_| config.rate.is_some());
    if let Some(at) = fail_at {
        pending.timeline = Some((at.saturating_sub(TIMELINE_BEFORE_NS), Vec::new()));
    }
    let mut failure: Option<FailureOutcome> = None;
    // After a failure: the input time then, the stream index below which every event had
    // retired (those sent again are not counted as retired twice), and the stream index
    // reached (events below it are not counted as offered twice).
    let (mut input_at_failure, mut retired_k, mut high_k) = (0u64, 0u64, 0u64);
    let mut error = None;
    let (epoch_ns, duration, warmup) = (config.epoch_ns, config.duration_ns, config.warmup_ns);
    let bound = in_flight_bound(config.rate, epoch_ns, peers);
    let may_stop_at = warmup + MIN_MEASURED_NS.min(duration - warmup);
    let (mut k, mut measured_events, mut retired_events) = (0u64, 0u64, 0u64);
    // The system's input time: every event is sent at it, and it never exceeds an event's time.
    let mut sent_time = 0u64;
    let (mut last_bar, mut backlog, mut stopped) = (0u64, 0u64, None);
    // Open loop: whether an event of the measured part is still unsent at stream index `k`.
    let unsent = |k: u64| {
        config
            .rate
            .is_some_and(|rate| due(index as u64 + k * peers as u64, rate) < duration)
    };
    // From the end of the clock: until when the drain may go on, and the backlog at the end.
    let (mut drain_until, mut backlog_at_end) = (None, 0u64);
    let mut staged: Vec<E> = Vec::with_capacity(MAX_SEND_BATCH);
    loop {
        let now = clock();
        if now >= duration && drain_until.is_none() {
            drain_until = Some(now.saturating_add(drain_limit(config)));
            backlog_at_end = backlog;
        }
        let draining = drain_until.is_some();
        if let Some(until) = drain_until {
            // Done once every measured event is sent and retired and the input is at the end
            // (so that the last epoch's completion was seen).
            let done = pending.measured == 0 && sent_time >= duration && !unsent(k);
            if done || now >= until {
                break;
            }
        }
        if !draining && fail_at.is_some_and(|at| now >= at) && failure.is_none() {
            input_at_failure = sent_time;
            // Retirement is in sending order: the events below this index are retired.
            retired_k = k - pending.events;
            staged.clear();
            let (cut, position) = match system.fail() {
                Ok(resumed) => resumed,
                Err(why) => {
                    error = Some(why);
                    break;
                }
            };
            high_k = k;
            k = position;
            sent_time = cut.map_or(0, |cut| cut + 1);
            pending.clear();
            failure = Some(FailureOutcome {
                at_ns: now,
                cut_ns: cut,
                ..FailureOutcome::default()
            });
            continue;
        }
        match config.rate {
            Some(rate) => {
                // Sends what is due, within the in-flight bound and the per-loop budget.
                let mut allowed = bound.saturating_sub(pending.events).min(MAX_PER_LOOP);
                while allowed > 0 {
                    let due = due(index as u64 + k * peers as u64, rate);
                    if due > now || due >= duration {
                        break;
                    }
                    let epoch = due - due % epoch_ns;
                    if epoch > sent_time {
                        system.send(&mut staged);
                        system.advance_to(epoch);
                        sent_time = epoch;
                    }
                    staged.push(next(k, due));
                    if staged.len() == MAX_SEND_BATCH {
                        // Bounded batches: an engine that fell behind would otherwise get one
                        // huge fresh allocation per loop (page faults), and fall further behind.
                        system.send(&mut staged);
                    }
                    // Measured: due in the measured part; counted once when retired (not again
                    // when sent again after a failure), and offered once.
                    let measured = due >= warmup;
                    pending.count(sent_time, 1, u64::from(measured && k >= retired_k));
                    measured_events += u64::from(measured && k >= high_k);
                    k += 1;
                    allowed -= 1;
                }
            }
            // The closed loop's drain sends nothing.
            None if draining => {}
            None => {
                // Closed loop: a new batch while this worker's own events in flight are within
                // the bound. Not "once the probe has passed the input time": the probe is
                // global, so that cue held for the worker whose input lagged and never for the
                // other, and all the load went to one worker (experiments/README.md, 2-core
                // `--profile`, 2026-11-30).
                if pending.events < bound {
                    let epoch = now - now % epoch_ns;
                    if epoch > sent_time {
                        system.advance_to(epoch);
                        sent_time = epoch;
                    }
                    for _ in 0..MAX_RATE_BATCH {
                        staged.push(next(k, now));
                        k += 1;
                    }
                    // Measured: sent from the end of the warm-up on.
                    let measured = if now >= warmup {
                        MAX_RATE_BATCH as u64
                    } else {
                        0
                    };
                    pending.count(sent_time, MAX_RATE_BATCH as u64, measured);
                    measured_events += measured;
                }
            }
        }
        // Whole batches, not records, go into the input: no per-record push cost.
        system.send(&mut staged);
        // Advance the input as far as what is unsent allows: to the current epoch when all that
        // is due was sent; else to the epoch of the next unsent event, or within that epoch
        // when the in-flight bound is full of it (so that the probe can show progress in it).
        let now_epoch = now - now % epoch_ns;
        // In the drain the input goes to the end of the run and no further: an epoch that the
        // end cuts short is never completed, and not recorded.
        let horizon = if draining { duration } else { now_epoch };
        let target = match config.rate {
            // Closed loop: the current epoch; within it (to `now`, not above any event sent
            // later, which is stamped `now` or after) when the bound is full of this epoch
            // alone, as with large epochs, so that the probe can show progress in it.
            None => {
                let full_of_this_epoch = pending.events >= bound
                    && pending
                        .entries
                        .front()
                        .is_some_and(|&(t, _, _)| t - t % epoch_ns == now_epoch);
                if horizon > sent_time {
                    horizon
                } else if full_of_this_epoch && !draining {
                    now
                } else {
                    sent_time
                }
            }
            Some(rate) => {
                let next_due = due(index as u64 + k * peers as u64, rate);
                if next_due > now || next_due >= duration {
                    backlog = 0;
                    horizon
                } else {
                    backlog = now - next_due;
                    let epoch = next_due - next_due % epoch_ns;
                    if epoch > sent_time {
                        epoch
                    } else if pending.events >= bound {
                        next_due
                    } else {
                        sent_time
                    }
                }
            }
        };
        if target > sent_time {
            system.advance_to(target);
            sent_time = target;
        }
        system.step();
        let now = clock();
        retired_events += pending.retire(now, sent_time, |t| system.passed(t), &mut recorder);
        let recovering = match &mut failure {
            // Recovery is measured within the run's clock.
            Some(failure) if failure.recovery_ns.is_none() && !draining => {
                let caught_up =
                    sent_time > input_at_failure && backlog == 0 && system.passed(input_at_failure);
                if caught_up {
                    failure.recovery_ns = Some(now - failure.at_ns);
                }
                !caught_up
            }
            _ => false,
        };
        if backlog > HOPELESS_NS && now >= may_stop_at && !recovering && !draining {
            stopped = Some(now.min(duration));
            break;
        }
        if now - last_bar > 100_000_000 {
            bar.set_position(now / 1_000_000);
            let phase = if draining {
                "draining"
            } else if now < warmup {
                "warming up"
            } else {
                "measuring"
            };
            bar.set_message(if backlog > epoch_ns.max(10_000_000) {
                format!("{phase}, {:.1} s behind", backlog as f64 / 1e9)
            } else {
                phase.to_string()
            });
            last_bar = now;
        }
    }
    bar.finish_and_clear();
    // A run that reached the end of its clock (not stopped as hopeless, no error) was drained;
    // what its drain left, unsent or unprocessed, was more than the drain limit late.
    let drained = drain_until.is_some();
    let left = drained && (pending.measured > 0 || unsent(k));
    if !drained {
        backlog_at_end = backlog;
    }
    if error.is_none() {
        system.finish();
    }
    if let (Some(failure), Some((_, timeline))) = (&mut failure, pending.timeline.take()) {
        failure.timeline = timeline;
    }
    let end = stopped.unwrap_or(duration);
    WorkerOutcome {
        recorder: recorder.to_bytes(),
        measured_events,
        retired_events,
        measured_ns: end.saturating_sub(warmup),
        generator_rate: 0.0,
        backlog_ns: backlog_at_end,
        overloaded: stopped.is_some() || backlog_at_end > HOPELESS_NS || left,
        profile: None,
        failure,
        error,
    }
}

/// Runs `workload` through the engine on this worker, its stateful operators handing their
/// state to `writer` at each cut (`None`: no checkpoints), and rebuilt from the last
/// checkpoint at `config.fail_at_ns`; every worker must call it, each process's workers with
/// one `start` cell, empty, for the run.
///
/// The first worker of a process past the start barrier sets `start` to the instant its clock
/// starts from, and the others start theirs from it too. Each worker sees the barrier pass at
/// its own time, tens of milliseconds apart on a loaded machine. With clocks of their own, the
/// worker that saw it first stamped its events that much ahead of the others' input times, so
/// its events waited that long to retire and it sent one in-flight bound per wait, while the
/// late worker, unpaced, also ran on alone after the first had ended and closed its input: in
/// a short closed-loop run on 2 workers under load, one worker put 1.31 M of 7.52 M events into
/// its input (the closed-loop share test of `tests/bench_cli.rs`), and 3.1 M of 140 M with one
/// worker held back 500 ms. With one start instant the inputs' times agree and every worker
/// stops sending at the same instant. Across processes the instants differ by how late each
/// process sees the barrier.
pub fn run_engine<W: Workload>(
    worker: &mut Worker,
    workload: &W,
    config: &RunConfig,
    writer: Option<&Arc<Writer>>,
    start: &OnceLock<Instant>,
) -> WorkerOutcome {
    let (index, peers) = (worker.index(), worker.peers());
    let (replay, generator_rate) = pool(workload, config, index, peers);
    // Registered before the dataflow is built: its operators and channels take the logger then.
    let profiler = if config.profile {
        Profiler::start(worker)
    } else {
        None
    };
    let (workload, incremental, delay) =
        (workload.clone(), config.incremental, config.inject_delay_ns);
    let mut build: Build<W::Event> =
        Box::new(move |worker: &mut Worker, checkpoints: &Checkpoints| {
            let mut input = InputHandleVec::<u64, W::Event>::new();
            let probe = ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                let events = input.to_stream(scope);
                let output = if incremental {
                    // The view is up to date with an epoch once its update stream's frontier
                    // passed it.
                    let view = workload.incremental(events);
                    let view = view.expect("the caller checks has_incremental");
                    view.inner.map(|(row, _time, _diff)| row)
                } else {
                    workload.checkpointed(events, checkpoints)
                };
                let output = if delay > 0 {
                    hold_frontier(output, Duration::from_nanos(delay))
                } else {
                    output
                };
                output.probe_with(&probe);
            });
            (input, probe)
        });
    let positions: Rc<RefCell<BTreeMap<u64, u64>>> = Rc::default();
    let checkpoints = writer.map_or_else(Checkpoints::default, |writer| {
        writer.checkpoints(index, None, 0, Rc::clone(&positions))
    });
    let dataflow = worker.next_dataflow_index();
    let (input, probe) = build(worker, &checkpoints);
    let mut barrier = Barrier::new(worker);
    barrier.wait();
    let start = *start.get_or_init(Instant::now);
    let mut system = EngineSystem {
        worker,
        input,
        probe,
        sent: 0,
        recovery: writer.map(|writer| Recovery {
            writer: Arc::clone(writer),
            positions,
            dataflow,
            generation: 0,
            build,
        }),
    };
    let clock = (generator_rate, start);
    let outcome = replayed_loop(&mut system, replay, clock, config, index, peers);
    let profile = profiler.map(|p| p.finish(system.worker));
    WorkerOutcome { profile, ..outcome }
}

/// [`open_loop`] over `system` fed from `replay`, for worker (or baseline copy) `index` of
/// `peers`, with its progress bar (shown by index 0 only) and the generator's rate (events/s)
/// in the outcome, its clock running from `start`. The engine and the baselines both run
/// through it, after their start barrier.
fn replayed_loop<W: Workload, S: SystemUnderTest<W::Event>>(
    system: &mut S,
    mut replay: Replay<W>,
    (generator_rate, start): (f64, Instant),
    config: &RunConfig,
    index: usize,
    peers: usize,
) -> WorkerOutcome {
    let bar = bar(config, config.progress && index == 0);
    let outcome = open_loop(
        system,
        |k, due| replay.next(k, due),
        config,
        index,
        peers,
        &bar,
        wall_clock(start),
    );
    WorkerOutcome {
        generator_rate,
        ..outcome
    }
}

/// Runs `workers` independent copies of `workload`'s single-threaded baseline at once, one
/// thread each, through the same loop: copy `i` gets the share of the stream and of the offered
/// rate that engine worker `i` of `workers` gets (its generator and events `i, i + workers,
/// ...`), so that their summed throughput is the machine's parallel ceiling for the workload
/// (they share nothing: no exchange, no coordination). Threads start together behind a barrier
/// once every pool is generated, as the engine's workers do. One outcome per copy, in order.
///
/// Errors: the message of a copy that panicked.
pub fn run_baselines<W: Workload>(
    workload: &W,
    config: &RunConfig,
    workers: usize,
) -> Result<Vec<WorkerOutcome>, String> {
    let workers = workers.max(1);
    let start = std::sync::Barrier::new(workers);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|index| {
                let start = &start;
                scope.spawn(move || {
                    let (replay, generator_rate) = pool(workload, config, index, workers);
                    let mut system = BaselineSystem {
                        baseline: workload.baseline(),
                        out: Vec::new(),
                    };
                    start.wait();
                    // Each copy's own clock: they share nothing, and one that starts late still
                    // runs (and reports) the whole duration.
                    let clock = (generator_rate, Instant::now());
                    replayed_loop(&mut system, replay, clock, config, index, workers)
                })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(workers);
        for (index, thread) in threads.into_iter().enumerate() {
            let outcome = thread.join().map_err(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                format!("baseline {index} failed: {why}")
            })?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    })
}

/// Passes data through, and lets the output frontier follow the input frontier only `delay`
/// later in wall time: a known latency added to the output path.
pub fn hold_frontier<'scope, D: Clone + 'static>(
    stream: StreamVec<'scope, u64, D>,
    delay: Duration,
) -> StreamVec<'scope, u64, D> {
    let scope = stream.scope();
    stream
        .unary_frontier(
            timely::dataflow::channels::pact::Pipeline,
            "HoldFrontier",
            move |cap, info| {
                let activator = scope.activator_for(info.address);
                let mut held: Option<Capability<u64>> = Some(cap);
                // Frontier values seen, with the wall time they may be released at.
                let mut queue: VecDeque<(Option<u64>, Instant)> = VecDeque::new();
                let mut last: Option<Option<u64>> = None;
                move |(input, frontier), output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for batch in data {
                            session.give_container(batch);
                        }
                    });
                    let now = Instant::now();
                    let current = frontier.frontier().first().copied();
                    if last != Some(current) {
                        queue.push_back((current, now + delay));
                        last = Some(current);
                    }
                    while let Some(&(value, release)) = queue.front() {
                        if release > now {
                            activator.activate_after(release - now);
                            break;
                        }
                        queue.pop_front();
                        match (value, held.as_mut()) {
                            (Some(time), Some(cap)) => cap.downgrade(&time),
                            (None, _) => held = None,
                            _ => {}
                        }
                    }
                }
            },
        )
        .container::<Vec<D>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system that counts what it is sent and processes all of it (`done`) or none of it;
    /// on failure it resumes from `resume` (a checkpoint's cut and position), if given.
    #[derive(Default)]
    struct Mock {
        sent: u64,
        done: bool,
        resume: Option<(Option<u64>, u64)>,
        failed: bool,
    }

    impl SystemUnderTest<u64> for Mock {
        fn send(&mut self, batch: &mut Vec<u64>) {
            self.sent += batch.len() as u64;
            batch.clear();
        }
        fn advance_to(&mut self, _time: u64) {}
        fn step(&mut self) {}
        fn passed(&self, _time: u64) -> bool {
            self.done
        }
        fn finish(&mut self) {}
        fn fail(&mut self) -> Result<(Option<u64>, u64), String> {
            self.failed = true;
            self.resume.ok_or_else(|| "no checkpoint".to_string())
        }
    }

    fn config(rate: u64, duration_ns: u64, warmup_ns: u64) -> RunConfig {
        RunConfig {
            pool: 1,
            ..RunConfig::open_loop(rate, duration_ns, warmup_ns)
        }
    }

    #[test]
    fn a_system_that_keeps_up_gets_exactly_what_is_due() {
        let mut system = Mock {
            done: true,
            ..Mock::default()
        };
        let config = config(100_000, 300_000_000, 100_000_000);
        let outcome = open_loop(
            &mut system,
            |_, due| due,
            &config,
            0,
            1,
            &ProgressBar::hidden(),
            wall_clock(Instant::now()),
        );
        // Events 0..30 000 are due before the end (event j at j * 10 us): all are sent (those
        // due after the last loop's clock reading in the drain), none due after it; 20 000 of
        // them in the measured part, all retired.
        assert_eq!(system.sent, 30_000);
        assert_eq!(outcome.measured_events, 20_000);
        assert_eq!(outcome.retired_events, 20_000);
        assert!(!outcome.overloaded);
        assert_eq!(outcome.measured_ns, 200_000_000);
        let recorder = Recorder::from_bytes(&outcome.recorder);
        assert!(recorder.samples() > 0);
    }

    /// Closed loop: a worker is judged by its own events in flight, not by a global cue. One
    /// whose events are never processed gets exactly the bound; one that processes everything
    /// gets more than the bound within the run.
    ///
    /// On a clock that moves 100 us a reading: on the wall clock, a machine loaded enough to
    /// hold the loop past the 100 ms warm-up before it had sent the bound made the run send
    /// in the measured part, and so end overloaded with its events unprocessed (seen at a
    /// load average of 6 on 2 cores).
    #[test]
    fn the_closed_loop_sends_while_its_own_events_in_flight_are_within_the_bound() {
        let mut closed = config(1, 1_000_000_000, 100_000_000);
        closed.rate = None;
        let bound = in_flight_bound(None, closed.epoch_ns, 2);
        let run = |done| {
            let mut system = Mock {
                done,
                ..Mock::default()
            };
            let clock = std::cell::Cell::new(0);
            let outcome = open_loop(
                &mut system,
                |_, due| due,
                &closed,
                1,
                2,
                &ProgressBar::hidden(),
                || clock.replace(clock.get() + 100_000),
            );
            (system.sent, outcome)
        };
        let (sent, outcome) = run(false);
        assert_eq!(sent, bound);
        assert_eq!(outcome.retired_events, 0);
        assert!(!outcome.overloaded);
        let (sent, outcome) = run(true);
        assert!(sent > bound, "{sent}");
        assert!(outcome.retired_events > 0);
    }

    #[test]
    fn a_stuck_system_gets_at_most_the_bound_and_the_run_stops_early() {
        let mut system = Mock::default();
        let (duration, warmup) = (30_000_000_000, 200_000_000);
        let config = config(1_000_000_000, duration, warmup);
        let outcome = open_loop(
            &mut system,
            |_, due| due,
            &config,
            0,
            1,
            &ProgressBar::hidden(),
            wall_clock(Instant::now()),
        );
        assert_eq!(
            system.sent,
            in_flight_bound(Some(1_000_000_000), 1_000_000, 1)
        );
        assert!(outcome.overloaded);
        // Stopped once more than a second behind and a second measured, not after 30 s.
        assert!(outcome.measured_ns < duration - warmup, "{outcome:?}");
        assert!(outcome.backlog_ns > HOPELESS_NS);
        assert_eq!(outcome.retired_events, 0);
        assert_eq!(Recorder::from_bytes(&outcome.recorder).samples(), 0);
    }

    /// After a failure the driver sends again from the checkpoint's position, in order, on the
    /// original schedule, and counts no event twice.
    #[test]
    fn after_a_failure_the_stream_resumes_at_the_checkpoint_s_position() {
        let mut system = Mock {
            done: true,
            resume: Some((Some(50_000_000), 5_100)),
            ..Mock::default()
        };
        let config = RunConfig {
            fail_at_ns: Some(150_000_000),
            ..config(100_000, 300_000_000, 0)
        };
        let mut ks = Vec::new();
        let outcome = open_loop(
            &mut system,
            |k, due| {
                ks.push(k);
                due
            },
            &config,
            0,
            1,
            &ProgressBar::hidden(),
            wall_clock(Instant::now()),
        );
        assert!(system.failed);
        let failure = outcome.failure.clone().expect("the run failed");
        assert_eq!(failure.cut_ns, Some(50_000_000));
        assert!(failure.at_ns >= 150_000_000);
        // Sent in order from 0, then again in order from the position.
        let restart = ks
            .windows(2)
            .position(|w| w[1] != w[0] + 1)
            .expect("a restart")
            + 1;
        assert!(ks[..restart]
            .iter()
            .enumerate()
            .all(|(i, &k)| k == i as u64));
        assert_eq!(ks[restart], 5_100);
        assert!(ks[restart..].windows(2).all(|w| w[1] == w[0] + 1));
        // Each event is counted once: the offered ones are the distinct indices sent.
        let distinct = ks.iter().max().unwrap() + 1;
        assert_eq!(outcome.measured_events, distinct, "{outcome:?}");
        assert!(outcome.retired_events <= distinct, "{outcome:?}");
        assert!(distinct <= 30_000, "{distinct}");
    }

    /// A system on a simulated clock: each step moves the clock on by `step_ns` and then
    /// processes up to `capacity(clock)` of the events sent, oldest first, whatever the input
    /// time; the probe passes an input time once every event sent at or before it is
    /// processed. Deterministic: nothing reads the wall clock.
    struct Sim {
        clock: Rc<std::cell::Cell<u64>>,
        step_ns: u64,
        capacity: Box<dyn Fn(u64) -> u64>,
        /// Events sent and not yet processed, by input time.
        queue: VecDeque<(u64, u64)>,
        input: u64,
    }

    impl SystemUnderTest<u64> for Sim {
        fn send(&mut self, batch: &mut Vec<u64>) {
            let n = batch.len() as u64;
            batch.clear();
            match self.queue.back_mut() {
                _ if n == 0 => {}
                Some((t, m)) if *t == self.input => *m += n,
                _ => self.queue.push_back((self.input, n)),
            }
        }
        fn advance_to(&mut self, time: u64) {
            self.input = time;
        }
        fn step(&mut self) {
            let now = self.clock.get() + self.step_ns;
            self.clock.set(now);
            let mut budget = (self.capacity)(now);
            while let Some(front) = self.queue.front_mut() {
                let take = budget.min(front.1);
                front.1 -= take;
                budget -= take;
                if front.1 > 0 {
                    break;
                }
                self.queue.pop_front();
            }
        }
        fn passed(&self, time: u64) -> bool {
            self.queue.front().is_none_or(|&(t, _)| t > time)
        }
        fn finish(&mut self) {
            self.queue.clear();
        }
    }

    /// Runs `config` on worker 0 of 1 against a [`Sim`] stepping `step_ns` with `capacity`;
    /// returns the outcome and the simulated time at the end.
    fn simulate(
        config: &RunConfig,
        step_ns: u64,
        capacity: impl Fn(u64) -> u64 + 'static,
    ) -> (WorkerOutcome, u64) {
        let clock = Rc::new(std::cell::Cell::new(0));
        let mut sim = Sim {
            clock: Rc::clone(&clock),
            step_ns,
            capacity: Box::new(capacity),
            queue: VecDeque::new(),
            input: 0,
        };
        let read = Rc::clone(&clock);
        let outcome = open_loop(
            &mut sim,
            |_, due| due,
            config,
            0,
            1,
            &ProgressBar::hidden(),
            move || read.get(),
        );
        (outcome, clock.get())
    }

    /// Achieved rate in events per second, as the report computes it from one worker.
    fn achieved(outcome: &WorkerOutcome) -> f64 {
        outcome.retired_events as f64 / (outcome.measured_ns as f64 / 1e9)
    }

    /// Slow in the warm-up only (half the offered rate), fast after it: the warm-up's backlog,
    /// worked off in the measured part, is not counted, so the achieved rate is the offered
    /// rate, not more (main's driver counted the backlog too: 125 k/s of 100 k/s offered).
    #[test]
    fn a_warm_up_backlog_does_not_count_in_the_achieved_rate() {
        let config = config(100_000, 3_000_000_000, 1_000_000_000);
        // 10 events fall due per 100 us step; 5 are processed per step in the warm-up.
        let (outcome, _) = simulate(&config, 100_000, |now| {
            if now < 1_000_000_000 {
                5
            } else {
                1_000
            }
        });
        // Events 100 000 to 299 999 are due in the measured part; all are sent (those due after
        // the last loop's clock reading in the drain) and retired.
        assert_eq!(outcome.measured_events, 200_000, "{outcome:?}");
        assert_eq!(outcome.retired_events, 200_000, "{outcome:?}");
        assert!(achieved(&outcome) <= 100_000.0, "{}", achieved(&outcome));
        assert!(!outcome.overloaded);
        // Every measured epoch is recorded, the last one completed in the drain: those ending
        // at 1.001 s to 3.000 s (the one ending at 1.000 s holds warm-up events only).
        assert_eq!(Recorder::from_bytes(&outcome.recorder).samples(), 2_000);
    }

    /// 500 ms epochs on a system that keeps up: the last epoch retires only once the input
    /// leaves it, after the clock ends; the drain counts it. Without a warm-up, where main's
    /// driver (counting what retired on the clock) read 0.75 of the offered rate: with one,
    /// its count of the warm-up's last epoch happened to make up for the end's.
    #[test]
    fn long_epochs_on_a_system_that_keeps_up_achieve_the_offered_rate() {
        let config = RunConfig {
            epoch_ns: 500_000_000,
            ..config(100_000, 2_000_000_000, 0)
        };
        let (outcome, _) = simulate(&config, 100_000, |_| 1_000);
        let ratio = achieved(&outcome) / 100_000.0;
        assert!((0.98..=1.0).contains(&ratio), "{ratio} {outcome:?}");
        assert!(!outcome.overloaded);
        assert_eq!(Recorder::from_bytes(&outcome.recorder).samples(), 4);
    }

    /// Closed loop: what is counted is what was sent from the warm-up's end on, drained at the
    /// end; not the warm-up's events (the bound's worth, held up until the warm-up ended).
    #[test]
    fn the_closed_loop_counts_the_events_sent_in_the_measured_part() {
        let mut closed = config(1, 300_000_000, 100_000_000);
        closed.rate = None;
        let (outcome, _) = simulate(&closed, 1_000_000, |now| {
            if now < 100_000_000 {
                0
            } else {
                u64::MAX
            }
        });
        assert!(outcome.measured_events > 0);
        assert_eq!(
            outcome.retired_events, outcome.measured_events,
            "{outcome:?}"
        );
    }

    /// A system that stops processing before the end: the drain waits for it a bounded time
    /// only, the events it did not process are not counted, and the run is overloaded.
    #[test]
    fn the_drain_is_bounded_and_what_it_leaves_marks_the_run_overloaded() {
        let config = config(100_000, 1_000_000_000, 0);
        let (outcome, end) = simulate(
            &config,
            100_000,
            |now| {
                if now < 900_000_000 {
                    1_000
                } else {
                    0
                }
            },
        );
        // Sent: every event due before the end (the last 9 in the drain). Processed: those sent
        // before the step that ends at 900 ms, due up to 899.8 ms; retired by whole input times
        // (1 ms epochs here): those of epochs 0 to 898 ms, 89 900.
        assert_eq!(outcome.measured_events, 100_000);
        assert_eq!(outcome.retired_events, 89_900, "{outcome:?}");
        assert!(outcome.overloaded, "{outcome:?}");
        assert!(
            end <= 1_000_000_000 + drain_limit(&config) + 100_000,
            "{end}"
        );
    }

    #[test]
    fn pending_records_an_epoch_once_all_of_it_is_processed() {
        let mut pending = Pending::new(10);
        let mut recorder = Recorder::new(0, false);
        // Epoch [0, 10) sent in two parts (at 0, then within the epoch at 4), epoch 10 at 10.
        pending.count(0, 3, 3);
        pending.count(4, 2, 1);
        pending.count(10, 1, 1);
        // The input is at 4: what was sent at 0 is processed, the epoch is not complete.
        assert_eq!(pending.retire(20, 4, |_| true, &mut recorder), 3);
        assert_eq!(recorder.samples(), 0);
        // The input left the epoch: the rest of it is processed, and it is complete.
        // Of the 2 events sent at 4, 1 is measured: the measured ones are what counts.
        assert_eq!(pending.retire(25, 10, |t| t < 10, &mut recorder), 1);
        assert_eq!(recorder.samples(), 1);
        assert_eq!(recorder.percentiles().max, Some(15));
        assert_eq!((pending.events, pending.measured), (1, 1));
    }
}
