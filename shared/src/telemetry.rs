//! Logging: one JSON line per event on Lambda, human-readable locally.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once (a second call is a no-op).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // AWS_LAMBDA_FUNCTION_NAME is set by the Lambda runtime.
    let _ = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
