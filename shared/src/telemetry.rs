//! Observability: logs (one JSON line per event on Lambda, human-readable locally),
//! Sentry error reports with the seed's context, and the per-invocation context
//! (function, request, user, family, recording) both draw on.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

pub use sentry::protocol::Level;
use sentry::protocol::{Event, User, Value};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use uuid::Uuid;

use crate::config::Config;

/// Installs the global log subscriber once (a second call is a no-op). The format is
/// `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`, Lambda's own logging control), else JSON
/// lines on Lambda (AWS_LAMBDA_FUNCTION_NAME is set there) and human-readable
/// elsewhere; the level is `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
pub fn init() {
    let json = match std::env::var("AWS_LAMBDA_LOG_FORMAT") {
        Ok(format) => format.eq_ignore_ascii_case("json"),
        Err(_) => std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some(),
    };
    if json {
        init_json(std::io::stdout);
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_target(false)
            .try_init();
    }
}

/// Installs the JSON log subscriber writing to `writer` (Lambda's format; tests capture it).
pub fn init_json<W: for<'a> MakeWriter<'a> + Send + Sync + 'static>(writer: W) {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_target(false)
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
        .try_init();
}

fn filter() -> EnvFilter {
    let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let rust_log = std::env::var("RUST_LOG").ok();
    EnvFilter::try_new(log_directive(lambda_level.as_deref(), rust_log.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The filter directive: Lambda's log level (its `FATAL` is our `error`) before
/// `RUST_LOG`, before `info`.
fn log_directive(lambda_level: Option<&str>, rust_log: Option<&str>) -> String {
    match lambda_level.map(str::to_ascii_lowercase).as_deref() {
        Some("fatal") => "error".to_owned(),
        Some(level @ ("trace" | "debug" | "info" | "warn" | "error")) => level.to_owned(),
        _ => rust_log
            .filter(|r| !r.trim().is_empty())
            .unwrap_or("info")
            .to_owned(),
    }
}

/// What is known about the invocation in progress.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub function: &'static str,
    pub request_id: String,
    pub user_id: Option<Uuid>,
    /// Only ever sent masked (`ab***@domain.com`); never logged.
    pub email: Option<String>,
    pub family_id: Option<Uuid>,
    pub recording_id: Option<Uuid>,
    /// The trace this invocation belongs to (the app's, when it sent `sentry-trace`):
    /// every event it reports carries it, so Sentry shows the app's call and ours as one.
    pub trace: Option<sentry::protocol::TraceContext>,
}

tokio::task_local! {
    static INVOCATION: RefCell<Invocation>;
}

/// Runs `f` with `invocation` as the context of everything it reports.
pub async fn scope<F: Future>(invocation: Invocation, f: F) -> F::Output {
    INVOCATION.scope(RefCell::new(invocation), f).await
}

/// The context of the invocation in progress (default outside one).
pub fn current() -> Invocation {
    INVOCATION
        .try_with(|i| i.borrow().clone())
        .unwrap_or_default()
}

fn update(f: impl FnOnce(&mut Invocation)) {
    let _ = INVOCATION.try_with(|i| f(&mut i.borrow_mut()));
}

/// Records the verified caller (its id also goes on the log span).
pub fn set_user(id: Uuid, email: Option<String>) {
    tracing::Span::current().record("user_id", tracing::field::display(id));
    update(|i| {
        i.user_id = Some(id);
        i.email = email;
    });
}

/// Records the family the invocation works on (a Sentry extra).
pub fn set_family(id: Uuid) {
    update(|i| i.family_id = Some(id));
}

/// Records the recording the invocation works on (a Sentry extra).
pub fn set_recording(id: Uuid) {
    update(|i| i.recording_id = Some(id));
}

/// Errors the seed's wrapper never sent: client-side noise, not our failures.
pub const IGNORED_ERRORS: &[&str] = &[
    "Network request failed",
    "Load failed",
    "ResizeObserver loop limit exceeded",
    "AbortError",
    "TypeError: cancelled",
    "TypeError: Failed to fetch",
];

/// The git revision the binary was built from (the health check's `revision`).
pub const REVISION: &str = env!("GIT_REVISION");

/// The release Sentry files events under: the crate version and the git revision the
/// binary was built from.
pub const RELEASE: &str = concat!(
    "stories-backend@",
    env!("CARGO_PKG_VERSION"),
    "+",
    env!("GIT_REVISION")
);

/// The Sentry client of a cold start: None without `SENTRY_DSN`. Events go out through
/// `http` (the functions' one client, with its connect and total timeouts), unless
/// `transport` replaces it (tests pass Sentry's test transport).
pub fn sentry_client(
    config: &Config,
    transport: Option<Arc<dyn sentry::TransportFactory>>,
    http: &reqwest::Client,
) -> anyhow::Result<Option<Arc<sentry::Client>>> {
    use secrecy::ExposeSecret;
    let Some(dsn) = &config.sentry_dsn else {
        return Ok(None);
    };
    let mut options = sentry::ClientOptions::new()
        .environment(config.sentry_environment.clone())
        .release(RELEASE)
        .traces_sample_rate(config.sentry_traces_sample_rate)
        .send_default_pii(false)
        .before_send(|event| (!is_ignored(&event)).then_some(event));
    options.dsn = Some(
        dsn.expose_secret()
            .parse()
            .map_err(|_| anyhow::anyhow!("SENTRY_DSN is not a valid DSN"))?,
    );
    options.transport = Some(transport.unwrap_or_else(|| {
        let http = http.clone();
        Arc::new(move |options: &sentry::ClientOptions| {
            let transport: Arc<dyn sentry::Transport> =
                match sentry::TransportOptions::try_from_client_options(options) {
                    Some(general) => Arc::new(
                        sentry::transports::ReqwestHttpTransportOptions::from(general)
                            .with_client(http.clone())
                            .build(),
                    ),
                    None => Arc::new(NoTransport),
                };
            transport
        })
    }));
    Ok(Some(Arc::new(sentry::Client::from(options))))
}

/// Where events go when the options hold no DSN (never, since the client is built only
/// with one).
struct NoTransport;

impl sentry::Transport for NoTransport {
    fn send_envelope(&self, _: sentry::Envelope) {}
}

fn is_ignored(event: &Event<'_>) -> bool {
    let texts = event.message.iter().cloned().chain(
        event
            .exception
            .values
            .iter()
            .flat_map(|e| [e.ty.clone(), e.value.clone().unwrap_or_default()]),
    );
    texts
        .into_iter()
        .any(|t| IGNORED_ERRORS.iter().any(|ignored| t.contains(ignored)))
}

/// `ab***@domain.com`, as the seed's wrapper masked emails.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            format!("{}***@{domain}", local.chars().take(2).collect::<String>())
        }
        None => "***".to_owned(),
    }
}

