//! create-invite and redeem-invite.

use serde_json::{Value, json};
use testkit::TestDb;
use testkit::server::Server;
use testkit::stubs;
use uuid::Uuid;

async fn invite(server: &Server, token: &str, body: Value) -> (u16, Value) {
    let reply = server.create_invite(token, &body).await;
    (reply.status, reply.body)
}

/// A keeper with a family and an invite: (family, keeper token, code).
async fn family_with_invite(server: &Server, extra: Value) -> (Uuid, String, String) {
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let mut body = json!({"familyId": family});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    let (status, response) = invite(server, &keeper, body).await;
    assert_eq!(status, 200, "{response}");
    (
        family,
        keeper,
        response["data"]["invite"]["code"]
            .as_str()
            .expect("code")
            .to_owned(),
    )
}

async fn redeem(server: &Server, token: &str, code: &str) -> (u16, Value) {
    let reply = server.redeem_invite(token, &json!({"code": code})).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn a_storyteller_a_stranger_and_anon_cannot_create_an_invite() {
    let server = Server::start().await;
    let (family, _, code) = family_with_invite(&server, json!({})).await;
    let (_, teller) = server.user().await;
    assert_eq!(redeem(&server, &teller, &code).await.0, 200);
    let (_, stranger) = server.user().await;
    let before = server.count("invites").await;

    assert_eq!(
        invite(&server, &teller, json!({"familyId": family}))
            .await
            .0,
        403
    );
    assert_eq!(
        invite(&server, &stranger, json!({"familyId": family}))
            .await
            .0,
        403
    );
    assert_eq!(
        invite(&server, &stranger, json!({"familyId": Uuid::new_v4()}))
            .await
            .0,
        403
    );
    let (status, body, _) = server
        .post("create-invite", None, &json!({"familyId": family}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );
    assert_eq!(server.count("invites").await, before, "nothing written");
}

#[tokio::test]
async fn bad_invite_input_is_refused_by_field_and_writes_nothing() {
    let server = Server::start().await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    for (body, field) in [
        (json!({"familyId": "not-a-uuid"}), "familyId"),
        (
            json!({"familyId": family, "email": "not-an-email"}),
            "email",
        ),
        (
            json!({"familyId": family, "expiresInDays": 31}),
            "expiresInDays",
        ),
        (
            json!({"familyId": family, "expiresInDays": 0}),
            "expiresInDays",
        ),
        (json!({"familyId": family, "maxUses": 21}), "maxUses"),
    ] {
        let (status, response) = invite(&server, &keeper, body).await;
        assert_eq!(status, 400, "{response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(&format!("{field}:")), "{message}");
    }
    assert_eq!(server.count("invites").await, 0);
}

#[tokio::test]
async fn the_plaintext_code_is_stored_nowhere_and_logged_nowhere() {
    let mailbox = std::env::temp_dir().join(format!("mailbox-{}", Uuid::new_v4().simple()));
    let server = Server::start_with(
        TestDb::new().await,
        &[("MAILBOX_DIR", mailbox.to_str().expect("path"))],
    )
    .await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let (status, response) = invite(
        &server,
        &keeper,
        json!({"familyId": family, "email": "nieta@example.com", "maxUses": 3}),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    let data = &response["data"];
    assert_eq!(
        data["emailSent"], false,
        "no Resend configured: the local mailbox"
    );
    assert_eq!(data["invite"]["maxUses"], 3);
    let code = data["invite"]["code"].as_str().expect("code").to_owned();

    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname"])
        .arg(server.db.admin_url())
        .output()
        .expect("pg_dump");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("nieta@example.com"),
        "the dump holds the invite"
    );
    let bare = code.replace('-', "");
    for form in [code.as_str(), bare.as_str(), &bare.to_lowercase()] {
        assert!(!dump.contains(form), "{form} is in the database");
        assert!(
            !testkit::logs::captured().contains(form),
            "{form} is in the logs"
        );
    }
    // The mailbox holds the email, with the code and the join link.
    let mail = std::fs::read_dir(&mailbox)
        .expect("mailbox")
        .next()
        .expect("one email")
        .expect("entry");
    let mail: Value =
        serde_json::from_slice(&std::fs::read(mail.path()).expect("read")).expect("json");
    assert_eq!(mail["to"], "nieta@example.com");
    assert!(
        mail["text"]
            .as_str()
            .expect("text")
            .contains(&format!("https://app.example.com/join?code={code}"))
    );
    std::fs::remove_dir_all(&mailbox).ok();
}

#[tokio::test]
async fn the_invite_email_goes_to_resend_with_recipient_sender_subject_and_link() {
    let (base, received) = stubs::resend(200).await;
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_BASE_URL", &base),
            ("RESEND_FROM", "Sun <hi@sun.test>"),
        ],
    )
    .await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let (status, response) = invite(
        &server,
        &keeper,
        json!({"familyId": family, "email": "tio@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["data"]["emailSent"], true);
    let code = response["data"]["invite"]["code"].as_str().expect("code");

    let received = received.lock().await;
    assert_eq!(received.len(), 1);
    let (auth, email) = &received[0];
    assert_eq!(auth, "Bearer re_test_key");
    assert_eq!(email["from"], "Sun <hi@sun.test>");
    assert_eq!(email["to"], json!(["tio@example.com"]));
    assert_eq!(
        email["subject"],
        "You're invited to join The Family on Stories From the Sun"
    );
    let link = format!("https://app.example.com/join?code={code}");
    assert!(
        email["text"].as_str().expect("text").contains(&link),
        "{email}"
    );
    assert!(
        email["html"].as_str().expect("html").contains(&link),
        "{email}"
    );
}

#[tokio::test]
async fn a_resend_failure_still_creates_the_invite_and_is_reported_without_the_address() {
    let (base, received) = stubs::resend(422).await;
    let server = Server::start_with_sentry_and(&[
        ("RESEND_API_KEY", "re_test_key"),
        ("RESEND_BASE_URL", &base),
    ])
    .await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let (status, response) = invite(
        &server,
        &keeper,
        json!({"familyId": family, "email": "tia.refused@example.com"}),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["data"]["emailSent"], false);
    assert!(!received.lock().await.is_empty(), "Resend was asked");
    assert_eq!(server.count("invites").await, 1);
    let events = server
        .sentry
        .as_ref()
        .expect("transport")
        .fetch_and_clear_events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0].tags.get("feature").map(String::as_str),
        Some("invitations")
    );
    assert_eq!(
        events[0].tags.get("action").map(String::as_str),
        Some("send_email")
    );
    // Resend's refusal quoted the address: only its masked form goes on.
    let reported = format!("{events:?}");
    assert!(reported.contains("ti***@example.com"), "{reported}");
    assert!(!reported.contains("tia.refused@example.com"), "{reported}");
    assert!(!testkit::logs::captured().contains("tia.refused@example.com"));
}

#[tokio::test]
async fn lower_case_and_missing_dashes_redeem_and_a_member_is_told_so() {
    let server = Server::start().await;
    let (family, keeper, code) = family_with_invite(&server, json!({"maxUses": 2})).await;
    let (teller, teller_token) = server.user().await;
    let typed = code.replace('-', " ").to_lowercase();
    let (status, body) = redeem(&server, &teller_token, &typed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({"familyId": family, "familyName": "The Family", "role": "storyteller", "alreadyMember": false})
    );
    let (status, body) = redeem(&server, &teller_token, &code.replace('-', "")).await;
    assert_eq!(
        (status, &body["data"]["alreadyMember"]),
        (200, &json!(true))
    );
    let (status, body) = redeem(&server, &keeper, &code).await;
    assert_eq!((status, &body["data"]["role"]), (200, &json!("keeper")));

    let admin = server.db.admin().await;
    let row = admin
        .query_one(
            "SELECT (SELECT use_count FROM invites WHERE family_id = $1),
                    (SELECT role FROM family_members WHERE family_id = $1 AND user_id = $2)",
            &[&family, &teller],
        )
        .await
        .expect("row");
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (1, "storyteller".to_owned())
    );
}

/// A code of each kind that doesn't let anyone in: unknown, expired, revoked (by the
/// keeper, through RLS) and used up.
async fn bad_codes(server: &Server) -> [(&'static str, String); 4] {
    let (_, _, expired) = family_with_invite(server, json!({})).await;
    server
        .db
        .admin()
        .await
        .execute(
            "UPDATE invites SET expires_at = now() - interval '1 minute'",
            &[],
        )
        .await
        .expect("expire");
    let (family, _, revoked) = family_with_invite(server, json!({})).await;
    let keeper_id = keeper_id(server, family).await;
    let mut login = server.db.login().await;
    let tx = testkit::begin_as(&mut login, testkit::As::User(keeper_id)).await;
    let revoked_rows = tx
        .execute(
            "UPDATE invites SET revoked_at = now() WHERE family_id = $1",
            &[&family],
        )
        .await
        .expect("revoke through RLS");
    assert_eq!(revoked_rows, 1);
    tx.commit().await.expect("commit");
    let (_, _, used_up) = family_with_invite(server, json!({})).await;
    let (_, first) = server.user().await;
    assert_eq!(redeem(server, &first, &used_up).await.0, 200);
    [
        ("unknown", "ZZZ-ZZZ-ZZZ".to_owned()),
        ("expired", expired),
        ("revoked", revoked),
        ("used up", used_up),
    ]
}

#[tokio::test]
async fn unknown_expired_revoked_and_used_up_codes_give_byte_identical_404s() {
    let server = Server::start().await;
    let codes = bad_codes(&server).await;
    let (_, caller) = server.user().await;
    let mut bodies = Vec::new();
    let codes = codes.iter().map(|(_, c)| c.as_str());
    for code in codes.chain(["not a code at all"]) {
        let (status, body) = server
            .post_raw("redeem-invite", &caller, &json!({"code": code}))
            .await;
        assert_eq!(status, 404, "{code}: {body}");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:#?}");
    let members: i64 = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM family_members WHERE role = 'storyteller'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(members, 1, "only the first redemption of the used-up code");
}

async fn keeper_id(server: &Server, family: Uuid) -> Uuid {
    server
        .db
        .admin()
        .await
        .query_one(
            "SELECT user_id FROM family_members WHERE family_id = $1 AND role = 'keeper'",
            &[&family],
        )
        .await
        .expect("keeper")
        .get(0)
}

#[tokio::test]
async fn the_eleventh_failed_attempt_is_refused_with_retry_after() {
    let server = Server::start().await;
    let (_, guesser) = server.user().await;
    for i in 0..10 {
        assert_eq!(
            redeem(&server, &guesser, "ZZZ-ZZZ-ZZZ").await.0,
            404,
            "attempt {i}"
        );
    }
    let (status, body, headers) = server
        .post(
            "redeem-invite",
            Some(&guesser),
            &json!({"code": "ZZZ-ZZZ-ZZY"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMIT"))
    );
    let retry: u32 = headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry));
    // Only the counter was written.
    assert_eq!(server.count("family_members").await, 0);
    assert_eq!(server.count("rate_limits").await, 1);
}

#[tokio::test]
async fn thirty_wrong_guesses_at_once_evaluate_no_more_than_ten() {
    let server = Server::start().await;
    let (_, guesser) = server.user().await;
    let guesses = (0..30).map(|_| redeem(&server, &guesser, "ZZZ-ZZZ-ZZZ"));
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 404).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn fifty_users_on_a_single_use_code_admit_exactly_one() {
    let server = Server::start().await;
    let (family, _, code) = family_with_invite(&server, json!({})).await;
    let mut tokens = Vec::new();
    for _ in 0..50 {
        tokens.push(server.user().await.1);
    }
    let attempts = tokens.iter().map(|t| redeem(&server, t, &code));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 404).count(),
        49,
        "{statuses:?}"
    );
    let row = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT (SELECT use_count FROM invites WHERE family_id = $1),
                    (SELECT count(*) FROM family_members WHERE family_id = $1 AND role = 'storyteller')",
            &[&family],
        )
        .await
        .expect("row");
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (1, 1));
}

