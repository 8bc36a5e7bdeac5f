//! Run reports: one JSON object per run (the schema experiments and notebooks read) and a
//! human-readable table.
//!
//! A report carries everything needed to reproduce the run: workload, query and parameters,
//! engine, workers, processes, rates, epoch, seed, the git revision, a hash of the configuration
//! and the host.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::driver::FailureOutcome;
use super::profile::WorkerProfile;
use super::recorder::Percentiles;
use super::snapshots::{CheckpointSettings, CheckpointStat};
use crate::partition::route_hash;

/// The result of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Workload name (`ysb`, `wordcount`, `nexmark`).
    pub workload: String,
    /// Query within the workload.
    pub query: String,
    /// Workload parameters.
    pub parameters: String,
    /// `timely`, `differential` or `baseline` (see [`super::run::Engine`]).
    pub engine: String,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// Whether the run is a parallel ceiling: `baseline` on `workers` > 1, that many independent
    /// single-threaded baselines at once, each on the share of the stream and of the offered
    /// rate one engine worker gets; `achieved_rate` is their sum (absent in older reports:
    /// false).
    #[serde(default)]
    pub ceiling: bool,
    /// Offered events per second; `null` for a closed-loop (`--rate max`) run.
    pub offered_rate: Option<u64>,
    /// `events` per second of the measured part (each worker's over its measured time, summed;
    /// events/s). Open loop: at most `offered_rate` (by one event over the measured time at
    /// most, the rounding of due times), below it when the system fell behind.
    pub achieved_rate: f64,
    /// Events of the measured part that the output probe showed processed: open loop, those due
    /// in it (`[warm-up end, run end)`); closed loop, those sent in it; counted until the drain
    /// that follows the run's clock ends (see [`super::driver`], "Counting"). Events due in the
    /// warm-up do not count, whenever they were processed.
    pub events: u64,
    /// Whether the run could not keep up with the offered rate: it fell more than a second
    /// behind in sending (and was stopped early, see [`super::driver`]), its drain left
    /// measured events unsent or unprocessed, or no measured epoch completed. An overloaded run
    /// is never sustainable; its latency is unbounded.
    #[serde(default)]
    pub overloaded: bool,
    /// Length of the measured part (seconds, warm-up excluded; shorter than asked when an
    /// overloaded run was stopped early).
    pub duration_s: f64,
    /// Warm-up, not measured (seconds).
    pub warmup_s: f64,
    /// Epoch length (ns).
    pub epoch_ns: u64,
    /// Epoch latency percentiles (ns); each `null` when `samples` is 0.
    pub latency_ns: Percentiles,
    /// Latency samples (measured epochs that completed, times workers).
    pub samples: u64,
    /// Events per second one worker's generator produced (the input's own ceiling).
    pub generator_rate: f64,
    /// Generator seed.
    pub seed: u64,
    /// The git revision the binary was built from, with `-dirty` when tracked files differed
    /// from it, or `unknown` (built outside a git checkout); see [`git_rev`].
    pub git_rev: String,
    /// Hash of the configuration (everything above that defines the run).
    pub config_hash: String,
    /// Host name.
    pub host: String,
    /// Runs with `--checkpoint-dir`: what checkpointing cost, beside the same run without it
    /// ([`CheckpointSummary`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSummary>,
    /// `--profile` runs: where each worker's time went, per operator, by worker index (see
    /// [`super::profile`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<WorkerProfile>>,
}

/// What checkpointing cost a run (`tidemark bench --checkpoint-dir`): its checkpoints, and the
/// same run without checkpoints, run just before it with the same settings (see
/// [`super::run::run_paired`] and [`super::snapshots`] for what is measured).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// Time between cuts (ns of the offered stream).
    pub interval_ns: u64,
    /// The checkpoint directory, as given.
    pub dir: String,
    /// Checkpoints completed (manifest written) at cuts within the run, warm-up included (the
    /// final cut that closing the input takes is not counted).
    pub count: u64,
    /// Snapshot time of those checkpoints (ns): from the first worker's hand-over of its
    /// encoded state to the manifest's rename; `null` when `count` is 0.
    pub snapshot_ns: Spread,
    /// Bytes of those checkpoints' snapshot files, all workers; `null` when `count` is 0.
    pub bytes: Spread,
    /// Each counted checkpoint: cut, bytes, snapshot time.
    pub each: Vec<CheckpointStat>,
    /// The same run without checkpoints.
    pub without: Baseline,
    /// `achieved_rate` over the run's without checkpoints (1: no loss).
    pub throughput_ratio: f64,
    /// p99 latency over the run's without checkpoints; `null` when either is unbounded.
    pub p99_ratio: Option<f64>,
    /// `--fail-at` runs: the failure and the recovery; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureSummary>,
}

