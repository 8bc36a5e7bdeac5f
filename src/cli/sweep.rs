//! `tidemark sweep`: runs an experiment spec's grid of `tidemark bench` runs, each in a fresh
//! process, into a results directory that resumes where it stopped.
//!
//! The spec format and the results layout are described in [`crate::harness::experiment`].
//! This module checks every run with the bench's own parser and checks, and drives the runs.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, CommandFactory, Parser as _};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::bench::{self, nanos, BenchArgs, EngineName};
use crate::cli::{Cli, Command};
use crate::harness::experiment::{
    completed, execute, BenchFlags, Job, Record, ResultsDir, Run, Spec, SET_BY_SWEEP,
};

/// Arguments of `tidemark sweep`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tidemark sweep experiments/latency.toml --dry-run\n  \
    tidemark sweep experiments/latency.toml"
)]
pub struct SweepArgs {
    /// The experiment spec (TOML): workload, grid, repetitions, fixed flags.
    pub spec: PathBuf,
    /// List the runs (recorded, to run, left out, invalid) without running anything; exits
    /// non-zero when a run is invalid.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on after a failed or invalid run; the failures are listed at the end (and the exit
    /// status is non-zero). Failed runs are not recorded, so the next sweep tries them again.
    #[arg(long)]
    pub keep_going: bool,
    /// Results directory, instead of the spec's (default: results/NAME beside the spec).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The arguments of `tidemark bench`, as a spec may set them.
pub fn bench_flags() -> BenchFlags {
    let cli = Cli::command();
    let bench = cli
        .find_subcommand("bench")
        .expect("tidemark has a bench subcommand");
    BenchFlags::from_command(bench, &SET_BY_SWEEP)
}

/// A run's bench arguments, parsed by the bench's own parser and checked by its own checks;
/// the first line of the error otherwise.
fn check(run: &Run) -> Result<BenchArgs, String> {
    let argv = std::iter::once("tidemark").chain(run.args.iter().map(String::as_str));
    let args = match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Bench(args),
        }) => args,
        Ok(_) => return Err("not a bench run".into()),
        Err(e) => {
            return Err(e
                .render()
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string())
        }
    };
    bench::validate(&args).map_err(|e| format!("{e:#}"))?;
    Ok(args)
}

/// Why a point is left out: the baseline on several processes (on several workers it is the
/// parallel ceiling, which runs).
fn skip(run: &Run) -> Option<String> {
    let argv = std::iter::once("tidemark").chain(run.args.iter().map(String::as_str));
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Bench(args),
        }) if args.engine == EngineName::Baseline && args.cluster.processes > 1 => {
            Some("the baseline runs in one process".into())
        }
        _ => None,
    }
}

/// The longest one run may take: the spec's `timeout`, or a minute plus five times the run,
/// warm-up counted in whichever way `--duration` counts it (twelve runs for
/// `--find-sustainable`).
fn limit(timeout: Option<Duration>, args: &BenchArgs) -> Duration {
    timeout.unwrap_or_else(|| {
        let searches = if args.find_sustainable { 12 } else { 1 };
        let run = Duration::from_nanos(args.duration.saturating_add(args.warmup));
        Duration::from_secs(60) + run * 5 * searches
    })
}

