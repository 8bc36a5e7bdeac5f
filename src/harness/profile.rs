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
//! A share is the operator's own time over the worker's profiled time: from the first scheduling
//! to the last one the log saw (the whole run, warm-up included, and the end of the run where
//! the worker drains its input). The rest is time outside any operator: the driver's loop, the
//! generator's replay, and timely's progress exchange between steps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
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

    fn profile(&self, worker: usize) -> WorkerProfile {
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
                (schedules > 0 || records_in > 0 || records_out > 0).then(|| OperatorProfile {
                    name: name.clone(),
                    address: address.clone(),
                    share: busy.as_secs_f64() / profiled.as_secs_f64().max(1e-12),
                    busy_ns: busy.as_nanos() as u64,
                    schedules,
                    records_in,
                    records_out,
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
        Some(Profiler { state })
    }

    /// Flushes and removes the logger (dataflows built later are not profiled) and returns the
    /// worker's profile.
    pub fn finish(self, worker: &mut Worker) -> WorkerProfile {
        if let Some(mut registry) = worker.log_register() {
            registry.flush();
            registry.remove("timely");
        }
        let state = self.state.borrow();
        state.profile(worker.index())
    }
}

/// The profiles as a table: per worker, one line per operator (share of the worker's time,
/// records in and out, schedules, name and address).
pub fn table(profiles: &[WorkerProfile]) -> String {
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
            "  {:>6}  {:>14}  {:>14}  {:>10}  operator",
            "share", "records in", "records out", "schedules"
        );
        for o in &p.operators {
            let _ = writeln!(
                out,
                "  {:>5.1}%  {:>14}  {:>14}  {:>10}  {} {:?}",
                o.share * 100.0,
                o.records_in,
                o.records_out,
                o.schedules,
                o.name,
                o.address
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use timely::logging::{ChannelsEvent, MessagesEvent, OperatesEvent, ScheduleEvent};

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn own_time_excludes_children_and_records_follow_channels() {
        let mut s = State::default();
        for (id, addr, name) in [
            (1, vec![0], "Dataflow"),
            (2, vec![0, 1], "Source"),
            (3, vec![0, 2], "Count"),
        ] {
            s.event(
                at(0),
                &TimelyEvent::Operates(OperatesEvent {
                    id,
                    addr,
                    name: name.into(),
                }),
            );
        }
        s.event(
            at(0),
            &TimelyEvent::Channels(ChannelsEvent {
                id: 7,
                scope_addr: vec![0],
                source: (1, 0),
                target: (2, 0),
                typ: String::new(),
            }),
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
}
