//! Waking a Sprite on a request (reference §8: "Requests wake the sprite", warm wake
//! 100–500 ms, cold wake 1–2 s) and the account's limit of running Sprites (429
//! `concurrent_sprite_limit_exceeded`, §1.2).

use std::ops::RangeInclusive;
use std::time::Instant;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::latency;
use crate::sprites::lifecycle::Power;
use crate::state::{App, World};

/// Wake latencies in ms before `speed` (reference §8).
const WARM_WAKE_MS: RangeInclusive<u64> = 100..=500;
const COLD_WAKE_MS: RangeInclusive<u64> = 1000..=2000;

/// Whether a route reaches the Sprite itself, and so wakes it: its URL and the per-Sprite API
/// served from inside the VM (exec, fs, services, checkpoints, policy). The management API
/// (`sprites.*`) answers without waking it.
pub fn wakes(route: &str) -> bool {
    ["exec", "fs.", "services.", "checkpoints.", "policy.", "gateway."].iter().any(|p| route.starts_with(p))
}

/// The 429 the real API answers when one more Sprite would run beyond the account's limit.
/// A running Sprite frees its place at the latest one idle pause after its last activity.
pub fn limit_exceeded(world: &World) -> Option<Response> {
    let limit = world.config.running_limit?;
    let current = world.running_count();
    if current < limit {
        return None;
    }
    let retry_after = world.config.idle_pause_ms.div_ceil(1000).max(1);
    let body = json!({
        "error": "concurrent_sprite_limit_exceeded",
        "message": format!("Concurrent running sprite limit of {limit} reached ({current} running)."),
        "limit": limit,
        "current_count": current,
        "retry_after_seconds": retry_after,
        "upgrade_available": false,
    });
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    Some(resp)
}

/// Wakes the Sprite if it is paused and waits until it is up (any wake in progress included);
/// on a running Sprite it only counts as activity. A wake beyond the running limit is refused
/// with the 429. A missing Sprite is left to the handler (404).
pub async fn wake(app: &App, route: &str, name: &str) -> Result<(), Response> {
    if !wakes(route) {
        return Ok(());
    }
    let awake_at = {
        let mut world = app.world();
        let now = Instant::now();
        world.settle_lifecycle(now);
        let power = match world.sprites.get(name) {
            Some(s) => s.lifecycle.power(),
            None => return Ok(()),
        };
        if power != Power::Running
            && let Some(refusal) = limit_exceeded(&world)
        {
            return Err(refusal);
        }
        let range = if power == Power::Cold { COLD_WAKE_MS } else { WARM_WAKE_MS };
        let latency = latency::scaled(rand::random_range(range), world.config.speed);
        let Some(sprite) = world.sprites.get_mut(name) else {
            return Ok(());
        };
        sprite.lifecycle.wake(now, latency);
        sprite.touch();
        sprite.lifecycle.awake_at()
    };
    if awake_at > Instant::now() {
        tokio::time::sleep_until(awake_at.into()).await;
    }
    let mut world = app.world();
    let booting = world.sprites.get(name).is_some_and(|s| s.lifecycle.boot_pending);
    if booting {
        (app.0.boot)(app, &mut world, name);
    }
    if let Some(sprite) = world.sprites.get_mut(name) {
        sprite.touch();
    }
    Ok(())
}
