//! OpenRouter key management (`/api/v1/keys`): create, list (offset pages of 100, newest
//! first), get, update and delete per-instance API keys with a management key.
//!
//! Only what the pool relies on is modelled: usage stays 0, so `limit_remaining` equals
//! `limit`. Names need not be unique, as on the real service. The secret `key` is returned by
//! the create answer only and is never shown in a dump; `GET /api/v1/key`, authenticated with
//! a created key itself (as an agent would call the API), tells a live key from a deleted or
//! disabled one.

pub mod state;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::admission::{admit, bearer_ok};
use crate::respond;
use crate::state::App;

pub use state::{Key, PAGE_SIZE};

const LIMIT_RESETS: [&str; 3] = ["daily", "weekly", "monthly"];

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/keys", get(list).post(create))
        .route("/api/v1/keys/{hash}", get(get_one).patch(update).delete(delete))
        .route("/api/v1/key", get(current))
        .route("/_emulator/openrouter/keys", get(dump))
}

/// The real error shape: `{"error": {"code", "message"}}` with the same HTTP status.
fn error(status: StatusCode, message: &str) -> Response {
    respond::json(status, json!({"error": {"code": status.as_u16(), "message": message}}))
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "API key not found")
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

async fn admitted(app: &App, route: &'static str, headers: &HeaderMap) -> Result<(), Response> {
    if let Some(agent) = headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()) {
        app.world().openrouter.user_agents.insert(agent.to_string());
    }
    let authorized = bearer_ok(headers, &app.0.start_config.openrouter_key);
    admit(app, route, None, authorized).await.map(|_| ())
}

fn parse_object(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("request body must be a JSON object")),
        Err(_) => Err(bad_request("invalid JSON body")),
    }
}

fn limit_of(value: &Value) -> Result<Option<f64>, Response> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_f64() {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            _ => Err(bad_request("limit must be a non-negative number or null")),
        },
        _ => Err(bad_request("limit must be a non-negative number or null")),
    }
}

fn limit_reset_of(value: &Value) -> Result<Option<String>, Response> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if LIMIT_RESETS.contains(&s.as_str()) => Ok(Some(s.clone())),
        _ => Err(bad_request("limit_reset must be one of daily, weekly, monthly or null")),
    }
}

fn bool_of(value: &Value, field: &str) -> Result<bool, Response> {
    value.as_bool().ok_or_else(|| bad_request(&format!("{field} must be a boolean")))
}

fn name_of(value: &Value) -> Result<String, Response> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(bad_request("name must be a non-empty string")),
    }
}

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = admitted(&app, "openrouter.keys.create", &headers).await {
        return resp;
    }
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    let name = match req.get("name").map(name_of) {
        Some(Ok(n)) => n,
        Some(Err(resp)) => return resp,
        None => return bad_request("name is required"),
    };
    let limit = match req.get("limit").map(limit_of).transpose() {
        Ok(v) => v.flatten(),
        Err(resp) => return resp,
    };
    let limit_reset = match req.get("limit_reset").map(limit_reset_of).transpose() {
        Ok(v) => v.flatten(),
        Err(resp) => return resp,
    };
    let include_byok_in_limit =
        match req.get("include_byok_in_limit").map(|v| bool_of(v, "include_byok_in_limit")).transpose() {
            Ok(v) => v.unwrap_or(false),
            Err(resp) => return resp,
        };
    let expires_at = match req.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.ends_with('Z') => match OffsetDateTime::parse(s, &Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => return bad_request("expires_at must be an ISO 8601 UTC timestamp"),
        },
        Some(_) => return bad_request("expires_at must be an ISO 8601 UTC timestamp"),
    };
    let secret = format!("sk-or-v1-{}", random_hex(32));
    let key = Key {
        hash: random_hex(32),
        name,
        label: format!("{}...{}", &secret[..12], &secret[secret.len() - 4..]),
        secret: secret.clone(),
        disabled: false,
        limit,
        limit_reset,
        include_byok_in_limit,
        created_at: OffsetDateTime::now_utc(),
        updated_at: None,
        expires_at,
    };
    let data = key.to_json();
    {
        let mut world = app.world();
        let or = &mut world.openrouter;
        or.next_seq += 1;
        let seq = or.next_seq;
        or.keys.insert(seq, key);
    }
    respond::json(StatusCode::CREATED, json!({"data": data, "key": secret}))
}

