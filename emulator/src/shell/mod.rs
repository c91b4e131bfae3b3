//! The commands exec runs on a Sprite: a bash interpreter over the Sprite's simulated
//! filesystem. Scripts are parsed by brush-parser (the parser of the bash-compatible brush
//! shell) and interpreted here; what the emulator cannot run — an unknown command, an
//! unimplemented option, syntax or builtin — fails loudly (127 or 2 with a message on stderr),
//! never silently "succeeds".
//!
//! Layers, each using only those before it: `io` (streams), `ctx` (shell state), `parse`,
//! `glob`, `expand`, `tools` (the commands on PATH), `setup`, `shells`, `builtins`,
//! `redirect`, `command` (simple commands), `interp` (everything else). Nested scripts reach
//! the interpreter through `ctx::Runner` instead of an import cycle.
//!
//! `check` (refusals before a script runs) sits just below `interp`.

mod builtins;
mod check;
mod command;
pub(crate) mod ctx;
mod expand;
mod glob;
mod interp;
mod io;
mod parse;
mod redirect;
mod setup;
mod shells;
pub mod tools;

// The interface exec.rs and the service runtime use; the rest of the state is reachable as
// `shell::ctx::…`, the command table as `shell::tools::…`.
pub use ctx::{Ctx, Flow, default_env};
pub use io::{Event, Input, Sink, StdinMsg};

/// Runs one argv (the exec `cmd` list) as the Sprite would: a builtin, a tool, or a file.
/// `exit N` at the top level just ends with N.
pub async fn run_command(ctx: &mut Ctx, argv: Vec<String>) -> u8 {
    ctx::install_runner(|| ctx::Runner { script: interp::run_script, argv: interp::run_argv });
    if ctx.shell.arg0.is_empty() {
        ctx.shell.arg0 = "bash".into();
    }
    if argv.is_empty() {
        return 0;
    }
    match interp::run_argv(ctx, argv).await {
        Ok(code) | Err(Flow::Exit(code) | Flow::Return(code)) => code,
        Err(Flow::Break(_) | Flow::Continue(_)) => 0,
    }
}
