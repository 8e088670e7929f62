//! The one crate every Stories From the Sun function uses: the frame a function runs
//! in ([`function`], [`http`], [`event`]), what it is built from ([`App`]), the typed
//! store ([`store`]) and the steps several functions share.

pub mod analytics;
pub mod api;
pub mod app;
pub mod auth;
pub mod billing;
pub mod config;
pub mod db;
pub mod email;
pub mod error;
pub mod event;
pub mod function;
pub mod http;
pub mod invite;
pub mod members;
pub mod outbox;
pub mod preservation;
pub mod r2;
pub mod recordings;
pub mod store;
pub mod stripe;
pub mod telemetry;
pub mod tls;

pub use app::App;
pub use error::ApiError;
pub use function::{Function, Kind};
pub use http::{Methods, Request, Response};
