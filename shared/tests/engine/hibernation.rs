//! Idle instances that sleep (issue 17): the heartbeat keeps `hotIdle` awake, a claim wakes
//! and verifies a sleeping one, `maxRunning` and the provider's running limit are
//! back-pressure, and the rare check of a sleeping instance finds a dead one.

use std::time::Duration;

use serde_json::{Value, json};
use shared::config::PoolEnvironment;
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest};
use shared::store::Status;
use sprites_emulator::EmulatorConfig;
use sqlx::PgPool;

use crate::harness::{Options, Pool, eventually, operator, pool_with, test_settings};

/// Quick provisioning, Sprites that pause after `pause` s and go cold as fast, and a gateway
/// that takes ~100 ms to boot again after a cold wake.
fn sleepy(pause: f64) -> Options {
    let mut settings = test_settings();
    settings.sprite_idle_pause = Duration::from_secs_f64(pause);
    settings.wake_budget = Duration::from_secs(2);
    Options {
        emulator: EmulatorConfig {
            speed: 0.05,
            setup_secs: 2.0,
            idle_pause_secs: pause,
            cold_after_secs: pause,
            ..EmulatorConfig::default()
        },
        settings,
        ..Options::default()
    }
}

fn create(name: &str) -> ClaimRequest {
    ClaimRequest::new(name.into(), "hi".into(), None, PoolEnvironment::Dev).unwrap()
}

async fn settings(pool: &Pool, patch: Value) {
    pool.engine.change_pool_settings(&patch, &operator()).await.unwrap();
}

async fn lifecycle(pool: &Pool) -> Value {
    let url = format!("{}/_emulator/lifecycle", pool.emulator.emulator.base_url());
    pool.emulator.raw().get(url).send().await.unwrap().json().await.unwrap()
}

async fn hot(pool: &PgPool, id: &str) -> bool {
    sqlx::query_scalar("SELECT hot FROM instances WHERE id = $1").bind(id).fetch_one(pool).await.unwrap()
}

/// History lines with any of these reasons.
async fn events_for(db: &PgPool, reasons: &[&str]) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM instance_events WHERE reason = ANY($1)")
        .bind(reasons)
        .fetch_one(db)
        .await
        .unwrap()
}

/// The pool last touched these instances two hours ago: their rare check is due.
async fn checked_long_ago(db: &PgPool, ids: &[&str]) {
    sqlx::query(
        "UPDATE instances SET ready_at = now() - interval '2 hours',
                last_heartbeat_at = now() - interval '2 hours' WHERE id = ANY($1)",
    )
    .bind(ids)
    .execute(db)
    .await
    .unwrap();
}

