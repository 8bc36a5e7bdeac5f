//! Shared test support: a brute-force reference implementation of exact
//! windowed aggregation (`reference`) and proptest input generators (`gen`).
//!
//! Each integration-test binary declares `mod common;` and uses only a subset
//! of these items, so dead-code warnings are silenced here.
#![allow(dead_code)]

pub mod gen;
pub mod reference;
