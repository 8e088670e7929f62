//! `hello`: the cold-start benchmark's floor, a hello-world `lambda_http` function built
//! with the same release profile as the functions: what starting any Rust Lambda costs.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(async |_req: Request| {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
