//! The HTTP API (ARCHITECTURE §2): the route table on an axum router that the Lambda functions,
//! the local server and the tests all run ([`Api::router`]). It maps engine results to status
//! codes and JSON; it never touches SQL or a Sprite itself.

mod agents;
mod errors;
mod events;
mod handlers;
mod openapi;
mod reply;
mod router;
mod routes;
mod settings;
mod views;

use std::sync::Arc;

use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::engine::Engine;
use crate::lifecycle::Actor;
pub use reply::{Payload, Reply};
pub use router::ApiService;
pub use routes::Route;

/// The operator dashboard: a page and its script, both served from here (no outside host, no
/// key inside). The script is a file of its own so the page's CSP needs no 'unsafe-inline'.
const DASHBOARD: &str = include_str!("dashboard.html");
const DASHBOARD_SCRIPT: &str = include_str!("dashboard.js");

/// The largest request body accepted. Instructions may be 64 KiB; JSON escaping can grow them.
pub const BODY_LIMIT: usize = 256 * 1024;

#[derive(Clone)]
pub struct Api {
    engine: Arc<Engine>,
    api_key: SecretString,
    /// Who a change made with the key was made by, in the audit trail: `api:` and a short
    /// fingerprint of the key (which key, never the key).
    actor: Actor,
}

impl Api {
    pub fn new(engine: Arc<Engine>, api_key: SecretString) -> Self {
        let actor = Actor::api(&api_key);
        Api { engine, api_key, actor }
    }

    /// The API as a tower service. `only` is the route of the Lambda function serving it; the
    /// local server passes `None` and serves them all.
    pub fn router(&self, only: Option<Route>) -> ApiService {
        router::router(self.clone(), only)
    }

    /// Answers one request the router matched and admitted (key and body size checked).
    async fn answer(
        &self,
        route: Route,
        id: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let engine = &self.engine;
        let result = match route {
            Route::Dashboard => Ok(Reply::page(DASHBOARD)),
            Route::DashboardScript => Ok(Reply::script(DASHBOARD_SCRIPT)),
            Route::Healthz => Ok(handlers::healthz()),
            Route::Version => Ok(handlers::version(engine)),
            Route::OpenApi => Ok(openapi::openapi()),
            Route::Counts => handlers::counts(engine).await,
            Route::Agents => agents::agents(engine, query).await,
            Route::AgentQr => agents::agent_qr(engine, id).await,
            Route::Claim => handlers::claim(engine, headers, body, &self.actor).await,
            Route::ClaimStatus => handlers::claim_status(engine, id).await,
            Route::ClaimUpdate => handlers::claim_update(engine, id, body).await,
            Route::ClaimedIds => handlers::claimed_ids(engine).await,
            Route::Instance => handlers::instance(engine, id).await,
            Route::Recycle => handlers::recycle(engine, id, &self.actor).await,
            Route::Destroy => handlers::destroy(engine, id, &self.actor).await,
            Route::Replenish => handlers::replenish(engine, body, &self.actor).await,
            Route::Drain => handlers::drain(engine, body, &self.actor).await,
            Route::ReconcileNow => handlers::reconcile(engine, &self.actor).await,
            Route::Status => handlers::status(engine).await,
            Route::Debug => handlers::debug(engine, id).await,
            Route::Events => events::events(engine, query).await,
            Route::Settings => settings::show(engine).await,
            Route::SettingsChange => settings::change(engine, body, &self.actor).await,
            Route::Webhooks => handlers::webhooks(engine, query).await,
        };
        result.unwrap_or_else(|reply| reply)
    }

    /// `Authorization: Bearer <POOL_API_KEY>`, compared in constant time.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let expected = self.api_key.expose_secret().as_bytes();
        !expected.is_empty() && bool::from(given.trim().as_bytes().ct_eq(expected))
    }
}

/// This build: the crate version and the git commit it was built from.
pub fn build_version() -> (&'static str, &'static str) {
    (env!("CARGO_PKG_VERSION"), env!("POOL_BUILD_COMMIT"))
}
