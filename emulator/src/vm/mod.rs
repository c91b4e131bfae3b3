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

use bytes::Bytes;

use crate::fs::{self, Fs, FsError};
use crate::shell::Ctx;
use crate::state::Sprite;

pub use processes::VmState;

/// Programs of the base image, resolved to `/usr/bin/NAME` without a file: the shell
/// implements the coreutils among them, this module the rest.
const BASE_IMAGE: &[&str] = &[
    "apt", "apt-get", "basename", "bash", "cat", "chmod", "cp", "curl", "dirname", "dpkg", "echo", "env",
    "false", "find", "grep", "head", "ls", "mkdir", "mv", "printenv", "printf", "ps", "pwd", "rm", "sed",
    "sh", "sleep", "ss", "sudo", "tail", "tee", "test", "touch", "true", "which",
];

/// Shell builtins: `command -v` prints their bare name.
const BUILTINS: &[&str] =
    &[".", ":", "[", "cd", "command", "exec", "exit", "export", "set", "source", "unset", "type"];

/// Where `sprite-env` is on PATH in every Sprite.
pub const SPRITE_ENV: &str = "/usr/local/bin/sprite-env";

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

/// What a command name resolves to.
#[derive(Debug, Clone, PartialEq)]
enum Found {
    /// A program of the base image.
    Base(String),
    /// A simulated binary installed at `path`.
    Binary { path: String, tool: String, version: String },
    /// An executable text file (a script), run by the shell.
    Script(String),
}

impl Found {
    fn path(&self) -> String {
        match self {
            Found::Base(name) => format!("/usr/bin/{name}"),
            Found::Binary { path, .. } | Found::Script(path) => path.clone(),
        }
    }
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

/// Resolves a command name like bash does: a path as given, else the first `$PATH` match.
fn lookup(ctx: &Ctx, name: &str) -> Option<Found> {
    if name.contains('/') {
        return found_at(ctx, &path(ctx, name));
    }
    let dirs = ctx.env.get("PATH").cloned().unwrap_or_default();
    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{name}", dir.trim_end_matches('/'));
        if let Some(found) = found_at(ctx, &candidate) {
            return Some(found);
        }
    }
    None
}

fn found_at(ctx: &Ctx, p: &str) -> Option<Found> {
    let data = with_fs(ctx, |f| match f.get(p) {
        Some(n) if !n.is_dir() && n.mode() & 0o111 != 0 => f.read(p).ok(),
        _ => None,
    })
    .flatten();
    if let Some(data) = data {
        return Some(match read_binary(&data) {
            Some((tool, version)) => Found::Binary { path: p.to_string(), tool, version },
            None => Found::Script(p.to_string()),
        });
    }
    let (dir, name) = (fs::parent(p)?, fs::basename(p));
    if (dir == "/usr/bin" || dir == "/bin") && BASE_IMAGE.contains(&name) {
        return Some(Found::Base(name.to_string()));
    }
    (p == SPRITE_ENV).then(|| Found::Base("sprite-env".into()))
}

/// The hook the shell calls for a command it does not implement itself: Some(exit status)
/// when this module ran it (or knows it is not installed), None for a name it knows nothing of.
pub async fn dispatch(ctx: &mut Ctx, argv: &[String]) -> Option<u8> {
    let name = argv[0].as_str();
    let args = &argv[1..];
    if name == "command" {
        return Some(command(ctx, args).await);
    }
    let found = lookup(ctx, name);
    let tool = match &found {
        Some(Found::Base(n)) => n.clone(),
        Some(Found::Binary { tool, .. }) => tool.clone(),
        Some(Found::Script(p)) => {
            // An executable script: the kernel hands it to its interpreter (bash for ours).
            let mut full = vec!["bash".to_string(), p.clone()];
            full.extend_from_slice(args);
            return Some(crate::shell::run_command(ctx, full).await);
        }
        None if name.contains('/') => {
            err(ctx, format!("bash: {name}: No such file or directory\n"));
            return Some(127);
        }
        None if installs::KNOWN_TOOLS.contains(&name) || name == "sprite-env" => {
            err(ctx, format!("bash: {name}: command not found\n"));
            return Some(127);
        }
        None => return None,
    };
    let version = match &found {
        Some(Found::Binary { version, .. }) => version.clone(),
        _ => String::new(),
    };
    Some(match tool.as_str() {
        "which" => which(ctx, args),
        "ps" => processes::ps(ctx, args),
        "ss" => net_tools::ss(ctx, args),
        "curl" => net_tools::curl(ctx, args).await,
        "sprite-env" => sprite_env::main(ctx, args).await,
        "node" => openclaw::node(ctx, args, &version).await,
        _ => return installs::run(ctx, &tool, &version, args).await,
    })
}

/// `command -v|-V NAME…`, and `command CMD…`, which runs CMD.
async fn command(ctx: &mut Ctx, args: &[String]) -> u8 {
    let (verbose, names) = match args.first().map(String::as_str) {
        Some("-v") => (false, &args[1..]),
        Some("-V") => (true, &args[1..]),
        Some(a) if !a.starts_with('-') => return crate::shell::run_command(ctx, args.to_vec()).await,
        _ => {
            err(ctx, "emulator: command: only -v and -V are supported\n");
            return 2;
        }
    };
    let mut code = 0;
    for n in names {
        if BUILTINS.contains(&n.as_str()) {
            out(ctx, if verbose { format!("{n} is a shell builtin\n") } else { format!("{n}\n") });
            continue;
        }
        match lookup(ctx, n) {
            Some(f) if verbose => out(ctx, format!("{n} is {}\n", f.path())),
            Some(f) => out(ctx, format!("{}\n", f.path())),
            None => {
                if verbose {
                    err(ctx, format!("bash: command: {n}: not found\n"));
                }
                code = 1;
            }
        }
    }
    code
}

fn which(ctx: &mut Ctx, args: &[String]) -> u8 {
    let mut code = 0;
    for n in args.iter().filter(|a| !a.starts_with('-')) {
        match lookup(ctx, n) {
            Some(f) => out(ctx, format!("{}\n", f.path())),
            None => code = 1,
        }
    }
    code
}

/// Is `tool` on this context's PATH (an installed binary or the base image)?
pub(crate) fn on_path(ctx: &Ctx, tool: &str) -> bool {
    lookup(ctx, tool).is_some()
}

/// The directory `tool` was found in on PATH.
pub(crate) fn lookup_dir(ctx: &Ctx, tool: &str) -> Option<String> {
    fs::parent(&lookup(ctx, tool)?.path()).map(str::to_string)
}

/// What the Sprite URL reaches: the listener on the `http_port` service's port, else on 8080
/// (reference §5 "http_port and the URL"); None when nothing listens there.
pub fn url_target(sprite: &Sprite) -> Option<&processes::Listener> {
    let port = sprite.services.values().find_map(|s| s.def.http_port).unwrap_or(8080);
    sprite.vm.listener(port)
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
