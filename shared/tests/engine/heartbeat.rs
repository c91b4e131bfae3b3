//! The heartbeat's three tiers: ping, wake by exec, give up (idle destroyed, claimed crashed).

use std::time::Duration;

use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::store::Status;
use sqlx::PgPool;

use crate::harness::{Pool, eventually, operator, pool};

async fn beat(pool: &Pool) -> shared::engine::HeartbeatReport {
    let report = pool.engine.heartbeat().await.unwrap();
    assert!(!report.skipped);
    report
}

#[sqlx::test(migrations = "../migrations")]
async fn healthy_instances_answer_and_reset_their_counters(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(3).await;
    let report = beat(&pool).await;
    assert_eq!((report.pinged, report.healthy, report.failed), (3, 3, 0));
    for instance in pool.store.instances().await.unwrap() {
        assert_eq!(instance.heartbeat_failures, 0);
        assert!(instance.last_heartbeat_at.is_some());
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn three_failures_wake_the_sprite_and_it_recovers(db: PgPool) {
    let pool = pool(db).await;
    let instance = pool.provision(1).await.pop().unwrap();
    pool.gateway_down(&instance.sprite_name, true).await;
    let execs = pool.emulator.count("exec").await;

    for expected in 1..=2 {
        let report = beat(&pool).await;
        assert_eq!(report.failed, 1);
        assert!(report.woken.is_empty());
        assert_eq!(pool.instance(&instance.id).await.unwrap().heartbeat_failures, expected);
    }
    let report = beat(&pool).await;
    assert_eq!(report.woken, vec![instance.id.clone()], "the third failure wakes it");
    assert_eq!(pool.emulator.count("exec").await, execs + 1);
    let row = pool.instance(&instance.id).await.unwrap();
    assert_eq!((row.heartbeat_failures, row.heartbeat_recoveries), (0, 1));

    let report = beat(&pool).await;
    assert_eq!(report.healthy, 1, "the exec brought the gateway back");
    let row = pool.instance(&instance.id).await.unwrap();
    assert_eq!((row.status, row.heartbeat_failures, row.heartbeat_recoveries), (Status::Idle, 0, 0));
}

/// Twelve failed pings: three wake-ups that did not help, then the instance is given up.
async fn fail_for_good(pool: &Pool, sprite: &str) -> Vec<shared::engine::HeartbeatReport> {
    pool.gateway_down(sprite, false).await;
    let mut reports = Vec::new();
    for _ in 0..12 {
        reports.push(beat(pool).await);
    }
    reports
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idle_instance_that_stays_dead_is_destroyed(db: PgPool) {
    let pool = pool(db).await;
    let instance = pool.provision(1).await.pop().unwrap();
    let reports = fail_for_good(&pool, &instance.sprite_name).await;
    let woken: usize = reports.iter().map(|r| r.woken.len()).sum();
    assert_eq!(woken, 3);
    assert!(reports[..11].iter().all(|r| r.destroyed.is_empty()));
    assert_eq!(reports[11].destroyed, vec![instance.id.clone()]);
    eventually("the instance to go", Duration::from_secs(5), || async {
        pool.instance(&instance.id).await.is_none().then_some(())
    })
    .await;
    assert!(pool.sprite_names().await.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claimed_instance_that_stays_dead_is_marked_crashed(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(1).await;
    let request = ClaimRequest::new("Ada".into(), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    let ClaimOutcome::Done(result) = pool.engine.claim(request, &operator()).await.unwrap() else { panic!() };
    let id = result.instance_id.unwrap();
    let sprite = pool.instance(&id).await.unwrap().sprite_name;

    let reports = fail_for_good(&pool, &sprite).await;
    assert_eq!(reports[11].crashed, vec![id.clone()]);
    let row = pool.instance(&id).await.unwrap();
    assert_eq!(row.status, Status::Crashed);
    assert_eq!(row.conversation_id, result.conversation_id, "kept for the operator");
    assert_eq!(pool.sprite_names().await, vec![sprite], "a user's agent is never deleted by the heartbeat");
    // Crashed instances are no longer pinged.
    assert_eq!(beat(&pool).await.pinged, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn one_heartbeat_at_a_time(db: PgPool) {
    let pool = pool(db).await;
    assert!(
        pool.store
            .take_sweep("heartbeat", "another-process".into(), Duration::from_secs(60))
            .await
            .unwrap()
            .is_some()
    );
    assert!(pool.engine.heartbeat().await.unwrap().skipped);
    assert!(!pool.engine.tick().await.unwrap().skipped, "other sweeps are not held up");
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idle_instance_found_bound_is_recycled_before_anyone_gets_it(db: PgPool) {
    let pool = pool(db).await;
    let instance = pool.provision(1).await.pop().unwrap();
    // A create that timed out for the pool but went through on the gateway later.
    let gateway = pool.gateway();
    let body = shared::gateway::CreateConversation {
        name: "late".into(),
        profile_name: "late".into(),
        env: "dev".into(),
        instructions: String::new(),
    };
    gateway
        .create_conversation(instance.url.as_deref().unwrap(), &instance.gateway_token, &body)
        .await
        .unwrap();

    let report = beat(&pool).await;
    assert_eq!(report.recycled, vec![instance.id.clone()]);
    pool.settled_idle(1).await;
    let row = pool.instance(&instance.id).await.unwrap();
    let (_, status) = pool.gateway_status(&row, &row.gateway_token).await;
    assert_eq!(status["conversation"], serde_json::Value::Null);
}
