//! The health Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(health::function()).await
}
