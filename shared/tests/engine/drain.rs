//! Issue 15.6: `poolctl drain --idle` (the seeds' `npm run drain:all`) destroys every idle and
//! provisioning instance it found, never a claimed one, and leaves the instances the refill
//! starts meanwhile alone.

use std::time::Duration;

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::store::Status;
use sqlx::PgPool;

use crate::harness::{eventually, operator, pool};

#[sqlx::test(migrations = "../migrations")]
async fn drain_idle_takes_idle_and_provisioning_and_never_a_claim(db: PgPool) {
    let pool = pool(db).await;
    pool.provision(3).await;
    let request = ClaimRequest::new("keeper".into(), "stay".into(), None, PoolEnvironment::Dev).unwrap();
    let ClaimOutcome::Done(claimed) = pool.engine.claim(request, &operator()).await.unwrap() else {
        panic!("claim")
    };

    // Two more that stay provisioning for a while: their setup script runs 2 s (speed 1), and
    // their install step polls it, letting go of the lease between polls.
    pool.emulator.configure(json!({ "speed": 1.0, "setup_ms": 2000 })).await;
    let started = pool.engine.add_instances(2, &operator()).await.unwrap().created;
    assert_eq!(started.len(), 2);
    let targets: Vec<String> = pool
        .store
        .instances()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| matches!(i.status, Status::Idle | Status::Provisioning))
        .map(|i| i.id)
        .collect();
    assert_eq!(targets.len(), 4, "2 idle and 2 provisioning");

    // As poolctl does it: again and again until no target is held by a running step.
    eventually("every target draining", Duration::from_secs(30), || async {
        pool.engine.drain_unclaimed(&targets, &operator()).await.unwrap().is_empty().then_some(())
    })
    .await;

    eventually("every target gone", Duration::from_secs(30), || async {
        let mut gone = true;
        for id in &targets {
            gone &= pool.instance(id).await.is_none();
        }
        gone.then_some(())
    })
    .await;
    let kept =
        pool.instance(claimed.instance_id.as_deref().unwrap()).await.expect("the claimed instance stays");
    assert_eq!(kept.status, Status::Claimed);
    // A provisioning instance is drained once its running step lets go, or when it reaches idle.
    for id in &targets {
        let events = pool.store.events(Some(id), 50).await.unwrap();
        assert!(events.iter().any(|e| e.reason == "drain"), "{id} was drained: {events:?}");
    }
    assert!(started.iter().all(|id| targets.contains(id)));
}
