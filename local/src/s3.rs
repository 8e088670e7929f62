//! A local S3 protocol server (s3s-fs) that verifies SigV4 signatures, presigned URLs
//! included, refuses a body whose bytes differ from its `x-amz-checksum-sha256` before
//! storing anything, and answers browsers with the bucket's CORS rules: a stand-in for
//! R2 that rejects what R2 would.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::dto::{PutObjectInput, StreamingBlob, UploadPartInput};
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Result, s3_error};
use serde::Deserialize;

/// How the server behaves beyond S3 itself.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Failures to answer with, when told.
    pub faults: Arc<Faults>,
    /// The bucket's CORS rules (none: every preflight refused, as a bucket without any).
    pub cors: Cors,
}

/// Serves the folder `root` (one sub-folder per bucket, `bucket` created) until the
/// listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    root: &Path,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
    options: Options,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(root.join(bucket))?;
    let fs =
        s3s_fs::FileSystem::new(root).map_err(|e| anyhow::anyhow!("local S3 folder: {e:?}"))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
    builder.set_access(Access(options.faults.clone()));
    let s3 = builder.build();
    let cors = Arc::new(options.cors);
    loop {
        let (socket, _) = listener.accept().await?;
        let (s3, cors, faults) = (s3.clone(), cors.clone(), options.faults.clone());
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let (s3, cors, faults) = (s3.clone(), cors.clone(), faults.clone());
            async move {
                if faults.unavailable.load(Ordering::SeqCst) {
                    let mut down = http::Response::new(s3s::Body::empty());
                    *down.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    return Ok(down);
                }
                if req.method() == Method::OPTIONS {
                    return Ok(cors.preflight(req.headers()));
                }
                let (origin, method) = (
                    req.headers().get(header::ORIGIN).cloned(),
                    req.method().clone(),
                );
                let mut response = s3.call(req.map(s3s::Body::from)).await?;
                if let Some(origin) = origin {
                    cors.decorate(&origin, &method, response.headers_mut());
                }
                Ok::<_, s3s::HttpError>(response)
            }
        });
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// The bucket's CORS rules: `deploy/r2/cors.json`, the file `scripts/r2-setup.sh`
/// applies to R2, with `$APP_ORIGINS` filled in. Enforced as R2 does for requests that
/// carry an `Origin`: a preflight no rule allows is a 403, and an allowed request's
/// answer names its origin and the exposed headers.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Rule {
    allowed_origins: Vec<String>,
    allowed_methods: Vec<String>,
    #[serde(default)]
    allowed_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    max_age_seconds: Option<u32>,
}

impl Cors {
    /// The rules of `deploy/r2/cors.json` for an environment whose app is served from
    /// `origins` (`Config::allowed_redirect_origins`, as the setup script reads them).
    pub fn for_origins(origins: &[String]) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Document {
            #[serde(rename = "CORSRules")]
            rules: Vec<Rule>,
        }
        let document: Document = serde_json::from_str(include_str!("../../deploy/r2/cors.json"))?;
        let rules = document
            .rules
            .into_iter()
            .map(|mut rule| {
                rule.allowed_origins = rule
                    .allowed_origins
                    .iter()
                    .flat_map(|o| match o.as_str() {
                        "$APP_ORIGINS" => origins.to_vec(),
                        _ => vec![o.clone()],
                    })
                    .collect();
                rule
            })
            .collect();
        Ok(Cors { rules })
    }

    /// The first rule that lets `origin` make a `method` request.
    fn rule(&self, origin: &str, method: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.allowed_origins.iter().any(|o| o == "*" || o == origin)
                && r.allowed_methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(method))
        })
    }

    /// The answer to a preflight: 200 with what is allowed, or 403 when no rule allows
    /// the origin, the method and every header asked for.
    fn preflight(&self, headers: &HeaderMap) -> http::Response<s3s::Body> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let origin = text(header::ORIGIN).unwrap_or_default();
        let method = text(header::ACCESS_CONTROL_REQUEST_METHOD).unwrap_or_default();
        let asked: Vec<String> = text(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let allowed = self.rule(origin, method).filter(|rule| {
            asked.iter().all(|h| {
                rule.allowed_headers
                    .iter()
                    .any(|a| a == "*" || a.eq_ignore_ascii_case(h))
            })
        });
        let Some(rule) = allowed else {
            let mut refused = http::Response::new(s3s::Body::from(
                "CORS preflight refused: no rule allows this origin, method and headers".to_owned(),
            ));
            *refused.status_mut() = StatusCode::FORBIDDEN;
            return refused;
        };
        let mut response = http::Response::new(s3s::Body::empty());
        let h = response.headers_mut();
        insert(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        insert(
            h,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            &rule.allowed_methods.join(", "),
        );
        if !asked.is_empty() {
            insert(h, header::ACCESS_CONTROL_ALLOW_HEADERS, &asked.join(", "));
        }
        if let Some(age) = rule.max_age_seconds {
            insert(h, header::ACCESS_CONTROL_MAX_AGE, &age.to_string());
        }
        insert(h, header::VARY, "Origin");
        response
    }

    /// Adds the CORS headers to the answer of an allowed request from `origin`.
    fn decorate(&self, origin: &HeaderValue, method: &Method, headers: &mut HeaderMap) {
        let Some(rule) = origin
            .to_str()
            .ok()
            .and_then(|o| self.rule(o, method.as_str()))
        else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if !rule.expose_headers.is_empty() {
            insert(
                headers,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                &rule.expose_headers.join(", "),
            );
        }
        insert(headers, header::VARY, "Origin");
    }
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Failures the server can be told to answer with, for tests of what the functions do
/// when R2 fails half-way.
#[derive(Debug, Default)]
pub struct Faults {
    /// Counts down with each UploadPart; the one that takes it from 1 to 0 fails...
    upload_part: AtomicUsize,
    /// ...and so does every later part of its upload (retries included).
    broken_upload: Mutex<Option<String>>,
    /// Every request answered 503 while set: R2 unreachable.
    unavailable: AtomicBool,
}

impl Faults {
    /// The `nth` UploadPart from now (1: the next) answers 500, and so does every later
    /// attempt at a part of the same multipart upload.
    pub fn fail_upload_part(&self, nth: usize) {
        self.upload_part.store(nth, Ordering::SeqCst);
    }

    /// Whether every request is answered 503 from now on (R2 down), or served again.
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }
}

