//! `tidemark bench`: runs a workload through the harness and reports throughput and latency.
//!
//! `tidemark bench ysb` with no other flags is the project's main job: a 10 s open-loop run of
//! the Yahoo Streaming Benchmark at 1 M events/s on one worker, printed as a table.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::{Args, ValueEnum};

use crate::cli::ClusterArgs;
use crate::cluster::Cluster;
use crate::harness::driver::{run_baseline, run_engine, RunConfig, WorkerOutcome};
use crate::harness::recorder::Recorder;
use crate::harness::report::{config_hash, git_rev, host, Report};
use crate::harness::{gather, sustainable};
use crate::output::{check_distinct, Output};
use crate::partition::Scheme;
use crate::workloads::nexmark::{Nexmark, Query};
use crate::workloads::wordcount::WordCount;
use crate::workloads::ysb::Ysb;
use crate::workloads::Workload;

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadName {
    /// Yahoo Streaming Benchmark: 10 s tumbling view count per campaign.
    Ysb,
    /// Keyed running count of words.
    Wordcount,
    /// NEXMark auctions, persons and bids; choose the query with `--query`.
    Nexmark,
}

/// Which implementation runs the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineName {
    /// The tidemark dataflow on timely.
    Timely,
    /// The hand-written single-threaded baseline (COST).
    Baseline,
    /// The incremental view on differential dataflow (ysb; nexmark q3, q4, q6, q9).
    Differential,
}

/// An offered rate: events per second, or `max` for a closed-loop run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(pub Option<u64>);

fn rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate(None));
    }
    let (digits, scale) = match text.char_indices().last() {
        Some((i, 'k')) => (&text[..i], 1_000),
        Some((i, 'M')) => (&text[..i], 1_000_000),
        Some((i, 'G')) => (&text[..i], 1_000_000_000),
        _ => (text, 1),
    };
    let n: f64 = digits
        .parse()
        .map_err(|_| format!("expected events per second (e.g. 500k, 2M) or max, got {text:?}"))?;
    let events = (n * scale as f64).round();
    if events.is_nan() || events < 1.0 {
        return Err(format!("the rate must be positive, got {text:?}"));
    }
    Ok(Rate(Some(events as u64)))
}

/// Reads a duration in nanoseconds: a number with `ns`, `us`, `ms`, `s`, `m` or `h`
/// (plain numbers are milliseconds, as elsewhere in tidemark).
pub fn nanos(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "" | "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => {
            return Err(format!(
                "expected a duration such as 100us, 1ms or 10s, got {text:?}"
            ))
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 100us, 1ms or 10s, got {text:?}"))?;
    Ok((n * scale).round() as u64)
}

