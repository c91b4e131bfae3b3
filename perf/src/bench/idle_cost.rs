//! idle-cost (issue 17.4): what idle instances cost with hibernation. A pool of 10 idle runs
//! for a simulated day with `hotIdle` = 10 (today: every idle instance pinged, so none ever
//! sleeps), 3, 1 and 0, with a claim every N simulated minutes; the emulator's meter of
//! running time (the billing proxy) gives running-hours per idle instance per day. Then claims
//! are timed on hot, warm and cold instances.
//!
//! The day is compressed by `scale`: every period (idle pause, cold after, heartbeat and tick
//! intervals, the sleeping check) is divided by it and so is every latency (emulator speed
//! 1/scale), so the run is the real day played faster and the meter scales back exactly.
//! Claim latency is measured apart at real speed (speed 1, real wake and boot times), with
//! the Sprite's state set up by waiting out its idle pause (2 s there) or its cold time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest, Engine};
use shared::gateway::GatewayTimeouts;
use shared::lifecycle::Actor;
use sprites_emulator::EmulatorConfig;

use super::stage::Stage;
use super::{Options, Report, Table, fmt, ms, summarize};
use crate::rig;

/// Idle instances in the pool.
const IDLE: u32 = 10;
/// Sprites bill a fixed 8 vCPU and 4 GB while running (sprites-docs reference/billing.mdx) at
/// $0.0275 per vCPU-hour and $0.04375 per GB-hour (its PricingRates component).
const DOLLARS_PER_RUNNING_HOUR: f64 = 8.0 * 0.0275 + 4.0 * 0.04375;
/// The pool's and the Sprites' periods in simulated seconds (production values).
const IDLE_PAUSE: f64 = 30.0;
const COLD_AFTER: f64 = 300.0;
const HEARTBEAT: f64 = 20.0;
const TICK: f64 = 30.0;
const SLEEPING_CHECK: f64 = 1800.0;

struct Plan {
    scale: f64,
    hours: f64,
    claim_every_mins: f64,
}

impl Plan {
    /// Real time for `simulated` seconds.
    fn real(&self, simulated: f64) -> Duration {
        Duration::from_secs_f64(simulated / self.scale)
    }
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let plan = Plan {
        scale: options.time_scale.unwrap_or(240.0),
        hours: options.idle_hours.unwrap_or(if options.quick { 2.0 } else { 24.0 }),
        claim_every_mins: options.claim_every_mins.unwrap_or(60.0),
    };
    let mut table = Table::new(
        format!(
            "idle-cost: {IDLE} idle for {} simulated h (x{} time), a claim every {} simulated min",
            plan.hours, plan.scale, plan.claim_every_mins
        ),
        &[
            "hotIdle",
            "running h / idle instance / day",
            "vs today",
            "$ / idle instance / month",
            "claims",
            "refused",
            "on hot / warm / cold",
        ],
    );
    let mut runs = Vec::new();
    let mut today = f64::NAN;
    for hot in [IDLE, 3, 1, 0] {
        let run = run_one(&plan, hot).await?;
        let per_instance_day = run["running_hours_per_instance_day"].as_f64().unwrap_or(f64::NAN);
        if hot == IDLE {
            today = per_instance_day;
        }
        let kinds = &run["kinds"];
        table.row(vec![
            if hot == IDLE { format!("{hot} (today)") } else { hot.to_string() },
            fmt(per_instance_day),
            format!("{}%", fmt(100.0 * per_instance_day / today)),
            fmt(per_instance_day * 30.0 * DOLLARS_PER_RUNNING_HOUR),
            run["claims"].to_string(),
            run["refused"].to_string(),
            format!("{} / {} / {}", kinds["running"], kinds["warm"], kinds["cold"]),
        ]);
        runs.push(run);
    }
    let samples = options.claims.unwrap_or(if options.quick { 3 } else { 10 });
    let (latency_table, latency) = latencies(samples).await?;
    let notes = vec![
        format!(
            "Running time is the emulator's meter (GET /_emulator/lifecycle, total_running_ms, Sprites deleted included) \
             over the measured period, x{} back to simulated time, divided by {IDLE} instances and by the simulated days. \
             It includes the replacements provisioned after each claim (the bench destroys a claimed instance at once), \
             the same work in every run.",
            plan.scale
        ),
        format!(
            "Dollars: ${DOLLARS_PER_RUNNING_HOUR:.3} per running hour (8 vCPU x $0.0275 + 4 GB x $0.04375, sprites-docs \
             reference/billing.mdx and its rates), x 30 days; storage is billed the same in every run and left out."
        ),
        "On hot / warm / cold: the taken Sprite's power state just before each claim of the day. Claim latency: \
         emulator speed 1 (gateway create 2.5 s, warm wake 100-500 ms, cold wake 1-2 s, gateway boot 2 s), hotIdle 1, \
         a Sprite idle pause of 2 s: hot = claimed right after a heartbeat, warm = 3 s without one, cold = past the \
         cold time."
            .into(),
    ];
    let data = json!({ "runs": runs, "scale": plan.scale, "hours": plan.hours, "latency": latency });
    Ok(Report { tables: vec![table, latency_table], notes, data })
}

