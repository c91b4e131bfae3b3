//! What every counted request goes through first: count, auth, fault, latency, and the wake
//! of a paused Sprite the request reaches.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::faults::{self, FaultKind};
use crate::hibernation::wake;
use crate::latency;
use crate::respond;
use crate::state::App;

/// Exec framing quirks a matched fault asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quirk {
    CloseWithoutExit,
    EmptyExitPayload,
    TextFrames,
}

pub fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == token)
}

/// Counts the request under `route`, then refuses it (401), fails it (fault), or delays it
/// (hang fault, route latency). `Ok` carries an exec quirk if one was injected.
pub async fn admit(
    app: &App,
    route: &'static str,
    sprite: Option<&str>,
    authorized: bool,
) -> Result<Option<Quirk>, Response> {
    let (fault, latency_ms, speed) = {
        let mut world = app.world();
        *world.counters.entry(route.to_string()).or_default() += 1;
        if !authorized {
            return Err(respond::error(StatusCode::UNAUTHORIZED, "unauthorized"));
        }
        let fault = world.take_fault(route, sprite);
        (fault, world.config.latency_of(route), world.config.speed)
    };
    let mut quirk = None;
    match fault {
        None => {}
        Some(FaultKind::Status { status, body, retry_after_secs }) => {
            return Err(faults::status_response(status, body, retry_after_secs));
        }
        Some(FaultKind::RateLimit { retry_after_secs }) => {
            return Err(faults::rate_limit_response(route, retry_after_secs));
        }
        // A hang is an explicit wall-clock wait, so `speed` does not shrink it.
        Some(FaultKind::Hang { ms: Some(ms) }) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some(FaultKind::Hang { ms: None }) => {
            app.shutting_down().await;
            return Err(respond::error(StatusCode::SERVICE_UNAVAILABLE, "emulator shutting down"));
        }
        Some(FaultKind::ExecCloseWithoutExit) => quirk = Some(Quirk::CloseWithoutExit),
        Some(FaultKind::ExecEmptyExitPayload) => quirk = Some(Quirk::EmptyExitPayload),
        Some(FaultKind::ExecTextFrames) => quirk = Some(Quirk::TextFrames),
        Some(FaultKind::StreamError { message }) => {
            return Err(faults::stream_error_response(route, message));
        }
    }
    latency::simulate(latency_ms, speed).await;
    if let Some(name) = sprite {
        wake::wake(app, route, name).await?;
    }
    Ok(quirk)
}
