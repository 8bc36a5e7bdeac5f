//! `tidemark sweep`: runs an experiment spec's grid of `tidemark bench` runs, each in a fresh
//! process, into a results directory that resumes where it stopped.
//!
//! The spec format and the results layout are described in [`crate::harness::experiment`].

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, Parser as _};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::bench::nanos;
use crate::cli::Cli;
use crate::harness::experiment::{completed, record, Machine, Param, Run, Spec};

/// Arguments of `tidemark sweep`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  tidemark sweep experiments/latency.toml --dry-run\n  \
    tidemark sweep experiments/latency.toml"
)]
pub struct SweepArgs {
    /// The experiment spec (TOML): workload, grid, repetitions, fixed flags.
    pub spec: PathBuf,
    /// Print the runs (and the points left out) without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Go on after a failed run; the failures are listed at the end (and the exit status is
    /// non-zero). Failed runs are not recorded, so the next sweep tries them again.
    #[arg(long)]
    pub keep_going: bool,
    /// Results directory, instead of the spec's (default: results/NAME beside the spec).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The long flags `tidemark bench` accepts.
pub fn bench_flags() -> Vec<String> {
    let cli = Cli::command();
    let bench = cli
        .find_subcommand("bench")
        .expect("tidemark has a bench subcommand");
    bench
        .get_arguments()
        .filter_map(|a| a.get_long())
        .map(str::to_string)
        .collect()
}

/// Whether `tidemark bench` accepts a run's arguments; the error's first line otherwise.
fn check(run: &Run) -> Result<(), String> {
    let args = std::iter::once("tidemark".to_string()).chain(run.bench_args());
    match Cli::try_parse_from(args) {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_string()),
    }
}

/// The longest one run may take: the spec's `timeout`, or a minute plus five times the run.
fn timeout(spec: &Spec, run: &Run) -> anyhow::Result<Duration> {
    if let Some(text) = &spec.timeout {
        let ns = nanos(text).map_err(|e| anyhow::anyhow!("spec key 'timeout': {e}"))?;
        return Ok(Duration::from_nanos(ns));
    }
    let duration = match run.point.get("duration") {
        Some(d) => nanos(&d.to_string()).unwrap_or(10_000_000_000),
        None => 10_000_000_000,
    };
    let searches = if run.point.get("find-sustainable") == Some(&Param::Bool(true)) {
        12
    } else {
        1
    };
    Ok(Duration::from_secs(60) + Duration::from_nanos(duration) * 5 * searches)
}

