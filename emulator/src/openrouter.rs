//! Placeholder: filled in by the openrouter emulation.

use axum::Router;

use crate::state::App;

#[derive(Debug, Default)]
pub struct OpenRouterWorld;

pub(crate) fn routes() -> Router<App> {
    Router::new()
}
