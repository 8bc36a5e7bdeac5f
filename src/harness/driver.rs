//! The open-loop driver: feeds a workload at an offered rate and measures epoch latency.
//!
//! Method (DESIGN.md, "The harness"): event `j` of the workload's single logical stream is due
//! at `j * 1e9 / rate` nanoseconds after the common start (workers start together behind a
//! barrier; worker `w` of `P` sends events `w, w + P, ...`). Each event is stamped with its due
//! time as event time and sent at its epoch (`due - due % epoch`). Every loop sends everything
//! due, advances the input to the current epoch and steps the worker. An epoch `[e, e + epoch)`
//! is due at `e + epoch`; its latency is the wall time at which the output probe has passed `e`
//! minus that due time. Queueing therefore counts (no coordinated omission): an engine that falls
//! behind sends late and retires late, and the latency shows it.
//!
//! Events are pre-generated into a pool per worker before the timed part (generation is not the
//! system under test) and replayed with shifted event times. With `rate = None` the driver runs
//! closed loop: a batch whenever the engine has caught up, for maximum throughput.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Capability, Operator, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};
use timely::synchronization::Barrier;
use timely::worker::Worker;

use super::recorder::Recorder;
use crate::workloads::{Baseline, Workload};

/// What one run measures and how.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Offered events per second over all workers; `None` runs closed loop at maximum speed.
    pub rate: Option<u64>,
    /// Length of the run, warm-up included.
    pub duration_ns: u64,
    /// Epochs due before this are not measured.
    pub warmup_ns: u64,
    /// Epoch length: the granularity of timestamps and of latency measurement.
    pub epoch_ns: u64,
    /// Seed of the generators.
    pub seed: u64,
    /// Events pre-generated per worker and replayed.
    pub pool: usize,
    /// Keep per-second histograms (for interval logs and the sustainability check).
    pub intervals: bool,
    /// Holds the output frontier back by this long (a calibration hook for tests).
    pub inject_delay_ns: u64,
    /// Show a progress bar (on one worker).
    pub progress: bool,
    /// Run the workload's incremental (differential) version instead of its timely dataflow.
    pub incremental: bool,
}

/// Events per closed-loop batch per worker.
const MAX_RATE_BATCH: usize = 16_384;
/// Most events handed to the input at once in open loop.
const MAX_SEND_BATCH: usize = 4_096;

/// What one worker measured.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WorkerOutcome {
    /// The latency recorder, as bytes (see [`Recorder::to_bytes`]).
    pub recorder: Vec<u8>,
    /// Events due after the warm-up and sent by this worker.
    pub measured_events: u64,
    /// Events of measured epochs that the probe had passed by the end of the run.
    pub retired_events: u64,
    /// Measured time: from the end of the warm-up to the end of the run (ns).
    pub measured_ns: u64,
    /// Events per second this worker's generator produced while filling its pool.
    pub generator_rate: f64,
}

/// A worker's pre-generated events, replayed in a cycle with new event times.
struct Replay<W: Workload> {
    pool: Vec<W::Event>,
    next: usize,
}

impl<W: Workload> Replay<W> {
    /// The next event, stamped with `time_ns`. A cursor, not `k % len`: a division per event
    /// would cost more than the copy.
    #[inline]
    fn next(&mut self, time_ns: u64) -> W::Event {
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
    (Replay { pool, next: 0 }, rate)
}

fn due(j: u64, rate: u64) -> u64 {
    (j as u128 * 1_000_000_000 / rate as u128) as u64
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
    bar
}

/// Epochs sent but not yet retired, with their event counts.
struct Pending {
    epochs: VecDeque<(u64, u64)>,
    epoch_ns: u64,
}

impl Pending {
    fn count(&mut self, epoch: u64) {
        self.count_many(epoch, 1);
    }

    fn count_many(&mut self, epoch: u64, events: u64) {
        match self.epochs.back_mut() {
            Some((e, n)) if *e == epoch => *n += events,
            _ => self.epochs.push_back((epoch, events)),
        }
    }

