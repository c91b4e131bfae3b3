//! The local side of the pool: every API route on one HTTP server, the same router the Lambda
//! functions run ([`shared::api::Api::router`]). The connections are hyper's, driven here rather
//! than by `axum::serve` so a client gets a bounded time to send its headers: a slowloris cannot
//! hold thousands of sockets open (issue 14). The router bounds the time to send the body.

pub mod job;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use shared::api::ApiService;
use shared::wiring::Process;

/// How long a client may take to send a request's headers before its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in flight get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    process: Arc<Process>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(process.api.router(None), listener, HEADER_READ_TIMEOUT, shutdown).await
}

/// [`serve`] with a header timeout of the caller's (tests shorten it).
pub async fn serve_with(
    service: ApiService,
    listener: tokio::net::TcpListener,
    header_read: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                // Out of file descriptors and the like: wait a moment instead of spinning.
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // TCP_NODELAY: an answer written in more than one piece must not wait for the client's
        // delayed ACK (up to 40 ms) between them.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY on an accepted socket: {err}");
        }
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read)
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still running after {} s of shutdown; stopping anyway", DRAIN.as_secs());
    }
    Ok(())
}

/// The address the main job listens on unless `PORT` says otherwise (the Node pool's port).
pub fn listen_addr() -> SocketAddr {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3001);
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use super::*;

    /// A process whose routes answer without a database (healthz) and that connects to nothing.
    fn router() -> ApiService {
        let vars = [
            ("POOL_API_KEY", "k-0123456789"),
            ("DATABASE_URL", "postgres://unused/db"),
            ("SPRITE_TOKEN", "t"),
        ];
        let config = shared::config::Config::from_lookup(|name| {
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        })
        .unwrap();
        shared::wiring::Wiring::new(config).build().unwrap().api.router(None)
    }

    /// Issue 14 (low): a client that never finishes its headers loses its connection.
    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let header_read = Duration::from_millis(300);
        tokio::spawn(serve_with(router(), listener, header_read, std::future::pending()));

        let mut whole = tokio::net::TcpStream::connect(addr).await.unwrap();
        whole.write_all(b"GET /healthz HTTP/1.1\r\nHost: pool\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        whole.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: pool\r\n").await.unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the server kept the half-sent request open");
        let took = started.elapsed();
        assert!(took >= header_read / 2 && took < Duration::from_secs(3), "closed after {took:?}");
        assert!(!String::from_utf8_lossy(&rest).contains(" 200 "), "no answer to half a request");
    }

    /// A body that never arrives is answered 408 once the body timeout is over.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_arrives_is_a_408() {
        let never = futures_util::stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        let request = http::Request::get("/healthz").body(axum::body::Body::from_stream(never)).unwrap();
        let answer = router().oneshot(request).await.unwrap();
        assert_eq!(answer.status(), http::StatusCode::REQUEST_TIMEOUT);
    }
}
