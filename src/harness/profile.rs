//! `tidemark bench --profile`: where each worker's time goes, per operator, read from timely's
//! own event log (the `"timely"` log stream, [`TimelyEvent`]), not from hand-placed timers.
//!
//! On each worker a logger is registered before the run's dataflow is built (timely hands its
//! logger to operators and channels as they are created), and removed after the run:
//!
//! * `Operates` names each operator and gives its address (its scope's address and its index);
//! * `Schedule` start/stop pairs give each operator's *own* time: the time between its start and
//!   its stop, less the time of the operators scheduled inside it (a scope's children), so that
//!   no time is counted twice and the shares of one worker sum to at most 1;
//! * `Channels` maps each channel to its source and target operators, and `Messages` gives the
//!   records on it: records *out* of an operator are those it sent (to every worker), records
//!   *in* those it received (from every worker), summed over its channels.
//!
//! * the progress tracker's own log (`"timely/reachability/u64"`, [`TrackerEvent`]) gives every
//!   change in the pointstamps of each scope: capabilities held at operators' outputs and
//!   messages pending at their inputs, from every worker as this worker's tracker sees them.
//!   From it, an operator *holds the frontier back* while it holds a capability at a time that
//!   everything upstream of it (its pending input included) has already passed: the time
//!   between its input frontier passing a time and its output frontier passing it. Operators
//!   with no inputs (the driver's `Input`) are where time is offered, not held: they are left
//!   out, and the frontier-lag log compares them with the dataflow's output instead. Every
//!   [`LAG_INTERVAL`] of the log's time the log records the input time offered (the least time
//!   an input still holds) and the output frontier (the least pointstamp in the dataflow,
//!   which every path to the output passes), both event times, and the largest lag between
//!   them seen in the interval.
//!
//! A share is the operator's own time over the worker's profiled time: from the first scheduling
//! to the last one the log saw (the whole run, warm-up included, and the end of the run where
//! the worker drains its input). The rest is time outside any operator: the driver's loop, the
//! generator's replay, and timely's progress exchange between steps.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
use timely::progress::reachability::logging::{TrackerEvent, TrackerEventBuilder};
use timely::worker::Worker;

/// One operator's part of one worker's time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorProfile {
    /// The operator's name as timely logs it (the name given when it was built).
    pub name: String,
    /// Its address: the indices of its enclosing scopes and its own index.
    pub address: Vec<usize>,
    /// Its own time over the worker's profiled time (0 to 1).
    pub share: f64,
    /// Its own time (ns): scheduled, less its children's time.
    pub busy_ns: u64,
    /// How often it was scheduled.
    pub schedules: u64,
    /// Records it received on its input channels, from every worker.
    pub records_in: u64,
    /// Records it sent on its output channels, to every worker (counted once per channel).
    pub records_out: u64,
    /// How long (ns, in total) it held the frontier back: held a capability at a time its
    /// input frontier (everything upstream, its pending input included) had passed. 0 for
    /// operators without inputs.
    pub frontier_hold_ns: u64,
    /// The longest single such hold (ns).
    pub frontier_hold_max_ns: u64,
}

/// One interval of the frontier-lag log: the input time offered against the output frontier,
/// both event times (ns), as one worker's progress tracker saw them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LagInterval {
    /// The interval's end (ns of the worker's log time, from its start).
    pub at_ns: u64,
    /// The least time an input still held at the interval's last change (`None`: every input
    /// was closed).
    pub offered: Option<u64>,
    /// The least pointstamp of the dataflow then: the output frontier (`None`: empty, done).
    pub frontier: Option<u64>,
    /// The largest `offered - frontier` seen in the interval (ns of event time; 0 when the
    /// output was caught up all along).
    pub max_lag_ns: u64,
}

/// One worker's profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerProfile {
    /// The worker's index (over all processes).
    pub worker: usize,
    /// Profiled time (ns): from the first scheduling the log saw to the last.
    pub profiled_ns: u64,
    /// Its operators that were scheduled or moved records, by descending share.
    pub operators: Vec<OperatorProfile>,
    /// The frontier-lag log, one row per [`LAG_INTERVAL`] in which progress changed, in order.
    pub frontier_lag: Vec<LagInterval>,
}

/// The progress trackers' log of `u64`-timed scopes (timely names it by the time type).
const PROGRESS_LOG: &str = "timely/reachability/u64";

