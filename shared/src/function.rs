//! What a function is, to the Lambda binary that runs it and to the local runner that
//! serves it: its name, kind and requirements (read from its own `Cargo.toml`, the one
//! place they live), and its `run`. The frame does the wiring: for an HTTP function it
//! answers preflight, method and size, establishes the caller ([`Caller`]: a verified
//! token, Stripe's signature, or anyone), parses and validates the input, tags the
//! telemetry with the family or recording it names, and only then calls `run`.

use std::convert::Infallible;
use std::sync::Arc;

use futures::future::BoxFuture;
use garde::Validate;
use lambda_http::{LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::App;
use crate::auth::User;
use crate::error::ApiError;
use crate::http::{Methods, Request, Response};

/// How a function is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Behind a function URL (and the one base URL): an HTTP request, an envelope out.
    Http,
    /// Run by an EventBridge schedule.
    Scheduled,
    /// Invoked asynchronously with a JSON event (by another function or a schedule).
    Worker,
}

impl Kind {
    /// The name used in `[package.metadata.stories] kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Scheduled => "scheduled",
            Kind::Worker => "worker",
        }
    }
}

/// A function crate's own `Cargo.toml`, as [`manifest!`](crate::manifest) embeds it.
#[derive(Debug, Clone, Copy)]
pub struct Manifest {
    pub name: &'static str,
    pub toml: &'static str,
}

/// The calling crate's name and `Cargo.toml`: where its kind and the variables it can't
/// start without are written, once.
#[macro_export]
macro_rules! manifest {
    () => {
        $crate::function::Manifest {
            name: env!("CARGO_PKG_NAME"),
            toml: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")),
        }
    };
}

impl Manifest {
    /// The lines of `[package.metadata.stories]`.
    fn stories(&self) -> impl Iterator<Item = &'static str> {
        self.toml
            .lines()
            .skip_while(|l| l.trim() != "[package.metadata.stories]")
            .skip(1)
            .take_while(|l| !l.starts_with('['))
    }

    /// `kind = "…"`.
    pub fn kind(&self) -> Option<Kind> {
        let kind = self
            .stories()
            .find_map(|l| l.trim().strip_prefix("kind = "))?;
        [Kind::Http, Kind::Scheduled, Kind::Worker]
            .into_iter()
            .find(|k| kind.trim_matches('"') == k.as_str())
    }

    /// `required = [ … ]`: the variables it can't start without.
    pub fn required(&self) -> Vec<&'static str> {
        self.stories()
            .skip_while(|l| !l.starts_with("required = ["))
            .skip(1)
            .take_while(|l| !l.starts_with(']'))
            .filter_map(|l| {
                l.trim()
                    .trim_end_matches(',')
                    .strip_prefix('"')?
                    .strip_suffix('"')
            })
            .collect()
    }
}

/// Who calls an HTTP function, established by the frame before `run`.
pub trait Caller: Sized + Send + 'static {
    fn identify(app: &App, req: &Request) -> impl Future<Output = Result<Self, ApiError>> + Send;
}

impl Caller for User {
    /// A verified Supabase access token (contract §2).
    async fn identify(app: &App, req: &Request) -> Result<Self, ApiError> {
        app.auth.verify(req.headers()).await
    }
}

/// Anyone at all: no credentials asked for.
#[derive(Debug, Clone, Copy)]
pub struct Anyone;

impl Caller for Anyone {
    async fn identify(_: &App, _: &Request) -> Result<Self, ApiError> {
        Ok(Anyone)
    }
}

/// Stripe, by its `Stripe-Signature` over the raw body (the webhook): 400 for anything
/// else, nothing written.
#[derive(Debug, Clone, Copy)]
pub struct Stripe;

impl Caller for Stripe {
    async fn identify(app: &App, req: &Request) -> Result<Self, ApiError> {
        let secret = app.config.stripe_webhook_secret.as_ref().ok_or_else(|| {
            ApiError::Unavailable(anyhow::anyhow!("STRIPE_WEBHOOK_SECRET is not set"))
        })?;
        let header = req
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // lambda_http has already decoded a base64 body: these are Stripe's bytes.
        let now = chrono::Utc::now().timestamp();
        if crate::stripe::verify_signature(secret, header, req.body().as_ref(), now) {
            Ok(Stripe)
        } else {
            Err(ApiError::Validation(
                "Stripe-Signature: missing or invalid".into(),
            ))
        }
    }
}

/// An HTTP function's steps: the caller and the validated input in, the answer out.
pub type HttpRun<C, I, O> = for<'a> fn(&'a App, C, I) -> BoxFuture<'a, Result<O, ApiError>>;

/// A scheduled or worker function's steps: the event in, a report out. An error fails
/// the invocation, so Lambda retries it and the alarms see it.
pub type EventRun<I, O> = for<'a> fn(&'a App, I) -> BoxFuture<'a, anyhow::Result<O>>;

