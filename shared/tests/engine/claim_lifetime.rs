//! Issue 15.4: claim lifetime. A claim may carry `ttlSeconds`, or get the pool's
//! `claimTtlSeconds`; the tick recycles an instance whose claim expired (the claim then says
//! `expired`, the history `claim_expired`), a PATCH moves a live claim's expiry, and a join left
//! waiting for the invite's acceptance past `joinAcceptTimeoutSeconds` is recycled unless its
//! gateway reports the conversation bound by then. Expiry is written into the past with SQL
//! instead of waiting the 60 s a lifetime lasts at least.

use http::StatusCode;
use serde_json::{Value, json};
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest, ClaimResult};
use shared::store::{ClaimStatus, Status};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::{Answer, KEY, get, send};
use crate::harness::{Pool, operator, pool};

async fn claim(pool: &Pool, body: Value) -> Answer {
    send(&pool.api, "POST", "/api/pool/claim", Some(KEY), Some(&body.to_string())).await
}

async fn patch(pool: &Pool, claim_id: &str, body: &str) -> Answer {
    send(&pool.api, "PATCH", &format!("/api/pool/claims/{claim_id}"), Some(KEY), Some(body)).await
}

async fn put_settings(pool: &Pool, body: Value) -> Answer {
    send(&pool.api, "PUT", "/api/pool/settings", Some(KEY), Some(&body.to_string())).await
}

fn at(value: &Value) -> OffsetDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("a time, got {value}"));
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// `expires` is `secs` from now, give or take the test's own time.
fn expires_in(expires: &Value, secs: i64) {
    let left = (at(expires) - OffsetDateTime::now_utc()).whole_seconds();
    assert!((secs - 30..=secs).contains(&left), "expires in {left} s, expected about {secs}");
}

