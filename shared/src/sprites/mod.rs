//! Client for the Fly.io Sprites API (`shared/reference/sprites-api.md`): sprites, exec over
//! WebSocket, filesystem, services and checkpoints.
//!
//! Every call goes through [`SpritesClient::call`], which sends, classifies failures into
//! [`SpritesError`], retries what may safely be repeated, and records one tracing span with
//! the sprite, operation, status and duration. The token lives only in a sensitive header
//! value and never reaches a log line, an error or `Debug` output.

mod checkpoints;
mod error;
mod exec;
mod fs;
mod management;
mod ndjson;
mod retry;
mod services;
mod types;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

pub use error::SpritesError;
pub use exec::ExecRequest;
pub use fs::WriteFile;
pub use retry::RetryPolicy;
pub use types::*;

use error::{ConflictMeaning, classify};
use retry::Retry;

/// The public API; `SPRITES_API_URL` overrides it (the emulator locally).
pub const DEFAULT_API_URL: &str = "https://api.sprites.dev";

/// How the client is set up. Timeouts follow the official SDKs (§1.4 of the reference).
#[derive(Clone)]
pub struct SpritesConfig {
    pub base_url: Url,
    pub token: SecretString,
    pub retry: RetryPolicy,
    /// Most bytes kept per output stream of one exec; the rest is drained and dropped.
    pub exec_output_cap: usize,
    pub request_timeout: Duration,
    pub create_timeout: Duration,
    /// Checkpoint, restore and service streams.
    pub stream_timeout: Duration,
    pub ws_handshake_timeout: Duration,
}

impl SpritesConfig {
    pub fn new(base_url: Url, token: SecretString) -> Self {
        SpritesConfig {
            base_url,
            token,
            retry: RetryPolicy::default(),
            exec_output_cap: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(120),
            stream_timeout: Duration::from_secs(300),
            ws_handshake_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for SpritesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpritesConfig")
            .field("base_url", &self.base_url.as_str())
            .field("token", &"[redacted]")
            .field("retry", &self.retry)
            .field("exec_output_cap", &self.exec_output_cap)
            .finish_non_exhaustive()
    }
}

/// A cheap-to-clone handle; build one per process and share it.
#[derive(Clone)]
pub struct SpritesClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: SpritesConfig,
    http: reqwest::Client,
    ws_tls: Arc<rustls::ClientConfig>,
    auth: HeaderValue,
}

impl std::fmt::Debug for SpritesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpritesClient").field("config", &self.inner.config).finish()
    }
}

/// What one call is, for retries, error meaning and tracing.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub operation: &'static str,
    pub sprite: Option<&'a str>,
    pub retry: Retry,
    pub conflict: ConflictMeaning,
    pub timeout: Duration,
}

/// A successful (2xx) answer, body read in full.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, SpritesError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| SpritesError::Protocol(format!("undecodable body (status {}): {e}", self.status)))
    }
}

impl SpritesClient {
    pub fn new(config: SpritesConfig) -> Result<Self, SpritesError> {
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", config.token.expose_secret())).map_err(|_| {
                SpritesError::Protocol("the Sprites token contains characters not allowed in a header".into())
            })?;
        auth.set_sensitive(true);
        let tls_error = |e: rustls::Error| SpritesError::Transport(format!("TLS setup failed: {e}"));
        let ws_tls = crate::tls::client_config(&[]).map_err(tls_error)?;
        let http = crate::tls::http_client_builder()
            .map_err(tls_error)?
            .user_agent(crate::USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| SpritesError::Transport(format!("HTTP client setup failed: {e}")))?;
        Ok(SpritesClient { inner: Arc::new(Inner { config, http, ws_tls: Arc::new(ws_tls), auth }) })
    }

    pub fn config(&self) -> &SpritesConfig {
        &self.inner.config
    }

    /// `{base}/v1/<segments…>`, each segment percent-encoded.
    pub(crate) fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.config.base_url.clone();
        url.path_segments_mut()
            .expect("the Sprites base URL is an http(s) URL")
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        url
    }

    pub(crate) fn sprite_url(&self, sprite: &str, rest: &[&str]) -> Url {
        let mut segments = vec!["sprites", sprite];
        segments.extend_from_slice(rest);
        self.api_url(&segments)
    }

    pub(crate) fn call_for<'a>(&self, operation: &'static str, sprite: Option<&'a str>) -> Call<'a> {
        Call {
            operation,
            sprite,
            retry: Retry::Idempotent,
            conflict: ConflictMeaning::StateConflict,
            timeout: self.inner.config.request_timeout,
        }
    }

    /// Sends the request `build` makes (once per attempt), retrying as `call.retry` allows.
    pub(crate) async fn call(
        &self,
        call: Call<'_>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, SpritesError> {
        let span = tracing::info_span!(
            "sprites",
            operation = call.operation,
            sprite = call.sprite.unwrap_or(""),
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = Instant::now();
        async {
            let policy = &self.inner.config.retry;
            let (outcome, attempts) = crate::retry::run(
                policy,
                |_| self.attempt(&call, &build),
                |err, _| retry::verdict(call.retry, err),
            )
            .await;
            let span = tracing::Span::current();
            span.record("attempts", attempts);
            span.record("duration_ms", started.elapsed().as_millis() as u64);
            match &outcome {
                Ok(_) => tracing::debug!("sprites call succeeded"),
                Err(err) if err.is_not_found() => tracing::debug!(error = %err, "sprites call found nothing"),
                Err(err) => tracing::warn!(error = %err, "sprites call failed"),
            }
            outcome
        }
        .instrument(span)
        .await
    }

    /// One request. The status the server sent (0: no HTTP answer) goes into the call's span,
    /// kept apart from the error because several statuses classify alike.
    async fn attempt(
        &self,
        call: &Call<'_>,
        build: &impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Reply, SpritesError> {
        let span = tracing::Span::current();
        span.record("status", 0);
        let request = build(&self.inner.http)
            .header(header::AUTHORIZATION, self.inner.auth.clone())
            .timeout(call.timeout);
        let response = request.send().await.map_err(|e| SpritesError::transport(e.without_url()))?;
        let status = response.status();
        span.record("status", status.as_u16());
        let retry_after =
            response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match response.bytes().await {
            Err(e) => Err(SpritesError::transport(e.without_url())),
            Ok(body) if status.is_success() => Ok(Reply { status, body }),
            Ok(body) => Err(classify(status.as_u16(), &body, retry_after.as_deref(), call.conflict)),
        }
    }
}

/// Deleting what is already gone succeeds: `Ok(true)` when it was removed, `Ok(false)` when
/// `absent` says the failure only meant it was not there.
pub(crate) fn removed(
    result: Result<Reply, SpritesError>,
    absent: impl Fn(&SpritesError) -> bool,
) -> Result<bool, SpritesError> {
    match result {
        Ok(_) => Ok(true),
        Err(err) if absent(&err) => Ok(false),
        Err(err) => Err(err),
    }
}
