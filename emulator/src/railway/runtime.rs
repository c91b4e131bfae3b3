//! What answers on a service's public domain (`/_railway/{domain}/…`): the Gen 2 pool server
//! (convos-contracts §2.2) in front of the simulated OpenClaw gateway.
//!
//! - The pool server runs only when the deployment was started with its command
//!   ([`POOL_SERVER_START_COMMAND`]); the image's own command runs the gateway alone, without
//!   `/pool/health` or the `/data` set-up, so nothing answers on the domain: 502.
//! - `GET /pool/health` needs no auth: 503 `{"ready":false}` until the latest deployment is
//!   SUCCESS and the gateway has booted (`gateway_boot_ms`), then 200
//!   `{"ready":true,"version":"emulated","runtime":<RUNTIME_TYPE>}`; 503 again once crashed.
//!   With `AGENTMAIL_INBOX_ID` set, the email handler needs `AGENTMAIL_API_KEY` good for that
//!   inbox (scoped to it, or the organisation's) or a `POOL_URL` to proxy through: without
//!   one the runtime stays 503 `{"ready":false,"error":…}`.
//! - Everything else goes to the gateway (`gateway::serve`) with the deployment's
//!   `GATEWAY_TOKEN` as the key (open when unset), or 502 while the runtime is not up.
//! - A sleeping service wakes on a request: the request waits for the boot, like Railway's
//!   app sleeping.
//!
//! The binding lives on the service's volume (`<mountPath>/openclaw/openclaw.json`, identities
//! under `<mountPath>/convos`), so it survives redeploys; without a volume it lives on the
//! container's disk and is lost with every new deployment.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use std::collections::BTreeMap;

use super::{Forced, RailwayWorld};
use crate::admission::admit;
use crate::fs::Fs;
use crate::gateway::{self, Host, Layout, Route};
use crate::latency;
use crate::respond;
use crate::state::{App, World};

/// The production pool's start command: the pool server, which sets up the volume, answers
/// `/pool/health` and runs the runtime behind it (convos-contracts §3.3, runtime @ dev).
pub const POOL_SERVER_START_COMMAND: &str = "node convos-platform/pool-server/dist/index.js";

/// What the deployment's email credential is good for: `None` without an inbox, else
/// `inbox` / `organization` (an `AGENTMAIL_API_KEY` for that inbox), `pool_url` (proxied
/// through the pool), `invalid` (a key that does not open the inbox) or `missing`.
pub fn email_credential(
    world: &World,
    org_key: &str,
    variables: &BTreeMap<String, String>,
) -> Option<&'static str> {
    let inbox = variables.get("AGENTMAIL_INBOX_ID").filter(|v| !v.is_empty())?;
    if let Some(key) = variables.get("AGENTMAIL_API_KEY").filter(|v| !v.is_empty()) {
        return Some(world.agentmail_keys.scope_of(&world.agentmail, org_key, key, inbox).as_str());
    }
    if variables.get("POOL_URL").is_some_and(|v| !v.is_empty()) {
        return Some("pool_url");
    }
    Some("missing")
}

/// One service's runtime, pinned to the deployment the request reached.
struct RailwayHost {
    service_id: String,
    deployment_id: String,
    layout: Layout,
}

impl Host for RailwayHost {
    fn files<'w>(&self, world: &'w mut World) -> Option<&'w mut Fs> {
        let RailwayWorld { services, volumes, .. } = &mut world.railway;
        let svc = services.get_mut(&self.service_id)?;
        let current = svc.latest().is_some_and(|d| d.id == self.deployment_id && d.forced.is_none());
        if !current {
            return None;
        }
        match volumes.values_mut().find(|v| !v.orphaned && v.service_id == self.service_id) {
            Some(volume) => Some(&mut volume.fs),
            None => Some(&mut svc.ephemeral),
        }
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }
}

pub async fn root(
    state: State<App>,
    Path(domain): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, domain, String::new(), method, headers, body).await
}

pub async fn path(
    state: State<App>,
    Path((domain, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, domain, rest, method, headers, body).await
}

fn not_found() -> Response {
    respond::json(
        StatusCode::NOT_FOUND,
        json!({"status": "error", "code": 404, "message": "Application not found"}),
    )
}

fn not_ready() -> Response {
    respond::json(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}))
}

fn failed_to_respond() -> Response {
    respond::json(
        StatusCode::BAD_GATEWAY,
        json!({"status": "error", "code": 502, "message": "Application failed to respond"}),
    )
}

async fn handle(
    State(app): State<App>,
    domain: String,
    rest: String,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = admit(&app, "railway.runtime", None, true).await {
        return resp;
    }
    // Wake a sleeping deployment; the request then waits for the boot.
    let woke_wait = {
        let mut world = app.world();
        let boot = latency::scaled(world.config.gateway_boot_ms, world.config.speed);
        let Some(id) = world.railway.service_by_domain(&domain).map(|s| s.id.clone()) else {
            return not_found();
        };
        let svc = world.railway.services.get_mut(&id).expect("found by domain");
        match svc.latest_mut() {
            Some(d) if d.forced == Some(Forced::Sleeping) => {
                d.forced = None;
                d.woke = Some(std::time::Instant::now());
                Some(boot)
            }
            _ => None,
        }
    };
    if let Some(wait) = woke_wait
        && !wait.is_zero()
    {
        tokio::time::sleep(wait).await;
    }
    let (ready, host, key, runtime, email) = {
        let world = app.world();
        let speed = world.config.speed;
        let boot = latency::scaled(world.config.gateway_boot_ms, speed);
        let deploy = world.railway.deploy_time(speed);
        let Some(svc) = world.railway.service_by_domain(&domain) else {
            return not_found();
        };
        // Never deployed: nothing runs, like a deployment that is not up yet.
        let Some(d) = svc.latest() else {
            return if rest.trim_matches('/') == "pool/health" { not_ready() } else { failed_to_respond() };
        };
        // Started with the image's own command: the gateway alone, no pool server in front.
        if d.config.start_command.as_deref() != Some(POOL_SERVER_START_COMMAND) {
            return failed_to_respond();
        }
        let email = email_credential(&world, &app.0.start_config.agentmail_key, &d.config.variables);
        let runtime = d.config.variables.get("RUNTIME_TYPE").cloned().unwrap_or_else(|| "openclaw".into());
        let host = RailwayHost {
            service_id: svc.id.clone(),
            deployment_id: d.id.clone(),
            layout: world.railway.layout_of(&svc.id),
        };
        let key = d.config.variables.get("GATEWAY_TOKEN").filter(|k| !k.is_empty()).cloned();
        (d.runtime_ready(deploy, boot), host, key, runtime, email)
    };
    if rest.trim_matches('/') == "pool/health" {
        if let Some(problem @ ("missing" | "invalid")) = email {
            let error = format!(
                "email: AGENTMAIL_INBOX_ID is set but the credential is {problem} (need AGENTMAIL_API_KEY for the inbox or POOL_URL)"
            );
            return respond::json(StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false, "error": error}));
        }
        return if ready {
            respond::json(StatusCode::OK, json!({"ready": true, "version": "emulated", "runtime": runtime}))
        } else {
            not_ready()
        };
    }
    if !ready {
        return failed_to_respond();
    }
    let response =
        gateway::serve(&app, &host, Route::of(&rest), key.as_deref(), &method, &headers, &body).await;
    if response.status() == StatusCode::BAD_GATEWAY {
        // The deployment changed under the request (crash, redeploy): the edge's answer.
        return failed_to_respond();
    }
    response
}
