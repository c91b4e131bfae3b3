//! claim-latency and claim-burst: `POST /api/pool/claim` (create mode) through the real HTTP
//! route (`pool_local::serve`, axum) with a reqwest client, against idle instances provisioned
//! beforehand.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::gateway::GatewayTimeouts;
use sprites_emulator::EmulatorConfig;

use super::stage::Stage;
use super::{
    Options, Report, Summary, Table, counter_diff, fmt, gateway_calls, ms, sprites_calls, summarize,
};
use crate::rig;

pub(super) use crate::rig::API_KEY;
/// The local main job's connection pool (local/src/bin/pool-local.rs).
pub(super) const MAIN_JOB_CONNECTIONS: u32 = 10;
/// Claims before the measured ones: connections to the API and to Postgres are opened.
const WARM_UP: usize = 3;
/// The only emulated route on a create claim's path: POST {sprite url}/convos/conversation.
const CLAIM_ROUTE: &str = "gateway.conversation";

struct Series {
    label: &'static str,
    speed: f64,
    claims: usize,
    /// Whether each claim's replenish starts a replacement instance (min_idle = the pool),
    /// which then provisions in the background while later claims are measured.
    follow_up: bool,
}

/// One claim's answer, as the caller saw it.
pub(super) struct Answer {
    pub status: u16,
    elapsed: Duration,
    instance_id: Option<String>,
    conversation_id: Option<String>,
}

pub(super) async fn claim(http: &reqwest::Client, base: &str, i: usize) -> Answer {
    let body = json!({
        "agentName": format!("bench-agent-{i}"),
        "instructions": "You are a benchmark agent. Answer briefly.",
    });
    let started = Instant::now();
    let sent = http.post(format!("{base}/api/pool/claim")).bearer_auth(API_KEY).json(&body).send().await;
    let (status, bytes) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap_or_default())
        }
        Err(_) => (0, Default::default()),
    };
    let elapsed = started.elapsed();
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        elapsed,
        instance_id: value["instanceId"].as_str().map(String::from),
        conversation_id: value["conversationId"].as_str().map(String::from),
    }
}

