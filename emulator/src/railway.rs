//! Placeholder: filled in by the railway emulation.

use axum::Router;

use crate::state::App;

#[derive(Debug, Default)]
pub struct RailwayWorld;

pub(crate) fn routes() -> Router<App> {
    Router::new()
}
