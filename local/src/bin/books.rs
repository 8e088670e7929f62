//! `books`: the storage books, for an operator (contract §7). The maintenance job checks
//! them every run and reports drift; it never corrects it. After a human has looked:
//!   books check [FAMILY_ID]            counter, ledger and recordings of the families
//!                                      whose books disagree (or of one family)
//!   books reconcile FAMILY_ID REASON   counter and ledger brought to the recordings,
//!                                      the reason recorded as a ledger adjustment
//! Reads MIGRATIONS_DATABASE_URL (an admin connection).

// A command-line tool: the books are its output.
#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use uuid::Uuid;

const USAGE: &str = "usage: books check [FAMILY_ID] | books reconcile FAMILY_ID REASON";

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url =
        std::env::var("MIGRATIONS_DATABASE_URL").context("MIGRATIONS_DATABASE_URL is not set")?;
    let db = shared::db::connect(&url).await?;
    let family = |s: &str| s.parse::<Uuid>().context("FAMILY_ID must be a UUID");
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check", rest @ ..] => {
            let families: Vec<Uuid> = match rest {
                [] => db
                    .query("SELECT family_id FROM public.entitlements", &[])
                    .await?
                    .iter()
                    .map(|r| r.get(0))
                    .collect(),
                [one] => vec![family(one)?],
                _ => bail!(USAGE),
            };
            let rows = db
                .query("SELECT * FROM public.storage_books($1)", &[&families])
                .await?;
            println!(
                "{:<38} {:>14} {:>14} {:>14}",
                "family", "counter", "ledger", "recordings"
            );
            let mut drifted = 0;
            for r in &rows {
                let (id, counter, ledger, recordings): (Uuid, i64, i64, i64) =
                    (r.get(0), r.get(1), r.get(2), r.get(3));
                let agree = counter == ledger && ledger == recordings;
                if rest.is_empty() && agree {
                    continue;
                }
                drifted += usize::from(!agree);
                println!("{id:<38} {counter:>14} {ledger:>14} {recordings:>14}");
            }
            println!("{} families checked, {drifted} drifted", rows.len());
        }
        ["reconcile", id, reason] => {
            let used: i64 = db
                .query_one(
                    "SELECT public.reconcile_storage($1, $2)",
                    &[&family(id)?, reason],
                )
                .await
                .context("reconciling (does the family exist? is there a reason?)")?
                .get(0);
            println!("{id}: counter and ledger now {used} bytes, adjustment recorded");
        }
        _ => bail!(USAGE),
    }
    Ok(())
}
