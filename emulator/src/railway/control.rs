//! `/_emulator/railway/*`: the Railway part of the control API (no auth, not counted).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::Forced;
use crate::respond;
use crate::state::App;

fn bad_request(msg: &str) -> Response {
    respond::error(StatusCode::BAD_REQUEST, msg)
}

/// Services, volumes (orphans included), domains, deployments and variable names.
pub async fn state(State(app): State<App>) -> Response {
    let world = app.world();
    respond::json(StatusCode::OK, world.railway.dump(world.config.speed))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigPatch {
    deploy_ms: Option<u64>,
}

pub async fn config_get(State(app): State<App>) -> Response {
    let world = app.world();
    respond::json(StatusCode::OK, json!({"deployMs": world.railway.deploy_ms}))
}

/// `{"deployMs": N}`: how long a deployment takes to reach SUCCESS, before `speed`.
pub async fn config_put(State(app): State<App>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<ConfigPatch>(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("invalid config: {e}")),
    };
    let mut world = app.world();
    if let Some(ms) = patch.deploy_ms {
        world.railway.deploy_ms = ms;
    }
    respond::json(StatusCode::OK, json!({"deployMs": world.railway.deploy_ms}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    #[serde(default = "one")]
    count: u64,
}

fn one() -> u64 {
    1
}

/// `{"count": N}` (default 1): the next N deployments end FAILED; 0 clears.
pub async fn fail_next(State(app): State<App>, body: Bytes) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        FailNext { count: 1 }
    } else {
        match serde_json::from_slice::<FailNext>(&body) {
            Ok(r) => r,
            Err(e) => return bad_request(&format!("invalid body: {e}")),
        }
    };
    let mut world = app.world();
    world.railway.fail_next = req.count;
    respond::json(StatusCode::OK, json!({"failNext": req.count}))
}

fn force(app: &App, service: &str, forced: Forced) -> Response {
    let mut world = app.world();
    let Some(id) = world.railway.find_service_id(service) else {
        return respond::error(StatusCode::NOT_FOUND, "service not found");
    };
    let svc = world.railway.services.get_mut(&id).expect("just found");
    let Some(d) = svc.latest_mut() else {
        return respond::error(StatusCode::CONFLICT, "service has no deployment");
    };
    d.forced = Some(forced);
    d.woke = None;
    let status = if forced == Forced::Crashed { "CRASHED" } else { "SLEEPING" };
    respond::json(StatusCode::OK, json!({"serviceId": id, "deploymentId": d.id, "status": status}))
}

/// The latest deployment crashes: CRASHED, the runtime stops answering.
pub async fn crash(State(app): State<App>, Path(service): Path<String>) -> Response {
    force(&app, &service, Forced::Crashed)
}

/// The latest deployment goes to sleep: SLEEPING until a request to its domain or a redeploy.
pub async fn sleep(State(app): State<App>, Path(service): Path<String>) -> Response {
    force(&app, &service, Forced::Sleeping)
}
