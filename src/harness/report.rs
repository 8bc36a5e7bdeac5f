//! Run reports: one JSON object per run (the schema experiments and notebooks read) and a
//! human-readable table.
//!
//! A report carries everything needed to reproduce the run: workload, query and parameters,
//! engine, workers, processes, rates, epoch, seed, the git revision, a hash of the configuration
//! and the host.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::recorder::Percentiles;
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
    /// `timely` or `baseline`.
    pub engine: String,
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// Offered events per second; `null` for a closed-loop (`--rate max`) run.
    pub offered_rate: Option<u64>,
    /// Events per second processed during the measured part of the run.
    pub achieved_rate: f64,
    /// Events processed during the measured part.
    pub events: u64,
    /// Length of the measured part (seconds, warm-up excluded).
    pub duration_s: f64,
    /// Warm-up, not measured (seconds).
    pub warmup_s: f64,
    /// Epoch length (ns).
    pub epoch_ns: u64,
    /// Epoch latency percentiles (ns).
    pub latency_ns: Percentiles,
    /// Latency samples (epochs times workers).
    pub samples: u64,
    /// Events per second one worker's generator produced (the input's own ceiling).
    pub generator_rate: f64,
    /// Generator seed.
    pub seed: u64,
    /// `git rev-parse HEAD` of the working directory, or `unknown`.
    pub git_rev: String,
    /// Hash of the configuration (everything above that defines the run).
    pub config_hash: String,
    /// Host name.
    pub host: String,
}

/// The git revision of the current directory, or `unknown`.
pub fn git_rev() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
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

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

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
                format!(
                    "{} ({} workers x {} processes)",
                    self.engine, self.workers, self.processes
                ),
            ),
            ("offered rate", offered),
            ("achieved rate", rate(self.achieved_rate)),
            ("events", self.events.to_string()),
            (
                "measured",
                format!(
                    "{:.1} s after {:.1} s warm-up",
                    self.duration_s, self.warmup_s
                ),
            ),
            ("epoch", ms(self.epoch_ns)),
            ("latency p50", ms(self.latency_ns.p50)),
            ("latency p90", ms(self.latency_ns.p90)),
            ("latency p99", ms(self.latency_ns.p99)),
            ("latency p99.9", ms(self.latency_ns.p999)),
            ("latency max", ms(self.latency_ns.max)),
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
        let mut out = String::new();
        for (name, value) in rows {
            let _ = writeln!(out, "{name:>18}  {}", value.trim_end());
        }
        out
    }
}
