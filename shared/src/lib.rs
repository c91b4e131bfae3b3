//! The pool's library: everything the Lambda functions and the local main job run.
pub mod chain;
pub mod config;
pub mod engine;
pub mod gateway;
pub mod provider;
pub mod sprites;
pub mod store;
pub mod tls;