/// Authentication stays SigV4's (the default check); a PUT's checksum is verified before
/// anything is stored; UploadPart may be failed.
struct Access(Arc<Faults>);

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    /// R2 compares a PUT's `x-amz-checksum-sha256` with its bytes before it keeps any of
    /// them; s3s-fs 0.14.1 writes the file first and compares afterwards (answering
    /// BadDigest, but keeping the body). So the body is read here (a local server's
    /// objects are small) and compared first: a mismatch stores nothing.
    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        let Some(declared) = req.input.checksum_sha256.clone() else {
            return Ok(());
        };
        let Some(body) = req.input.body.take() else {
            return Ok(());
        };
        let mut bytes = Vec::new();
        let mut body = body;
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "{e}"))?;
            bytes.extend_from_slice(&chunk);
        }
        let actual = {
            use base64::Engine;
            use sha2::Digest;
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&bytes))
        };
        if actual != declared {
            return Err(s3_error!(BadDigest, "checksum_sha256 mismatch"));
        }
        req.input.body = Some(StreamingBlob::from(s3s::Body::from(bytes)));
        Ok(())
    }

    async fn upload_part(&self, req: &mut S3Request<UploadPartInput>) -> S3Result<()> {
        let upload = &req.input.upload_id;
        let mut broken = self
            .0
            .broken_upload
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let counted = self
            .0
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

/// Serves the folder `dir` as the bucket `config` names, at its endpoint (an
/// `http://127.0.0.1:PORT` address).
pub async fn serve_bucket(
    what: &'static str,
    config: &shared::config::R2Config,
    dir: String,
    cors: Cors,
) -> anyhow::Result<()> {
    let addr = config
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr} for the {what}: {e}"))?;
    let (bucket, key) = (config.bucket.clone(), config.access_key_id.clone());
    let secret = secrecy::ExposeSecret::expose_secret(&config.secret_access_key).to_owned();
    tracing::info!("{what} at http://{addr}, bucket {bucket}, files in {dir}");
    let options = Options {
        cors,
        ..Default::default()
    };
    tokio::spawn(async move {
        let served = serve(listener, dir.as_ref(), &bucket, &key, &secret, options);
        if let Err(e) = served.await {
            tracing::error!(error = %e, "{what} stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preflight(cors: &Cors, origin: &str, method: &str, headers: &str) -> StatusCode {
        let mut h = HeaderMap::new();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_str(origin).expect("origin"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).expect("m"),
        );
        h.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(headers).expect("h"),
        );
        cors.preflight(&h).status()
    }

    #[test]
    fn the_rules_file_allows_the_apps_uploads_and_nothing_else() {
        let cors = Cors::for_origins(&["https://app.example.com".to_owned()]).expect("rules");
        let app = "https://app.example.com";
        assert_eq!(
            preflight(&cors, app, "PUT", "content-type,if-none-match"),
            StatusCode::OK
        );
        assert_eq!(preflight(&cors, app, "GET", "range"), StatusCode::OK);
        assert_eq!(
            preflight(&cors, "https://evil.example.com", "PUT", "content-type"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(preflight(&cors, app, "DELETE", ""), StatusCode::FORBIDDEN);
        assert_eq!(
            preflight(&cors, app, "PUT", "content-type,x-amz-acl"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            preflight(&Cors::default(), app, "GET", ""),
            StatusCode::FORBIDDEN
        );
    }
}
