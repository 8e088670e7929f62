//! One invocation of a scheduled or worker function, the way every such function runs:
//! a tracing span with a request id, the handler (a panic is a failure like any other),
//! a failure reported to Sentry, and Sentry flushed before the invocation returns.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use serde::Serialize;
use tracing::Instrument;

use crate::App;
use crate::telemetry::{self, ErrorContext, Invocation};

/// Runs one invocation of `function` with its JSON `event`; `handler` holds the steps.
/// Its report is the invocation's result; a failure fails the invocation, so Lambda
/// retries it (asynchronous invocations) and the error alarm sees it.
pub async fn serve<T, F>(
    app: &App,
    function: &'static str,
    event: serde_json::Value,
    handler: F,
) -> anyhow::Result<serde_json::Value>
where
    T: Serialize,
    F: AsyncFnOnce(serde_json::Value) -> anyhow::Result<T>,
{
    let request_id = uuid::Uuid::new_v4().to_string();
    let span = tracing::info_span!("invocation", function, request_id = %request_id);
    let invocation = Invocation {
        function,
        request_id,
        ..Default::default()
    };
    let result = telemetry::scope(invocation, async move {
        let started = std::time::Instant::now();
        let result = match AssertUnwindSafe(handler(event)).catch_unwind().await {
            Ok(result) => result.and_then(|report| Ok(serde_json::to_value(report)?)),
            Err(panic) => Err(anyhow::anyhow!(
                "handler panicked: {}",
                crate::http::panic_message(&panic)
            )),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(report) => tracing::info!(duration_ms = ms, %report, "invocation done"),
            Err(e) => {
                tracing::error!(
                    duration_ms = ms,
                    error = format!("{e:#}"),
                    "invocation failed"
                );
                let context = ErrorContext {
                    feature: function,
                    action: "invoke",
                    ..Default::default()
                };
                telemetry::report_error(app.sentry.as_ref(), e.as_ref(), context);
            }
        }
        result
    })
    .instrument(span)
    .await;
    telemetry::flush(app.sentry.as_ref()).await;
    result
}
