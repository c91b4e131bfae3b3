//! AgentMail inbox-scoped API keys (`/v0/inboxes/{inbox_id}/api-keys`, AgentMail changelog
//! 2026-03-18): create (the secret is returned once), list (never the secret) and delete.
//! Minting needs the organisation key. A scoped key works for its inbox only, and only while
//! that inbox exists.
//!
//! The emulated Railway runtime asks [`InboxKeysWorld::scope_of`] what an instance's
//! `AGENTMAIL_API_KEY` is good for, so a test can tell a scoped key from the organisation's.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::admission::{admit, bearer_ok};
use crate::respond;
use crate::state::{App, World};

use crate::agentmail::state::InboxKey;

fn inbox_exists(world: &World, inbox_id: &str) -> bool {
    world.agentmail.has_inbox(inbox_id)
}

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/v0/inboxes/{inbox_id}/api-keys", get(list).post(create))
        .route("/v0/inboxes/{inbox_id}/api-keys/{api_key_id}", delete(remove))
}

fn not_found() -> Response {
    respond::json(
        StatusCode::NOT_FOUND,
        json!({"name": "NotFoundError", "code": "not_found", "message": "Inbox not found"}),
    )
}

async fn admitted(app: &App, route: &'static str, headers: &HeaderMap) -> Result<(), Response> {
    let authorized = bearer_ok(headers, &app.0.start_config.agentmail_key);
    admit(app, route, None, authorized).await.map(|_| ())
}

#[derive(Deserialize)]
struct CreateBody {
    name: String,
}

async fn create(
    State(app): State<App>,
    Path(inbox_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.apiKeys.create", &headers).await {
        return resp;
    }
    let req = match serde_json::from_slice::<CreateBody>(&body) {
        Ok(r) if !r.name.trim().is_empty() => r,
        _ => {
            return respond::json(
                StatusCode::BAD_REQUEST,
                json!({"name": "ValidationError", "code": "validation_error", "message": "name is required"}),
            );
        }
    };
    let mut world = app.world();
    if !inbox_exists(&world, &inbox_id) {
        return not_found();
    }
    let secret: String = format!("am_{}", uuid::Uuid::new_v4().simple());
    let key = InboxKey {
        api_key_id: uuid::Uuid::new_v4().to_string(),
        api_key: secret,
        name: req.name,
        inbox_id: inbox_id.to_ascii_lowercase(),
        created_at: OffsetDateTime::now_utc(),
    };
    let mut out = key.listed();
    out["api_key"] = json!(key.api_key);
    world.agentmail_keys.keys.insert(key.api_key_id.clone(), key);
    respond::json(StatusCode::OK, out)
}

async fn list(State(app): State<App>, Path(inbox_id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.apiKeys.list", &headers).await {
        return resp;
    }
    let world = app.world();
    if !inbox_exists(&world, &inbox_id) {
        return not_found();
    }
    let keys: Vec<Value> = world
        .agentmail_keys
        .keys
        .values()
        .filter(|k| k.inbox_id.eq_ignore_ascii_case(&inbox_id))
        .map(InboxKey::listed)
        .collect();
    respond::json(StatusCode::OK, json!({"count": keys.len(), "api_keys": keys}))
}

async fn remove(
    State(app): State<App>,
    Path((inbox_id, api_key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(resp) = admitted(&app, "agentmail.apiKeys.delete", &headers).await {
        return resp;
    }
    let mut world = app.world();
    let owned = world
        .agentmail_keys
        .keys
        .get(&api_key_id)
        .is_some_and(|k| k.inbox_id.eq_ignore_ascii_case(&inbox_id));
    if !owned {
        return respond::json(
            StatusCode::NOT_FOUND,
            json!({"name": "NotFoundError", "code": "not_found", "message": "API key not found"}),
        );
    }
    world.agentmail_keys.keys.remove(&api_key_id);
    StatusCode::NO_CONTENT.into_response()
}
