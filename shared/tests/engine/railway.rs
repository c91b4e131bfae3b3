//! The pool on Railway (emulated): provisioning as one commit with volume and domain, readiness
//! through `/pool/health`, claims through the runtime's gateway routes, recycle as replacement,
//! one batched listing per tick, failed deployments acted on, volumes deleted before services.

use std::time::Duration;

use serde_json::{Value, json};
use shared::config::PoolEnvironment;
use shared::engine::{ClaimOutcome, ClaimRequest, EngineSettings};
use shared::lifecycle::EventKind;
use shared::provider::Provider;
use shared::store::Status;
use sqlx::PgPool;

use crate::harness::{
    Backend, Options, Pool, RAILWAY_IMAGE, eventually, operator, pool_with, railway_client, test_settings,
};

async fn railway_pool(db: PgPool) -> Pool {
    pool_with(db, Options { backend: Backend::Railway, ..Options::default() }).await
}

/// The emulator's Railway state: services (with variable names), volumes.
async fn railway_state(pool: &Pool) -> Value {
    let url = format!("{}/_emulator/railway/state", pool.emulator.emulator.base_url());
    pool.emulator.raw().get(url).send().await.unwrap().json().await.unwrap()
}

fn services(state: &Value) -> Vec<Value> {
    state["services"].as_array().cloned().unwrap_or_default()
}

fn service_named<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["services"].as_array()?.iter().find(|s| s["name"] == name)
}

async fn control(pool: &Pool, path: &str, body: Value) {
    let url = format!("{}/_emulator/railway/{path}", pool.emulator.emulator.base_url());
    let response = pool.emulator.raw().post(url).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.text().await.unwrap());
}

fn create(name: &str) -> ClaimRequest {
    ClaimRequest::new(name.into(), "be helpful".into(), None, PoolEnvironment::Dev).unwrap()
}

