//! adaptive (issue 15.2): one synthetic day of claims (a quiet night, a morning ramp, a
//! lunchtime burst, an afternoon, an evening ramp down), compressed in time, replayed through
//! the real claim route against pools sized by a fixed min idle at several values and by
//! adaptive sizing. Two numbers per run: claims refused (503: no idle instance) and idle
//! instance-hours, both in simulated time.
//!
//! The compression is whole: the emulator runs at speed 1 / compression (a 120 s setup script
//! takes 120 simulated seconds), the engine's polls and adaptive sizing's windows, cooldown
//! and assumed lead time are divided by it too, and a tick runs every TICK_SIM simulated. What is
//! not compressed is the engine's own work (Postgres round trips, this machine's CPU): it
//! lengthens the measured lead time, which the table shows in simulated minutes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shared::engine::{Engine, EngineSettings};
use shared::gateway::GatewayTimeouts;
use shared::lifecycle::Actor;
use shared::sizing::Tuning;
use sprites_emulator::EmulatorConfig;
use time::OffsetDateTime;

use super::claims::{claim, http_client};
use super::stage::Stage;
use super::{Options, Report, Table, fmt};
use crate::rig;

/// The process's Postgres connections: the main job's 10 starve when a burst of claims meets
/// dozens of provisioning chains at this compression.
const CONNECTIONS: u32 = 30;
/// The same day for every run.
const SEED: u64 = 15;
/// A tick every 30 simulated seconds, as TICK_INTERVAL_MS in production.
const TICK_SIM: Duration = Duration::from_secs(30);
/// The fixed min idle values compared.
const FIXED: &[u32] = &[2, 4, 8, 12];
/// Adaptive mode's bounds.
const FLOOR: u32 = 1;
const CEILING: u32 = 16;
/// Higher than any run reaches (every claim keeps its instance for the day).
const MAX_TOTAL: u32 = 1000;
/// The lunchtime burst, in simulated hours.
const LUNCH: (f64, f64) = (12.0, 13.0);

/// The busiest hour's rate, claims per simulated hour.
const PEAK: f64 = 30.0;

/// Claims per simulated hour at hour `h` of the day.
fn demand(h: f64) -> f64 {
    let ramp = |from: f64, to: f64, start: f64, end: f64| from + (to - from) * (h - start) / (end - start);
    match h {
        h if h < 6.0 => 0.5,
        h if h < 9.0 => ramp(0.5, 8.0, 6.0, 9.0),
        h if h < LUNCH.0 => 8.0,
        h if h < LUNCH.1 => PEAK,
        h if h < 17.0 => 8.0,
        h if h < 21.0 => ramp(8.0, 0.5, 17.0, 21.0),
        _ => 0.5,
    }
}

