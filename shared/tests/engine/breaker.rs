//! The provisioning circuit breaker: three refused creations pause creating, persisted and
//! visible in the pool status; a success closes it. Transient failures of a create (rate
//! limits, 5xx, edge pages) are retried and do not count until the instance is given up.

use std::time::Duration;

use serde_json::json;
use shared::lifecycle::EventKind;
use shared::store::Status;
use sqlx::PgPool;

use crate::harness::{Options, eventually, fault_json, operator, pool_with, test_settings};

#[sqlx::test(migrations = "../migrations")]
async fn three_refused_creations_open_the_breaker_and_a_success_closes_it(db: PgPool) {
    let mut settings = test_settings();
    settings.min_idle = 1;
    settings.max_attempts = 10;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    // A 400 is a refusal: the instance is given up at once and the breaker counts it.
    pool.emulator.fault(fault_json("sprites.create", json!({"type": "status", "status": 400}))).await;

    let breaker = eventually("the breaker to open", Duration::from_secs(10), || async {
        pool.engine.replenish(&operator()).await.unwrap();
        let breaker = pool.store.breaker().await.unwrap();
        breaker.open_until.is_some().then_some(breaker)
    })
    .await;
    assert_eq!(breaker.consecutive_failures, 3);
    assert!(breaker.last_failure.as_deref().unwrap().contains("create"));
    let status = pool.engine.status().await.unwrap();
    assert!(status.breaker.open_until.is_some(), "visible in the status");

    // While open, creation pauses: no more create calls, and replenish adds nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.emulator.count("sprites.create").await, 3);
    let mut more = test_settings();
    more.min_idle = 5;
    let refill = pool.other_process(more, None).replenish(&operator()).await.unwrap();
    assert!(refill.breaker_open && refill.created.is_empty(), "{refill:?}");

    // Five minutes later (moved forward here), creation resumes and a success closes it.
    pool.emulator.clear_faults().await;
    sqlx::query("UPDATE pool_state SET breaker_open_until = now() - interval '1 second'")
        .execute(pool.store.pool())
        .await
        .unwrap();
    pool.engine.tick().await.unwrap();
    pool.settled_idle(1).await;
    // The step closes the breaker right after it records the instance idle, so the row may be
    // seen idle a moment before the breaker is written.
    let breaker = eventually("the breaker to close", Duration::from_secs(10), || async {
        let breaker = pool.store.breaker().await.unwrap();
        breaker.open_until.is_none().then_some(breaker)
    })
    .await;
    assert_eq!((breaker.consecutive_failures, breaker.open_until), (0, None));

    // Both transitions are pool events of the step that made them (issue 16.2).
    let events = pool.store.pool_events(Some(EventKind::Breaker), 10).await.unwrap();
    let states: Vec<&str> = events.iter().map(|e| e.detail["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["closed", "open"], "{events:?}");
    assert_eq!(events[1].detail["consecutiveFailures"], 3);
    assert!(events.iter().all(|e| e.actor == "step"), "{events:?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn transient_create_failures_are_retried_without_counting(db: PgPool) {
    let mut settings = test_settings();
    settings.max_attempts = 10;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let mut rule = fault_json("sprites.create", json!({"type": "status", "status": 503}));
    rule["count"] = json!(4);
    pool.emulator.fault(rule).await;
    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    pool.settled_idle(1).await;
    assert_eq!(pool.instance(&id).await.unwrap().status, Status::Idle);
    assert_eq!(pool.emulator.count("sprites.create").await, 5, "four 503s, then the create");
    let breaker = pool.store.breaker().await.unwrap();
    assert_eq!((breaker.consecutive_failures, breaker.open_until), (0, None));
    assert!(breaker.last_failure.is_none(), "{breaker:?}");
}

/// A 429 on create is the provider asking us to slow down: the step waits out Retry-After,
/// spends no attempt and tells the breaker nothing (issue 14.7).
#[sqlx::test(migrations = "../migrations")]
async fn rate_limited_creates_wait_out_retry_after_without_failing(db: PgPool) {
    let mut settings = test_settings();
    // Four counted failures would give the instance up after two.
    settings.max_attempts = 2;
    settings.breaker_threshold = 2;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let mut rule = fault_json("sprites.create", json!({"type": "rate_limit", "retry_after_secs": 1}));
    rule["count"] = json!(4);
    pool.emulator.fault(rule).await;
    let started = std::time::Instant::now();
    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    pool.settled_idle(1).await;
    assert!(started.elapsed() >= Duration::from_secs(4), "each Retry-After was waited out");
    let row = pool.instance(&id).await.unwrap();
    assert_eq!((row.status, row.attempts), (Status::Idle, 0), "{row:?}");
    assert_eq!(pool.emulator.count("sprites.create").await, 5, "four 429s, then the create");
    let breaker = pool.store.breaker().await.unwrap();
    assert_eq!((breaker.consecutive_failures, breaker.open_until), (0, None));
    assert!(breaker.last_failure.is_none(), "{breaker:?}");
    let events = pool.store.events(Some(&id), 50).await.unwrap();
    assert!(events.iter().all(|e| e.reason != "step_failed"), "no failed attempt recorded: {events:?}");
}