/// Runs the command.
pub fn run(args: SweepArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&args.spec, bench_flags())?;
    let timeout = spec
        .timeout
        .as_deref()
        .map(|t| nanos(t).map(Duration::from_nanos))
        .transpose()
        .map_err(|e| anyhow!("{}: key 'timeout': {e}", args.spec.display()))?;
    let dir = args.output.clone().unwrap_or_else(|| spec.output.clone());
    let expansion = spec.expand(skip);
    let runs_path = dir.join("runs.jsonl");
    let done = completed(&runs_path)?;
    // Every run is checked before anything runs: a spec with one bad run runs nothing.
    let checked: Vec<(&Run, Result<BenchArgs, String>)> =
        expansion.runs.iter().map(|r| (r, check(r))).collect();
    let invalid: Vec<(String, &String)> = checked
        .iter()
        .filter_map(|(r, c)| c.as_ref().err().map(|e| (r.label(&expansion.varying), e)))
        .collect();
    let pending: Vec<&(&Run, Result<BenchArgs, String>)> = checked
        .iter()
        .filter(|(r, _)| !done.contains(&r.key()))
        .collect();

    if args.dry_run {
        // Written at once, and a reader that stopped early (`| head`) is no error: `println!`
        // panics on a closed pipe.
        let mut listing = String::new();
        let mut line = |text: String| {
            listing.push_str(&text);
            listing.push('\n');
        };
        line(format!(
            "{}: {} runs ({} points x {} repetitions) into {}",
            spec.name,
            expansion.runs.len(),
            expansion.runs.len() as u64 / spec.repetitions,
            spec.repetitions,
            dir.display()
        ));
        for (run, check) in &checked {
            match check {
                Err(e) => line(format!("  invalid   {}: {e}", run.command())),
                Ok(_) if done.contains(&run.key()) => {
                    line(format!("  recorded  {}", run.command()))
                }
                Ok(_) => line(format!("  to run    {}", run.command())),
            }
        }
        for (run, why) in &expansion.skipped {
            line(format!("  left out  {}  ({why})", run.command()));
        }
        line(format!(
            "{} to run, {} already recorded in {} (not run again), {} points left out, {} invalid",
            pending.iter().filter(|(_, c)| c.is_ok()).count(),
            expansion.runs.len() - pending.len(),
            runs_path.display(),
            expansion.skipped.len(),
            invalid.len()
        ));
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(listing.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.context("writing the dry run to standard output")?,
        }
        if let Some((label, e)) = invalid.first() {
            bail!(
                "{}: {} invalid runs, the first: {label}: {e}",
                args.spec.display(),
                invalid.len()
            );
        }
        return Ok(());
    }

    if let Some((label, e)) = invalid.first() {
        if !args.keep_going {
            bail!(
                "{}: run {label}: {e} ({} invalid runs; --dry-run lists them, --keep-going \
                 runs the others); nothing was run",
                args.spec.display(),
                invalid.len()
            );
        }
    }
    if pending.is_empty() {
        crate::abort::say(format_args!(
            "{}: all {} runs are already in {}",
            spec.name,
            expansion.runs.len(),
            runs_path.display()
        ));
        return Ok(());
    }
    let results = ResultsDir::open(&dir)?;
    let exe = std::env::current_exe().context("cannot find the tidemark executable")?;

    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(pending.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let say = |line: String| {
        if bar.is_hidden() {
            crate::abort::say(line);
        } else {
            bar.println(line);
        }
    };
    say(format!(
        "{}: {} runs to do ({} already done) into {}",
        spec.name,
        pending.len(),
        expansion.runs.len() - pending.len(),
        dir.display()
    ));
    let mut failures = Vec::new();
    for (i, (run, check)) in pending.iter().enumerate() {
        let label = run.label(&expansion.varying);
        let step = format!("[{}/{}] {label}", i + 1, pending.len());
        bar.set_message(label.clone());
        let bench_args = match check {
            Ok(bench_args) => bench_args,
            Err(e) => {
                say(format!("{step}: invalid: {e}"));
                failures.push(format!("{label}: {e}"));
                bar.inc(1);
                continue;
            }
        };
        let job = Job {
            exe: &exe,
            run,
            processes: bench_args.cluster.processes,
            limit: limit(timeout, bench_args),
        };
        let outcome = execute(&job, &results).and_then(|report| {
            let hlog = format!("hlog/{}", run.hlog_name());
            let record = Record::new(report, &spec.name, run, &hlog);
            results.append(&record).map_err(|e| e.to_string())?;
            Ok(record)
        });
        match outcome {
            Ok(record) => say(format!("{step}: {}", summary(&record))),
            Err(e) => {
                let message = format!("run {label} failed: {e}");
                if !args.keep_going {
                    bar.finish_and_clear();
                    bail!(
                        "{}: {message}\n  command: {}",
                        args.spec.display(),
                        run.command()
                    );
                }
                say(format!("{step}: failed: {e}"));
                failures.push(format!("{label}: {e}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !failures.is_empty() {
        bail!(
            "{}: {} of {} runs failed (not recorded; a new sweep retries them):\n  {}",
            args.spec.display(),
            failures.len(),
            pending.len(),
            failures.join("\n  ")
        );
    }
    crate::abort::say(format_args!(
        "{}: {} runs done, results in {}",
        spec.name,
        pending.len(),
        runs_path.display()
    ));
    Ok(())
}

/// One line about a recorded run: rate and latency, or that no epoch completed (an overloaded
/// run has no latency percentiles, whichever way the report writes their absence).
fn summary(record: &Record) -> String {
    let report = &record.report;
    let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
    let overloaded = report.overloaded || report.samples == 0;
    let latency = match (ms(report.latency_ns.p50), ms(report.latency_ns.p99)) {
        (Some(p50), Some(p99)) if !overloaded => format!("p50 {p50:.3} ms, p99 {p99:.3} ms"),
        _ => "no epoch completed (overloaded)".to_string(),
    };
    format!("{:.0} events/s, {latency}", record.report.achieved_rate)
}
