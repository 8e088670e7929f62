//! `dev-token EMAIL`: creates (or finds) a local user in auth.users and prints an
//! access token for it, signed with SUPABASE_JWT_SECRET, valid for a day.
//! Reads MIGRATIONS_DATABASE_URL (an admin connection: auth.users is not the functions').

// A command-line tool: the token is its output.
#![allow(clippy::print_stdout)]

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let email = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "keeper@example.com".to_owned());
    let url =
        std::env::var("MIGRATIONS_DATABASE_URL").context("MIGRATIONS_DATABASE_URL is not set")?;
    let secret = std::env::var("SUPABASE_JWT_SECRET").context("SUPABASE_JWT_SECRET is not set")?;
    let db = shared::db::connect(&url).await?;
    let id = local::find_or_create_user(&db, &email).await?;
    let supabase_url = std::env::var("SUPABASE_URL").ok();
    let day = 24 * 3600;
    println!(
        "{}",
        local::access_token(id, &email, &secret, supabase_url.as_deref(), day)?
    );
    Ok(())
}
