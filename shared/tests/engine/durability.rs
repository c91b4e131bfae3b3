//! Work survives the process doing it: leases expire and the tick resumes, installs outlive
//! their socket, chains stop at the hop bound, stuck and failing instances are given up.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use shared::chain::TickOnlyChain;
use shared::provider::Provider;
use shared::store::{Status, Step};
use sprites_emulator::EmulatorConfig;
use sqlx::PgPool;

use crate::harness::{Options, eventually, fault_json, operator, pool, pool_with, test_settings};

#[sqlx::test(migrations = "../migrations")]
async fn a_worker_dying_mid_create_is_resumed_without_a_second_sprite(db: PgPool) {
    let mut settings = test_settings();
    settings.lease_ttl = Duration::from_millis(300);
    let pool = pool_with(db, Options { settings: settings.clone(), ..Options::default() }).await;

    // The other process records the new instance, takes the create step and gets as far as
    // creating the Sprite; it dies before writing anything down.
    let dead = pool.other_process(settings, Some(Arc::new(TickOnlyChain)));
    let id = dead.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    let (_, row) = pool
        .store
        .take_lease(&id, "dead-worker", Duration::from_millis(300), 0, operator())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.step, Some(Step::Create));
    pool.emulator.sprite(&row.sprite_name).await;
    assert!(
        pool.store
            .take_lease(&id, "live-worker", Duration::from_secs(1), 0, operator())
            .await
            .unwrap()
            .is_none()
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    let report = pool.engine.tick().await.unwrap();
    assert_eq!(report.redriven, 1, "{report:?}");
    pool.settled_idle(1).await;

    assert_eq!(pool.sprite_names().await, vec![row.sprite_name.clone()], "adopted, not duplicated");
    assert_eq!(pool.emulator.count("sprites.create").await, 2, "the retry met 'already exists'");
    let idle = pool.instance(&id).await.unwrap();
    assert!(idle.url.is_some() && idle.golden_checkpoint_id.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn an_install_outlives_the_run_that_started_it(db: PgPool) {
    let mut settings = test_settings();
    settings.install_wait = Duration::from_millis(200);
    settings.install_poll = Duration::from_millis(100);
    // Setup takes 1.5 s; everything else is near instant.
    let emulator = EmulatorConfig { speed: 0.001, setup_secs: 1500.0, ..EmulatorConfig::default() };
    let pool = pool_with(db, Options { settings, emulator, ..Options::default() }).await;

    pool.engine.add_instances(1, &operator()).await.unwrap();
    pool.settled_idle(1).await;
    // The first run gave up waiting after 200 ms and dropped its socket; later runs found the
    // script still running, then its marker. It ran once.
    assert_eq!(pool.emulator.count("exec").await, 1);
    assert!(pool.emulator.count("exec.sessions").await >= 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn chains_stop_at_the_hop_bound_and_the_tick_carries_on(db: PgPool) {
    let mut settings = test_settings();
    settings.hop_limit = 3;
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;

    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    let stalled = eventually("the chain to stop", Duration::from_secs(5), || async {
        let row = pool.instance(&id).await.unwrap();
        (row.step == Some(Step::StartGateway) && row.lease_owner.is_none()).then_some(row)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pool.instance(&id).await.unwrap().step, stalled.step, "nothing runs past the bound");

    for _ in 0..5 {
        pool.engine.tick().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.settled_idle(1).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn stuck_provisioning_is_destroyed_and_counted(db: PgPool) {
    let mut settings = test_settings();
    settings.stuck_timeout = Duration::from_millis(500);
    settings.install_wait = Duration::from_millis(50);
    settings.install_poll = Duration::from_millis(50);
    // An install that would take 100 s.
    let emulator = EmulatorConfig { speed: 0.001, setup_secs: 100_000.0, ..EmulatorConfig::default() };
    let pool = pool_with(db, Options { settings, emulator, ..Options::default() }).await;

    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let report = eventually("the tick to catch the stuck instance", Duration::from_secs(5), || async {
        let report = pool.engine.tick().await.unwrap();
        (!report.stuck_destroyed.is_empty()).then_some(report)
    })
    .await;
    assert_eq!(report.stuck_destroyed, vec![id.clone()]);
    eventually("the instance to go", Duration::from_secs(5), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;
    assert!(pool.sprite_names().await.is_empty(), "its Sprite was deleted");
    assert_eq!(pool.store.breaker().await.unwrap().consecutive_failures, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_step_failing_past_its_attempts_destroys_the_instance(db: PgPool) {
    let pool = pool(db).await;
    pool.emulator
        .fault(fault_json("checkpoints.create", json!({"type": "stream_error", "message": "disk full"})))
        .await;
    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    eventually("the instance to be given up", Duration::from_secs(10), || async {
        pool.instance(&id).await.is_none().then_some(())
    })
    .await;
    assert!(pool.sprite_names().await.is_empty());
    let events = pool.store.events(Some(&id), 50).await.unwrap();
    let failures = events.iter().filter(|e| e.reason == "step_failed").count();
    assert_eq!(failures, 2, "two retries, then the third failure gives up");
    let given_up = events.iter().find(|e| e.reason == "provisioning_failed").unwrap();
    assert!(given_up.detail.as_deref().unwrap().contains("disk full"));
    let breaker = pool.store.breaker().await.unwrap();
    assert_eq!(breaker.consecutive_failures, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failed_restore_falls_back_to_destroy(db: PgPool) {
    let pool = pool(db).await;
    let idle = pool.provision(1).await;
    pool.emulator.fault(fault_json("checkpoints.restore", json!({"type": "status", "status": 500}))).await;
    assert_eq!(pool.engine.recycle(&idle[0].id, &operator()).await.unwrap(), Status::Recycling);
    eventually("the instance to be destroyed", Duration::from_secs(10), || async {
        pool.instance(&idle[0].id).await.is_none().then_some(())
    })
    .await;
    assert!(pool.sprite_names().await.is_empty());
    let events = pool.store.events(Some(&idle[0].id), 50).await.unwrap();
    assert!(events.iter().any(|e| e.reason == "recycle_failed"));
}

#[sqlx::test(migrations = "../migrations")]
async fn the_golden_checkpoint_is_found_again_by_its_comment(db: PgPool) {
    let pool = pool(db).await;
    let name = pool.emulator.sprite("convos-agent-dev-golden1").await;
    let provider = pool.sprites_provider();
    let first = provider.checkpoint(&name, "golden:golden1").await.unwrap();
    let again = provider.checkpoint(&name, "golden:golden1").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(pool.emulator.client.list_checkpoints(&name).await.unwrap().len(), 1);
    // Destroy is idempotent: a Sprite already gone is success.
    provider.destroy(&name).await.unwrap();
    provider.destroy(&name).await.unwrap();
}

#[sqlx::test(migrations = "../migrations")]
async fn a_long_step_keeps_its_lease_and_is_never_run_twice(db: PgPool) {
    let mut settings = test_settings();
    settings.lease_ttl = Duration::from_millis(300);
    settings.install_wait = Duration::from_secs(3);
    // One install run waits out the whole 1.5 s setup, five lease lengths.
    let emulator = EmulatorConfig { speed: 0.001, setup_secs: 1500.0, ..EmulatorConfig::default() };
    let pool = pool_with(db, Options { settings, emulator, ..Options::default() }).await;

    let id = pool.engine.add_instances(1, &operator()).await.unwrap().created.pop().unwrap();
    eventually("the install to start", Duration::from_secs(5), || async {
        (pool.instance(&id).await.unwrap().step == Some(Step::Install)).then_some(())
    })
    .await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let row = pool.instance(&id).await.unwrap();
        if row.step != Some(Step::Install) {
            break;
        }
        assert!(
            pool.store
                .take_lease(&id, "intruder", Duration::from_secs(1), 0, operator())
                .await
                .unwrap()
                .is_none()
        );
    }
    pool.settled_idle(1).await;
    assert_eq!(pool.emulator.count("exec").await, 1, "one install run");
    // Looked for a running install once, before starting it; never had to look again.
    assert_eq!(pool.emulator.count("exec.sessions").await, 1, "the run never gave up waiting");
}
