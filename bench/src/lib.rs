//! What the benchmarks share: the runner and its stack, the warm world and its
//! requests, their SQL floor, latency statistics.

pub mod floor;
pub mod playback;
pub mod runner;
pub mod stats;
pub mod world;
pub mod wrk;
