//! Jobs: what a `tidemark` command runs, assembled from a typed description of the job.
//!
//! The command line ([`crate::cli`]) parses and checks flags into such a description and calls
//! the job's `run`; everything between (opening inputs and outputs, building the dataflow on
//! every worker, checkpoints, the summary line) is here, so that it can be called and tested
//! without the command line.
//!
//! * [`window`]: `tidemark window`, a keyed windowed aggregation into a changelog.

pub mod window;
