//! The contract as code: the OpenAPI document the functions' types make is the one
//! committed (and the app's TypeScript is generated from it), the runner serves it, and
//! its reference page renders every function in a real browser.

use serde_json::Value;
use testkit::server::Server;

#[test]
fn the_committed_openapi_document_is_what_the_functions_types_make() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(local::openapi::PATH);
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("api/openapi.json"))
            .expect("JSON");
    assert!(
        committed == local::openapi::document(),
        "api/openapi.json is not what the functions' types make now; regenerate it with\n    {}\n\
         then the TypeScript with `npm run generate` in clients/typescript, and review both",
        local::openapi::REGENERATE
    );
}

#[tokio::test]
async fn the_runner_serves_the_document_and_its_reference_page_renders_every_function() {
    let server = Server::start().await;
    let served: Value = server
        .http
        .get(server.url("openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(served, local::openapi::document());

    if !testkit::browser::available() {
        return;
    }
    let rendered = testkit::browser::evaluate(
        &server.url("reference"),
        "document.body.dataset.ready === 'true' && \
         [...document.querySelectorAll('section.operation')].map(s => s.dataset.function)",
    )
    .await;
    let mut rendered: Vec<String> = serde_json::from_value(rendered).expect("names");
    rendered.dedup();
    let functions: Vec<String> = local::functions()
        .into_iter()
        .filter(|f| f.kind == shared::Kind::Http)
        .map(|f| f.name.to_owned())
        .collect();
    assert_eq!(rendered, functions, "the page lists every function");
}

#[test]
fn the_request_collection_parses_and_names_every_function() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(local::openapi::REQUESTS);
    let mut named = Vec::new();
    for (file, generated) in local::openapi::requests() {
        let text = std::fs::read_to_string(dir.join(&file))
            .unwrap_or_else(|_| panic!("{file} is missing: {}", local::openapi::REGENERATE));
        assert_eq!(
            text,
            generated,
            "{file} is stale: {}",
            local::openapi::REGENERATE
        );
        // A request: `POST {{baseUrl}}/functions/v1/NAME`, headers, a blank line, JSON;
        // or a bare `GET {{baseUrl}}/functions/v1/NAME` (the health check).
        let request = text.split("\n### ").nth(1).expect("a request");
        let mut lines = request.lines().skip(1);
        let target = lines.next().expect("the request line");
        if let Some(name) = target.strip_prefix("GET {{baseUrl}}/functions/v1/") {
            assert_eq!(lines.next(), None, "{file}: a GET has no headers or body");
            named.push(name.to_owned());
            continue;
        }
        let name = target
            .strip_prefix("POST {{baseUrl}}/functions/v1/")
            .expect("POST to a function");
        let headers: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
        assert!(
            headers.iter().all(|h| h.contains(": ")),
            "{file}: {headers:?}"
        );
        let body: String = lines.collect::<Vec<_>>().join("\n");
        serde_json::from_str::<Value>(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        named.push(name.to_owned());
    }
    let functions: Vec<String> = local::functions()
        .into_iter()
        .filter(|f| f.kind == shared::Kind::Http)
        .map(|f| f.name.to_owned())
        .collect();
    assert_eq!(named, functions);
    let files = std::fs::read_dir(&dir).expect("api/requests").count();
    assert_eq!(
        files,
        functions.len(),
        "a file for a function that no longer exists"
    );
}
