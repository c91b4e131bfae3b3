//! Integration tests: a real emulator on a random port, driven over HTTP and WebSocket.
//! One test binary keeps link time down on small machines.

mod checkpoints;
mod common;
mod control;
mod exec;
mod fs;
mod gateway;
mod installs;
mod lifecycle;
mod railway;
mod resources;
mod runtime;
mod services;
mod setup_recipes;
mod shell_syntax;
mod shell_tools;
mod sprites;
mod state_file;
