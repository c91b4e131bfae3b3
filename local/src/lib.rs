//! The local side of the pool: every API route on one HTTP server, in front of the same
//! [`shared::api::Api`] the Lambda functions call.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use shared::api::{Api, BODY_LIMIT, Reply};
use shared::process::Process;

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve(
    process: Arc<Process>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(handle).with_state(process);
    // TCP_NODELAY on every accepted socket: an answer written in more than one piece must not wait
    // for the client's delayed ACK (up to 40 ms) between them.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY on an accepted socket: {e}");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn handle(State(process): State<Arc<Process>>, request: Request) -> Response {
    let api: &Api = &process.api;
    let (parts, body) = request.into_parts();
    // One byte over the limit is enough to know the body is too large.
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT + 1).await {
        Ok(bytes) if bytes.len() <= BODY_LIMIT => bytes,
        _ => return into_axum(Reply::too_large(BODY_LIMIT).into_response()),
    };
    into_axum(api.handle(None, http::Request::from_parts(parts, bytes)).await)
}

fn into_axum(response: http::Response<bytes::Bytes>) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::from(body)).into_response()
}

/// The address the main job listens on unless `PORT` says otherwise (the Node pool's port).
pub fn listen_addr() -> SocketAddr {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001);
    SocketAddr::from(([127, 0, 0, 1], port))
}
