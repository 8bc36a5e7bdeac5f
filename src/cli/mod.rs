//! The `tidemark` command: clap definitions and subcommand drivers.
//!
//! This module owns argument parsing and error reporting at the edge: a usage error is shown
//! as clap writes it (usage, suggestions, possible values, exit status 2); every other failure
//! becomes a one-line `error: ...` on stderr and a non-zero exit status, never a panic.

pub mod bench;
pub mod sweep;
pub mod window;

use std::ffi::OsString;
use std::process::ExitCode;

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::cluster::{Cluster, ClusterError};

/// tidemark: exact windowed stream processing on timely dataflow.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Windowed aggregation of a CSV file of events into a CSV changelog.
    Window(window::WindowArgs),
    /// Throughput and latency of a workload (ysb, wordcount, ...) through the harness.
    Bench(bench::BenchArgs),
    /// Runs an experiment spec: a grid of bench runs, each in a fresh process, resumable.
    Sweep(sweep::SweepArgs),
}

/// Options that may differ between the processes of one run: paths each process opens (or
/// ignores), its index, and how long it waits for the others to connect. `--peer-timeout` is
/// not one of them: a process heartbeats at a quarter of its own timeout, so a peer expecting
/// beats more often would take a healthy process for a stopped one. Every other option is part
/// of the job the processes compare before any data moves ([`crate::cluster::set_job`]).
const PER_PROCESS: &[&str] = &[
    "input",
    "output",
    "late_output",
    "process",
    "hostfile",
    "connect_timeout",
    "json",
    "hlog",
];

/// The job of a subcommand's arguments: `(--option, value as given or defaulted)`, in the
/// order clap declares them, without [`PER_PROCESS`] options.
///
/// Walks the subcommand's declared arguments, not the matches' ids: those also hold argument
/// groups (one per flattened struct, such as `ClusterArgs`) whose "values" are the ids of the
/// options given explicitly, so `--workers 1` against a defaulted `--workers` (or a
/// `--connect-timeout` given to one process only) would read as different jobs.
fn job(name: &str, command: &clap::Command, matches: &ArgMatches) -> Vec<(String, String)> {
    let mut job = vec![("command".to_string(), name.to_string())];
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if PER_PROCESS.contains(&id) {
            continue;
        }
        // --help and --version take no values.
        let Ok(Some(values)) = matches.try_get_raw(id) else {
            continue;
        };
        let values: Vec<String> = values.map(|v| v.to_string_lossy().into_owned()).collect();
        job.push((format!("--{}", id.replace('_', "-")), values.join(",")));
    }
    job
}

/// Parses the process arguments, runs the subcommand and reports errors.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

fn main_from(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let command = Cli::command();
    let parsed = command
        .clone()
        .try_get_matches_from(args)
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            // Usage errors as clap writes them: the usage, "a similar argument exists", the
            // possible values, and how to get help; --help and --version go to stdout.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Some((name, sub)) = matches.subcommand() {
        if let Some(declared) = command.find_subcommand(name) {
            crate::cluster::set_job(job(name, declared, sub));
        }
    }
    let result = match cli.command {
        Command::Window(args) => {
            guard_run();
            window::run(args)
        }
        Command::Bench(args) => {
            guard_run();
            bench::run(args)
        }
        Command::Sweep(args) => sweep::run(args),
    };
    if crate::abort::aborting() {
        // Another thread (a signal, a peer's failure) is ending the run: it removes the
        // outputs, prints the one line and exits with its status. Returning here would race
        // it with a second line (a commit that found its temporary file gone) or exit status 0.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::output::remove_unfinished();
            // Data errors stay one line, however long the value they echo.
            crate::abort::say(format_args!(
                "error: {}",
                crate::abort::one_line(&format!("{e:#}"))
            ));
            ExitCode::FAILURE
        }
    }
}

/// Before a run starts any thread: SIGINT/SIGTERM/SIGHUP and panics end it cleanly, in one line
/// (see [`crate::abort`]).
fn guard_run() {
    crate::abort::install_signal_handlers();
    crate::abort::install_panic_hook();
}

