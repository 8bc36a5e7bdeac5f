//! `tidemark bench`: parses and checks the flags, then runs a workload through the harness
//! ([`crate::harness::run`]) and prints its report.
//!
//! `tidemark bench ysb` with no other flags is the project's main job: a 10 s open-loop run of
//! the Yahoo Streaming Benchmark at 1 M events/s on one worker (2 s warm-up, 8 s measured),
//! printed as a table.
//!
//! Every flag is checked before anything runs: durations and rates through [`crate::units`],
//! each workload's own flags (`--campaigns`, `--words`, `--query`, ...) rejected for the others,
//! sizes within bounds that keep a run from exhausting memory. An overloaded run (see
//! [`crate::harness::driver`]) still exits 0: its report says `overloaded`, its latency is
//! unbounded, and a warning line on stderr says so.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;

use crate::cli::ClusterArgs;
use crate::cluster::Cluster;
use crate::harness::driver::RunConfig;
use crate::harness::recorder::Recorder;
use crate::harness::report::Report;
use crate::harness::run::{self, Engine, Settings};
use crate::harness::snapshots::CheckpointSettings;
use crate::harness::sustainable;
use crate::output::{check_distinct, Output};
use crate::partition::Scheme;
use crate::units::{parse_nanos, parse_rate};
use crate::workloads::{
    Registered, SharedFlags, WithWorkload, Workload, WorkloadFlags, WorkloadName,
};

/// The duration parser every duration flag of the CLI shares (re-exported for the sweep).
pub use crate::units::parse_nanos as nanos;

/// The engine flag's values (the library's [`Engine`]).
pub type EngineName = Engine;

/// An offered rate: events per second, or `max` for a closed-loop run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

fn rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate(None));
    }
    parse_rate(text)
        .map(|r| Rate(Some(r)))
        .map_err(|e| e.to_string())
}

fn duration(text: &str) -> Result<u64, String> {
    parse_nanos(text).map_err(|e| e.to_string())
}

/// `--find-sustainable`'s default latency bound: 10 ms.
pub const DEFAULT_P99_BOUND_NS: u64 = 10_000_000;

/// The most events a worker may pre-generate (`--pool`): 2^26, a few GB of NEXMark events.
pub const MAX_POOL: usize = 1 << 26;

/// Arguments of `tidemark bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Durations: a number and ns, us, ms, s, m or h (a plain number is milliseconds). \
    --duration is the whole run, warm-up included: `--duration 10s --warmup 2s` measures 8 s.\n\
    An overloaded run (one that falls more than a second behind the offered rate) is stopped \
    early, reported with \"overloaded\": true and null latencies, and exits 0 with a warning.\n\n\
    --engine baseline --workers N runs N independent baselines at once, each on one worker's \
    share of the stream, and reports their summed rate: the machine's parallel ceiling.\n\n\
    Examples:\n  tidemark bench ysb\n  tidemark bench ysb --rate max --engine baseline\n  \
    tidemark bench ysb --rate max --engine baseline --workers 2\n  \
    tidemark bench ysb --workers 2 --checkpoint-dir ckpt --checkpoint-interval 1s\n  \
    tidemark bench wordcount --rate 2M --workers 2 --json run.json"
)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: WorkloadName,
    /// Offered events per second over all workers (k, M, G suffixes, at most 1000G), or `max`
    /// (closed loop) [default: 1M; not with --find-sustainable].
    #[arg(long, value_parser = rate, allow_negative_numbers = true)]
    pub rate: Option<Rate>,
    /// Length of the whole run, warm-up included (the measured part is --duration minus
    /// --warmup).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub duration: u64,
    /// Initial part of the run that is not measured.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub warmup: u64,
    /// Epoch length: timestamp granularity and latency resolution.
    #[arg(long, default_value = "1ms", value_parser = duration)]
    pub epoch: u64,
    /// Which implementation to run.
    #[arg(long, value_enum, default_value = "timely")]
    pub engine: EngineName,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the report as one JSON object to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write per-second latency histograms as an HdrHistogram interval log (keeps one
    /// histogram per second of the run in memory, about 0.25 MB each).
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Search for the highest rate whose p99 stays below `--p99-bound`.
    #[arg(long)]
    pub find_sustainable: bool,
    /// Latency bound for `--find-sustainable` [default: 10ms].
    #[arg(long, value_parser = duration)]
    pub p99_bound: Option<u64>,
    /// Events pre-generated per worker (and replayed), 1 to 2^26.
    #[arg(long, default_value_t = 1 << 20)]
    pub pool: usize,
    /// YSB and NEXMark (q5, q7, q8): window size [default: 10s].
    #[arg(long, value_parser = duration)]
    pub window: Option<u64>,
    /// Each workload's own flags (`--campaigns`, `--words`, `--query`, ...): see the registry
    /// in [`crate::workloads`].
    #[command(flatten)]
    pub flags: WorkloadFlags,
    /// YSB and word count: how keys are spread over workers (`hash`, `range` evenly over the
    /// key domain, or `random` with two-phase aggregation).
    #[arg(long, default_value = "hash")]
    pub partitioner: Scheme,
    /// Threads, processes and hostfile.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Report where each engine worker's time goes, per operator (share of its time, records in
    /// and out), from timely's own event log; not for the baseline. Logging costs throughput.
    #[arg(long)]
    pub profile: bool,
    /// Checkpoint the operators' state into this directory while measuring, and report what
    /// it cost beside the same run without checkpoints (run first, with the same settings):
    /// `--engine timely`, ysb and wordcount, one process. The directory must be new, empty, or
    /// an earlier bench's (whose checkpoints are removed).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints, in the offered stream's time (with --checkpoint-dir)
    /// [default: 1s].
    #[arg(long, value_parser = duration, requires = "checkpoint_dir")]
    pub checkpoint_interval: Option<u64>,
    /// With --checkpoint-dir, open loop: at this time of the run, tear the dataflow down as a
    /// crash would and rebuild it from its last complete checkpoint while the offered stream
    /// goes on; the report gives the recovery time and the latency over time around it.
    #[arg(long, value_parser = duration, requires = "checkpoint_dir")]
    pub fail_at: Option<u64>,
    /// Hold the output frontier back by this long (calibrates the latency measurement).
    #[arg(long, default_value = "0", value_parser = duration, hide = true)]
    pub inject_delay: u64,
}

