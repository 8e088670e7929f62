//! __NAME__: __DESCRIPTION__

pub mod sql;

use serde::Serialize;
use shared::{App, Function, Kind};

/// The function's name, as deployed.
pub const NAME: &str = env!("CARGO_PKG_NAME");

/// What one run did (the invocation's result, and its log line).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub done: bool,
}

/// This function, as its Lambda binary and the local runner run it.
pub fn function() -> Function {
    Function::event(NAME, Kind::__KIND_VARIANT__, |app, event| {
        Box::pin(handle(app, event))
    })
}

/// Handles one invocation.
pub async fn handle(app: &App, event: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    shared::event::serve(app, NAME, event, async |event| run(app, event).await).await
}

async fn run(_app: &App, _event: serde_json::Value) -> anyhow::Result<Report> {
    // 1. The function's own steps.
    Ok(Report { done: true })
}
