//! The get-signed-upload-url Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(get_signed_upload_url::function()).await
}
