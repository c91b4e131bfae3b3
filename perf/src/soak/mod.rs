//! The chaos soak (issue 6, item 2). One scratch database, one emulator, the HTTP API in this
//! process and every step in a worker process that is SIGKILLed and restarted at random, while
//! clients claim, recycle and destroy and the emulator injects errors, hangs, Sprite deaths and
//! dead gateways, and a fraction of step deliveries is lost. Then the chaos stops, the pool
//! settles, and the checks say whether anything was lost, leaked or bound twice. A second pool
//! (its own database, the same emulator and environment) runs beside it throughout and must
//! lose nothing to it, nor take anything of it (second_pool.rs, issue 14.1).
//!
//! Who runs what:
//! - this process: the emulator, the API (`pool_local::serve`) on an engine whose deliveries go
//!   to the worker over loopback (lost while it is down), the clients, the chaos, the checks;
//! - the worker (`soak worker ...`, this binary again): tick, heartbeat and reconcile on short
//!   intervals, every step they and their chained deliveries produce, and the deliveries the
//!   API sends it. Killing it never touches a client's request path.

mod args;
mod chain;
mod chaos;
mod checks;
mod clients;
mod observe;
mod railway;
mod second_pool;
mod secrets;
mod steering;
mod supervisor;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use shared::config::Config;
use shared::lifecycle::Actor;
use shared::store::Status;
use shared::wiring::Steps;
use sprites_emulator::EmulatorConfig;
use tokio::sync::watch;

use crate::rig;
use chain::{LossyChain, RemoteChain};
use clients::{ClientStats, Ledger};
use second_pool::SecondPool;
use supervisor::Worker;

use args::{IDLE_PAUSE, SPRITES_TIMEOUT, max_total};
pub use args::{SoakArgs, WorkerArgs, gateway_timeouts, soak_settings};
use observe::{counts, pending_claims, print_summary, snapshot, status_counts, wait_for};
use steering::ROLLOUT_REF;
pub use worker::run as run_worker;

/// Runs the soak; `Ok(true)` when every check passed.
pub async fn run(args: SoakArgs) -> Result<bool, String> {
    let chaos_for = match (args.minutes, args.seconds) {
        (Some(m), _) => Duration::from_secs_f64(m * 60.0),
        (None, Some(s)) => Duration::from_secs(s),
        (None, None) => Duration::from_secs(300),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    });
    std::fs::create_dir_all(&args.json_dir).map_err(|e| format!("{}: {e}", args.json_dir.display()))?;
    init_parent_log(&args.json_dir.join("api.log"))?;
    let worker_log = args.json_dir.join("worker.log");
    let _ = std::fs::remove_file(&worker_log);
    let max_total = max_total(&args);
    println!(
        "soak: {} s of chaos, POOL_MIN_IDLE {}, POOL_MAX_TOTAL {max_total}, hotIdle {}, maxRunning {}, running \
         limit {}, {} clients, seed {seed}",
        chaos_for.as_secs(),
        args.min_idle,
        args.hot_idle,
        args.max_running,
        args.running_limit,
        args.clients
    );

    let db = rig::ScratchDb::create("soak").await?;
    let second_db = rig::ScratchDb::create("soak_second").await?;
    println!("soak: database {}, the second pool's {}", db.name, second_db.name);
    let emulator = rig::emulator(EmulatorConfig {
        speed: 0.02,
        setup_secs: 100.0,
        join_delay_ms: 5000,
        idle_pause_secs: IDLE_PAUSE.as_secs_f64(),
        cold_after_secs: 2.0 * IDLE_PAUSE.as_secs_f64(),
        running_limit: Some(args.running_limit),
        ..EmulatorConfig::default()
    })
    .await;
    let worker = Arc::new(Worker::new(
        vec![
            format!("--database-url={}", db.url),
            format!("--emulator-url={}", emulator.base_url()),
            format!("--emulator-token={}", emulator.token()),
            format!("--min-idle={}", args.min_idle),
            format!("--max-total={max_total}"),
            format!("--drop-rate={}", args.drop_rate),
            format!("--seed={}", seed ^ 0x5eed_0001),
        ],
        worker_log,
        args.kill_anywhere,
    ));
    // Ctrl-C still stops the worker and drops the scratch database.
    let outcome = tokio::select! {
        outcome = soak(&args, seed, chaos_for, [&db, &second_db], &emulator, worker.clone()) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
    };
    worker.stop().await;
    emulator.shutdown().await;
    if args.keep_db {
        println!("soak: kept databases {} and {}", db.name, second_db.name);
    } else {
        db.drop_db().await;
        second_db.drop_db().await;
    }
    match outcome {
        Ok(passed) if args.railway_secs > 0 => Ok(railway_round(&args).await? && passed),
        other => other,
    }
}