#[sqlx::test(migrations = "../migrations")]
async fn provisions_with_one_commit_a_volume_and_a_domain(db: PgPool) {
    let pool = railway_pool(db).await;
    let idle = pool.provision(2).await;
    let state = railway_state(&pool).await;
    assert_eq!(services(&state).len(), 2, "{state}");
    for instance in &idle {
        let service = service_named(&state, &instance.sprite_name).expect("a service per instance");
        assert_eq!(service["image"], RAILWAY_IMAGE);
        let vars: Vec<&str> =
            service["variables"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for name in [
            "GATEWAY_TOKEN",
            "INSTANCE_ID",
            "XMTP_ENV",
            "POOL_ENVIRONMENT",
            "ANTHROPIC_API_KEY",
            "RUNTIME_TYPE",
        ] {
            assert!(vars.contains(&name), "{name} missing from {vars:?}");
        }
        // The pool server's command, or nothing would answer /pool/health.
        assert_eq!(service["startCommand"], shared::provider::POOL_SERVER_START_COMMAND);
        // No inbox here, so no email credential either.
        assert!(service["emailCredential"].is_null(), "{service}");
        assert_eq!(service["volumeIds"].as_array().map(Vec::len), Some(1), "{service}");
        assert_eq!(service["deployments"].as_array().map(Vec::len), Some(1), "one deploy: {service}");
        assert!(instance.url.as_deref().unwrap().contains("/_railway/"), "{:?}", instance.url);
        assert_eq!(instance.provider, "railway");
        assert!(instance.golden_checkpoint_id.is_none());
    }
    // Every Railway request said who we are.
    assert_eq!(state["userAgents"], json!([shared::USER_AGENT]), "{state}");
    // Image, start command, limits and variables went in one commit per instance.
    assert_eq!(pool.emulator.count("railway.environmentPatchCommit").await, 2);
    assert_eq!(pool.emulator.count("railway.variableCollectionUpsert").await, 0);
    // No Sprites call at all.
    assert_eq!(pool.emulator.count("sprites.create").await, 0);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_claim_binds_the_runtime_and_a_recycle_replaces_the_instance(db: PgPool) {
    let pool = railway_pool(db).await;
    let first = pool.provision(1).await.pop().unwrap();
    let ClaimOutcome::Done(result) = pool.engine.claim(create("railway agent"), &operator()).await.unwrap()
    else {
        panic!("a create claim finishes in the request");
    };
    assert_eq!(result.instance_id.as_deref(), Some(first.id.as_str()));
    assert!(result.invite_url.as_deref().unwrap().starts_with("https://dev.convos.org/"));
    let (code, status) =
        pool.gateway_status(&pool.instance(&first.id).await.unwrap(), &first.gateway_token).await;
    assert_eq!(code, 200);
    assert!(!status["conversation"].is_null(), "{status}");

    // Railway has no checkpoints: a recycle destroys the service (volume first) and the
    // pool makes a fresh instance in its place.
    let moved = pool.engine.recycle(&first.id, &operator()).await.unwrap();
    assert_eq!(moved, Status::Destroying);
    eventually("the old instance gone", Duration::from_secs(20), || async {
        pool.instance(&first.id).await.is_none().then_some(())
    })
    .await;
    let state = railway_state(&pool).await;
    assert!(service_named(&state, &first.sprite_name).is_none(), "{state}");
    assert_eq!(state["volumes"].as_array().map(Vec::len), Some(0), "a volume outlived its service: {state}");
    pool.engine.add_instances(1, &operator()).await.unwrap();
    let fresh = pool.settled_idle(1).await.pop().unwrap();
    assert_ne!(fresh.id, first.id);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_tick_costs_one_railway_call_however_large_the_pool(db: PgPool) {
    let mut settings = test_settings();
    settings.min_idle = 0;
    let pool = pool_with(db, Options { backend: Backend::Railway, settings, ..Options::default() }).await;
    let mut per_tick = Vec::new();
    for size in [1, 6] {
        let have = pool.store.instances().await.unwrap().len();
        pool.engine.add_instances((size - have) as u32, &operator()).await.unwrap();
        pool.settled_idle(size as i64).await;
        let before = railway_calls(&pool).await;
        let report = pool.engine.tick().await.unwrap();
        assert_eq!(
            report.observed.as_ref().map(|o| o.listed),
            Some(pool.store.instances().await.unwrap().len())
        );
        per_tick.push(railway_calls(&pool).await - before);
    }
    assert_eq!(per_tick, vec![1, 1], "Railway calls per tick at 1 and 6 instances");
}

async fn railway_calls(pool: &Pool) -> u64 {
    let url = format!("{}/_emulator/counters", pool.emulator.emulator.base_url());
    let counters: Value = pool.emulator.raw().get(url).send().await.unwrap().json().await.unwrap();
    counters
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with("railway.") && route.as_str() != "railway.runtime")
        .map(|(_, n)| n.as_u64().unwrap())
        .sum()
}

#[sqlx::test(migrations = "../migrations")]
async fn failed_deployments_replace_idle_instances_and_mark_claimed_ones_crashed(db: PgPool) {
    let pool = railway_pool(db).await;
    let idle = pool.provision(2).await;
    let ClaimOutcome::Done(claimed) = pool.engine.claim(create("doomed"), &operator()).await.unwrap() else {
        panic!()
    };
    let claimed_id = claimed.instance_id.unwrap();
    let spare = idle.iter().find(|i| i.id != claimed_id).unwrap();
    let claimed_row = idle.iter().find(|i| i.id == claimed_id).unwrap();
    for instance in [spare, claimed_row] {
        let id = service_id(&pool, &instance.sprite_name).await;
        control(&pool, &format!("services/{id}/crash"), json!({})).await;
    }
    let report = pool.engine.tick().await.unwrap();
    let observed = report.observed.unwrap();
    assert_eq!(observed.destroyed, vec![spare.id.clone()]);
    assert_eq!(observed.crashed, vec![claimed_id.clone()]);
    assert_eq!(pool.instance(&claimed_id).await.unwrap().status, Status::Crashed);
    eventually("the crashed spare destroyed", Duration::from_secs(20), || async {
        pool.instance(&spare.id).await.is_none().then_some(())
    })
    .await;
}

async fn service_id(pool: &Pool, name: &str) -> String {
    let state = railway_state(pool).await;
    service_named(&state, name).unwrap()["id"].as_str().unwrap().to_string()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_deployment_that_never_becomes_ready_is_destroyed_by_the_stuck_rule(db: PgPool) {
    let mut settings = test_settings();
    settings.stuck_timeout = Duration::from_millis(1500);
    settings.ready_timeout = Duration::from_secs(600);
    // Short polls with long gaps, so the tick finds the row between two of them.
    settings.ready_wait = Duration::from_millis(50);
    settings.ready_poll = Duration::from_millis(400);
    let pool = pool_with(db, Options { backend: Backend::Railway, settings, ..Options::default() }).await;
    let url = format!("{}/_emulator/railway/config", pool.emulator.emulator.base_url());
    // Deploy times scale with the emulator's speed: a tiny speed and a huge deploy time make
    // a deployment that takes an hour while every other call stays instant.
    let response =
        pool.emulator.raw().put(url).json(&json!({"deployMs": 3_600_000_000u64})).send().await.unwrap();
    assert!(response.status().is_success());
    pool.emulator.configure(json!({"speed": 0.001})).await;
    let refill = pool.engine.add_instances(1, &operator()).await.unwrap();
    let id = refill.created[0].clone();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    // The tick takes it between two polls of await_ready (a running step holds the lease).
    eventually("the tick to find it stuck", Duration::from_secs(10), || async {
        pool.engine.tick().await.unwrap().stuck_destroyed.contains(&id).then_some(())
    })
    .await;
    eventually("the stuck instance gone with its service", Duration::from_secs(20), || async {
        let gone = pool.instance(&id).await.is_none();
        (gone && services(&railway_state(&pool).await).is_empty()).then_some(())
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn rate_limits_are_waited_out(db: PgPool) {
    let pool = railway_pool(db).await;
    pool.emulator
        .fault(json!({"route": "railway.serviceCreate", "count": 1, "kind": {"type": "rate_limit", "retry_after_secs": 1}}))
        .await;
    pool.emulator
        .fault(
            json!({"route": "railway.volumeCreate", "count": 1, "kind": {"type": "status", "status": 429}}),
        )
        .await;
    pool.provision(1).await;
    assert_eq!(pool.emulator.count("railway.serviceCreate").await, 2);
    assert!(pool.emulator.count("railway.volumeCreate").await >= 2);
}

#[sqlx::test(migrations = "../migrations")]
async fn create_adopts_its_earlier_service_and_removes_duplicates(db: PgPool) {
    let pool = railway_pool(db).await;
    let client = railway_client(&pool.emulator);
    let name = "convos-agent-dev-adopt1";
    // Two services of one name: a create whose answer was lost, then its retry.
    let first = client.create_service(name).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.create_service(name).await.unwrap();
    let provider = crate::harness::railway_provider_for(&pool.emulator);
    let machine = provider.create(name).await.unwrap();
    assert_eq!(machine.provider_ref.as_deref(), Some(first.as_str()));
    let again = provider.create(name).await.unwrap();
    assert_eq!(again.provider_ref, machine.provider_ref);
    assert_eq!(again.url, machine.url);
    let state = railway_state(&pool).await;
    assert_eq!(services(&state).len(), 1, "{state}");
    assert_eq!(state["volumes"].as_array().map(Vec::len), Some(1), "{state}");

    provider.destroy(name).await.unwrap();
    provider.destroy(name).await.unwrap();
    let state = railway_state(&pool).await;
    assert!(services(&state).is_empty() && state["volumes"].as_array().is_some_and(Vec::is_empty), "{state}");
}

#[sqlx::test(migrations = "../migrations")]
async fn each_instance_gets_an_email_key_scoped_to_its_own_inbox(db: PgPool) {
    let pool =
        pool_with(db, Options { backend: Backend::Railway, resources: true, ..Options::default() }).await;
    let idle = pool.provision(2).await;
    let state = railway_state(&pool).await;
    let base = pool.emulator.emulator.base_url();
    let org = pool.emulator.emulator.config().agentmail_key.clone();
    for instance in &idle {
        let service = service_named(&state, &instance.sprite_name).unwrap();
        let vars: Vec<&str> =
            service["variables"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(vars.contains(&"AGENTMAIL_INBOX_ID") && vars.contains(&"AGENTMAIL_API_KEY"), "{vars:?}");
        // The runtime checked it: a key for this inbox only, not the organisation's.
        assert_eq!(service["emailCredential"], "inbox", "{service}");
        let inbox = instance.agentmail_inbox_id.as_deref().unwrap();
        let keys: Value = pool
            .emulator
            .raw()
            .get(format!("{base}/v0/inboxes/{inbox}/api-keys"))
            .bearer_auth(&org)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(keys["count"], 1, "{keys}");
        assert_eq!(keys["api_keys"][0]["name"], format!("convos-pool-{}", instance.id));
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_burst_of_throttled_creates_does_not_open_the_breaker(db: PgPool) {
    let mut settings = test_settings();
    settings.max_attempts = 10;
    let pool = pool_with(db, Options { backend: Backend::Railway, settings, ..Options::default() }).await;
    let url = format!("{}/_emulator/railway/config", pool.emulator.emulator.base_url());
    let throttle = json!({"volumeThrottle": {"limit": 2, "windowMs": 1000}});
    assert!(pool.emulator.raw().put(url).json(&throttle).send().await.unwrap().status().is_success());
    // And Railway's generic error now and then on the creates and the listing.
    let problem = json!({"data": null, "errors": [{"message": "Problem processing request"}]}).to_string();
    for route in ["railway.serviceCreate", "railway.project"] {
        pool.emulator
            .fault(json!({"route": route, "probability": 0.25, "kind": {"type": "status", "status": 200, "body": problem}}))
            .await;
    }
    let refill = pool.engine.add_instances(6, &operator()).await.unwrap();
    assert_eq!(refill.created.len(), 6);
    pool.settled_idle(6).await;
    let breaker = pool.store.breaker().await.unwrap();
    assert_eq!((breaker.consecutive_failures, breaker.open_until), (0, None), "{breaker:?}");
    let state = railway_state(&pool).await;
    assert_eq!(services(&state).len(), 6, "no duplicates left: {state}");
    for service in services(&state) {
        assert_eq!(service["volumeIds"].as_array().map(Vec::len), Some(1), "{service}");
    }
    assert!(pool.emulator.count("railway.volumeCreate").await > 6, "the throttle was hit");
}

#[sqlx::test(migrations = "../migrations")]
async fn creates_whose_answer_was_lost_are_looked_up_not_resent(db: PgPool) {
    let pool = railway_pool(db).await;
    for field in ["serviceCreate", "volumeCreate", "serviceDomainCreate"] {
        control(&pool, "lose-answer", json!({"field": field, "count": 1})).await;
    }
    let idle = pool.provision(1).await;
    let state = railway_state(&pool).await;
    assert_eq!(services(&state).len(), 1, "{state}");
    let service = service_named(&state, &idle[0].sprite_name).unwrap();
    assert_eq!(service["volumeIds"].as_array().map(Vec::len), Some(1), "{service}");
    assert_eq!(service["domains"].as_array().map(Vec::len), Some(1), "{service}");
    for route in ["railway.serviceCreate", "railway.volumeCreate", "railway.serviceDomainCreate"] {
        assert_eq!(pool.emulator.count(route).await, 1, "{route} was sent once");
    }
}

/// Another digest of the runtime image, as an operator would pin a new release.
const NEXT_IMAGE: &str = "ghcr.io/xmtplabs/convos-runtime@sha256:fedcba9876543210";

#[sqlx::test(migrations = "../migrations")]
async fn a_new_runtime_image_setting_rolls_the_pool_onto_it(db: PgPool) {
    let settings = EngineSettings { min_idle: 2, max_total: 5, ..test_settings() };
    let pool = pool_with(db, Options { backend: Backend::Railway, settings, ..Options::default() }).await;
    pool.engine.tick().await.unwrap();
    let first = pool.settled_idle(2).await;
    let stored = pool.engine.pool_settings().await.unwrap().settings;
    assert_eq!(stored.runtime_image.as_deref(), Some(RAILWAY_IMAGE), "seeded from RAILWAY_RUNTIME_IMAGE");
    let desired = pool.engine.desired_version().await.unwrap();
    assert_eq!(desired, format!("staging+image:{RAILWAY_IMAGE}+config:1"));
    for instance in &first {
        assert_eq!(instance.runtime_image.as_deref(), Some(RAILWAY_IMAGE));
        assert_eq!(pool.store.build_version(&instance.id).await.unwrap().as_ref(), Some(&desired));
    }

    // The operator's change is an event with the old and new image and who made it.
    pool.engine.change_pool_settings(&json!({ "runtimeImage": NEXT_IMAGE }), &operator()).await.unwrap();
    let event = pool.store.pool_events(Some(EventKind::Settings), 1).await.unwrap().remove(0);
    assert_eq!(event.actor, "poolctl:test");
    assert_eq!(event.detail["runtimeImage"], json!({ "old": RAILWAY_IMAGE, "new": NEXT_IMAGE }));
    let status = pool.engine.rollout_status().await.unwrap();
    assert_eq!((status.current, status.stale), (0, 2), "{status:?}");

    // The tick rolls the pool: new services run the new image, the old ones are deleted.
    for _ in 0..40 {
        pool.engine.tick().await.unwrap();
        eventually("no step in flight", Duration::from_secs(30), || async {
            pool.store.instances().await.unwrap().iter().all(|i| i.step.is_none()).then_some(())
        })
        .await;
        let status = pool.engine.rollout_status().await.unwrap();
        if status.stale == 0 && pool.count(Status::Idle).await >= 2 {
            break;
        }
    }
    let status = pool.engine.rollout_status().await.unwrap();
    assert_eq!((status.stale, status.current), (0, status.total), "{status:?}");
    let idle = pool.in_status(Status::Idle).await;
    assert!(idle.len() >= 2, "{idle:?}");
    let state = railway_state(&pool).await;
    for instance in &idle {
        assert_eq!(instance.runtime_image.as_deref(), Some(NEXT_IMAGE));
        let service = service_named(&state, &instance.sprite_name).expect("a service per instance");
        assert_eq!(service["image"], NEXT_IMAGE, "{service}");
    }
    for old in &first {
        assert!(pool.instance(&old.id).await.is_none(), "{} replaced", old.id);
        assert!(service_named(&state, &old.sprite_name).is_none(), "{} deleted", old.sprite_name);
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn a_settings_row_stored_before_the_runtime_image_gets_the_environments_once(db: PgPool) {
    let pool = railway_pool(db).await;
    pool.engine.pool_settings().await.unwrap();
    // The row as a deploy from before the setting stored it.
    sqlx::query("UPDATE pool_settings SET document = document - 'runtimeImage'")
        .execute(pool.store.pool())
        .await
        .unwrap();
    let before = pool.engine.desired_version().await.unwrap();
    assert_eq!(before, format!("staging+image:{RAILWAY_IMAGE}+config:1"), "the environment's until seeded");

    let stored = pool.engine.pool_settings().await.unwrap();
    assert_eq!(stored.settings.runtime_image.as_deref(), Some(RAILWAY_IMAGE));
    assert_eq!(stored.updated_by, "environment");
    let event = pool.store.pool_events(Some(EventKind::Settings), 1).await.unwrap().remove(0);
    assert_eq!(
        (event.actor.as_str(), &event.detail["runtimeImage"]["new"]),
        ("environment", &json!(RAILWAY_IMAGE))
    );
    assert_eq!(event.detail["runtimeImage"]["old"], Value::Null);
    // Once: a later read writes nothing.
    assert_eq!(pool.engine.pool_settings().await.unwrap().revision, stored.revision);
}
