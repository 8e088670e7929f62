//! __NAME__: __DESCRIPTION__

use serde::{Deserialize, Serialize};
use shared::{App, Function};

/// What a run may be told (a scheduled event carries none of it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Input {
    pub budget_seconds: Option<u64>,
}

/// What one run did (the invocation's result, and its log line).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub done: bool,
}

/// This function, as its Lambda binary and the local runner run it.
pub fn function() -> Function {
    Function::event(shared::manifest!(), |app, input| Box::pin(run(app, input)))
}

async fn run(_app: &App, _input: Input) -> anyhow::Result<Report> {
    // 1. The function's own steps (its statements in shared/src/store/, by table).
    Ok(Report { done: true })
}
