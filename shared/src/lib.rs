//! The pool's library: everything the Lambda functions and the local main job run.
pub mod config;
pub mod gateway;
pub mod sprites;
pub mod tls;
