//! Access tokens and their attacks: every bad token is a 401 and does no database work.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use testkit::TestDb;
use testkit::server::{Server, es256, hs256, rs256};

const FUNCTION: &str = "create-family";

fn body() -> Value {
    json!({"name": "The Okafors"})
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            claims.as_object_mut().expect("object").remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// HS256 with an arbitrary key, claiming to be the ES256 key (algorithm confusion).
fn hmac_with(key: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).expect("sign")
}

#[tokio::test]
async fn every_token_attack_is_a_401_and_writes_nothing() {
    let server = Server::start().await;
    let (user, _) = server.user().await;
    let good = server.claims(user);
    let now = chrono::Utc::now().timestamp();
    let none_token = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(good.to_string().as_bytes())
    );
    let anon_key = json!({"iss": "supabase", "ref": "localdev", "role": "anon", "iat": now, "exp": now + 3600});
    let service_key = json!({"iss": "supabase", "ref": "localdev", "role": "service_role", "iat": now, "exp": now + 3600});

    let attacks: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("garbage", Some("not-a-jwt".to_owned())),
        ("alg none", Some(none_token)),
        (
            "HS256 signed with the EC public key",
            Some(hmac_with(
                include_bytes!("../../testkit/fixtures/es256.pub.pem"),
                "test-es256",
                &good,
            )),
        ),
        (
            "HS256 signed with the RSA public key",
            Some(hmac_with(
                include_bytes!("../../testkit/fixtures/rs256.pub.pem"),
                "test-rs256",
                &good,
            )),
        ),
        (
            "HS256 with another secret",
            Some(hmac_with(
                b"some-other-secret-of-enough-length!!",
                "",
                &good,
            )),
        ),
        (
            "expired beyond leeway",
            Some(hs256(&with(good.clone(), json!({"exp": now - 120})))),
        ),
        (
            "nbf in the future",
            Some(hs256(&with(good.clone(), json!({"nbf": now + 300})))),
        ),
        (
            "wrong aud",
            Some(hs256(&with(good.clone(), json!({"aud": "someone-else"})))),
        ),
        (
            "no aud",
            Some(hs256(&with(good.clone(), json!({"aud": null})))),
        ),
        ("anon key", Some(hs256(&anon_key))),
        ("service-role key", Some(hs256(&service_key))),
        (
            "role is not authenticated",
            Some(hs256(&with(good.clone(), json!({"role": "service_role"})))),
        ),
        (
            "non-UUID sub",
            Some(hs256(&with(good.clone(), json!({"sub": "grandma"})))),
        ),
        (
            "wrong issuer",
            Some(hs256(&with(
                good.clone(),
                json!({"iss": "https://evil.example/auth/v1"}),
            ))),
        ),
        ("unknown kid", Some(es256(&good, "rotated-away"))),
        (
            "ES256 with the header saying RS256's kid",
            Some(es256(&good, "test-rs256")),
        ),
    ];
    for (attack, token) in attacks {
        let (status, body, headers) = server.post(FUNCTION, token.as_deref(), &body()).await;
        assert_eq!(status, 401, "{attack}: {body}");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{attack}");
        assert_eq!(headers["access-control-allow-origin"], "*", "{attack}");
    }
    assert_eq!(server.count("families").await, 0);
    assert_eq!(server.count("rate_limits").await, 0);

    // The genuine article, by each kind of key, gets through.
    for token in [hs256(&good), es256(&good, "test-es256"), rs256(&good)] {
        let (status, body, _) = server.post(FUNCTION, Some(&token), &body()).await;
        assert_eq!(status, 200, "{body}");
    }
    // Within the leeway is still fine.
    let (status, _, _) = server
        .post(
            FUNCTION,
            Some(&hs256(&with(good, json!({"exp": now - 5})))),
            &body(),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_hundred_unknown_kids_refetch_the_jwks_at_most_once() {
    let server = Server::start().await;
    let (user, _) = server.user().await;
    let claims = server.claims(user);
    let requests = (0..100).map(|i| {
        let token = es256(&claims, &format!("unknown-{i}"));
        let server = &server;
        async move { server.post(FUNCTION, Some(&token), &body()).await.0 }
    });
    let statuses = futures::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(server.jwks_hits.load(std::sync::atomic::Ordering::SeqCst) <= 1);

    // The one fetch cached the real keys: a known kid needs no further fetch.
    let (status, _, _) = server
        .post(FUNCTION, Some(&es256(&claims, "test-es256")), &body())
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.jwks_hits.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_cold_key_cache_with_the_jwks_unreachable_is_a_503_never_unverified() {
    // Port 9 (discard) is closed on loopback.
    let server = Server::start_with(
        TestDb::new().await,
        &[("SUPABASE_URL", "http://127.0.0.1:9")],
    )
    .await;
    let (user, _) = server.user().await;
    let (status, body, _) = server
        .post(
            FUNCTION,
            Some(&es256(&server.claims(user), "test-es256")),
            &body(),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(server.count("families").await, 0);
}

static FAMILY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(body);

fn fixture_keys() -> Value {
    serde_json::from_str(include_str!("../../testkit/fixtures/jwks.json")).expect("jwks")
}

#[tokio::test]
async fn five_cold_requests_share_one_slow_jwks_fetch() {
    let jwks = testkit::stubs::jwks(fixture_keys()).await;
    *jwks.delay.lock().await = std::time::Duration::from_secs(2);
    let server = Server::start_with(TestDb::new().await, &[("SUPABASE_URL", &jwks.base)]).await;
    let (user, _) = server.user().await;
    let token = rs256(&server.claims(user));
    let started = std::time::Instant::now();
    let answers =
        futures::future::join_all((0..5).map(|_| server.create_family(&token, &FAMILY))).await;
    assert!(answers.iter().all(|r| r.status == 200), "{answers:#?}");
    assert_eq!(
        jwks.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one fetch, shared"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "the waiters did not queue one fetch after another: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn five_cold_requests_to_a_hung_jwks_are_503s_within_one_fetch_timeout() {
    let hung = testkit::stubs::silent().await;
    let server = Server::start_with(TestDb::new().await, &[("SUPABASE_URL", &hung)]).await;
    let (user, _) = server.user().await;
    let token = rs256(&server.claims(user));
    let started = std::time::Instant::now();
    let answers =
        futures::future::join_all((0..5).map(|_| server.create_family(&token, &FAMILY))).await;
    assert!(
        answers
            .iter()
            .all(|r| (r.status, r.code()) == (503, Some("SERVICE_UNAVAILABLE"))),
        "{answers:#?}"
    );
    // One 3 s fetch, shared; not 3, 6, 9, 12, 15 s one after another.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.count("families").await, 0);
}

#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_being_accepted_and_a_failing_jwks_keeps_the_last_good_keys()
 {
    let jwks = testkit::stubs::jwks(fixture_keys()).await;
    let age = std::time::Duration::from_millis(300);
    let verifier = shared::auth::Verifier::with(
        None,
        Some(format!("{}/auth/v1/.well-known/jwks.json", jwks.base)),
        None,
        reqwest::Client::new(),
    )
    .with_key_max_age(age);
    let claims = json!({"sub": uuid::Uuid::new_v4(), "role": "authenticated", "aud": "authenticated",
                        "exp": chrono::Utc::now().timestamp() + 3600});
    let headers = |token: String| {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        h
    };
    let es = headers(es256(&claims, "test-es256"));
    let rs = headers(rs256(&claims));
    assert!(verifier.verify(&es).await.is_ok());
    assert!(verifier.verify(&rs).await.is_ok());

    // The JWKS fails: past the keys' age, the last good set stays in use.
    jwks.failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(age * 2).await;
    assert!(
        verifier.verify(&es).await.is_ok(),
        "kept while the JWKS fails"
    );

    // The ES256 key is rotated out: once the cached set is due, it is refused.
    let mut keys = fixture_keys();
    keys["keys"]
        .as_array_mut()
        .expect("keys")
        .retain(|k| k["kid"] != "test-es256");
    *jwks.keys.lock().await = keys;
    jwks.failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // The failed fetch holds retries off for a few seconds.
    tokio::time::sleep(std::time::Duration::from_secs(5) + age).await;
    assert!(
        matches!(
            verifier.verify(&es).await,
            Err(shared::ApiError::Unauthorized)
        ),
        "a removed key stops being accepted"
    );
    assert!(
        verifier.verify(&rs).await.is_ok(),
        "the keys still published still work"
    );
}
