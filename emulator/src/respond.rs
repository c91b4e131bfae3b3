//! Small response builders shared by the route modules.

use axum::Json;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub fn json(status: StatusCode, value: Value) -> Response {
    (status, Json(value)).into_response()
}

/// `{"error": msg}` with the given status.
pub fn error(status: StatusCode, msg: &str) -> Response {
    json(status, json!({ "error": msg }))
}

pub fn sprite_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "sprite not found")
}

/// A 200 NDJSON body, one object per line.
pub fn ndjson(lines: &[Value]) -> Response {
    let mut body = String::new();
    for line in lines {
        body.push_str(&line.to_string());
        body.push('\n');
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], Body::from(body)).into_response()
}

pub fn text(status: StatusCode, msg: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], msg).into_response()
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}