/// Arguments of `tidemark bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tidemark bench ysb\n  tidemark bench ysb --rate max --engine baseline\n  \
    tidemark bench wordcount --rate 2M --workers 2 --json run.json"
)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: WorkloadName,
    /// Offered events per second over all workers (k, M, G suffixes), or `max` (closed loop).
    #[arg(long, default_value = "1M", value_parser = rate, allow_negative_numbers = true)]
    pub rate: Rate,
    /// Length of the run, warm-up included.
    #[arg(long, default_value = "10s", value_parser = nanos)]
    pub duration: u64,
    /// Initial part of the run that is not measured.
    #[arg(long, default_value = "2s", value_parser = nanos)]
    pub warmup: u64,
    /// Epoch length: timestamp granularity and latency resolution.
    #[arg(long, default_value = "1ms", value_parser = nanos)]
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
    /// Write per-second latency histograms as an HdrHistogram interval log.
    #[arg(long)]
    pub hlog: Option<PathBuf>,
    /// Search for the highest rate whose p99 stays below `--p99-bound`.
    #[arg(long)]
    pub find_sustainable: bool,
    /// Latency bound for `--find-sustainable`.
    #[arg(long, default_value = "10ms", value_parser = nanos)]
    pub p99_bound: u64,
    /// Events pre-generated per worker (and replayed).
    #[arg(long, default_value_t = 1 << 20)]
    pub pool: usize,
    /// YSB and NEXMark: window size (YSB, NEXMark q5/q7/q8).
    #[arg(long, default_value = "10s", value_parser = nanos)]
    pub window: u64,
    /// YSB: number of campaigns (10 ads each).
    #[arg(long, default_value_t = 100)]
    pub campaigns: u32,
    /// NEXMark: the query (q0-q9, q11; --engine differential: q3, q4, q6, q9).
    #[arg(long, default_value = "q7")]
    pub query: String,
    /// NEXMark: sliding-window slide (q5).
    #[arg(long, default_value = "2s", value_parser = nanos)]
    pub slide: u64,
    /// NEXMark: session gap (q11).
    #[arg(long, default_value = "10s", value_parser = nanos)]
    pub gap: u64,
    /// Word count: vocabulary size.
    #[arg(long, default_value_t = 100_000)]
    pub words: u64,
    /// YSB and word count: how keys are spread over workers (`hash`, `range` evenly over the
    /// key domain, or `random` with two-phase aggregation).
    #[arg(long, default_value = "hash")]
    pub partitioner: Scheme,
    /// Threads, processes and hostfile.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Hold the output frontier back by this long (calibrates the latency measurement).
    #[arg(long, default_value = "0", value_parser = nanos, hide = true)]
    pub inject_delay: u64,
}

/// Runs the command.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.warmup >= args.duration {
        bail!(
            "--duration ({} ms) must be longer than --warmup ({} ms)",
            args.duration / 1_000_000,
            args.warmup / 1_000_000
        );
    }
    if args.epoch == 0 || args.epoch > args.duration {
        bail!("--epoch must be positive and at most --duration");
    }
    if args.engine == EngineName::Baseline
        && (args.cluster.workers > 1 || args.cluster.processes > 1)
    {
        bail!("the baseline is single-threaded: use --workers 1 without --processes");
    }
    // Fail before a long run if a report file cannot be written (trying leaves no trace).
    let outputs: Vec<(&str, &Path)> = [("--json", &args.json), ("--hlog", &args.hlog)]
        .into_iter()
        .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
        .collect();
    check_distinct(None, &outputs)?;
    for (_, path) in &outputs {
        drop(Output::create(path)?);
    }
    match args.workload {
        WorkloadName::Ysb => {
            let mut ysb = Ysb::new(args.window, args.campaigns, 10);
            ysb.partitioner = args.partitioner;
            bench(&args, ysb)
        }
        WorkloadName::Wordcount => {
            let wordcount = WordCount {
                words: args.words,
                partitioner: args.partitioner,
            };
            bench(&args, wordcount)
        }
        WorkloadName::Nexmark => {
            if args.partitioner != Scheme::Hash {
                bail!("--partitioner applies to ysb and wordcount; nexmark queries use hash");
            }
            let query: Query = args.query.parse().map_err(|e| anyhow!("--query: {e}"))?;
            let nexmark = Nexmark {
                query,
                window_ns: args.window,
                slide_ns: args.slide,
                gap_ns: args.gap,
            };
            nexmark.validate().map_err(|e| anyhow!("{e}"))?;
            bench(&args, nexmark)
        }
    }
}

