//! create-family end to end.

use serde_json::json;
use testkit::server::{Server, hs256};
use uuid::Uuid;

const FUNCTION: &str = "create-family";

#[tokio::test]
async fn a_family_comes_with_its_keeper_prompts_in_its_language_and_a_free_entitlement() {
    let server = Server::start().await;
    let (user, token) = server.user().await;
    let (status, body, _) = server
        .post(
            FUNCTION,
            Some(&token),
            &json!({"name": "Los García", "language": "es"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["role"], "keeper");
    assert_eq!(data["family"]["name"], "Los García");
    assert!(
        data["family"]["createdAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(
        data["entitlement"],
        json!({"plan": "free", "status": "active", "storageQuotaBytes": 1073741824_i64,
               "storageUsedBytes": 0, "maxRecordingSeconds": 600})
    );

    let family: Uuid = data["family"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("uuid");
    let admin = server.db.admin().await;
    let row = admin
        .query_one(
            "SELECT (SELECT language FROM families WHERE id = $1 AND created_by = $2),
                    (SELECT role FROM family_members WHERE family_id = $1 AND user_id = $2),
                    (SELECT count(*) FROM prompts WHERE family_id = $1),
                    (SELECT count(*) FROM prompts p JOIN default_prompts d ON d.text = p.text AND d.language = 'es'
                      WHERE p.family_id = $1),
                    (SELECT plan FROM entitlements WHERE family_id = $1)",
            &[&family, &user],
        )
        .await
        .expect("rows");
    assert_eq!(row.get::<_, String>(0), "es");
    assert_eq!(row.get::<_, String>(1), "keeper");
    let (prompts, spanish) = (row.get::<_, i64>(2), row.get::<_, i64>(3));
    assert!(
        prompts > 0 && prompts == spanish,
        "{prompts} prompts, {spanish} of them the Spanish defaults"
    );
    assert_eq!(row.get::<_, String>(4), "free");
}

#[tokio::test]
async fn a_failure_half_way_leaves_nothing_behind() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    // Break the third step: prompts can no longer be inserted.
    testkit::fixtures::break_prompts(&server.db.admin().await).await;

    let (status, body, _) = server
        .post(FUNCTION, Some(&token), &json!({"name": "Half Done"}))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
    assert_eq!(
        body["error"]["message"],
        "Something went wrong. Please try again."
    );
    assert!(
        !body.to_string().contains("broken_for_this_test"),
        "no SQL detail leaks"
    );
    for table in ["families", "family_members", "prompts", "entitlements"] {
        assert_eq!(server.count(table).await, 0, "{table}");
    }
    let hits: i64 = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT coalesce(sum(hits), 0)::bigint FROM rate_limits",
            &[],
        )
        .await
        .expect("hits")
        .get(0);
    assert_eq!(
        hits, 0,
        "a failed creation does not count toward the daily limit"
    );
}

#[tokio::test]
async fn fifteen_families_at_once_admit_ten_and_the_next_is_refused_with_retry_after() {
    let server = Server::start().await;
    let (user, token) = server.user().await;
    let requests = (0..15).map(|i| {
        let (server, token) = (&server, &token);
        async move {
            server
                .post(
                    FUNCTION,
                    Some(token),
                    &json!({"name": format!("Family {i}")}),
                )
                .await
        }
    });
    let results = futures::future::join_all(requests).await;
    let ok = results.iter().filter(|(s, ..)| *s == 200).count();
    let limited = results
        .iter()
        .filter(|(s, b, _)| *s == 429 && b["error"]["code"] == "RATE_LIMIT")
        .count();
    assert_eq!((ok, limited), (10, 5));

    let (status, body, headers) = server
        .post(FUNCTION, Some(&token), &json!({"name": "The eleventh"}))
        .await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=86_400).contains(&retry));
    let families: i64 = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM families WHERE created_by = $1",
            &[&user],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(families, 10);

    // Another user is not affected.
    let (_, other) = server.user().await;
    assert_eq!(
        server
            .post(FUNCTION, Some(&other), &json!({"name": "Neighbours"}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn control_characters_in_a_name_are_a_400_naming_the_field_and_write_nothing() {
    let server = Server::start().await;
    let (_, token) = server.user().await;
    for name in [
        "The Smiths\r\nBcc: everyone@example.com",
        "Nul\u{0}byte",
        "Bell\u{7}",
    ] {
        let reply = server.create_family(&token, &json!({"name": name})).await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, Some("VALIDATION_FAILED")),
            "{name:?}: {reply:?}"
        );
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("name:"), "{message}");
    }
    for table in ["families", "family_members", "rate_limits"] {
        assert_eq!(server.count(table).await, 0, "{table}");
    }
}

#[tokio::test]
async fn a_valid_token_for_a_deleted_account_is_a_401_and_writes_nothing() {
    let server = Server::start().await;
    // Signed correctly, but the account is gone from auth.users.
    let token = hs256(&server.claims(Uuid::new_v4()));
    let reply = server
        .create_family(&token, &json!({"name": "The Ghosts"}))
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (401, Some("UNAUTHORIZED")),
        "{reply:?}"
    );
    for table in [
        "families",
        "family_members",
        "prompts",
        "entitlements",
        "rate_limits",
    ] {
        assert_eq!(server.count(table).await, 0, "{table}");
    }
}
