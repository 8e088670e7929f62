//! The create-checkout-session Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(create_checkout_session::function()).await
}
