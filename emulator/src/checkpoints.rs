//! Checkpoints: snapshots of the files and service definitions, and restore (reference §4).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admission::{admit, bearer_ok};
use crate::clock::rfc3339;
use crate::respond;
use crate::services::boot_services;
use crate::state::{App, Checkpoint};

fn line(kind: &str, data: &str) -> Value {
    json!({"type": kind, "data": data, "time": rfc3339(OffsetDateTime::now_utc())})
}

fn not_found(id: &str) -> Response {
    respond::error(StatusCode::NOT_FOUND, &format!("checkpoint not found: {id}"))
}

async fn enter(app: &App, route: &'static str, name: &str, headers: &HeaderMap) -> Result<(), Response> {
    admit(app, route, Some(name), bearer_ok(headers, &app.0.token)).await?;
    if app.world().sprites.contains_key(name) { Ok(()) } else { Err(respond::sprite_not_found()) }
}

#[derive(Deserialize, Default)]
struct CreateBody {
    #[serde(default)]
    comment: Option<String>,
}

pub async fn create(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = enter(&app, "checkpoints.create", &name, &headers).await {
        return resp;
    }
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        match serde_json::from_slice::<CreateBody>(&body) {
            Ok(r) => r,
            Err(_) => return respond::error(StatusCode::BAD_REQUEST, "invalid request body"),
        }
    };
    let mut world = app.world();
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    sprite.touch();
    let id = format!("v{}", sprite.next_checkpoint);
    sprite.next_checkpoint += 1;
    let (source_id, history) = match &sprite.current_base {
        Some(parent) => {
            let mut history = sprite
                .checkpoints
                .iter()
                .find(|c| &c.id == parent)
                .map(|c| c.history.clone())
                .unwrap_or_default();
            history.push(parent.clone());
            (parent.clone(), history)
        }
        None => (String::new(), Vec::new()),
    };
    sprite.checkpoints.push(Checkpoint {
        id: id.clone(),
        create_time: OffsetDateTime::now_utc(),
        comment: req.comment.unwrap_or_default(),
        source_id,
        history,
        fs: sprite.fs.clone(),
        services: sprite.services.values().map(|s| s.def.clone()).collect(),
    });
    sprite.current_base = Some(id.clone());
    respond::ndjson(&[
        line("info", "Creating checkpoint..."),
        line("info", "Saving filesystem state..."),
        line("complete", &format!("Checkpoint {id} created")),
    ])
}

pub async fn list(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = enter(&app, "checkpoints.list", &name, &headers).await {
        return resp;
    }
    let history = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "history")
        .map(|(_, v)| v.into_owned());
    let world = app.world();
    let Some(sprite) = world.sprites.get(&name) else {
        return respond::sprite_not_found();
    };
    let all: Vec<Value> = sprite
        .checkpoints
        .iter()
        .filter(|c| history.as_ref().is_none_or(|h| c.history.contains(h)))
        .map(Checkpoint::to_json)
        .collect();
    respond::json(StatusCode::OK, Value::Array(all))
}

pub async fn get(
    State(app): State<App>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "checkpoints.get", &name, &headers).await {
        return resp;
    }
    let world = app.world();
    match world.sprites.get(&name).and_then(|s| s.checkpoints.iter().find(|c| c.id == id)) {
        Some(c) => respond::json(StatusCode::OK, c.to_json()),
        None => not_found(&id),
    }
}

pub async fn delete(
    State(app): State<App>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "checkpoints.delete", &name, &headers).await {
        return resp;
    }
    let mut world = app.world();
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    let Some(pos) = sprite.checkpoints.iter().position(|c| c.id == id) else {
        return not_found(&id);
    };
    if sprite.last_restored.as_deref() == Some(id.as_str()) {
        return respond::error(StatusCode::CONFLICT, "cannot delete the current checkpoint");
    }
    sprite.checkpoints.remove(pos);
    respond::no_content()
}

/// Restore = the environment restarts on the saved files: exec sessions end, services come
/// back from their saved definitions and start again (so the gateway boots again).
pub async fn restore(
    State(app): State<App>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = enter(&app, "checkpoints.restore", &name, &headers).await {
        return resp;
    }
    let mut world = app.world();
    let Some(sprite) = world.sprites.get_mut(&name) else {
        return respond::sprite_not_found();
    };
    let Some(cp) = sprite.checkpoints.iter().find(|c| c.id == id) else {
        return not_found(&id);
    };
    let (fs, defs) = (cp.fs.clone(), cp.services.clone());
    sprite.end_sessions();
    sprite.fs = fs;
    sprite.last_restored = Some(id.clone());
    sprite.current_base = Some(id.clone());
    sprite.boot_epoch += 1;
    sprite.touch();
    boot_services(&mut world, &name, defs);
    crate::vm::supervisor::launch(&app, &mut world, &name);
    respond::ndjson(&[
        line("info", &format!("Restoring to checkpoint {id}...")),
        line("info", "Restarting environment..."),
        line("complete", &format!("Restored to {id}")),
    ])
}
