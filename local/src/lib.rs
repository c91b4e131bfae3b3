//! The local side of the pool: every API route on one HTTP server, the same router the Lambda
//! functions run ([`shared::api::Api::router`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::ServiceExt;
use axum::extract::Request;
use axum::serve::ListenerExt;
use shared::wiring::Process;

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve(
    process: Arc<Process>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = ServiceExt::<Request>::into_make_service(process.api.router(None));
    // TCP_NODELAY on every accepted socket: an answer written in more than one piece must not wait
    // for the client's delayed ACK (up to 40 ms) between them.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY on an accepted socket: {e}");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// The address the main job listens on unless `PORT` says otherwise (the Node pool's port).
pub fn listen_addr() -> SocketAddr {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001);
    SocketAddr::from(([127, 0, 0, 1], port))
}
