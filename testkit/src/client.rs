//! A typed client of the functions, in the manner of zero2prod's `TestApp`: one method
//! per function on [`Server`], each returning the parsed envelope.

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::server::Server;

/// One answer: its status, its parsed envelope and its headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `{"data": …}` or `{"error": {"code", "message"}}` (`null` when not JSON).
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// Sends a request and parses its answer.
    pub async fn of(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        }
    }

    /// The `data` of a success; fails the test, showing the answer, otherwise.
    pub fn data(&self) -> &Value {
        assert_eq!(self.status, 200, "expected a success: {}", self.body);
        &self.body["data"]
    }

    /// The contract's error code of a failure; None for a success.
    pub fn code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

impl Server {
    /// POSTs a JSON body to a function, with a bearer token when given.
    pub async fn call(&self, function: &str, token: Option<&str>, body: &Value) -> Reply {
        let mut req = self.http.post(self.url(function)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::of(req).await
    }

    pub async fn create_family(&self, token: &str, body: &Value) -> Reply {
        self.call("create-family", Some(token), body).await
    }

    pub async fn create_invite(&self, token: &str, body: &Value) -> Reply {
        self.call("create-invite", Some(token), body).await
    }

    pub async fn redeem_invite(&self, token: &str, body: &Value) -> Reply {
        self.call("redeem-invite", Some(token), body).await
    }

    pub async fn get_signed_upload_url(&self, token: &str, body: &Value) -> Reply {
        self.call("get-signed-upload-url", Some(token), body).await
    }

    pub async fn finalize_recording(&self, token: &str, body: &Value) -> Reply {
        self.call("finalize-recording", Some(token), body).await
    }

    pub async fn get_signed_playback_url(&self, token: &str, body: &Value) -> Reply {
        self.call("get-signed-playback-url", Some(token), body)
            .await
    }

    pub async fn create_checkout_session(&self, token: &str, body: &Value) -> Reply {
        self.call("create-checkout-session", Some(token), body)
            .await
    }

    pub async fn create_portal_session(&self, token: &str, body: &Value) -> Reply {
        self.call("create-portal-session", Some(token), body).await
    }

    /// Delivers raw bytes to the webhook, with a `Stripe-Signature` when given.
    pub async fn stripe_webhook(&self, body: &[u8], signature: Option<&str>) -> Reply {
        let mut req = self
            .http
            .post(self.url("stripe-webhook"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("stripe-signature", s);
        }
        Reply::of(req).await
    }
}

/// The SHA-256 of `bytes` as an upload declares it: standard base64 with padding.
pub fn sha256(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

/// PUTs `bytes` to a presigned upload URL as the app does: with the content type and
/// `If-None-Match: *` the URL's signature binds, and for audio the SHA-256 of the bytes
/// (the one the app declared for them; the length comes from the body). Returns the
/// status: 200, or 400 / 403 / 412 / … from the S3 server.
pub async fn put_object(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> u16 {
    let checksum = (content_type == shared::r2::AUDIO_CONTENT_TYPE).then(|| sha256(&bytes));
    put_declared(http, url, content_type, checksum.as_deref(), bytes).await
}

/// As [`put_object`], declaring `checksum` whatever the bytes are (None: no checksum
/// header at all).
pub async fn put_declared(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    checksum: Option<&str>,
    bytes: Vec<u8>,
) -> u16 {
    let mut req = http
        .put(url)
        .header("content-type", content_type)
        .header("if-none-match", shared::r2::NO_OVERWRITE);
    if let Some(checksum) = checksum {
        req = req.header(shared::r2::CHECKSUM_HEADER, checksum);
    }
    req.body(bytes).send().await.expect("put").status().as_u16()
}
