//! `invoke NAME [EVENT_JSON]`: runs a scheduled or worker function once, here, with the
//! same environment as `serve` (scripts/dev.sh prints the line), and prints its report.
//! E.g. `invoke storage-maintenance '{"budgetSeconds": 30}'`.

// A command-line tool: the report is its output.
#![allow(clippy::print_stdout)]

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let mut args = std::env::args().skip(1);
    let name = args.next().context("usage: invoke NAME [EVENT_JSON]")?;
    let event: serde_json::Value = match args.next() {
        Some(json) => serde_json::from_str(&json).context("EVENT_JSON is not JSON")?,
        None => serde_json::json!({}),
    };
    let app = shared::App::from_env()?;
    let report = local::run_event(&app, &name, event).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
