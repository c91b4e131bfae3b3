//! Claims that meet a bad instance still end well (issue 14.6): a hung gateway costs one attempt,
//! not the budget; a silent instance is not handed out while an answering one waits; a caller
//! that hangs up does not cut its claim halfway.

use std::time::{Duration, Instant};

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::store::{ClaimStatus, Status};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::harness::{API_KEY, Options, Pool, eventually, operator, pool, pool_with, test_settings};

fn create(name: &str) -> ClaimRequest {
    ClaimRequest::new(name.into(), "hi".into(), None, PoolEnvironment::Dev).unwrap()
}

/// The instance the next claim would take first: the oldest idle one.
async fn oldest_idle(pool: &Pool) -> (String, String) {
    sqlx::query_as(
        "SELECT id, sprite_name FROM instances WHERE status = 'idle' ORDER BY ready_at, id LIMIT 1",
    )
    .fetch_one(pool.store.pool())
    .await
    .unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_hung_gateway_costs_one_attempt_and_the_claim_lands_on_another(db: PgPool) {
    let mut settings = test_settings();
    settings.claim_attempt = Duration::from_secs(2);
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    pool.provision(6).await;
    let (hung, sprite) = oldest_idle(&pool).await;
    let fault = json!({ "route": "gateway.conversation", "sprite": sprite, "kind": { "type": "hang" } });
    pool.emulator.fault(fault).await;

    let started = Instant::now();
    let outcome = pool.engine.claim(create("Ada"), &operator()).await.expect("the second attempt succeeds");
    let took = started.elapsed();
    let ClaimOutcome::Done(result) = outcome else { panic!("{outcome:?}") };
    assert_eq!(result.status, ClaimStatus::Created);
    assert_ne!(result.instance_id.as_deref(), Some(hung.as_str()), "landed on a healthy instance");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(25), "took {took:?}");
    let events = pool.store.events(Some(&hung), 20).await.unwrap();
    assert!(events.iter().any(|e| e.reason == "claim_failed"), "the hung one is recycled: {events:?}");
    assert_ne!(pool.instance(&hung).await.unwrap().status, Status::Claiming);
}

#[sqlx::test(migrations = "../migrations")]
async fn an_instance_whose_heartbeat_failed_is_taken_last(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(3).await;
    let (silent, sprite) = oldest_idle(&pool).await;
    pool.gateway_down(&sprite, false).await;
    let report = pool.engine.heartbeat().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");

    let ClaimOutcome::Done(result) = pool.engine.claim(create("Ada"), &operator()).await.unwrap() else {
        panic!()
    };
    assert_ne!(result.instance_id.as_deref(), Some(silent.as_str()));
    assert_eq!(pool.emulator.count("gateway.conversation").await, 1, "no attempt on the silent one");
    // With no answering instance left, the silent one is still better than a 503.
    for name in ["Bo", "Cy"] {
        let _ = pool.engine.claim(create(name), &operator()).await;
    }
    let row = pool.instance(&silent).await.unwrap();
    assert!(
        matches!(row.status, Status::Recycling | Status::Idle | Status::Destroying),
        "tried last: {row:?}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_caller_that_hangs_up_does_not_cut_its_claim(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;
    let fault = json!({ "route": "gateway.conversation", "kind": { "type": "hang", "ms": 1500 } });
    pool.emulator.fault(fault).await;
    let request = http::Request::post("/api/pool/claim")
        .header("authorization", format!("Bearer {API_KEY}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(r#"{"agentName": "Ada", "instructions": "hi"}"#))
        .unwrap();
    // The caller gives up while the gateway is still creating the conversation.
    let cut = tokio::time::timeout(Duration::from_millis(300), pool.api.router(None).oneshot(request)).await;
    assert!(cut.is_err(), "the request was still running when the caller left");

    eventually("the claim to end", Duration::from_secs(10), || async {
        let claimed = pool.in_status(Status::Claimed).await;
        (claimed.len() == 1).then_some(())
    })
    .await;
    let claims: Vec<(String,)> =
        sqlx::query_as("SELECT status FROM claims").fetch_all(pool.store.pool()).await.unwrap();
    assert_eq!(claims, vec![("created".to_string(),)], "the claim ended, recorded");
}