/// A failure injected into a checkpointed run (`--fail-at`), and the recovery from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureSummary {
    /// When the dataflow was torn down (ns after the start; the last worker's).
    pub at_ns: u64,
    /// The cut of the checkpoint it was rebuilt from (ns); `null`: none was complete, and it
    /// started over from the first event.
    pub restored_cut_ns: Option<u64>,
    /// Recovery time: from the failure until the output had caught up with the offered input
    /// (everything sent up to the failure processed again and nothing due unsent), the
    /// slowest worker's (ns); `null`: not within the run.
    pub recovery_ns: Option<u64>,
    /// Epoch latency over time around the failure, per [`TIMELINE_BUCKET_NS`] of due time from
    /// 2 s before it to the end of the run, all workers' epochs together.
    pub timeline: Vec<TimelineBucket>,
}

/// The width of a failure timeline's buckets: 100 ms.
pub const TIMELINE_BUCKET_NS: u64 = 100_000_000;

/// The epochs of one bucket of a failure's timeline.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimelineBucket {
    /// Start of the bucket: epochs whose end was due from here on (ns after the start).
    pub start_ns: u64,
    /// Epochs completed in it (times workers).
    pub epochs: u64,
    /// Their median latency (ns).
    pub p50_ns: u64,
    /// Their largest latency (ns).
    pub max_ns: u64,
}

impl FailureSummary {
    /// The summary of the workers' failures; `None` when none failed.
    pub fn of(failures: &[FailureOutcome]) -> Option<FailureSummary> {
        let first = failures.first()?;
        let mut buckets: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (end, latency) in failures.iter().flat_map(|f| f.timeline.iter()) {
            buckets
                .entry(end - end % TIMELINE_BUCKET_NS)
                .or_default()
                .push(*latency);
        }
        let timeline = buckets
            .into_iter()
            .map(|(start_ns, mut latencies)| {
                latencies.sort_unstable();
                TimelineBucket {
                    start_ns,
                    epochs: latencies.len() as u64,
                    p50_ns: latencies[latencies.len() / 2],
                    max_ns: latencies[latencies.len() - 1],
                }
            })
            .collect();
        Some(FailureSummary {
            at_ns: failures
                .iter()
                .map(|f| f.at_ns)
                .max()
                .unwrap_or(first.at_ns),
            restored_cut_ns: first.cut_ns,
            recovery_ns: failures
                .iter()
                .map(|f| f.recovery_ns)
                .collect::<Option<Vec<u64>>>()
                .and_then(|all| all.into_iter().max()),
            timeline,
        })
    }
}

/// Mean and largest of a measure over a run's checkpoints; both `null` when there was none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Mean.
    pub mean: Option<f64>,
    /// Largest.
    pub max: Option<u64>,
}

impl Spread {
    fn of(values: impl Iterator<Item = u64> + Clone) -> Spread {
        let count = values.clone().count();
        Spread {
            mean: (count > 0).then(|| values.clone().map(|v| v as f64).sum::<f64>() / count as f64),
            max: values.max(),
        }
    }
}

/// The run without checkpoints that a checkpointed run is set beside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Its `achieved_rate` (events/s).
    pub achieved_rate: f64,
    /// Its latency percentiles (ns).
    pub latency_ns: Percentiles,
    /// Whether it was overloaded.
    pub overloaded: bool,
    /// Its `config_hash`.
    pub config_hash: String,
}

impl CheckpointSummary {
    /// The summary of a run checkpointing as `settings` says, `duration_ns` long, whose writer
    /// completed `stats`, beside the run `without` checkpoints.
    pub fn new(
        settings: &CheckpointSettings,
        duration_ns: u64,
        stats: Vec<CheckpointStat>,
        without: &Report,
        with: &Report,
    ) -> CheckpointSummary {
        let each: Vec<CheckpointStat> = stats
            .into_iter()
            .filter(|s| s.cut_ns < duration_ns)
            .collect();
        // An overloaded run's percentiles cover only the epochs that completed: no ratio.
        let bounded = |r: &Report| r.latency_ns.p99.filter(|_| !r.overloaded);
        let p99_ratio = match (bounded(with), bounded(without)) {
            (Some(with), Some(without)) => Some(with as f64 / without.max(1) as f64),
            _ => None,
        };
        CheckpointSummary {
            interval_ns: settings.interval_ns,
            dir: settings.dir.display().to_string(),
            count: each.len() as u64,
            snapshot_ns: Spread::of(each.iter().map(|s| s.duration_ns)),
            bytes: Spread::of(each.iter().map(|s| s.bytes)),
            each,
            without: Baseline {
                achieved_rate: without.achieved_rate,
                latency_ns: without.latency_ns,
                overloaded: without.overloaded,
                config_hash: without.config_hash.clone(),
            },
            throughput_ratio: with.achieved_rate / without.achieved_rate.max(f64::MIN_POSITIVE),
            p99_ratio,
            failure: None,
        }
    }