/// Runs the command.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    check(&args)?;
    args.workload
        .build(&args.flags, &args.shared(), Bench(&args))?
}

/// Runs the chosen workload ([`bench`]).
struct Bench<'a>(&'a BenchArgs);

impl WithWorkload for Bench<'_> {
    type Out = anyhow::Result<()>;
    fn run<W: Registered>(self, workload: W) -> anyhow::Result<()> {
        bench(self.0, workload)
    }
}

/// Checks that the engine has the chosen workload ([`engine_has`]).
struct EngineHas<'a>(&'a BenchArgs);

impl WithWorkload for EngineHas<'_> {
    type Out = anyhow::Result<()>;
    fn run<W: Registered>(self, workload: W) -> anyhow::Result<()> {
        engine_has(self.0, &workload)
    }
}

impl BenchArgs {
    /// The flags several workloads share.
    fn shared(&self) -> SharedFlags {
        SharedFlags {
            window: self.window,
            partitioner: self.partitioner,
        }
    }
}

/// Checks parsed arguments completely without running anything or touching a file: every flag
/// and bound, the workload's own flags, NEXMark's query and windows, and whether the engine has
/// the workload. What [`run()`] would refuse, this refuses with the same one-line error; a sweep
/// can check every run of a spec before the first one starts.
pub fn validate(args: &BenchArgs) -> anyhow::Result<()> {
    check(args)?;
    args.workload
        .build(&args.flags, &args.shared(), EngineHas(args))?
}

/// `--engine differential` needs the workload's incremental view; `--checkpoint-dir` an engine,
/// workload and cluster that can checkpoint ([`run::can_checkpoint`]).
fn engine_has<W: Workload>(args: &BenchArgs, workload: &W) -> anyhow::Result<()> {
    if args.checkpoint_dir.is_some() {
        run::can_checkpoint(workload, &settings(args, RunConfig::open_loop(1, 1, 0)))?;
    }
    if args.engine == EngineName::Differential && !workload.has_incremental() {
        return Err(run::RunError::NoIncremental {
            workload: W::NAME,
            query: workload.query(),
        }
        .into());
    }
    Ok(())
}

