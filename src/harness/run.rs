//! One measured run, from settings to [`Report`]: runs the open loop ([`super::driver`]) on
//! the engine's workers or on the baseline, merges the workers' recorders (across processes,
//! through timely), and computes rates, the overload verdict and the report.
//!
//! The CLI (`tidemark bench`) only parses and checks flags and calls [`run`]; benchmarks and
//! tests can call it directly.

use clap::ValueEnum;

use super::driver::{run_baselines, run_engine, RunConfig, WorkerOutcome};
use super::gather;
use super::recorder::Recorder;
use super::report::{config_hash, git_rev, host, Report};
use crate::cluster::{Cluster, ClusterError};
use crate::workloads::Workload;

/// Which implementation runs the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// The tidemark dataflow on timely.
    Timely,
    /// The hand-written single-threaded baseline (COST); on N workers, N independent copies at
    /// once, each on its worker's share of the stream: the machine's parallel ceiling.
    Baseline,
    /// The incremental view on differential dataflow (ysb; nexmark q3, q4, q6, q9).
    Differential,
}

impl Engine {
    /// The name in reports: `timely`, `baseline` or `differential`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Timely => "timely",
            Engine::Baseline => "baseline",
            Engine::Differential => "differential",
        }
    }
}

/// How to run and measure: the driver's settings plus the engine and the cluster's shape.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Which implementation runs.
    pub engine: Engine,
    /// What the open loop does (rate, duration, warm-up, epoch, seed, pool, ...).
    pub config: RunConfig,
    /// Worker threads per process (for the baseline: independent copies, the parallel ceiling).
    pub workers: usize,
    /// Processes (the baseline runs in one).
    pub processes: usize,
}

/// Why a run did not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--engine differential` for a workload without an incremental view.
    #[error("{workload} {query} has no incremental version (--engine differential runs ysb and nexmark q3, q4, q6, q9)")]
    NoIncremental {
        /// The workload's name.
        workload: &'static str,
        /// The query.
        query: String,
    },
    /// The baseline runs in one process (`--workers N` runs N independent copies in it: the
    /// parallel ceiling).
    #[error("the baseline runs in one process: use --workers N (N independent baselines, the parallel ceiling) without --processes")]
    BaselineParallel,
    /// The cluster could not start (see [`Cluster::execute`]).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A worker failed (the message says which and why).
    #[error("{0}")]
    Worker(String),
}

/// Runs `workload` once with `settings` on `cluster`; returns the report and the merged
/// recorder on the process that has them (process 0), `None` on the others.
///
/// Errors: see [`RunError`].
pub fn run<W: Workload>(
    workload: &W,
    settings: &Settings,
    cluster: &Cluster,
) -> Result<Option<(Report, Recorder)>, RunError> {
    let config = &settings.config;
    let outcomes: Vec<WorkerOutcome> = match settings.engine {
        Engine::Baseline => {
            if settings.processes > 1 {
                return Err(RunError::BaselineParallel);
            }
            run_baselines(workload, config, settings.workers).map_err(RunError::Worker)?
        }
        Engine::Timely | Engine::Differential => {
            if config.incremental && !workload.has_incremental() {
                return Err(RunError::NoIncremental {
                    workload: workload.name(),
                    query: workload.query(),
                });
            }
            let (workload, config) = (workload.clone(), config.clone());
            let running = cluster.execute(move |worker| {
                let outcome = run_engine(worker, &workload, &config);
                gather(worker, outcome)
            })?;
            running
                .join()
                .map_err(RunError::Worker)?
                .into_iter()
                .flatten()
                .collect()
        }
    };
    if outcomes.is_empty() {
        return Ok(None);
    }
    Ok(Some(report(workload, settings, &outcomes)))
}

/// The report of a run from its workers' outcomes (at least one).
fn report<W: Workload>(
    workload: &W,
    settings: &Settings,
    outcomes: &[WorkerOutcome],
) -> (Report, Recorder) {
    let config = &settings.config;
    let mut recorder = Recorder::new(config.warmup_ns, false);
    for outcome in outcomes {
        recorder.merge(&Recorder::from_bytes(&outcome.recorder));
    }
    let events: u64 = outcomes.iter().map(|o| o.retired_events).sum();
    // Each worker's events over its own measured time: workers of an overloaded run may stop
    // at different times. When none stopped early this is events over the measured duration.
    let achieved_rate: f64 = outcomes
        .iter()
        .map(|o| o.retired_events as f64 / (o.measured_ns.max(1) as f64 / 1e9))
        .sum();
    let measured_ns = outcomes.iter().map(|o| o.measured_ns).max().unwrap_or(0);
    let overloaded =
        outcomes.iter().any(|o| o.overloaded) || (config.rate.is_some() && recorder.samples() == 0);
    let engine = settings.engine.name();
    let (workers, processes) = (settings.workers.max(1), settings.processes.max(1));
    let ceiling = settings.engine == Engine::Baseline && workers > 1;
    let rate = config.rate;
    let description = format!(
        "{} {} {} {engine} w={workers} p={processes} rate={rate:?} d={} wu={} e={} seed={} pool={}",
        workload.name(),
        workload.query(),
        workload.parameters(),
        config.duration_ns,
        config.warmup_ns,
        config.epoch_ns,
        config.seed,
        config.pool
    );
    let report = Report {
        workload: workload.name().to_string(),
        query: workload.query(),
        parameters: workload.parameters(),
        engine: engine.to_string(),
        workers,
        processes,
        ceiling,
        offered_rate: rate,
        achieved_rate,
        events,
        overloaded,
        duration_s: measured_ns as f64 / 1e9,
        warmup_s: config.warmup_ns as f64 / 1e9,
        epoch_ns: config.epoch_ns,
        latency_ns: recorder.percentiles(),
        samples: recorder.samples(),
        generator_rate: outcomes.iter().map(|o| o.generator_rate).sum::<f64>()
            / outcomes.len() as f64,
        seed: config.seed,
        git_rev: git_rev(),
        config_hash: config_hash(&description),
        host: host(),
        profile: config.profile.then(|| {
            let mut profiles: Vec<_> = outcomes.iter().filter_map(|o| o.profile.clone()).collect();
            profiles.sort_by_key(|p| p.worker);
            profiles
        }),
    };
    (report, recorder)
}