pub(super) fn http_client() -> reqwest::Client {
    shared::tls::http_client_builder()
        .expect("TLS config")
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// The emulated latency on a create claim's path at the emulator's current speed, in ms.
pub(super) async fn emulated_claim_ms(stage: &Stage) -> Result<(f64, u64, f64), String> {
    let config = stage.control.config().await?;
    let route_ms = config["latency_ms"][CLAIM_ROUTE].as_u64().unwrap_or(0);
    let speed = config["speed"].as_f64().unwrap_or(1.0);
    Ok((route_ms as f64 * speed, route_ms, speed))
}

fn summary_json(s: &Summary) -> Value {
    serde_json::to_value(s).unwrap_or_default()
}

pub async fn latency(options: &Options) -> Result<Report, String> {
    let n0 = options.claims.unwrap_or(if options.quick { 50 } else { 200 });
    let n1 = options.realistic_claims.unwrap_or(if options.quick { 10 } else { 60 });
    let series = [
        Series { label: "speed 0, no follow-up", speed: 0.0, claims: n0, follow_up: false },
        Series { label: "speed 0, follow-up in background", speed: 0.0, claims: n0, follow_up: true },
        Series { label: "speed 1, no follow-up", speed: 1.0, claims: n1, follow_up: false },
        Series { label: "speed 1, follow-up in background", speed: 1.0, claims: n1, follow_up: true },
    ];
    let mut latency = Table::new(
        "claim-latency: whole request, ms (sequential POST /api/pool/claim, create mode)",
        &["series", "claims", "p50", "p95", "p99", "max", "mean"],
    );
    let mut overhead = Table::new(
        "claim-latency: overhead = measured - emulated latency on the claim path, ms",
        &["series", "emulated", "p50", "p95", "p99", "max", "target p50<10 p99<50"],
    );
    let mut background = Table::new(
        "claim-latency: follow-up work while the series ran",
        &[
            "series",
            "replacements started",
            "idle at end",
            "provisioning at end",
            "Sprites API calls",
            "gateway calls",
            "claims retried",
        ],
    );
    let mut data = Vec::new();
    let mut notes = Vec::new();
    for s in &series {
        let result = latency_series(s).await?;
        let total = &result.summary;
        let over = &result.overhead;
        latency.row(vec![
            s.label.into(),
            total.n.to_string(),
            fmt(total.p50),
            fmt(total.p95),
            fmt(total.p99),
            fmt(total.max),
            fmt(total.mean),
        ]);
        let met = over.p50 < 10.0 && over.p99 < 50.0;
        overhead.row(vec![
            s.label.into(),
            fmt(result.emulated_ms),
            fmt(over.p50),
            fmt(over.p95),
            fmt(over.p99),
            fmt(over.max),
            if met { "met".into() } else { "MISSED".into() },
        ]);
        background.row(vec![
            s.label.into(),
            result.replacements.to_string(),
            result.idle_after.to_string(),
            result.provisioning_after.to_string(),
            sprites_calls(&result.calls).to_string(),
            gateway_calls(&result.calls).to_string(),
            result.retried.to_string(),
        ]);
        data.push(json!({
            "series": s.label,
            "emulator_speed": s.speed,
            "claims": s.claims,
            "follow_up": s.follow_up,
            "warm_up_claims": WARM_UP,
            "provision_secs": result.provision.as_secs_f64(),
            "emulated_claim_path_ms": result.emulated_ms,
            "emulated_routes_on_path": { CLAIM_ROUTE: result.route_ms },
            "latency_ms": summary_json(total),
            "overhead_ms": summary_json(over),
            "samples_ms": result.samples,
            "replacements_started": result.replacements,
            "idle_after": result.idle_after,
            "provisioning_after": result.provisioning_after,
            "emulator_calls_during_series": result.calls,
            "claims_retried": result.retried,
        }));
    }
    notes.push(format!(
        "Emulated latency on a create claim's path: only `{CLAIM_ROUTE}` (POST {{sprite url}}/convos/conversation, \
         default 2500 ms x speed); the claim makes no Sprites API call. Everything else is our code, Postgres and local HTTP."
    ));
    notes.push(
        "Follow-up work: the claim's inline replenish inserts the replacement row and hands its first step to the \
         in-process chain (a tokio task), so the replacement's provisioning runs beside later claims, as in the main job; \
         on Lambda it would be an EventBridge PutEvents inside the request instead."
            .into(),
    );
    let production = series.iter().position(|s| s.speed > 0.0 && s.follow_up).map(|i| &data[i]);
    if let Some(p) = production {
        notes.push(format!(
            "Production-like series (speed 1, follow-up in background): overhead p50 {} ms, p99 {} ms (targets 10 / 50).",
            fmt(p["overhead_ms"]["p50"].as_f64().unwrap_or(f64::NAN)),
            fmt(p["overhead_ms"]["p99"].as_f64().unwrap_or(f64::NAN)),
        ));
    }
    Ok(Report { tables: vec![latency, overhead, background], notes, data: json!({ "series": data }) })
}

struct SeriesResult {
    provision: Duration,
    emulated_ms: f64,
    route_ms: u64,
    samples: Vec<f64>,
    summary: Summary,
    overhead: Summary,
    replacements: i64,
    idle_after: i64,
    provisioning_after: i64,
    calls: BTreeMap<String, u64>,
    retried: i64,
}

async fn latency_series(s: &Series) -> Result<SeriesResult, String> {
    let stage =
        Stage::new("claimlat", EmulatorConfig { speed: 0.0, ..Default::default() }, MAIN_JOB_CONNECTIONS)
            .await?;
    let result = latency_on(&stage, s).await;
    stage.finish().await;
    result
}

async fn latency_on(stage: &Stage, s: &Series) -> Result<SeriesResult, String> {
    let pool = (s.claims + WARM_UP) as u32;
    let min_idle = if s.follow_up { pool } else { 0 };
    let settings = rig::production_settings(min_idle, pool * 3 + 10);
    let process = rig::process(&stage.emulator, &stage.store, settings, GatewayTimeouts::default(), None);
    let engine = process.engine.clone();
    let provision = stage.provision(&engine, pool, i64::from(pool)).await?;
    stage.set_speed(s.speed).await?;
    let (emulated_ms, route_ms, _) = emulated_claim_ms(stage).await?;
    let server = rig::serve_api(process).await?;
    let http = http_client();
    for i in 0..WARM_UP {
        let answer = claim(&http, &server.base_url, i).await;
        if answer.status != 200 {
            server.stop().await;
            return Err(format!("warm-up claim answered {}", answer.status));
        }
    }
    let before = stage.control.counters().await?;
    let mut samples = Vec::with_capacity(s.claims);
    let mut failures = 0;
    for i in 0..s.claims {
        let answer = claim(&http, &server.base_url, WARM_UP + i).await;
        if answer.status == 200 {
            samples.push(ms(answer.elapsed));
        } else {
            failures += 1;
        }
    }
    let after = stage.control.counters().await?;
    server.stop().await;
    drop(engine);
    if failures > 0 {
        return Err(format!("{failures} of {} claims failed", s.claims));
    }
    let summary = summarize(&samples);
    let overhead: Vec<f64> = samples.iter().map(|v| v - emulated_ms).collect();
    let total = stage.scalar("SELECT count(*) FROM instances").await?;
    Ok(SeriesResult {
        provision,
        emulated_ms,
        route_ms,
        overhead: summarize(&overhead),
        samples,
        summary,
        replacements: total - i64::from(pool),
        idle_after: stage.scalar("SELECT count(*) FROM instances WHERE status = 'idle'").await?,
        provisioning_after: stage
            .scalar("SELECT count(*) FROM instances WHERE status = 'provisioning'")
            .await?,
        calls: counter_diff(&before, &after),
        retried: stage.scalar("SELECT count(*) FROM claims WHERE attempts > 1").await?,
    })
}

pub async fn burst(options: &Options) -> Result<Report, String> {
    let n = options.burst.unwrap_or(if options.quick { 50 } else { 200 });
    let series = [
        Series { label: "speed 0, no follow-up", speed: 0.0, claims: n, follow_up: false },
        Series { label: "speed 1, follow-up in background", speed: 1.0, claims: n, follow_up: true },
    ];
    let mut table = Table::new(
        format!("claim-burst: {n} concurrent claims on {n} idle instances"),
        &[
            "series", "wall s", "claims/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "ok", "503", "other",
            "retried",
        ],
    );
    let mut proof = Table::new(
        "claim-burst: double-claim checks (all must equal the claims that succeeded)",
        &[
            "series",
            "ok answers",
            "distinct instance ids",
            "distinct conversation ids",
            "claimed rows",
            "distinct conv. in rows",
            "created claims",
            "distinct instances in claims",
            "gateway.conversation calls",
        ],
    );
    let mut data = Vec::new();
    let mut notes = Vec::new();
    for s in &series {
        let stage = Stage::new(
            "claimburst",
            EmulatorConfig { speed: 0.0, ..Default::default() },
            MAIN_JOB_CONNECTIONS,
        )
        .await?;
        let result = burst_on(&stage, s).await;
        stage.finish().await;
        let r = result?;
        table.row(vec![
            s.label.into(),
            fmt(r.wall.as_secs_f64()),
            fmt(r.ok as f64 / r.wall.as_secs_f64()),
            fmt(r.summary.p50),
            fmt(r.summary.p95),
            fmt(r.summary.p99),
            fmt(r.summary.max),
            r.ok.to_string(),
            r.unavailable.to_string(),
            r.other.to_string(),
            r.retried.to_string(),
        ]);
        proof.row(vec![
            s.label.into(),
            r.ok.to_string(),
            r.distinct_instances.to_string(),
            r.distinct_conversations.to_string(),
            r.claimed_rows.to_string(),
            r.claimed_distinct_conversations.to_string(),
            r.created_claims.to_string(),
            r.created_distinct_instances.to_string(),
            r.conversation_calls.to_string(),
        ]);
        let ok = r.ok as i64;
        let no_double = r.distinct_instances == r.ok
            && r.distinct_conversations == r.ok
            && r.claimed_rows == ok
            && r.claimed_distinct_conversations == ok
            && r.created_claims == ok
            && r.created_distinct_instances == ok
            && r.conversation_calls == r.ok as u64;
        if !no_double {
            notes.push(format!("{}: DOUBLE-CLAIM CHECK FAILED", s.label));
        }
        if r.ok != n {
            notes.push(format!("{}: only {} of {n} claims succeeded", s.label, r.ok));
        }
        data.push(json!({
            "series": s.label,
            "emulator_speed": s.speed,
            "claims": n,
            "follow_up": s.follow_up,
            "connections": MAIN_JOB_CONNECTIONS,
            "provision_secs": r.provision.as_secs_f64(),
            "wall_secs": r.wall.as_secs_f64(),
            "throughput_per_sec": r.ok as f64 / r.wall.as_secs_f64(),
            "latency_ms": summary_json(&r.summary),
            "ok": r.ok,
            "answered_503": r.unavailable,
            "other": r.other,
            "no_double_claims": no_double,
            "distinct_instance_ids": r.distinct_instances,
            "distinct_conversation_ids": r.distinct_conversations,
            "claimed_rows": r.claimed_rows,
            "claimed_rows_distinct_conversations": r.claimed_distinct_conversations,
            "created_claims": r.created_claims,
            "created_claims_distinct_instances": r.created_distinct_instances,
            "gateway_conversation_calls": r.conversation_calls,
            "replacements_started": r.replacements,
            "claims_retried": r.retried,
            "emulator_calls_during_burst": r.calls,
        }));
    }
    notes.push(format!(
        "One process (the main job's arrangement: {MAIN_JOB_CONNECTIONS} Postgres connections) serves all {n} requests; \
         on Lambda each claim would run in its own sandbox with 2 connections behind Neon's pooler."
    ));
    notes.push(
        "Each claim takes the oldest idle row with one UPDATE ... FOR UPDATE SKIP LOCKED statement, so concurrent claims \
         never wait for each other's row and never get the same one; the table above checks it from the answers, \
         the database and the emulator's count of conversations created."
            .into(),
    );
    Ok(Report { tables: vec![table, proof], notes, data: json!({ "series": data }) })
}

struct BurstResult {
    provision: Duration,
    wall: Duration,
    summary: Summary,
    ok: usize,
    unavailable: usize,
    other: usize,
    distinct_instances: usize,
    distinct_conversations: usize,
    claimed_rows: i64,
    claimed_distinct_conversations: i64,
    created_claims: i64,
    created_distinct_instances: i64,
    conversation_calls: u64,
    replacements: i64,
    retried: i64,
    calls: BTreeMap<String, u64>,
}

async fn burst_on(stage: &Stage, s: &Series) -> Result<BurstResult, String> {
    let n = s.claims as u32;
    let min_idle = if s.follow_up { n } else { 0 };
    let settings = rig::production_settings(min_idle, n * 3 + 10);
    let process = rig::process(&stage.emulator, &stage.store, settings, GatewayTimeouts::default(), None);
    let engine = process.engine.clone();
    let provision = stage.provision(&engine, n, i64::from(n)).await?;
    stage.set_speed(s.speed).await?;
    let server = rig::serve_api(process).await?;
    let http = http_client();
    // Open the database connections and an HTTP connection before the burst.
    for _ in 0..MAIN_JOB_CONNECTIONS {
        let _ = http.get(format!("{}/api/pool/counts", server.base_url)).send().await;
    }
    let before = stage.control.counters().await?;
    let base = Arc::new(server.base_url.clone());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..s.claims {
        let (http, base) = (http.clone(), base.clone());
        tasks.spawn(async move { claim(&http, &base, i).await });
    }
    let mut answers = Vec::with_capacity(s.claims);
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.map_err(|e| e.to_string())?);
    }
    let wall = started.elapsed();
    let after = stage.control.counters().await?;
    server.stop().await;
    drop(engine);
    let ok: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    let samples: Vec<f64> = ok.iter().map(|a| ms(a.elapsed)).collect();
    let distinct_instances: HashSet<&str> = ok.iter().filter_map(|a| a.instance_id.as_deref()).collect();
    let distinct_conversations: HashSet<&str> =
        ok.iter().filter_map(|a| a.conversation_id.as_deref()).collect();
    let calls = counter_diff(&before, &after);
    Ok(BurstResult {
        provision,
        wall,
        summary: summarize(&samples),
        ok: ok.len(),
        unavailable: answers.iter().filter(|a| a.status == 503).count(),
        other: answers.iter().filter(|a| a.status != 200 && a.status != 503).count(),
        distinct_instances: distinct_instances.len(),
        distinct_conversations: distinct_conversations.len(),
        claimed_rows: stage.scalar("SELECT count(*) FROM instances WHERE status = 'claimed'").await?,
        claimed_distinct_conversations: stage
            .scalar("SELECT count(DISTINCT conversation_id) FROM instances WHERE status = 'claimed'")
            .await?,
        created_claims: stage
            .scalar(
                "SELECT count(*) FROM claims WHERE status = 'created' AND instance_id IS NOT NULL \
                 AND conversation_id IS NOT NULL",
            )
            .await?,
        created_distinct_instances: stage
            .scalar("SELECT count(DISTINCT instance_id) FROM claims WHERE status = 'created'")
            .await?,
        conversation_calls: calls.get(CLAIM_ROUTE).copied().unwrap_or(0),
        replacements: stage.scalar("SELECT count(*) FROM instances").await? - i64::from(n),
        retried: stage.scalar("SELECT count(*) FROM claims WHERE attempts > 1").await?,
        calls,
    })
}