async fn run_one(plan: &Plan, hot: u32) -> Result<Value, String> {
    let emulator = EmulatorConfig {
        speed: 1.0 / plan.scale,
        idle_pause_secs: IDLE_PAUSE / plan.scale,
        cold_after_secs: COLD_AFTER / plan.scale,
        ..EmulatorConfig::default()
    };
    let stage = Stage::new("idle_cost", emulator, 10).await?;
    let result = measure(&stage, plan, hot).await;
    stage.finish().await;
    result
}

async fn measure(stage: &Stage, plan: &Plan, hot: u32) -> Result<Value, String> {
    let mut settings = rig::bench_settings();
    settings.sprite_idle_pause = plan.real(IDLE_PAUSE);
    settings.wake_budget = Duration::from_secs(10);
    let timeouts = GatewayTimeouts::default();
    let engine = rig::engine(&stage.emulator, &stage.store, settings, timeouts, None);
    let patch = json!({ "minIdle": IDLE, "maxTotal": IDLE + 5, "hotIdle": hot });
    engine
        .change_pool_settings(&patch, &Actor::Poolctl(Some("bench".into())))
        .await
        .map_err(|e| e.to_string())?;
    // The sleeping check is compressed like every other period: below the minute the
    // settings allow an operator, so it is written straight into the stored document.
    let check = (SLEEPING_CHECK / plan.scale).round().max(1.0);
    sqlx::query("UPDATE pool_settings SET document = jsonb_set(document, '{sleepingCheckSeconds}', to_jsonb($1::int))")
        .bind(check as i32)
        .execute(stage.store.pool())
        .await
        .map_err(|e| e.to_string())?;
    stage.provision(&engine, IDLE, i64::from(IDLE)).await?;

    let sweeps = spawn_sweeps(engine.clone(), plan);
    let start = lifecycle(stage).await?;
    let started = Instant::now();
    let end = started + plan.real(plan.hours * 3600.0);
    let every = plan.real(plan.claim_every_mins * 60.0);
    let mut kinds: HashMap<&'static str, u32> = HashMap::new();
    let (mut claims, mut refused) = (0u32, 0u32);
    let mut next = started + every;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let before = lifecycle(stage).await?;
        let answer = engine.claim(request(claims), &Actor::Poolctl(Some("bench".into()))).await;
        claims += 1;
        match answer {
            Ok(ClaimOutcome::Done(result)) => {
                let id = result.instance_id.unwrap_or_default();
                *kinds.entry(power_before(stage, &before, &id).await?).or_default() += 1;
                // The agent leaves at once: the pool provisions its replacement.
                engine
                    .destroy(&id, &Actor::Poolctl(Some("bench".into())))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(ClaimOutcome::Accepted { .. }) => return Err("a create claim answered 202".into()),
            Err(ClaimError::NoIdle { .. } | ClaimError::Failed(_)) => refused += 1,
            Err(err) => return Err(err.to_string()),
        }
    }
    tokio::time::sleep_until(end.into()).await;
    let finish = lifecycle(stage).await?;
    sweeps.abort();
    let real_ms = finish["total_running_ms"].as_f64().unwrap_or(0.0)
        - start["total_running_ms"].as_f64().unwrap_or(0.0);
    let simulated_hours = real_ms / 1000.0 * plan.scale / 3600.0;
    let days = plan.hours / 24.0;
    let kind = |k: &str| kinds.get(k).copied().unwrap_or(0);
    Ok(json!({
        "hot_idle": hot,
        "running_hours": simulated_hours,
        "running_hours_per_instance_day": simulated_hours / f64::from(IDLE) / days,
        "claims": claims,
        "refused": refused,
        "kinds": { "running": kind("running"), "warm": kind("warm"), "cold": kind("cold") },
        "wall_secs": started.elapsed().as_secs_f64(),
    }))
}

