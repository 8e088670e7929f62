//! The local runner: serves every function crate at `/functions/v1/<name>` (Supabase's
//! local URL layout), calling the same handler the Lambda binary calls.

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::{Path, Request as AxumRequest, State};
use axum::response::IntoResponse;
use lambda_http::Body;
use shared::function::Handler;
use shared::{ApiError, App, Response};

mod functions;
pub mod openapi;
pub use functions::*;

/// Bodies larger than this are cut off here; the handler answers 413 for anything over 64 KiB.
const RUNNER_BODY_LIMIT: usize = 1024 * 1024;

/// The runner's routes, serving `app`.
pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route(
            "/functions/v1/openapi.json",
            axum::routing::get(openapi_json),
        )
        .route("/functions/v1/reference", axum::routing::get(reference))
        .route("/functions/v1/{name}", axum::routing::any(invoke))
        .with_state(app)
}

/// The OpenAPI document, as the functions' types make it now.
async fn openapi_json() -> axum::response::Response {
    let body = serde_json::to_string_pretty(&openapi::document()).unwrap_or_default();
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A page that renders the document for people (no network beyond the runner).
async fn reference() -> axum::response::Response {
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../../api/reference.html"),
    )
        .into_response()
}

/// Serves until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    axum::serve(listener, router(app)).await
}

async fn invoke(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    req: AxumRequest,
) -> axum::response::Response {
    let handler = functions()
        .into_iter()
        .find(|f| f.name == name)
        .and_then(|f| match f.handler {
            Handler::Http(handle) => Some(handle),
            Handler::Event(_) => None,
        });
    let Some(handle) = handler else {
        return convert(shared::http::error_response(&ApiError::NotFound(
            "No such function",
        )));
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, RUNNER_BODY_LIMIT).await {
        Ok(bytes) if bytes.is_empty() => Body::Empty,
        Ok(bytes) => Body::Binary(bytes.to_vec()),
        Err(_) => return convert(shared::http::error_response(&ApiError::PayloadTooLarge)),
    };
    convert(handle(&app, http::Request::from_parts(parts, body)).await)
}

fn convert(response: Response) -> axum::response::Response {
    response.map(|body| match body {
        Body::Empty => AxumBody::empty(),
        Body::Text(s) => AxumBody::from(s),
        Body::Binary(b) => AxumBody::from(b),
        _ => AxumBody::empty(),
    })
}

/// A Supabase-style access token for a local user, HS256 with the legacy secret.
pub fn dev_token(
    user: uuid::Uuid,
    email: &str,
    secret: &str,
    supabase_url: Option<&str>,
) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "sub": user, "email": email, "role": "authenticated", "aud": "authenticated",
        "iat": now, "exp": now + 24 * 3600,
    });
    if let Some(url) = supabase_url {
        claims["iss"] = format!("{}/auth/v1", url.trim_end_matches('/')).into();
    }
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// A local S3 protocol server (s3s-fs) that verifies SigV4 signatures, presigned URLs
/// included: a stand-in for R2 that rejects what R2 would.
pub mod s3 {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use s3s::auth::SimpleAuth;
    use s3s::dto::UploadPartInput;
    use s3s::service::S3ServiceBuilder;
    use s3s::{S3Request, S3Result, s3_error};

    /// Failures the server can be told to answer with, for tests of what the functions
    /// do when R2 fails half-way.
    #[derive(Debug, Default)]
    pub struct Faults {
        /// Counts down with each UploadPart; the one that takes it from 1 to 0 fails...
        upload_part: AtomicUsize,
        /// ...and so does every later part of its upload (retries included).
        broken_upload: Mutex<Option<String>>,
    }

    impl Faults {
        /// The `nth` UploadPart from now (1: the next) answers 500, and so does every
        /// later attempt at a part of the same multipart upload.
        pub fn fail_upload_part(&self, nth: usize) {
            self.upload_part.store(nth, Ordering::SeqCst);
        }
    }

    /// Authentication stays SigV4's (the default check); UploadPart may be failed.
    struct Access(Arc<Faults>);

    #[async_trait::async_trait]
    impl s3s::access::S3Access for Access {
        async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
            let upload = &req.input.upload_id;
            let mut broken = self
                .0
                .broken_upload
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let counted =
                self.0
                    .upload_part
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            if counted == Ok(1) {
                *broken = Some(upload.clone());
            }
            match broken.as_ref() {
                Some(b) if b == upload => Err(s3_error!(InternalError, "an injected failure")),
                _ => Ok(()),
            }
        }
    }

    /// Serves the folder `root` (one sub-folder per bucket, `bucket` created) until the
    /// listener fails.
    pub async fn serve(
        listener: tokio::net::TcpListener,
        root: &Path,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
    ) -> anyhow::Result<()> {
        let faults = Arc::default();
        serve_with_faults(listener, root, bucket, access_key, secret_key, faults).await
    }

    /// As [`serve`], failing what `faults` says when it says.
    pub async fn serve_with_faults(
        listener: tokio::net::TcpListener,
        root: &Path,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
        faults: Arc<Faults>,
    ) -> anyhow::Result<()> {
        std::fs::create_dir_all(root.join(bucket))?;
        let fs =
            s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("local S3 folder: {e:?}"))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        builder.set_access(Access(faults));
        let service = builder.build();
        loop {
            let (socket, _) = listener.accept().await?;
            let service = service.clone();
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    }
}
