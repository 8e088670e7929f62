//! What the tests and the benchmarks share. Every test gets its own database, cloned
//! from a template that is migrated once per run and dropped when the test ends (even
//! when it fails); the runner in-process with a typed client ([`server`], [`client`]);
//! and stand-ins for the services we call ([`stubs`]).

pub mod browser;
pub mod client;
pub mod fixtures;
pub mod lambda;
pub mod logs;
pub mod pgproxy;
pub mod server;
pub mod stubs;

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Config, NoTls, Transaction};
use uuid::Uuid;

/// The password the harness gives the functions' login role (trust auth ignores it).
pub const TEST_FUNCTIONS_PASSWORD: &str = "local-test-password";

/// The PostgreSQL the tests use, as a superuser: `DATABASE_URL`, or the local default.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Host and port of the test PostgreSQL.
fn server() -> (String, u16) {
    let config: Config = admin_url().parse().expect("DATABASE_URL is a valid URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

fn url(user: &str, password: Option<&str>, db: &str) -> String {
    let (host, port) = server();
    let auth = match password {
        Some(p) => format!("{user}:{p}"),
        None => user.to_owned(),
    };
    format!("postgres://{auth}@{host}:{port}/{db}")
}

fn admin_user() -> String {
    let config: Config = admin_url().parse().expect("DATABASE_URL is a valid URL");
    config.get_user().unwrap_or("postgres").to_owned()
}

/// Connects without TLS (the test server is on this machine).
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
    tokio::spawn(conn);
    client
}

/// Runs a future to completion on a fresh runtime in its own thread, so harness setup
/// and teardown don't depend on the runtime of the test that triggers them.
fn on_own_runtime<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("harness thread panicked")
}

/// Key of the advisory lock serialising template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x5346_5454;

/// The migrated template database of this run's migrations (created once per run,
/// reused by later runs while the migrations are unchanged).
pub fn template() -> &'static str {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| on_own_runtime(create_template()))
}

async fn create_template() -> String {
    let all = migrations::load(&migrations::default_dir()).expect("migrations load");
    let mut hash = Sha256::new();
    hash.update(include_bytes!("../../migrations/cluster/bootstrap.sql"));
    for m in &all {
        hash.update(m.checksum.as_bytes());
    }
    let name = format!("sfts_tpl_{}", &hex::encode(hash.finalize())[..12]);

    let mut admin = connect(&admin_url()).await;
    migrations::bootstrap_cluster(&mut admin, TEST_FUNCTIONS_PASSWORD)
        .await
        .expect("cluster bootstrap");
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("lock");
    let ready: Option<bool> = admin
        .query_opt(
            "SELECT datistemplate FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("pg_database")
        .map(|r| r.get("datistemplate"));
    if ready != Some(true) {
        // A run interrupted half-way leaves an unfinished template: start it again.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).await.expect("create template");
        }
        let mut template = connect(&url(&admin_user(), None, &name)).await;
        migrations::up(&mut template, &all)
            .await
            .expect("migrations apply to the template");
        drop(template);
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            ))
            .await
            .expect("mark template");
        // Templates of earlier migrations are of no further use.
        let stale = admin
            .query("SELECT datname FROM pg_database WHERE datname LIKE 'sfts\\_tpl\\_%' AND datname <> $1", &[&name])
            .await
            .expect("stale templates");
        for row in stale {
            let old: String = row.get("datname");
            let _ = admin
                .batch_execute(&format!("ALTER DATABASE {old} IS_TEMPLATE false"))
                .await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {old}"))
                .await;
        }
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .expect("unlock");
    name
}

/// A database of one test's own, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> Self {
        Self::create(Some(template())).await
    }

    /// A fresh database with nothing applied (the cluster roles exist).
    pub async fn empty() -> Self {
        template();
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        let name = format!("sfts_test_{}", Uuid::new_v4().simple());
        let admin = connect(&admin_url()).await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        admin
            .batch_execute(&sql)
            .await
            .expect("create test database");
        TestDb { name }
    }

    /// URL of this database as the superuser (for arranging and inspecting).
    pub fn admin_url(&self) -> String {
        url(&admin_user(), None, &self.name)
    }

    /// URL of this database as the functions' login role.
    pub fn login_url(&self) -> String {
        url(
            migrations::FUNCTIONS_ROLE,
            Some(TEST_FUNCTIONS_PASSWORD),
            &self.name,
        )
    }

    /// A superuser session on this database.
    pub async fn admin(&self) -> Client {
        connect(&self.admin_url()).await
    }

    /// Takes the database down for the functions: no new connections, and the functions'
    /// open ones killed (as a restart or a network cut would).
    pub async fn take_offline(&self) {
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
                self.name
            ))
            .await
            .expect("take offline");
        self.kill_functions_connections().await;
    }

    /// Brings the database back, and waits out PgBouncer's `server_login_retry` (1 s in
    /// scripts/pgbouncer.ini) when the functions go through it.
    pub async fn bring_online(&self) {
        connect(&admin_url())
            .await
            .batch_execute(&format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
                self.name
            ))
            .await
            .expect("bring online");
        if std::env::var_os("TEST_POOLER_URL").is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
    }

    /// Kills the functions' connections to this database (from the cluster's admin database).
    pub async fn kill_functions_connections(&self) {
        connect(&admin_url())
            .await
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND usename = 'functions_authenticator'",
                &[&self.name],
            )
            .await
            .expect("terminate");
    }

    /// A session as the functions' login role: no privileges until a role is set.
    pub async fn login(&self) -> Client {
        connect(&self.login_url()).await
    }
}

impl Drop for TestDb {
    // Drop can't fail the test; it says why a database was left behind.
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        on_own_runtime(async move {
            let admin = connect(&admin_url()).await;
            if let Err(e) = admin.batch_execute(&sql).await {
                eprintln!("could not drop a test database: {e}");
            }
        });
    }
}

/// Who a PostgREST-style transaction runs as.
#[derive(Debug, Clone, Copy)]
pub enum As {
    /// The anon key: no user.
    Anon,
    /// A signed-in user.
    User(Uuid),
    /// The service role key.
    ServiceRole,
}

impl As {
    /// The role name and the claims PostgREST would set for this caller.
    pub fn role_and_claims(self) -> (&'static str, serde_json::Value) {
        match self {
            As::Anon => (
                "anon",
                serde_json::json!({"role": "anon", "iss": "supabase"}),
            ),
            As::User(id) => (
                "authenticated",
                serde_json::json!({"sub": id, "role": "authenticated", "aud": "authenticated"}),
            ),
            As::ServiceRole => (
                "service_role",
                serde_json::json!({"role": "service_role", "iss": "supabase"}),
            ),
        }
    }
}

/// Opens a transaction the way PostgREST runs a request: role and claims set
/// transaction-locally, so they vanish at commit or rollback.
pub async fn begin_as(client: &mut Client, who: As) -> Transaction<'_> {
    let (role, claims) = who.role_and_claims();
    let tx = client.transaction().await.expect("begin");
    tx.execute(
        "SELECT set_config('role', $1, true), set_config('request.jwt.claims', $2, true)",
        &[&role, &claims.to_string()],
    )
    .await
    .expect("set role and claims");
    tx
}

/// Creates a user in `auth.users` (as the superuser) and returns its id.
pub async fn create_user(admin: &Client, email: &str) -> Uuid {
    admin
        .query_one(
            "INSERT INTO auth.users (email) VALUES ($1) RETURNING id",
            &[&email],
        )
        .await
        .expect("create user")
        .get("id")
}
