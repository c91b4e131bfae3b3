//! Growth is bounded (issue 14, low items): a refused claim keeps no user text, and the tick
//! prunes finished claims and history lines past the retention period, a batch at a time.

use std::time::Duration;

use shared::config::PoolEnvironment;
use shared::engine::{ClaimError, ClaimRequest};
use sqlx::PgPool;

use crate::harness::{Options, operator, pool, pool_with, test_settings};

#[sqlx::test(migrations = "../migrations")]
async fn a_refused_claim_keeps_no_instructions(db: PgPool) {
    let pool = pool(db).await;
    let request =
        ClaimRequest::new("Ada".into(), "a long private brief".into(), None, PoolEnvironment::Dev).unwrap();
    let err = pool.engine.claim(request, &operator()).await.unwrap_err();
    assert!(matches!(err, ClaimError::NoIdle { .. }), "{err}");
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT agent_name, instructions, status FROM claims")
            .fetch_all(pool.store.pool())
            .await
            .unwrap();
    assert_eq!(rows, vec![("Ada".into(), String::new(), "failed".into())]);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_tick_prunes_what_is_past_retention_in_batches(db: PgPool) {
    let mut settings = test_settings();
    settings.retention = Duration::from_secs(7 * 24 * 3600);
    settings.prune_batch = 2;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let db = pool.store.pool();
    // Three claims and events past retention, one of each recent, one claim still pending.
    sqlx::query(
        "INSERT INTO claims (id, agent_name, instructions, status, created_at, finished_at)
         SELECT gen_random_uuid(), 'old', 'x', 'created', now() - interval '9 days', now() - interval '8 days'
         FROM generate_series(1, 3)
         UNION ALL SELECT gen_random_uuid(), 'new', 'x', 'created', now(), now()
         UNION ALL SELECT gen_random_uuid(), 'pending', 'x', 'pending', now() - interval '9 days', NULL",
    )
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO instance_events (instance_id, at, to_status, reason)
         SELECT 'gone', now() - interval '8 days', 'idle', 'provisioned' FROM generate_series(1, 3)
         UNION ALL SELECT 'live', now(), 'idle', 'provisioned'",
    )
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO pool_events (kind, actor, at) SELECT 'drain', 'old', now() - interval '8 days'
         FROM generate_series(1, 3)",
    )
    .execute(db)
    .await
    .unwrap();

    let first = pool.engine.tick().await.unwrap();
    let pruned = |p: shared::store::Pruned| (p.claims, p.events, p.pool_events);
    assert_eq!(pruned(first.pruned), (2, 2, 2), "one batch: {first:?}");
    let second = pool.engine.tick().await.unwrap();
    assert_eq!(pruned(second.pruned), (1, 1, 1), "the rest: {second:?}");
    let claims: Vec<(String,)> =
        sqlx::query_as("SELECT agent_name FROM claims ORDER BY agent_name").fetch_all(db).await.unwrap();
    assert_eq!(claims, vec![("new".into(),), ("pending".into(),)]);
    let events: Vec<(String,)> =
        sqlx::query_as("SELECT instance_id FROM instance_events WHERE instance_id IN ('gone', 'live')")
            .fetch_all(db)
            .await
            .unwrap();
    assert_eq!(events, vec![("live".into(),)]);
    let old: i64 = sqlx::query_scalar("SELECT count(*) FROM pool_events WHERE actor = 'old'")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(old, 0);
}
