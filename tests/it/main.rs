//! Integration tests: one binary, so the template database is migrated once per run.

mod bootstrap;
mod harness;
mod quota;
mod rls;
mod round_trip;
mod runner;
