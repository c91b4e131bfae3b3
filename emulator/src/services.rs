//! `/v1/sprites/{name}/services`: definitions, start/stop, and the NDJSON streams (reference §5).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admission::{admit, bearer_ok};
use crate::clock::unix_ms;
use crate::respond;
use crate::state::{App, Service, ServiceDef, Sprite, World, needs_order};

#[derive(Deserialize, Default)]
pub struct ServiceRequest {
    pub cmd: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub http_port: Option<u16>,
}

/// Why a service operation was refused: the status and message the API answers with.
pub type Refusal = (StatusCode, String);

fn log_files(name: &str) -> Value {
    let path = crate::vm::supervisor::log_file(name);
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

fn not_found(svc: &str) -> Refusal {
    (StatusCode::NOT_FOUND, format!("service not found: {svc}"))
}

fn not_running(svc: &str) -> Refusal {
    (StatusCode::CONFLICT, format!("service not running: {svc}"))
}

fn refused((status, msg): Refusal) -> Response {
    respond::error(status, &msg)
}

async fn enter(app: &App, route: &'static str, name: &str, headers: &HeaderMap) -> Result<(), Response> {
    admit(app, route, Some(name), bearer_ok(headers, &app.0.token)).await?;
    if app.world().sprites.contains_key(name) { Ok(()) } else { Err(respond::sprite_not_found()) }
}

/// Which Sprite an operation acts on: by name (the REST API), or that incarnation only (a
/// `sprite-env` call from inside it).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub id: Option<&'a str>,
}

/// Runs `f` on the Sprite (with a fresh pid at hand), then starts the processes of the
/// services it started.
fn with_sprite<T>(
    app: &App,
    target: Target<'_>,
    f: impl FnOnce(&mut Sprite, u32) -> Result<T, Refusal>,
) -> Result<T, Refusal> {
    let mut world = app.world();
    let pid = world.pid();
    let sprite = match world.sprites.get_mut(target.name) {
        Some(s) if target.id.is_none_or(|id| s.id == id) => s,
        _ => return Err((StatusCode::NOT_FOUND, "sprite not found".into())),
    };
    sprite.touch();
    let result = f(sprite, pid);
    crate::vm::supervisor::launch(app, &mut world, target.name);
    result
}

pub fn list_services(app: &App, target: Target<'_>) -> Result<Value, Refusal> {
    with_sprite(app, target, |sprite, _| {
        Ok(Value::Array(sprite.services.values().map(Service::to_json).collect()))
    })
}

pub fn get_service(app: &App, target: Target<'_>, svc: &str) -> Result<Value, Refusal> {
    with_sprite(app, target, |sprite, _| {
        sprite.services.get(svc).map(Service::to_json).ok_or_else(|| not_found(svc))
    })
}

/// Creates or replaces the definition and (re)starts it; the NDJSON lines of the answer.
pub fn put_service(
    app: &App,
    target: Target<'_>,
    svc: &str,
    req: ServiceRequest,
) -> Result<Vec<Value>, Refusal> {
    let Some(cmd) = req.cmd.filter(|c| !c.is_empty()) else {
        return Err((StatusCode::BAD_REQUEST, "cmd is required".into()));
    };
    with_sprite(app, target, |sprite, pid| {
        if req.http_port.is_some()
            && sprite.services.values().any(|s| s.def.name != svc && s.def.http_port.is_some())
        {
            return Err((StatusCode::CONFLICT, "another service already has an HTTP port configured".into()));
        }
        let def = ServiceDef {
            name: svc.to_string(),
            cmd,
            args: req.args,
            needs: req.needs,
            http_port: req.http_port,
            env: req.env,
            dir: req.dir,
        };
        let mut lines = Vec::new();
        let (logs, generation) = match sprite.services.remove(svc) {
            Some(old) => {
                if old.running {
                    lines.extend(stop_lines());
                }
                (old.logs, old.generation)
            }
            None => (Vec::new(), 0),
        };
        let mut service = new_service(def, logs);
        service.generation = generation;
        sprite.services.insert(svc.to_string(), service);
        sprite.start_service(svc, pid);
        lines.push(started_line());
        lines.push(complete_line(svc));
        Ok(lines)
    })
}

pub fn new_service(def: ServiceDef, logs: Vec<Value>) -> Service {
    Service {
        def,
        running: false,
        pid: None,
        started_at: None,
        started: None,
        restart_count: 0,
        logs,
        generation: 0,
        next_restart_at: None,
    }
}

pub fn delete_service(app: &App, target: Target<'_>, svc: &str) -> Result<(), Refusal> {
    with_sprite(app, target, |sprite, _| {
        if !sprite.services.contains_key(svc) {
            return Err(not_found(svc));
        }
        if let Some(dependent) = sprite.services.values().find(|s| s.def.needs.iter().any(|n| n == svc)) {
            return Err((StatusCode::CONFLICT, format!("service {svc} is needed by {}", dependent.def.name)));
        }
        sprite.services.remove(svc);
        sprite.vm.end_service(svc);
        Ok(())
    })
}

