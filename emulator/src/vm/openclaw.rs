//! `node` and OpenClaw's CLI: the entry points a built OpenClaw tree has (convos-contracts §7:
//! "`openclaw.mjs` exists and imports `dist/entry.js`") and the gateway they start, which
//! listens on its port for the Sprite URL and a local `curl`.
//!
//! Options after `gateway run` are swallowed by the parent command, as by the real CLI
//! (convos-contracts §7 "CLI options"): `gateway run --port X` listens on the config's port.

use std::time::Duration;

use crate::fs;
use crate::latency;
use crate::shell::Ctx;
use crate::vm::processes::ProcGuard;
use crate::vm::{err, exists, on_path, out, path, write_file};

/// The newest Node.js major OpenClaw accepts no less than.
const MIN_NODE_MAJOR: u32 = 22;

/// `node [--version|-v] [-p|-e EXPR] [FILE ARGS…]`.
pub async fn node(ctx: &mut Ctx, args: &[String], version: &str) -> u8 {
    let Some(first) = args.first() else {
        err(ctx, "emulator: node: the interactive REPL is not simulated\n");
        return 1;
    };
    match first.as_str() {
        "--version" | "-v" => {
            out(ctx, format!("v{version}\n"));
            0
        }
        "-p" | "--print" | "-e" | "--eval" => eval(ctx, first, args.get(1).map(String::as_str), version),
        flag if flag.starts_with('-') => {
            err(ctx, format!("emulator: node: option {flag} is not simulated\n"));
            9
        }
        script => run_file(ctx, script, &args[1..], version).await,
    }
}

/// The few expressions install scripts evaluate; anything else fails rather than pretend.
fn eval(ctx: &Ctx, flag: &str, expr: Option<&str>, version: &str) -> u8 {
    let Some(expr) = expr else {
        err(ctx, format!("node: {flag} requires an argument\n"));
        return 9;
    };
    let major = version.split('.').next().unwrap_or("");
    let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect::<String>().replace('\'', "\"");
    let value = match compact.trim_end_matches(';') {
        "process.version" => format!("v{version}"),
        "process.versions.node" => version.to_string(),
        "process.versions.node.split(\".\")[0]" => major.to_string(),
        _ => {
            err(ctx, format!("emulator: node: cannot evaluate JavaScript: {expr}\n"));
            return 1;
        }
    };
    if flag == "-p" || flag == "--print" {
        out(ctx, format!("{value}\n"));
    }
    0
}

async fn run_file(ctx: &mut Ctx, script: &str, args: &[String], version: &str) -> u8 {
    let file = path(ctx, script);
    if !exists(ctx, &file) {
        err(
            ctx,
            format!(
                "node:internal/modules/cjs/loader\n  throw err;\n  ^\n\nError: Cannot find module '{file}'\n"
            ),
        );
        return 1;
    }
    let Some(root) = openclaw_root(&file) else {
        err(ctx, format!("emulator: node: only OpenClaw's entry points are simulated, not {file}\n"));
        return 1;
    };
    if fs::basename(&file) == "ui.js" {
        return match args.first().map(String::as_str) {
            Some("build") => build_control_ui(ctx, &root).await,
            _ => {
                err(ctx, "emulator: node scripts/ui.js: only `build` is simulated\n");
                1
            }
        };
    }
    let entry = format!("{root}/dist/entry.js");
    if !exists(ctx, &entry) {
        err(
            ctx,
            format!(
                "node:internal/modules/esm/resolve\nError [ERR_MODULE_NOT_FOUND]: Cannot find module '{entry}' imported from {file}\n"
            ),
        );
        return 1;
    }
    let major: u32 = version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
    if major < MIN_NODE_MAJOR {
        err(ctx, format!("openclaw: Node.js v{MIN_NODE_MAJOR}+ is required (current: v{version}).\n"));
        return 1;
    }
    cli(ctx, &root, args).await
}