/// Arrival hours of a Poisson process of rate `demand(h)` (thinning one of rate PEAK).
fn day_arrivals() -> Vec<f64> {
    let peak = PEAK;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut at = 0.0;
    let mut out = Vec::new();
    loop {
        let u: f64 = 1.0 - rng.random::<f64>();
        at += -u.ln() / peak;
        if at >= 24.0 {
            return out;
        }
        if rng.random::<f64>() < demand(at) / peak {
            out.push(at);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Sizing {
    Fixed(u32),
    Adaptive,
}

impl Sizing {
    fn label(&self) -> String {
        match self {
            Sizing::Fixed(n) => format!("fixed minIdle {n}"),
            Sizing::Adaptive => format!("adaptive [{FLOOR}, {CEILING}]"),
        }
    }
}

/// Simulated time to wall time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    compression: f64,
}

impl Clock {
    fn wall(&self, simulated: Duration) -> Duration {
        Duration::from_secs_f64(simulated.as_secs_f64() / self.compression)
    }

    fn hour(&self) -> f64 {
        3600.0 / self.compression
    }
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let day_wall = if options.quick { 36.0 } else { 100.0 };
    let clock = Clock { compression: 24.0 * 3600.0 / day_wall };
    let arrivals = day_arrivals();
    let lunch = arrivals.iter().filter(|h| (LUNCH.0..LUNCH.1).contains(*h)).count();
    let production = Tuning::production();
    let mut table = Table::new(
        format!(
            "adaptive: one simulated day ({} claims, {lunch} in the lunchtime hour) in {day_wall} s \
             (x{:.0}); setup script 120 s simulated, a tick every {} s simulated",
            arrivals.len(),
            clock.compression,
            TICK_SIM.as_secs()
        ),
        &[
            "sizing",
            "claims",
            "refused (503)",
            "refused at lunch",
            "other errors",
            "idle instance-hours",
            "lead time min (mean)",
            "lead time min (median)",
            "peak target",
            "built",
            "shed",
        ],
    );
    let mut runs: Vec<Sizing> = FIXED.iter().map(|n| Sizing::Fixed(*n)).collect();
    runs.push(Sizing::Adaptive);
    let mut data = Vec::new();
    for sizing in runs {
        let emulator =
            EmulatorConfig { speed: 1.0 / clock.compression, setup_secs: 120.0, ..Default::default() };
        let stage = Stage::new("adaptive", emulator, CONNECTIONS).await?;
        let result = run_day(&stage, sizing, clock, &arrivals).await;
        stage.finish().await;
        let r = result?;
        table.row(vec![
            sizing.label(),
            r["claims"].to_string(),
            r["refused"].to_string(),
            r["refused_at_lunch"].to_string(),
            r["errors"].to_string(),
            fmt(r["idle_instance_hours"].as_f64().unwrap_or(f64::NAN)),
            fmt(r["lead_time_sim_secs"].as_f64().unwrap_or(f64::NAN) / 60.0),
            fmt(r["lead_time_median_sim_secs"].as_f64().unwrap_or(f64::NAN) / 60.0),
            r["peak_target"].to_string(),
            r["instances_built"].to_string(),
            r["shed"].to_string(),
        ]);
        data.push(json!({ "sizing": sizing.label(), "result": r }));
    }
    let notes = vec![
        format!(
            "Demand (claims per simulated hour): 0.5 from 0 to 6 h, ramping to 8 by 9 h, 8 until noon, {PEAK} \
             from 12 to 13 h, 8 until 17 h, ramping down to 0.5 by 21 h; Poisson arrivals, seed {SEED}, the same \
             day for every run. Each claim goes through POST /api/pool/claim once (a refused one is not \
             retried) and keeps its instance for the rest of the day."
        ),
        format!(
            "Adaptive: floor {FLOOR}, ceiling {CEILING}, the production tuning compressed: EWMA windows {} s \
             (fast) and {} s (slow), cooldown {} s, step down {} of the target per cooldown, \
             stockout chance {} per lead time, assumed lead time {} s (simulated). Idle instance-hours: time each instance \
             spent idle between the first and the last minute of the day, from the history. Built: instances \
             that went from created to idle during the run (the initial fill included); lead times are theirs.",
            production.fast_window.as_secs(),
            production.slow_window.as_secs(),
            production.cooldown.as_secs(),
            production.step_down,
            production.stockout,
            production.assumed_lead.as_secs()
        ),
        "Each run starts with its pool filled to its initial target (min idle, or adaptive's floor).".into(),
    ];
    Ok(Report {
        tables: vec![table],
        notes,
        data: json!({
            "day_wall_secs": day_wall,
            "compression": clock.compression,
            "arrival_hours": arrivals,
            "runs": data,
        }),
    })
}

/// The engine's waits compressed with the clock; sizing as `sizing` asks.
fn day_settings(sizing: Sizing, clock: Clock) -> EngineSettings {
    let production = Tuning::production();
    let min_idle = match sizing {
        Sizing::Fixed(n) => n,
        Sizing::Adaptive => 0,
    };
    EngineSettings {
        min_idle,
        max_total: MAX_TOTAL,
        install_poll: Duration::from_millis(25),
        ready_poll: Duration::from_millis(25),
        sizing: Tuning {
            fast_window: clock.wall(production.fast_window),
            slow_window: clock.wall(production.slow_window),
            cooldown: clock.wall(production.cooldown),
            assumed_lead: clock.wall(production.assumed_lead),
            ..production
        },
        ..rig::bench_settings()
    }
}

async fn run_day(stage: &Stage, sizing: Sizing, clock: Clock, arrivals: &[f64]) -> Result<Value, String> {
    let process = rig::process(
        &stage.emulator,
        &stage.store,
        day_settings(sizing, clock),
        GatewayTimeouts::default(),
        None,
    );
    let engine = process.engine.clone();
    let server = rig::serve_api(process).await?;
    let result = day_on(stage, &engine, &server.base_url, sizing, clock, arrivals).await;
    server.stop().await;
    result
}

async fn day_on(
    stage: &Stage,
    engine: &std::sync::Arc<Engine>,
    base: &str,
    sizing: Sizing,
    clock: Clock,
    arrivals: &[f64],
) -> Result<Value, String> {
    if let Sizing::Adaptive = sizing {
        let patch = json!({ "mode": "adaptive", "floor": FLOOR, "ceiling": CEILING });
        engine
            .change_pool_settings(&patch, &Actor::Poolctl(Some("bench".into())))
            .await
            .map_err(|e| e.to_string())?;
    }
    let initial = match sizing {
        Sizing::Fixed(n) => i64::from(n),
        Sizing::Adaptive => i64::from(FLOOR),
    };
    engine.tick().await.map_err(|e| format!("tick: {e}"))?;
    rig::settled_idle(&stage.store, initial, Duration::from_secs(60)).await?;

    // The tick loop, as the main job runs it; it notes the highest target it kept warm and,
    // for the JSON, every change of what it kept warm (simulated hour, target).
    let peak = std::sync::Arc::new(AtomicU32::new(sizing_initial(sizing)));
    let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(f64, u32)>::new()));
    let start = tokio::time::Instant::now();
    let hour = clock.hour();
    let ticker = {
        let (engine, peak, targets) = (engine.clone(), peak.clone(), targets.clone());
        let period = clock.wall(TICK_SIM);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Ok(Some(sizing)) = engine.tick().await.map(|r| r.sizing) {
                    peak.fetch_max(sizing.in_force, Ordering::Relaxed);
                    let mut targets = targets.lock().unwrap_or_else(|e| e.into_inner());
                    if targets.last().is_none_or(|(_, t)| *t != sizing.in_force) {
                        targets.push((start.elapsed().as_secs_f64() / hour, sizing.in_force));
                    }
                }
            }
        })
    };
    let http = http_client();
    let day_started = db_now(stage).await?;
    let tasks: Vec<_> = arrivals
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (http, base, at, h) =
                (http.clone(), base.to_string(), start + Duration::from_secs_f64(h * hour), *h);
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                (h, claim(&http, &base, i).await.status)
            })
        })
        .collect();
    let mut refused = 0u64;
    let mut refused_at_lunch = 0u64;
    let mut refused_hours = Vec::new();
    let mut errors = 0u64;
    for task in tasks {
        match task.await {
            Ok((_, 200)) => {}
            Ok((h, 503)) => {
                refused += 1;
                refused_hours.push(h);
                if (LUNCH.0..LUNCH.1).contains(&h) {
                    refused_at_lunch += 1;
                }
            }
            _ => errors += 1,
        }
    }
    tokio::time::sleep_until(start + Duration::from_secs_f64(24.0 * hour)).await;
    let day_ended = db_now(stage).await?;
    ticker.abort();
    let idle_wall_secs = idle_seconds(stage, day_started, day_ended).await?;
    let leads = stage.store.lead_times(1000).await.map_err(|e| e.to_string())?;
    // The mean, as the earlier tables gave it, and the median adaptive sizing now uses.
    let lead = leads.iter().sum::<f64>() / leads.len() as f64;
    let median = shared::sizing::estimate::lead_time(&leads).unwrap_or(f64::NAN);
    let shed_events =
        stage.scalar("SELECT count(*) FROM instance_events WHERE reason = 'scale_down'").await?;
    Ok(json!({
        "claims": arrivals.len(),
        "refused": refused,
        "refused_at_lunch": refused_at_lunch,
        "errors": errors,
        "idle_instance_hours": idle_wall_secs * clock.compression / 3600.0,
        "lead_time_sim_secs": lead * clock.compression,
        "lead_time_median_sim_secs": median * clock.compression,
        "lead_time_wall_ms": lead * 1000.0,
        "instances_built": leads.len(),
        "peak_target": peak.load(Ordering::Relaxed),
        "shed": shed_events,
        "refused_hours": refused_hours,
        "targets": targets.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }))
}

