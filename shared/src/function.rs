//! What a function is, to the Lambda binary that runs it and to the local runner that
//! serves it: a name, a kind and a handler. Each function crate exports one
//! `function()`; its `main.rs` hands it to [`run`] and the runner lists them all.

use std::convert::Infallible;

use futures::future::BoxFuture;
use lambda_http::{LambdaEvent, service_fn};

use crate::App;
use crate::http::{Request, Response};

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

/// An HTTP function's handler: one request in, one response out, never an error.
pub type HttpHandler = for<'a> fn(&'a App, Request) -> BoxFuture<'a, Response>;

/// A scheduled or worker function's handler: a JSON event in, a JSON report out. An
/// error fails the invocation, so Lambda retries it and the alarms see it.
pub type EventHandler =
    for<'a> fn(&'a App, serde_json::Value) -> BoxFuture<'a, anyhow::Result<serde_json::Value>>;

/// The handler of a function, by kind.
#[derive(Clone, Copy)]
pub enum Handler {
    Http(HttpHandler),
    Event(EventHandler),
}

/// A function of the workspace.
#[derive(Clone, Copy)]
pub struct Function {
    /// Its name: the crate's, the route's and the Lambda's (`stories-ENV-<name>`).
    pub name: &'static str,
    pub kind: Kind,
    pub handler: Handler,
    /// Variables it cannot start without (beyond `DATABASE_URL` and token
    /// verification), checked at cold start.
    pub requires: &'static [&'static str],
}

impl Function {
    /// A function behind a function URL.
    pub fn http(name: &'static str, handler: HttpHandler) -> Self {
        Function {
            name,
            kind: Kind::Http,
            handler: Handler::Http(handler),
            requires: &[],
        }
    }

    /// A function run by a schedule or invoked asynchronously.
    pub fn event(name: &'static str, kind: Kind, handler: EventHandler) -> Self {
        Function {
            name,
            kind,
            handler: Handler::Event(handler),
            requires: &[],
        }
    }

    /// The variables the function cannot start without.
    pub fn requires(self, requires: &'static [&'static str]) -> Self {
        Function { requires, ..self }
    }
}

/// The Lambda binary's whole life: logging, configuration (a missing required variable
/// stops the cold start, naming it), state built once, then the handler for every
/// invocation.
pub async fn run(function: Function) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    for name in function.requires {
        crate::config::require_var(name)?;
    }
    let app = App::from_env()?;
    match function.handler {
        Handler::Http(handle) => {
            lambda_http::run(service_fn(async |req| {
                Ok::<_, Infallible>(handle(&app, req).await)
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