/// The OpenClaw tree a script belongs to: `ROOT/openclaw.mjs`, `ROOT/dist/entry.js`,
/// `ROOT/dist/index.js` or `ROOT/scripts/ui.js`.
fn openclaw_root(file: &str) -> Option<String> {
    for suffix in ["/openclaw.mjs", "/dist/entry.js", "/dist/index.js", "/scripts/ui.js"] {
        if let Some(root) = file.strip_suffix(suffix) {
            return Some(if root.is_empty() { "/".into() } else { root.to_string() });
        }
    }
    None
}

/// The CLI behind `openclaw.mjs`: `gateway` (and `gateway run`) and `--version`.
async fn cli(ctx: &mut Ctx, root: &str, args: &[String]) -> u8 {
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            out(ctx, "2026.11.27\n");
            0
        }
        Some("gateway") => gateway(ctx, root, args).await,
        Some(other) => {
            err(ctx, format!("emulator: openclaw {other} is not simulated (only `gateway`)\n"));
            1
        }
        None => {
            err(ctx, "emulator: openclaw without a command is not simulated\n");
            1
        }
    }
}

/// The gateway process (`args` start with `gateway`): it takes its start-up time, then either
/// refuses the config as the real one does (`gateway::boot::boot_check`: exit 1 with its
/// message) or, after building the Control UI on a first start with pnpm on PATH, listens
/// where the flags or the config say until its process ends.
async fn gateway(ctx: &mut Ctx, root: &str, args: &[String]) -> u8 {
    let Some(proc) = ProcGuard::spawn(ctx, "openclaw-gateway", 310_000) else {
        return 1;
    };
    let (boot_ms, speed) = {
        let w = ctx.app.world();
        (w.config.gateway_boot_ms, w.config.speed)
    };
    latency::simulate(boot_ms, speed).await;
    let boot = match crate::vm::with_fs(ctx, |f| crate::gateway::boot::boot_check(f, args)) {
        Some(Ok(boot)) => boot,
        Some(Err(message)) => {
            err(ctx, format!("{message}\n"));
            return 1;
        }
        None => return 1,
    };
    if on_path(ctx, "pnpm") && !exists(ctx, &format!("{root}/dist/control-ui/index.html")) {
        // A first start with pnpm on PATH builds the Control UI before it listens (§7).
        let code = build_control_ui(ctx, root).await;
        if code != 0 {
            return code;
        }
    }
    let addr = if boot.bind == "lan" { "0.0.0.0" } else { "127.0.0.1" };
    let port = boot.port;
    // The pool key is read once, at start: a rotation needs a restart (as for the real one).
    let key = crate::vm::with_fs(ctx, |f| crate::gateway::read_pool_key(f)).flatten();
    match proc.listen(port, addr, key, root) {
        Ok(()) => {}
        Err(Some(pid)) => {
            err(
                ctx,
                format!(
                    "Gateway failed to start: another gateway instance is already listening on ws://{addr}:{port} (pid {pid})\n"
                ),
            );
            return 1;
        }
        Err(None) => return 1,
    }
    out(ctx, format!("[gateway] listening on ws://{addr}:{port} (PID {})\n", proc.pid));
    serve_forever(proc).await
}

/// A server runs until its process is ended (its task dropped, which drops the guard).
async fn serve_forever(_proc: ProcGuard) -> u8 {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// `node scripts/ui.js build` (also `pnpm ui:build`): the Control UI into `dist/control-ui`.
pub async fn build_control_ui(ctx: &Ctx, root: &str) -> u8 {
    if !exists(ctx, &format!("{root}/node_modules/.modules.yaml")) {
        err(ctx, "Error: Cannot find package 'vite' (run pnpm install first)\n");
        return 1;
    }
    // ~1.7 s on a real VM (convos-contracts §7 "Readiness").
    let speed = ctx.app.speed();
    latency::simulate(1_700, speed).await;
    let html = bytes::Bytes::from_static(b"<!doctype html><title>OpenClaw Control</title>\n");
    match write_file(ctx, &format!("{root}/dist/control-ui/index.html"), html, 0o644) {
        Ok(()) => {
            out(ctx, "✓ built control UI in dist/control-ui\n");
            0
        }
        Err(e) => {
            err(ctx, format!("ui build: {}\n", e.message()));
            1
        }
    }
}
