//! What runs inside a Sprite beyond the shell language: the programs an install puts on PATH
//! (`installs`), OpenClaw and its gateway (`openclaw`), the process and socket tables
//! (`processes`), the in-VM network tools (`net_tools`), service processes (`supervisor`) and
//! the `sprite-env` CLI (`sprite_env`).
//!
//! Programs exist only once something installed them: a simulated binary is a file on the
//! Sprite's filesystem (so checkpoints keep it and `rm` removes it), found through `$PATH` like
//! a real one. The base image (see [`BASE_IMAGE`]) is a bare Ubuntu with the tools every Sprite
//! has; git, node, pnpm and bun arrive only through their installers.

mod apt;
mod git;
mod installs;
mod net_tools;
mod openclaw;
pub mod processes;
mod repos;
mod sprite_env;
pub mod supervisor;
pub mod table;

use bytes::Bytes;

use crate::fs::{self, Fs, FsError};
use crate::shell::tools::{Tool, tool};
use crate::shell::{self, Ctx};

type BoxFut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The header of a simulated binary; the tool name and version follow it.
const BINARY_MAGIC: &[u8] = b"\x7fELF sprites-emulator simulated binary:";

/// A simulated binary's file content.
pub fn binary(tool: &str, version: &str) -> Bytes {
    let mut v = BINARY_MAGIC.to_vec();
    v.extend_from_slice(format!(" {tool} {version}\n").as_bytes());
    Bytes::from(v)
}

/// The (tool, version) a simulated binary file stands for.
fn read_binary(data: &[u8]) -> Option<(String, String)> {
    let rest = data.strip_prefix(BINARY_MAGIC)?;
    let line = std::str::from_utf8(rest).ok()?.lines().next()?.trim().to_string();
    let (tool, version) = line.split_once(' ').unwrap_or((line.as_str(), ""));
    Some((tool.to_string(), version.to_string()))
}

// ---- Ctx helpers (the shell keeps its own private; these use only its public fields) ----

pub(crate) fn out(ctx: &Ctx, s: impl Into<Bytes>) {
    ctx.stdout.write(s.into());
}

pub(crate) fn err(ctx: &Ctx, s: impl Into<String>) {
    ctx.stderr.write(Bytes::from(s.into()));
}

pub(crate) fn path(ctx: &Ctx, p: &str) -> String {
    fs::resolve(&ctx.cwd, p)
}

/// Runs `f` on this Sprite's files; None once the Sprite (this incarnation) is gone.
pub(crate) fn with_fs<T>(ctx: &Ctx, f: impl FnOnce(&mut Fs) -> T) -> Option<T> {
    let mut world = ctx.app.world();
    world.sprite_if(&ctx.sprite, &ctx.sprite_id).map(|s| f(&mut s.fs))
}

/// Writes a file (parents created); false (with a message) when that fails.
pub(crate) fn write_file(ctx: &Ctx, path: &str, data: Bytes, mode: u32) -> Result<(), FsError> {
    with_fs(ctx, |f| f.write(path, data, Some(mode), true))
        .unwrap_or_else(|| Err(FsError { code: "ENOENT", path: path.to_string() }))
}

pub(crate) fn exists(ctx: &Ctx, path: &str) -> bool {
    with_fs(ctx, |f| f.get(path).is_some()).unwrap_or(false)
}

pub(crate) fn is_dir(ctx: &Ctx, path: &str) -> bool {
    with_fs(ctx, |f| f.get(path).is_some_and(|n| n.is_dir())).unwrap_or(false)
}

pub(crate) fn read(ctx: &Ctx, path: &str) -> Option<Bytes> {
    with_fs(ctx, |f| f.read(path).ok()).flatten()
}

/// `setup_ms × speed × percent / 100`: the share of the configured install time one step takes.
pub(crate) async fn take_share(ctx: &Ctx, percent: u32) {
    let (setup_ms, speed) = {
        let w = ctx.app.world();
        (w.config.setup_ms, w.config.speed)
    };
    crate::latency::simulate(setup_ms * percent as u64 / 100, speed).await;
}

/// The first executable file called `tool` on `$PATH`, as bash would find it.
fn lookup(ctx: &Ctx, tool: &str) -> Option<String> {
    let dirs = ctx.var("PATH").unwrap_or_default().to_string();
    dirs.split(':').filter(|d| !d.is_empty()).map(|d| format!("{}/{tool}", d.trim_end_matches('/'))).find(
        |p| with_fs(ctx, |f| f.get(p).is_some_and(|n| !n.is_dir() && n.mode() & 0o111 != 0)).unwrap_or(false),
    )
}

/// Installs this layer into the shell: the base image's system commands it simulates, and
/// the runner for the programs installs put on PATH.
pub fn install() {
    shell::tools::install_extra(|| shell::tools::Extra { tools: base_tool, binary: run_binary });
}

/// The system commands every Sprite has that this layer simulates (the shell's own tools
/// are in `shell::tools`); the installed programs are files on PATH instead.
fn base_tool(name: &str) -> Option<(&'static str, Tool)> {
    Some(match name {
        "apt-get" | "apt" => ("/usr/bin", tool!(apt::apt_get)),
        "curl" => ("/usr/bin", tool!(net_tools::curl)),
        "ps" => ("/usr/bin", tool!(sync processes::ps)),
        "ss" => ("/usr/bin", tool!(sync net_tools::ss)),
        "sprite-env" => ("/usr/local/bin", tool!(sprite_env::main)),
        "which" => ("/usr/bin", tool!(sync which)),
        _ => return None,
    })
}

/// Runs the simulated program a file holds; None when the file is not one of ours.
fn run_binary<'a>(ctx: &'a mut Ctx, data: &'a [u8], argv: &'a [String]) -> Option<BoxFut<'a, u8>> {
    let (tool, version) = read_binary(data)?;
    Some(Box::pin(async move {
        let args = &argv[1..];
        match tool.as_str() {
            "node" => openclaw::node(ctx, args, &version).await,
            _ => installs::run(ctx, &tool, &version, args).await,
        }
    }))
}

/// `which NAME…`: the first match on PATH of each.
fn which(ctx: &mut Ctx, args: &[String]) -> u8 {
    let mut code = 0;
    for n in args.iter().filter(|a| !a.starts_with('-')) {
        match lookup(ctx, n).or_else(|| base_tool(n).map(|(dir, _)| format!("{dir}/{n}"))) {
            Some(p) => out(ctx, format!("{p}\n")),
            None => code = 1,
        }
    }
    code
}

/// Is `tool` an installed program on this context's PATH?
pub(crate) fn on_path(ctx: &Ctx, tool: &str) -> bool {
    lookup(ctx, tool).is_some()
}

/// The directory `tool` was found in on PATH.
pub(crate) fn lookup_dir(ctx: &Ctx, tool: &str) -> Option<String> {
    fs::parent(&lookup(ctx, tool)?).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_round_trip() {
        assert_eq!(read_binary(&binary("node", "22.12.0")), Some(("node".into(), "22.12.0".into())));
        assert_eq!(read_binary(b"#!/bin/bash\necho hi\n"), None);
    }
}
