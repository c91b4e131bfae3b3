//! A log line right after an "is this enabled?" check that said no is still written
//! (tokio-rs/tracing#2519): crates ask it with metadata of their own (the `log` crate through
//! the LogTracer, sqlx after every query). With the filter on the layer, the next line on that
//! thread was dropped (this test failed before the fix); the logging setup now filters the
//! whole subscriber. Its own binary: it needs the process-wide subscriber, as in production.

mod log_capture;

use log_capture::Capture;
use shared::logging::{DEFAULT_FILTER, readable_layer};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[test]
fn a_line_after_a_refused_enabled_check_is_written() {
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(readable_layer(EnvFilter::new(DEFAULT_FILTER), capture.writer()))
        .init();
    for n in 0..5 {
        tracing::info!(target: "shared::engine", "before {n}");
        // Through the `log` crate, as crates that log with it ask (the LogTracer `init`
        // installs turns it into a dispatcher `enabled` call with metadata of its own).
        // `sqlx::postgres::notice` is held at warn by the default filter.
        assert!(!log::log_enabled!(target: "sqlx::postgres::notice", log::Level::Info));
        assert!(!tracing::enabled!(target: "sqlx::query", tracing::Level::DEBUG));
        tracing::info!(target: "shared::engine", "after {n}");
    }
    let text = capture.text();
    for n in 0..5 {
        assert!(text.contains(&format!("before {n}")), "{text}");
        assert!(text.contains(&format!("after {n}")), "line after the check missing:\n{text}");
    }
}