fn sizing_initial(sizing: Sizing) -> u32 {
    match sizing {
        Sizing::Fixed(n) => n,
        Sizing::Adaptive => FLOOR,
    }
}

async fn db_now(stage: &Stage) -> Result<OffsetDateTime, String> {
    sqlx::query_scalar::<_, OffsetDateTime>("SELECT now()")
        .fetch_one(stage.store.pool())
        .await
        .map_err(|e| e.to_string())
}

/// Seconds instances spent idle between `from` and `to`: each history line into idle lasts
/// until the instance's next line (or `to`).
async fn idle_seconds(stage: &Stage, from: OffsetDateTime, to: OffsetDateTime) -> Result<f64, String> {
    sqlx::query_scalar::<_, f64>(
        "WITH lines AS (
             SELECT at, to_status, lead(at) OVER (PARTITION BY instance_id ORDER BY id) AS next_at
             FROM instance_events
         )
         SELECT COALESCE(sum(extract(epoch FROM LEAST(COALESCE(next_at, $2), $2) - GREATEST(at, $1))), 0)::float8
         FROM lines
         WHERE to_status = 'idle' AND at < $2 AND COALESCE(next_at, $2) > $1",
    )
    .bind(from)
    .bind(to)
    .fetch_one(stage.store.pool())
    .await
    .map_err(|e| e.to_string())
}
