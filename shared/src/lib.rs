//! The pool's library: everything the Lambda functions and the local main job run.
pub mod api;
pub mod backoff;
pub mod chain;
pub mod config;
pub mod engine;
pub mod gateway;
pub mod lambda;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod provider;
pub mod railway;
pub mod resources;
pub mod retry;
pub mod settings;
pub mod sizing;
pub mod sprites;
pub mod store;
pub mod sweep_loop;
pub mod tls;
pub mod webhook;
pub mod wiring;

/// What every client of an outside API (Sprites, Railway, OpenRouter, AgentMail) sends as
/// `User-Agent`, so the provider can tell the pool's traffic apart (and reach us about it).
pub const USER_AGENT: &str = concat!("convos-pool/", env!("CARGO_PKG_VERSION"));
