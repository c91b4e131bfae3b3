//! claim-sustained: open-loop Poisson arrivals of `POST /api/pool/claim` (create mode) at fixed
//! rates through the real HTTP route, against an idle pool large enough for every arrival. Open
//! loop: each claim is sent at its scheduled time whether or not earlier ones have answered, and
//! its latency counts from that time, so a server that falls behind shows it (no coordinated
//! omission). Reports the overhead beyond the emulated gateway latency, errors, and Postgres
//! commits per claim.

use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use shared::gateway::GatewayTimeouts;
use sprites_emulator::EmulatorConfig;

use super::claims::{MAIN_JOB_CONNECTIONS, claim, emulated_claim_ms, http_client};
use super::stage::Stage;
use super::{Options, Report, Table, fmt, ms, summarize};
use crate::rig;

/// The issue 13 target: p99 overhead within this at >= 200 claims/s.
const P99_TARGET_MS: f64 = 50.0;

/// Arrival times of a Poisson process at `rate` per second over `window`, from its start.
fn arrivals(rate: f64, window: Duration) -> Vec<Duration> {
    let mut rng = rand::rng();
    let mut at = 0.0;
    let mut out = Vec::new();
    loop {
        // Exponential inter-arrival gaps: -ln(U) / rate, U in (0, 1].
        let u: f64 = 1.0 - rng.random::<f64>();
        at += -u.ln() / rate;
        if at >= window.as_secs_f64() {
            return out;
        }
        out.push(Duration::from_secs_f64(at));
    }
}

/// A Postgres backend publishes its transaction counts at most once a second while busy, and
/// 10 s after it went idle (PGSTAT_IDLE_INTERVAL): wait that long after the load stops.
const STATS_FLUSH: Duration = Duration::from_secs(11);

/// Transactions committed on the scenario's database so far, once every backend has published
/// its counts: read at once, the figure misses the last second of work, which is then counted
/// in the next window (provisioning's ~1,500 commits/s added a whole commit per claim to the
/// first rate).
async fn settled_commits(stage: &Stage) -> Result<i64, String> {
    tokio::time::sleep(STATS_FLUSH).await;
    stage.scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").await
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let rates: &[f64] = if options.quick { &[50.0, 100.0] } else { &[50.0, 100.0, 200.0, 400.0] };
    let window = Duration::from_secs(if options.quick { 5 } else { 30 });
    let mut table = Table::new(
        format!(
            "claim-sustained: open-loop Poisson arrivals for {} s per rate; overhead = latency - emulated gateway, ms",
            window.as_secs()
        ),
        &["speed", "rate/s", "sent", "ok", "errors", "p50", "p99", "max", "p99 <= 50", "commits/claim"],
    );
    let mut data = Vec::new();
    let mut notes = Vec::new();
    for speed in [0.0, 1.0] {
        let stage = Stage::new(
            "sustained",
            EmulatorConfig { speed: 0.0, ..Default::default() },
            MAIN_JOB_CONNECTIONS,
        )
        .await?;
        let result = run_speed(&stage, speed, rates, window).await;
        stage.finish().await;
        let series = result?;
        let mut best: Option<f64> = None;
        for s in &series {
            let p99 = s["overhead_ms"]["p99"].as_f64().unwrap_or(f64::NAN);
            let within = p99 <= P99_TARGET_MS && s["errors"].as_u64() == Some(0);
            if within {
                best = Some(s["rate"].as_f64().unwrap_or(0.0));
            }
            table.row(vec![
                fmt(speed),
                fmt(s["rate"].as_f64().unwrap_or(f64::NAN)),
                s["sent"].to_string(),
                s["ok"].to_string(),
                s["errors"].to_string(),
                fmt(s["overhead_ms"]["p50"].as_f64().unwrap_or(f64::NAN)),
                fmt(p99),
                fmt(s["overhead_ms"]["max"].as_f64().unwrap_or(f64::NAN)),
                if within { "yes".into() } else { "no".into() },
                fmt(s["commits_per_claim"].as_f64().unwrap_or(f64::NAN)),
            ]);
        }
        notes.push(match best {
            Some(rate) => format!(
                "speed {speed}: highest rate with p99 overhead <= {P99_TARGET_MS} ms and no errors: {rate}/s"
            ),
            None => format!("speed {speed}: no rate kept p99 overhead <= {P99_TARGET_MS} ms without errors"),
        });
        data.push(json!({ "emulator_speed": speed, "series": series }));
    }
    notes.push(
        "Commits per claim: pg_stat_database.xact_commit of the scenario's database over the window, divided by \
         the claims sent; nothing else runs against that database meanwhile (no sweeps, min idle 0 so the claim's \
         replenish starts nothing)."
            .into(),
    );
    Ok(Report { tables: vec![table], notes, data: json!({ "speeds": data }) })
}

async fn run_speed(stage: &Stage, speed: f64, rates: &[f64], window: Duration) -> Result<Vec<Value>, String> {
    // Every arrival of every rate gets an idle instance (20% over the expected count).
    let pool: u32 = rates.iter().map(|r| (r * window.as_secs_f64() * 1.2) as u32 + 20).sum();
    let cap = pool + 10;
    let settings = rig::production_settings(0, cap);
    let process = rig::process(&stage.emulator, &stage.store, settings, GatewayTimeouts::default(), None);
    let engine = process.engine.clone();
    let server = rig::serve_api(process).await?;
    let http = http_client();
    // The whole pool first, at speed 0 (in rounds: Stage::provision).
    if let Err(err) = stage.provision(&engine, pool, i64::from(pool)).await {
        server.stop().await;
        return Err(err);
    }
    stage.set_speed(speed).await?;
    let mut series = Vec::new();
    let mut claimed = 0i64;
    let mut before = settled_commits(stage).await?;
    for &rate in rates {
        let (emulated_ms, _, _) = emulated_claim_ms(stage).await?;
        let schedule = arrivals(rate, window);
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = schedule
            .iter()
            .enumerate()
            .map(|(i, at)| {
                let (http, base, at) = (http.clone(), server.base_url.clone(), start + *at);
                let index = claimed as usize + i;
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let answer = claim(&http, &base, index).await;
                    // Latency from the scheduled send, so a late start counts against us.
                    (answer.status, ms(at.into_std().elapsed()))
                })
            })
            .collect();
        let mut ok = Vec::new();
        let mut errors = 0u64;
        for task in tasks {
            match task.await {
                Ok((200, latency)) => ok.push(latency - emulated_ms),
                _ => errors += 1,
            }
        }
        let after = settled_commits(stage).await?;
        claimed += schedule.len() as i64;
        let overhead = summarize(&ok);
        series.push(json!({
            "rate": rate,
            "window_secs": window.as_secs(),
            "sent": schedule.len(),
            "ok": ok.len(),
            "errors": errors,
            "emulated_gateway_ms": emulated_ms,
            "overhead_ms": serde_json::to_value(overhead).unwrap_or_default(),
            "commits_per_claim": (after - before) as f64 / schedule.len().max(1) as f64,
        }));
        before = after;
    }
    server.stop().await;
    Ok(series)
}