/// The claim's expiry moved into the past, on the instance and the claim alike.
async fn expire(pool: &Pool, claim_id: &str) {
    let id = Uuid::parse_str(claim_id).unwrap();
    sqlx::query("UPDATE instances SET claim_expires_at = now() - interval '1 second' WHERE claim_id = $1")
        .bind(id)
        .execute(pool.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE claims SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(pool.store.pool())
        .await
        .unwrap();
}

async fn reasons(pool: &Pool, instance: &str) -> Vec<(Option<String>, String, String)> {
    let events = pool.store.events(Some(instance), 50).await.unwrap();
    events.into_iter().map(|e| (e.from_status, e.to_status, e.reason)).collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn an_expired_claim_is_recycled_and_its_claim_says_expired(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;
    let answer = claim(&pool, json!({ "agentName": "Ada", "instructions": "hi", "ttlSeconds": 3600 })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    expires_in(&answer.body["expiresAt"], 3600);
    let claim_id = answer.body["claimId"].as_str().unwrap().to_string();
    let instance = answer.body["instanceId"].as_str().unwrap().to_string();
    // The claim status answer and the instance view carry the same expiry.
    let status = get(&pool.api, &format!("/api/pool/claims/{claim_id}")).await;
    assert_eq!(status.body["expiresAt"], answer.body["expiresAt"], "{}", status.text);
    let view = get(&pool.api, &format!("/api/pool/instances/{instance}")).await;
    assert_eq!(at(&view.body["expiresAt"]), at(&answer.body["expiresAt"]), "{}", view.text);

    // Not yet expired: the tick leaves it.
    let report = pool.engine.tick().await.unwrap();
    assert!(report.lifetimes.expired.is_empty(), "{report:?}");
    assert_eq!(pool.instance(&instance).await.unwrap().status, Status::Claimed);

    expire(&pool, &claim_id).await;
    let report = pool.engine.tick().await.unwrap();
    assert_eq!(report.lifetimes.expired, vec![instance.clone()], "{report:?}");
    let ended = get(&pool.api, &format!("/api/pool/claims/{claim_id}")).await;
    assert_eq!(ended.body["status"], "expired", "{}", ended.text);
    assert!(ended.body["error"].as_str().unwrap().contains("lifetime"), "{}", ended.text);
    assert!(at(&ended.body["expiresAt"]) < OffsetDateTime::now_utc(), "the claim keeps its expiry");
    let history = reasons(&pool, &instance).await;
    assert!(
        history.contains(&(Some("claimed".into()), "recycling".into(), "claim_expired".into())),
        "{history:?}"
    );

    // Recycled to a clean idle instance that forgot the claim and its expiry.
    pool.settled_idle(1).await;
    let row = pool.instance(&instance).await.unwrap();
    assert_eq!((row.claim_id, row.claim_expires_at), (None, None));
    let (_, gateway) = pool.gateway_status(&row, &row.gateway_token).await;
    assert_eq!(gateway["conversation"], Value::Null);
    // Nothing further to do on the next pass.
    assert!(pool.engine.tick().await.unwrap().lifetimes.expired.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_extension_moves_the_expiry_and_the_tick_keeps_the_claim(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;
    let answer = claim(&pool, json!({ "agentName": "Ada", "instructions": "hi", "ttlSeconds": 60 })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let claim_id = answer.body["claimId"].as_str().unwrap().to_string();
    let instance = answer.body["instanceId"].as_str().unwrap().to_string();
    expire(&pool, &claim_id).await;

    // Bad updates are named and change nothing.
    let cases: [(&str, &str); 7] = [
        (r#"{"ttlSeconds": 59}"#, "ttlSeconds"),
        (r#"{"ttlSeconds": 2592001}"#, "ttlSeconds"),
        (r#"{"ttlSeconds": "3600"}"#, "ttlSeconds"),
        (r#"{"ttlSeconds": null}"#, "ttlSeconds"),
        (r#"{}"#, "ttlSeconds"),
        (r#"{"ttlSeconds": 600, "agentName": "Bob"}"#, "agentName"),
        (r#"{"ttlSeconds": "#, "body"),
    ];
    for (body, field) in cases {
        let answer = patch(&pool, &claim_id, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        assert_eq!(answer.body["field"], field, "{body}: {}", answer.text);
    }
    let unchanged = pool.instance(&instance).await.unwrap().claim_expires_at.unwrap();
    assert!(unchanged < OffsetDateTime::now_utc());

    let extended = patch(&pool, &claim_id, r#"{"ttlSeconds": 7200}"#).await;
    assert_eq!(extended.status, StatusCode::OK, "{}", extended.text);
    assert_eq!(extended.body["claimId"], claim_id.as_str());
    expires_in(&extended.body["expiresAt"], 7200);
    let view = get(&pool.api, &format!("/api/pool/instances/{instance}")).await;
    assert_eq!(at(&view.body["expiresAt"]), at(&extended.body["expiresAt"]), "{}", view.text);
    let report = pool.engine.tick().await.unwrap();
    assert!(report.lifetimes.expired.is_empty(), "{report:?}");
    assert_eq!(pool.instance(&instance).await.unwrap().status, Status::Claimed);

    // Unknown claims are 404s; a claim no instance serves any more is a 409.
    let unknown = patch(&pool, &Uuid::new_v4().to_string(), r#"{"ttlSeconds": 600}"#).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert_eq!(patch(&pool, "not-a-claim", r#"{"ttlSeconds": 600}"#).await.status, StatusCode::NOT_FOUND);
    let recycled =
        send(&pool.api, "DELETE", &format!("/api/pool/instances/{instance}"), Some(KEY), None).await;
    assert_eq!(recycled.status, StatusCode::ACCEPTED, "{}", recycled.text);
    let gone = patch(&pool, &claim_id, r#"{"ttlSeconds": 600}"#).await;
    assert_eq!(gone.status, StatusCode::CONFLICT, "{}", gone.text);
    assert!(gone.body["error"].as_str().unwrap().contains("no longer live"), "{}", gone.text);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_pool_default_applies_when_the_claim_names_no_lifetime(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(4).await;
    // Off by default: no expiry.
    let answer = claim(&pool, json!({ "agentName": "Ada", "instructions": "hi" })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["expiresAt"], Value::Null);
    let settings = get(&pool.api, "/api/pool/settings").await;
    assert_eq!(settings.body["settings"]["claimTtlSeconds"], Value::Null, "{}", settings.text);
    assert_eq!(settings.body["settings"]["joinAcceptTimeoutSeconds"], 3600);

    let changed = put_settings(&pool, json!({ "claimTtlSeconds": 600 })).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let defaulted = claim(&pool, json!({ "agentName": "Bo", "instructions": "hi" })).await;
    expires_in(&defaulted.body["expiresAt"], 600);
    // The claim's own lifetime wins over the default.
    let own = claim(&pool, json!({ "agentName": "Cy", "instructions": "hi", "ttlSeconds": 120 })).await;
    expires_in(&own.body["expiresAt"], 120);

    // Null turns the default off again.
    assert_eq!(put_settings(&pool, json!({ "claimTtlSeconds": null })).await.status, StatusCode::OK);
    let off = claim(&pool, json!({ "agentName": "Di", "instructions": "hi" })).await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.text);
    assert_eq!(off.body["expiresAt"], Value::Null);
    // The change history names the field with its old and new value.
    let history = get(&pool.api, "/api/pool/settings").await.body["history"].clone();
    assert_eq!(history[0]["detail"]["claimTtlSeconds"], json!({ "old": 600, "new": null }), "{history}");
}

#[sqlx::test(migrations = "../migrations")]
async fn lifetimes_are_bounded_and_a_bad_one_takes_no_instance(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(2).await;
    for ttl in [json!(59), json!(2_592_001), json!("3600"), json!(90.5), json!(-60)] {
        let body = json!({ "agentName": "Ada", "instructions": "hi", "ttlSeconds": ttl });
        let answer = claim(&pool, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{ttl}: {}", answer.text);
        assert_eq!(answer.body["field"], "ttlSeconds", "{ttl}: {}", answer.text);
        for field in ["claimTtlSeconds", "joinAcceptTimeoutSeconds"] {
            let answer = put_settings(&pool, json!({ field: ttl })).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{field} {ttl}: {}", answer.text);
            assert!(answer.body["fields"][field].is_string(), "{field} {ttl}: {}", answer.text);
        }
    }
    assert_eq!(pool.count(Status::Idle).await, 2, "a refused claim takes nothing");
    // The bounds themselves are accepted.
    for ttl in [60, 2_592_000] {
        let answer =
            claim(&pool, json!({ "agentName": "Ada", "instructions": "hi", "ttlSeconds": ttl })).await;
        assert_eq!(answer.status, StatusCode::OK, "{ttl}: {}", answer.text);
        expires_in(&answer.body["expiresAt"], ttl);
    }
    // The engine's own request checks the same bound.
    let request = ClaimRequest::new("Ada".into(), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    assert_eq!(request.with_ttl(&json!(30)).unwrap_err().field, "ttlSeconds");
}

fn waiting(outcome: ClaimOutcome) -> ClaimResult {
    match outcome {
        ClaimOutcome::Done(result) if result.status == ClaimStatus::WaitingForAcceptance => result,
        other => panic!("expected a join waiting for acceptance, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_join_never_accepted_is_recycled_and_one_accepted_meanwhile_is_kept(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(2).await;
    pool.emulator.configure(json!({ "join_outcome": "waiting_for_acceptance" })).await;
    let join = |name: &str| {
        let url = sprites_emulator::mint_invite_url("dev");
        ClaimRequest::new(name.into(), "hi".into(), Some(url), PoolEnvironment::Dev).unwrap()
    };
    let never = waiting(pool.engine.claim(join("Never"), &operator()).await.unwrap());
    let later = waiting(pool.engine.claim(join("Later"), &operator()).await.unwrap());
    let (never_id, later_id) = (never.instance_id.clone().unwrap(), later.instance_id.clone().unwrap());
    assert_eq!(put_settings(&pool, json!({ "joinAcceptTimeoutSeconds": 60 })).await.status, StatusCode::OK);

    // Within the timeout both are kept.
    let report = pool.engine.tick().await.unwrap();
    assert!(report.lifetimes.not_accepted.is_empty() && report.lifetimes.accepted.is_empty(), "{report:?}");

    // The invite's creator accepts the second one after the join answered: its gateway now
    // reports the conversation.
    let row = pool.instance(&later_id).await.unwrap();
    let body = shared::gateway::CreateConversation {
        name: "Later".into(),
        profile_name: "Later".into(),
        env: "dev".into(),
        instructions: String::new(),
    };
    let bound = pool
        .gateway()
        .create_conversation(row.url.as_deref().unwrap(), &row.gateway_token, &body)
        .await
        .unwrap();
    sqlx::query("UPDATE instances SET claimed_at = now() - interval '2 minutes' WHERE status = 'claimed'")
        .execute(pool.store.pool())
        .await
        .unwrap();

    let report = pool.engine.tick().await.unwrap();
    assert_eq!(report.lifetimes.not_accepted, vec![never_id.clone()], "{report:?}");
    assert_eq!(report.lifetimes.accepted, vec![later_id.clone()], "{report:?}");
    assert!(report.lifetimes.expired.is_empty());

    let ended = pool.engine.claim_status(never.claim_id).await.unwrap().unwrap();
    assert_eq!(ended.status, ClaimStatus::Expired);
    assert!(ended.error.as_deref().unwrap().contains("not accepted within 60 s"), "{ended:?}");
    let history = reasons(&pool, &never_id).await;
    assert!(
        history.contains(&(Some("claimed".into()), "recycling".into(), "join_not_accepted".into())),
        "{history:?}"
    );

    let kept = pool.instance(&later_id).await.unwrap();
    assert_eq!(kept.status, Status::Claimed);
    assert_eq!(kept.join_status.as_deref(), Some("joined"));
    assert_eq!(kept.conversation_id.as_deref(), Some(bound.conversation_id.as_str()));
    let joined = pool.engine.claim_status(later.claim_id).await.unwrap().unwrap();
    assert_eq!((joined.status, joined.joined), (ClaimStatus::Joined, true));

    // A joined instance is no longer waiting: later passes leave it alone.
    let report = pool.engine.tick().await.unwrap();
    assert!(report.lifetimes.accepted.is_empty() && report.lifetimes.not_accepted.is_empty(), "{report:?}");
    assert_eq!(pool.instance(&later_id).await.unwrap().status, Status::Claimed);
}
