//! Issue 15.2: demand-adaptive sizing. In adaptive mode the tick measures the claim rate
//! (refused claims included) and the provisioning lead time, and the refill keeps the target
//! it decides warm instead of min idle: a burst raises it at once, quiet lowers it only after
//! the cooldown and never below the floor, and the surplus shed is only ever idle instances.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use shared::config::PoolEnvironment;
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest, Engine, EngineSettings};
use shared::sizing::Tuning;
use shared::store::Status;
use sprites_emulator::EmulatorConfig;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::api::{KEY, get, send};
use crate::harness::{Options, Pool, eventually, operator, pool, pool_with, test_settings};

/// The clock compressed: demand remembered for 3 s (fast) and 6 s (slow), a target held for
/// 4 s and then halved per 4 s.
fn tuning() -> Tuning {
    Tuning {
        fast_window: Duration::from_secs(3),
        slow_window: Duration::from_secs(6),
        stockout: 0.01,
        cooldown: Duration::from_secs(4),
        step_down: 0.5,
        assumed_lead: Duration::from_secs(1),
        lead_samples: 20,
    }
}

/// Returns whether the claim got an instance (a refusal is the 503's `NoIdle`).
async fn claim(engine: &Engine, n: usize) -> bool {
    let request = ClaimRequest::new(format!("burst {n}"), "hi".into(), None, PoolEnvironment::Dev).unwrap();
    match engine.claim(request, &operator()).await {
        Ok(ClaimOutcome::Done(_)) => true,
        Err(ClaimError::NoIdle { .. }) => false,
        other => panic!("claim {n}: {other:?}"),
    }
}

