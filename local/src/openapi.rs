//! The OpenAPI 3.1 document of every HTTP function, built from the functions' own types
//! (`schemars` reads their serde and garde attributes) and what each says of itself
//! (`api()`). `api/openapi.json` holds it for review and for the app's TypeScript; a
//! test fails when the two differ. The runner serves it, with a reference page.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use shared::api::{Auth, ErrorCode, Failure, Operation};

/// Where the committed document lives, from the workspace root.
pub const PATH: &str = "api/openapi.json";

/// The command that rewrites it.
pub const REGENERATE: &str = "cargo run -p local --bin openapi -- --write";

/// Where the request collection lives (one `.http` file per function).
pub const REQUESTS: &str = "api/requests";

/// The request collection for people who explore by hand: each function's example as
/// an `.http` file (VS Code's REST Client, httpyac, JetBrains), the base URL and the
/// token read from the environment (`FUNCTIONS_URL`, `TOKEN`).
pub fn requests() -> Vec<(String, String)> {
    crate::operations()
        .into_iter()
        .map(|op| {
            let (body, _) = (op.example)();
            let auth = match op.auth {
                Auth::Bearer => "Authorization: Bearer {{token}}".to_owned(),
                Auth::StripeSignature => {
                    "Stripe-Signature: t=…,v1=… (sign it: local's stripe-event command)".to_owned()
                }
            };
            let text = format!(
                "# {name}: {summary}\n\
                 # Generated from the function's example by `{REGENERATE}`.\n\
                 @baseUrl = {{{{$processEnv FUNCTIONS_URL}}}}\n\
                 @token = {{{{$processEnv TOKEN}}}}\n\n\
                 ### {summary}\n\
                 POST {{{{baseUrl}}}}/functions/v1/{name}\n\
                 {auth}\n\
                 Content-Type: application/json\n\n\
                 {body}\n",
                name = op.name,
                summary = op.summary,
                body = serde_json::to_string_pretty(&body).unwrap_or_default(),
            );
            (format!("{}.http", op.name), text)
        })
        .collect()
}

/// The refusals the frame answers for every function, by status.
fn frame_errors(auth: Auth) -> Vec<(u16, Vec<ErrorCode>)> {
    let mut errors = vec![
        (400, vec![ErrorCode::ValidationFailed]),
        (413, vec![ErrorCode::PayloadTooLarge]),
        (500, vec![ErrorCode::InternalError]),
        (503, vec![ErrorCode::ServiceUnavailable]),
    ];
    if auth == Auth::Bearer {
        errors.push((401, vec![ErrorCode::Unauthorized]));
    }
    errors
}

/// The whole document, keys sorted (so the committed file diffs cleanly).
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let failure: Value = generator.subschema_for::<Failure>().into();
    let mut paths = Map::new();
    for op in crate::operations() {
        let item = path_item(&op, &mut generator, &failure);
        paths.insert(format!("/functions/v1/{}", op.name), item);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Stories From the Sun functions",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The backend's functions, as the app calls them (supabase-js \
                `functions.invoke`). Every answer is an envelope: `{\"data\": …}` or \
                `{\"error\": {\"code\", \"message\"}}`, with `x-request-id` and CORS \
                headers; `OPTIONS` answers 204 and other methods 405 with `Allow`. \
                Generated from the Rust types: do not edit by hand."
        },
        "servers": [{"url": "http://127.0.0.1:54321", "description": "scripts/dev.sh"}],
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "A Supabase access token (ES256/RS256 by the project's \
                        JWKS, or legacy HS256)."
                }
            },
            "headers": {
                "RequestId": {
                    "description": "The invocation's id: quote it when something went wrong.",
                    "required": true,
                    "schema": {"type": "string"}
                },
                "RetryAfter": {
                    "description": "Seconds until the rate limit's window ends.",
                    "required": true,
                    "schema": {"type": "integer", "minimum": 1}
                }
            }
        }
    })
}

