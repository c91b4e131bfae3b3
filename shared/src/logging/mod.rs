//! Log setup: JSON lines on Lambda (CloudWatch Logs Insights reads the fields, such as
//! `instance` and `step`), readable lines locally. `RUST_LOG` filters both; default `info`.
//!
//! No secret reaches a log line, at any level, from any crate (issue 14.4). Two guards, because
//! each alone leaves a gap:
//! 1. **Caps.** Crates that print raw requests at trace are held at debug whatever `RUST_LOG`
//!    says ([`CAPPED`]). The cap is a filter of its own beside `RUST_LOG`'s, so no directive
//!    (`RUST_LOG=trace`, `RUST_LOG=tungstenite=trace`) lifts it. This stops the leaks at their
//!    source, including the per-instance secrets no process knows in advance.
//! 2. **Redaction.** Every formatted line passes a writer that masks each value given to
//!    [`keep_out_of_logs`] (wiring gives it every secret of the configuration) and whatever
//!    follows `Bearer` or `Basic`. A crate not on the list, or a careless line of our own, still
//!    cannot print the configured keys.

mod redact;

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use redact::Redacting;
pub use redact::keep_out_of_logs;

/// Targets held at debug (a prefix covers a crate's modules). What each prints at trace:
const CAPPED: &[&str] = &[
    // The WebSocket client handshake, whole: the Sprites `Authorization: Bearer <token>`.
    "tungstenite",
    "tokio_tungstenite",
    // Wire-level HTTP: parsed messages, frames, a verbose connection's bytes.
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    // The raw invocation event: an API request's headers (the pool API key) and body.
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    // The AWS SDK's signed request, with the session token.
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sigv4",
    "aws_config",
    "aws_sdk_eventbridge",
];

/// What `RUST_LOG` asks for; `info` without it (or when it does not parse).
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// What every process logs without `RUST_LOG`: info, without the server's notices (a migration run that changes nothing makes Postgres say
/// "relation ... already exists, skipping", which sqlx logs at info).
pub const DEFAULT_FILTER: &str = "info,sqlx::postgres::notice=warn";

/// Everything at the level `filter` allows, except the [`CAPPED`] targets below debug, as a
/// filter of the whole subscriber, not of one layer. A per-layer filter (`with_filter`) hands
/// its verdict to the layer through a thread-local that an `enabled!` check with no event after
/// it leaves stale; sqlx makes one after every query, and the next line on that thread was
/// dropped (tokio-rs/tracing#2519, #2704). A global filter has no such state.
fn capped<S>(filter: EnvFilter) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let caps = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED.iter().map(|target| (*target, LevelFilter::DEBUG)));
    filter.and_then(caps)
}

/// JSON lines to `writer`, redacted, with `filter` and the caps applied to the whole
/// subscriber (one output per process; two layers in one subscriber share both filters).
pub fn json_layer<S, W>(filter: EnvFilter, writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        // The innermost span carries the instance and step of a step run.
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .with_writer(Redacting::new(writer));
    capped(filter).and_then(lines)
}

/// Readable lines to `writer`, redacted, with `filter` and the caps applied to the whole
/// subscriber.
pub fn readable_layer<S, W>(filter: EnvFilter, writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        // Colours for a person at a terminal; plain text into a file or a pipe.
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(Redacting::new(writer));
    capped(filter).and_then(lines)
}

/// The Lambda functions' logs: JSON lines on stdout.
pub fn init_json() {
    let _ = tracing_subscriber::registry().with(json_layer(env_filter(), std::io::stdout)).try_init();
}

/// The local processes' logs: readable lines on stdout.
pub fn init_readable() {
    let _ = tracing_subscriber::registry().with(readable_layer(env_filter(), std::io::stdout)).try_init();
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A directive naming a capped crate cannot lift the cap; other targets keep their level.
    #[test]
    fn no_directive_lifts_a_cap() {
        let lines = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let writer = move || SinkWriter(sink.clone());
        let filter = EnvFilter::new("trace,tungstenite=trace,lambda_runtime=trace");
        let subscriber = tracing_subscriber::registry().with(json_layer(filter, writer));
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "tungstenite::handshake::client", "Request: authorization-1");
            tracing::trace!(target: "lambda_runtime::layers::api_response", "raw event-2");
            tracing::debug!(target: "tungstenite::handshake::client", "Client handshake done.");
            tracing::trace!(target: "shared::engine", "our own trace line");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("authorization-1") && !text.contains("raw event-2"), "{text}");
        assert!(text.contains("Client handshake done.") && text.contains("our own trace line"), "{text}");
    }

    struct SinkWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
