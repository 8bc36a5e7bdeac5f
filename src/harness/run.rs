//! One measured run, from settings to [`Report`]: runs the open loop ([`super::driver`]) on
//! the engine's workers or on the baseline, merges the workers' recorders (across processes,
//! through timely), and computes rates, the overload verdict and the report.
//!
//! The CLI (`tidemark bench`) only parses and checks flags and calls [`run`]; benchmarks and
//! tests can call it directly.

use std::sync::{Arc, OnceLock};

use clap::ValueEnum;

use super::driver::{run_baselines, run_engine, FailureOutcome, RunConfig, WorkerOutcome};
use super::gather;
use super::recorder::Recorder;
use super::report::{config_hash, git_rev, host, CheckpointSummary, FailureSummary, Report};
use super::snapshots::{prepare, CheckpointSettings, CheckpointStat, SnapshotError, Writer};
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
    /// The run cannot checkpoint (the message says why).
    #[error("{0}")]
    Checkpoints(String),
    /// The checkpoint directory cannot be used, or a checkpoint could not be written.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
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
    Ok(run_with(workload, settings, cluster, None)?
        .map(|(report, recorder, _, _)| (report, recorder)))
}

/// Runs `workload` twice with `settings`, first without checkpoints and then checkpointing as
/// `checkpoint` says ([`super::snapshots`]), and returns the checkpointed run's report, whose
/// `checkpoints` sets what the checkpoints cost beside the run without them
/// ([`CheckpointSummary`]), with its recorder; `None` on processes other than 0.
///
/// Errors: see [`RunError`]; [`RunError::Checkpoints`] for an engine, workload or cluster that
/// cannot checkpoint, [`RunError::Snapshot`] for the directory or a write.
pub fn run_paired<W: Workload>(
    workload: &W,
    settings: &Settings,
    cluster: &Cluster,
    checkpoint: &CheckpointSettings,
) -> Result<Option<(Report, Recorder)>, RunError> {
    can_checkpoint(workload, settings)?;
    // Before the run without checkpoints: a directory that cannot be used fails at once.
    prepare(&checkpoint.dir)?;
    // The run without checkpoints does not fail either.
    let plain = Settings {
        config: RunConfig {
            fail_at_ns: None,
            ..settings.config.clone()
        },
        ..settings.clone()
    };
    let Some((without, _, _, _)) = run_with(workload, &plain, cluster, None)? else {
        return Ok(None);
    };
    let Some((mut report, recorder, stats, failures)) =
        run_with(workload, settings, cluster, Some(checkpoint))?
    else {
        return Ok(None);
    };
    let mut summary = CheckpointSummary::new(
        checkpoint,
        settings.config.duration_ns,
        stats,
        &without,
        &report,
    );
    summary.failure = FailureSummary::of(&failures);
    report.checkpoints = Some(summary);
    Ok(Some((report, recorder)))
}

/// Refuses what cannot checkpoint: the baseline and the differential view (no operator state
/// hooks), workloads without [`Workload::has_checkpoints`], and several processes (each
/// process's writer commits its own workers only).
pub fn can_checkpoint<W: Workload>(workload: &W, settings: &Settings) -> Result<(), RunError> {
    let why = if settings.engine != Engine::Timely {
        format!(
            "--engine {} has no operator state to snapshot; checkpoints run on --engine timely",
            settings.engine.name()
        )
    } else if !workload.has_checkpoints() {
        format!(
            "{} {} does not hand its operator state to checkpoints (ysb and wordcount do)",
            W::NAME,
            workload.query()
        )
    } else if settings.processes > 1 {
        "checkpoints are measured in one process: use --workers for parallelism".to_string()
    } else {
        return Ok(());
    };
    Err(RunError::Checkpoints(why))
}

/// One run, checkpointing when `checkpoint` is given: the report (its `checkpoints` not yet
/// filled), the merged recorder, the completed checkpoints and the workers' failures
/// (`--fail-at`); `None` on processes other than 0.
fn run_with<W: Workload>(
    workload: &W,
    settings: &Settings,
    cluster: &Cluster,
    checkpoint: Option<&CheckpointSettings>,
) -> Result<Option<Outcome>, RunError> {
    let config = &settings.config;
    let mut stats = Vec::new();
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
                    workload: W::NAME,
                    query: workload.query(),
                });
            }
            let writer = match checkpoint {
                Some(checkpoint) => {
                    can_checkpoint(workload, settings)?;
                    prepare(&checkpoint.dir)?;
                    let hash = crate::checkpoint::config_hash(&description(
                        workload,
                        settings,
                        Some(checkpoint),
                    ));
                    Some(Arc::new(Writer::start(checkpoint, settings.workers, hash)))
                }
                None => None,
            };
            let (workload, config) = (workload.clone(), config.clone());
            let hooks = writer.clone();
            // The instant this process's workers start their clocks at (see `run_engine`).
            let start = Arc::new(OnceLock::new());
            let running = cluster.execute(move |worker| {
                let outcome = run_engine(worker, &workload, &config, hooks.as_ref(), &start);
                gather(worker, outcome)
            })?;
            let outcomes = running
                .join()
                .map_err(RunError::Worker)?
                .into_iter()
                .flatten()
                .collect();
            if let Some(writer) = writer {
                // The workers have ended and dropped their hooks: this is the last reference.
                let writer = Arc::into_inner(writer).ok_or_else(|| {
                    RunError::Worker("the checkpoint writer is still shared".into())
                })?;
                stats = writer.finish().map_err(SnapshotError::from)?;
            }
            outcomes
        }
    };
    if outcomes.is_empty() {
        return Ok(None);
    }
    if let Some(error) = outcomes.iter().find_map(|o| o.error.clone()) {
        return Err(RunError::Worker(error));
    }
    let (mut report, recorder) = report(workload, settings, &outcomes);
    if let Some(checkpoint) = checkpoint {
        report.config_hash = config_hash(&description(workload, settings, Some(checkpoint)));
    }
    let failures = outcomes.iter().filter_map(|o| o.failure.clone()).collect();
    Ok(Some((report, recorder, stats, failures)))
}

/// What [`run_with`] returns on process 0.
type Outcome = (Report, Recorder, Vec<CheckpointStat>, Vec<FailureOutcome>);

/// Everything that defines a run, for its configuration hash.
fn description<W: Workload>(
    workload: &W,
    settings: &Settings,
    checkpoint: Option<&CheckpointSettings>,
) -> String {
    let config = &settings.config;
    let engine = settings.engine.name();
    let (workers, processes) = (settings.workers.max(1), settings.processes.max(1));
    let mut description = format!(
        "{} {} {} {engine} w={workers} p={processes} rate={:?} d={} wu={} e={} seed={} pool={}",
        W::NAME,
        workload.query(),
        workload.parameters(),
        config.rate,
        config.duration_ns,
        config.warmup_ns,
        config.epoch_ns,
        config.seed,
        config.pool
    );
    if let Some(checkpoint) = checkpoint {
        description.push_str(&format!(" checkpoint={}", checkpoint.interval_ns));
        if let Some(at) = config.fail_at_ns {
            description.push_str(&format!(" fail_at={at}"));
        }
    }
    description
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
    let description = description(workload, settings, None);
    let report = Report {
        workload: W::NAME.to_string(),
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
        checkpoints: None,
        profile: config.profile.then(|| {
            let mut profiles: Vec<_> = outcomes.iter().filter_map(|o| o.profile.clone()).collect();
            profiles.sort_by_key(|p| p.worker);
            profiles
        }),
    };
    (report, recorder)
}