/// Runs the command.
pub fn run(args: SweepArgs) -> anyhow::Result<()> {
    let spec = Spec::load(&args.spec, &bench_flags())?;
    let dir = args.output.clone().unwrap_or_else(|| spec.output.clone());
    let expansion = spec.expand();
    let runs_path = dir.join("runs.jsonl");
    let done = completed(&runs_path)?;
    let pending: Vec<&Run> = expansion
        .runs
        .iter()
        .filter(|r| !done.contains(&r.key()))
        .collect();
    let mut invalid = Vec::new();
    for run in &expansion.runs {
        if let Err(e) = check(run) {
            invalid.push((run.label(&expansion.varying), e));
        }
    }

    if args.dry_run {
        println!(
            "{}: {} runs ({} points x {} repetitions) into {}",
            spec.name,
            expansion.runs.len(),
            expansion.runs.len() as u64 / spec.repetitions,
            spec.repetitions,
            dir.display()
        );
        for run in &expansion.runs {
            let state = if done.contains(&run.key()) {
                "done"
            } else {
                "todo"
            };
            println!("  {state}  tidemark {}", run.bench_args().join(" "));
        }
        for (point, why) in &expansion.skipped {
            let run = Run {
                point: point.clone(),
                repetition: 0,
            };
            println!("  skip  tidemark {}  ({why})", run.bench_args().join(" "));
        }
        for (label, e) in &invalid {
            println!("  invalid  {label}: {e}");
        }
        println!(
            "{} to run, {} already done, {} points left out",
            pending.len(),
            expansion.runs.len() - pending.len(),
            expansion.skipped.len()
        );
        return Ok(());
    }

    if let Some((label, e)) = invalid.first() {
        if !args.keep_going {
            bail!(
                "{}: run {label}: {e} ({} invalid runs; --dry-run lists them, --keep-going \
                 runs the others)",
                args.spec.display(),
                invalid.len()
            );
        }
    }
    if pending.is_empty() {
        eprintln!(
            "{}: all {} runs are already in {}",
            spec.name,
            expansion.runs.len(),
            runs_path.display()
        );
        return Ok(());
    }
    let hlog_dir = dir.join("hlog");
    fs::create_dir_all(&hlog_dir)
        .with_context(|| format!("cannot create {}", hlog_dir.display()))?;
    remove_stale(&dir);
    let machine = serde_json::to_string_pretty(&Machine::detect())?;
    fs::write(dir.join("machine.json"), machine + "\n")
        .with_context(|| format!("cannot write {}", dir.join("machine.json").display()))?;
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
            eprintln!("{line}");
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
    let invalid_labels: BTreeSet<&String> = invalid.iter().map(|(l, _)| l).collect();
    let mut failures = Vec::new();
    for (i, run) in pending.iter().enumerate() {
        let label = run.label(&expansion.varying);
        bar.set_message(label.clone());
        if invalid_labels.contains(&label) {
            let e = invalid
                .iter()
                .find(|(l, _)| *l == label)
                .map(|(_, e)| e.clone())
                .unwrap_or_default();
            say(format!(
                "[{}/{}] {label}: invalid: {e}",
                i + 1,
                pending.len()
            ));
            failures.push(format!("{label}: {e}"));
            bar.inc(1);
            continue;
        }
        let limit = timeout(&spec, run)?;
        let outcome = execute(&exe, run, &dir, limit).and_then(|report| {
            let hlog = format!("hlog/{}", run.hlog_name());
            let line =
                record(report, &spec.name, run, &hlog).map_err(|e| format!("bad report: {e}"))?;
            append(&runs_path, &line).map_err(|e| format!("{e:#}"))?;
            Ok(line)
        });
        match outcome {
            Ok(line) => {
                let r: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                say(format!(
                    "[{}/{}] {label}: {:.0} events/s, p50 {:.3} ms, p99 {:.3} ms",
                    i + 1,
                    pending.len(),
                    r["achieved_rate"].as_f64().unwrap_or(0.0),
                    r["latency_ns"]["p50"].as_f64().unwrap_or(0.0) / 1e6,
                    r["latency_ns"]["p99"].as_f64().unwrap_or(0.0) / 1e6
                ));
            }
            Err(e) => {
                let message = format!("run {label} failed: {e}");
                if !args.keep_going {
                    bar.finish_and_clear();
                    bail!(
                        "{}: {message}\n  command: tidemark {}",
                        args.spec.display(),
                        run.bench_args().join(" ")
                    );
                }
                say(format!("[{}/{}] {message}", i + 1, pending.len()));
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
    eprintln!(
        "{}: {} runs done, results in {}",
        spec.name,
        pending.len(),
        runs_path.display()
    );
    Ok(())
}

/// Removes what an interrupted sweep left behind: temporary reports, hostfiles and logs, and
/// unfinished interval logs (all dot files).
fn remove_stale(dir: &Path) {
    for (folder, prefixes) in [
        (dir.to_path_buf(), &[".run-", ".hosts-"][..]),
        (dir.join("hlog"), &["."][..]),
    ] {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if prefixes.iter().any(|p| name.starts_with(p)) && entry.path().is_file() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Appends one line to `runs.jsonl` in one write.
fn append(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(format!("{line}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A hostfile of free local ports for a run of `processes` processes.
fn hostfile(path: &Path, processes: usize) -> Result<(), String> {
    let listeners: Vec<TcpListener> = (0..processes)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find free ports: {e}"))?;
    let mut text = String::new();
    for l in &listeners {
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        text.push_str(&format!("127.0.0.1:{port}\n"));
    }
    drop(listeners);
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The last lines of a child's log.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Runs one point in fresh processes (one per `--processes`); the report as JSON.
fn execute(
    exe: &Path,
    run: &Run,
    dir: &Path,
    limit: Duration,
) -> Result<serde_json::Value, String> {
    let id = std::process::id();
    let json = dir.join(format!(".run-{id}.json"));
    let hlog = dir.join("hlog").join(run.hlog_name());
    let hlog_tmp = dir.join("hlog").join(format!(".{}.tmp", run.hlog_name()));
    let processes = run
        .point
        .get("processes")
        .and_then(|p| p.to_string().parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let hosts = dir.join(format!(".hosts-{id}.txt"));
    if processes > 1 {
        hostfile(&hosts, processes)?;
    }
    let logs: Vec<PathBuf> = (0..processes)
        .map(|p| dir.join(format!(".run-{id}-{p}.log")))
        .collect();
    let mut children: Vec<Child> = Vec::new();
    let mut spawn_error = None;
    for (p, log) in logs.iter().enumerate() {
        let mut command = Command::new(exe);
        command.args(run.bench_args());
        if p == 0 {
            command
                .arg("--json")
                .arg(&json)
                .arg("--hlog")
                .arg(&hlog_tmp);
        }
        if processes > 1 {
            command
                .arg("--process")
                .arg(p.to_string())
                .arg("--hostfile")
                .arg(&hosts);
        }
        let spawned = File::create(log)
            .and_then(|out| Ok((out.try_clone()?, out)))
            .and_then(|(out, err)| command.stdin(Stdio::null()).stdout(out).stderr(err).spawn());
        match spawned {
            Ok(child) => children.push(child),
            Err(e) => {
                spawn_error = Some(format!("cannot start {}: {e}", exe.display()));
                break;
            }
        }
    }
    let started = Instant::now();
    let mut statuses = vec![None; children.len()];
    let mut failure = spawn_error;
    while failure.is_none() && statuses.iter().any(Option::is_none) {
        for (p, child) in children.iter_mut().enumerate() {
            if statuses[p].is_none() {
                match child.try_wait() {
                    Ok(Some(status)) => statuses[p] = Some(status),
                    Ok(None) => {}
                    Err(e) => failure = Some(format!("cannot wait for the run: {e}")),
                }
            }
        }
        if let Some((p, status)) = statuses
            .iter()
            .enumerate()
            .find_map(|(p, s)| s.filter(|s| !s.success()).map(|s| (p, s)))
        {
            failure = Some(format!(
                "process {p} exited with {status}: {}",
                tail(&logs[p])
            ));
        } else if started.elapsed() > limit {
            failure = Some(format!("timed out after {:.0} s", limit.as_secs_f64()));
        }
        if failure.is_none() && statuses.iter().any(Option::is_none) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for child in &mut children {
        if failure.is_some() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    let result = match failure {
        Some(e) => Err(e),
        None => fs::read_to_string(&json)
            .map_err(|e| format!("no report: {e}"))
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|e| format!("unreadable report: {e}"))
            })
            .and_then(|report| {
                fs::rename(&hlog_tmp, &hlog)
                    .map_err(|e| format!("cannot move the interval log: {e}"))?;
                Ok(report)
            }),
    };
    for path in logs.iter().chain([&json, &hosts, &hlog_tmp]) {
        let _ = fs::remove_file(path);
    }
    result
}
