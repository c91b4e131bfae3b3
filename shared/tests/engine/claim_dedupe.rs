//! Issue 15.5: a repeated claim never takes a second instance. The same Idempotency-Key and
//! body within 24 h answers with the first claim (20 at once included); the same key with
//! another body is a 422; a claim for an invite a live claim serves answers with that claim.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::store::Status;
use sqlx::PgPool;
use tower::ServiceExt;

use crate::harness::{API_KEY, Pool, operator, pool};

/// POST /api/pool/claim through the router, with an Idempotency-Key.
async fn claim(pool: &Pool, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = http::Request::post("/api/pool/claim")
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let request = request.body(axum::body::Body::from(body.to_string())).unwrap();
    let response = pool.api.router(None).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn taken(pool: &Pool) -> usize {
    pool.in_status(Status::Claimed).await.len() + pool.in_status(Status::Claiming).await.len()
}

#[sqlx::test(migrations = "../migrations")]
async fn twenty_claims_with_one_key_take_one_instance(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(3).await;
    let body = json!({ "agentName": "Ada", "instructions": "hello" });
    let answers =
        futures_util::future::join_all((0..20).map(|_| claim(&pool, Some("order-42"), &body))).await;
    let first = &answers[0].1;
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        assert_eq!(answer["claimId"], first["claimId"], "{answer}");
        assert_eq!(answer["instanceId"], first["instanceId"]);
        assert_eq!(answer["inviteUrl"], first["inviteUrl"]);
    }
    assert_eq!(taken(&pool).await, 1, "one instance taken for 20 requests");

    // The same key with another body is the client's mistake.
    let other = json!({ "agentName": "Bob", "instructions": "hello" });
    let (status, answer) = claim(&pool, Some("order-42"), &other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("Idempotency-Key"), "{answer}");

    // Another key is another claim.
    let (status, answer) = claim(&pool, Some("order-43"), &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(answer["claimId"], first["claimId"]);
    assert_eq!(taken(&pool).await, 2);

    // After 24 hours the key starts a new claim.
    sqlx::query("UPDATE claims SET created_at = now() - interval '25 hours'")
        .execute(pool.store.pool())
        .await
        .unwrap();
    let (status, answer) = claim(&pool, Some("order-42"), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_ne!(answer["claimId"], first["claimId"], "a new claim after the window");
    assert_eq!(taken(&pool).await, 3);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_refused_claim_does_not_bind_its_key_and_bad_keys_are_named(db: PgPool) {
    let pool = pool(db).await;
    let body = json!({ "agentName": "Ada", "instructions": "hello" });
    let (status, _) = claim(&pool, Some("retry-me"), &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    pool.provision(1).await;
    let (status, answer) = claim(&pool, Some("retry-me"), &body).await;
    assert_eq!(status, StatusCode::OK, "a retry after the 503 gets an instance: {answer}");

    for bad in ["x".repeat(129), "two words".to_string()] {
        let (status, answer) = claim(&pool, Some(&bad), &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert_eq!(answer["field"], "Idempotency-Key");
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn one_live_agent_per_invite(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(3).await;
    let url = sprites_emulator::mint_invite_url("dev");
    let request =
        || ClaimRequest::new("Ada".into(), "hi".into(), Some(url.clone()), PoolEnvironment::Dev).unwrap();
    let ClaimOutcome::Done(first) = pool.engine.claim(request(), &operator()).await.unwrap() else {
        panic!("joined at once")
    };
    let ClaimOutcome::Done(again) = pool.engine.claim(request(), &operator()).await.unwrap() else {
        panic!("the first claim")
    };
    assert_eq!(again.claim_id, first.claim_id);
    assert_eq!(again.instance_id, first.instance_id);

    // Two at once with a new invite: one instance between them.
    let url = sprites_emulator::mint_invite_url("dev");
    let request =
        || ClaimRequest::new("Bo".into(), "hi".into(), Some(url.clone()), PoolEnvironment::Dev).unwrap();
    let actor = operator();
    let (a, b) = tokio::join!(pool.engine.claim(request(), &actor), pool.engine.claim(request(), &actor));
    let id = |outcome: ClaimOutcome| match outcome {
        ClaimOutcome::Done(done) => done.claim_id,
        ClaimOutcome::Accepted { claim_id, .. } => claim_id,
    };
    assert_eq!(id(a.unwrap()), id(b.unwrap()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(taken(&pool).await, 2, "two invites, two agents");
}
