//! The local runner started in-process on a random port, with a database of its own,
//! connected as the functions' login role (through PgBouncer when TEST_POOLER_URL is
//! set), and a local JWKS server standing in for Supabase Auth.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::pgproxy::Wire;
use crate::stubs::spawn;
use crate::{TEST_FUNCTIONS_PASSWORD, TestDb, create_user};

/// The legacy HS256 secret the test server trusts.
pub const TEST_JWT_SECRET: &str = "test-jwt-secret-with-at-least-32-characters";

/// A running runner and what it talks to.
pub struct Server {
    pub db: TestDb,
    /// `http://127.0.0.1:PORT/functions/v1`
    pub base: String,
    /// The `SUPABASE_URL` it was given (the JWKS server).
    pub supabase_url: String,
    /// How many times the JWKS was fetched.
    pub jwks_hits: Arc<AtomicUsize>,
    pub http: reqwest::Client,
    pub app: Arc<shared::App>,
    /// The folder the test's own S3 server keeps objects in.
    pub s3_dir: std::path::PathBuf,
    /// Failures its S3 server can be told to answer with.
    pub s3_faults: Arc<local::s3::Faults>,
    /// The backup store's folder (a second S3 server, as `scripts/dev.sh` runs) and its
    /// failures.
    pub backup_dir: std::path::PathBuf,
    pub backup_faults: Arc<local::s3::Faults>,
    /// What the app sent to Sentry, when started with [`Server::start_with_sentry`].
    pub sentry: Option<Arc<sentry::test::TestTransport>>,
}

/// A listener for a local S3 server, its endpoint and a fresh folder for its objects.
async fn bucket_folder(what: &str) -> (tokio::net::TcpListener, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sfts-{what}-{}", Uuid::new_v4().simple()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind s3");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, endpoint, dir)
}

/// A JWKS server with the fixture keys; counts its hits.
pub async fn jwks_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().route(
        "/auth/v1/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    [("content-type", "application/json")],
                    include_str!("../fixtures/jwks.json"),
                )
            }
        }),
    );
    (spawn(router).await, hits)
}

/// The functions' DATABASE_URL for a test database: direct, or through the pooler.
fn functions_url(db: &TestDb) -> String {
    match std::env::var("TEST_POOLER_URL") {
        Ok(pooler) => {
            let base = pooler.trim_end_matches('/');
            let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
            let base = base.replace(
                "://",
                &format!(
                    "://{}:{TEST_FUNCTIONS_PASSWORD}@",
                    migrations::FUNCTIONS_ROLE
                ),
            );
            format!("{base}/{}", db.name)
        }
        Err(_) => db.login_url(),
    }
}

impl Server {
    /// A runner on a fresh database with the default test configuration.
    pub async fn start() -> Server {
        Self::start_with(TestDb::new().await, &[]).await
    }

    /// A runner on a fresh database whose Sentry events are captured.
    pub async fn start_with_sentry() -> Server {
        Self::start_with_sentry_and(&[]).await
    }

    /// As [`Server::start_with_sentry`], with `overrides` on top of the test configuration.
    pub async fn start_with_sentry_and(overrides: &[(&str, &str)]) -> Server {
        let transport = sentry::test::TestTransport::new();
        let mut vars = vec![("SENTRY_DSN", "https://public@sentry.example.com/1")];
        vars.extend_from_slice(overrides);
        let mut server =
            Self::start_full(TestDb::new().await, &vars, Some(transport.clone())).await;
        server.sentry = Some(transport);
        server
    }

