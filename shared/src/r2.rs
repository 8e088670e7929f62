//! Cloudflare R2 (and the backup store, another S3-compatible bucket) through
//! aws-sdk-s3: presigned PUT and GET URLs, `HeadObject` with the stored checksum; for the
//! maintenance job `DeleteObjects` and `ListObjectsV2`; for the archive worker streamed
//! `GetObject` and multipart uploads; for preservation streamed `PutObject` with a
//! SHA-256, Object Lock and the deletion of every version.
//!
//! The client is built once per process, on first use, with an explicit endpoint, region `auto`
//! and static credentials (no provider chain, no IMDS probe at init). Checksums are
//! "when required": the SDK's default CRC32 breaks R2 and bakes `x-amz-checksum-*`
//! into presigned URLs. Every call has connect and total timeouts well within the
//! functions' own: R2 hanging is a 503, never a Lambda timeout.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumMode, Delete, ObjectIdentifier, ObjectLockMode, ObjectLockRetention,
    ObjectLockRetentionMode,
};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use base64::Engine;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::R2Config;
use crate::error::ApiError;

/// How long a presigned URL lives.
pub const URL_EXPIRY: Duration = Duration::from_secs(900);

/// The audio content type a recording is uploaded with.
pub const AUDIO_CONTENT_TYPE: &str = "audio/mp4";
/// The waveform's content type.
pub const WAVEFORM_CONTENT_TYPE: &str = "application/json";

/// The header an upload's SHA-256 travels in (standard base64): signed into the PUT URL,
/// so the bucket refuses other bytes (`400 BadDigest`, nothing stored).
pub const CHECKSUM_HEADER: &str = "x-amz-checksum-sha256";

/// Signed into every upload URL (`If-None-Match: *`): R2 refuses to overwrite an object
/// that exists, so a finished upload can't be replaced while its URL is still valid. A
/// `412` on a retried PUT means the first one landed.
pub const NO_OVERWRITE: &str = "*";

/// Connecting to R2 may take this long...
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// ...one attempt of a call this long...
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// ...and a call, retries included, this long (the shortest function timeout is 15 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a recording's objects live: `families/{family}/recordings/{id}.audio.m4a` and
/// `….waveform.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingKey {
    pub family_id: Uuid,
    pub recording_id: Uuid,
}

impl RecordingKey {
    /// The audio object's key.
    pub fn audio(&self) -> String {
        format!(
            "families/{}/recordings/{}.audio.m4a",
            self.family_id, self.recording_id
        )
    }

    /// The waveform object's key.
    pub fn waveform(&self) -> String {
        format!(
            "families/{}/recordings/{}.waveform.json",
            self.family_id, self.recording_id
        )
    }
}

pub use crate::store::copies::Object;

impl RecordingKey {
    /// The key of one of its objects.
    pub fn of(&self, object: Object) -> String {
        match object {
            Object::Audio => self.audio(),
            Object::Waveform => self.waveform(),
        }
    }

    /// The prefix of every recording's objects, whatever the family.
    pub const PREFIX: &str = "families/";

    /// Whether `key` is under some family's `recordings/` (the only place the
    /// maintenance job may clean: archives and anything else live elsewhere).
    pub fn is_recording_object(key: &str) -> bool {
        key.strip_prefix(Self::PREFIX)
            .and_then(|rest| rest.split_once('/'))
            .is_some_and(|(_, rest)| rest.starts_with("recordings/"))
    }

    /// The recording and object a key names; None for any other key.
    pub fn parse(key: &str) -> Option<(RecordingKey, Object)> {
        let rest = key.strip_prefix(Self::PREFIX)?;
        let (family, rest) = rest.split_once("/recordings/")?;
        let (id, object) = if let Some(id) = rest.strip_suffix(".audio.m4a") {
            (id, Object::Audio)
        } else {
            (rest.strip_suffix(".waveform.json")?, Object::Waveform)
        };
        let key = RecordingKey {
            family_id: family.parse().ok()?,
            recording_id: id.parse().ok()?,
        };
        Some((key, object))
    }
}

/// A presigned request: the URL, the headers the client must send, and its expiry.
#[derive(Debug, Clone)]
pub struct Presigned {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// What `HeadObject` says of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub size: i64,
    pub content_type: Option<String>,
    /// When it arrived (whole seconds, as S3 tells it).
    pub last_modified: Option<DateTime<Utc>>,
    /// The SHA-256 the bucket verified at the PUT and stored (base64), when there was one.
    /// An echo of what was stored, not a check of the bytes it holds now.
    pub sha256: Option<String>,
}

