//! One invocation, the way every function answers it: request id, CORS, preflight,
//! method and size checks, a tracing span, the handler, then one envelope out.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use garde::Validate;
use http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, RequestExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::App;
use crate::api::{Data, ErrorBody, Failure};
use crate::error::ApiError;
use crate::telemetry::{self, ErrorContext, Invocation};

/// The request a function receives (what `lambda_http` hands over; the local runner builds the same).
pub type Request = lambda_http::Request;
/// The response a function returns.
pub type Response = http::Response<Body>;

/// The contract's body limit.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Which methods a function takes besides `OPTIONS`.
#[derive(Debug, Clone, Copy)]
pub enum Methods {
    Post,
    GetOrPost,
    /// A read with no body and no input (the health check).
    Get,
}

impl Methods {
    fn allows(self, m: &Method) -> bool {
        match self {
            Methods::Post => *m == Method::POST,
            Methods::GetOrPost => *m == Method::POST || *m == Method::GET,
            Methods::Get => *m == Method::GET,
        }
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> &'static str {
        match self {
            Methods::Post => "POST, OPTIONS",
            Methods::GetOrPost => "GET, POST, OPTIONS",
            Methods::Get => "GET, OPTIONS",
        }
    }
}

/// Runs one invocation of `function`; `handler` holds the function's own steps.
///
/// A 5xx is reported to Sentry with its error chain (4xx are the caller's, not ours);
/// Sentry events and analytics are flushed before the response is returned.
pub async fn serve<T, F>(
    app: &App,
    function: &'static str,
    methods: Methods,
    req: &Request,
    handler: F,
) -> Response
where
    T: Serialize,
    F: AsyncFnOnce(&Request) -> Result<T, ApiError>,
{
    let request_id = req
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("invocation", function, request_id = %request_id, user_id = tracing::field::Empty);
    // The app's trace continues here when it sent `sentry-trace` (and `baggage`).
    let transaction = app.sentry.as_ref().map(|client| {
        let hub = Arc::new(sentry::Hub::new(
            Some(client.clone()),
            Arc::new(sentry::Scope::default()),
        ));
        let headers = req
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let context =
            sentry::TransactionContext::continue_from_headers(function, "http.server", headers);
        sentry::Hub::run(hub, || sentry::start_transaction(context))
    });
    let invocation = Invocation {
        function,
        request_id: request_id.clone(),
        trace: transaction.as_ref().map(|t| t.get_trace_context()),
        ..Default::default()
    };
    let response = telemetry::scope(invocation, async move {
        let started = Instant::now();
        if req.method() == Method::OPTIONS {
            return finish(with_cors(empty(StatusCode::NO_CONTENT)), &request_id);
        }
        let result = if !methods.allows(req.method()) {
            Err(ApiError::MethodNotAllowed)
        } else if req.body().len() > MAX_BODY_BYTES {
            Err(ApiError::PayloadTooLarge)
        } else {
            // A panic is a bug: it becomes a 500 like any other, not a dead instance.
            let handled = async {
                match AssertUnwindSafe(handler(req)).catch_unwind().await {
                    Ok(result) => result,
                    Err(panic) => Err(ApiError::Internal(anyhow::anyhow!(
                        "handler panicked: {}",
                        panic_message(&panic)
                    ))),
                }
            };
            // Whatever hangs, the caller gets an envelope before Lambda stops the
            // instance: dropping the handler rolls its open transaction back.
            match time_left(req) {
                Some(left) => tokio::time::timeout(left, handled)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::Unavailable(anyhow::anyhow!(
                            "the invocation ran out of time"
                        )))
                    }),
                None => handled.await,
            }
        };
        let response = match result {
            Ok(data) => match serde_json::to_string(&Data { data }) {
                Ok(body) => json(StatusCode::OK, body),
                Err(e) => error_response(&ApiError::internal(e)),
            },
            Err(e) => {
                if e.status().is_server_error() {
                    telemetry::report_error(
                        app.sentry.as_ref(),
                        &e,
                        ErrorContext {
                            feature: function,
                            action: "invoke",
                            ..Default::default()
                        },
                    );
                }
                error_response(&e)
            }
        };
        let mut response = response;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(methods.allow()));
        }
        let status = response.status();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match &status {
            s if s.is_server_error() => {
                tracing::error!(status = s.as_u16(), duration_ms = ms, "request failed")
            }
            s => tracing::info!(status = s.as_u16(), duration_ms = ms, "request handled"),
        }
        finish(response, &request_id)
    })
    .instrument(span)
    .await;
    if let Some(transaction) = transaction {
        transaction.set_status(if response.status().is_server_error() {
            sentry::protocol::SpanStatus::InternalError
        } else {
            sentry::protocol::SpanStatus::Ok
        });
        transaction.finish();
    }
    if let Some(analytics) = &app.analytics {
        analytics.flush().await;
    }
    telemetry::flush(app.sentry.as_ref()).await;
    response
}

