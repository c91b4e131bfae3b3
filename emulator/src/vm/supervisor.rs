//! Service processes: each running service's `cmd`/`args` really runs through the shell
//! interpreter as a long-lived task, its output goes to the service log, and a process that
//! exits is started again after a back-off, with `restart_count` rising (reference §5:
//! "restart on crash (`restart_count` goes up)"). Stopping, restarting, deleting the service,
//! restoring a checkpoint or deleting the Sprite drops the task's stop handle, which ends the
//! process where it is.

use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::clock::unix_ms;
use crate::fs;
use crate::latency;
use crate::shell::{self, Ctx, Event, Input, Sink};
use crate::state::{App, World};
use crate::vm::processes::ProcGuard;
use crate::vm::table::{Run, SERVICE};

pub fn log_file(service: &str) -> String {
    format!("/.sprite/logs/services/{service}.log")
}

/// Starts a process for every running service of the Sprite that has none for its current
/// start (after a PUT, start, restart, signal, restore or an in-VM `sprite-env` call).
pub fn launch(app: &App, world: &mut World, sprite_name: &str) {
    let Some(sprite) = world.sprites.get_mut(sprite_name) else {
        return;
    };
    let id = sprite.id.clone();
    let todo: Vec<(String, u64)> = sprite
        .services
        .values()
        .filter(|s| s.running && sprite.vm.runs.get(&s.def.name).map(|r| r.generation) != Some(s.generation))
        .map(|s| (s.def.name.clone(), s.generation))
        .collect();
    for (svc, generation) in todo {
        let (tx, rx) = oneshot::channel();
        sprite.vm.runs.insert(svc.clone(), Run { generation, _stop: tx });
        let task = supervise(app.clone(), sprite_name.to_string(), id.clone(), svc.clone(), generation, rx);
        tokio::spawn(SERVICE.scope(svc, task));
    }
}

/// The back-off before restart n (1 s doubling to 30 s, scaled by speed, never a busy loop).
fn backoff(failures: u32, speed: f64) -> Duration {
    let ms = 1000u64 << failures.saturating_sub(1).min(5);
    latency::scaled(ms.min(30_000), speed).max(Duration::from_millis(100))
}

async fn supervise(
    app: App,
    sprite: String,
    id: String,
    svc: String,
    generation: u64,
    mut stop: oneshot::Receiver<()>,
) {
    let mut failures = 0u32;
    loop {
        let current = {
            let mut world = app.world();
            world
                .sprite_if(&sprite, &id)
                .and_then(|s| s.services.get(&svc))
                .filter(|s| s.running && s.generation == generation)
                .and_then(|s| Some((s.def.clone(), s.pid?)))
        };
        let Some((def, pid)) = current else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let logger =
            tokio::spawn(forward_logs(app.clone(), sprite.clone(), id.clone(), svc.clone(), generation, rx));
        let code = {
            let mut env = shell::default_env();
            env.extend(def.env.clone());
            let cwd = def.dir.as_deref().map_or_else(|| fs::HOME.to_string(), |d| fs::resolve(fs::HOME, d));
            let mut ctx = Ctx {
                app: app.clone(),
                sprite: sprite.clone(),
                sprite_id: id.clone(),
                env,
                cwd: cwd.clone(),
                stdout: Sink::stdout(tx.clone()),
                stderr: Sink::stderr(tx),
                stdin: Input::Closed,
                last_status: 0,
                shell: Default::default(),
            };
            let argv: Vec<String> = std::iter::once(def.cmd.clone()).chain(def.args.clone()).collect();
            let _guard = ProcGuard::adopt(&ctx, pid, &argv.join(" "), 4_000);
            let run = async {
                if !crate::vm::is_dir(&ctx, &cwd) {
                    crate::vm::err(
                        &ctx,
                        format!("failed to start: chdir {cwd}: no such file or directory\n"),
                    );
                    return 127;
                }
                shell::run_command(&mut ctx, argv).await
            };
            tokio::select! {
                code = run => Some(code),
                _ = &mut stop => None,
            }
        };
        // Every line the process wrote is in the log before its exit line.
        let _ = logger.await;
        let Some(code) = code else {
            return;
        };
        failures += 1;
        let delay = backoff(failures, app.speed());
        if !exited(&app, &sprite, &id, &svc, generation, code, delay) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => return,
        }
        if !restarted(&app, &sprite, &id, &svc, generation) {
            return;
        }
    }
}

/// Records the exit; false when the service no longer wants this process.
fn exited(app: &App, sprite: &str, id: &str, svc: &str, generation: u64, code: u8, delay: Duration) -> bool {
    let mut world = app.world();
    let Some(s) = world.sprite_if(sprite, id).and_then(|s| s.services.get_mut(svc)) else {
        return false;
    };
    if !s.running || s.generation != generation {
        return false;
    }
    s.pid = None;
    s.started = None;
    s.restart_count += 1;
    s.next_restart_at = Some(OffsetDateTime::now_utc() + delay);
    s.log(json!({"type": "exit", "exit_code": code, "timestamp": unix_ms()}));
    true
}

fn restarted(app: &App, sprite: &str, id: &str, svc: &str, generation: u64) -> bool {
    let mut world = app.world();
    let pid = world.pid();
    let Some(s) = world.sprite_if(sprite, id).and_then(|s| s.services.get_mut(svc)) else {
        return false;
    };
    if !s.running || s.generation != generation {
        return false;
    }
    s.pid = Some(pid);
    s.started = Some(Instant::now());
    s.started_at = Some(OffsetDateTime::now_utc());
    s.next_restart_at = None;
    s.log(json!({"type": "started", "timestamp": unix_ms()}));
    true
}

/// Copies the process's output into the service's log events and its log file.
async fn forward_logs(
    app: App,
    sprite: String,
    id: String,
    svc: String,
    generation: u64,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = rx.recv().await {
        let (kind, data) = match event {
            Event::Stdout(d) => ("stdout", d),
            Event::Stderr(d) => ("stderr", d),
            Event::Exit(_) | Event::Ended => continue,
        };
        let mut world = app.world();
        let Some(sprite) = world.sprite_if(&sprite, &id) else {
            return;
        };
        let _ = sprite.fs.mkdir_all("/.sprite/logs/services", 0o755);
        let _ = sprite.fs.append(&log_file(&svc), &data);
        let Some(s) = sprite.services.get_mut(&svc).filter(|s| s.generation == generation) else {
            continue;
        };
        let text = String::from_utf8_lossy(&data).into_owned();
        s.log(json!({"type": kind, "data": text, "timestamp": unix_ms()}));
    }
}
