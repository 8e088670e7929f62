//! `seed` (`scripts/dev.sh seed`): a family to try the app with. A keeper and two
//! storytellers (joined by invite), the default prompts, three recordings of the test
//! fixture M4A answering them (uploaded through the signed-URL path with their SHA-256,
//! so quota and books are right), a pending invite and a finished archive; then a token
//! for each person and lines to try. Every write goes through the functions' own
//! handlers, as the app's calls would; what already exists is left as it is, so a second
//! run changes no row and only prints fresh tokens.
//!
//! Reads the runner's variables (scripts/dev.sh sets them) and MIGRATIONS_DATABASE_URL
//! (an admin connection: it finds what exists, and makes the users in auth.users). The
//! local S3 at R2_ENDPOINT is the running stack's, or served here while it runs.

// A command-line tool: the tokens are its output.
#![allow(clippy::print_stdout)]

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use uuid::Uuid;

const FAMILY: &str = "The Sun Family";
const KEEPER: &str = "keeper@sunfamily.example";
const STORYTELLERS: [&str; 2] = ["abuela@sunfamily.example", "tio@sunfamily.example"];
/// Invited, not joined yet.
const PENDING: &str = "cousin@sunfamily.example";
/// Their titles, in order; the first storyteller tells the first and third.
const STORIES: [&str; 3] = ["How we met", "The house on the hill", "Sunday songs"];
const STORY: &[u8] = include_bytes!("../../../testkit/fixtures/story.m4a");
const STORY_SECONDS: f64 = 5.1;
/// How long the printed tokens live.
const TOKEN_HOURS: i64 = 24;

struct Person {
    email: &'static str,
    role: &'static str,
    token: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let admin_url =
        std::env::var("MIGRATIONS_DATABASE_URL").context("MIGRATIONS_DATABASE_URL is not set")?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "54321".to_owned());
    let app = shared::App::from_env()?;
    let secret = app.config.jwt_secret.as_ref();
    let secret = secrecy::ExposeSecret::expose_secret(secret.context("SUPABASE_JWT_SECRET")?);
    let admin = shared::db::connect(&admin_url).await?;
    local_bucket(&app).await?;

    let mut people = Vec::new();
    for (email, role) in [(KEEPER, "keeper")]
        .into_iter()
        .chain(STORYTELLERS.map(|e| (e, "storyteller")))
    {
        let id = local::find_or_create_user(&admin, email).await?;
        let lifetime = TOKEN_HOURS * 3600;
        let supabase_url = app.config.supabase_url.as_deref();
        let token = local::access_token(id, email, secret, supabase_url, lifetime)?;
        people.push((id, Person { email, role, token }));
    }
    let keeper = &people[0].1.token;

    // 1. The family, made by its keeper (with the default prompts and the free plan).
    let family = match one_uuid(
        &admin,
        "SELECT f.id FROM families f JOIN family_members m ON m.family_id = f.id
          WHERE f.name = $1 AND f.deleted_at IS NULL AND m.user_id = $2 AND m.role = 'keeper'
          ORDER BY f.created_at LIMIT 1",
        &[&FAMILY, &people[0].0],
    )
    .await?
    {
        Some(id) => id,
        None => {
            let made = call(&app, "create-family", keeper, json!({"name": FAMILY})).await?;
            uuid_at(&made, "/family/id")?
        }
    };

    // 2. The storytellers, each by an invite of their own.
    for (id, person) in &people[1..] {
        let member = one_uuid(
            &admin,
            "SELECT user_id FROM family_members WHERE family_id = $1 AND user_id = $2",
            &[&family, id],
        )
        .await?;
        if member.is_none() {
            let invite = json!({"familyId": family, "maxUses": 1});
            let invite = call(&app, "create-invite", keeper, invite).await?;
            let code = invite.pointer("/invite/code").and_then(Value::as_str);
            let code = code.context("create-invite gave no code")?;
            call(&app, "redeem-invite", &person.token, json!({"code": code})).await?;
        }
    }

    // 3. Their stories, answering the first prompts, through the signed-URL path.
    let prompts = admin
        .query(
            "SELECT id FROM prompts WHERE family_id = $1 AND deleted_at IS NULL
              ORDER BY position LIMIT 3",
            &[&family],
        )
        .await?;
    for (i, title) in STORIES.iter().enumerate() {
        let told = one_uuid(
            &admin,
            "SELECT id FROM recordings WHERE family_id = $1 AND title = $2 AND deleted_at IS NULL",
            &[&family, title],
        )
        .await?;
        if told.is_none() {
            let teller = &people[1 + i % 2].1.token;
            let prompt: Option<Uuid> = prompts.get(i).map(|row| row.get("id"));
            record(&app, teller, family, prompt, title).await?;
        }
    }

    // 4. An invite nobody has used yet.
    let pending = one_uuid(
        &admin,
        "SELECT id FROM invites WHERE family_id = $1 AND email = $2 AND revoked_at IS NULL
            AND use_count < max_uses AND expires_at > now() LIMIT 1",
        &[&family, &PENDING],
    )
    .await?;
    if pending.is_none() {
        let invite = json!({"familyId": family, "email": PENDING, "expiresInDays": 30});
        call(&app, "create-invite", keeper, invite).await?;
    }

    // 5. A finished archive of it all, made here by the archive worker.
    const DONE: &str = "SELECT id FROM archives WHERE family_id = $1 AND status = 'done'
                         ORDER BY created_at LIMIT 1";
    let archive = match one_uuid(&admin, DONE, &[&family]).await? {
        Some(id) => id,
        None => {
            call(&app, "request-archive", keeper, json!({"familyId": family})).await?;
            let report = local::run_event(&app, "archive-worker", json!({})).await?;
            let done = one_uuid(&admin, DONE, &[&family]).await?;
            done.with_context(|| format!("the archive worker did not finish it: {report}"))?
        }
    };

    print_tokens(&people, family, archive, &port);
    Ok(())
}

