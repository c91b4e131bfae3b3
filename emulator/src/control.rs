//! `/_emulator/*`: the control API for tests, benchmarks and the soak. No auth (loopback only)
//! and not counted.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{ConfigPatch, RuntimeConfig};
use crate::faults::NewFault;
use crate::gateway::state::GatewayChaos;
use crate::respond;
use crate::state::App;

fn bad_request(msg: &str) -> Response {
    respond::error(StatusCode::BAD_REQUEST, msg)
}

pub async fn state(State(app): State<App>) -> Response {
    let mut world = app.world();
    world.settle_lifecycle(Instant::now());
    let sprites: serde_json::Map<String, Value> =
        world.sprites.iter().map(|(name, s)| (name.clone(), s.dump(app.base_url()))).collect();
    respond::json(
        StatusCode::OK,
        json!({
            "sprites": sprites,
            "config": world.config,
            "faults": world.faults,
            "counters": world.counters,
        }),
    )
}

pub async fn counters(State(app): State<App>) -> Response {
    respond::json(StatusCode::OK, json!(app.world().counters))
}

pub async fn reset(State(app): State<App>) -> Response {
    let mut world = app.world();
    for sprite in world.sprites.values_mut() {
        sprite.end_sessions();
    }
    world.sprites.clear();
    world.retired_running = Default::default();
    world.faults.clear();
    world.counters.clear();
    world.railway = Default::default();
    world.openrouter = Default::default();
    world.agentmail = Default::default();
    world.config = RuntimeConfig::from_start(&app.0.start_config);
    respond::json(StatusCode::OK, json!({"ok": true}))
}

pub async fn config_get(State(app): State<App>) -> Response {
    respond::json(StatusCode::OK, json!(app.world().config))
}

pub async fn config_put(State(app): State<App>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<ConfigPatch>(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("invalid config: {e}")),
    };
    if let Some(unknown) =
        patch.latency_ms.as_ref().and_then(|m| m.keys().find(|r| !crate::latency::is_route(r)))
    {
        return bad_request(&format!("unknown route {unknown:?}"));
    }
    let mut world = app.world();
    if let Err(e) = world.config.apply(patch) {
        return bad_request(&e);
    }
    respond::json(StatusCode::OK, json!(world.config))
}

pub async fn faults_add(State(app): State<App>, body: Bytes) -> Response {
    let fault = match serde_json::from_slice::<NewFault>(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(&format!("invalid fault: {e}")),
    };
    if let Err(e) = fault.validate() {
        return bad_request(&e);
    }
    let id = app.world().add_fault(fault);
    respond::json(StatusCode::CREATED, json!({ "id": id }))
}

pub async fn faults_list(State(app): State<App>) -> Response {
    respond::json(StatusCode::OK, json!(app.world().faults))
}

pub async fn faults_clear(State(app): State<App>) -> Response {
    app.world().faults.clear();
    respond::no_content()
}

pub async fn fault_delete(State(app): State<App>, Path(id): Path<String>) -> Response {
    let mut world = app.world();
    let before = world.faults.len();
    world.faults.retain(|f| f.id != id);
    if world.faults.len() == before {
        return respond::error(StatusCode::NOT_FOUND, "fault not found");
    }
    respond::no_content()
}

/// The Sprite dies: it vanishes from the API and its URL, sessions end.
pub async fn kill_sprite(State(app): State<App>, Path(name): Path<String>) -> Response {
    match app.world().remove_sprite(&name) {
        Some(_) => respond::no_content(),
        None => respond::sprite_not_found(),
    }
}

/// Every Sprite's power state and running time (the billing proxy), and the account's totals.
pub async fn lifecycle(State(app): State<App>) -> Response {
    let mut world = app.world();
    let now = Instant::now();
    world.settle_lifecycle(now);
    let sprites: serde_json::Map<String, Value> =
        world.sprites.iter().map(|(name, s)| (name.clone(), s.lifecycle.to_json(now))).collect();
    let live: Duration = world.sprites.values().map(|s| s.lifecycle.running_time(now)).sum();
    respond::json(
        StatusCode::OK,
        json!({
            "sprites": sprites,
            "running_count": world.running_count(),
            "running_limit": world.config.running_limit,
            "idle_pause_ms": world.config.idle_pause_ms,
            "cold_after_ms": world.config.cold_after_ms,
            "retired_running_ms": world.retired_running.as_millis() as u64,
            "total_running_ms": (live + world.retired_running).as_millis() as u64,
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseRequest {
    #[serde(default)]
    cold: bool,
}

/// Pauses a Sprite now, as its idle pause would (and stops it with `{"cold":true}`): every exec
/// session drops, an attached one included.
pub async fn pause(State(app): State<App>, Path(name): Path<String>, body: Bytes) -> Response {
    let req = if body.is_empty() {
        PauseRequest { cold: false }
    } else {
        match serde_json::from_slice::<PauseRequest>(&body) {
            Ok(r) => r,
            Err(e) => return bad_request(&format!("invalid body: {e}")),
        }
    };
    let mut world = app.world();
    let now = Instant::now();
    world.settle_lifecycle(now);
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    let settled = sprite.lifecycle.pause(now, req.cold);
    sprite.apply_pause(settled);
    respond::json(StatusCode::OK, sprite.lifecycle.to_json(now))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewaySwitch {
    down: bool,
    #[serde(default)]
    until_exec: bool,
}

pub async fn gateway(State(app): State<App>, Path(name): Path<String>, body: Bytes) -> Response {
    let switch = match serde_json::from_slice::<GatewaySwitch>(&body) {
        Ok(s) => s,
        Err(e) => return bad_request(&format!("invalid body: {e}")),
    };
    let mut world = app.world();
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    sprite.gateway = GatewayChaos { down: switch.down, until_exec: switch.down && switch.until_exec };
    respond::json(StatusCode::OK, json!(sprite.gateway))
}
