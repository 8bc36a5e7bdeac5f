//! Experiments: a grid of `tidemark bench` runs from a spec file, repeated, with results in one
//! directory (`tidemark sweep`).
//!
//! One job per file: [`spec`] parses a spec and expands its grid into runs, [`results`] owns
//! the results directory (records, resuming, the lock), [`runner`] runs one point in fresh
//! processes, [`machine`] describes the machine.
//!
//! A spec is a TOML file; its name is the file's stem. Every key other than the few spec keys is
//! an argument of `tidemark bench` (flags without the dashes; `_` and `-` are the same), the
//! positional `workload` included; which ones exist is read from the bench's own clap
//! definition ([`spec::BenchFlags`]):
//!
//! ```toml
//! description = "latency against offered rate"
//! workload = "ysb"            # shorthand for fixed.workload
//! repetitions = 2             # each point runs this many times (default 1)
//! # output = "results/latency" # default: results/NAME beside the spec file
//! # timeout = "5m"            # the longest one run may take (default: a minute + 5 x duration)
//!
//! [fixed]                     # the same for every run
//! duration = "3s"
//! warmup = "1s"
//!
//! [grid]                      # the cartesian product of these lists
//! rate = ["1M", "2M", "4M"]
//! epoch = ["1ms", "10ms"]
//! ```
//!
//! `[[grid]]` (an array of tables) gives a union of products, for runs that do not share every
//! dimension (NEXMark queries beside YSB). `exclude = [{ engine = "baseline", rate = "4M" }]`
//! drops every point that matches all the keys of one entry (a list matches any of its values).
//! The sweep also leaves out points with `engine = "baseline"` and more than one process: the
//! baseline runs in one process (`engine = "baseline"` with `workers = N` is the parallel
//! ceiling, N independent baselines at once, and runs).
//!
//! A point is the full set of arguments of one run (fixed and grid together); a run is a point
//! and a repetition (0 to `repetitions - 1`). Runs go repetition by repetition (every point once,
//! then every point again), so that slow drift of a shared machine spreads over all points.
//! Before the first run starts, the sweep parses every run's arguments with the bench's own
//! parser and checks (values, warm-up against duration, queries), so a spec with one bad run
//! runs nothing.
//!
//! Results, the layout notebooks read (`DIR` = the output directory):
//!
//! * `DIR/runs.jsonl`: one JSON object per completed run ([`results::Record`]): the fields of
//!   [`Report`](super::report::Report), plus `spec` (the name), `point` (argument to value, as
//!   in the spec), `repetition` and `hlog` (the interval log's path relative to `DIR`).
//! * `DIR/hlog/*.hlog`: the runs' HdrHistogram interval logs.
//! * `DIR/machine.json`: the machine ([`Machine`]).
//! * `DIR/.sweep.lock`, while a sweep runs: its lock ([`results`]).
//!
//! A run whose point and repetition are already in `runs.jsonl` is not run again, so an
//! interrupted sweep resumes where it stopped.

pub mod machine;
pub mod results;
pub mod runner;
pub mod spec;

pub use machine::{utc_date, Machine};
pub use results::{completed, Record, ResultsDir, ResultsError};
pub use runner::{execute, Job, SET_BY_SWEEP};
pub use spec::{point_json, run_key, BenchFlags, Expansion, Param, Point, Run, Spec, SpecError};