/// Serves the local bucket at R2_ENDPOINT while the seed runs, unless the running stack
/// already does (its port is taken, and it answers).
async fn local_bucket(app: &shared::App) -> anyhow::Result<()> {
    let r2 = app.config.r2.as_ref().context("the R2_* variables")?;
    let dir = std::env::var("LOCAL_S3_DIR").context("LOCAL_S3_DIR is not set")?;
    let cors = local::s3::Cors::for_origins(&app.config.allowed_redirect_origins)?;
    if let Err(e) = local::s3::serve_bucket("local S3", r2, dir, cors).await {
        let addr = r2
            .endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/');
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return Err(e);
        }
    }
    Ok(())
}

/// Calls the HTTP function `name` in-process, as the user of `token`: its `data`.
async fn call(app: &shared::App, name: &str, token: &str, body: Value) -> anyhow::Result<Value> {
    let function = local::function(name).with_context(|| format!("no function {name}"))?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("/functions/v1/{name}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(lambda_http::Body::Text(body.to_string()))?;
    let response = function
        .answer(app, request)
        .await
        .with_context(|| format!("{name} is not an HTTP function"))?;
    let status = response.status();
    let answer: Value = serde_json::from_slice(response.body().as_ref())?;
    if !status.is_success() {
        bail!("{name} answered {status}: {answer}");
    }
    Ok(answer["data"].clone())
}

/// One recording of the fixture: reserved, PUT to its signed URL, finalized.
async fn record(
    app: &shared::App,
    token: &str,
    family: Uuid,
    prompt: Option<Uuid>,
    title: &str,
) -> anyhow::Result<()> {
    let sha256 = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STORY));
    let reserve = json!({
        "familyId": family, "durationSeconds": STORY_SECONDS, "sizeBytes": STORY.len(),
        "sha256": sha256, "contentType": "audio/mp4", "promptId": prompt,
    });
    let reserved = call(app, "get-signed-upload-url", token, reserve).await?;
    let recording = uuid_at(&reserved, "/recordingId")?;
    let url = reserved.pointer("/upload/url").and_then(Value::as_str);
    let mut put = app.http.put(url.context("no upload URL")?).body(STORY);
    let headers = reserved
        .pointer("/upload/headers")
        .and_then(Value::as_object);
    for (name, value) in headers.context("no upload headers")? {
        if let (false, Some(value)) = (name.eq_ignore_ascii_case("content-length"), value.as_str())
        {
            put = put.header(name, value);
        }
    }
    let put = put.send().await?;
    if !put.status().is_success() {
        bail!("the bucket refused the upload: {}", put.status());
    }
    let finalize = json!({"recordingId": recording, "familyId": family, "title": title});
    call(app, "finalize-recording", token, finalize).await?;
    Ok(())
}

async fn one_uuid(
    db: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<Option<Uuid>> {
    Ok(db.query_opt(sql, params).await?.map(|row| row.get(0)))
}

fn uuid_at(value: &Value, pointer: &str) -> anyhow::Result<Uuid> {
    let id = value.pointer(pointer).and_then(Value::as_str);
    Ok(id
        .with_context(|| format!("no {pointer} in {value}"))?
        .parse()?)
}

fn print_tokens(people: &[(Uuid, Person)], family: Uuid, archive: Uuid, port: &str) {
    let expires = chrono::Utc::now() + chrono::Duration::hours(TOKEN_HOURS);
    let base = format!("http://127.0.0.1:{port}");
    println!(
        "{FAMILY} ({family}): a keeper, two storytellers, three recordings, an invite for {PENDING}, an archive."
    );
    println!(
        "Tokens, valid until {}:",
        expires.format("%Y-%m-%d %H:%M UTC")
    );
    for (_, person) in people {
        let name = person
            .email
            .split('@')
            .next()
            .unwrap_or_default()
            .to_uppercase();
        println!("  # {} ({})", person.email, person.role);
        println!("  export {name}_TOKEN={}", person.token);
    }
    println!(
        "\nTry (with the stack running: scripts/dev.sh):
  curl -s {base}/functions/v1/get-archive -H \"Authorization: Bearer $KEEPER_TOKEN\" \\
    -H 'content-type: application/json' -d '{{\"archiveId\":\"{archive}\"}}'
  curl -s {base}/functions/v1/create-invite -H \"Authorization: Bearer $ABUELA_TOKEN\" \\
    -H 'content-type: application/json' -d '{{\"familyId\":\"{family}\"}}'   # 403: storytellers don't invite

supabase-js (any password signs in to the runner's Auth stand-in):
  const supabase = createClient(\"{base}\", \"anon-key\");
  await supabase.auth.signInWithPassword({{ email: \"{KEEPER}\", password: \"local\" }});
  const functions = functionsClient(supabase, \"{base}/functions/v1\");
  await invoke(functions, \"get-archive\", {{ archiveId: \"{archive}\" }});"
    );
}
