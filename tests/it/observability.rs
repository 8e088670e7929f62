//! Sentry reports, log lines and PostHog events, as the engineer paged at 2am needs them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::analytics::{Analytics, Event};
use shared::{ApiError, Methods};
use testkit::server::{Server, hs256};
use testkit::stubs;
use uuid::Uuid;

const FUNCTION: &str = "create-family";

fn events(server: &Server) -> Vec<sentry::protocol::Event<'static>> {
    server
        .sentry
        .as_ref()
        .expect("sentry transport")
        .fetch_and_clear_events()
}

#[tokio::test]
async fn a_forced_500_sends_one_sentry_event_with_tags_extras_and_a_masked_email() {
    let server = Server::start_with_sentry().await;
    let (user, token) = server.user().await;
    testkit::fixtures::break_prompts(&server.db.admin().await).await;

    let (status, _, headers) = server
        .post(FUNCTION, Some(&token), &json!({"name": "Broken"}))
        .await;
    assert_eq!(status, 500);
    let events = events(&server);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(
        event.tags.get("function").map(String::as_str),
        Some(FUNCTION)
    );
    assert_eq!(
        event.tags.get("feature").map(String::as_str),
        Some(FUNCTION)
    );
    assert_eq!(event.tags.get("action").map(String::as_str), Some("invoke"));
    assert_eq!(
        event.tags.get("request_id").map(String::as_str),
        headers["x-request-id"].to_str().ok()
    );
    assert!(
        event.extra.contains_key("familyId"),
        "the family created before the failure: {:?}",
        event.extra
    );
    let reported_user = event.user.as_ref().expect("user");
    assert_eq!(reported_user.id.as_deref(), Some(user.to_string().as_str()));
    assert_eq!(reported_user.email.as_deref(), Some("gr***@example.com"));
    let text = format!("{event:?}");
    assert!(
        text.contains("broken_for_this_test"),
        "the error chain names the cause"
    );
    assert!(!text.contains("grandma@example.com"));
    assert!(!text.contains(&token));
}

#[tokio::test]
async fn the_apps_sentry_trace_continues_in_the_functions_transaction_and_its_events() {
    let server = Server::start_with_sentry().await;
    let (_, token) = server.user().await;
    testkit::fixtures::break_prompts(&server.db.admin().await).await;
    let trace_id = "771a43a4192642f0b136d5159a501700";
    let resp = server
        .http
        .post(server.url(FUNCTION))
        .bearer_auth(&token)
        .header("sentry-trace", format!("{trace_id}-b0e6f15b45c36b12-1"))
        .header(
            "baggage",
            format!("sentry-trace_id={trace_id},sentry-sample_rate=1"),
        )
        .json(&json!({"name": "Traced"}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 500);

    let envelopes = server
        .sentry
        .as_ref()
        .expect("sentry transport")
        .fetch_and_clear_envelopes();
    let mut traces = Vec::new();
    for item in envelopes.iter().flat_map(|e| e.items()) {
        match item {
            sentry::protocol::EnvelopeItem::Event(event) => {
                let Some(sentry::protocol::Context::Trace(trace)) = event.contexts.get("trace")
                else {
                    panic!("the error event carries no trace: {event:?}")
                };
                traces.push(("event", trace.trace_id.to_string()));
            }
            sentry::protocol::EnvelopeItem::Transaction(transaction) => {
                let Some(sentry::protocol::Context::Trace(trace)) =
                    transaction.contexts.get("trace")
                else {
                    panic!("the transaction carries no trace")
                };
                traces.push(("transaction", trace.trace_id.to_string()));
            }
            _ => {}
        }
    }
    assert_eq!(
        traces,
        [
            ("event", trace_id.to_owned()),
            ("transaction", trace_id.to_owned())
        ],
        "the app's trace, in the event and in the function's transaction"
    );
}

#[tokio::test]
async fn a_400_sends_nothing_to_sentry() {
    let server = Server::start_with_sentry().await;
    let (_, token) = server.user().await;
    assert_eq!(
        server
            .post(FUNCTION, Some(&token), &json!({"name": ""}))
            .await
            .0,
        400
    );
    assert_eq!(
        server.post(FUNCTION, None, &json!({"name": "x"})).await.0,
        401
    );
    assert!(events(&server).is_empty());
}

#[tokio::test]
async fn ignored_errors_are_filtered_and_others_reported() {
    let server = Server::start_with_sentry().await;
    let client = server.app.sentry.as_ref();
    for ignored in shared::telemetry::IGNORED_ERRORS {
        let error = std::io::Error::other(format!("upstream said: {ignored}"));
        shared::telemetry::report_error(client, &error, Default::default());
    }
    shared::telemetry::flush(client).await;
    assert!(events(&server).is_empty());

    let error = std::io::Error::other("resend answered 500");
    let context = shared::telemetry::ErrorContext {
        feature: "invitations",
        action: "send_email",
        ..Default::default()
    };
    shared::telemetry::report_error(client, &error, context);
    shared::telemetry::flush(client).await;
    let events = events(&server);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].tags.get("feature").map(String::as_str),
        Some("invitations")
    );
    assert_eq!(
        events[0].tags.get("action").map(String::as_str),
        Some("send_email")
    );
}

