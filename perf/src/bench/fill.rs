//! fill: time from an empty pool to POOL_MIN_IDLE idle instances for a given setup duration,
//! with the engine driven as production drives it: a tick every TICK_INTERVAL (replenish
//! within the pace limit) and the steps chained as soon as each one ends.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::gateway::GatewayTimeouts;
use sprites_emulator::EmulatorConfig;

use super::stage::Stage;
use super::{Options, Report, Table, fmt, summarize};
use crate::rig;

pub async fn run(options: &Options) -> Result<Report, String> {
    let min_idle: u32 = if options.quick { 12 } else { 50 };
    let setup_secs = options.setup_secs.unwrap_or(if options.quick { 5.0 } else { 20.0 });
    let tick_secs = options.tick_secs.unwrap_or(if options.quick { 5.0 } else { 30.0 });
    let production_batch = rig::production_settings(min_idle, min_idle * 2).replenish_batch;
    // The old pace of 3 per tick beside the default; one run when the default covers the pool.
    let mut runs = vec![("default batch", production_batch)];
    if !options.default_batch_only {
        if production_batch < min_idle {
            runs.push(("whole deficit", min_idle));
        }
        runs.push(("old pace", 3));
    }
    let mut table = Table::new(
        format!(
            "fill: POOL_MIN_IDLE={min_idle} from empty, setup {setup_secs} s (speed 1), tick every {tick_secs} s \
             (target: fill <= 1.2 x setup)"
        ),
        &[
            "replenish batch",
            "ticks run",
            "first idle s",
            "all idle s",
            "x setup",
            "one instance p50 s",
            "one instance max s",
            "target",
        ],
    );
    let mut data = Vec::new();
    for (label, batch) in runs {
        let stage = Stage::new(
            "fill",
            EmulatorConfig { speed: 1.0, setup_secs, ..Default::default() },
            10, // the main job's connections
        )
        .await?;
        let result = fill_on(&stage, min_idle, batch, tick_secs).await;
        stage.finish().await;
        let r = result?;
        let all = r["all_idle_secs"].as_f64().unwrap_or(f64::NAN);
        let ratio = all / setup_secs;
        table.row(vec![
            format!("{batch} ({label})"),
            r["ticks"].to_string(),
            fmt(r["first_idle_secs"].as_f64().unwrap_or(f64::NAN)),
            fmt(all),
            fmt(ratio),
            fmt(r["per_instance_secs"]["p50"].as_f64().unwrap_or(f64::NAN)),
            fmt(r["per_instance_secs"]["max"].as_f64().unwrap_or(f64::NAN)),
            if ratio <= 1.2 { "met".into() } else { "MISSED".into() },
        ]);
        data.push(json!({ "run": label, "replenish_batch": batch, "ratio_to_setup": ratio, "result": r }));
    }
    let notes = vec![
        "One instance's chain at speed 1 beside the setup script: sprites.create 1.2 s, exec and file calls, \
         services.put 0.8 s, the gateway's boot 2 s (polled every ready_poll = 1 s), checkpoints.create 4 s: \
         about 9 s that no pool-level change can remove, so with a 20 s setup even a perfect fill is ~1.45 x setup."
            .into(),
        format!(
            "The replenish pace: one tick starts at most EngineSettings.replenish_batch instances ({production_batch} \
             by default, POOL_REPLENISH_BATCH), so filling {min_idle} from empty takes ceil({min_idle} / \
             {production_batch}) ticks at TICK_INTERVAL ({tick_secs} s here) plus one chain; the unlimited run \
             starts all of them on the first tick."
        ),
        "Steps are chained in-process (the main job's arrangement); on AWS each hop is an EventBridge event to the \
         step-worker, which adds its delivery latency per step (not measured here)."
            .into(),
    ];
    Ok(Report {
        tables: vec![table],
        notes,
        data: json!({ "min_idle": min_idle, "setup_secs": setup_secs, "tick_secs": tick_secs, "runs": data }),
    })
}

async fn fill_on(stage: &Stage, min_idle: u32, batch: u32, tick_secs: f64) -> Result<Value, String> {
    let mut settings = rig::production_settings(min_idle, min_idle * 2);
    settings.replenish_batch = batch;
    let engine = rig::engine(&stage.emulator, &stage.store, settings, GatewayTimeouts::default(), None);
    let ticks_needed = min_idle.div_ceil(batch.max(1));
    let setup = stage.control.config().await?["setup_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let timeout = Duration::from_secs_f64(f64::from(ticks_needed) * tick_secs + setup * 3.0 + 120.0);
    let started = Instant::now();
    // The tick loop, as the main job runs it: a pass every TICK_INTERVAL, the first at once.
    let ticker = {
        let engine = engine.clone();
        let period = Duration::from_secs_f64(tick_secs);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let _ = engine.tick().await;
            }
        })
    };
    let mut first_idle = None;
    let all_idle = loop {
        let idle = stage.scalar("SELECT count(*) FROM instances WHERE status = 'idle'").await?;
        if idle > 0 && first_idle.is_none() {
            first_idle = Some(started.elapsed());
        }
        if idle >= i64::from(min_idle) {
            break started.elapsed();
        }
        if started.elapsed() > timeout {
            ticker.abort();
            return Err(format!("only {idle} of {min_idle} idle after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ticker.abort();
    drop(engine);
    let per_instance: Vec<f64> = sqlx::query_scalar::<_, f64>(
        "SELECT extract(epoch FROM ready_at - created_at)::float8 FROM instances WHERE ready_at IS NOT NULL",
    )
    .fetch_all(stage.store.pool())
    .await
    .map_err(|e| e.to_string())?;
    let failures =
        stage.scalar("SELECT count(*) FROM instance_events WHERE to_status = 'destroying'").await?;
    let ticks = (all_idle.as_secs_f64() / tick_secs).floor() as u64 + 1;
    Ok(json!({
        "first_idle_secs": first_idle.map(|d| d.as_secs_f64()),
        "all_idle_secs": all_idle.as_secs_f64(),
        "ticks": ticks,
        "ticks_needed_by_pace": ticks_needed,
        "setup_secs": setup,
        "per_instance_secs": summarize(&per_instance),
        "instances_destroyed_on_the_way": failures,
    }))
}