/// What can go wrong with the bucket.
#[derive(Debug, thiserror::Error)]
pub enum R2Error {
    /// The bucket unreachable, throttling or failing: worth a retry, not a bug of ours.
    #[error("the bucket is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A request that could not even be made: a bug.
    #[error("a bucket request could not be made")]
    Internal(#[source] anyhow::Error),
    /// The bytes sent did not match the SHA-256 they were sent with (`BadDigest`):
    /// nothing was stored.
    #[error("the bytes do not match their SHA-256")]
    BadDigest,
}

impl R2Error {
    fn internal(e: impl Into<anyhow::Error>) -> Self {
        R2Error::Internal(e.into())
    }
}

impl From<R2Error> for ApiError {
    fn from(e: R2Error) -> Self {
        match e {
            R2Error::Unavailable(e) => ApiError::Unavailable(e),
            R2Error::Internal(e) => ApiError::Internal(e),
            R2Error::BadDigest => ApiError::Internal(anyhow::anyhow!("BadDigest")),
        }
    }
}

/// A bucket and its client: R2, or the backup store.
pub struct R2 {
    config: R2Config,
    /// Built on first use, not at cold start: a function that reaches R2 only now and
    /// then (or not on the request at hand) does not pay for the SDK's setup.
    client: std::sync::OnceLock<Client>,
    bucket: String,
    /// Which bucket, in errors and logs: `R2` or `backup`.
    label: &'static str,
}

impl R2 {
    /// R2, its client to be built on first use (no work, no network call).
    pub fn new(config: &R2Config) -> Self {
        Self::labelled(config, "R2")
    }

    /// The backup store (contract §10), as [`R2::new`].
    pub fn backup(config: &R2Config) -> Self {
        Self::labelled(config, "backup")
    }

    fn labelled(config: &R2Config, label: &'static str) -> Self {
        R2 {
            config: config.clone(),
            client: std::sync::OnceLock::new(),
            bucket: config.bucket.clone(),
            label,
        }
    }

    /// A failed call of `operation`: the bucket unavailable, or refusing.
    fn failed(&self, operation: &str, e: impl std::error::Error) -> R2Error {
        let e = aws_sdk_s3::error::DisplayErrorContext(e);
        R2Error::Unavailable(anyhow::anyhow!("{} {operation} failed: {e}", self.label))
    }

    fn client(&self) -> Result<&Client, R2Error> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = Self::build(&self.config).map_err(R2Error::internal)?;
        Ok(self.client.get_or_init(|| client))
    }

    fn build(config: &R2Config) -> anyhow::Result<Client> {
        // The process's roots (crate::tls), not the system's CA bundle: no directory
        // of certificates read on the first call.
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(crate::tls::pem_bundle()?);
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(TlsContext::builder().with_trust_store(trust).build()?)
            .build_https();
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            "r2-static",
        );
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .endpoint_url(&config.endpoint)
            .credentials_provider(credentials)
            // Path-style works on R2 and on any local S3 without wildcard DNS.
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(CALL_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .http_client(http)
            .build();
        Ok(Client::from_conf(conf))
    }

