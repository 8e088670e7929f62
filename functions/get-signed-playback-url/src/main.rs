//! The get-signed-playback-url Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(get_signed_playback_url::function()).await
}