fn request(body: &str) -> shared::Request {
    http::Request::builder()
        .method("POST")
        .uri("/functions/v1/test")
        .body(lambda_http::Body::Text(body.to_owned()))
        .expect("request")
}

#[tokio::test]
async fn a_panic_in_a_handler_becomes_a_500_and_one_sentry_event() {
    let server = Server::start_with_sentry().await;
    let response = shared::http::serve(
        &server.app,
        "panicky",
        Methods::Post,
        &request("{}"),
        async |_| {
            if Uuid::new_v4().is_nil() {
                return Ok(());
            }
            panic!("the handler fell over");
        },
    )
    .await;
    assert_eq!(response.status(), 500);
    let body: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
    assert_eq!(
        body["error"]["message"],
        "Something went wrong. Please try again."
    );
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let events = events(&server);
    assert_eq!(events.len(), 1);
    assert!(format!("{:?}", events[0]).contains("the handler fell over"));
}

fn lines_with(needle: &str) -> Vec<Value> {
    testkit::logs::captured()
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect()
}

#[tokio::test]
async fn a_log_line_carries_request_id_function_and_user_id() {
    let server = Server::start().await;
    let (user, token) = server.user().await;
    let (status, _, headers) = server
        .post(FUNCTION, Some(&token), &json!({"name": "Logged"}))
        .await;
    assert_eq!(status, 200);
    let request_id = headers["x-request-id"].to_str().expect("id").to_owned();
    let lines = lines_with(&request_id);
    let done = lines
        .iter()
        .find(|l| l["message"] == "request handled")
        .expect("the completion line");
    assert_eq!(done["span"]["function"], FUNCTION);
    assert_eq!(done["span"]["request_id"], request_id.as_str());
    assert_eq!(done["span"]["user_id"], user.to_string().as_str());
    assert_eq!(done["status"], 200);
}

#[tokio::test]
async fn tokens_emails_invite_codes_and_signed_urls_never_reach_the_logs() {
    let server = Server::start_with_sentry().await;
    let (user, _) = server.user().await;
    let mut claims = server.claims(user);
    claims["email"] = json!("secret.person@example.com");
    let token = hs256(&claims);
    testkit::fixtures::break_prompts(&server.db.admin().await).await;
    let signed_url = "https://acct.r2.cloudflarestorage.com/audio/families/x.m4a?X-Amz-Signature=5ec7e7deadbeef0123456789";
    let body = json!({
        "name": "Leaky secret.person@example.com",
        "inviteCode": "QWE-RTY-UPA",
        "uploadUrl": signed_url,
        "email": "secret.person@example.com",
    });
    let (status, _, headers) = server.post(FUNCTION, Some(&token), &body).await;
    assert_eq!(status, 500);
    let request_id = headers["x-request-id"].to_str().expect("id").to_owned();

    let logs = testkit::logs::captured();
    assert!(logs.contains(&request_id), "the failing request was logged");
    for secret in [
        token.as_str(),
        "secret.person@example.com",
        "QWE-RTY-UPA",
        "X-Amz-Signature",
        "5ec7e7deadbeef",
    ] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
    let text = format!("{:?}", events(&server));
    for secret in [
        token.as_str(),
        "secret.person@example.com",
        "QWE-RTY-UPA",
        "X-Amz-Signature",
    ] {
        assert!(!text.contains(secret), "{secret} reached Sentry");
    }
}