    /// Retires every epoch that is complete by `now` and passed by `passed`, recording latency.
    fn retire(
        &mut self,
        now: u64,
        passed: impl Fn(u64) -> bool,
        recorder: &mut Recorder,
        warmup: u64,
    ) -> u64 {
        let mut events = 0;
        while let Some(&(epoch, n)) = self.epochs.front() {
            let epoch_due = epoch + self.epoch_ns;
            if epoch_due > now || !passed(epoch) {
                break;
            }
            recorder.record(epoch_due, now);
            if epoch_due > warmup {
                events += n;
            }
            self.epochs.pop_front();
        }
        events
    }
}

/// Hands `staged` to the input and leaves it with room for a full batch again: the input keeps
/// the allocation, and regrowing from nothing by doubling costs copies and page faults.
fn send<D: Clone + 'static>(input: &mut InputHandleVec<u64, D>, staged: &mut Vec<D>) {
    if !staged.is_empty() {
        input.send_batch(staged);
        staged.reserve(MAX_SEND_BATCH);
    }
}

/// Runs `workload` through the engine on this worker; every worker must call it.
pub fn run_engine<W: Workload>(
    worker: &mut Worker,
    workload: &W,
    config: &RunConfig,
) -> WorkerOutcome {
    let (index, peers) = (worker.index(), worker.peers());
    let (mut replay, generator_rate) = pool(workload, config, index, peers);
    let mut input = InputHandleVec::<u64, W::Event>::new();
    let probe = ProbeHandle::new();
    let delay = config.inject_delay_ns;
    worker.dataflow::<u64, _, _>(|scope| {
        let events = input.to_stream(scope);
        let output = if config.incremental {
            // The view is up to date with an epoch once its update stream's frontier passed it.
            let view = workload.incremental(events);
            let view = view.expect("the caller checks has_incremental");
            view.inner.map(|(row, _time, _diff)| row)
        } else {
            workload.dataflow(events)
        };
        let output = if delay > 0 {
            hold_frontier(output, Duration::from_nanos(delay))
        } else {
            output
        };
        output.probe_with(&probe);
    });
    let mut recorder = Recorder::new(config.warmup_ns, config.intervals);
    let mut pending = Pending {
        epochs: VecDeque::new(),
        epoch_ns: config.epoch_ns,
    };
    let (epoch_ns, duration) = (config.epoch_ns, config.duration_ns);
    let bar = bar(config, config.progress && index == 0);
    let mut barrier = Barrier::new(worker);
    barrier.wait();

    let start = Instant::now();
    let elapsed = |start: &Instant| start.elapsed().as_nanos() as u64;
    let (mut k, mut measured_events, mut retired_events) = (0u64, 0u64, 0u64);
    let mut last_bar = 0;
    let mut staged: Vec<W::Event> = Vec::new();
    loop {
        let now = elapsed(&start);
        if now >= duration {
            break;
        }
        match config.rate {
            Some(rate) => loop {
                let due = due(index as u64 + k * peers as u64, rate);
                if due > now || due >= duration {
                    break;
                }
                let epoch = due - due % epoch_ns;
                if epoch > *input.time() {
                    send(&mut input, &mut staged);
                    input.advance_to(epoch);
                }
                staged.push(replay.next(due));
                if staged.len() == MAX_SEND_BATCH {
                    // Bounded batches: an engine that fell behind would otherwise get one huge
                    // fresh allocation per loop (page faults), and fall further behind.
                    send(&mut input, &mut staged);
                }
                pending.count(epoch);
                measured_events += u64::from(due >= config.warmup_ns);
                k += 1;
            },
            None => {
                // Closed loop: a new batch once everything sent so far has been processed.
                if !probe.less_than(input.time()) {
                    let epoch = now - now % epoch_ns;
                    if epoch > *input.time() {
                        input.advance_to(epoch);
                    }
                    for _ in 0..MAX_RATE_BATCH {
                        staged.push(replay.next(now));
                        k += 1;
                    }
                    pending.count_many(epoch, MAX_RATE_BATCH as u64);
                    measured_events += if now >= config.warmup_ns {
                        MAX_RATE_BATCH as u64
                    } else {
                        0
                    };
                }
            }
        }
        // Whole batches, not records, go into the input: no per-record push cost.
        send(&mut input, &mut staged);
        let epoch = now - now % epoch_ns;
        if epoch > *input.time() {
            input.advance_to(epoch);
        }
        worker.step();
        let now = elapsed(&start);
        let sent_upto = *input.time();
        retired_events += pending.retire(
            now.min(duration),
            |e| e < sent_upto && !probe.less_equal(&e),
            &mut recorder,
            config.warmup_ns,
        );
        if now - last_bar > 100_000_000 {
            bar.set_position(now / 1_000_000);
            last_bar = now;
        }
    }
    bar.finish_and_clear();
    input.close();
    // The barrier's dataflow stays installed: wait for ours to drain, not for all of them.
    while !probe.done() {
        worker.step();
    }
    WorkerOutcome {
        recorder: recorder.to_bytes(),
        measured_events,
        retired_events,
        measured_ns: duration - config.warmup_ns,
        generator_rate,
    }
}