/// Checks every flag but the workloads' own (see [`WorkloadName::build`]) before anything runs
/// or any file is touched.
fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.warmup >= args.duration {
        bail!(
            "--duration ({} ms) must be longer than --warmup ({} ms): --duration is the whole run, warm-up included",
            args.duration / 1_000_000,
            args.warmup / 1_000_000
        );
    }
    if args.epoch == 0 || args.epoch > args.duration {
        bail!("--epoch must be positive and at most --duration");
    }
    if args.find_sustainable {
        if args.rate.is_some() {
            bail!("--rate and --find-sustainable exclude each other: the search chooses the rates");
        }
        if args.p99_bound == Some(0) {
            bail!("--p99-bound must be positive");
        }
        if args.cluster.processes > 1 {
            bail!("--find-sustainable runs in one process; use --workers for parallelism");
        }
    }
    if !args.find_sustainable && args.p99_bound.is_some() {
        bail!("--p99-bound applies to --find-sustainable only (it would be ignored)");
    }
    if args.engine == EngineName::Baseline && args.profile {
        bail!("--profile reads timely's event log: it applies to --engine timely and differential, not the baseline");
    }
    if args.engine == EngineName::Baseline && args.cluster.processes > 1 {
        return Err(run::RunError::BaselineParallel.into());
    }
    if args.checkpoint_dir.is_some() {
        if args.checkpoint_interval == Some(0) {
            bail!("--checkpoint-interval must be positive");
        }
        if args.find_sustainable {
            bail!("--checkpoint-dir and --find-sustainable exclude each other: a checkpointed run is measured beside the same run without checkpoints, at one rate");
        }
    }
    if let Some(at) = args.fail_at {
        if at == 0 || at >= args.duration {
            bail!("--fail-at must be within the run: after 0 and before --duration");
        }
        if args.rate == Some(Rate(None)) {
            bail!("--fail-at needs an open-loop run (--rate N): the stream goes on on its schedule through the failure");
        }
    }
    if args.pool == 0 || args.pool > MAX_POOL {
        bail!(
            "--pool must be between 1 and {MAX_POOL} events per worker, got {}",
            args.pool
        );
    }
    Ok(())
}

/// Runs a checked workload: the output files are touched only now, once every flag is valid.
fn bench<W: Workload>(args: &BenchArgs, workload: W) -> anyhow::Result<()> {
    engine_has(args, &workload)?;
    let cluster = args.cluster.cluster()?;
    // Fail before a long run if a report file cannot be written (trying leaves no trace).
    let outputs: Vec<(&str, &Path)> = [("--json", &args.json), ("--hlog", &args.hlog)]
        .into_iter()
        .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
        .collect();
    check_distinct(None, &outputs)?;
    for (_, path) in &outputs {
        drop(Output::create(path)?);
    }
    if !args.find_sustainable {
        let rate = args.rate.unwrap_or(Rate(Some(1_000_000))).0;
        let Some((report, recorder)) = run_once(args, &cluster, &workload, rate, true)? else {
            return Ok(());
        };
        return finish(args, &report, &recorder);
    }
    let bound = args.p99_bound.unwrap_or(DEFAULT_P99_BOUND_NS);
    crate::abort::say(format_args!("finding the closed-loop maximum..."));
    let Some((max, _)) = run_once(args, &cluster, &workload, None, false)? else {
        return Ok(());
    };
    let mut best_recorder: Option<(u64, Recorder)> = None;
    let (probes, best) = sustainable::search(max.achieved_rate as u64, bound, 7, |rate| {
        let (report, recorder) = run_once(args, &cluster, &workload, Some(rate), false)?
            .ok_or_else(|| anyhow!("no report"))?;
        let late = recorder.tail_p99();
        match (report.overloaded, report.latency_ns.p99) {
            (false, Some(p99)) => crate::abort::say(format_args!(
                "  offered {:>12} /s: achieved {:>12.0} /s, p99 {:.3} ms",
                rate,
                report.achieved_rate,
                p99 as f64 / 1e6
            )),
            _ => crate::abort::say(format_args!(
                "  offered {:>12} /s: achieved {:>12.0} /s, overloaded ({} epochs completed)",
                rate, report.achieved_rate, report.samples
            )),
        }
        if sustainable::sustainable(&report, late, bound)
            && best_recorder.as_ref().is_none_or(|(r, _)| *r < rate)
        {
            best_recorder = Some((rate, recorder));
        }
        Ok((report, late))
    })?;
    crate::abort::say(format_args!(
        "{} probes, closed-loop maximum {:.0} events/s",
        probes.len(),
        max.achieved_rate
    ));
    match best {
        Some(best) => {
            stdout(&format!(
                "sustainable throughput (p99 <= {:.3} ms): {} events/s\n",
                bound as f64 / 1e6,
                best.rate
            ))?;
            let recorder = best_recorder
                .filter(|(rate, _)| *rate == best.rate)
                .map_or_else(|| Recorder::new(args.warmup, false), |(_, r)| r);
            finish(args, &best.report, &recorder)
        }
        None => bail!(
            "no offered rate kept p99 below {:.3} ms",
            bound as f64 / 1e6
        ),
    }
}

