//! Integration tests: one binary, so the template database is migrated once per run.

mod bootstrap;
mod harness;
mod runner;
