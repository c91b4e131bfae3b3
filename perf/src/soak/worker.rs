//! The worker process: runs the sweeps and every step they and their chained deliveries
//! produce, plus the deliveries the API process sends it. The soak kills it (SIGKILL) and
//! starts it again; what it leaves half done must be finished by the next one.
//!
//! It talks to the soak on stdout, one JSON object a line (`ready`, `sweep`, `dropped`,
//! `quiesced`); its logs go to stderr. On stdin it takes `quiesce` (finish the sweep passes in
//! flight and start no more: it is about to be killed) and exits when stdin closes, so it never
//! outlives the soak.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use shared::store::Store;
use shared::sweep_loop::Sweep;
use shared::wiring::Steps;
use tokio::sync::RwLock;

use super::chain::{LossyChain, serve_deliveries};
use super::{WorkerArgs, gateway_timeouts, soak_settings};
use crate::rig;

fn emit(value: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

pub async fn run(args: WorkerArgs) -> Result<(), String> {
    super::init_log(std::io::stderr);
    let store = Store::connect_lazy(&args.database_url, 16).map_err(|e| e.to_string())?;
    let client = rig::sprites_client_at(&args.emulator_url, &args.emulator_token, super::SPRITES_TIMEOUT)?;
    let settings = soak_settings(args.min_idle, args.max_total);
    let config = rig::emulator_config(&args.emulator_url, &args.emulator_token, &settings);
    let (drop_rate, seed) = (args.drop_rate, args.seed);
    let lossy = Steps::InProcessThrough(Box::new(move |in_process| {
        Arc::new(LossyChain::new(in_process, drop_rate, seed, |delivery| {
            emit(json!({"dropped": delivery.instance_id, "hop": delivery.hop}));
        }))
    }));
    let process = rig::wiring(config, client, &store, settings, gateway_timeouts())
        .steps(lossy)
        .build()
        .map_err(|e| e.to_string())?;
    let engine = process.engine;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(serve_deliveries(listener, Arc::downgrade(&engine)));

    // Sweep passes hold this shared; `quiesce` takes it exclusively and keeps it.
    let gate = Arc::new(RwLock::new(()));
    let intervals = [
        (Sweep::Tick, Duration::from_millis(args.tick_ms)),
        (Sweep::Heartbeat, Duration::from_millis(args.heartbeat_ms)),
        (Sweep::Reconcile, Duration::from_millis(args.reconcile_ms)),
    ];
    for (sweep, every) in intervals {
        let engine = engine.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let _pass = gate.read().await;
                match sweep.run_once(&engine).await {
                    Ok(report) => emit(json!({"sweep": sweep.as_str(), "report": report})),
                    Err(err) => tracing::warn!(sweep = sweep.as_str(), error = %err, "sweep pass failed"),
                }
            }
        });
    }

    let (commands, mut command_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if commands.send(line.trim().to_string()).is_err() {
                break;
            }
        }
        // The soak is gone: so is its worker.
        std::process::exit(0);
    });

    emit(json!({"ready": port, "pid": std::process::id()}));
    let mut held = None;
    while let Some(command) = command_rx.recv().await {
        if command == "quiesce" && held.is_none() {
            held = Some(gate.clone().write_owned().await);
            emit(json!({"quiesced": true}));
        }
    }
    Ok(())
}
