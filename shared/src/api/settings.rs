//! `GET /api/pool/settings` and `PUT /api/pool/settings` (issue 15.1): the settings in force,
//! with their recent changes, and a change as a patch of named fields.

use http::StatusCode;
use serde_json::{Value, json};

use super::Reply;
use super::errors::Answer;
use crate::engine::{Engine, SettingsError};
use crate::lifecycle::{Actor, EventKind};

/// Recent changes shown with the settings.
const HISTORY: i64 = 20;

pub(super) async fn show(engine: &Engine) -> Answer {
    let stored = engine.pool_settings().await?;
    let history = engine.store().pool_events(Some(EventKind::Settings), HISTORY).await?;
    Ok(Reply::ok(json!({
        "settings": stored.settings,
        "revision": stored.revision,
        "updatedAt": stored.updated_at.format(&time::format_description::well_known::Rfc3339).ok(),
        "updatedBy": stored.updated_by,
        "history": history,
    })))
}

pub(super) async fn change(engine: &Engine, body: &[u8], actor: &Actor) -> Answer {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Reply::bad_request("body", "is required: a JSON object of settings fields"));
    }
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::bad_request("body", format!("not valid JSON: {e}")))?;
    let stored = engine.change_pool_settings(&patch, actor).await?;
    Ok(Reply::ok(json!({
        "settings": stored.settings,
        "revision": stored.revision,
        "updatedBy": stored.updated_by,
    })))
}

impl From<SettingsError> for Reply {
    fn from(err: SettingsError) -> Reply {
        match err {
            SettingsError::Invalid(invalid) => {
                let fields: serde_json::Map<String, Value> = invalid
                    .problems
                    .iter()
                    .map(|p| (p.field.clone(), Value::from(p.message.clone())))
                    .collect();
                let first = invalid.problems.first().map(|p| p.field.clone()).unwrap_or_default();
                Reply::with(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": invalid.to_string(), "field": first, "fields": fields }),
                )
            }
            SettingsError::Contended => Reply::error(StatusCode::CONFLICT, err.to_string()),
            SettingsError::Engine(err) => err.into(),
        }
    }
}
