//! Incremental results with differential dataflow: views that are correct for all data seen so
//! far and are updated, with retractions, as data arrives.
//!
//! The window operators in [`crate::window`] give the *final* answer of a window once, when the
//! frontier passes it. This module gives the other view: a differential collection of
//! `(window, key, value)` that holds, at every epoch, the aggregate of every record seen so far,
//! and changes (a retraction of the old value, the new value) whenever a record arrives or is
//! retracted. Consolidating its updates up to any time gives the answer at that time; after the
//! input has ended it gives exactly what the final operators emit.
//!
//! * [`windows`]: tumbling, sliding and session aggregations as collections, with the same
//!   lateness rule as the final operators and state bounded by delayed negation.
//! * [`updates`]: the plumbing between timely streams and differential collections: stamping a
//!   stream's records as updates at their logical time, and moving updates to a
//!   data-dependent later time ([`delay_to`]) or to their own time, for sinks that write a
//!   changelog ([`retime`]).
//!
//! This module owns the incremental semantics; it does not parse input or write output (the CLI
//! and the sinks do) and it does not change the window definitions (see [`crate::window`]).
//!
//! # When to use which
//!
//! Use the final operators ([`crate::keyed::WindowedStream::aggregate`]) when a consumer wants
//! one answer per window as soon as it is complete: they keep one accumulator per open window
//! and key and are several times faster. Use the views here when a consumer wants the current
//! answer before a window closes, when the input contains retractions (`diff = -1`), or when the
//! results feed further incremental computation (joins, nested aggregation) that must stay
//! correct as data changes.

pub mod updates;
pub mod windows;

pub use updates::{delay_to, retime, to_consolidated_updates, to_updates};
pub use windows::{View, WindowedCollection};
