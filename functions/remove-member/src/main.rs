//! The remove-member Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(remove_member::function()).await
}
