//! Placeholder: filled in by the agentmail emulation.

use axum::Router;

use crate::state::App;

#[derive(Debug, Default)]
pub struct AgentMailWorld;

pub(crate) fn routes() -> Router<App> {
    Router::new()
}
