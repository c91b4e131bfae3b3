//! Injected faults: how a matching request is answered. What the control API stores, and
//! which fault a request matches, is [`state`] (below the world model).

pub mod state;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub use state::{FaultKind, NewFault};

/// The response for a `status` fault.
pub fn status_response(status: u16, body: Option<String>, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = match body {
        Some(text) if serde_json::from_str::<serde_json::Value>(&text).is_ok() => {
            (code, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Some(text) => (code, [(header::CONTENT_TYPE, "text/plain")], text).into_response(),
        None => {
            let reason = code.canonical_reason().unwrap_or("injected fault");
            (code, axum::Json(json!({ "error": reason }))).into_response()
        }
    };
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// 429 with the headers and body every official SDK parses (reference §1.2).
/// An in-band failure in the stream shape of the route: checkpoint streams carry `error` and
/// `time`, service streams `data` and `timestamp`.
pub fn stream_error_response(route: &str, message: String) -> Response {
    let error_line = if route.starts_with("checkpoints.") {
        json!({"type": "error", "error": message, "time": crate::clock::rfc3339(time::OffsetDateTime::now_utc())})
    } else {
        json!({"type": "error", "data": message, "timestamp": crate::clock::unix_ms()})
    };
    let info = if route.starts_with("checkpoints.") {
        json!({"type": "info", "data": "Working...", "time": crate::clock::rfc3339(time::OffsetDateTime::now_utc())})
    } else {
        json!({"type": "started", "timestamp": crate::clock::unix_ms()})
    };
    crate::respond::ndjson(&[info, error_line])
}

pub fn rate_limit_response(route: &str, retry_after: u64) -> Response {
    let error = if route == "sprites.create" { "sprite_creation_rate_limited" } else { "rate_limited" };
    let limit = 10u64;
    let reset = time::OffsetDateTime::now_utc().unix_timestamp() + retry_after as i64;
    let body = json!({
        "error": error,
        "message": format!("Rate limit exceeded. Try again in {retry_after} seconds."),
        "limit": limit,
        "window_seconds": 60,
        "retry_after_seconds": retry_after,
    });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    resp
}