/// Writes `text` to standard output; an error (a closed pipe) is one line, not a panic as
/// with `print!`.
fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing standard output")
}

fn finish(args: &BenchArgs, report: &Report, recorder: &Recorder) -> anyhow::Result<()> {
    stdout(&report.table())?;
    if let Some(warning) = report.warning() {
        crate::abort::say(format_args!("{warning}"));
    }
    // Written to temporary files, renamed only when both are complete (see `crate::output`).
    let mut written = Vec::new();
    if let Some(path) = &args.json {
        let (output, mut file) = Output::create(path)?;
        serde_json::to_writer(&mut file, report)?;
        writeln!(file)?;
        file.flush()?;
        written.push(output);
    }
    if let Some(path) = &args.hlog {
        let (output, mut file) = Output::create(path)?;
        let comment = format!(
            "tidemark {} {} {}",
            report.workload, report.query, report.config_hash
        );
        recorder.write_interval_log(&mut file, &comment)?;
        file.flush()?;
        written.push(output);
    }
    for output in written {
        output.commit()?;
    }
    Ok(())
}

/// One run; `None` on processes other than 0.
fn run_once<W: Workload>(
    args: &BenchArgs,
    cluster: &Cluster,
    workload: &W,
    rate: Option<u64>,
    progress: bool,
) -> anyhow::Result<Option<(Report, Recorder)>> {
    let config = RunConfig {
        rate,
        duration_ns: args.duration,
        warmup_ns: args.warmup,
        epoch_ns: args.epoch,
        seed: args.seed,
        pool: args.pool,
        intervals: args.hlog.is_some(),
        // The sustainability check's late part: the last third of the measured time.
        tail_from_ns: args
            .find_sustainable
            .then(|| args.duration - (args.duration - args.warmup) / 3),
        inject_delay_ns: args.inject_delay,
        progress: progress && std::io::stderr().is_terminal(),
        incremental: args.engine == EngineName::Differential,
        profile: args.profile,
        fail_at_ns: args.fail_at,
    };
    let settings = settings(args, config);
    Ok(match &args.checkpoint_dir {
        Some(dir) => {
            let checkpoint = CheckpointSettings {
                dir: dir.clone(),
                interval_ns: args
                    .checkpoint_interval
                    .unwrap_or(DEFAULT_CHECKPOINT_INTERVAL_NS),
            };
            run::run_paired(workload, &settings, cluster, &checkpoint)?
        }
        None => run::run(workload, &settings, cluster)?,
    })
}

/// `--checkpoint-interval`'s default: 1 s.
pub const DEFAULT_CHECKPOINT_INTERVAL_NS: u64 = 1_000_000_000;

/// The run's settings: the engine and cluster flags around `config`.
fn settings(args: &BenchArgs, config: RunConfig) -> Settings {
    Settings {
        engine: args.engine,
        config,
        workers: args.cluster.workers,
        processes: args.cluster.processes,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn validated(args: &str) -> anyhow::Result<()> {
        let cli = Cli::try_parse_from(format!("tidemark bench {args}").split_whitespace())
            .expect("parses");
        match cli.command {
            Command::Bench(args) => validate(&args),
            _ => unreachable!("a bench command"),
        }
    }

    #[test]
    fn validate_refuses_what_run_would_refuse_without_running() {
        assert!(validated("ysb").is_ok());
        assert!(validated("nexmark --query q5 --slide 1s --window 5s").is_ok());
        assert!(validated("nexmark --query q3 --engine differential").is_ok());
        for (args, needle) in [
            ("ysb --query q3", "--query does not apply to ysb"),
            ("ysb --campaigns 0", "--campaigns must be between 1"),
            ("ysb --window 5000000h", "--window: window sizes"),
            ("nexmark --query q42", "unknown NEXMark query"),
            (
                "nexmark --query q5 --slide 20s",
                "slide must not exceed size",
            ),
            (
                "nexmark --query q7 --engine differential",
                "no incremental version",
            ),
            ("wordcount --engine differential", "no incremental version"),
            (
                "ysb --duration 1s --warmup 1s",
                "must be longer than --warmup",
            ),
        ] {
            let error = validated(args).unwrap_err().to_string();
            assert!(error.contains(needle), "{args}: {error}");
        }
    }
}