/// Length of one interval of the frontier-lag log.
pub const LAG_INTERVAL: Duration = Duration::from_millis(100);

/// Pointstamp counts at one operator's ports: port to time to count.
type Ports = HashMap<usize, BTreeMap<u64, i64>>;

/// One scope's progress, as its tracker's log tells it.
#[derive(Default)]
struct Progress {
    /// Per node: capabilities held at its outputs (sources).
    sources: HashMap<usize, Ports>,
    /// Per node: messages pending at its inputs (targets).
    targets: HashMap<usize, Ports>,
    /// Per node, the nodes upstream of it (not itself), and the channels counted when this was
    /// derived (new channels derive it again).
    upstream: (usize, HashMap<usize, Vec<usize>>),
    /// Nodes holding the frontier back, since when (log time).
    holding: HashMap<usize, Duration>,
    /// Per node: total and longest hold.
    held: HashMap<usize, (Duration, Duration)>,
    /// The frontier-lag log by interval index: (offered, frontier, largest lag).
    lag: BTreeMap<u64, (Option<u64>, Option<u64>, u64)>,
    /// The log time of the last change.
    last: Duration,
}

/// The least time with a positive count at any of `ports` (counts can be transiently negative
/// while other workers' progress is in flight).
fn least(ports: Option<&Ports>) -> Option<u64> {
    ports?
        .values()
        .filter_map(|times| times.iter().find(|(_, n)| **n > 0).map(|(t, _)| *t))
        .min()
}

impl Progress {
    fn update(counts: &mut HashMap<usize, Ports>, updates: &[(usize, usize, u64, i64)]) {
        for &(node, port, time, diff) in updates {
            let times = counts.entry(node).or_default().entry(port).or_default();
            let count = times.entry(time).or_default();
            *count += diff;
            if *count == 0 {
                times.remove(&time);
            }
        }
    }

    /// Derives the upstream sets from the scope's channels (`(source node, target node)`).
    fn derive_upstream(&mut self, edges: &[(usize, usize)]) {
        if self.upstream.0 == edges.len() {
            return;
        }
        let mut upstream: HashMap<usize, Vec<usize>> = HashMap::new();
        let nodes: Vec<usize> = edges.iter().flat_map(|(s, t)| [*s, *t]).collect();
        for &node in &nodes {
            // Everything that reaches `node` along the edges, against them from it.
            let mut seen = vec![node];
            let mut todo = vec![node];
            while let Some(at) = todo.pop() {
                for (source, _) in edges.iter().filter(|(_, target)| *target == at) {
                    if !seen.contains(source) {
                        seen.push(*source);
                        todo.push(*source);
                    }
                }
            }
            seen.retain(|n| *n != node);
            upstream.insert(node, seen);
        }
        self.upstream = (edges.len(), upstream);
    }

    /// Applies one batch of the tracker's changes at log time `time`, then updates who holds the
    /// frontier back and the lag log.
    fn apply(&mut self, time: Duration, event: &TrackerEvent<u64>, edges: &[(usize, usize)]) {
        match event {
            TrackerEvent::SourceUpdate(u) => Self::update(&mut self.sources, &u.updates),
            TrackerEvent::TargetUpdate(u) => Self::update(&mut self.targets, &u.updates),
        }
        self.derive_upstream(edges);
        self.last = self.last.max(time);
        let node_least = |node: &usize| {
            let source = least(self.sources.get(node));
            let target = least(self.targets.get(node));
            source.into_iter().chain(target).min()
        };
        let mut now_holding = Vec::new();
        for (node, upstream) in &self.upstream.1 {
            if upstream.is_empty() {
                continue; // An input: it offers time, it does not hold it.
            }
            let Some(held) = least(self.sources.get(node)) else {
                continue;
            };
            let input = upstream
                .iter()
                .filter_map(node_least)
                .chain(least(self.targets.get(node)))
                .min();
            if input.is_none_or(|input| held < input) {
                now_holding.push(*node);
            }
        }
        self.holding.retain(|node, since| {
            let keep = now_holding.contains(node);
            if !keep {
                let length = time.saturating_sub(*since);
                let held = self.held.entry(*node).or_default();
                held.0 += length;
                held.1 = held.1.max(length);
            }
            keep
        });
        for node in now_holding {
            self.holding.entry(node).or_insert(time);
        }
        // The lag log: inputs are the nodes with nothing upstream.
        let inputs = self.upstream.1.iter().filter(|(_, up)| up.is_empty());
        let offered = inputs
            .filter_map(|(node, _)| least(self.sources.get(node)))
            .min();
        let nodes = self.sources.keys().chain(self.targets.keys());
        let frontier = nodes.filter_map(node_least).min();
        let lag = match (offered, frontier) {
            (Some(offered), Some(frontier)) => offered.saturating_sub(frontier),
            _ => 0,
        };
        let interval = (time.as_nanos() / LAG_INTERVAL.as_nanos()) as u64;
        let row = self.lag.entry(interval).or_insert((offered, frontier, 0));
        *row = (offered, frontier, row.2.max(lag));
    }

