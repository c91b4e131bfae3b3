//! The HTTP API as plain functions of a request (ARCHITECTURE §2): the Lambda functions, the
//! local server and the tests all call [`Api::handle`]. It maps engine results to status codes
//! and JSON; it never touches SQL or a Sprite itself.

mod handlers;
mod reply;
mod routes;
mod views;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::engine::Engine;
pub use reply::{Payload, Reply};
pub use routes::{Miss, Route, resolve};

/// The operator dashboard: one self-contained page (no outside host, no key inside).
const DASHBOARD: &str = include_str!("dashboard.html");

/// The largest request body accepted. Instructions may be 64 KiB; JSON escaping can grow them.
pub const BODY_LIMIT: usize = 256 * 1024;

pub struct Api {
    engine: Arc<Engine>,
    api_key: SecretString,
}

impl Api {
    pub fn new(engine: Arc<Engine>, api_key: SecretString) -> Self {
        Api { engine, api_key }
    }

    /// Answers one request. `only` is the route of the Lambda function serving it: anything
    /// else that reaches that function is a 404, so a mis-wired API Gateway route cannot run
    /// another route's code.
    pub async fn handle(&self, only: Option<Route>, request: Request<Bytes>) -> Response<Bytes> {
        self.reply(only, request).await.into_response()
    }

    async fn reply(&self, only: Option<Route>, request: Request<Bytes>) -> Reply {
        let (route, param) = match resolve(request.method(), request.uri().path()) {
            Ok(found) => found,
            Err(Miss::NotFound) => return Reply::not_found("route"),
            Err(Miss::MethodNotAllowed(allowed)) => return Reply::method_not_allowed(&allowed),
        };
        if only.is_some_and(|served| served != route) {
            return Reply::not_found("route");
        }
        if route.needs_key() && !self.authorized(request.headers()) {
            return Reply::unauthorized();
        }
        if request.body().len() > BODY_LIMIT {
            return Reply::too_large(BODY_LIMIT);
        }
        let id = param.unwrap_or_default();
        let body = request.body();
        match route {
            Route::Dashboard => Reply::page(DASHBOARD),
            Route::Healthz => handlers::healthz(),
            Route::Version => handlers::version(&self.engine),
            Route::Counts => handlers::counts(&self.engine).await,
            Route::Agents => handlers::agents(&self.engine).await,
            Route::Claim => handlers::claim(&self.engine, body).await,
            Route::ClaimStatus => handlers::claim_status(&self.engine, &id).await,
            Route::ClaimedIds => handlers::claimed_ids(&self.engine).await,
            Route::Instance => handlers::instance(&self.engine, &id).await,
            Route::Recycle => handlers::recycle(&self.engine, &id).await,
            Route::Destroy => handlers::destroy(&self.engine, &id).await,
            Route::Replenish => handlers::replenish(&self.engine, body).await,
            Route::Drain => handlers::drain(&self.engine, body).await,
            Route::ReconcileNow => handlers::reconcile(&self.engine).await,
            Route::Status => handlers::status(&self.engine).await,
            Route::Debug => handlers::debug(&self.engine, &id).await,
            Route::Events => handlers::events(&self.engine, request.uri().query()).await,
        }
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
