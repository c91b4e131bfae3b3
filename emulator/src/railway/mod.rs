//! The Railway emulation (convos-contracts §3 and §2.2): the public GraphQL API at
//! `POST /graphql/v2` for one fixed project and environment, deployments that move through
//! Railway's statuses, and the Gen 2 runtime (pool server + OpenClaw gateway) behind each
//! service domain at `/_railway/{domain}/…`. Control routes live under `/_emulator/railway/`.

mod api;
mod control;
mod graphql;
mod runtime;
mod shapes;
pub mod state;

use axum::Router;
use axum::routing::{any, get, post, put};

use crate::state::App;

pub use state::*;

pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/graphql/v2", post(api::graphql))
        .route("/_railway/{domain}", any(runtime::root))
        .route("/_railway/{domain}/", any(runtime::root))
        .route("/_railway/{domain}/{*rest}", any(runtime::path))
        .route("/_emulator/railway/state", get(control::state))
        .route("/_emulator/railway/config", put(control::config_put).get(control::config_get))
        .route("/_emulator/railway/fail-next", post(control::fail_next))
        .route("/_emulator/railway/lose-answer", post(control::lose_answer))
        .route("/_emulator/railway/services/{service}/crash", post(control::crash))
        .route("/_emulator/railway/services/{service}/sleep", post(control::sleep))
}