fn bench<W: Workload>(args: &BenchArgs, workload: W) -> anyhow::Result<()> {
    let cluster = args.cluster.cluster()?;
    if !args.find_sustainable {
        let Some((report, recorder)) = run_once(args, &cluster, &workload, args.rate.0, true)?
        else {
            return Ok(());
        };
        return finish(args, &report, &recorder);
    }
    if args.cluster.processes > 1 {
        bail!("--find-sustainable runs in one process; use --workers for parallelism");
    }
    crate::abort::say(format_args!("finding the closed-loop maximum..."));
    let Some((max, _)) = run_once(args, &cluster, &workload, None, false)? else {
        return Ok(());
    };
    let late_third = args.duration - (args.duration - args.warmup) / 3;
    let (probes, best) =
        sustainable::search(max.achieved_rate as u64, args.p99_bound, 7, |rate| {
            let (report, recorder) = run_once(args, &cluster, &workload, Some(rate), false)?
                .ok_or_else(|| anyhow!("no report"))?;
            let late = recorder.p99_between(late_third, args.duration);
            crate::abort::say(format_args!(
                "  offered {:>12} /s: achieved {:>12.0} /s, p99 {:.3} ms",
                rate,
                report.achieved_rate,
                report.latency_ns.p99 as f64 / 1e6
            ));
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
                args.p99_bound as f64 / 1e6,
                best.rate
            ))?;
            let recorder = Recorder::new(args.warmup, false);
            finish(args, &best.report, &recorder)
        }
        None => bail!(
            "no offered rate kept p99 below {:.3} ms",
            args.p99_bound as f64 / 1e6
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
        intervals: true,
        inject_delay_ns: args.inject_delay,
        progress: progress && std::io::stderr().is_terminal(),
        incremental: args.engine == EngineName::Differential,
    };
    let outcomes: Vec<WorkerOutcome> = match args.engine {
        EngineName::Baseline => vec![run_baseline(workload, &config)],
        EngineName::Timely | EngineName::Differential => {
            if args.engine == EngineName::Differential && !workload.has_incremental() {
                bail!(
                    "{} {} has no incremental version (--engine differential runs ysb and nexmark q3, q4, q6, q9)",
                    workload.name(),
                    workload.query()
                );
            }
            let (workload, config) = (workload.clone(), config.clone());
            let running = cluster.execute(move |worker| {
                let outcome = run_engine(worker, &workload, &config);
                gather(worker, outcome)
            })?;
            running
                .join()
                .map_err(|e| anyhow!("{e}"))?
                .into_iter()
                .flatten()
                .collect()
        }
    };
    if outcomes.is_empty() {
        return Ok(None);
    }
    let mut recorder = Recorder::new(args.warmup, true);
    for outcome in &outcomes {
        recorder.merge(&Recorder::from_bytes(&outcome.recorder));
    }
    let events: u64 = outcomes.iter().map(|o| o.retired_events).sum();
    let duration_s = (args.duration - args.warmup) as f64 / 1e9;
    let engine = match args.engine {
        EngineName::Timely => "timely",
        EngineName::Baseline => "baseline",
        EngineName::Differential => "differential",
    };
    let (workers, processes) = match args.engine {
        EngineName::Timely | EngineName::Differential => {
            (args.cluster.workers, args.cluster.processes)
        }
        EngineName::Baseline => (1, 1),
    };
    let description = format!(
        "{} {} {} {engine} w={workers} p={processes} rate={rate:?} d={} wu={} e={} seed={} pool={}",
        workload.name(),
        workload.query(),
        workload.parameters(),
        args.duration,
        args.warmup,
        args.epoch,
        args.seed,
        args.pool
    );
    let report = Report {
        workload: workload.name().to_string(),
        query: workload.query(),
        parameters: workload.parameters(),
        engine: engine.to_string(),
        workers,
        processes,
        offered_rate: rate,
        achieved_rate: events as f64 / duration_s,
        events,
        duration_s,
        warmup_s: args.warmup as f64 / 1e9,
        epoch_ns: args.epoch,
        latency_ns: recorder.percentiles(),
        samples: recorder.samples(),
        generator_rate: outcomes.iter().map(|o| o.generator_rate).sum::<f64>()
            / outcomes.len() as f64,
        seed: args.seed,
        git_rev: git_rev(),
        config_hash: config_hash(&description),
        host: host(),
    };
    Ok(Some((report, recorder)))
}
