//! api-calls: Sprites API calls made by one tick, one heartbeat and one reconcile pass over a
//! settled pool of 10, 100 and 1000 idle instances, from the emulator's per-route counters.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use shared::gateway::GatewayTimeouts;
use shared::lifecycle::Actor;
use shared::wiring::LAMBDA_DB_CONNECTIONS;
use sprites_emulator::EmulatorConfig;

use super::stage::Stage;
use super::{Options, Report, Table, counter_diff, gateway_calls, is_sprites_route, sprites_calls};
use crate::rig;

const PASSES: usize = 3;

fn breakdown(diff: &BTreeMap<String, u64>, sprites: bool) -> String {
    let parts: Vec<String> = diff
        .iter()
        .filter(|(route, _)| is_sprites_route(route) == sprites)
        .map(|(route, n)| format!("{route} {n}"))
        .collect();
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let sizes: &[i64] = if options.quick { &[10, 100, 200] } else { &[10, 100, 1000] };
    let stage = Stage::new("apicalls", EmulatorConfig { speed: 0.0, ..Default::default() }, 10).await?;
    let result = run_on(&stage, sizes).await;
    stage.finish().await;
    let (rows, provisioning) = result?;
    let mut table = Table::new(
        "api-calls: calls per pass over a settled pool of idle instances (mean of 3 passes each)",
        &["instances", "pass", "Sprites API calls", "Sprites API routes", "gateway calls"],
    );
    for row in &rows {
        let per = |key: &str| row[key].as_f64().unwrap_or(f64::NAN);
        table.row(vec![
            row["instances"].to_string(),
            row["pass"].as_str().unwrap_or_default().into(),
            super::fmt(per("sprites_calls_per_pass")),
            row["sprites_breakdown"].as_str().unwrap_or_default().into(),
            super::fmt(per("gateway_calls_per_pass")),
        ]);
    }
    let mut prov = Table::new(
        "api-calls: Sprites API calls per provisioned instance (create -> idle)",
        &["instances added", "Sprites API calls", "per instance", "routes (total)"],
    );
    for p in &provisioning {
        let added = p["added"].as_f64().unwrap_or(f64::NAN);
        let calls = p["sprites_calls"].as_f64().unwrap_or(f64::NAN);
        prov.row(vec![
            p["added"].to_string(),
            p["sprites_calls"].to_string(),
            super::fmt(calls / added),
            p["breakdown"].as_str().unwrap_or_default().into(),
        ]);
    }
    let tick_constant = rows
        .iter()
        .filter(|r| r["pass"] == "tick")
        .all(|r| r["sprites_calls_per_pass"].as_f64() == rows[0]["sprites_calls_per_pass"].as_f64());
    let notes = vec![
        format!(
            "Tick: Sprites API calls per tick {} with the pool size (target: constant). A tick reads and writes \
             Postgres only; Sprites calls come from the steps it starts (none in a settled pool).",
            if tick_constant { "do not change" } else { "CHANGE" }
        ),
        "Heartbeat: no Sprites API call; one GET /convos/status per idle or claimed instance on the instance's own \
         URL (gateway calls grow with the pool by design; their wall time is the heartbeat scenario)."
            .into(),
        "Reconcile: one sprites.list page per 50 Sprites (the API's max_results cap), so it grows as ceil(N / 50); \
         it runs every 5 minutes, not every tick."
            .into(),
    ];
    Ok(Report {
        tables: vec![table, prov],
        notes,
        data: json!({ "passes": rows, "provisioning": provisioning, "passes_per_kind": PASSES }),
    })
}

async fn run_on(stage: &Stage, sizes: &[i64]) -> Result<(Vec<Value>, Vec<Value>), String> {
    let max_total = *sizes.iter().max().unwrap_or(&10) as u32 + 10;
    let provisioner = rig::engine(
        &stage.emulator,
        &stage.store,
        rig::production_settings(0, max_total),
        GatewayTimeouts::default(),
        None,
    );
    let mut rows = Vec::new();
    let mut provisioning = Vec::new();
    let mut current = 0i64;
    for &size in sizes {
        let before = stage.control.counters().await?;
        stage.provision(&provisioner, (size - current) as u32, size).await?;
        let after = stage.control.counters().await?;
        let diff = counter_diff(&before, &after);
        provisioning.push(json!({
            "added": size - current,
            "sprites_calls": sprites_calls(&diff),
            "gateway_calls": gateway_calls(&diff),
            "breakdown": breakdown(&diff, true),
            "routes": diff,
        }));
        current = size;
        // The sweeps as a production process runs them: min_idle = the pool (nothing to
        // replenish), the Lambda's connection count.
        let store = stage.db.store(LAMBDA_DB_CONNECTIONS);
        let engine = rig::engine(
            &stage.emulator,
            &store,
            rig::production_settings(size as u32, max_total),
            GatewayTimeouts::default(),
            None,
        );
        // Nothing may be running in the background while counting.
        let quiet_before = stage.control.counters().await?;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let quiet = counter_diff(&quiet_before, &stage.control.counters().await?);
        if !quiet.is_empty() {
            return Err(format!("background calls in a settled pool: {quiet:?}"));
        }
        for pass in ["tick", "heartbeat", "reconcile"] {
            let mut total: BTreeMap<String, u64> = BTreeMap::new();
            let mut reports = Vec::new();
            for _ in 0..PASSES {
                let before = stage.control.counters().await?;
                let report = match pass {
                    "tick" => serde_json::to_value(engine.tick().await.map_err(|e| e.to_string())?),
                    "heartbeat" => serde_json::to_value(engine.heartbeat().await.map_err(|e| e.to_string())?),
                    _ => serde_json::to_value(
                        engine.reconcile(&Actor::RECONCILE).await.map_err(|e| e.to_string())?,
                    ),
                }
                .unwrap_or_default();
                let after = stage.control.counters().await?;
                for (route, n) in counter_diff(&before, &after) {
                    *total.entry(route).or_default() += n;
                }
                reports.push(report);
            }
            let per_pass: BTreeMap<String, f64> =
                total.iter().map(|(r, n)| (r.clone(), *n as f64 / PASSES as f64)).collect();
            let mean = |sprites: bool| {
                per_pass.iter().filter(|(r, _)| is_sprites_route(r) == sprites).map(|(_, n)| n).sum::<f64>()
            };
            let text: Vec<String> = per_pass
                .iter()
                .filter(|(r, _)| is_sprites_route(r))
                .map(|(r, n)| format!("{r} {}", super::fmt(*n)))
                .collect();
            rows.push(json!({
                "instances": size,
                "pass": pass,
                "sprites_calls_per_pass": mean(true),
                "gateway_calls_per_pass": mean(false),
                "sprites_breakdown": if text.is_empty() { "-".to_string() } else { text.join(", ") },
                "per_route_per_pass": per_pass,
                "reports": reports,
            }));
        }
        drop(engine);
        store.pool().close().await;
    }
    Ok((rows, provisioning))
}
