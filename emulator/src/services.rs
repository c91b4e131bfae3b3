//! `/v1/sprites/{name}/services`: definitions, start/stop, and the NDJSON streams (reference §5).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admission::{admit, bearer_ok};
use crate::respond;
use crate::state::{App, Service, ServiceDef, Sprite, World, unix_ms};

#[derive(Deserialize)]
struct ServiceRequest {
    cmd: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    http_port: Option<u16>,
}

fn log_files(name: &str) -> Value {
    let path = format!("/.sprite/logs/services/{name}.log");
    json!({"stdout": path, "stderr": path, "combined": path})
}

fn started_line() -> Value {
    json!({"type": "started", "timestamp": unix_ms()})
}

fn complete_line(name: &str) -> Value {
    json!({"type": "complete", "log_files": log_files(name), "timestamp": unix_ms()})
}

fn stop_lines() -> [Value; 2] {
    [
        json!({"type": "stopping", "timestamp": unix_ms()}),
        json!({"type": "stopped", "exit_code": 0, "timestamp": unix_ms()}),
    ]
}

fn not_found(svc: &str) -> Response {
    respond::error(StatusCode::NOT_FOUND, &format!("service not found: {svc}"))
}

fn not_running(svc: &str) -> Response {
    respond::error(StatusCode::CONFLICT, &format!("service not running: {svc}"))
}

async fn enter(app: &App, route: &'static str, name: &str, headers: &HeaderMap) -> Result<(), Response> {
    admit(app, route, Some(name), bearer_ok(headers, &app.0.token)).await?;
    if app.world().sprites.contains_key(name) { Ok(()) } else { Err(respond::sprite_not_found()) }
}

/// Runs `f` on the Sprite (and the world, for pids) if it still exists.
fn with_sprite(app: &App, name: &str, f: impl FnOnce(&mut Sprite, u32) -> Response) -> Response {
    let mut world = app.world();
    let pid = world.pid();
    match world.sprites.get_mut(name) {
        Some(sprite) => {
            sprite.touch();
            f(sprite, pid)
        }
        None => respond::sprite_not_found(),
    }
}

pub async fn list(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = enter(&app, "services.list", &name, &headers).await {
        return resp;
    }
    let world = app.world();
    let Some(sprite) = world.sprites.get(&name) else {
        return respond::sprite_not_found();
    };
    let all: Vec<Value> = sprite.services.values().map(Service::to_json).collect();
    respond::json(StatusCode::OK, Value::Array(all))
}

pub async fn get(
    State(app): State<App>,
    Path((name, svc)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "services.get", &name, &headers).await {
        return resp;
    }
    let world = app.world();
    match world.sprites.get(&name).and_then(|s| s.services.get(&svc)) {
        Some(service) => respond::json(StatusCode::OK, service.to_json()),
        None => not_found(&svc),
    }
}

