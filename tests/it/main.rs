//! Integration tests: one binary, so the template database is migrated once per run.

mod archive;
mod auth;
mod billing;
mod bootstrap;
mod contract;
mod create_family;
mod db_access;
mod frame;
mod harness;
mod health;
mod house;
mod invites;
mod lifecycle;
mod observability;
mod people;
mod plans;
mod preservation;
mod quota;
mod recordings;
mod rls;
mod round_trip;
mod runner;
mod store;
mod web;
