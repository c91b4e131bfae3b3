//! `/v1/sprites/{name}/fs/*`: the filesystem API over plain HTTP (reference §6).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::admission::{admit, bearer_ok};
use crate::fs::{self, FsError};
use crate::respond;
use crate::state::{App, Sprite};

fn fs_error(e: &FsError) -> Response {
    let status = match e.code {
        "ENOENT" => StatusCode::NOT_FOUND,
        "EEXIST" => StatusCode::CONFLICT,
        "EACCES" => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    respond::json(status, json!({"error": e.message(), "code": e.code, "path": e.path}))
}

fn invalid(msg: &str, path: &str) -> Response {
    respond::json(StatusCode::BAD_REQUEST, json!({"error": msg, "code": "EINVAL", "path": path}))
}

fn truthy(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1" | "yes"))
}

/// The parsed query with `path` resolved against the required `workingDir`.
struct Target {
    path: String,
    query: HashMap<String, String>,
}

fn target(query: Option<&str>) -> Result<Target, Response> {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
    let Some(wd) = query.get("workingDir").filter(|w| !w.is_empty()) else {
        return Err(invalid("workingDir is required", ""));
    };
    let Some(path) = query.get("path").filter(|p| !p.is_empty()) else {
        return Err(invalid("path is required", ""));
    };
    let wd = fs::resolve("/", wd);
    Ok(Target { path: fs::resolve(&wd, path), query })
}

/// Shared prologue: admission, the Sprite, then the query.
async fn enter(
    app: &App,
    route: &'static str,
    name: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Target, Response> {
    admit(app, route, Some(name), bearer_ok(headers, &app.0.token)).await?;
    if !app.world().sprites.contains_key(name) {
        return Err(respond::sprite_not_found());
    }
    target(query)
}

fn with_sprite<T>(app: &App, name: &str, f: impl FnOnce(&mut Sprite) -> T) -> Option<T> {
    let mut world = app.world();
    let sprite = world.sprites.get_mut(name)?;
    sprite.touch();
    Some(f(sprite))
}

pub async fn read(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let t = match enter(&app, "fs.read", &name, &headers, query.as_deref()).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    match with_sprite(&app, &name, |s| s.fs.read(&t.path)) {
        None => respond::sprite_not_found(),
        Some(Err(e)) => fs_error(&e),
        Some(Ok(data)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], data).into_response()
        }
    }
}

pub async fn write(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let t = match enter(&app, "fs.write", &name, &headers, query.as_deref()).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let mode = match t.query.get("mode").filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => match u32::from_str_radix(m, 8) {
            Ok(mode) if m.len() <= 4 && mode <= 0o7777 => Some(mode),
            _ => return invalid(&format!("invalid mode {m:?}"), &t.path),
        },
    };
    let parents = truthy(t.query.get("mkdirParents")) || truthy(t.query.get("mkdir"));
    let size = body.len();
    let result = with_sprite(&app, &name, |s| {
        s.fs.write(&t.path, body, mode, parents)?;
        Ok(s.fs.get(&t.path).map(|n| n.mode()).unwrap_or(0o644))
    });
    match result {
        None => respond::sprite_not_found(),
        Some(Err(e)) => fs_error(&e),
        Some(Ok(mode)) => respond::json(
            StatusCode::OK,
            json!({"path": t.path, "size": size, "mode": format!("{mode:04o}")}),
        ),
    }
}

pub async fn list(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let t = match enter(&app, "fs.list", &name, &headers, query.as_deref()).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let recursive = truthy(t.query.get("recursive"));
    match with_sprite(&app, &name, |s| s.fs.list(&t.path, recursive)) {
        None => respond::sprite_not_found(),
        Some(Err(e)) => fs_error(&e),
        Some(Ok(entries)) => {
            respond::json(StatusCode::OK, json!({"path": t.path, "count": entries.len(), "entries": entries}))
        }
    }
}

pub async fn delete(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let t = match enter(&app, "fs.delete", &name, &headers, query.as_deref()).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let recursive = truthy(t.query.get("recursive"));
    match with_sprite(&app, &name, |s| s.fs.remove(&t.path, recursive)) {
        None => respond::sprite_not_found(),
        Some(Err(e)) => fs_error(&e),
        Some(Ok(_)) => respond::json(StatusCode::OK, json!({"deleted": [t.path], "count": 1})),
    }
}