/// The Railway round after the Sprites chaos: its checks printed and written to
/// `railway.json` beside `soak.json`.
async fn railway_round(args: &SoakArgs) -> Result<bool, String> {
    println!("soak railway: {} s of Railway faults", args.railway_secs);
    let round = railway::run(Duration::from_secs(args.railway_secs)).await?;
    println!();
    for check in &round.checks {
        println!("{} {:<28} {}", if check.pass { "PASS" } else { "FAIL" }, check.name, check.detail);
    }
    let passed = round.checks.iter().all(|c| c.pass);
    let report = json!({"passed": passed, "checks": round.checks, "summary": round.summary});
    let path = args.json_dir.join("railway.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("soak railway: {} — report {}", if passed { "PASSED" } else { "FAILED" }, path.display());
    Ok(passed)
}

fn init_parent_log(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    init_log(std::sync::Mutex::new(file));
    Ok(())
}

/// Readable logs at `RUST_LOG` (default trace: issue 14 wants the soak's logs at trace free of
/// secrets) to `writer`, for both soak processes, through the layer every process logs with
/// (its caps and its redaction), so the check tests what production writes.
fn init_log<W>(writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(LOG_FILTER));
    let _ = tracing_subscriber::registry().with(shared::logging::readable_layer(filter, writer)).try_init();
}

/// Everything at trace, but the emulator's own request lines (it runs in the parent process
/// and is not the pool: its trace would only make the file larger).
const LOG_FILTER: &str = "trace,sprites_emulator=info,tower_http=info";

