//! Log setup: JSON lines on Lambda (CloudWatch Logs Insights reads the fields, such as
//! `instance` and `step`), readable lines locally. `RUST_LOG` filters both; default `info`.

use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

pub fn init_json() {
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        // The innermost span carries the instance and step of a step run.
        .with_current_span(true)
        .with_span_list(false)
        .with_ansi(false)
        .with_env_filter(filter())
        .try_init();
}

pub fn init_readable() {
    let _ = tracing_subscriber::fmt().with_target(false).with_env_filter(filter()).try_init();
}
