//! The set-member-role Lambda: wiring only; the function lives in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::function::run(set_member_role::function()).await
}
