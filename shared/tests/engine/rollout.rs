//! Issue 15.3: version rollout. Every instance records the version it was built from; when
//! the desired version changes, the tick replaces stale idle instances one current one at a
//! time, within max total and never below min idle, and a stale instance released by its
//! tenant is rebuilt rather than restored. The new ref is `main`, a branch the emulator's
//! OpenClaw repository has (like the real one), so replacements really install it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest, Engine, EngineSettings};
use shared::store::Status;
use sqlx::PgPool;

use crate::harness::{Options, Pool, eventually, operator, pool_with, test_settings};

fn sized(min_idle: u32, max_total: u32) -> EngineSettings {
    EngineSettings { min_idle, max_total, ..test_settings() }
}

async fn sized_pool(db: PgPool, min_idle: u32, max_total: u32) -> Pool {
    pool_with(db, Options { settings: sized(min_idle, max_total), ..Options::default() }).await
}

async fn claim(engine: &Engine, name: &str) -> String {
    let request = ClaimRequest::new(name.into(), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    match engine.claim(request, &operator()).await.unwrap() {
        ClaimOutcome::Done(result) => result.instance_id.expect("a claimed instance"),
        other => panic!("expected a finished claim, got {other:?}"),
    }
}

/// Rows whose version is the desired one, and all rows but those being destroyed.
async fn versions(engine: &Engine) -> (i64, i64) {
    let status = engine.rollout_status().await.unwrap();
    (status.current, status.total)
}

/// Waits until no step runs on any instance (provisioning and destroying done).
async fn settled(pool: &Pool) {
    eventually("no step in flight", Duration::from_secs(30), || async {
        pool.store.instances().await.unwrap().iter().all(|i| i.step.is_none()).then_some(())
    })
    .await;
}

/// One tick of `engine`, checked: the rollout destroyed no more than idle above min idle
/// allowed, and the pool never held more than max total rows.
async fn checked_tick(pool: &Pool, engine: &Engine, min_idle: i64, max_total: i64) {
    let idle_before = pool.count(Status::Idle).await;
    let report = engine.tick().await.unwrap();
    let rollout = report.rollout.expect("the tick ran a rollout pass");
    let destroyed = rollout.destroyed.len() as i64;
    assert!(
        idle_before - destroyed >= min_idle.min(idle_before),
        "the rollout took idle from {idle_before} below min idle {min_idle}: {rollout:?}"
    );
    let idle_after = pool.count(Status::Idle).await;
    assert!(idle_after >= min_idle.min(idle_before), "idle {idle_after} after the tick (was {idle_before})");
    let rows = pool.store.instances().await.unwrap().len() as i64;
    assert!(rows <= max_total, "{rows} instances, max total {max_total}");
    settled(pool).await;
}

async fn run_until_current(pool: &Pool, engine: &Engine, min_idle: i64, max_total: i64) -> usize {
    for ticks in 1..=40 {
        checked_tick(pool, engine, min_idle, max_total).await;
        let status = engine.rollout_status().await.unwrap();
        if status.stale_idle == 0 && pool.count(Status::Idle).await >= min_idle {
            return ticks;
        }
    }
    panic!("the rollout did not finish in 40 ticks: {:?}", engine.rollout_status().await.unwrap());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rollout_under_claims_keeps_min_idle_and_ends_all_current(db: PgPool) {
    let (min_idle, max_total) = (3, 8);
    let pool = sized_pool(db, min_idle as u32, max_total as u32).await;
    pool.engine.tick().await.unwrap();
    pool.settled_idle(3).await;
    let first = pool.engine.desired_version().await.unwrap();
    assert!(first.starts_with("staging+setup:") && first.ends_with("+config:1"), "{first}");
    let held = [claim(&pool.engine, "Ada").await, claim(&pool.engine, "Bob").await];
    pool.settled_idle(3).await;
    assert_eq!(versions(&pool.engine).await, (5, 5), "every instance built from the first version");

    pool.engine.change_pool_settings(&json!({"openclawRef": "main"}), &operator()).await.unwrap();
    let desired = pool.engine.desired_version().await.unwrap();
    assert!(desired.starts_with("main+setup:"), "{desired}");
    assert_eq!(versions(&pool.engine).await, (0, 5));

    // A claim in the middle of the rollout: it takes whatever idle instance comes first.
    checked_tick(&pool, &pool.engine, min_idle, max_total).await;
    let mid = claim(&pool.engine, "Cy").await;
    run_until_current(&pool, &pool.engine, min_idle, max_total).await;
    let idle = pool.in_status(Status::Idle).await;
    assert!(idle.len() as i64 >= min_idle, "{idle:?}");
    for instance in &idle {
        assert_eq!(instance.openclaw_git_ref, "main", "idle {} is current", instance.id);
    }
    let events = pool.store.events(None, 500).await.unwrap();
    let rolled = events.iter().filter(|e| e.reason == "rollout" && e.to_status == "destroying").count();
    assert!(rolled >= 2, "the stale idle instances were destroyed with reason rollout: {rolled}");

    // The tenants' stale instances are rebuilt as they are released; then all are current.
    for id in held.iter().chain([&mid]) {
        if pool.store.build_version(id).await.unwrap().as_ref() == Some(&desired) {
            continue;
        }
        assert_eq!(pool.engine.recycle(id, &operator()).await.unwrap(), Status::Destroying);
    }
    run_until_current(&pool, &pool.engine, min_idle, max_total).await;
    let status = pool.engine.rollout_status().await.unwrap();
    assert_eq!((status.stale, status.current), (0, status.total), "{status:?}");
    assert!(pool.store.instances().await.unwrap().iter().all(|i| i.openclaw_git_ref == "main"));
}

#[sqlx::test(migrations = "../migrations")]
async fn a_released_stale_instance_is_rebuilt_not_restored(db: PgPool) {
    let pool = sized_pool(db, 1, 4).await;
    pool.engine.tick().await.unwrap();
    pool.settled_idle(1).await;
    let id = claim(&pool.engine, "Ada").await;
    pool.settled_idle(1).await;
    pool.engine.change_pool_settings(&json!({"openclawRef": "main"}), &operator()).await.unwrap();

    assert_eq!(pool.engine.recycle(&id, &operator()).await.unwrap(), Status::Destroying);
    let reasons: Vec<(String, String)> = pool
        .store
        .events(Some(&id), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.to_status, e.reason))
        .collect();
    assert!(reasons.contains(&("destroying".into(), "rollout".into())), "{reasons:?}");
    assert!(!reasons.iter().any(|(to, _)| to == "recycling"), "never restored: {reasons:?}");
    eventually("the stale instance gone", Duration::from_secs(30), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;
    run_until_current(&pool, &pool.engine, 1, 4).await;
    assert_eq!(versions(&pool.engine).await, (1, 1));

    // A current instance released is restored as before.
    let current = claim(&pool.engine, "Bob").await;
    assert_eq!(pool.engine.recycle(&current, &operator()).await.unwrap(), Status::Recycling);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rollout_cut_off_mid_way_is_finished_by_another_process(db: PgPool) {
    let (min_idle, max_total) = (3, 5);
    let pool = sized_pool(db, min_idle as u32, max_total as u32).await;
    pool.engine.tick().await.unwrap();
    pool.settled_idle(3).await;
    pool.engine.change_pool_settings(&json!({"openclawRef": "main"}), &operator()).await.unwrap();

    // The first process starts the rollout, replaces what it can, then is gone for good.
    checked_tick(&pool, &pool.engine, min_idle, max_total).await;
    checked_tick(&pool, &pool.engine, min_idle, max_total).await;
    let (current, total) = versions(&pool.engine).await;
    assert!(current > 0 && current < total, "cut off mid-way: {current} of {total} current");

    // A new process (same database and org) carries on from the rows alone.
    let other: Arc<Engine> = pool.other_process(sized(min_idle as u32, max_total as u32), None);
    run_until_current(&pool, &other, min_idle, max_total).await;
    let status = other.rollout_status().await.unwrap();
    assert_eq!((status.current, status.stale), (status.total, 0), "{status:?}");
    assert_eq!(pool.count(Status::Idle).await, min_idle);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_full_pool_waits_for_room_rather_than_dropping_idle(db: PgPool) {
    let pool = sized_pool(db, 2, 2).await;
    pool.engine.tick().await.unwrap();
    pool.settled_idle(2).await;
    pool.engine.change_pool_settings(&json!({"openclawRef": "main"}), &operator()).await.unwrap();

    // At max total with idle at min idle there is no room to build a replacement, and
    // destroying first would drop idle below min idle: the rollout waits.
    for _ in 0..3 {
        checked_tick(&pool, &pool.engine, 2, 2).await;
    }
    assert_eq!(versions(&pool.engine).await, (0, 2));
    assert_eq!(pool.count(Status::Idle).await, 2);

    // One more instance of room and it goes through, never above the new max.
    pool.engine.change_pool_settings(&json!({"maxTotal": 3}), &operator()).await.unwrap();
    run_until_current(&pool, &pool.engine, 2, 3).await;
    assert_eq!(versions(&pool.engine).await, (2, 2));
}

/// The idle instance whose version is (or is not) the desired one.
async fn idle_of_version(pool: &Pool, current: bool) -> String {
    let desired = pool.engine.desired_version().await.unwrap();
    let idle = pool.in_status(Status::Idle).await;
    let mut matching = Vec::new();
    for instance in &idle {
        let version = pool.store.build_version(&instance.id).await.unwrap();
        if (version.as_ref() == Some(&desired)) == current {
            matching.push(instance.id.clone());
        }
    }
    assert_eq!(matching.len(), 1, "one idle instance with current = {current}: {idle:?}");
    matching.remove(0)
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claim_takes_a_current_instance_before_an_older_stale_one(db: PgPool) {
    let pool = sized_pool(db, 1, 4).await;
    pool.engine.tick().await.unwrap();
    pool.settled_idle(1).await;
    pool.engine.change_pool_settings(&json!({"openclawRef": "main"}), &operator()).await.unwrap();
    // One pass starts a replacement; the stale instance stays until the next pass, so both
    // are idle, the stale one the older.
    checked_tick(&pool, &pool.engine, 1, 4).await;
    pool.settled_idle(2).await;
    let (stale, current) = (idle_of_version(&pool, false).await, idle_of_version(&pool, true).await);
    let ready = |id: String| {
        let pool = &pool;
        async move { pool.instance(&id).await.unwrap().ready_at.unwrap() }
    };
    assert!(ready(stale.clone()).await < ready(current.clone()).await, "the stale one is older");

    // Both awake and answering: the current one goes first, though the stale one is older.
    assert_eq!(claim(&pool.engine, "Ada").await, current);
    // Only the stale one is idle now: it is taken rather than the claim refused.
    assert_eq!(claim(&pool.engine, "Bob").await, stale);
}

/// Moves the expiry of the claim `instance` serves into the past, on the instance and the
/// claim alike (a lifetime lasts at least 60 s).
async fn expire_claim_of(pool: &Pool, instance: &str) -> uuid::Uuid {
    let claim_id = pool.instance(instance).await.unwrap().claim_id.expect("a claim");
    sqlx::query("UPDATE instances SET claim_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(instance)
        .execute(pool.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE claims SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(claim_id)
        .execute(pool.store.pool())
        .await
        .unwrap();
    claim_id
}

async fn moves(pool: &Pool, id: &str) -> Vec<(String, String)> {
    let events = pool.store.events(Some(id), 50).await.unwrap();
    events.into_iter().map(|e| (e.to_status, e.reason)).collect()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_stale_instance_whose_claim_expired_is_rebuilt_and_a_current_one_restored(db: PgPool) {
    let pool = sized_pool(db, 1, 5).await;
    pool.engine.tick().await.unwrap();
    pool.settled_idle(1).await;
    let stale = claim(&pool.engine, "Ada").await;
    pool.engine.change_pool_settings(&json!({"openclawRef": "main"}), &operator()).await.unwrap();
    run_until_current(&pool, &pool.engine, 1, 5).await;
    let current = claim(&pool.engine, "Bob").await;
    let desired = pool.engine.desired_version().await.unwrap();
    assert_eq!(pool.store.build_version(&current).await.unwrap(), Some(desired));
    let claims = [expire_claim_of(&pool, &stale).await, expire_claim_of(&pool, &current).await];

    let report = pool.engine.tick().await.unwrap();
    let mut expired = report.lifetimes.expired.clone();
    expired.sort();
    let mut both = vec![stale.clone(), current.clone()];
    both.sort();
    assert_eq!(expired, both, "{report:?}");
    for claim_id in claims {
        let ended = pool.engine.claim_status(claim_id).await.unwrap().unwrap();
        assert_eq!(ended.status, shared::store::ClaimStatus::Expired, "{ended:?}");
    }

    // The stale one: destroyed (a current one is built in its place), never restored.
    let history = moves(&pool, &stale).await;
    assert!(history.contains(&("destroying".into(), "rollout".into())), "{history:?}");
    assert!(!history.iter().any(|(to, _)| to == "recycling"), "never restored: {history:?}");
    let events = pool.store.events(Some(&stale), 50).await.unwrap();
    let rebuilt = events.iter().find(|e| e.to_status == "destroying").unwrap();
    let detail = rebuilt.detail.as_deref().unwrap_or_default();
    assert!(detail.starts_with("claim_expired: the claim's lifetime ran out;"), "{detail}");
    assert!(detail.contains("rebuilt, not restored"), "{detail}");
    // The current one: restored from its golden checkpoint, as before.
    let history = moves(&pool, &current).await;
    assert!(history.contains(&("recycling".into(), "claim_expired".into())), "{history:?}");

    eventually("the stale instance gone", Duration::from_secs(30), || async {
        pool.instance(&stale).await.is_none().then_some(())
    })
    .await;
    run_until_current(&pool, &pool.engine, 1, 5).await;
    assert_eq!(pool.instance(&current).await.unwrap().status, Status::Idle, "restored to idle");
    let status = pool.engine.rollout_status().await.unwrap();
    assert_eq!((status.stale, status.current), (0, status.total), "{status:?}");
}