/// PUT creates or replaces the definition and (re)starts it.
pub async fn put(
    State(app): State<App>,
    Path((name, svc)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = enter(&app, "services.put", &name, &headers).await {
        return resp;
    }
    let req = match serde_json::from_slice::<ServiceRequest>(&body) {
        Ok(r) => r,
        Err(e) => {
            return respond::error(StatusCode::BAD_REQUEST, &format!("invalid service definition: {e}"));
        }
    };
    let Some(cmd) = req.cmd.filter(|c| !c.is_empty()) else {
        return respond::error(StatusCode::BAD_REQUEST, "cmd is required");
    };
    with_sprite(&app, &name, |sprite, pid| {
        if req.http_port.is_some()
            && sprite.services.values().any(|s| s.def.name != svc && s.def.http_port.is_some())
        {
            return respond::error(
                StatusCode::CONFLICT,
                "another service already has an HTTP port configured",
            );
        }
        let def = ServiceDef {
            name: svc.clone(),
            cmd,
            args: req.args,
            needs: req.needs,
            http_port: req.http_port,
            env: req.env,
            dir: req.dir,
        };
        let mut lines = Vec::new();
        let logs = match sprite.services.remove(&svc) {
            Some(old) => {
                if old.running {
                    lines.extend(stop_lines());
                }
                old.logs
            }
            None => Vec::new(),
        };
        sprite.services.insert(svc.clone(), new_service(def, logs));
        sprite.start_service(&svc, pid);
        lines.push(started_line());
        lines.push(complete_line(&svc));
        respond::ndjson(&lines)
    })
}

pub fn new_service(def: ServiceDef, logs: Vec<Value>) -> Service {
    Service { def, running: false, pid: None, started_at: None, started: None, restart_count: 0, logs }
}

pub async fn delete(
    State(app): State<App>,
    Path((name, svc)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "services.delete", &name, &headers).await {
        return resp;
    }
    with_sprite(&app, &name, |sprite, _| {
        if !sprite.services.contains_key(&svc) {
            return not_found(&svc);
        }
        if let Some(dependent) = sprite.services.values().find(|s| s.def.needs.iter().any(|n| n == &svc)) {
            return respond::error(
                StatusCode::CONFLICT,
                &format!("service {svc} is needed by {}", dependent.def.name),
            );
        }
        sprite.services.remove(&svc);
        respond::no_content()
    })
}

/// `POST /services/{svc}/start|stop|restart`.
pub async fn action(
    State(app): State<App>,
    Path((name, svc, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let route = match action.as_str() {
        "start" => "services.start",
        "stop" => "services.stop",
        "restart" => "services.restart",
        _ => return respond::error(StatusCode::NOT_FOUND, "not found"),
    };
    if let Err(resp) = enter(&app, route, &name, &headers).await {
        return resp;
    }
    with_sprite(&app, &name, |sprite, pid| {
        let Some(service) = sprite.services.get(&svc) else {
            return not_found(&svc);
        };
        let running = service.running;
        let mut lines = Vec::new();
        match action.as_str() {
            "start" => {
                // Starting a running service changes nothing, like systemd.
                if !running {
                    sprite.start_service(&svc, pid);
                }
                lines.push(started_line());
            }
            "stop" => {
                if !running {
                    return not_running(&svc);
                }
                sprite.stop_service(&svc);
                lines.extend(stop_lines());
            }
            _ => {
                if running {
                    sprite.stop_service(&svc);
                    lines.extend(stop_lines());
                }
                sprite.start_service(&svc, pid);
                lines.push(started_line());
            }
        }
        lines.push(complete_line(&svc));
        respond::ndjson(&lines)
    })
}

#[derive(Deserialize)]
struct SignalBody {
    name: String,
    signal: String,
}

pub async fn signal(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = enter(&app, "services.signal", &name, &headers).await {
        return resp;
    }
    let Ok(req) = serde_json::from_slice::<SignalBody>(&body) else {
        return respond::error(StatusCode::BAD_REQUEST, "invalid request body");
    };
    let sig = req.signal.trim_start_matches("SIG").to_string();
    if !["INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2"].contains(&sig.as_str()) {
        return respond::error(StatusCode::BAD_REQUEST, &format!("invalid signal: {}", req.signal));
    }
    with_sprite(&app, &name, |sprite, pid| {
        let Some(service) = sprite.services.get_mut(&req.name) else {
            return not_found(&req.name);
        };
        if !service.running {
            return not_running(&req.name);
        }
        // A signal that kills the process counts as a crash: the supervisor restarts it.
        if ["INT", "TERM", "KILL", "QUIT"].contains(&sig.as_str()) {
            service.restart_count += 1;
            service.logs.push(json!({
                "type": "exit", "exit_code": 128 + signal_number(&sig), "timestamp": unix_ms()
            }));
            sprite.start_service(&req.name, pid);
        }
        respond::no_content()
    })
}

fn signal_number(sig: &str) -> i32 {
    match sig {
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        _ => 15,
    }
}

pub async fn logs(
    State(app): State<App>,
    Path((name, svc, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if action != "logs" {
        return respond::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    if let Err(resp) = enter(&app, "services.logs", &name, &headers).await {
        return resp;
    }
    let lines = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "lines")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let world = app.world();
    let Some(service) = world.sprites.get(&name).and_then(|s| s.services.get(&svc)) else {
        return not_found(&svc);
    };
    let skip = lines.map_or(0, |n| service.logs.len().saturating_sub(n));
    respond::ndjson(&service.logs[skip..])
}

/// After a restore: the saved definitions come back and all start, in `needs` order.
pub fn boot_services(world: &mut World, name: &str, defs: Vec<ServiceDef>) {
    let mut order: Vec<ServiceDef> = Vec::new();
    let mut pending = defs;
    while !pending.is_empty() {
        let before = pending.len();
        let (ready, rest): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|d| d.needs.iter().all(|n| order.iter().any(|o| &o.name == n)));
        order.extend(ready);
        pending = rest;
        if pending.len() == before {
            // Unsatisfiable needs: start the rest anyway rather than never.
            order.append(&mut pending);
        }
    }
    let pids: Vec<u32> = order.iter().map(|_| world.pid()).collect();
    let Some(sprite) = world.sprites.get_mut(name) else {
        return;
    };
    sprite.services.clear();
    for (def, pid) in order.into_iter().zip(pids) {
        let svc = def.name.clone();
        sprite.services.insert(svc.clone(), new_service(def, Vec::new()));
        sprite.start_service(&svc, pid);
    }
}
