//! The delete-family Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(delete_family::function()).await
}
