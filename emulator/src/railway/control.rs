//! `/_emulator/railway/*`: the Railway part of the control API (no auth, not counted).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{Forced, VolumeThrottle, runtime};
use crate::respond;
use crate::state::App;

fn bad_request(msg: &str) -> Response {
    respond::error(StatusCode::BAD_REQUEST, msg)
}

/// Services, volumes (orphans included), domains, deployments and variable names, and per
/// service what its latest deployment's email credential is good for (never a value).
pub async fn state(State(app): State<App>) -> Response {
    let world = app.world();
    let mut dump = world.railway.dump(world.config.speed);
    let org_key = &app.0.start_config.agentmail_key;
    if let Some(services) = dump["services"].as_array_mut() {
        for service in services {
            let id = service["id"].as_str().unwrap_or_default().to_string();
            let credential = world
                .railway
                .services
                .get(&id)
                .and_then(|s| s.latest())
                .and_then(|d| runtime::email_credential(&world, org_key, &d.config.variables));
            service["emailCredential"] = json!(credential);
        }
    }
    respond::json(StatusCode::OK, dump)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ThrottlePatch {
    limit: u32,
    window_ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfigPatch {
    deploy_ms: Option<u64>,
    /// `{"limit", "windowMs"}` arms the volume throttle; `null` disarms it.
    #[serde(default, deserialize_with = "present")]
    volume_throttle: Option<Option<ThrottlePatch>>,
}

/// A field that is present (even as null) is `Some`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

fn config_json(world: &crate::state::World) -> serde_json::Value {
    let throttle = world
        .railway
        .volume_throttle
        .map(|t| json!({"limit": t.limit, "windowMs": t.window.as_millis() as u64}));
    json!({"deployMs": world.railway.deploy_ms, "volumeThrottle": throttle})
}

pub async fn config_get(State(app): State<App>) -> Response {
    let world = app.world();
    respond::json(StatusCode::OK, config_json(&world))
}

/// `{"deployMs": N}`: how long a deployment takes to reach SUCCESS, before `speed`;
/// `{"volumeThrottle": {"limit": L, "windowMs": W}}`: at most L `volumeCreate` in any W ms
/// (more answer "You are creating volumes too quickly"), `null` to lift it.
pub async fn config_put(State(app): State<App>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<ConfigPatch>(&body) {
        Ok(p) => p,
        Err(e) => return bad_request(&format!("invalid config: {e}")),
    };
    let mut world = app.world();
    if let Some(ms) = patch.deploy_ms {
        world.railway.deploy_ms = ms;
    }
    if let Some(throttle) = patch.volume_throttle {
        world.railway.volume_throttle = throttle.map(|t| VolumeThrottle {
            limit: t.limit,
            window: std::time::Duration::from_millis(t.window_ms),
        });
    }
    respond::json(StatusCode::OK, config_json(&world))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoseAnswer {
    /// The root field, e.g. `volumeCreate`.
    field: String,
    #[serde(default = "one")]
    count: u64,
}

/// `{"field": "volumeCreate", "count": N}`: the next N requests whose first root field is
/// `field` take effect, then Railway's edge answers 504 with an HTML page (the answer is
/// lost, as when the origin is slow). `count: 0` disarms.
pub async fn lose_answer(State(app): State<App>, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<LoseAnswer>(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(&format!("invalid body: {e}")),
    };
    let route = format!("railway.{}", req.field);
    if !crate::latency::is_route(&route) {
        return bad_request(&format!("unknown field {:?}", req.field));
    }
    let mut world = app.world();
    world.railway.lost_answers.insert(route, req.count);
    respond::json(StatusCode::OK, json!({"field": req.field, "count": req.count}))
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
