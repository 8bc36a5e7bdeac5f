//! The `tidemark` command: clap definitions and subcommand drivers.
//!
//! This module owns argument parsing and error reporting at the edge: every failure becomes a
//! one-line `error: ...` on stderr and a non-zero exit status, never a panic.

pub mod bench;
pub mod sweep;
pub mod window;

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

/// Parses the process arguments, runs the subcommand and reports errors.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, like every other error; `--help` has the details.
            let text = e.render().to_string();
            eprintln!(
                "{}",
                text.lines().next().unwrap_or("error: invalid arguments")
            );
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Window(args) => window::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Sweep(args) => sweep::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a run is spread over threads and processes; shared by every subcommand.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Worker threads per process.
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
    /// Give up if the cluster's processes have not all connected within this time.
    #[arg(long, default_value = "30s", value_parser = |t: &str| crate::window::parse_millis(t).map_err(|e| e.to_string()))]
    pub connect_timeout: u64,
}