pub async fn list(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(resp) = admitted(&app, "openrouter.keys.list", &headers).await {
        return resp;
    }
    let mut offset = 0usize;
    let mut include_disabled = false;
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "offset" if !v.is_empty() => match v.parse::<usize>() {
                Ok(n) => offset = n,
                Err(_) => return bad_request("offset must be a non-negative integer"),
            },
            "include_disabled" if !v.is_empty() => match v.as_ref() {
                "true" => include_disabled = true,
                "false" => include_disabled = false,
                _ => return bad_request("include_disabled must be true or false"),
            },
            _ => {}
        }
    }
    let world = app.world();
    let data: Vec<Value> = world
        .openrouter
        .keys
        .values()
        .rev()
        .filter(|k| include_disabled || !k.disabled)
        .skip(offset)
        .take(PAGE_SIZE)
        .map(Key::to_json)
        .collect();
    respond::json(StatusCode::OK, json!({ "data": data }))
}

pub async fn get_one(State(app): State<App>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = admitted(&app, "openrouter.keys.get", &headers).await {
        return resp;
    }
    let world = app.world();
    match world.openrouter.find(&hash) {
        Some(seq) => respond::json(StatusCode::OK, json!({"data": world.openrouter.keys[&seq].to_json()})),
        None => not_found(),
    }
}

pub async fn update(
    State(app): State<App>,
    Path(hash): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = admitted(&app, "openrouter.keys.update", &headers).await {
        return resp;
    }
    let req = match parse_object(&body) {
        Ok(m) => m,
        Err(resp) => return resp,
    };
    // Validate everything before changing anything.
    let name = match req.get("name").map(name_of).transpose() {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let disabled = match req.get("disabled").map(|v| bool_of(v, "disabled")).transpose() {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let limit = match req.get("limit").map(limit_of).transpose() {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let limit_reset = match req.get("limit_reset").map(limit_reset_of).transpose() {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let byok = match req.get("include_byok_in_limit").map(|v| bool_of(v, "include_byok_in_limit")).transpose()
    {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let mut world = app.world();
    let Some(seq) = world.openrouter.find(&hash) else {
        return not_found();
    };
    let Some(key) = world.openrouter.keys.get_mut(&seq) else {
        return not_found();
    };
    if let Some(v) = name {
        key.name = v;
    }
    if let Some(v) = disabled {
        key.disabled = v;
    }
    if let Some(v) = limit {
        key.limit = v;
    }
    if let Some(v) = limit_reset {
        key.limit_reset = v;
    }
    if let Some(v) = byok {
        key.include_byok_in_limit = v;
    }
    key.updated_at = Some(OffsetDateTime::now_utc());
    respond::json(StatusCode::OK, json!({"data": key.to_json()}))
}

pub async fn delete(State(app): State<App>, Path(hash): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = admitted(&app, "openrouter.keys.delete", &headers).await {
        return resp;
    }
    let mut world = app.world();
    match world.openrouter.find(&hash) {
        Some(seq) => {
            world.openrouter.keys.remove(&seq);
            respond::json(StatusCode::OK, json!({"deleted": true}))
        }
        None => not_found(),
    }
}

/// `GET /api/v1/key`: the calling key itself, as an agent holding it sees it. A key that was
/// deleted (or never existed) is 401, a disabled one 403, as for any model call made with it.
pub async fn current(State(app): State<App>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let found = {
        let world = app.world();
        world.openrouter.keys.values().find(|k| !presented.is_empty() && k.secret == presented).cloned()
    };
    // Counted and delayed like any route; authorised only by a live key.
    if let Err(resp) = admit(&app, "openrouter.key.current", None, found.is_some()).await {
        return match resp.status() {
            StatusCode::UNAUTHORIZED => error(StatusCode::UNAUTHORIZED, "User not found."),
            _ => resp,
        };
    }
    let Some(key) = found else { return error(StatusCode::UNAUTHORIZED, "User not found.") };
    if key.disabled {
        return error(StatusCode::FORBIDDEN, "API key is disabled");
    }
    respond::json(
        StatusCode::OK,
        json!({"data": {
            "label": key.label,
            "limit": key.limit,
            "limit_remaining": key.limit,
            "limit_reset": key.limit_reset,
            "usage": 0.0,
            "is_free_tier": false,
        }}),
    )
}

/// `GET /_emulator/openrouter/keys`: every key, oldest first, without secrets, and the
/// `User-Agent`s the management routes saw. Not counted.
pub async fn dump(State(app): State<App>) -> Response {
    let world = app.world();
    let keys: Vec<Value> = world.openrouter.keys.values().map(Key::dump).collect();
    respond::json(StatusCode::OK, json!({ "keys": keys, "user_agents": world.openrouter.user_agents }))
}