/// How long the handler may run: until a second before the Lambda's deadline (None
/// outside Lambda, where nothing stops the process).
fn time_left(req: &Request) -> Option<std::time::Duration> {
    let deadline = req.lambda_context_ref()?.deadline;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    (deadline > 0).then(|| std::time::Duration::from_millis(deadline.saturating_sub(now + 1_000)))
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// The contract's error envelope; 5xx causes go to the log, never to the caller.
pub fn error_response(e: &ApiError) -> Response {
    if e.status().is_server_error() {
        tracing::error!(code = e.code().as_str(), error = ?error_chain(e), "server error");
    } else {
        tracing::info!(code = e.code().as_str(), "request refused");
    }
    let failure = Failure {
        error: ErrorBody {
            code: e.code(),
            message: e.to_string(),
        },
    };
    let mut response = json(
        e.status(),
        serde_json::to_string(&failure).unwrap_or_default(),
    );
    let retry_after = match e {
        ApiError::RateLimit {
            retry_after_seconds,
        } => Some(*retry_after_seconds),
        _ if e.status() == StatusCode::SERVICE_UNAVAILABLE => Some(UNAVAILABLE_RETRY_AFTER),
        _ => None,
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The back-off a 503 asks for: a database or pooler that is down or full (PgBouncer's
/// `max_client_conn`, the connection budget) is worth trying again soon, not at once.
const UNAVAILABLE_RETRY_AFTER: u32 = 2;

fn error_chain(e: &ApiError) -> String {
    let mut chain = e.code().as_str().to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = http::Response::new(Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty(status: StatusCode) -> Response {
    let mut response = http::Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}

fn with_cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, x-client-info, apikey, content-type, sentry-trace, baggage",
        ),
    );
    // What a browser app may read: which request failed, and when to try again.
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-request-id, retry-after"),
    );
    response
}

fn finish(response: Response, request_id: &str) -> Response {
    let mut response = with_cors(response);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is
/// percent-encoded: safe in a URL path segment, a query and an RFC 5987 header value.
const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded as its UTF-8 bytes, keeping only the unreserved characters.
pub fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, ENCODED).to_string()
}

/// Takes one hit of the fixed-window rate limit `key` (at most `limit` per `window`, an
/// interval such as `1 hour`) in the caller's transaction: 429 with `Retry-After` when
/// the window is full. The counter row is locked, so concurrent callers can't slip past.
pub async fn rate_limit(
    tx: &crate::db::Tx<'_>,
    key: &str,
    limit: i32,
    window: &str,
) -> Result<(), ApiError> {
    match crate::store::rate_limits::take(tx, key, limit, window).await? {
        None => Ok(()),
        Some(retry_after_seconds) => Err(ApiError::RateLimit {
            retry_after_seconds,
        }),
    }
}

/// A function's input: the JSON object body (a `GET`'s query parameters, as strings,
/// percent-decoded), parsed and validated; unknown fields are ignored (as the
/// original's Zod object schemas did), errors name the field. The family or recording
/// it names tags the invocation's telemetry.
pub fn input<T>(req: &Request) -> Result<T, ApiError>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    let value: serde_json::Value = if req.method() == Method::GET {
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    } else {
        serde_json::from_slice(req.body().as_ref())
            .map_err(|_| ApiError::Validation("body: must be a JSON object".to_owned()))?
    };
    let id = |field: &str| value.get(field)?.as_str()?.parse::<uuid::Uuid>().ok();
    if let Some(family) = id("familyId") {
        telemetry::set_family(family);
    }
    if let Some(recording) = id("recordingId") {
        telemetry::set_recording(recording);
    }
    parse_value(value)
}

/// Validates a JSON object already in hand (a body, or query parameters as an object).
pub fn parse_value<T>(mut value: serde_json::Value) -> Result<T, ApiError>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    if !value.is_object() {
        return Err(ApiError::Validation(
            "body: must be a JSON object".to_owned(),
        ));
    }
    whole_numbers(&mut value);
    let input: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde names a missing field only in its message.
        if let Some(field) = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let field = if path == "." {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            ApiError::Validation(format!("{field}: is required"))
        } else if path == "." {
            ApiError::Validation(inner)
        } else {
            ApiError::Validation(format!("{path}: {inner}"))
        }
    })?;
    input.validate().map_err(|report| {
        let messages: Vec<String> = report
            .iter()
            .map(|(path, error)| format!("{}: {error}", camel_case(&path.to_string())))
            .collect();
        ApiError::Validation(messages.join("; "))
    })?;
    Ok(input)
}

/// garde reports Rust field names; the contract's JSON names are camelCase.
fn camel_case(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// Text a validation rule can read: a string, or an optional one.
pub trait Text {
    fn text(&self) -> Option<&str>;
}

impl Text for String {
    fn text(&self) -> Option<&str> {
        Some(self)
    }
}

impl Text for Option<String> {
    fn text(&self) -> Option<&str> {
        self.as_deref()
    }
}

/// garde rule for every user-written text: no control characters (a CR/LF would reach
/// email subjects, a NUL the database). `#[garde(custom(printable))]`.
pub fn printable<T: Text>(value: &T, _: &()) -> garde::Result {
    match value.text() {
        Some(text) if text.chars().any(char::is_control) => {
            Err(garde::Error::new("must not contain control characters"))
        }
        _ => Ok(()),
    }
}

/// garde rule for a SHA-256 as `x-amz-checksum-sha256` takes it: standard base64 with
/// padding, 44 characters (hex, URL-safe base64 or a wrong length are refused).
pub fn sha256_base64(value: &str, _: &()) -> garde::Result {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value);
    match decoded {
        Ok(bytes) if bytes.len() == 32 && value.len() == 44 => Ok(()),
        _ => Err(garde::Error::new(
            "must be a SHA-256 in standard base64 with padding (44 characters)",
        )),
    }
}

/// JSON (and the OpenAPI document's JSON Schema) counts `852.0` as the integer 852;
/// serde's integer types refuse it. Whole numbers written with a fraction become
/// integers before parsing (a float field takes an integer as well).
fn whole_numbers(value: &mut serde_json::Value) {
    /// Beyond 2^53 a float no longer holds every integer exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0)
                && f.abs() <= EXACT
            {
                // Exact: a whole number within ±2^53.
                #[allow(clippy::cast_possible_truncation)]
                let whole = f as i64;
                *value = whole.into();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Serde helper: a string with surrounding whitespace removed (validated after trimming).
pub fn trimmed<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    Ok(s.trim().to_owned())
}
