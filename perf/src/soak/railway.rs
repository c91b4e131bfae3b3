//! The soak's Railway round: a short extra phase after the Sprites chaos. A pool on the
//! emulated Railway (with an AgentMail inbox per instance) fills, then claims and recycles
//! run while Railway throttles volume creation, answers its generic "Problem processing
//! request", shows its edge's 403 and 504 pages and loses the answers of creates that took
//! effect. Then the faults stop, the pool settles, and the checks say whether the breaker held,
//! whether anything leaked or doubled, and whether every instance can read its mail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use shared::config::{Config, PoolEnvironment};
use shared::engine::{ClaimOutcome, ClaimRequest, Engine, Resources};
use shared::lifecycle::Actor;
use shared::provider::{InboxKeys, POOL_SERVER_START_COMMAND, RailwayProvider, RailwayProviderSettings};
use shared::railway::{RailwayClient, RailwaySettings, RetryPolicy};
use shared::resources::{AgentMailClient, AgentMailSettings};
use shared::store::{Status, Store};
use shared::wiring::Wiring;
use sprites_emulator::{EmulatorConfig, RAILWAY_ENVIRONMENT_ID, RAILWAY_PROJECT_ID};

use super::checks::Check;
use crate::rig;

const IMAGE: &str = "ghcr.io/xmtplabs/convos-runtime@sha256:50a450a450a4";
const MIN_IDLE: u32 = 3;

/// What the round found, for the report.
pub struct Round {
    pub checks: Vec<Check>,
    pub summary: Value,
}

fn http() -> reqwest::Client {
    shared::tls::http_client_builder().expect("TLS config").no_proxy().build().expect("http client")
}

fn engine(emulator: &sprites_emulator::Emulator, store: &Store) -> Arc<Engine> {
    let base = emulator.base_url();
    let config = emulator.config();
    let mut settings = RailwaySettings::new(
        format!("{base}/graphql/v2").parse().expect("url"),
        SecretString::from(config.railway_token.clone()),
        RAILWAY_PROJECT_ID.into(),
        RAILWAY_ENVIRONMENT_ID.into(),
    );
    settings.public_url_base = Some(format!("{base}/_railway").parse().expect("url"));
    settings.request_timeout = Duration::from_secs(3);
    // Production's shape (a throttle waited out in the step, on a longer clock than request
    // backoff), at the soak's pace.
    settings.throttle_wait = Duration::from_millis(800);
    settings.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_server_delay: Duration::from_secs(5),
    };
    let agentmail_url: url::Url = format!("{base}/v0").parse().expect("url");
    let org_key = SecretString::from(config.agentmail_key.clone());
    let provider = RailwayProvider::new(
        RailwayClient::new(settings, http()),
        http(),
        RailwayProviderSettings {
            image: IMAGE.into(),
            start_command: POOL_SERVER_START_COMMAND.into(),
            runtime_type: None,
            inbox_keys: Some(InboxKeys::new(agentmail_url.clone(), org_key.clone(), http())),
            cpu: 4.0,
            memory_bytes: 4 << 30,
            xmtp_env: "dev".into(),
            pool_environment: "dev".into(),
            anthropic_api_key: None,
            health_timeout: Duration::from_secs(1),
        },
    );
    let resources = Resources {
        openrouter: None,
        agentmail: Some(AgentMailClient::new(
            AgentMailSettings { api_url: agentmail_url, api_key: org_key, domain: None },
            http(),
        )),
    };
    let mut engine_settings = super::soak_settings(MIN_IDLE, MIN_IDLE * 3);
    // A deployment takes its time; the stuck rule must not race it.
    engine_settings.ready_timeout = Duration::from_secs(20);
    engine_settings.max_attempts = 8;
    let process = Wiring::new(railway_config(emulator))
        .store(store.clone())
        .provider(Arc::new(provider))
        .resources(resources)
        .settings(engine_settings)
        .gateway_timeouts(super::gateway_timeouts())
        .build()
        .expect("the process wires");
    process.engine
}

/// The configuration of a process on the emulated Railway, with an AgentMail inbox per instance.
fn railway_config(emulator: &sprites_emulator::Emulator) -> Config {
    let base = emulator.base_url();
    let config = emulator.config();
    rig::config_with(&[
        ("POOL_PROVIDER", "railway".to_string()),
        ("RAILWAY_API_URL", format!("{base}/graphql/v2")),
        ("RAILWAY_API_TOKEN", config.railway_token.clone()),
        ("RAILWAY_PROJECT_ID", RAILWAY_PROJECT_ID.to_string()),
        ("RAILWAY_ENVIRONMENT_ID", RAILWAY_ENVIRONMENT_ID.to_string()),
        ("RAILWAY_RUNTIME_IMAGE", IMAGE.to_string()),
        ("RAILWAY_PUBLIC_URL_BASE", format!("{base}/_railway")),
        ("AGENTMAIL_API_URL", format!("{base}/v0")),
        ("AGENTMAIL_API_KEY", config.agentmail_key.clone()),
        ("POOL_MIN_IDLE", MIN_IDLE.to_string()),
        ("POOL_MAX_TOTAL", (MIN_IDLE * 3).to_string()),
    ])
}