/// What the Sprite of instance `id` was in `before` (a lifecycle snapshot): running, warm or cold.
async fn power_before(stage: &Stage, before: &Value, id: &str) -> Result<&'static str, String> {
    let name = stage.store.instance(id).await.map_err(|e| e.to_string())?.map(|i| i.sprite_name);
    Ok(match name.and_then(|n| before["sprites"][&n]["status"].as_str().map(String::from)).as_deref() {
        Some("warm") => "warm",
        Some("cold") => "cold",
        _ => "running",
    })
}

/// Real-speed claim latency by the state of the Sprite taken: `samples` claims each on a hot,
/// a warm and a cold instance (hotIdle 1, so the one claims take first is the hot one until
/// the Sprites are left to pause).
async fn latencies(samples: usize) -> Result<(Table, Value), String> {
    const PAUSE: f64 = 2.0;
    const COLD: f64 = 3.0;
    let emulator = EmulatorConfig {
        speed: 1.0,
        setup_secs: 2.0,
        idle_pause_secs: PAUSE,
        cold_after_secs: COLD,
        ..EmulatorConfig::default()
    };
    let stage = Stage::new("idle_cost_latency", emulator, 10).await?;
    let result = async {
        let mut settings = rig::bench_settings();
        settings.sprite_idle_pause = Duration::from_secs_f64(PAUSE);
        let engine = rig::engine(&stage.emulator, &stage.store, settings, GatewayTimeouts::default(), None);
        let patch = json!({ "minIdle": 3, "maxTotal": 10, "hotIdle": 1 });
        engine
            .change_pool_settings(&patch, &Actor::Poolctl(Some("bench".into())))
            .await
            .map_err(|e| e.to_string())?;
        stage.provision(&engine, 3, 3).await?;
        let mut by_kind: HashMap<&'static str, Vec<f64>> = HashMap::new();
        for n in 0..samples * 3 {
            let (want, wait) = match n % 3 {
                0 => ("running", 0.0),
                1 => ("warm", PAUSE + 1.0),
                _ => ("cold", PAUSE + COLD + 1.0),
            };
            rig::settled_idle(&stage.store, 3, Duration::from_secs(120)).await?;
            engine.heartbeat().await.map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            let before = lifecycle(&stage).await?;
            let began = Instant::now();
            let answer = engine.claim(request(n as u32), &Actor::Poolctl(Some("bench".into()))).await;
            let took = ms(began.elapsed());
            let ClaimOutcome::Done(result) = answer.map_err(|e| format!("a {want} claim failed: {e}"))?
            else {
                return Err("a create claim answered 202".into());
            };
            let id = result.instance_id.unwrap_or_default();
            let kind = power_before(&stage, &before, &id).await?;
            by_kind.entry(kind).or_default().push(took);
            engine.destroy(&id, &Actor::Poolctl(Some("bench".into()))).await.map_err(|e| e.to_string())?;
            engine.tick().await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(by_kind)
    }
    .await;
    stage.finish().await;
    let by_kind = result?;
    let mut table = Table::new(
        "idle-cost: claim latency at real speed by the Sprite's state before the claim",
        &["taken", "n", "p50 ms", "p99 ms", "max ms"],
    );
    let mut data = serde_json::Map::new();
    for kind in ["running", "warm", "cold"] {
        let summary = summarize(by_kind.get(kind).map_or(&[][..], |v| v.as_slice()));
        let label = if kind == "running" { "hot (running)" } else { kind };
        table.row(vec![
            label.into(),
            summary.n.to_string(),
            fmt(summary.p50),
            fmt(summary.p99),
            fmt(summary.max),
        ]);
        data.insert(kind.into(), json!(summary));
    }
    Ok((table, Value::Object(data)))
}

fn request(n: u32) -> ClaimRequest {
    let name = format!("bench agent {n}");
    ClaimRequest::new(name, "hi".into(), None, shared::config::PoolEnvironment::Dev).expect("a valid claim")
}

async fn lifecycle(stage: &Stage) -> Result<Value, String> {
    stage.control.lifecycle().await
}

/// The heartbeat and the tick at their production intervals, compressed; they stop when the
/// task is aborted.
fn spawn_sweeps(engine: Arc<Engine>, plan: &Plan) -> tokio::task::JoinHandle<()> {
    let (heartbeat, tick) = (plan.real(HEARTBEAT), plan.real(TICK));
    tokio::spawn(async move {
        let beats = {
            let engine = engine.clone();
            async move {
                let mut every = tokio::time::interval(heartbeat);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let _ = engine.heartbeat().await;
                }
            }
        };
        let ticks = async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let _ = engine.tick().await;
            }
        };
        tokio::join!(beats, ticks);
    })
}