type HttpHandler =
    Arc<dyn for<'a> Fn(&'a App, Methods, Request) -> BoxFuture<'a, Response> + Send + Sync>;
type EventHandler = Arc<
    dyn for<'a> Fn(&'a App, serde_json::Value) -> BoxFuture<'a, anyhow::Result<serde_json::Value>>
        + Send
        + Sync,
>;

/// The handler of a function, by kind.
#[derive(Clone)]
pub enum Handler {
    Http(HttpHandler),
    Event(EventHandler),
}

/// A function of the workspace.
#[derive(Clone)]
pub struct Function {
    /// Its name: the crate's, the route's and the Lambda's (`stories-ENV-<name>`).
    pub name: &'static str,
    pub kind: Kind,
    /// Variables it cannot start without, checked at cold start (its `required`).
    pub requires: Vec<&'static str>,
    /// Which methods it takes besides `OPTIONS` (HTTP functions).
    pub methods: Methods,
    pub handler: Handler,
}

impl Function {
    /// A function behind a function URL: `run` gets the caller and the validated input.
    pub fn http<C, I, O>(manifest: Manifest, run: HttpRun<C, I, O>) -> Self
    where
        C: Caller,
        I: DeserializeOwned + Validate<Context = ()> + Send + 'static,
        O: Serialize + Send + 'static,
    {
        let name = manifest.name;
        let handler: HttpHandler = Arc::new(move |app, methods, req| {
            Box::pin(async move {
                crate::http::serve(app, name, methods, &req, async |req| {
                    let caller = C::identify(app, req).await?;
                    let input: I = crate::http::input(req)?;
                    run(app, caller, input).await
                })
                .await
            })
        });
        Function {
            name,
            kind: Kind::Http,
            requires: manifest.required(),
            methods: Methods::Post,
            handler: Handler::Http(handler),
        }
    }

    /// Also takes `GET` with the input's fields as query parameters.
    pub fn also_get(self) -> Self {
        Function {
            methods: Methods::GetOrPost,
            ..self
        }
    }

    /// Takes only `GET`, with no input (the health check).
    pub fn get_only(self) -> Self {
        Function {
            methods: Methods::Get,
            ..self
        }
    }

    /// A function run by a schedule or invoked asynchronously (its kind from its
    /// manifest); the event is its input (an empty or unreadable one: the default).
    pub fn event<I, O>(manifest: Manifest, run: EventRun<I, O>) -> Self
    where
        I: DeserializeOwned + Default + Send + 'static,
        O: Serialize + Send + 'static,
    {
        let name = manifest.name;
        let handler: EventHandler = Arc::new(move |app, event| {
            Box::pin(crate::event::serve(app, name, event, async move |event| {
                let input: I = serde_json::from_value(event).unwrap_or_default();
                run(app, input).await
            }))
        });
        Function {
            name,
            kind: manifest.kind().unwrap_or(Kind::Scheduled),
            requires: manifest.required(),
            methods: Methods::Post,
            handler: Handler::Event(handler),
        }
    }

    /// Answers one HTTP request (None for a function of another kind).
    pub async fn answer(&self, app: &App, req: Request) -> Option<Response> {
        match &self.handler {
            Handler::Http(handle) => Some(handle(app, self.methods, req).await),
            Handler::Event(_) => None,
        }
    }

    /// Runs one event (None for an HTTP function).
    pub async fn invoke(
        &self,
        app: &App,
        event: serde_json::Value,
    ) -> Option<anyhow::Result<serde_json::Value>> {
        match &self.handler {
            Handler::Event(handle) => Some(handle(app, event).await),
            Handler::Http(_) => None,
        }
    }
}

/// The Lambda binary's whole life: logging, configuration (a missing required variable
/// stops the cold start, naming it), state built once, then the handler for every
/// invocation.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    for name in &function.requires {
        crate::config::require_var(name)?;
    }
    let app = App::from_env()?;
    match &function.handler {
        Handler::Http(handle) => {
            lambda_http::run(service_fn(async |req| {
                Ok::<_, Infallible>(handle(&app, function.methods, req).await)
            }))
            .await
        }
        Handler::Event(handle) => {
            lambda_http::lambda_runtime::run(service_fn(
                async |event: LambdaEvent<serde_json::Value>| {
                    handle(&app, event.payload)
                        .await
                        .map_err(lambda_http::Error::from)
                },
            ))
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"[package]
name = "x"

[package.metadata.stories]
kind = "scheduled"
schedule = "rate(1 minute)"
required = [
  "DATABASE_URL",
  "R2_BUCKET_NAME",
]
optional = [
  "SENTRY_DSN",
]

[package.metadata.lambda.deploy]
memory = 256
"#;

    #[test]
    fn a_manifest_tells_its_kind_and_what_it_needs() {
        let manifest = Manifest {
            name: "x",
            toml: TOML,
        };
        assert_eq!(manifest.kind(), Some(Kind::Scheduled));
        assert_eq!(manifest.required(), ["DATABASE_URL", "R2_BUCKET_NAME"]);
    }
}
