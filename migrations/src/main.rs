//! `migrate`: applies, rolls back and reports the project's migrations.
//!
//! Usage: migrate [--dir DIR] (up | down [N] [--allow-data-loss] | status | bootstrap
//!                             | set-price STRIPE_PRICE_ID PLAN | set-trash-retention DAYS)
//! Reads MIGRATIONS_DATABASE_URL (a session-capable connection: direct, or Supavisor
//! session mode). `bootstrap` creates the cluster roles and reads FUNCTIONS_DB_PASSWORD.

// A command-line tool: its report goes to the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use migrations::{FUNCTIONS_PASSWORD_VAR, State};

const USAGE: &str = "usage: migrate [--dir DIR] (up | down [N] [--allow-data-loss] | status | bootstrap \
     | set-price STRIPE_PRICE_ID PLAN | set-trash-retention DAYS)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(std::env::args().skip(1).collect()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("migrate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Vec<String>) -> Result<()> {
    let mut dir = migrations::default_dir();
    let mut allow_data_loss = false;
    let mut words = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => dir = PathBuf::from(args.next().context(USAGE)?),
            "--allow-data-loss" => allow_data_loss = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => words.push(arg),
        }
    }
    let url = std::env::var("MIGRATIONS_DATABASE_URL")
        .context("MIGRATIONS_DATABASE_URL is not set (a direct or session-mode connection)")?;
    let mut client = shared::db::connect(&url)
        .await
        .context("cannot connect to the database")?;
    let all = migrations::load(&dir).with_context(|| format!("reading {}", dir.display()))?;

    match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up"] => {
            let done = migrations::up(&mut client, &all).await?;
            if done.is_empty() {
                println!("up to date");
            }
            for id in done {
                println!("applied {id}");
            }
        }
        ["down", rest @ ..] => {
            let n = match rest {
                [] => 1,
                [n] => n
                    .parse()
                    .with_context(|| format!("N must be a number: {USAGE}"))?,
                _ => bail!(USAGE),
            };
            for id in migrations::down(&mut client, &all, n, allow_data_loss).await? {
                println!("rolled back {id}");
            }
        }
        ["status"] => {
            for s in migrations::status(&client, &all).await? {
                let state = match s.state {
                    State::Applied => "applied",
                    State::Pending => "pending",
                    State::Edited => "EDITED after it was applied",
                };
                println!("{:<40} {state}", s.id);
            }
        }
        ["bootstrap"] => {
            let password =
                std::env::var(FUNCTIONS_PASSWORD_VAR).map_err(|_| migrations::Error::NoPassword)?;
            migrations::bootstrap_cluster(&mut client, &password).await?;
            println!("cluster roles ready");
        }
        // TRASH_RETENTION_DAYS is the database's to know: its trigger refuses restores
        // past it, and the maintenance job purges after it.
        ["set-trash-retention", days] => {
            let days: u32 = days
                .parse()
                .ok()
                .filter(|d| *d > 0)
                .with_context(|| format!("DAYS must be a positive number: {USAGE}"))?;
            client
                .batch_execute(&format!(
                    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET stories.trash_retention_days = {days}', current_database()); END $$"
                ))
                .await
                .context("setting the trash retention")?;
            println!("trash retention: {days} days (new sessions)");
        }
        // Stripe price ids differ between test and live mode: each environment maps its own.
        ["set-price", price, plan] => {
            client
                .execute(
                    "INSERT INTO public.plan_prices (stripe_price_id, plan) VALUES ($1, $2)
                     ON CONFLICT (stripe_price_id) DO UPDATE SET plan = EXCLUDED.plan",
                    &[price, plan],
                )
                .await
                .with_context(|| {
                    format!("mapping {price} to plan {plan} (does the plan exist?)")
                })?;
            println!("{price} -> {plan}");
        }
        _ => bail!(USAGE),
    }
    Ok(())
}