    /// Table rows: checkpoints, snapshot time and size, the comparison, and the failure.
    fn rows(&self) -> Vec<(&'static str, String)> {
        let failure = self.failure.as_ref().map(|f| {
            vec![
                (
                    "failure",
                    format!(
                        "at {}, rebuilt from {}",
                        ms(f.at_ns),
                        f.restored_cut_ns.map_or_else(
                            || "nothing (no checkpoint yet: started over)".to_string(),
                            |cut| format!("the checkpoint at {}", ms(cut))
                        )
                    ),
                ),
                (
                    "recovery time",
                    f.recovery_ns.map_or_else(
                        || "not caught up within the run".to_string(),
                        |ns| format!("{} (until the output caught up)", ms(ns)),
                    ),
                ),
            ]
        });
        let mean_max = |spread: &Spread, show: fn(f64) -> String| match (spread.mean, spread.max) {
            (Some(mean), Some(max)) => format!("mean {}, max {}", show(mean), show(max as f64)),
            _ => "none completed".to_string(),
        };
        vec![
            (
                "checkpoints",
                format!(
                    "{} every {} into {}",
                    self.count,
                    ms(self.interval_ns),
                    self.dir
                ),
            ),
            (
                "snapshot time",
                mean_max(&self.snapshot_ns, |ns| ms(ns as u64)),
            ),
            (
                "snapshot size",
                mean_max(&self.bytes, |b| format!("{:.1} kB", b / 1e3)),
            ),
            (
                "without ckpt rate",
                format!(
                    "{} (with / without: {:.3})",
                    rate(self.without.achieved_rate),
                    self.throughput_ratio
                ),
            ),
            (
                "without ckpt p99",
                format!(
                    "{} (with / without: {})",
                    latency(self.without.latency_ns.p99),
                    self.p99_ratio
                        .map_or_else(|| "unbounded".to_string(), |r| format!("{r:.2}"))
                ),
            ),
        ]
        .into_iter()
        .chain(failure.into_iter().flatten())
        .collect()
    }
}

/// The git revision this binary was built from, embedded at build time by `build.rs`: the
/// commit's full hash, with `-dirty` appended when tracked files differed from it (as
/// `git describe --dirty` marks it), or `unknown` when it was built outside a git checkout or
/// without git. It does not depend on the directory the binary runs in.
pub fn git_rev() -> String {
    env!("TIDEMARK_GIT_REV").to_string()
}