async fn settled(pool: &Pool) {
    eventually("no step in flight", Duration::from_secs(30), || async {
        pool.store.instances().await.unwrap().iter().all(|i| i.step.is_none()).then_some(())
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_burst_raises_the_target_and_quiet_lowers_it_after_the_cooldown_never_below_floor(db: PgPool) {
    // A lead time of about a second: the setup script's 5 s at speed 0.1, and the rest.
    let options = Options {
        emulator: EmulatorConfig { speed: 0.1, setup_secs: 5.0, ..EmulatorConfig::default() },
        settings: EngineSettings { min_idle: 2, max_total: 30, sizing: tuning(), ..test_settings() },
        ..Options::default()
    };
    let pool = pool_with(db, options).await;
    let engine = &pool.engine;

    // Fixed mode: min idle is in force; the figures are measured all the same, nothing shed.
    let report = engine.tick().await.unwrap();
    assert_eq!(report.sizing.as_ref().map(|s| s.in_force), Some(2));
    pool.settled_idle(2).await;
    let report = engine.tick().await.unwrap();
    assert!(report.sizing.unwrap().shed.is_empty());
    let status = engine.status().await.unwrap();
    let figures = status.sizing.adaptive.expect("the tick measured");
    assert!(figures.lead_measured && figures.lead_time_seconds > 0.2, "{figures:?}");

    let patch = json!({ "mode": "adaptive", "floor": 1, "ceiling": 12 });
    engine.change_pool_settings(&patch, &operator()).await.unwrap();

    // A burst: ten claims at once against two idle instances. The refused ones are demand too.
    let taken = futures_util::future::join_all((0..10).map(|n| claim(engine, n))).await;
    let claimed = taken.iter().filter(|ok| **ok).count();
    assert!(claimed < 10, "two idle instances cannot serve ten claims at once");
    // Taken before the tick: the hold starts inside it, so the cooldown counts from later.
    let raised_at = Instant::now();
    let report = engine.tick().await.unwrap().sizing.unwrap();
    let peak = report.target;
    assert!(peak > 2, "ten claims in a moment raise the target above the old fixed 2: {report:?}");
    assert_eq!(report.in_force, peak);
    // The refill follows the target: more instances warm than the fixed count kept.
    eventually("the pool refilled above the old fixed count", Duration::from_secs(30), || async {
        let _ = engine.tick().await.unwrap();
        (pool.count(Status::Idle).await > 2).then_some(())
    })
    .await;

    // Quiet: the target holds for the cooldown, then falls, never below the floor; only idle
    // instances are shed and every claimed one stays claimed.
    let cooldown = tuning().cooldown;
    let mut lowest = peak;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let report = engine.tick().await.unwrap().sizing.unwrap();
        assert!(report.target >= 1, "below the floor: {report:?}");
        if report.target < peak {
            assert!(
                raised_at.elapsed() >= cooldown,
                "fell {:?} after the burst: {report:?}",
                raised_at.elapsed()
            );
        }
        lowest = lowest.min(report.target);
        assert_eq!(pool.count(Status::Claimed).await, claimed as i64, "a claimed instance was touched");
        if lowest == 1 && pool.count(Status::Idle).await == 1 && pool.count(Status::Destroying).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still at target {} with {} idle",
            report.target,
            pool.count(Status::Idle).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    settled(&pool).await;
    assert_eq!(pool.count(Status::Idle).await, 1, "the floor stays warm");
    let shed = sqlx::query_scalar::<_, String>(
        "SELECT coalesce(from_status, '') FROM instance_events WHERE reason = 'scale_down'",
    )
    .fetch_all(pool.store.pool())
    .await
    .unwrap();
    assert!(!shed.is_empty() && shed.iter().all(|from| from == "idle"), "{shed:?}");
}

#[sqlx::test(migrations = "../migrations")]
async fn adaptive_settings_are_validated_and_the_status_shows_the_figures(db: PgPool) {
    let pool = pool(db).await;
    let put = |body: &'static str| {
        let api = pool.api.clone();
        async move { send(&api, "PUT", "/api/pool/settings", Some(KEY), Some(body)).await }
    };
    // Stored before anyone chose: fixed, unbounded.
    let shown = get(&pool.api, "/api/pool/settings").await;
    assert_eq!(shown.body["settings"]["mode"], "fixed", "{}", shown.text);
    let cases: [(&str, &str); 5] = [
        (r#"{"mode": "auto"}"#, "mode"),
        (r#"{"floor": 5, "ceiling": 3}"#, "floor"),
        (r#"{"ceiling": 11}"#, "ceiling"),
        (r#"{"floor": -1}"#, "floor"),
        (r#"{"mode": "adaptive", "floor": 11}"#, "floor"),
    ];
    for (body, field) in cases {
        let answer = put(body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        assert!(answer.text.contains(field), "{body}: {field} not named in {}", answer.text);
    }
    let answer = put(r#"{"maxTotal": 8, "ceiling": 9}"#).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    let named: Vec<&String> = answer.body["fields"].as_object().unwrap().keys().collect();
    assert_eq!(named, ["ceiling"], "max total below the ceiling names the ceiling: {}", answer.text);

    let answer = put(r#"{"mode": "adaptive", "floor": 1, "ceiling": 6}"#).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // Before any tick: the floor is in force, nothing measured yet.
    let status = get(&pool.api, "/api/pool/status").await;
    assert_eq!(status.body["sizing"]["mode"], "adaptive", "{}", status.text);
    assert_eq!(status.body["sizing"]["inForce"], 1);
    assert!(status.body["sizing"]["adaptive"].is_null());
    pool.engine.tick().await.unwrap();
    let status = get(&pool.api, "/api/pool/status").await;
    let figures = &status.body["sizing"]["adaptive"];
    assert_eq!(figures["claimRatePerHour"], 0.0, "{}", status.text);
    assert_eq!(figures["leadMeasured"], false, "nothing built yet: the assumed lead time");
    assert_eq!(figures["target"], 1);
    assert_eq!(
        (status.body["sizing"]["floor"].clone(), status.body["sizing"]["ceiling"].clone()),
        (json!(1), json!(6))
    );
}