#[tokio::test]
async fn one_user_redeeming_ten_times_at_once_joins_once_and_uses_one_use() {
    let server = Server::start().await;
    let (family, _, code) = family_with_invite(&server, json!({"maxUses": 5})).await;
    let (user, token) = server.user().await;
    let attempts = (0..10).map(|_| redeem(&server, &token, &code));
    let results = futures::future::join_all(attempts).await;
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|(_, b)| b["data"]["alreadyMember"] == false)
            .count(),
        1
    );
    let row = server
        .db
        .admin()
        .await
        .query_one(
            "SELECT (SELECT use_count FROM invites WHERE family_id = $1),
                    (SELECT count(*) FROM family_members WHERE family_id = $1 AND user_id = $2)",
            &[&family, &user],
        )
        .await
        .expect("row");
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (1, 1));
}

#[tokio::test]
async fn the_twenty_first_invite_in_an_hour_is_refused() {
    let server = Server::start().await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    for i in 0..20 {
        assert_eq!(
            invite(&server, &keeper, json!({"familyId": family}))
                .await
                .0,
            200,
            "invite {i}"
        );
    }
    let (status, body) = invite(&server, &keeper, json!({"familyId": family})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMIT"))
    );
    assert_eq!(server.count("invites").await, 20);
}

#[tokio::test]
async fn every_bad_code_runs_the_same_statements_so_timing_tells_nothing() {
    let (server, wire) = Server::start_through_proxy(&[]).await;
    let codes = bad_codes(&server).await;
    let (_, caller) = server.user().await;
    let mut sent = Vec::new();
    for (what, code) in &codes {
        wire.clear();
        assert_eq!(redeem(&server, &caller, code).await.0, 404, "{what}");
        sent.push((what, wire.statements()));
    }
    let (_, unknown) = &sent[0];
    assert!(
        unknown.iter().any(|s| s.contains("redeem_invite")),
        "{unknown:#?}"
    );
    for (what, statements) in &sent[1..] {
        assert_eq!(
            statements, unknown,
            "{what} ran other statements than unknown"
        );
    }
}

