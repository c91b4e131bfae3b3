//! Injected faults: what the control API stores and how a matching request is answered.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::latency;
use crate::state::World;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    Status {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    RateLimit {
        retry_after_secs: u64,
    },
    Hang {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
    },
    ExecCloseWithoutExit,
    ExecEmptyExitPayload,
    ExecTextFrames,
    /// A 200 NDJSON stream that reports failure in-band, as the real server does.
    StreamError {
        message: String,
    },
}

/// The routes whose answer is an NDJSON progress stream.
const STREAM_ROUTES: [&str; 6] = [
    "checkpoints.create",
    "checkpoints.restore",
    "services.put",
    "services.start",
    "services.stop",
    "services.restart",
];

impl FaultKind {
    /// Exec-framing quirks only make sense on the exec WebSocket, in-band stream errors only
    /// on streaming routes; every other kind applies anywhere.
    pub fn applies_to(&self, route: &str) -> bool {
        match self {
            FaultKind::ExecCloseWithoutExit | FaultKind::ExecEmptyExitPayload | FaultKind::ExecTextFrames => {
                route == "exec"
            }
            FaultKind::StreamError { .. } => STREAM_ROUTES.contains(&route),
            _ => true,
        }
    }
}

/// Body of `POST /_emulator/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFault {
    pub route: String,
    #[serde(default)]
    pub sprite: Option<String>,
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub count: Option<u64>,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub id: String,
    pub route: String,
    pub sprite: Option<String>,
    pub probability: f64,
    /// Remaining matches; None = unlimited. An exhausted fault stays listed with 0.
    pub count: Option<u64>,
    pub hits: u64,
    pub kind: FaultKind,
}

impl NewFault {
    pub fn validate(&self) -> Result<(), String> {
        if self.route != "*" && !latency::is_route(&self.route) {
            return Err(format!("unknown route {:?}", self.route));
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err("probability must be between 0 and 1".into());
        }
        if self.route != "*" && !self.kind.applies_to(&self.route) {
            return Err(format!(
                "this kind does not apply to {:?} (exec_* faults: \"exec\"; stream_error: {})",
                self.route,
                STREAM_ROUTES.join(", ")
            ));
        }
        if let FaultKind::Status { status, .. } = self.kind
            && !(100..=599).contains(&status)
        {
            return Err("status must be an HTTP status code".into());
        }
        Ok(())
    }
}

impl World {
    pub fn add_fault(&mut self, f: NewFault) -> String {
        let id = format!("f{}", self.next_fault);
        self.next_fault += 1;
        self.faults.push(Fault {
            id: id.clone(),
            route: f.route,
            sprite: f.sprite,
            probability: f.probability.unwrap_or(1.0),
            count: f.count,
            hits: 0,
            kind: f.kind,
        });
        id
    }

    /// The first fault that matches this request, consuming one of its uses.
    pub fn take_fault(&mut self, route: &str, sprite: Option<&str>) -> Option<FaultKind> {
        for fault in &mut self.faults {
            if fault.route != "*" && fault.route != route {
                continue;
            }
            if let Some(want) = &fault.sprite
                && Some(want.as_str()) != sprite
            {
                continue;
            }
            if !fault.kind.applies_to(route) {
                continue;
            }
            if fault.count == Some(0) {
                continue;
            }
            if fault.probability < 1.0 && rand::random::<f64>() >= fault.probability {
                continue;
            }
            if let Some(n) = &mut fault.count {
                *n -= 1;
            }
            fault.hits += 1;
            return Some(fault.kind.clone());
        }
        None
    }
}

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
        json!({"type": "error", "error": message, "time": crate::rfc3339(time::OffsetDateTime::now_utc())})
    } else {
        json!({"type": "error", "data": message, "timestamp": crate::state::unix_ms()})
    };
    let info = if route.starts_with("checkpoints.") {
        json!({"type": "info", "data": "Working...", "time": crate::rfc3339(time::OffsetDateTime::now_utc())})
    } else {
        json!({"type": "started", "timestamp": crate::state::unix_ms()})
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