/// Arms Railway's misbehaviour: the volume throttle, generic errors, edge pages, lost answers.
async fn arm(control: &rig::EmulatorControl, base: &str) -> Result<(), String> {
    let http = http();
    let put = http
        .put(format!("{base}/_emulator/railway/config"))
        .json(&json!({"volumeThrottle": {"limit": 2, "windowMs": 2000}}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !put.status().is_success() {
        return Err(format!("volume throttle: HTTP {}", put.status()));
    }
    let problem = json!({"data": null, "errors": [{"message": "Problem processing request"}]}).to_string();
    for (route, probability) in
        [("railway.project", 0.1), ("railway.serviceCreate", 0.15), ("railway.environmentPatchCommit", 0.1)]
    {
        control
            .fault(json!({"route": route, "probability": probability,
                          "kind": {"type": "status", "status": 200, "body": problem}}))
            .await?;
    }
    let edge = "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head></html>";
    control
        .fault(json!({"route": "railway.project", "probability": 0.05,
                      "kind": {"type": "status", "status": 403, "body": edge}}))
        .await?;
    for (field, count) in [("volumeCreate", 2), ("serviceDomainCreate", 1), ("serviceCreate", 1)] {
        let r = http
            .post(format!("{base}/_emulator/railway/lose-answer"))
            .json(&json!({"field": field, "count": count}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("lose-answer {field}: HTTP {}", r.status()));
        }
    }
    Ok(())
}

async fn disarm(control: &rig::EmulatorControl, base: &str) -> Result<(), String> {
    control.clear_faults().await?;
    http()
        .put(format!("{base}/_emulator/railway/config"))
        .json(&json!({"volumeThrottle": null}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn railway_state(base: &str) -> Result<Value, String> {
    let r = http().get(format!("{base}/_emulator/railway/state")).send().await.map_err(|e| e.to_string())?;
    r.json().await.map_err(|e| e.to_string())
}

async fn idle_settled(store: &Store) -> bool {
    let Ok(all) = store.instances().await else { return false };
    let idle = all.iter().filter(|i| i.status == Status::Idle).count() as u32;
    idle >= MIN_IDLE
        && all.iter().all(|i| i.step.is_none() && matches!(i.status, Status::Idle | Status::Claimed))
}

fn check(name: &'static str, pass: bool, detail: String) -> Check {
    Check { name, pass, detail, evidence: Vec::new() }
}

/// Runs the round for `chaos_for`; `Err` only when the round could not run at all.
pub async fn run(chaos_for: Duration) -> Result<Round, String> {
    let db = rig::ScratchDb::create("soak_railway").await?;
    let emulator = rig::emulator(EmulatorConfig { speed: 0.02, ..EmulatorConfig::default() }).await;
    let result = round(&db, &emulator, chaos_for).await;
    emulator.shutdown().await;
    db.drop_db().await;
    result
}

async fn round(
    db: &rig::ScratchDb,
    emulator: &sprites_emulator::Emulator,
    chaos_for: Duration,
) -> Result<Round, String> {
    let base = emulator.base_url();
    let control = rig::EmulatorControl::new(emulator);
    let store = db.store(8);
    let engine = engine(emulator, &store);
    let started = tokio::time::Instant::now();

    engine.replenish(&Actor::Poolctl(Some("soak".into()))).await.map_err(|e| e.to_string())?;
    let mut filled = false;
    while started.elapsed() < Duration::from_secs(60) {
        if idle_settled(&store).await {
            filled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let filled_in = started.elapsed();
    println!("soak railway: filled={filled} in {:.1} s; faults armed", filled_in.as_secs_f64());
    arm(&control, &base).await?;

    let (mut claims_ok, mut claims_failed, mut recycles) = (0u64, 0u64, 0u64);
    let mut claimed_instances: BTreeMap<String, u64> = BTreeMap::new();
    let mut breaker_opened = false;
    let chaos_started = tokio::time::Instant::now();
    let mut n = 0;
    while chaos_started.elapsed() < chaos_for {
        n += 1;
        let request =
            ClaimRequest::new(format!("railway soak {n}"), "be brief".into(), None, PoolEnvironment::Dev)
                .map_err(|e| e.to_string())?;
        match engine.claim(request, &Actor::Poolctl(Some("soak".into()))).await {
            Ok(ClaimOutcome::Done(result)) if result.instance_id.is_some() => {
                claims_ok += 1;
                let id = result.instance_id.expect("checked");
                *claimed_instances.entry(id.clone()).or_default() += 1;
                if engine.recycle(&id, &Actor::Poolctl(Some("soak".into()))).await.is_ok() {
                    recycles += 1;
                }
            }
            _ => claims_failed += 1,
        }
        let _ = engine.tick().await;
        if store.breaker().await.is_ok_and(|b| b.open_until.is_some()) {
            breaker_opened = true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let counters = control.counters().await?;
    let faults_fired: u64 = {
        let r = http().get(format!("{base}/_emulator/faults")).send().await.map_err(|e| e.to_string())?;
        let faults: Value = r.json().await.map_err(|e| e.to_string())?;
        faults.as_array().into_iter().flatten().filter_map(|f| f["hits"].as_u64()).sum()
    };
    disarm(&control, &base).await?;

    let settle_started = tokio::time::Instant::now();
    let mut settled = false;
    while settle_started.elapsed() < Duration::from_secs(60) {
        let _ = engine.tick().await;
        if idle_settled(&store).await {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let settle_took = settle_started.elapsed();
    let breaker = store.breaker().await.map_err(|e| e.to_string())?;
    let instances = store.instances().await.map_err(|e| e.to_string())?;
    let state = railway_state(&base).await?;
    let services = state["services"].as_array().cloned().unwrap_or_default();
    let volumes = state["volumes"].as_array().cloned().unwrap_or_default();
    let dump = state["lostAnswers"].clone();
    let volumes_made = volumes.len() as u64;

    let mut checks = Vec::new();
    checks.push(check(
        "railway.filled",
        filled,
        format!("{MIN_IDLE} idle in {:.1} s", filled_in.as_secs_f64()),
    ));
    let doubled: Vec<&String> = claimed_instances.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    checks.push(check(
        "railway.claims",
        claims_ok > 0 && doubled.is_empty(),
        format!(
            "{claims_ok} claims served ({claims_failed} not), {recycles} recycled; bound twice: {doubled:?}"
        ),
    ));
    checks.push(check(
        "railway.breaker_held",
        !breaker_opened && breaker.open_until.is_none(),
        format!("opened during the round: {breaker_opened}; now {breaker:?}"),
    ));
    checks.push(check("railway.settled", settled, format!("after {:.1} s", settle_took.as_secs_f64())));
    let names: Vec<&str> = instances.iter().map(|i| i.sprite_name.as_str()).collect();
    let strays: Vec<String> = services
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|name| !names.contains(name))
        .map(str::to_string)
        .collect();
    let bad_volumes: Vec<String> = services
        .iter()
        .filter(|s| s["volumeIds"].as_array().map(Vec::len) != Some(1))
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let orphans = volumes.iter().filter(|v| v["orphaned"] == true).count();
    checks.push(check(
        "railway.no_leaks",
        strays.is_empty() && bad_volumes.is_empty() && orphans == 0 && services.len() == instances.len(),
        format!(
            "{} services for {} instances; strays {strays:?}; without exactly one volume {bad_volumes:?}; orphaned volumes {orphans}",
            services.len(),
            instances.len()
        ),
    ));
    let without_mail: Vec<String> = services
        .iter()
        .filter(|s| s["emailCredential"] != "inbox")
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    checks.push(check(
        "railway.email_scoped",
        without_mail.is_empty(),
        format!("services without an inbox-scoped key: {without_mail:?}"),
    ));
    let volume_creates = counters.get("railway.volumeCreate").copied().unwrap_or(0);
    let throttled = state["volumeThrottled"].as_u64().unwrap_or(0);
    checks.push(check(
        "railway.faults_fired",
        faults_fired > 0 && throttled > 0,
        format!(
            "{faults_fired} injected errors; {throttled} of {volume_creates} volumeCreate throttled; {volumes_made} live volumes; lost answers left {dump}"
        ),
    ));
    let summary = json!({
        "claims_ok": claims_ok,
        "claims_failed": claims_failed,
        "recycles": recycles,
        "faults_fired": faults_fired,
        "volume_creates": volume_creates,
        "volume_creates_throttled": throttled,
        "services": services.len(),
        "instances": instances.len(),
        "fill_s": filled_in.as_secs_f64(),
        "settle_s": settle_took.as_secs_f64(),
        "railway_calls": counters.iter().filter(|(k, _)| k.starts_with("railway.")).map(|(k, v)| (k.clone(), *v)).collect::<BTreeMap<_, _>>(),
    });
    Ok(Round { checks, summary })
}
