//! `stand-in stripe`: serves the tests' Stripe stand-in on a loopback port and prints its
//! API base (for `STRIPE_API_BASE`), so a runner started by a script can take billing
//! down its success paths without a Stripe account (scripts/check-contract.sh).

// A command-line tool: the address is its output.
#![allow(clippy::print_stdout)]

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("stripe") => {
            let stripe = testkit::stubs::stripe().await;
            println!("{}/", stripe.base);
            std::future::pending::<()>().await;
            Ok(())
        }
        _ => anyhow::bail!("usage: stand-in stripe"),
    }
}