fn created(outcome: ClaimOutcome) -> String {
    match outcome {
        ClaimOutcome::Done(result) => result.instance_id.expect("an instance"),
        other => panic!("expected a created claim, got {other:?}"),
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn only_hot_idle_are_pinged_and_a_claim_wakes_a_cold_one_verified(db: PgPool) {
    let pool = pool_with(db.clone(), sleepy(0.3)).await;
    let instances = pool.provision(3).await;
    settings(&pool, json!({ "hotIdle": 1 })).await;

    let report = pool.engine.heartbeat().await.unwrap();
    assert_eq!(report.pinged, 1, "only the hot instance is pinged: {report:?}");
    let status = crate::api::get(&pool.api, "/api/pool/status").await;
    assert_eq!(status.body["running"]["hotIdle"], 1, "{}", status.text);
    assert_eq!(status.body["running"]["busy"], 0, "{}", status.text);
    let hot_ones: Vec<bool> = futures_util::future::join_all(instances.iter().map(|i| hot(&db, &i.id))).await;
    assert_eq!(hot_ones.iter().filter(|h| **h).count(), 1);
    // The one a claim takes first (the longest idle) is the hot one.
    let oldest =
        instances.iter().position(|i| i.ready_at == instances.iter().filter_map(|i| i.ready_at).min());
    assert!(hot_ones[oldest.unwrap()], "{hot_ones:?}");

    // Nothing talks to them now: every Sprite pauses, then goes cold.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let state = lifecycle(&pool).await;
    for instance in &instances {
        assert_eq!(state["sprites"][&instance.sprite_name]["status"], "cold", "{state}");
    }

    // Each claim wakes a cold Sprite whose gateway must boot again: the claim waits for it
    // (a create sent at once would meet a gateway still booting) and succeeds.
    let first = created(pool.engine.claim(create("Ada"), &operator()).await.unwrap());
    let second = created(pool.engine.claim(create("Bob"), &operator()).await.unwrap());
    assert_ne!(first, second);
    let state = lifecycle(&pool).await;
    let cold_wakes: u64 =
        instances.iter().map(|i| state["sprites"][&i.sprite_name]["cold_wakes"].as_u64().unwrap_or(0)).sum();
    assert!(cold_wakes >= 2, "{state}");
    // Each wake is in the audit trail, the claim's caller named (issue 16.2).
    for id in [&first, &second] {
        let lines = pool.store.events(Some(id), 50).await.unwrap();
        let wake = lines.iter().find(|e| e.kind == "wake").unwrap_or_else(|| panic!("{lines:#?}"));
        assert_eq!((wake.reason.as_str(), wake.actor.as_str()), ("claim", "poolctl:test"));
    }
    // The one left idle became hot in place of those taken.
    let left = pool.in_status(Status::Idle).await;
    assert_eq!(left.len(), 1);
    assert!(hot(&db, &left[0].id).await);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_running_limit_is_back_pressure_never_a_failure(db: PgPool) {
    let mut options = sleepy(0.3);
    options.emulator.running_limit = Some(2);
    let pool = pool_with(db.clone(), options).await;
    settings(&pool, json!({ "minIdle": 5, "maxTotal": 10, "hotIdle": 0, "maxRunning": 2 })).await;

    // Two machines at a time: the others are created as sleeping ones free their place.
    eventually("5 idle within a running limit of 2", Duration::from_secs(60), || async {
        pool.engine.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        (pool.count(Status::Idle).await == 5).then_some(())
    })
    .await;
    let breaker = pool.store.breaker().await.unwrap();
    assert_eq!((breaker.consecutive_failures, breaker.open_until), (0, None));
    assert_eq!(events_for(&db, &["step_failed", "provisioning_failed"]).await, 0, "no creation failed");

    // Now Sprites stay up a minute after use: two claims fill the account's running limit, a
    // third finds every idle instance asleep and the provider refusing the wake. It is a 503
    // with the instance handed back untouched, not a failure.
    eventually("every Sprite paused", Duration::from_secs(10), || async {
        (lifecycle(&pool).await["running_count"] == 0).then_some(())
    })
    .await;
    pool.emulator.configure(json!({ "idle_pause_ms": 60_000 })).await;
    created(pool.engine.claim(create("Ada"), &operator()).await.unwrap());
    created(pool.engine.claim(create("Bob"), &operator()).await.unwrap());
    let err = pool.engine.claim(create("Cy"), &operator()).await.unwrap_err();
    assert!(matches!(err, ClaimError::NoIdle { .. }), "{err:?}");
    assert_eq!(pool.count(Status::Idle).await, 3, "the instance it took is idle again");
    assert_eq!(events_for(&db, &["wake_refused"]).await, 1);
    assert_eq!(pool.count(Status::Recycling).await + pool.count(Status::Destroying).await, 0);
}

/// The target: 20 idle within an account limit of 10 running Sprites.
#[sqlx::test(migrations = "../migrations")]
async fn twenty_idle_fill_within_a_running_limit_of_ten(db: PgPool) {
    let mut options = sleepy(0.3);
    options.emulator.running_limit = Some(10);
    options.settings.max_total = 30;
    let pool = pool_with(db.clone(), options).await;
    let patch = json!({ "minIdle": 20, "maxTotal": 30, "hotIdle": 1, "maxRunning": 10 });
    settings(&pool, patch).await;
    eventually("20 idle within a running limit of 10", Duration::from_secs(90), || async {
        pool.engine.tick().await.unwrap();
        pool.engine.heartbeat().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        (pool.count(Status::Idle).await == 20).then_some(())
    })
    .await;
    let breaker = pool.store.breaker().await.unwrap();
    assert_eq!((breaker.consecutive_failures, breaker.open_until), (0, None));
    let failed = ["step_failed", "provisioning_failed", "heartbeat_failed"];
    assert_eq!(events_for(&db, &failed).await, 0, "nothing failed on the way");
    // One that became idle since the last pass is still hot (awake anyway after its build):
    // the next pass lets it sleep.
    pool.engine.heartbeat().await.unwrap();
    let hot: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE status = 'idle' AND hot")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(hot, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_rare_check_finds_a_dead_sleeping_instance_and_replaces_it(db: PgPool) {
    let pool = pool_with(db.clone(), sleepy(0.3)).await;
    settings(&pool, json!({ "minIdle": 2, "hotIdle": 0 })).await;
    pool.engine.tick().await.unwrap();
    let instances = pool.settled_idle(2).await;
    let (dead, fine) = (&instances[0], &instances[1]);
    pool.gateway_down(&dead.sprite_name, false).await;
    checked_long_ago(&db, &[&dead.id]).await;

    let first = pool.engine.heartbeat().await.unwrap();
    assert_eq!(first.pinged, 1, "only the due check: {first:?}");
    assert_eq!(first.woken, vec![dead.id.clone()], "one failed check is enough to act");
    let mut destroyed = false;
    for _ in 0..20 {
        let report = pool.engine.heartbeat().await.unwrap();
        assert!(report.pinged <= 1, "the healthy sleeping one is left asleep: {report:?}");
        if report.destroyed.contains(&dead.id) {
            destroyed = true;
            break;
        }
    }
    assert!(destroyed, "the dead instance is given up");
    // The rare check of the healthy one, when due, wakes it: a `wake` line of the heartbeat.
    checked_long_ago(&db, &[&fine.id]).await;
    pool.engine.heartbeat().await.unwrap();
    let lines = pool.store.events(Some(&fine.id), 50).await.unwrap();
    let wake = lines.iter().find(|e| e.kind == "wake").unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!((wake.reason.as_str(), wake.actor.as_str()), ("sleeping_check", "sweep:heartbeat"));
    eventually("the pool back at 2 idle", Duration::from_secs(30), || async {
        pool.engine.tick().await.unwrap();
        let idle = pool.in_status(Status::Idle).await;
        (idle.len() == 2 && idle.iter().all(|i| i.id != dead.id)).then_some(())
    })
    .await;
    assert!(pool.instance(&fine.id).await.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claim_racing_a_sleeping_check_gets_a_clean_instance(db: PgPool) {
    let pool = pool_with(db.clone(), sleepy(0.3)).await;
    let instances = pool.provision(2).await;
    settings(&pool, json!({ "hotIdle": 0 })).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
    checked_long_ago(&db, &ids).await;

    let actor = operator();
    let (beat, ada, bob) = tokio::join!(
        pool.engine.heartbeat(),
        pool.engine.claim(create("Ada"), &actor),
        pool.engine.claim(create("Bob"), &actor),
    );
    let beat = beat.unwrap();
    let (ada, bob) = (created(ada.unwrap()), created(bob.unwrap()));
    assert_ne!(ada, bob);
    assert!(beat.recycled.is_empty() && beat.destroyed.is_empty(), "{beat:?}");
    assert_eq!(pool.count(Status::Claimed).await, 2);
}

/// The hot-idle statement (like the heartbeat's answers) updates idle rows; a claim meeting
/// them locked waits the few ms for them rather than answering 503 with an idle instance there.
#[sqlx::test(migrations = "../migrations")]
async fn a_claim_waits_for_an_idle_row_a_sweep_has_locked(db: PgPool) {
    let pool = pool_with(db.clone(), sleepy(30.0)).await;
    let instance = pool.provision(1).await.pop().unwrap();
    let mut sweep = db.begin().await.unwrap();
    sqlx::query("UPDATE instances SET hot = false WHERE id = $1")
        .bind(&instance.id)
        .execute(&mut *sweep)
        .await
        .unwrap();
    let engine = pool.engine.clone();
    let claim = tokio::spawn(async move { engine.claim(create("Ada"), &operator()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the claim waits for the row");
    sweep.commit().await.unwrap();
    assert_eq!(created(claim.await.unwrap().unwrap()), instance.id);
}