    /// Ends every hold still open at the last change the log saw.
    fn close(&mut self) {
        for (node, since) in self.holding.drain() {
            let length = self.last.saturating_sub(since);
            let held = self.held.entry(node).or_default();
            held.0 += length;
            held.1 = held.1.max(length);
        }
    }
}

/// What the logger accumulates on one worker.
#[derive(Default)]
struct State {
    /// Operator id to (name, address).
    operators: HashMap<usize, (String, Vec<usize>)>,
    /// Channel id to (scope address, source node, target node).
    channels: HashMap<usize, (Vec<usize>, usize, usize)>,
    /// Operators being scheduled, innermost last: (id, start, children's time).
    stack: Vec<(usize, Duration, Duration)>,
    /// Operator id to (own time, schedules).
    busy: HashMap<usize, (Duration, u64)>,
    /// Channel id to records sent and received.
    sent: HashMap<usize, u64>,
    received: HashMap<usize, u64>,
    first: Option<Duration>,
    last: Duration,
    /// Per scope (its tracker's id, the scope's operator id): its progress.
    progress: BTreeMap<usize, Progress>,
}

impl State {
    fn event(&mut self, time: Duration, event: &TimelyEvent) {
        match event {
            TimelyEvent::Operates(op) => {
                self.operators
                    .insert(op.id, (op.name.clone(), op.addr.clone()));
            }
            TimelyEvent::Channels(ch) => {
                self.channels
                    .insert(ch.id, (ch.scope_addr.clone(), ch.source.0, ch.target.0));
            }
            TimelyEvent::Messages(m) => {
                let records = u64::try_from(m.record_count).unwrap_or(0);
                let counts = if m.is_send {
                    &mut self.sent
                } else {
                    &mut self.received
                };
                *counts.entry(m.channel).or_default() += records;
            }
            TimelyEvent::Schedule(s) => match s.start_stop {
                StartStop::Start => {
                    self.first.get_or_insert(time);
                    self.stack.push((s.id, time, Duration::ZERO));
                }
                StartStop::Stop => {
                    // Starts and stops nest; a stop without its start (none seen) is skipped.
                    if let Some((id, start, children)) = self.stack.pop() {
                        let elapsed = time.saturating_sub(start);
                        let entry = self.busy.entry(id).or_default();
                        entry.0 += elapsed.saturating_sub(children);
                        entry.1 += 1;
                        if let Some(parent) = self.stack.last_mut() {
                            parent.2 += elapsed;
                        }
                        self.last = self.last.max(time);
                    }
                }
            },
            _ => {}
        }
    }

    /// The channels of the scope whose operator id is `scope` as (source node, target node).
    fn edges(&self, scope: usize) -> Vec<(usize, usize)> {
        let Some((_, addr)) = self.operators.get(&scope) else {
            return Vec::new();
        };
        self.channels
            .values()
            .filter(|(scope_addr, _, _)| scope_addr == addr)
            .map(|(_, source, target)| (*source, *target))
            .collect()
    }

    fn progress(&mut self, time: Duration, event: &TrackerEvent<u64>) {
        let tracker = match event {
            TrackerEvent::SourceUpdate(u) => u.tracker_id,
            TrackerEvent::TargetUpdate(u) => u.tracker_id,
        };
        let edges = self.edges(tracker);
        let progress = self.progress.entry(tracker).or_default();
        progress.apply(time, event, &edges);
    }

