//! The health check (contract §11): which build answers and whether the database does.

use serde_json::Value;
use testkit::TestDb;
use testkit::server::Server;

async fn health(server: &Server) -> (u16, Value) {
    let resp = server
        .http
        .get(server.url("health"))
        .send()
        .await
        .expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn health_names_the_build_and_says_the_database_answers() {
    let server = Server::start().await;
    let (status, body) = health(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["revision"], shared::telemetry::REVISION);
    assert_eq!(body["data"]["database"], "ok");
    assert_eq!(
        body["data"].as_object().map(|o| o.len()),
        Some(2),
        "nothing else: {body}"
    );
}

#[tokio::test]
async fn a_database_that_refuses_or_never_answers_is_a_503_naming_it_within_a_second() {
    // Refused: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let refused = format!(
        "postgres://nobody:secret@{}/postgres",
        closed.local_addr().expect("addr")
    );
    drop(closed);
    // Stuck: the port accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let stuck = format!(
        "postgres://nobody:secret@{}/postgres",
        silent.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    for url in [refused, stuck] {
        let server = Server::start_with(TestDb::new().await, &[("DATABASE_URL", &url)]).await;
        let started = std::time::Instant::now();
        let (status, body) = health(&server).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{url}"
        );
        assert_eq!(status, 503, "{url}: {body}");
        assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(body["error"]["message"], "database did not answer in time");
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}