#[tokio::test]
async fn a_code_with_control_characters_is_a_400_and_a_deleted_account_cannot_join() {
    let server = Server::start().await;
    let (_, _, code) = family_with_invite(&server, json!({})).await;
    let (_, caller) = server.user().await;
    let (status, body) = redeem(&server, &caller, &format!("{code}\u{7}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_FAILED"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("code:")
    );

    // A valid token whose account was deleted: nothing joins, and the code is unused.
    let ghost = testkit::server::hs256(&server.claims(Uuid::new_v4()));
    let (status, body) = redeem(&server, &ghost, &code).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    let used: i32 = server
        .db
        .admin()
        .await
        .query_one("SELECT use_count FROM invites", &[])
        .await
        .expect("invite")
        .get(0);
    assert_eq!(used, 0);
    assert_eq!(server.count("family_members").await, 1, "the keeper alone");
}

#[tokio::test]
async fn a_hung_resend_still_creates_the_invite_within_seconds() {
    let hung = stubs::silent().await;
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("RESEND_API_KEY", "re_test_key"),
            ("RESEND_BASE_URL", &hung),
        ],
    )
    .await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let started = std::time::Instant::now();
    let (status, body) = invite(
        &server,
        &keeper,
        json!({"familyId": family, "email": "tio@example.com"}),
    )
    .await;
    assert_eq!(
        (status, &body["data"]["emailSent"]),
        (200, &json!(false)),
        "{body}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "create-invite's Lambda timeout is 20 s; it answered after {:?}",
        started.elapsed()
    );
    assert_eq!(server.count("invites").await, 1);
}