    fn profile(&mut self, worker: usize) -> WorkerProfile {
        for progress in self.progress.values_mut() {
            progress.close();
        }
        // Per operator id: its holds, from its scope's tracker (node `i` of scope `a` is the
        // operator at address `a + [i]`).
        let mut holds: HashMap<usize, (Duration, Duration)> = HashMap::new();
        let by_addr: HashMap<&[usize], usize> = self
            .operators
            .iter()
            .map(|(id, (_, addr))| (addr.as_slice(), *id))
            .collect();
        for (scope, progress) in &self.progress {
            let Some((_, addr)) = self.operators.get(scope) else {
                continue;
            };
            for (node, held) in &progress.held {
                let mut child = addr.clone();
                child.push(*node);
                if let Some(id) = by_addr.get(child.as_slice()) {
                    holds.insert(*id, *held);
                }
            }
        }
        // The lag log of the outermost scope (the run's dataflow).
        let outer = self
            .progress
            .iter()
            .filter(|(scope, _)| {
                self.operators
                    .get(*scope)
                    .is_some_and(|(_, a)| a.len() == 1)
            })
            .map(|(_, progress)| progress)
            .next();
        let frontier_lag = outer
            .map(|p| {
                p.lag
                    .iter()
                    .map(|(interval, (offered, frontier, max_lag))| LagInterval {
                        at_ns: (interval + 1) * LAG_INTERVAL.as_nanos() as u64,
                        offered: *offered,
                        frontier: *frontier,
                        max_lag_ns: *max_lag,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let profiled = self
            .first
            .map_or(Duration::ZERO, |first| self.last.saturating_sub(first));
        let by_address: HashMap<&[usize], usize> = self
            .operators
            .iter()
            .map(|(id, (_, addr))| (addr.as_slice(), *id))
            .collect();
        let mut records: HashMap<usize, (u64, u64)> = HashMap::new();
        for (channel, (scope, source, target)) in &self.channels {
            let operator = |node: usize| {
                let mut addr = scope.clone();
                addr.push(node);
                by_address.get(addr.as_slice()).copied()
            };
            if let Some(op) = operator(*source) {
                records.entry(op).or_default().1 += self.sent.get(channel).copied().unwrap_or(0);
            }
            if let Some(op) = operator(*target) {
                records.entry(op).or_default().0 +=
                    self.received.get(channel).copied().unwrap_or(0);
            }
        }
        let mut operators: Vec<OperatorProfile> = self
            .operators
            .iter()
            .filter_map(|(id, (name, address))| {
                let (busy, schedules) = self.busy.get(id).copied().unwrap_or_default();
                let (records_in, records_out) = records.get(id).copied().unwrap_or_default();
                let (hold, hold_max) = holds.get(id).copied().unwrap_or_default();
                (schedules > 0 || records_in > 0 || records_out > 0).then(|| OperatorProfile {
                    name: name.clone(),
                    address: address.clone(),
                    share: busy.as_secs_f64() / profiled.as_secs_f64().max(1e-12),
                    busy_ns: busy.as_nanos() as u64,
                    schedules,
                    records_in,
                    records_out,
                    frontier_hold_ns: hold.as_nanos() as u64,
                    frontier_hold_max_ns: hold_max.as_nanos() as u64,
                })
            })
            .collect();
        operators.sort_by(|a, b| {
            b.busy_ns
                .cmp(&a.busy_ns)
                .then_with(|| a.address.cmp(&b.address))
        });
        WorkerProfile {
            worker,
            profiled_ns: profiled.as_nanos() as u64,
            operators,
            frontier_lag,
        }
    }
}

/// A profile being recorded on one worker ([`Profiler::start`], then [`Profiler::finish`]).
pub struct Profiler {
    state: Rc<RefCell<State>>,
}

impl Profiler {
    /// Registers the logger on `worker`'s `"timely"` log stream. Call it before building the
    /// dataflows to profile: operators and channels take the logger when they are built.
    /// `None` when the worker has no logging registry.
    pub fn start(worker: &mut Worker) -> Option<Profiler> {
        let state = Rc::new(RefCell::new(State::default()));
        let sink = Rc::clone(&state);
        worker
            .log_register()?
            .insert::<TimelyEventBuilder, _>("timely", move |_time, batch| {
                // `None` marks a flush or the end of the stream: nothing to do.
                if let Some(batch) = batch {
                    let mut state = sink.borrow_mut();
                    for (time, event) in batch.iter() {
                        state.event(*time, event);
                    }
                }
            });
        let sink = Rc::clone(&state);
        worker
            .log_register()?
            .insert::<TrackerEventBuilder<u64>, _>(PROGRESS_LOG, move |_time, batch| {
                if let Some(batch) = batch {
                    let mut state = sink.borrow_mut();
                    for (time, event) in batch.iter() {
                        state.progress(*time, event);
                    }
                }
            });
        Some(Profiler { state })
    }

    /// Flushes and removes the logger (dataflows built later are not profiled) and returns the
    /// worker's profile.
    pub fn finish(self, worker: &mut Worker) -> WorkerProfile {
        if let Some(mut registry) = worker.log_register() {
            registry.flush();
            registry.remove("timely");
            registry.remove(PROGRESS_LOG);
        }
        let mut state = self.state.borrow_mut();
        state.profile(worker.index())
    }
}

/// The profiles as a table: per worker, one line per operator (share of the worker's time,
/// records in and out, schedules, how long it held the frontier back in total and at most,
/// name and address), then the frontier lag (largest and median over the log's intervals).
pub fn table(profiles: &[WorkerProfile]) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut out = String::new();
    for p in profiles {
        let total: f64 = p.operators.iter().map(|o| o.share).sum();
        let _ = writeln!(
            out,
            "profile, worker {} ({:.2} s profiled, {:.1}% in operators):",
            p.worker,
            p.profiled_ns as f64 / 1e9,
            total * 100.0
        );
        let _ = writeln!(
            out,
            "  {:>6}  {:>14}  {:>14}  {:>10}  {:>17}  operator",
            "share", "records in", "records out", "schedules", "held back ms/max"
        );
        for o in &p.operators {
            let _ = writeln!(
                out,
                "  {:>5.1}%  {:>14}  {:>14}  {:>10}  {:>9.1}/{:<7.1}  {} {:?}",
                o.share * 100.0,
                o.records_in,
                o.records_out,
                o.schedules,
                ms(o.frontier_hold_ns),
                ms(o.frontier_hold_max_ns),
                o.name,
                o.address
            );
        }
        let mut lags: Vec<u64> = p.frontier_lag.iter().map(|i| i.max_lag_ns).collect();
        lags.sort_unstable();
        if let (Some(max), Some(median)) = (lags.last(), lags.get(lags.len() / 2)) {
            let _ = writeln!(
                out,
                "  frontier lag (input offered - output frontier, event time): largest {:.1} ms, \
                 median of {} intervals' largest {:.1} ms",
                ms(*max),
                lags.len(),
                ms(*median)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::logging::{ChannelsEvent, MessagesEvent, OperatesEvent, ScheduleEvent};
    use timely::progress::reachability::logging::{SourceUpdate, TargetUpdate};

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A state that has seen `operators` (id, address, name) and `channels` (id, source node,
    /// target node, all in scope `[0]`) built.
    fn built(operators: &[(usize, &[usize], &str)], channels: &[(usize, usize, usize)]) -> State {
        let mut s = State::default();
        for (id, addr, name) in operators {
            let operates = OperatesEvent {
                id: *id,
                addr: addr.to_vec(),
                name: name.to_string(),
            };
            s.event(at(0), &TimelyEvent::Operates(operates));
        }
        for (id, source, target) in channels {
            let channel = ChannelsEvent {
                id: *id,
                scope_addr: vec![0],
                source: (*source, 0),
                target: (*target, 0),
                typ: String::new(),
            };
            s.event(at(0), &TimelyEvent::Channels(channel));
        }
        s
    }

    #[test]
    fn own_time_excludes_children_and_records_follow_channels() {
        let mut s = built(
            &[
                (1, &[0], "Dataflow"),
                (2, &[0, 1], "Source"),
                (3, &[0, 2], "Count"),
            ],
            &[(7, 1, 2)],
        );
        let messages = |is_send, records| {
            TimelyEvent::Messages(MessagesEvent {
                is_send,
                channel: 7,
                source: 0,
                target: 0,
                seq_no: 0,
                record_count: records,
            })
        };
        // Dataflow 1 runs 0..10 ms; inside it Source 2..5 and Count 5..9: own times 3, 3, 4.
        fn schedule(ms: u64, id: usize, start: bool) -> (Duration, TimelyEvent) {
            let event = if start {
                ScheduleEvent::start(id)
            } else {
                ScheduleEvent::stop(id)
            };
            (at(ms), TimelyEvent::Schedule(event))
        }
        let events = [
            schedule(0, 1, true),
            schedule(2, 2, true),
            (at(3), messages(true, 40)),
            schedule(5, 2, false),
            schedule(5, 3, true),
            (at(6), messages(false, 40)),
            schedule(9, 3, false),
            schedule(10, 1, false),
            // Only Source runs again, 12..20: the worker's profiled time is 0..20.
            schedule(12, 2, true),
            schedule(20, 2, false),
        ];
        for (time, event) in &events {
            s.event(*time, event);
        }
        let p = s.profile(3);
        assert_eq!(p.worker, 3);
        assert_eq!(p.profiled_ns, 20_000_000);
        let get = |name: &str| p.operators.iter().find(|o| o.name == name).unwrap();
        assert_eq!(get("Source").busy_ns, 11_000_000);
        assert_eq!(get("Source").schedules, 2);
        assert_eq!(get("Count").busy_ns, 4_000_000);
        assert_eq!(get("Dataflow").busy_ns, 3_000_000);
        assert_eq!(
            (get("Source").records_in, get("Source").records_out),
            (0, 40)
        );
        assert_eq!((get("Count").records_in, get("Count").records_out), (40, 0));
        let total: f64 = p.operators.iter().map(|o| o.share).sum();
        assert!((total - 0.9).abs() < 1e-9, "{total}");
        assert_eq!(p.operators[0].name, "Source", "by descending share");
    }

    /// A window (node 2) between an input (1) and a sink (3): it holds the frontier back from
    /// when the input passes its capability until it downgrades, and not while its capability
    /// is at or past what the input still holds.
    #[test]
    fn holds_run_from_the_input_passing_a_time_to_the_capability_passing_it() {
        let operators: [(usize, &[usize], &str); 4] = [
            (1, &[0], "Dataflow"),
            (2, &[0, 1], "Input"),
            (3, &[0, 2], "Window"),
            (4, &[0, 3], "Probe"),
        ];
        let mut s = built(&operators, &[(10, 1, 2), (11, 2, 3)]);
        let caps = |updates: Vec<(usize, u64, i64)>| {
            TrackerEvent::SourceUpdate(SourceUpdate {
                tracker_id: 1,
                updates: updates.into_iter().map(|(n, t, d)| (n, 0, t, d)).collect(),
            })
        };
        let steps = [
            (0, caps(vec![(1, 0, 1), (2, 0, 1)])),
            // The input moves to 5: the window's capability at 0 holds the frontier back.
            (10, caps(vec![(1, 0, -1), (1, 5, 1)])),
            (30, caps(vec![(2, 0, -1), (2, 5, 1)])), // Released after 20 ms.
            (40, caps(vec![(1, 5, -1), (1, 10, 1)])),
            // Pending input at 10 is past 5: still held.
            (
                45,
                TrackerEvent::TargetUpdate(TargetUpdate {
                    tracker_id: 1,
                    updates: vec![(2, 0, 10, 1)],
                }),
            ),
            (50, caps(vec![(2, 5, -1), (2, 10, 1)])), // Released after 10 ms.
            // The window's own capability at the input's time holds nothing back.
            (150, caps(vec![(1, 10, -1), (1, 12, 1)])),
        ];
        for (ms, event) in &steps {
            s.progress(at(*ms), event);
        }
        // Each operator runs once, so that the profile lists it.
        for id in [2, 3, 4] {
            s.event(at(1), &TimelyEvent::Schedule(ScheduleEvent::start(id)));
            s.event(at(1), &TimelyEvent::Schedule(ScheduleEvent::stop(id)));
        }
        let p = s.profile(0);
        let get = |name: &str| p.operators.iter().find(|o| o.name == name).unwrap();
        let hold = |name: &str| (get(name).frontier_hold_ns, get(name).frontier_hold_max_ns);
        assert_eq!(hold("Window"), (30_000_000, 20_000_000));
        assert_eq!(hold("Input"), (0, 0), "inputs offer time");
        assert_eq!(hold("Probe"), (0, 0), "no capability");
        // The lag log: interval 0 saw the input 5 ahead of the frontier at most and ended with
        // both at 10; interval 1 (the change at 150 ms) 12 against the window's 10.
        let lag: Vec<_> = p
            .frontier_lag
            .iter()
            .map(|i| (i.at_ns, i.offered, i.frontier, i.max_lag_ns))
            .collect();
        assert_eq!(
            lag,
            [
                (100_000_000, Some(10), Some(10), 5),
                (200_000_000, Some(12), Some(10), 2),
            ]
        );
    }
}
