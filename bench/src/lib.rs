//! What the benchmarks share: the runner and its stack, the warm world and its
//! requests, latency statistics.

pub mod runner;
pub mod stats;
pub mod world;
pub mod wrk;