#[tokio::test]
async fn posthog_receives_typed_events_with_the_family_group_and_no_email() {
    let (host, received, _) = stubs::posthog(Duration::ZERO).await;
    let key = secrecy::SecretString::from("phc_test_key");
    let analytics =
        Analytics::new(Some(&key), &host, reqwest::Client::new()).expect("on with a key");
    let (family, keeper) = (Uuid::new_v4(), Uuid::new_v4());
    analytics.capture(Event::BillingPlanChanged {
        family_id: family,
        keeper_id: keeper,
        from_plan: "free".into(),
        to_plan: "family".into(),
    });
    analytics.capture(Event::BillingSubscriptionCanceled {
        family_id: family,
        keeper_id: keeper,
        plan: "family".into(),
    });
    analytics.capture(Event::BillingSubscriptionRenewed {
        family_id: family,
        keeper_id: keeper,
        plan: "legacy".into(),
        period_end: chrono::Utc::now(),
    });
    analytics.flush().await;

    let received = received.lock().await;
    assert_eq!(received.len(), 1, "one batch");
    let batch = &received[0];
    assert_eq!(batch["api_key"], "phc_test_key");
    let names: Vec<&str> = batch["batch"]
        .as_array()
        .expect("batch")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "billing_plan_changed",
            "billing_subscription_canceled",
            "billing_subscription_renewed"
        ]
    );
    for event in batch["batch"].as_array().expect("batch") {
        assert_eq!(
            event["distinct_id"],
            keeper.to_string().as_str(),
            "the keeper, by id"
        );
        assert_eq!(
            event["properties"]["$groups"]["family"],
            family.to_string().as_str()
        );
        assert_eq!(event["properties"]["familyId"], family.to_string().as_str());
    }
    assert_eq!(batch["batch"][0]["properties"]["fromPlan"], "free");
    assert_eq!(batch["batch"][0]["properties"]["toPlan"], "family");
    assert!(!batch.to_string().contains('@'), "no email anywhere");
    assert!(
        Analytics::new(None, &host, reqwest::Client::new()).is_none(),
        "off without a key"
    );
}

#[tokio::test]
async fn posthog_down_or_slow_neither_fails_nor_holds_an_invocation_past_the_flush_timeout() {
    for (what, host) in [
        ("down", "http://127.0.0.1:9".to_owned()),
        ("slow", stubs::posthog(Duration::from_secs(30)).await.0),
        ("hung", stubs::silent().await),
    ] {
        let server = Server::start_with(
            testkit::TestDb::new().await,
            &[("POSTHOG_API_KEY", "phc_k"), ("POSTHOG_HOST", &host)],
        )
        .await;
        let started = Instant::now();
        let response = shared::http::serve(
            &server.app,
            "billing-test",
            Methods::Post,
            &request("{}"),
            async |_| {
                if let Some(analytics) = &server.app.analytics {
                    analytics.capture(Event::BillingSubscriptionCanceled {
                        family_id: Uuid::new_v4(),
                        keeper_id: Uuid::new_v4(),
                        plan: "family".into(),
                    });
                }
                Ok::<_, ApiError>(json!({"ok": true}))
            },
        )
        .await;
        assert_eq!(response.status(), 200, "{what}");
        let bound = shared::analytics::FLUSH_TIMEOUT + Duration::from_secs(2);
        assert!(
            started.elapsed() < bound,
            "{what}: held the invocation {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_hung_sentry_never_holds_an_answer_past_the_flush_timeout() {
    let hung = stubs::silent().await;
    let dsn = hung.replace("http://", "http://public@") + "/1";
    let server = Server::start_with(testkit::TestDb::new().await, &[("SENTRY_DSN", &dsn)]).await;
    let started = Instant::now();
    let response = shared::http::serve(
        &server.app,
        "failing",
        Methods::Post,
        &request("{}"),
        async |_| Err::<(), _>(ApiError::internal(anyhow::anyhow!("a bug, reported"))),
    )
    .await;
    assert_eq!(response.status(), 500);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "held the invocation {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_handler_that_would_outlive_the_lambda_deadline_answers_503_before_it() {
    use lambda_http::RequestExt;
    let server = Server::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut context = lambda_http::Context::default();
    context.request_id = "deadline-test".into();
    context.deadline = now + 1_500;
    let started = Instant::now();
    let response = shared::http::serve(
        &server.app,
        "hanging",
        Methods::Post,
        &request("{}").with_lambda_context(context),
        async |_| {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<_, ApiError>(())
        },
    )
    .await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(1_400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()["x-request-id"], "deadline-test");
}
