//! `node` and OpenClaw's CLI: the entry points a built OpenClaw tree has (convos-contracts §7:
//! "`openclaw.mjs` exists and imports `dist/entry.js`") and the gateway they start, which
//! listens on its port for the Sprite URL and a local `curl`.
//!
//! Options after `gateway run` are swallowed by the parent command, as by the real CLI
//! (convos-contracts §7 "CLI options"): `gateway run --port X` listens on the config's port.

use std::time::Duration;

use serde_json::Value;

use crate::fs;
use crate::latency;
use crate::shell::Ctx;
use crate::vm::processes::ProcGuard;
use crate::vm::{err, exists, home, on_path, out, path, read, write_file};

/// The gateway's port when neither `--port` nor `gateway.port` says one.
const DEFAULT_PORT: u16 = 18789;
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
        Some("gateway") => {
            // `gateway run …`: the parent command has already taken the options, so `run`
            // sees none of the ones after it.
            let (opts, swallowed) = match args.get(1).map(String::as_str) {
                Some("run") => (&args[2..], true),
                _ => (&args[1..], false),
            };
            gateway(ctx, root, opts, swallowed).await
        }
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

struct GatewayOpts {
    port: Option<u16>,
    bind: Option<String>,
    allow_unconfigured: bool,
}

fn parse_opts(opts: &[String]) -> Result<GatewayOpts, String> {
    let mut o = GatewayOpts { port: None, bind: None, allow_unconfigured: false };
    let mut it = opts.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next().cloned());
        match flag {
            "--port" => {
                let v = value().ok_or("error: option '--port <port>' argument missing")?;
                o.port = Some(v.parse().map_err(|_| format!("error: invalid port: {v}"))?);
            }
            "--bind" => {
                let v = value().ok_or("error: option '--bind <mode>' argument missing")?;
                if !["lan", "loopback", "auto", "tailnet", "custom"].contains(&v.as_str()) {
                    return Err(format!("error: invalid --bind: {v}"));
                }
                o.bind = Some(v);
            }
            "--allow-unconfigured" => o.allow_unconfigured = true,
            other => return Err(format!("error: unknown option '{other}'")),
        }
    }
    Ok(o)
}

/// The gateway process: checks its config, builds the Control UI on a first start when pnpm
/// is on PATH, binds after its boot time, then serves until its process ends.
async fn gateway(ctx: &mut Ctx, root: &str, opts: &[String], swallowed: bool) -> u8 {
    let parsed = match parse_opts(opts) {
        Ok(o) => o,
        Err(e) => {
            err(ctx, format!("{e}\n"));
            return 1;
        }
    };
    // What `gateway run` swallowed does not reach the gateway at all.
    let o =
        if swallowed { GatewayOpts { port: None, bind: None, allow_unconfigured: false } } else { parsed };
    let config_path = format!("{}/.openclaw/openclaw.json", home(ctx));
    let config: Value = match read(ctx, &config_path) {
        Some(data) => match serde_json::from_slice(&data) {
            Ok(v) => v,
            Err(e) => {
                err(ctx, format!("Invalid config at {config_path}: {e}\n"));
                return 1;
            }
        },
        None => Value::Object(Default::default()),
    };
    let _ = o.allow_unconfigured; // read by the config check (convos-contracts §7 "Start").
    let port = o.port.or_else(|| config["gateway"]["port"].as_u64().and_then(|p| u16::try_from(p).ok()));
    let port = port.unwrap_or(DEFAULT_PORT);
    let bind = o.bind.or_else(|| config["gateway"]["bind"].as_str().map(str::to_string));
    let addr = if bind.as_deref() == Some("lan") { "0.0.0.0" } else { "127.0.0.1" };

    let Some(proc) = ProcGuard::spawn(ctx, "openclaw-gateway", 310_000) else {
        return 1;
    };
    let (boot_ms, speed) = {
        let w = ctx.app.world();
        (w.config.gateway_boot_ms, w.config.speed)
    };
    if on_path(ctx, "pnpm") && !exists(ctx, &format!("{root}/dist/control-ui/index.html")) {
        // A first start with pnpm on PATH builds the Control UI before it listens.
        let code = build_control_ui(ctx, root).await;
        if code != 0 {
            return code;
        }
    }
    latency::simulate(boot_ms, speed).await;
    // The pool key is read once, at start: a rotation needs a restart (as for the real one).
    let key = crate::vm::with_fs(ctx, |f| crate::gateway::read_pool_key(f)).flatten();
    match proc.listen(port, addr, key) {
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