    /// A runner whose database connections go through a wire proxy that records every
    /// statement and counts round trips ([`crate::pgproxy`]).
    pub async fn start_through_proxy(overrides: &[(&str, &str)]) -> (Server, Arc<Wire>) {
        let db = TestDb::new().await;
        let url = functions_url(&db);
        let config: tokio_postgres::Config = url.parse().expect("a database URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let (proxy, wire) = crate::pgproxy::start(format!("{host}:{port}")).await;
        let proxied = url.replace(&format!("@{host}:{port}/"), &format!("@{proxy}/"));
        let mut vars = vec![("DATABASE_URL", proxied.as_str())];
        vars.extend_from_slice(overrides);
        (Self::start_full(db, &vars, None).await, wire)
    }

    /// A runner on `db`, with `overrides` on top of the test configuration.
    pub async fn start_with(db: TestDb, overrides: &[(&str, &str)]) -> Server {
        Self::start_full(db, overrides, None).await
    }

    async fn start_full(
        db: TestDb,
        overrides: &[(&str, &str)],
        sentry: Option<Arc<sentry::test::TestTransport>>,
    ) -> Server {
        crate::logs::capture();
        let (s3, s3_endpoint, s3_dir) = bucket_folder("s3").await;
        let (backup, backup_endpoint, backup_dir) = bucket_folder("backup").await;
        let (s3_faults, backup_faults) = Default::default();
        let (supabase_url, jwks_hits) = jwks_server().await;
        let mut vars: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".to_owned(), functions_url(&db)),
            ("SUPABASE_URL".to_owned(), supabase_url.clone()),
            ("SUPABASE_JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
            (
                "INVITE_CODE_SECRET".to_owned(),
                "test-invite-secret".to_owned(),
            ),
            ("APP_URL".to_owned(), "https://app.example.com".to_owned()),
            ("R2_BUCKET_NAME".to_owned(), TEST_BUCKET.to_owned()),
            ("R2_ENDPOINT".to_owned(), s3_endpoint),
            ("R2_ACCESS_KEY_ID".to_owned(), TEST_R2_KEY.to_owned()),
            ("R2_SECRET_ACCESS_KEY".to_owned(), TEST_R2_SECRET.to_owned()),
            ("BACKUP_S3_BUCKET".to_owned(), TEST_BACKUP_BUCKET.to_owned()),
            ("BACKUP_S3_ENDPOINT".to_owned(), backup_endpoint),
            ("BACKUP_S3_REGION".to_owned(), "eu-central-2".to_owned()),
            (
                "BACKUP_S3_ACCESS_KEY_ID".to_owned(),
                TEST_BACKUP_KEY.to_owned(),
            ),
            (
                "BACKUP_S3_SECRET_ACCESS_KEY".to_owned(),
                TEST_BACKUP_SECRET.to_owned(),
            ),
        ]);
        for (k, v) in overrides {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let supabase_url = vars.get("SUPABASE_URL").cloned().unwrap_or_default();
        let config =
            shared::config::Config::from_lookup(|k| vars.get(k).cloned()).expect("test config");
        // The bucket's CORS rules for the app's origins, as R2 would have them.
        let options = local::s3::Options {
            faults: Arc::clone(&s3_faults),
            cors: local::s3::Cors::for_origins(&config.allowed_redirect_origins).expect("cors"),
        };
        let root = s3_dir.clone();
        tokio::spawn(async move {
            let (bucket, key, secret) = (TEST_BUCKET, TEST_R2_KEY, TEST_R2_SECRET);
            local::s3::serve(s3, &root, bucket, key, secret, options).await
        });
        // The backup: no browser ever reaches it.
        let options = local::s3::Options {
            faults: Arc::clone(&backup_faults),
            cors: local::s3::Cors::default(),
        };
        let root = backup_dir.clone();
        tokio::spawn(async move {
            let (bucket, key, secret) = (TEST_BACKUP_BUCKET, TEST_BACKUP_KEY, TEST_BACKUP_SECRET);
            local::s3::serve(backup, &root, bucket, key, secret, options).await
        });
        let transport = sentry.map(|t| Arc::new(t) as Arc<dyn sentry::TransportFactory>);
        let app = Arc::new(shared::App::with_sentry_transport(config, transport).expect("app"));
        let base = format!("{}/functions/v1", spawn(local::router(app.clone())).await);
        Server {
            db,
            base,
            supabase_url,
            jwks_hits,
            http: reqwest::Client::new(),
            app,
            s3_dir,
            s3_faults,
            backup_dir,
            backup_faults,
            sentry: None,
        }
    }

    /// The URL of a function.
    pub fn url(&self, function: &str) -> String {
        format!("{}/{function}", self.base)
    }

    /// Claims of a valid access token for `user`, as Supabase issues them.
    pub fn claims(&self, user: Uuid) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "sub": user, "role": "authenticated", "aud": "authenticated",
            "email": "grandma@example.com", "iss": format!("{}/auth/v1", self.supabase_url),
            "iat": now, "exp": now + 3600,
        })
    }

    /// A new user and a valid (HS256) access token for them.
    pub async fn user(&self) -> (Uuid, String) {
        let admin = self.db.admin().await;
        let id = create_user(
            &admin,
            &format!("u-{}@example.com", Uuid::new_v4().simple()),
        )
        .await;
        (id, hs256(&self.claims(id)))
    }

    /// POSTs a JSON body with a bearer token: status, envelope and headers.
    pub async fn post(
        &self,
        function: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let reply = self.call(function, token, body).await;
        (reply.status, reply.body, reply.headers)
    }

    /// POSTs and returns the raw body text (for byte-for-byte comparisons).
    pub async fn post_raw(&self, function: &str, token: &str, body: &Value) -> (u16, String) {
        let resp = self
            .http
            .post(self.url(function))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }

    /// A family created through create-family by the token's user; returns its id.
    pub async fn family(&self, token: &str) -> Uuid {
        self.create_family(token, &json!({"name": "The Family"}))
            .await
            .data()["family"]["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("family id")
    }

    /// Counts rows of a table (as the superuser).
    pub async fn count(&self, table: &str) -> i64 {
        self.db
            .admin()
            .await
            .query_one(&format!("SELECT count(*) AS n FROM {table}"), &[])
            .await
            .expect("count")
            .get("n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.s3_dir);
        let _ = std::fs::remove_dir_all(&self.backup_dir);
    }
}

/// The test S3 server's bucket and credentials.
pub const TEST_BUCKET: &str = "stories-audio";
const TEST_R2_KEY: &str = "test-access-key";
const TEST_R2_SECRET: &str = "test-secret-key";
/// The backup store's (another "provider": other credentials).
pub const TEST_BACKUP_BUCKET: &str = "stories-backup";
const TEST_BACKUP_KEY: &str = "backup-access-key";
const TEST_BACKUP_SECRET: &str = "backup-secret-key";

/// Signs claims with the legacy HS256 secret.
pub fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
}

/// Signs claims with the fixture ES256 key (`kid` test-es256 unless given).
pub fn es256(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_ec_pem(include_bytes!("../fixtures/es256.pem")).expect("es256 key");
    sign(header, claims, &key)
}

/// Signs claims with the fixture RS256 key.
pub fn rs256(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rs256".to_owned());
    let key =
        EncodingKey::from_rsa_pem(include_bytes!("../fixtures/rs256.pem")).expect("rs256 key");
    sign(header, claims, &key)
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}
