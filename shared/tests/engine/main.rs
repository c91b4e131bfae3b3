//! The pool engine against a real Postgres (a fresh database per test) and the emulator over
//! HTTP and WebSocket. One binary, so the suite links once.

mod harness;

mod agents_pages;
mod api;
mod audit;
mod breaker;
mod claim;
mod claim_dedupe;
mod claim_failover;
mod claim_lifetime;
mod drain;
mod durability;
mod eventbridge;
mod failed_claims;
mod heartbeat;
mod hibernation;
mod lambda_glue;
mod lifecycle;
mod pgbouncer;
mod pool_id;
mod railway;
mod reconcile;
mod resources;
mod retention;
mod rollout;
mod settings;
mod sizing;
mod ssm_secrets;
mod startup_errors;
mod webhooks;