fn millis(text: &str) -> Result<u64, String> {
    crate::units::parse_millis(text).map_err(|e| e.to_string())
}

/// How a run is spread over threads and processes; shared by every subcommand.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Worker threads per process (at most 512; more than the machine's cores only adds
    /// contention).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Number of processes (timely cluster mode).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index, from 0.
    #[arg(long, default_value_t = 0)]
    pub process: usize,
    /// One host:port per line, one line per process.
    #[arg(long)]
    pub hostfile: Option<PathBuf>,
    /// Give up if the cluster's processes have not all connected (and answered as tidemark)
    /// within this time.
    #[arg(long, default_value = "30s", value_parser = millis)]
    pub connect_timeout: u64,
    /// Fail the run when a connected peer process sends nothing (not even its heartbeat, sent
    /// every quarter of this, at most every second) for this long: it was stopped or hangs.
    /// Every process of a run must be given the same value.
    #[arg(long, default_value = "10s", value_parser = millis)]
    pub peer_timeout: u64,
}

impl ClusterArgs {
    /// The cluster these arguments describe; warns on stderr when the workers outnumber the
    /// machine's cores.
    ///
    /// Errors: see [`Cluster::new`]; a zero timeout.
    pub fn cluster(&self) -> Result<Cluster, ClusterError> {
        if self.connect_timeout == 0 || self.peer_timeout == 0 {
            return Err(ClusterError::Counts(
                "--connect-timeout and --peer-timeout must be positive".into(),
            ));
        }
        let cluster = Cluster::new(
            self.workers,
            self.processes,
            self.process,
            self.hostfile.as_deref(),
        )?
        .with_timeouts(
            Duration::from_millis(self.connect_timeout),
            Duration::from_millis(self.peer_timeout),
        );
        if let Ok(cores) = std::thread::available_parallelism() {
            if self.workers > cores.get() {
                crate::abort::say(format_args!(
                    "warning: --workers {} exceeds the {} cores available here; workers will compete for them",
                    self.workers, cores
                ));
            }
        }
        Ok(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The job of a command line, as [`main_from`] computes it.
    fn job_of(args: &[&str]) -> Vec<(String, String)> {
        let command = Cli::command();
        let matches = command
            .clone()
            .try_get_matches_from(std::iter::once("tidemark").chain(args.iter().copied()))
            .unwrap();
        let (name, sub) = matches.subcommand().unwrap();
        job(name, command.find_subcommand(name).unwrap(), sub)
    }

    #[test]
    fn a_job_holds_options_not_which_ones_were_typed() {
        let base = [
            "window",
            "--input",
            "a.csv",
            "--output",
            "b.csv",
            "--window",
            "tumbling:10s",
            "--agg",
            "sum",
        ];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            job_of(&args)
        };
        let plain = with(&[]);
        // A default given explicitly, and per-process options, are the same job.
        assert_eq!(with(&["--workers", "1"]), plain);
        assert_eq!(with(&["--connect-timeout", "5s", "--process", "1"]), plain);
        let mut paths = base.to_vec();
        paths[2] = "c.csv";
        paths.extend_from_slice(&["--late-output", "l.csv", "--hostfile", "h.txt"]);
        assert_eq!(job_of(&paths), plain);
        // What must agree is named by its own flag.
        let two = with(&["--workers", "2"]);
        let differing: Vec<_> = two.iter().filter(|o| !plain.contains(o)).collect();
        assert_eq!(differing, [&("--workers".to_string(), "2".to_string())]);
        let patience = with(&["--peer-timeout", "1s"]);
        let differing: Vec<_> = patience.iter().filter(|o| !plain.contains(o)).collect();
        assert_eq!(
            differing,
            [&("--peer-timeout".to_string(), "1s".to_string())]
        );
        assert!(plain
            .iter()
            .all(|(k, _)| k.starts_with("--") || k == "command"));
        assert!(!plain.iter().any(|(k, _)| k.contains("Args")), "{plain:?}");
    }
}