/// `start`, `stop` or `restart`; the NDJSON lines of the answer.
pub fn service_action(app: &App, target: Target<'_>, svc: &str, action: &str) -> Result<Vec<Value>, Refusal> {
    with_sprite(app, target, |sprite, pid| {
        let Some(service) = sprite.services.get(svc) else {
            return Err(not_found(svc));
        };
        let running = service.running;
        let mut lines = Vec::new();
        match action {
            "start" => {
                // Starting a running service changes nothing, like systemd.
                if !running {
                    sprite.start_service(svc, pid);
                }
                lines.push(started_line());
            }
            "stop" => {
                if !running {
                    return Err(not_running(svc));
                }
                sprite.stop_service(svc);
                lines.extend(stop_lines());
            }
            _ => {
                if running {
                    sprite.stop_service(svc);
                    lines.extend(stop_lines());
                }
                sprite.start_service(svc, pid);
                lines.push(started_line());
            }
        }
        lines.push(complete_line(svc));
        Ok(lines)
    })
}

pub fn signal_service(app: &App, target: Target<'_>, svc: &str, signal: &str) -> Result<(), Refusal> {
    let sig = signal.trim_start_matches("SIG").to_string();
    if !["INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2"].contains(&sig.as_str()) {
        return Err((StatusCode::BAD_REQUEST, format!("invalid signal: {signal}")));
    }
    with_sprite(app, target, |sprite, pid| {
        let Some(service) = sprite.services.get_mut(svc) else {
            return Err(not_found(svc));
        };
        if !service.running {
            return Err(not_running(svc));
        }
        // A signal that kills the process counts as a crash: the supervisor restarts it.
        if ["INT", "TERM", "KILL", "QUIT"].contains(&sig.as_str()) {
            service.restart_count += 1;
            let exit =
                json!({"type": "exit", "exit_code": 128 + signal_number(&sig), "timestamp": unix_ms()});
            service.log(exit);
            sprite.start_service(svc, pid);
        }
        Ok(())
    })
}

pub fn service_logs(
    app: &App,
    target: Target<'_>,
    svc: &str,
    lines: Option<usize>,
) -> Result<Vec<Value>, Refusal> {
    with_sprite(app, target, |sprite, _| {
        let service = sprite.services.get(svc).ok_or_else(|| not_found(svc))?;
        let skip = lines.map_or(0, |n| service.logs.len().saturating_sub(n));
        Ok(service.logs[skip..].to_vec())
    })
}

fn by_name(name: &str) -> Target<'_> {
    Target { name, id: None }
}

pub async fn list(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = enter(&app, "services.list", &name, &headers).await {
        return resp;
    }
    match list_services(&app, by_name(&name)) {
        Ok(all) => respond::json(StatusCode::OK, all),
        Err(r) => refused(r),
    }
}

pub async fn get(
    State(app): State<App>,
    Path((name, svc)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "services.get", &name, &headers).await {
        return resp;
    }
    match get_service(&app, by_name(&name), &svc) {
        Ok(v) => respond::json(StatusCode::OK, v),
        Err(r) => refused(r),
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
    match put_service(&app, by_name(&name), &svc, req) {
        Ok(lines) => respond::ndjson(&lines),
        Err(r) => refused(r),
    }
}

pub async fn delete(
    State(app): State<App>,
    Path((name, svc)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "services.delete", &name, &headers).await {
        return resp;
    }
    match delete_service(&app, by_name(&name), &svc) {
        Ok(()) => respond::no_content(),
        Err(r) => refused(r),
    }
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
    match service_action(&app, by_name(&name), &svc, &action) {
        Ok(lines) => respond::ndjson(&lines),
        Err(r) => refused(r),
    }
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
    match signal_service(&app, by_name(&name), &req.name, &req.signal) {
        Ok(()) => respond::no_content(),
        Err(r) => refused(r),
    }
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
    match service_logs(&app, by_name(&name), &svc, lines) {
        Ok(lines) => respond::ndjson(&lines),
        Err(r) => refused(r),
    }
}

/// After a restore: the saved definitions come back and all start, in `needs` order.
pub fn boot_services(world: &mut World, name: &str, defs: Vec<ServiceDef>) {
    let order = needs_order(defs);
    let pids: Vec<u32> = order.iter().map(|_| world.pid()).collect();
    let Some(sprite) = world.sprites.get_mut(name) else {
        return;
    };
    sprite.services.clear();
    // The environment restarted: every process and socket of the old one is gone.
    sprite.vm = Default::default();
    for (def, pid) in order.into_iter().zip(pids) {
        let svc = def.name.clone();
        sprite.services.insert(svc.clone(), new_service(def, Vec::new()));
        sprite.start_service(&svc, pid);
    }
}