/// Runs `workload`'s single-threaded baseline through the same loop (one worker, no timely).
pub fn run_baseline<W: Workload>(workload: &W, config: &RunConfig) -> WorkerOutcome {
    let (mut replay, generator_rate) = pool(workload, config, 0, 1);
    let mut baseline = workload.baseline();
    let mut recorder = Recorder::new(config.warmup_ns, config.intervals);
    let mut pending = Pending {
        epochs: VecDeque::new(),
        epoch_ns: config.epoch_ns,
    };
    let (epoch_ns, duration) = (config.epoch_ns, config.duration_ns);
    let bar = bar(config, config.progress);
    let (mut batch, mut out) = (Vec::new(), Vec::new());
    let mut frontier = 0;
    let start = Instant::now();
    let elapsed = |start: &Instant| start.elapsed().as_nanos() as u64;
    let (mut k, mut measured_events, mut retired_events) = (0u64, 0u64, 0u64);
    let mut last_bar = 0;
    let advance = |baseline: &mut W::Baseline,
                   batch: &mut Vec<W::Event>,
                   out: &mut Vec<W::Output>,
                   to: u64| {
        baseline.process(batch, out);
        baseline.advance(to, out);
        // Outputs are produced, then dropped: the engine's outputs also end at its probe.
        out.clear();
    };
    loop {
        let now = elapsed(&start);
        if now >= duration {
            break;
        }
        let mut send = |due: u64, batch: &mut Vec<W::Event>, pending: &mut Pending, k: &mut u64| {
            batch.push(replay.next(due));
            pending.count(due - due % epoch_ns);
            *k += 1;
        };
        match config.rate {
            Some(rate) => loop {
                let due = due(k, rate);
                if due > now || due >= duration {
                    break;
                }
                let epoch = due - due % epoch_ns;
                if epoch > frontier {
                    advance(&mut baseline, &mut batch, &mut out, epoch);
                    frontier = epoch;
                }
                send(due, &mut batch, &mut pending, &mut k);
                measured_events += u64::from(due >= config.warmup_ns);
            },
            None => {
                for _ in 0..MAX_RATE_BATCH {
                    send(now, &mut batch, &mut pending, &mut k);
                }
                measured_events += if now >= config.warmup_ns {
                    MAX_RATE_BATCH as u64
                } else {
                    0
                };
            }
        }
        let epoch = now - now % epoch_ns;
        if epoch > frontier {
            advance(&mut baseline, &mut batch, &mut out, epoch);
            frontier = epoch;
        }
        let now = elapsed(&start);
        retired_events += pending.retire(
            now.min(duration),
            |e| e < frontier,
            &mut recorder,
            config.warmup_ns,
        );
        if now - last_bar > 100_000_000 {
            bar.set_position(now / 1_000_000);
            last_bar = now;
        }
    }
    bar.finish_and_clear();
    advance(&mut baseline, &mut batch, &mut out, u64::MAX);
    WorkerOutcome {
        recorder: recorder.to_bytes(),
        measured_events,
        retired_events,
        measured_ns: duration - config.warmup_ns,
        generator_rate,
    }
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
