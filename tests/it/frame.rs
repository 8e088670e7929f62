//! What every function does the same way: envelope, CORS, methods, size, credentials,
//! validation.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use testkit::TestDb;
use testkit::server::Server;

const FUNCTION: &str = "create-family";

fn assert_cors(headers: &HeaderMap, what: &str) {
    assert_eq!(headers["access-control-allow-origin"], "*", "{what}");
    assert_eq!(
        headers["access-control-allow-methods"], "GET, POST, OPTIONS",
        "{what}"
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization, x-client-info, apikey, content-type, sentry-trace, baggage",
        "{what}"
    );
    assert_eq!(
        headers["access-control-expose-headers"], "x-request-id, retry-after",
        "{what}: a browser app may read them"
    );
    assert!(headers.contains_key("x-request-id"), "{what}: x-request-id");
}

fn assert_error(
    status: u16,
    body: &Value,
    headers: &HeaderMap,
    want_status: u16,
    code: &str,
    what: &str,
) {
    assert_eq!(status, want_status, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}"
    );
    assert_eq!(headers["content-type"], "application/json", "{what}");
    assert_cors(headers, what);
}

/// Every function behind a function URL, from the runner's table (the folders of
/// functions/): a new function is covered the day it exists.
fn http_functions() -> Vec<&'static str> {
    local::functions()
        .into_iter()
        .filter(|f| f.kind == shared::Kind::Http)
        .map(|f| f.name)
        .collect()
}

/// The webhook is authenticated by Stripe's signature, not a token.
const WEBHOOK: &str = "stripe-webhook";

/// The health check takes only `GET`, with no credentials and no body.
const HEALTH: &str = "health";

#[tokio::test]
async fn every_function_answers_the_frame_the_same_way() {
    let server = Server::start_with(
        TestDb::new().await,
        &[("STRIPE_WEBHOOK_SECRET", "whsec_frame")],
    )
    .await;
    let functions = http_functions();
    assert!(functions.len() >= 9, "{functions:?}");
    for function in functions {
        let url = server.url(function);

        let resp = server
            .http
            .request(reqwest::Method::OPTIONS, &url)
            .send()
            .await
            .expect("options");
        assert_eq!(resp.status(), 204, "{function}: OPTIONS");
        assert_cors(resp.headers(), &format!("{function}: OPTIONS"));
        assert!(resp.bytes().await.expect("body").is_empty(), "{function}");

        if function == HEALTH {
            let resp = server.http.get(&url).send().await.expect("get");
            assert_eq!(resp.status(), 200, "{function}: GET");
            assert_cors(resp.headers(), &format!("{function}: GET"));
            let resp = server.http.post(&url).send().await.expect("post");
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            let body: Value = resp.json().await.expect("json");
            let what = format!("{function}: POST");
            assert_error(status, &body, &headers, 405, "METHOD_NOT_ALLOWED", &what);
            assert_eq!(headers["allow"], "GET, OPTIONS", "{what}");
            continue;
        }
        for method in [
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
            reqwest::Method::PATCH,
        ] {
            let resp = server
                .http
                .request(method.clone(), &url)
                .send()
                .await
                .expect("send");
            let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
            let body: Value = resp.json().await.expect("json");
            let what = format!("{function}: {method}");
            assert_error(status, &body, &headers, 405, "METHOD_NOT_ALLOWED", &what);
        }

        let (status, body, headers) = server.post(function, None, &json!({})).await;
        let (want, code) = if function == WEBHOOK {
            (400, "VALIDATION_FAILED")
        } else {
            (401, "UNAUTHORIZED")
        };
        let what = format!("{function}: no credentials");
        assert_error(status, &body, &headers, want, code, &what);

        let huge = json!({"padding": "x".repeat(65 * 1024)});
        let (status, body, headers) = server.post(function, None, &huge).await;
        let what = format!("{function}: 65 KiB");
        assert_error(status, &body, &headers, 413, "PAYLOAD_TOO_LARGE", &what);
    }
}