    /// A PUT URL binding the content type, the exact length, `If-None-Match: *` and, when
    /// given, the SHA-256 (`x-amz-checksum-sha256`) into its signature: the client must
    /// send them all, can't overwrite an object, and can't store other bytes.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: i64,
        sha256: Option<&str>,
        expires_in: Duration,
    ) -> Result<Presigned, R2Error> {
        let expires_at = Utc::now() + expires_in;
        let checksum = sha256
            .map(http::HeaderValue::from_str)
            .transpose()
            .map_err(R2Error::internal)?;
        // The presigner drops `checksum_sha256` (awslabs/aws-sdk-rust#1103): the header is
        // put on the request before it is signed, so it is one of its signed headers.
        let request = self
            .client()?
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(content_length)
            .if_none_match(NO_OVERWRITE)
            .customize()
            .mutate_request(move |req| {
                if let Some(checksum) = &checksum {
                    req.headers_mut().insert(CHECKSUM_HEADER, checksum.clone());
                }
            })
            .presigned(PresigningConfig::expires_in(expires_in).map_err(R2Error::internal)?)
            .await
            .map_err(R2Error::internal)?;
        Ok(Presigned {
            url: request.uri().to_owned(),
            expires_at,
        })
    }

    /// A GET URL.
    pub async fn presign_get(&self, key: &str, expires_in: Duration) -> Result<Presigned, R2Error> {
        self.presign_get_as(key, None, expires_in).await
    }

    /// A GET URL; with a file name, one that makes the browser save it as that.
    async fn presign_get_as(
        &self,
        key: &str,
        filename: Option<&str>,
        expires_in: Duration,
    ) -> Result<Presigned, R2Error> {
        let expires_at = Utc::now() + expires_in;
        let request = self
            .client()?
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_response_content_disposition(filename.map(content_disposition))
            .presigned(PresigningConfig::expires_in(expires_in).map_err(R2Error::internal)?)
            .await
            .map_err(R2Error::internal)?;
        Ok(Presigned {
            url: request.uri().to_owned(),
            expires_at,
        })
    }

    /// The object's real size, content type and stored SHA-256; None when it does not
    /// exist.
    pub async fn head(&self, key: &str) -> Result<Option<Head>, R2Error> {
        match self
            .client()?
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Head {
                size: out.content_length().unwrap_or_default(),
                content_type: out.content_type().map(str::to_owned),
                last_modified: out
                    .last_modified()
                    .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                sha256: out.checksum_sha256().map(str::to_owned),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            // Unreachable, throttling or failing: worth a retry, not a bug of ours.
            Err(e) => Err(self.failed("HeadObject", e)),
        }
    }

    /// Deletes objects (batches of 1,000, the most one DeleteObjects takes). A key that
    /// is already gone counts as deleted; any other failure is an error.
    pub async fn delete(&self, keys: &[String]) -> Result<(), R2Error> {
        for batch in keys.chunks(1000) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(R2Error::internal)?;
            self.delete_objects(objects).await?;
        }
        Ok(())
    }

    /// Deletes every object under `prefix`, a page of 1,000 at a time, until none is left
    /// or `deadline` passes; how many it deleted, and whether it got through them all.
    pub async fn delete_under(
        &self,
        prefix: &str,
        deadline: Option<std::time::Instant>,
    ) -> Result<(u64, bool), R2Error> {
        let (mut deleted, mut token) = (0, None);
        while deadline.is_none_or(|d| std::time::Instant::now() < d) {
            let (objects, next) = self.list(prefix, token).await?;
            let keys: Vec<String> = objects.into_iter().map(|(key, _)| key).collect();
            self.delete(&keys).await?;
            deleted += keys.len() as u64;
            token = next;
            if token.is_none() {
                return Ok((deleted, true));
            }
        }
        Ok((deleted, false))
    }

    /// One page (at most 1,000) of the objects under `prefix`, after `token`: each key
    /// with its last change, and the token of the next page (None after the last).
    pub async fn list(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> Result<(Vec<(String, DateTime<Utc>)>, Option<String>), R2Error> {
        let out = self
            .client()?
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| self.failed("ListObjectsV2", e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                let modified = o.last_modified()?;
                let at = DateTime::from_timestamp(modified.secs(), modified.subsec_nanos())?;
                Some((o.key()?.to_owned(), at))
            })
            .collect();
        let next = out
            .is_truncated()
            .unwrap_or(false)
            .then(|| out.next_continuation_token().map(str::to_owned))
            .flatten();
        Ok((objects, next))
    }

    /// A GET URL that makes the browser save the object as `filename`.
    pub async fn presign_download(
        &self,
        key: &str,
        filename: &str,
        expires_in: Duration,
    ) -> Result<Presigned, R2Error> {
        self.presign_get_as(key, Some(filename), expires_in).await
    }

    /// Starts reading an object; None when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Download>, R2Error> {
        match self
            .client()?
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .customize()
            .config_override(bulk())
            .send()
            .await
        {
            Ok(out) => Ok(Some(Download {
                size: out.content_length().unwrap_or_default(),
                body: out.body,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(self.failed("GetObject", e)),
        }
    }

    /// Reads an object through and hashes it: its SHA-256 (base64) and size, None when it
    /// does not exist. Streams (memory stays flat, whatever the size): the only check of
    /// what a bucket holds, a checksum it echoes being what it stored, not what it has.
    pub async fn hash(&self, key: &str) -> Result<Option<Hashed>, R2Error> {
        let Some(mut download) = self.get(key).await? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut size = 0i64;
        while let Some(chunk) = download
            .body
            .try_next()
            .await
            .map_err(|e| self.failed("GetObject", e))?
        {
            size += chunk.len() as i64;
            hasher.update(&chunk);
        }
        Ok(Some(Hashed {
            sha256: base64::engine::general_purpose::STANDARD.encode(hasher.finalize()),
            size,
        }))
    }

    /// Starts a multipart upload of `key`.
    pub async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<Multipart<'_>, R2Error> {
        let out = self
            .client()?
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| self.failed("CreateMultipartUpload", e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| R2Error::internal(anyhow::anyhow!("R2 gave no upload id")))?;
        Ok(Multipart {
            r2: self,
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            parts: Vec::new(),
        })
    }

    /// Throws away a multipart upload's parts, by its key and id (one that is gone
    /// already counts as done).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), R2Error> {
        match self
            .client()?
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_upload()) => Ok(()),
            Err(e) => Err(self.failed("AbortMultipartUpload", e)),
        }
    }

    /// Stores `body` (exactly `length` bytes) at `key` in one streamed PUT carrying its
    /// SHA-256, which the bucket verifies over the whole object before it keeps any of it
    /// ([`R2Error::BadDigest`] when the bytes differ); with `lock_until`, under Object
    /// Lock in compliance mode until then. Overwrites (a repair), never multipart: a
    /// multipart checksum is a checksum of checksums.
    pub async fn put_verified(
        &self,
        key: &str,
        content_type: &str,
        length: i64,
        sha256: &str,
        body: ByteStream,
        lock_until: Option<DateTime<Utc>>,
    ) -> Result<(), R2Error> {
        let lock =
            lock_until.map(|until| aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()));
        let result = self
            .client()?
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(length)
            .checksum_sha256(sha256)
            .set_object_lock_mode(lock.map(|_| ObjectLockMode::Compliance))
            .set_object_lock_retain_until_date(lock)
            .body(body)
            .customize()
            // Which algorithm the checksum is (S3 wants it named for a locked object);
            // said here, not through the SDK's checksum setting, which would compute
            // its own and rewrite the body as aws-chunked.
            .mutate_request(|req| {
                req.headers_mut()
                    .insert("x-amz-sdk-checksum-algorithm", "SHA256");
            })
            .config_override(bulk())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().and_then(|s| s.meta().code()) == Some("BadDigest") => {
                Err(R2Error::BadDigest)
            }
            Err(e) => Err(self.failed("PutObject", e)),
        }
    }

    /// Keeps `key` under Object Lock (compliance mode) until `until`.
    pub async fn lock_until(&self, key: &str, until: DateTime<Utc>) -> Result<(), R2Error> {
        let retention = ObjectLockRetention::builder()
            .mode(ObjectLockRetentionMode::Compliance)
            .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                until.timestamp(),
            ))
            .build();
        self.client()?
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .retention(retention)
            .send()
            .await
            .map_err(|e| self.failed("PutObjectRetention", e))?;
        Ok(())
    }

    /// One DeleteObjects call (at most 1,000 objects, or versions of them): an object
    /// the store would not delete (still under Object Lock, or any other refusal) is an
    /// error naming the first.
    async fn delete_objects(&self, objects: Vec<ObjectIdentifier>) -> Result<(), R2Error> {
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(R2Error::internal)?;
        let out = self
            .client()?
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| self.failed("DeleteObjects", e))?;
        match out.errors().first() {
            None => Ok(()),
            Some(error) => Err(R2Error::Unavailable(anyhow::anyhow!(
                "{} could not delete {} objects, {:?} first: {} {}",
                self.label,
                out.errors().len(),
                error.key(),
                error.code().unwrap_or_default(),
                error.message().unwrap_or_default()
            ))),
        }
    }

    /// Deletes every version (and delete marker) of the objects under `prefix` (a key is
    /// its own prefix), a page at a time: in a versioned bucket deleting a key only hides
    /// it. A version still under Object Lock is an error (a later run tries again).
    pub async fn delete_versions(&self, prefix: &str) -> Result<(), R2Error> {
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let out = self
                .client()?
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .map_err(|e| self.failed("ListObjectVersions", e))?;
            let versions = out
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    out.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            let objects = versions
                .filter_map(|(key, version)| {
                    ObjectIdentifier::builder()
                        .key(key?)
                        .set_version_id(version.map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            if !objects.is_empty() {
                self.delete_objects(objects).await?;
            }
            if !out.is_truncated().unwrap_or(false) {
                return Ok(());
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
        }
    }
}

/// Where a family's archives live: `archives/{family}/{archive}/part-N-of-M.zip`, never
/// under `families/` (the maintenance job's sweep cleans that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveKey {
    pub family_id: Uuid,
    pub archive_id: Uuid,
}

impl ArchiveKey {
    /// The prefix of every object of the archive.
    pub fn prefix(&self) -> String {
        format!("archives/{}/{}/", self.family_id, self.archive_id)
    }

    /// Part `part` (from 1) of `parts`.
    pub fn part(&self, part: i32, parts: i32) -> String {
        format!("{}part-{part}-of-{parts}.zip", self.prefix())
    }
}

/// The content type of an archive's parts.
pub const ZIP_CONTENT_TYPE: &str = "application/zip";

/// Calls that move bulk bytes (a part of a multipart upload, a download) get longer
/// than the request path's few seconds: they run in the archive worker, whose timeout
/// is minutes.
fn bulk() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(Duration::from_secs(60))
            .operation_timeout(Duration::from_secs(150))
            .build(),
    )
}