/// Where in the product an error happened (the seed's `captureError` context).
#[derive(Debug, Default)]
pub struct ErrorContext {
    /// Sentry tag `feature`, e.g. `recording`.
    pub feature: &'static str,
    /// Sentry tag `action`, e.g. `upload`.
    pub action: &'static str,
    /// Free-form extras (never secrets, tokens, codes, URLs or emails).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Reports an error to Sentry with the invocation's context: tags `feature`,
/// `action`, `function`; extras `familyId`, `recordingId` and `ctx.extra`; the user
/// by id with a masked email. A no-op without a client.
pub fn report_error(
    client: Option<&Arc<sentry::Client>>,
    error: &(dyn std::error::Error + 'static),
    ctx: ErrorContext,
) {
    report_at(client, Level::Error, error, ctx);
}

/// As [`report_error`], at `level` (a repair is a warning; a recording with no good
/// copy left, fatal).
pub fn report_at(
    client: Option<&Arc<sentry::Client>>,
    level: Level,
    error: &(dyn std::error::Error + 'static),
    ctx: ErrorContext,
) {
    let Some(client) = client else { return };
    let inv = current();
    let mut event = sentry::event_from_error(error);
    event.level = level;
    event.tags.insert("feature".into(), ctx.feature.into());
    event.tags.insert("action".into(), ctx.action.into());
    event.tags.insert("function".into(), inv.function.into());
    event
        .tags
        .insert("request_id".into(), inv.request_id.clone());
    if let Some(id) = inv.family_id {
        event
            .extra
            .insert("familyId".into(), Value::from(id.to_string()));
    }
    if let Some(id) = inv.recording_id {
        event
            .extra
            .insert("recordingId".into(), Value::from(id.to_string()));
    }
    event.extra.extend(ctx.extra);
    if let Some(trace) = inv.trace {
        event.contexts.insert(
            "trace".into(),
            sentry::protocol::Context::Trace(Box::new(trace)),
        );
    }
    if let Some(id) = inv.user_id {
        event.user = Some(User {
            id: Some(id.to_string()),
            email: inv.email.as_deref().map(mask_email),
            ..Default::default()
        });
    }
    client.capture_event(event, None);
}

/// Sends what is queued before the invocation returns: a frozen Lambda sends nothing.
pub async fn flush(client: Option<&Arc<sentry::Client>>) {
    if let Some(client) = client.cloned() {
        let _ =
            tokio::task::spawn_blocking(move || client.flush(Some(Duration::from_secs(2)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambdas_log_level_comes_before_rust_log() {
        assert_eq!(log_directive(Some("DEBUG"), Some("warn")), "debug");
        assert_eq!(log_directive(Some("FATAL"), None), "error");
        assert_eq!(log_directive(Some("nonsense"), Some("warn")), "warn");
        assert_eq!(log_directive(None, Some("shared=debug")), "shared=debug");
        assert_eq!(log_directive(None, None), "info");
    }

    #[test]
    fn emails_are_masked_the_seed_way() {
        assert_eq!(mask_email("abuela@familia.mx"), "ab***@familia.mx");
        assert_eq!(mask_email("a@b.com"), "a***@b.com");
        assert_eq!(mask_email("no-at-sign"), "***");
    }
}
