//! # tidemark: exact windowed stream processing on timely dataflow
//!
//! A computation is a timely dataflow graph run by one or more workers (threads, and processes
//! through timely's cluster mode). Every record travels at a logical timestamp, a `u64` that
//! is the stream's *watermark*: once the frontier of an operator's input has passed time `t`,
//! no record at a time `<= t` will arrive there again. tidemark's window operators use that
//! guarantee to emit each window exactly once, when the frontier passes the window's last
//! instant, and to free its state when no record can change it any more.
//!
//! * [`keyed`]: `key_by` with a [`partition::Partitioner`], keyed windows and rolling reduce.
//! * [`window`]: window assigners (tumbling, sliding, session), aggregators, the operators and
//!   the lateness rules (corrections within the allowed lateness, a late output beyond it).
//! * [`time`]: the bounded-delay watermark that sources use to stamp records.
//! * [`source`] and [`sink`]: CSV input with precise errors, CSV changelog output.
//! * [`cluster`]: threads, processes and hostfiles to a timely configuration.
//! * [`workloads`] and [`harness`]: benchmark queries with baselines, and how they are measured.
//! * [`job`]: what a command runs (`tidemark window`'s pipeline), from a typed job description.
//! * [`cli`]: the `tidemark` command: flags parsed into jobs.
//!
//! Results never depend on the number of workers or processes, on the partitioner, or on how
//! input is batched: the tests compare every operator against a brute-force reference under all
//! of them.
#![deny(missing_docs)]

pub mod abort;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod harness;
pub mod incremental;
pub mod job;
pub mod keyed;
pub mod number;
pub mod output;
pub mod partition;
pub mod sink;
pub mod source;
pub mod stash;
pub mod time;
pub mod units;
pub mod window;

/// The extension traits that add tidemark's operators to timely streams and differential
/// collections: `use tidemark::prelude::*;` brings `key_by`, `reduce`, `join` and `window_view`
/// into scope. Operators added as their own files (README "Adding an operator") are imported
/// from their modules, e.g. `tidemark::keyed::distinct::DistinctCount`.
pub mod prelude {
    pub use crate::incremental::WindowedCollection;
    pub use crate::keyed::{Join, KeyBy, Reduce};
}

/// The README's Rust examples, compiled and run by `cargo test --doc` so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub mod workloads;

pub use number::{Fixed, WideFixed};
