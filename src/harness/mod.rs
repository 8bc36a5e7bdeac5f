//! The measuring harness: open-loop driver, latency recorder, reports, and finite runs for
//! checking engines against baselines.

pub mod check;
