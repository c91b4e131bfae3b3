//! `/v1/sprites` management routes, plus the network policy of a Sprite.

pub mod lifecycle;
pub mod state;

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admission::{admit, bearer_ok};
use crate::hibernation::wake::limit_exceeded;
use crate::respond;
use crate::state::{App, Sprite};

fn bad_request(msg: &str) -> Response {
    respond::json(StatusCode::BAD_REQUEST, json!({"errors": [msg]}))
}

pub fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Deserialize, Default)]
struct UrlSettings {
    auth: Option<String>,
    private_access: Option<String>,
}

#[derive(Deserialize)]
struct CreateBody {
    name: Option<String>,
    #[serde(default)]
    url_settings: Option<UrlSettings>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

fn check_auth_mode(settings: &Option<UrlSettings>) -> Result<(), Response> {
    match settings.as_ref().and_then(|s| s.auth.as_deref()) {
        None | Some("sprite") | Some("public") => Ok(()),
        Some(other) => {
            Err(bad_request(&format!("url_settings.auth must be \"sprite\" or \"public\", not {other:?}")))
        }
    }
}

pub async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "sprites.create", None, authorized).await {
        return resp;
    }
    let Ok(req) = serde_json::from_slice::<CreateBody>(&body) else {
        return bad_request("invalid request body");
    };
    let Some(name) = req.name else {
        return bad_request("name is required");
    };
    if !valid_name(&name) {
        return bad_request("invalid name: use 1-63 lowercase letters, digits and hyphens");
    }
    if let Err(resp) = check_auth_mode(&req.url_settings) {
        return resp;
    }
    let mut world = app.world();
    if world.sprites.contains_key(&name) {
        return respond::error(StatusCode::CONFLICT, "sprite already exists");
    }
    world.settle_lifecycle(Instant::now());
    if let Some(refusal) = limit_exceeded(&world) {
        return refusal;
    }
    let settings = req.url_settings.unwrap_or_default();
    let mut sprite = Sprite::new(
        name.clone(),
        settings.auth.unwrap_or_else(|| "sprite".into()),
        req.labels.unwrap_or_default(),
    );
    sprite.private_access = settings.private_access;
    let body = sprite.to_json(app.base_url());
    world.sprites.insert(name, sprite);
    respond::json(StatusCode::CREATED, body)
}

pub async fn list(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "sprites.list", None, authorized).await {
        return resp;
    }
    let mut prefix = String::new();
    let mut max = 50usize;
    let mut after: Option<String> = None;
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "prefix" => prefix = v.into_owned(),
            "max_results" if !v.is_empty() => match v.parse::<i64>() {
                Ok(n) => max = n.clamp(1, 50) as usize,
                Err(_) => return bad_request("invalid max_results"),
            },
            "continuation_token" if !v.is_empty() => {
                match URL_SAFE_NO_PAD.decode(v.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()) {
                    Some(name) => after = Some(name),
                    None => return bad_request("invalid continuation_token"),
                }
            }
            _ => {}
        }
    }
    let mut world = app.world();
    world.settle_lifecycle(Instant::now());
    let mut matching = world
        .sprites
        .range::<String, _>((
            match &after {
                Some(a) => std::ops::Bound::Excluded(a.clone()),
                None => std::ops::Bound::Unbounded,
            },
            std::ops::Bound::Unbounded,
        ))
        .filter(|(name, _)| name.starts_with(&prefix));
    let page: Vec<&Sprite> = matching.by_ref().take(max).map(|(_, s)| s).collect();
    let has_more = matching.next().is_some();
    let next = match (has_more, page.last()) {
        (true, Some(last)) => Value::String(URL_SAFE_NO_PAD.encode(last.name.as_bytes())),
        _ => Value::Null,
    };
    let sprites: Vec<Value> = page.iter().map(|s| s.to_json(app.base_url())).collect();
    let org = org_stats(&world);
    respond::json(
        StatusCode::OK,
        json!({"sprites": sprites, "has_more": has_more, "next_continuation_token": next, "org": org}),
    )
}

/// The account's counts and quotas in the Go SDK's list shape (reference §2.3 `org`).
fn org_stats(world: &crate::state::World) -> Value {
    let count = |status: &str| world.sprites.values().filter(|s| s.status() == status).count();
    json!({
        "name": "emulator",
        "running": count("running"),
        "warm": count("warm"),
        "cold": count("cold"),
        "running_limit": world.config.running_limit,
        "warm_limit": null,
    })
}

pub async fn get(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "sprites.get", Some(&name), authorized).await {
        return resp;
    }
    let mut world = app.world();
    world.settle_lifecycle(Instant::now());
    match world.sprites.get(&name) {
        Some(s) => respond::json(StatusCode::OK, s.to_json(app.base_url())),
        None => respond::sprite_not_found(),
    }
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    url_settings: Option<UrlSettings>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    clear_labels: bool,
}

pub async fn update(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "sprites.update", Some(&name), authorized).await {
        return resp;
    }
    let mut world = app.world();
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    let Ok(req) = serde_json::from_slice::<UpdateBody>(&body) else {
        return bad_request("invalid request body");
    };
    if let Err(resp) = check_auth_mode(&req.url_settings) {
        return resp;
    }
    if let Some(settings) = req.url_settings {
        if let Some(auth) = settings.auth {
            sprite.url_auth = auth;
        }
        if settings.private_access.is_some() {
            sprite.private_access = settings.private_access;
        }
    }
    if req.clear_labels {
        sprite.labels.clear();
    }
    if let Some(labels) = req.labels {
        sprite.labels = labels;
    }
    sprite.updated_at = time::OffsetDateTime::now_utc();
    respond::json(StatusCode::OK, sprite.to_json(app.base_url()))
}

pub async fn delete(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "sprites.delete", Some(&name), authorized).await {
        return resp;
    }
    match app.world().remove_sprite(&name) {
        Some(_) => respond::no_content(),
        None => respond::sprite_not_found(),
    }
}

pub async fn policy_get(State(app): State<App>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "policy.get", Some(&name), authorized).await {
        return resp;
    }
    match app.world().sprites.get(&name) {
        Some(s) => respond::json(StatusCode::OK, s.policy.clone()),
        None => respond::sprite_not_found(),
    }
}

/// Validates like the old in-VM server: known keys only, one of domain/include per rule.
fn valid_policy(v: &Value) -> bool {
    let Some(obj) = v.as_object() else {
        return false;
    };
    if obj.keys().any(|k| k != "rules") {
        return false;
    }
    let Some(rules) = obj.get("rules").and_then(Value::as_array) else {
        return false;
    };
    rules.iter().all(|r| {
        let Some(r) = r.as_object() else {
            return false;
        };
        if r.keys().any(|k| !["domain", "action", "include"].contains(&k.as_str())) {
            return false;
        }
        match (r.get("domain"), r.get("include")) {
            (Some(Value::String(d)), None) => {
                !d.is_empty() && matches!(r.get("action").and_then(Value::as_str), Some("allow" | "deny"))
            }
            (None, Some(Value::String(inc))) => inc == "defaults" && r.get("action").is_none(),
            _ => false,
        }
    })
}

pub async fn policy_set(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "policy.set", Some(&name), authorized).await {
        return resp;
    }
    let mut world = app.world();
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if valid_policy(&v) => {
            sprite.policy = v;
            respond::no_content()
        }
        _ => respond::text(StatusCode::BAD_REQUEST, "invalid policy config\n".into()),
    }
}