async fn soak(
    args: &SoakArgs,
    seed: u64,
    chaos_for: Duration,
    [db, second_db]: [&rig::ScratchDb; 2],
    emulator: &sprites_emulator::Emulator,
    worker: Arc<Worker>,
) -> Result<bool, String> {
    let started = tokio::time::Instant::now();
    let store = db.store(16);
    let max_total = max_total(args);
    let control = chaos::Control::new(emulator.base_url());

    // The API process: its deliveries go to the worker, a fraction lost on the way.
    let remote = Arc::new(RemoteChain::new(worker.port.clone()));
    let lossy = Arc::new(LossyChain::new(remote.clone(), args.drop_rate, seed ^ 0x5eed_0002, |_| {}));
    let client = rig::sprites_client_at(&emulator.base_url(), emulator.token(), SPRITES_TIMEOUT)?;
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("POOL_API_KEY", clients::API_KEY.to_string()),
        ("DATABASE_URL", db.url.clone()),
        ("SPRITE_TOKEN", emulator.token().to_string()),
        ("SPRITES_API_URL", emulator.base_url()),
        ("INSTANCE_ANTHROPIC_API_KEY", rig::ANTHROPIC_KEY.to_string()),
        ("POOL_MIN_IDLE", args.min_idle.to_string()),
        ("POOL_MAX_TOTAL", max_total.to_string()),
    ]);
    let config = Config::from_lookup(|name| vars.get(name).cloned()).map_err(|e| e.to_string())?;
    let process =
        rig::wiring(config, client, &store, soak_settings(args.min_idle, max_total), gateway_timeouts())
            .steps(Steps::Chain(lossy.clone()))
            .build()
            .map_err(|e| e.to_string())?;
    let engine = process.engine.clone();
    // This pool's Sprites only: the second pool's carry another pool id.
    let prefix = engine.own_prefix().await.map_err(|e| e.to_string())?.to_string();
    let process = Arc::new(process);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pool_local::serve(process, listener, async {
        let _ = server_stopped.await;
    }));

    // Idle instances beyond `hotIdle` sleep, within a running limit (issue 17).
    let hibernation = json!({ "hotIdle": args.hot_idle, "maxRunning": args.max_running });
    engine
        .change_pool_settings(&hibernation, &Actor::Poolctl(Some("soak".into())))
        .await
        .map_err(|e| e.to_string())?;
    worker.start().await?;
    engine.replenish(&Actor::Poolctl(Some("soak".into()))).await.map_err(|e| e.to_string())?;
    let fill = wait_for("the first fill", Duration::from_secs(60), || async {
        let counts = counts(&store).await;
        (counts.get("idle").copied().unwrap_or(0) >= i64::from(args.min_idle)).then_some(())
    })
    .await;
    let filled_in = started.elapsed();
    if fill.is_none() {
        let _ = server_stop.send(());
        return Err(format!("the pool did not fill to {} idle within 60 s", args.min_idle));
    }
    let second = match SecondPool::start(second_db, emulator).await {
        Ok(second) => second,
        Err(err) => {
            let _ = server_stop.send(());
            return Err(err);
        }
    };
    println!("soak: filled to {} idle in {:.1} s; chaos starts", args.min_idle, filled_in.as_secs_f64());

    // Chaos.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stats = Arc::new(ClientStats::default());
    let ledger = Arc::new(Ledger::default());
    let http = clients::Api::new(base.clone());
    let mut client_tasks = Vec::new();
    for i in 0..args.clients {
        client_tasks.push(tokio::spawn(clients::run_client(
            i,
            http.clone(),
            seed ^ (0xc11e_0000 + i as u64),
            stats.clone(),
            ledger.clone(),
            stop_rx.clone(),
        )));
    }
    let chaos_task = tokio::spawn(chaos::inject(
        control.clone(),
        store.clone(),
        seed ^ 0xc4a0_5000,
        Duration::from_millis(args.chaos_ms),
        stop_rx.clone(),
    ));
    let killer = tokio::spawn(chaos::kill_worker_loop(
        worker.clone(),
        seed ^ 0x0c11_1000,
        (
            Duration::from_secs(args.kill_min_secs),
            Duration::from_secs(args.kill_max_secs.max(args.kill_min_secs)),
        ),
        stop_rx.clone(),
    ));
    let chaos_started = tokio::time::Instant::now();
    let mut next_print = Duration::from_secs(15);
    // Halfway through the chaos an operator raises min idle and asks for another OpenClaw
    // ref (issue 15): the pool must follow and roll every instance to it.
    let min_idle = args.min_idle + 1;
    let mut steered = false;
    while chaos_started.elapsed() < chaos_for {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !steered && chaos_started.elapsed() >= chaos_for / 2 {
            steered = true;
            let patch = json!({ "minIdle": min_idle, "openclawRef": ROLLOUT_REF });
            match http.change_settings(patch).await {
                Ok((200, _)) => {
                    println!("soak: settings changed: minIdle {min_idle}, openclawRef {ROLLOUT_REF}")
                }
                other => return Err(format!("the settings change during chaos was refused: {other:?}")),
            }
        }
        if chaos_started.elapsed() >= next_print {
            next_print += Duration::from_secs(15);
            println!(
                "soak: {:>4} s  counts {:?}  claims ok {}  worker kills {}",
                chaos_started.elapsed().as_secs(),
                counts(&store).await,
                stats.claims_created.load(Ordering::Relaxed) + stats.claims_joined.load(Ordering::Relaxed),
                worker.stats.kills.load(Ordering::Relaxed),
            );
        }
    }
    let _ = stop_tx.send(true);
    let chaos_log = chaos_task.await.map_err(|e| e.to_string())?;
    killer.await.map_err(|e| e.to_string())?;
    for task in client_tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    let chaos_took = chaos_started.elapsed();
    println!(
        "soak: chaos stopped after {:.1} s (clients released what they held); settling",
        chaos_took.as_secs_f64()
    );

    // Settle: the pool must come back by itself. The soak acts only as an operator would:
    // crashed agents (kept for the dashboard by design) are destroyed.
    let settle_started = tokio::time::Instant::now();
    let mut quiet_in_a_row = 0;
    let mut settled = false;
    let mut operator_destroys = 0u64;
    while settle_started.elapsed() < Duration::from_secs(args.settle_secs) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Ok(instances) = store.instances().await else { continue };
        for crashed in instances.iter().filter(|i| i.status == Status::Crashed) {
            ledger
                .destroy_requests
                .lock()
                .expect("ledger")
                .entry(crashed.id.clone())
                .or_insert_with(time::OffsetDateTime::now_utc);
            if matches!(http.destroy(&crashed.id).await, Ok(202)) {
                operator_destroys += 1;
            }
        }
        let Ok(sprites) = control.sprites().await else { continue };
        let sprites: BTreeMap<String, bool> =
            sprites.into_iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
        let pending = pending_claims(&store).await;
        let idle = instances.iter().filter(|i| i.status == Status::Idle).count() as u32;
        let rolled = engine.rollout_status().await.is_ok_and(|r| r.current == r.total);
        let quiet = pending == 0
            && rolled
            && idle >= min_idle
            && instances
                .iter()
                .all(|i| i.step.is_none() && matches!(i.status, Status::Idle | Status::Claimed))
            && instances.iter().all(|i| sprites.get(&i.sprite_name) == Some(&false))
            && sprites.len() == instances.len();
        quiet_in_a_row = if quiet { quiet_in_a_row + 1 } else { 0 };
        if quiet_in_a_row >= 3 {
            settled = true;
            break;
        }
    }
    let settle_took = settle_started.elapsed();
    println!(
        "soak: {} after {:.1} s",
        if settled { "settled" } else { "NOT settled" },
        settle_took.as_secs_f64()
    );

    // Freeze: stop the worker and the API, then read everything.
    worker.stop().await;
    let _ = server_stop.send(());
    let _ = server.await;
    let snapshot = snapshot(&store, &control, &prefix).await?;
    let dropped_in_api = lossy.dropped.load(Ordering::Relaxed);
    let inputs = checks::Inputs {
        snapshot: &snapshot,
        chaos: &chaos_log,
        ledger: &ledger,
        clients: &stats,
        worker: &worker.stats,
        min_idle,
        dropped_in_api,
    };
    let mut results = checks::run(&inputs);
    results.push(steering::rollout_check(&snapshot));
    results.push(second.finish(&control, &snapshot.sprites, &snapshot.events, &chaos_log).await);
    let fixed = vec![
        secrets::Known { what: "SPRITE_TOKEN", value: emulator.token().to_string() },
        secrets::Known { what: "POOL_API_KEY", value: clients::API_KEY.to_string() },
        secrets::Known { what: "INSTANCE_ANTHROPIC_API_KEY", value: rig::ANTHROPIC_KEY.to_string() },
    ];
    let handed_out = ledger.gateway_tokens.lock().expect("ledger").clone();
    let known = secrets::known(fixed, &handed_out, &snapshot);
    let logs = [args.json_dir.join("api.log"), args.json_dir.join("worker.log")];
    results.push(secrets::no_secret_in_logs(&[&logs[0], &logs[1]], &known));

    let w = &worker.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let final_counts = status_counts(&snapshot);
    let summary = json!({
        "claims": {
            "ok_created": load(&stats.claims_created),
            "ok_joined": load(&stats.claims_joined),
            "accepted_202": load(&stats.claims_accepted_202),
            "left_pending": load(&stats.claims_left_pending),
            "no_idle_503": load(&stats.claims_503),
            "failed": load(&stats.claims_failed),
            "other": load(&stats.claims_other),
            "http_errors": load(&stats.http_errors),
        },
        "releases": {
            "recycles": load(&stats.recycles),
            "destroys": load(&stats.destroys),
            "busy_409_retries": load(&stats.release_busy),
            "already_gone_404": load(&stats.release_gone),
            "gave_up": load(&stats.release_gave_up),
            "operator_destroys_of_crashed": operator_destroys,
        },
        "faults": {
            "injected_errors_fired": chaos_log.hits_by_kind(),
            "fault_rules_armed": chaos_log.faults.len(),
            "sprite_deaths": chaos_log.kills.len(),
            "dead_gateways": chaos_log.dead_gateways.len(),
            "sleeping_gateways": chaos_log.sleepy_gateways.len(),
            "actions_without_target": chaos_log.no_target,
            "deliveries_dropped_api": dropped_in_api,
            "deliveries_dropped_worker": load(&w.dropped),
            "deliveries_lost_worker_down": load(&remote.undelivered),
            "deliveries_sent_to_worker": load(&remote.sent),
        },
        "worker": {
            "starts": load(&w.starts),
            "kills": load(&w.kills),
            "kills_unquiesced": load(&w.kills_unquiesced),
            "ticks": load(&w.ticks),
            "steps_redriven": load(&w.redriven),
            "stale_claims_released": load(&w.stale_claims_released),
            "stuck_destroyed": load(&w.stuck_destroyed),
            "heartbeats": load(&w.heartbeats),
            "heartbeat_woken": load(&w.heartbeat_woken),
            "heartbeat_destroyed": load(&w.heartbeat_destroyed),
            "heartbeat_crashed": load(&w.heartbeat_crashed),
            "reconciles": load(&w.reconciles),
            "reconcile_rows_removed": load(&w.reconcile_rows_removed),
            "reconcile_marked_crashed": load(&w.reconcile_marked_crashed),
            "reconcile_orphans_deleted": load(&w.reconcile_orphans_deleted),
            "tick_passes_skipped_lease_held": load(&w.tick_skipped),
            "heartbeat_passes_skipped_lease_held": load(&w.heartbeat_skipped),
            "reconcile_passes_skipped_lease_held": load(&w.reconcile_skipped),
        },
        "final": {
            "counts": final_counts,
            "sprites": snapshot.sprites.len(),
            "claims_in_table": snapshot.claims.len(),
            "events": snapshot.events.len(),
        },
        "timing_s": {
            "fill": filled_in.as_secs_f64(),
            "chaos": chaos_took.as_secs_f64(),
            "settle": settle_took.as_secs_f64(),
            "settled": settled,
            "total": started.elapsed().as_secs_f64(),
        },
    });
    print_summary(&summary, &results);
    let passed = results.iter().all(|c| c.pass);
    let report = json!({
        "soak": {
            "seed": seed,
            "chaos_secs": chaos_for.as_secs_f64(),
            "min_idle": args.min_idle,
            "max_total": max_total,
            "clients": args.clients,
            "drop_rate": args.drop_rate,
            "kill_every_secs": [args.kill_min_secs, args.kill_max_secs],
            "kill_anywhere": args.kill_anywhere,
            "chaos_ms": args.chaos_ms,
            "settle_secs": args.settle_secs,
            "database": db.name,
        },
        "passed": passed,
        "checks": results,
        "summary": summary,
        "chaos": chaos_log,
        "client_failures": *ledger.failures.lock().expect("ledger"),
    });
    let path = args.json_dir.join("soak.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("soak: {} — report {}", if passed { "PASSED" } else { "FAILED" }, path.display());
    Ok(passed)
}
