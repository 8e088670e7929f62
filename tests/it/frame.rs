//! What every function does the same way: envelope, CORS, methods, size, validation.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
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
        "authorization, x-client-info, apikey, content-type",
        "{what}"
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

#[tokio::test]
async fn preflight_is_a_204_with_cors_and_no_body() {
    let server = Server::start().await;
    let resp = server
        .http
        .request(reqwest::Method::OPTIONS, server.url(FUNCTION))
        .send()
        .await
        .expect("options");
    assert_eq!(resp.status(), 204);
    assert_cors(resp.headers(), "OPTIONS");
    assert!(resp.bytes().await.expect("body").is_empty());
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

    for method in [
        reqwest::Method::PUT,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let resp = server
            .http
            .request(method.clone(), server.url(FUNCTION))
            .bearer_auth(&token)
            .send()
            .await
            .expect("send");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body: Value = resp.json().await.expect("json");
        assert_error(
            status,
            &body,
            &headers,
            405,
            "METHOD_NOT_ALLOWED",
            method.as_str(),
        );
    }

    let huge = json!({"name": "Big", "padding": "x".repeat(65 * 1024)});
    let (status, body, headers) = server.post(FUNCTION, Some(&token), &huge).await;
    assert_error(status, &body, &headers, 413, "PAYLOAD_TOO_LARGE", "65 KiB");

    let (status, body, headers) = server.post(FUNCTION, None, &json!({"name": "x"})).await;
    assert_error(status, &body, &headers, 401, "UNAUTHORIZED", "no token");

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