#[tokio::test]
async fn success_carries_the_envelope_and_cors() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    let (status, body, headers) = server
        .post(FUNCTION, Some(&token), &json!({"name": "The Nguyens"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"].is_object());
    assert_eq!(headers["content-type"], "application/json");
    assert_cors(&headers, "200");
}

#[tokio::test]
async fn every_refusal_has_its_status_code_and_cors_and_writes_nothing() {
    let server = Server::start().await;
    let (_, token) = server.user().await;

    let resp = server
        .http
        .get(server.url(FUNCTION))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body: Value = resp.json().await.expect("json");
    assert_error(status, &body, &headers, 405, "METHOD_NOT_ALLOWED", "GET");

    let cases = [
        (json!({}), "name", "missing name"),
        (json!({"name": 42}), "name", "wrong type"),
        (json!({"name": "   "}), "name", "blank name"),
        (json!({"name": "x".repeat(101)}), "name", "101 characters"),
        (
            json!({"name": "ok", "language": "fr"}),
            "language",
            "unsupported language",
        ),
        (json!(["name"]), "body", "not an object"),
        (json!("The Smiths"), "body", "a string"),
    ];
    for (input, field, what) in cases {
        let (status, body, headers) = server.post(FUNCTION, Some(&token), &input).await;
        assert_error(status, &body, &headers, 400, "VALIDATION_FAILED", what);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{what}: {message}"
        );
    }
    let resp = server
        .http
        .post(server.url(FUNCTION))
        .bearer_auth(&token)
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);

    for table in [
        "families",
        "family_members",
        "prompts",
        "entitlements",
        "rate_limits",
    ] {
        assert_eq!(server.count(table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored_and_names_are_trimmed() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    let name = "é".repeat(100);
    let (status, body, _) = server
        .post(
            FUNCTION,
            Some(&token),
            &json!({"name": format!("  {name}  "), "clientVersion": "2.3.1", "emoji": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["family"]["name"],
        name.as_str(),
        "100 characters (not bytes) after trimming"
    );
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_is_the_integer_json_schema_says_it_is() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    let family = server.family(&token).await;
    let (status, body, _) = server
        .post(
            "create-invite",
            Some(&token),
            &json!({"familyId": family, "maxUses": 3.0, "expiresInDays": 7.0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["invite"]["maxUses"], 3);

    let (status, body, headers) = server
        .post(
            "create-invite",
            Some(&token),
            &json!({"familyId": family, "maxUses": 2.5}),
        )
        .await;
    assert_error(
        status,
        &body,
        &headers,
        400,
        "VALIDATION_FAILED",
        "2.5 uses",
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("maxUses:")),
        "{body}"
    );
    assert_eq!(
        server.count("invites").await,
        1,
        "the refusal wrote nothing"
    );
}

#[tokio::test]
async fn a_length_limit_counts_characters_as_the_document_does_not_bytes() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    // 40 characters, 80 bytes: within the document's maxLength of 64.
    let code = "é".repeat(40);
    let (status, body, _) = server
        .post("redeem-invite", Some(&token), &json!({"code": code}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("NOT_FOUND")),
        "a code the schema allows is looked up, not refused: {body}"
    );
    let (status, body, headers) = server
        .post(
            "redeem-invite",
            Some(&token),
            &json!({"code": "é".repeat(65)}),
        )
        .await;
    assert_error(
        status,
        &body,
        &headers,
        400,
        "VALIDATION_FAILED",
        "65 characters",
    );
}

#[tokio::test]
async fn control_characters_in_any_user_text_are_a_400_naming_the_field() {
    let server = Server::start_with(
        TestDb::new().await,
        &[("STRIPE_SECRET_KEY", "sk_test_frame")],
    )
    .await;
    let (_, token) = server.user().await;
    let family = uuid::Uuid::new_v4();
    let app = "https://app.example.com/";
    let cases = [
        ("create-family", json!({"name": "A\r\nB"}), "name"),
        (
            "create-invite",
            json!({"familyId": family, "email": "a@b.co\r\nBcc: c@d.co"}),
            "email",
        ),
        ("redeem-invite", json!({"code": "ABC-DEF-GHJ\u{0}"}), "code"),
        (
            "finalize-recording",
            json!({"recordingId": family, "familyId": family, "title": "T\u{7}"}),
            "title",
        ),
        (
            "create-checkout-session",
            json!({"familyId": family, "priceId": "price\n1", "successUrl": app, "cancelUrl": app}),
            "priceId",
        ),
        (
            "create-portal-session",
            json!({"familyId": family, "returnUrl": "https://app.example.com/\r\n"}),
            "returnUrl",
        ),
    ];
    for (function, body, field) in cases {
        let (status, answer, _) = server.post(function, Some(&token), &body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("VALIDATION_FAILED")),
            "{function}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("{field}:")),
            "{function}: {message}"
        );
    }
}
