//! Issue 16.1: the logs tell the story. A lifecycle on the emulator, logged through the layer
//! the local processes use with the default filter (what an operator sees without RUST_LOG),
//! every line captured: a settings change, a fill, a claim, a recycle, an agent that crashed
//! because its machine vanished, a breaker that opened and closed, an orphan deleted, and a
//! sweep pass each say so in one line; none carries a terminal colour code.
//!
//! Its own test binary: the subscriber is global, so it sees every thread of the process.

#[allow(dead_code, unused_imports)]
#[path = "engine/harness.rs"]
mod harness;
mod log_capture;

use std::sync::LazyLock;
use std::time::Duration;

use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest};
use shared::lifecycle::Actor;
use shared::logging::{DEFAULT_FILTER, readable_layer};
use shared::provider::Provider;
use shared::store::Status;
use shared::sweep_loop::{Sweep, run_forever};
use sqlx::PgPool;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use harness::{Options, eventually, pool_with};
use log_capture::Capture;

/// The one line that has every one of `parts`.
fn line_with(log: &Capture, parts: &[&str]) -> String {
    let text = log.text();
    text.lines()
        .find(|line| parts.iter().all(|part| line.contains(part)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in:\n{text}"))
        .to_string()
}

static CAPTURE: LazyLock<Capture> = LazyLock::new(|| {
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(readable_layer(EnvFilter::new(DEFAULT_FILTER), capture.writer()))
        .try_init()
        .expect("the only subscriber of this binary");
    capture
});

#[sqlx::test(migrations = "../migrations")]
async fn a_lifecycle_tells_its_story_in_the_log(db: PgPool) {
    let log = &*CAPTURE;
    // Reconcile deletes an unknown machine of this pool at once (the grace is for a machine
    // whose row is still being written).
    let settings =
        shared::engine::EngineSettings { reconcile_grace: Duration::ZERO, ..harness::test_settings() };
    let pool = pool_with(db, Options { settings, ..Options::default() }).await;

    pool.engine
        .change_pool_settings(&json!({ "maxTotal": 8 }), &Actor::Poolctl(Some("ops".into())))
        .await
        .unwrap();
    line_with(log, &["settings changed", "poolctl:ops", "maxTotal", "\"old\":10", "\"new\":8"]);

    pool.provision(2).await;
    line_with(log, &["replenish", "created=2"]);
    let idle =
        line_with(log, &["status", "from=\"provisioning\"", "to=\"idle\"", "reason=provisioned", "ms="]);
    assert!(idle.contains("instance="), "{idle}");

    let request = ClaimRequest::new("Ada".into(), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    let ClaimOutcome::Done(claimed) =
        pool.engine.claim(request, &Actor::Poolctl(Some("test".into()))).await.unwrap()
    else {
        panic!("created")
    };
    let claim = claimed.claim_id.to_string();
    let instance = claimed.instance_id.clone().unwrap();
    line_with(log, &["claim", &claim, "mode=\"create\"", "outcome=\"created\"", &instance, "ms="]);
    line_with(log, &["status", &instance, "from=\"claiming\"", "to=\"claimed\"", "reason=created"]);

    pool.engine.recycle(&instance, &Actor::Poolctl(Some("test".into()))).await.unwrap();
    pool.settled_idle(2).await;
    line_with(log, &["status", &instance, "from=\"claimed\"", "to=\"recycling\"", "reason=recycle"]);
    line_with(log, &["status", &instance, "from=\"recycling\"", "to=\"idle\"", "reason=recycled"]);

    // An agent whose machine vanished is marked crashed by reconcile: one line says so.
    let request = ClaimRequest::new("Bo".into(), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    let ClaimOutcome::Done(lost) =
        pool.engine.claim(request, &Actor::Poolctl(Some("test".into()))).await.unwrap()
    else {
        panic!("created")
    };
    let lost = pool.instance(lost.instance_id.as_deref().unwrap()).await.unwrap();
    pool.kill_sprite(&lost.sprite_name).await;
    pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    line_with(log, &["status", &lost.id, "to=\"crashed\"", "reason=machine_gone"]);

    // Creation refused three times opens the breaker; the next instance that gets to idle
    // closes it. Each is one line.
    let fault = json!({ "route": "sprites.create", "count": 3, "kind": { "type": "status", "status": 400 } });
    pool.emulator.fault(fault).await;
    pool.engine.add_instances(3, &Actor::Poolctl(Some("test".into()))).await.unwrap();
    eventually("the breaker to open", Duration::from_secs(20), || async {
        log.text().contains("circuit breaker open").then_some(())
    })
    .await;
    sqlx::query("UPDATE pool_state SET breaker_open_until = now() + interval '1 second'")
        .execute(pool.store.pool())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pool.engine.add_instances(1, &Actor::Poolctl(Some("test".into()))).await.unwrap();
    eventually("the breaker to close", Duration::from_secs(20), || async {
        log.text().contains("circuit breaker closed").then_some(())
    })
    .await;

    // A machine named for this pool that no row knows is deleted by reconcile, in one line.
    let prefix = PoolEnvironment::Dev.sprite_prefix();
    let orphan = format!("{prefix}{}-orphan000001", pool.engine.pool_id().await.unwrap());
    pool.sprites_provider().create(&orphan).await.unwrap();
    pool.engine.reconcile(&Actor::RECONCILE).await.unwrap();
    line_with(log, &["orphan deleted", &orphan]);

    // The main job's loops: one summary line per pass, saying what it did.
    let loop_task = tokio::spawn(run_forever(Sweep::Tick, Duration::from_millis(100), pool.engine.clone()));
    eventually("a tick pass line", Duration::from_secs(10), || async {
        log.text().lines().any(|l| l.contains("sweep pass") && l.contains("sweep=\"tick\"")).then_some(())
    })
    .await;
    loop_task.abort();

    let text = log.text();
    assert!(!text.contains('\u{1b}'), "no terminal colour codes outside a terminal");
    assert!(!text.contains("already exists, skipping"), "the migrations say nothing when nothing changed");
    assert!(pool.count(Status::Idle).await >= 2);
}