/// After INVITE_CODE_SECRET is rotated (the old one kept as INVITE_CODE_SECRET_PREVIOUS),
/// a code stored under the old secret still redeems, new codes are stored under the new
/// one, and a code under neither is unknown.
#[tokio::test]
async fn after_a_rotation_codes_made_under_the_previous_secret_still_redeem() {
    use secrecy::SecretString;
    use shared::invite::InviteCode;
    let (current, previous) = ("rotated-in-secret", "test-invite-secret");
    let server = Server::start_with(
        TestDb::new().await,
        &[
            ("INVITE_CODE_SECRET", current),
            ("INVITE_CODE_SECRET_PREVIOUS", previous),
        ],
    )
    .await;
    let (_, keeper) = server.user().await;
    let family = server.family(&keeper).await;
    let keeper_id = keeper_id(&server, family).await;
    let admin = server.db.admin().await;
    let stored = async |secret: &str| {
        let code = InviteCode::generate().expect("a code");
        admin
            .execute(
                "INSERT INTO invites (family_id, code_hmac, created_by, expires_at)
                 VALUES ($1, $2, $3, now() + interval '7 days')",
                &[&family, &code.hmac(&SecretString::from(secret)), &keeper_id],
            )
            .await
            .expect("an invite");
        code.to_string()
    };
    let before_rotation = stored(previous).await;
    let (_, teller) = server.user().await;
    let (status, body) = redeem(&server, &teller, &before_rotation).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = invite(&server, &keeper, json!({"familyId": family})).await;
    assert_eq!(status, 200, "{body}");
    let code = InviteCode::parse(body["data"]["invite"]["code"].as_str().expect("code"))
        .expect("a well-formed code");
    let hmac: Vec<u8> = admin
        .query_one(
            "SELECT code_hmac FROM invites WHERE family_id = $1 ORDER BY created_at DESC LIMIT 1",
            &[&family],
        )
        .await
        .expect("the new invite")
        .get(0);
    assert_eq!(hmac, code.hmac(&SecretString::from(current)));

    let foreign = stored("some-other-secret").await;
    let (_, stranger) = server.user().await;
    let (status, body) = redeem(&server, &stranger, &foreign).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")));
}
