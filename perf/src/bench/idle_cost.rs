//! idle-cost (issue 17.4): what idle instances cost with hibernation. A pool of 10 idle runs
//! for a simulated day with `hotIdle` = 10 (today: every idle instance pinged, so none ever
//! sleeps), 3, 1 and 0, with a claim every N simulated minutes; the emulator's meter of
//! running time (the billing proxy) gives running-hours per idle instance per day, and the
//! claims their latency split by whether the instance taken was running, warm or cold.
//!
//! Time is compressed by `scale`: every period the pool and the Sprites keep (idle pause, cold
//! after, heartbeat and tick intervals, the sleeping check) is divided by it, while latencies
//! (wake, gateway boot, gateway calls) stay real (emulator speed 1), so claim latencies are
//! real-world figures and running time scales back by `scale`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::engine::{ClaimError, ClaimOutcome, ClaimRequest, Engine};
use shared::gateway::GatewayTimeouts;
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
            "hot p50/p99 ms",
            "warm p50/p99 ms",
            "cold p50/p99 ms",
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
        let latency = |kind: &str| {
            let s = &run["latency"][kind];
            if s["n"].as_u64().unwrap_or(0) == 0 {
                "-".to_string()
            } else {
                format!(
                    "{}/{} (n={})",
                    fmt(s["p50"].as_f64().unwrap_or(f64::NAN)),
                    fmt(s["p99"].as_f64().unwrap_or(f64::NAN)),
                    s["n"]
                )
            }
        };
        table.row(vec![
            if hot == IDLE { format!("{hot} (today)") } else { hot.to_string() },
            fmt(per_instance_day),
            format!("{}%", fmt(100.0 * per_instance_day / today)),
            fmt(per_instance_day * 30.0 * DOLLARS_PER_RUNNING_HOUR),
            run["claims"].to_string(),
            run["refused"].to_string(),
            latency("running"),
            latency("warm"),
            latency("cold"),
        ]);
        runs.push(run);
    }
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
        "Claim latency is real (emulator speed 1: warm wake 100-500 ms, cold wake 1-2 s, gateway boot 2 s); the kind is \
         the taken Sprite's power state just before the claim."
            .into(),
    ];
    Ok(Report {
        tables: vec![table],
        notes,
        data: json!({ "runs": runs, "scale": plan.scale, "hours": plan.hours }),
    })
}

async fn run_one(plan: &Plan, hot: u32) -> Result<Value, String> {
    let emulator = EmulatorConfig {
        speed: 1.0,
        setup_secs: 2.0,
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
    engine.change_pool_settings(&patch, "bench").await.map_err(|e| e.to_string())?;
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
    let mut latencies: HashMap<&'static str, Vec<f64>> = HashMap::new();
    let (mut claims, mut refused) = (0u32, 0u32);
    let mut next = started + every;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let before = lifecycle(stage).await?;
        let began = Instant::now();
        let answer = engine.claim(request(claims)).await;
        let took = ms(began.elapsed());
        claims += 1;
        match answer {
            Ok(ClaimOutcome::Done(result)) => {
                let id = result.instance_id.unwrap_or_default();
                let name = stage.store.instance(&id).await.map_err(|e| e.to_string())?.map(|i| i.sprite_name);
                let power = name.and_then(|n| before["sprites"][&n]["status"].as_str().map(String::from));
                let kind = match power.as_deref() {
                    Some("warm") => "warm",
                    Some("cold") => "cold",
                    _ => "running",
                };
                latencies.entry(kind).or_default().push(took);
                // The agent leaves at once: the pool provisions its replacement.
                engine.destroy(&id).await.map_err(|e| e.to_string())?;
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
    let summary = |kind: &str| json!(summarize(latencies.get(kind).map_or(&[][..], |v| v.as_slice())));
    Ok(json!({
        "hot_idle": hot,
        "running_hours": simulated_hours,
        "running_hours_per_instance_day": simulated_hours / f64::from(IDLE) / days,
        "claims": claims,
        "refused": refused,
        "latency": { "running": summary("running"), "warm": summary("warm"), "cold": summary("cold") },
        "wall_secs": started.elapsed().as_secs_f64(),
    }))
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
