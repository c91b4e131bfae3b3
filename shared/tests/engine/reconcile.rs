//! Reconcile in both directions: rows whose Sprite is gone, Sprites no row knows.

use std::time::Duration;

use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::lifecycle::Actor;
use shared::store::Status;
use sqlx::PgPool;

use crate::harness::{Options, operator, pool, pool_with, test_settings};

#[sqlx::test(migrations = "../migrations")]
async fn rows_whose_sprite_is_gone_are_removed_or_marked_crashed(db: PgPool) {
    let pool = pool(db).await;
    let idle = pool.provision(3).await;
    let request = ClaimRequest::new("Ada".into(), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    let ClaimOutcome::Done(result) = pool.engine.claim(request, &operator()).await.unwrap() else { panic!() };
    let claimed_id = result.instance_id.unwrap();
    let claimed = pool.instance(&claimed_id).await.unwrap();
    let lost_idle = idle.iter().find(|i| i.id != claimed_id).unwrap();

    pool.kill_sprite(&claimed.sprite_name).await;
    pool.kill_sprite(&lost_idle.sprite_name).await;
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert_eq!(report.listed, 1);
    assert_eq!(report.rows_removed, vec![lost_idle.id.clone()]);
    assert_eq!(report.marked_crashed, vec![claimed_id.clone()]);
    assert!(pool.instance(&lost_idle.id).await.is_none());
    assert_eq!(pool.instance(&claimed_id).await.unwrap().status, Status::Crashed);
    assert_eq!(pool.count(Status::Idle).await, 1);
    // Nothing left to do the second time.
    let again = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert!(again.rows_removed.is_empty() && again.marked_crashed.is_empty());
}

#[sqlx::test(migrations = "../migrations")]
async fn sprites_no_row_knows_are_deleted_after_the_grace_period(db: PgPool) {
    let mut settings = test_settings();
    settings.reconcile_grace = Duration::from_millis(1500);
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;
    let known = pool.provision(1).await.pop().unwrap();
    // An orphan of this pool carries its pool id (naming.rs; other names: tests/engine/pool_id.rs).
    let orphan = format!("convos-agent-dev-{}-orphan1", pool.engine.pool_id().await.unwrap());
    pool.emulator.sprite(&orphan).await;
    pool.emulator.sprite("convos-agent-staging-other").await;
    pool.emulator.sprite("someone-elses-sprite").await;

    // Young orphans wait: they may be an instance whose row is being written right now.
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert_eq!(report.orphans_waiting, vec![orphan.clone()]);
    assert!(report.orphans_deleted.is_empty());

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert_eq!(report.orphans_deleted, vec![orphan.clone()]);
    let mut expected = vec![
        known.sprite_name.clone(),
        "convos-agent-staging-other".to_string(),
        "someone-elses-sprite".to_string(),
    ];
    expected.sort();
    assert_eq!(pool.sprite_names().await, expected, "other environments and other names untouched");
    assert_eq!(pool.count(Status::Idle).await, 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failed_listing_changes_nothing(db: PgPool) {
    let pool = pool(db).await;
    let idle = pool.provision(1).await.pop().unwrap();
    pool.emulator
        .fault(crate::harness::fault_json(
            "sprites.list",
            serde_json::json!({"type": "status", "status": 500}),
        ))
        .await;
    pool.kill_sprite(&idle.sprite_name).await;
    let report = pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    assert!(report.rows_removed.is_empty() && report.listed == 0);
    assert!(pool.instance(&idle.id).await.is_some());
}