/// This machine's host name, or `unknown`.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A stable hash of a configuration description, as 16 hex digits.
pub fn config_hash(description: &str) -> String {
    format!("{:016x}", route_hash(description))
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn latency(ns: Option<u64>) -> String {
    ns.map_or_else(|| "unbounded (no measured epoch completed)".to_string(), ms)
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

/// What the table's less obvious rows mean, one line each (printed under the table).
const LEGEND: [(&str, &str); 6] = [
    (
        "achieved rate",
        "events due in the measured part (closed loop: sent in it) and processed, per measured second (all workers); at most the offered rate, below it when the system fell behind",
    ),
    (
        "events",
        "events due in the measured part (closed loop: sent in it) that the output showed processed, the last ones in a drain after the clock; warm-up events excluded",
    ),
    (
        "latency",
        "per epoch: wall time from the epoch's end (when its last event was due) to when its results were complete; queueing included",
    ),
    (
        "samples",
        "measured epochs that completed, times workers (0: latency unbounded)",
    ),
    (
        "generator ceiling",
        "how fast one worker's generator made its event pool (untimed); a rate near it measures the generator, not the system",
    ),
    (
        "config",
        "hash of everything that defines the run (workload parameters in brackets); same hash, same run",
    ),
];

impl Report {
    /// The report as an aligned two-column table.
    pub fn table(&self) -> String {
        let offered = self
            .offered_rate
            .map_or("max (closed loop)".to_string(), |r| rate(r as f64));
        let rows = [
            (
                "workload",
                format!(
                    "{} {}",
                    self.workload,
                    if self.query != self.workload {
                        &self.query
                    } else {
                        ""
                    }
                ),
            ),
            (
                "engine",
                if self.ceiling {
                    format!(
                        "{} x {} at once (parallel ceiling: independent copies, rates summed)",
                        self.engine, self.workers
                    )
                } else {
                    format!(
                        "{} ({} workers x {} processes)",
                        self.engine, self.workers, self.processes
                    )
                },
            ),
            ("offered rate", offered),
            (
                "achieved rate",
                if self.overloaded {
                    format!(
                        "{} (OVERLOADED: could not keep up)",
                        rate(self.achieved_rate)
                    )
                } else {
                    rate(self.achieved_rate)
                },
            ),
            ("events", self.events.to_string()),
            (
                "duration",
                format!(
                    "{:.1} s = {:.1} s warm-up + {:.1} s measured",
                    self.warmup_s + self.duration_s,
                    self.warmup_s,
                    self.duration_s
                ),
            ),
            ("epoch", ms(self.epoch_ns)),
            ("latency p50", latency(self.latency_ns.p50)),
            ("latency p90", latency(self.latency_ns.p90)),
            ("latency p99", latency(self.latency_ns.p99)),
            ("latency p99.9", latency(self.latency_ns.p999)),
            ("latency max", latency(self.latency_ns.max)),
            ("samples", self.samples.to_string()),
            (
                "generator ceiling",
                format!("{} per worker", rate(self.generator_rate)),
            ),
            ("seed", self.seed.to_string()),
            (
                "config",
                format!("{} ({})", self.config_hash, self.parameters),
            ),
            ("git", self.git_rev.chars().take(12).collect()),
            ("host", self.host.clone()),
        ];
        let checkpoint_rows = self.checkpoints.as_ref().map(CheckpointSummary::rows);
        let mut out = String::new();
        for (name, value) in rows
            .into_iter()
            .chain(checkpoint_rows.into_iter().flatten())
        {
            let _ = writeln!(out, "{name:>18}  {}", value.trim_end());
        }
        out.push('\n');
        for (name, meaning) in LEGEND {
            let _ = writeln!(out, "{name:>18}: {meaning}");
        }
        if let Some(profiles) = &self.profile {
            out.push('\n');
            out.push_str(&super::profile::table(profiles));
        }
        out
    }

    /// The warning line for an overloaded run (`None` for a run that kept up).
    pub fn warning(&self) -> Option<String> {
        if !self.overloaded {
            return None;
        }
        let completed = if self.samples == 0 {
            "no measured epoch completed, latency unbounded".to_string()
        } else {
            format!(
                "{} measured epochs completed, latency unbounded",
                self.samples
            )
        };
        let offered = self
            .offered_rate
            .map_or(String::new(), |r| format!(" of {} offered", rate(r as f64)));
        Some(format!(
            "warning: overloaded: processed {} events ({}{offered}) in {:.1} s measured; {completed}",
            self.events,
            rate(self.achieved_rate),
            self.duration_s,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{"achieved_rate":90513408.0,"config_hash":"c400792b0f21eed4","duration_s":2.0,"engine":"timely","epoch_ns":1000000,"events":181026816,"generator_rate":35799397.9,"git_rev":"655e09b138ecbbf2d3bea599831d114d811c2d06","host":"vm","latency_ns":{"max":1721343,"p50":269567,"p90":345343,"p99":491263,"p999":1537023},"offered_rate":null,"parameters":"window_ns=10000000000","processes":1,"query":"ysb","samples":1998,"seed":1,"warmup_s":1.0,"workers":1,"workload":"ysb","spec":"engines"}"#;

    #[test]
    fn reports_written_before_the_overload_field_still_read() {
        let report: Report = serde_json::from_str(OLD).unwrap();
        assert!(!report.overloaded);
        assert_eq!(report.latency_ns.p99, Some(491_263));
        assert!(report.warning().is_none());
    }

    #[test]
    fn an_overloaded_report_has_null_latency_a_warning_and_says_so_in_the_table() {
        let mut report: Report = serde_json::from_str(OLD).unwrap();
        report.overloaded = true;
        report.samples = 0;
        report.latency_ns = Percentiles::default();
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["overloaded"], true);
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(json["latency_ns"][p].is_null(), "{json}");
        }
        let warning = report.warning().unwrap();
        assert!(warning.contains("no measured epoch completed"), "{warning}");
        assert!(warning.contains("181026816 events"), "{warning}");
        let table = report.table();
        assert!(table.contains("OVERLOADED"), "{table}");
        assert!(table.contains("latency p99  unbounded"), "{table}");
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