/// What an object's bytes hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// SHA-256, standard base64 with padding (as `x-amz-checksum-sha256` carries it).
    pub sha256: String,
    pub size: i64,
}

/// An object being read: its size and its bytes as they arrive.
pub struct Download {
    pub size: i64,
    pub body: aws_sdk_s3::primitives::ByteStream,
}

/// A multipart upload in progress: parts are sent in order; `complete` makes the object,
/// `abort` leaves nothing behind.
pub struct Multipart<'a> {
    r2: &'a R2,
    key: String,
    upload_id: String,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
}

impl Multipart<'_> {
    /// Sends the next part. R2 wants every part but the last of one size, at least 5 MiB.
    pub async fn put(&mut self, bytes: Vec<u8>) -> Result<(), R2Error> {
        let number = i32::try_from(self.parts.len() + 1).map_err(R2Error::internal)?;
        let out = self
            .r2
            .client()?
            .upload_part()
            .bucket(&self.r2.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .body(bytes.into())
            .customize()
            .config_override(bulk())
            .send()
            .await
            .map_err(|e| self.r2.failed("UploadPart", e))?;
        self.parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Makes the object of the parts sent.
    pub async fn complete(self) -> Result<(), R2Error> {
        let upload = aws_sdk_s3::types::CompletedMultipartUpload::builder()
            .set_parts(Some(self.parts))
            .build();
        self.r2
            .client()?
            .complete_multipart_upload()
            .bucket(&self.r2.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(upload)
            .customize()
            .config_override(bulk())
            .send()
            .await
            .map_err(|e| self.r2.failed("CompleteMultipartUpload", e))?;
        Ok(())
    }

    /// Its id, so that another run can abort it if this one dies ([`R2::abort_multipart`]).
    pub fn upload_id(&self) -> &str {
        &self.upload_id
    }

    /// Throws away the parts sent (R2's lifecycle rule aborts what this misses after a
    /// day: deploy/r2/).
    pub async fn abort(self) -> Result<(), R2Error> {
        self.r2.abort_multipart(&self.key, &self.upload_id).await
    }
}

/// `attachment` with the file name twice: plain ASCII for old clients, RFC 5987 UTF-8
/// for the rest.
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = crate::http::percent_encode(filename);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_to_their_recording_and_nothing_else_does() {
        let key = RecordingKey {
            family_id: Uuid::new_v4(),
            recording_id: Uuid::new_v4(),
        };
        assert_eq!(
            RecordingKey::parse(&key.audio()),
            Some((key, Object::Audio))
        );
        assert_eq!(
            RecordingKey::parse(&key.waveform()),
            Some((key, Object::Waveform))
        );
        assert!(RecordingKey::is_recording_object(&key.audio()));
        for other in [
            format!("archives/{}/a.zip", key.family_id),
            format!("families/{}/covers/x.jpg", key.family_id),
            format!("families/{}/recordings/not-a-uuid.audio.m4a", key.family_id),
            format!(
                "families/{}/recordings/{}.mp3",
                key.family_id, key.recording_id
            ),
        ] {
            assert_eq!(RecordingKey::parse(&other), None, "{other}");
        }
        assert!(RecordingKey::is_recording_object(&format!(
            "families/{}/recordings/stray.bin",
            key.family_id
        )));
        assert!(!RecordingKey::is_recording_object(&format!(
            "archives/{}/recordings/x",
            key.family_id
        )));
    }
}
