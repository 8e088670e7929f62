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
use shared::db::Tx;
use shared::store::{entitlements, recordings};
use uuid::Uuid;

const USAGE: &str = "usage: books check [FAMILY_ID] | books reconcile FAMILY_ID REASON";

/// Families checked per transaction.
const PAGE: i64 = 1000;

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
        ["check"] => {
            header();
            let (mut checked, mut drifted, mut after) = (0, 0, Uuid::nil());
            loop {
                let tx = Tx::begin(&db, None).await?;
                let page = entitlements::sample(&tx, after, PAGE).await?;
                let books = recordings::books(&tx, &page).await?;
                tx.commit().await?;
                for b in books.iter().filter(|b| !b.balance()) {
                    drifted += 1;
                    line(b);
                }
                checked += books.len();
                match page.last() {
                    Some(last) if page.len() as i64 == PAGE => after = *last,
                    _ => break,
                }
            }
            println!("{checked} families checked, {drifted} drifted");
        }
        ["check", one] => {
            let tx = Tx::begin(&db, None).await?;
            let books = recordings::books(&tx, &[family(one)?]).await?;
            tx.commit().await?;
            header();
            books.iter().for_each(line);
            let drifted = books.iter().filter(|b| !b.balance()).count();
            println!("{} families checked, {drifted} drifted", books.len());
        }
        ["reconcile", id, reason] => {
            let tx = Tx::operator(&db).await?;
            let used = entitlements::reconcile(&tx, family(id)?, reason)
                .await
                .context("reconciling (does the family exist? is there a reason?)")?;
            tx.commit().await?;
            println!("{id}: counter and ledger now {used} bytes, adjustment recorded");
        }
        _ => bail!(USAGE),
    }
    Ok(())
}

fn header() {
    println!(
        "{:<38} {:>14} {:>14} {:>14}",
        "family", "counter", "ledger", "recordings"
    );
}

fn line(b: &recordings::Books) {
    let (id, counter, ledger, recordings) = (b.family, b.counter, b.ledger, b.recordings);
    println!("{id:<38} {counter:>14} {ledger:>14} {recordings:>14}");
}