fn path_item(op: &Operation, generator: &mut SchemaGenerator, failure: &Value) -> Value {
    let input: Value = (op.input)(generator).into();
    let output: Value = (op.output)(generator).into();
    let (example_input, example_output) = (op.example)();
    let mut post = json!({
        "operationId": op.name,
        "summary": op.summary,
        "description": op.description,
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": input, "example": example_input}}
        },
        "responses": responses(op, &output, &example_output, failure),
    });
    match op.auth {
        Auth::Bearer => post["security"] = json!([{"bearerAuth": []}]),
        Auth::StripeSignature => {
            post["security"] = json!([]);
            post["parameters"] = json!([{
                "name": "Stripe-Signature", "in": "header", "required": true,
                "description": "`t=…,v1=…`: HMAC-SHA256 of `{t}.{body}` with the endpoint \
                    secret, within 300 s either way.",
                "schema": {"type": "string"}
            }]);
        }
    }
    let mut item = json!({"post": post});
    if op.get {
        let mut get = item["post"].clone();
        let object = get.as_object_mut().expect("an operation is an object");
        object.remove("requestBody");
        object.insert("operationId".into(), json!(format!("{}-get", op.name)));
        object.insert("parameters".into(), query_parameters(&input, generator));
        item["get"] = get;
    }
    item
}

/// The input's properties as query parameters (the `GET` form).
fn query_parameters(input: &Value, generator: &SchemaGenerator) -> Value {
    let name = input["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
        .unwrap_or_default();
    let definition = generator
        .definitions()
        .get(name)
        .cloned()
        .unwrap_or_default();
    let required = definition["required"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let properties = definition["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .map(|(field, schema)| {
            json!({"name": field, "in": "query", "required": required.contains(&json!(field)),
                   "schema": schema})
        })
        .collect()
}

fn responses(op: &Operation, output: &Value, example: &Value, failure: &Value) -> Value {
    let request_id = json!({"x-request-id": {"$ref": "#/components/headers/RequestId"}});
    let mut ok = json!({
        "description": "Done: the envelope's `data`.",
        "headers": request_id,
        "content": {"application/json": {
            "schema": {"type": "object", "required": ["data"], "properties": {"data": output}},
            "example": {"data": example}
        }}
    });
    if !op.links.is_empty() {
        let links: Map<String, Value> = op
            .links
            .iter()
            .map(|link| {
                let body: Map<String, Value> = link
                    .fields
                    .iter()
                    .map(|(field, expression)| ((*field).to_owned(), json!(expression)))
                    .collect();
                (
                    link.target.to_owned(),
                    json!({"operationId": link.target, "requestBody": body}),
                )
            })
            .collect();
        ok["links"] = Value::Object(links);
    }
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    let mut errors = frame_errors(op.auth);
    for (status, codes) in op.errors {
        match errors.iter_mut().find(|(s, _)| s == status) {
            Some((_, known)) => known.extend_from_slice(codes),
            None => errors.push((*status, codes.to_vec())),
        }
    }
    errors.sort_by_key(|(status, _)| *status);
    for (status, codes) in errors {
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let mut headers = request_id.clone();
        if status == 429 {
            headers["Retry-After"] = json!({"$ref": "#/components/headers/RetryAfter"});
        }
        let schema = json!({
            "allOf": [failure, {"properties": {"error": {"properties": {"code": {"enum": names}}}}}]
        });
        responses.insert(
            status.to_string(),
            json!({
                "description": names.join(", "),
                "headers": headers,
                "content": {"application/json": {"schema": schema}}
            }),
        );
    }
    Value::Object(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_function_is_a_path_and_every_schema_it_refers_to_exists() {
        let doc = document();
        let functions: Vec<&str> = crate::functions()
            .into_iter()
            .filter(|f| f.kind == shared::Kind::Http)
            .map(|f| f.name)
            .collect();
        for name in &functions {
            assert!(
                doc["paths"][format!("/functions/v1/{name}")]["post"].is_object(),
                "{name}"
            );
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                schemas.contains_key(name),
                "{name} is referred to but not defined"
            );
        }
    }
}
