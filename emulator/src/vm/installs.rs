//! Installers simulated by what they do: `sudo`, `apt-get`, `npm`, `pnpm`, `corepack`, `git`
//! and the programs they install. Each step takes its share of `--setup-secs` (scaled by the
//! speed factor) and leaves the files later steps look for; repeating one is cheap where the
//! real tool is (an installed package, an up-to-date `node_modules`).

use bytes::Bytes;

use crate::shell::Ctx;
use crate::vm::repos::{lockfile, lockfile_digest, manifest_digest, manifests};
use crate::vm::{binary, err, exists, on_path, out, path, read, take_share, with_fs, write_file};

/// Runs an installed simulated program.
pub async fn run(ctx: &mut Ctx, tool: &str, version: &str, args: &[String]) -> u8 {
    match tool {
        "npm" => npm(ctx, version, args).await,
        "pnpm" => pnpm(ctx, version, args).await,
        "corepack" => corepack(ctx, args).await,
        "git" => crate::vm::git::git(ctx, version, args).await,
        _ => other(ctx, tool, version, args),
    }
}

/// A program that is installed but whose work is not simulated: its version, or an honest error.
fn other(ctx: &Ctx, tool: &str, version: &str, args: &[String]) -> u8 {
    match args.first().map(String::as_str) {
        Some("--version" | "-v" | "-V") => {
            out(ctx, format!("{version}\n"));
            0
        }
        _ => {
            err(ctx, format!("emulator: {tool} is installed, but running it is not simulated\n"));
            1
        }
    }
}

/// A node-based CLI needs `node` on PATH, as its `#!/usr/bin/env node` line does.
fn needs_node(ctx: &Ctx) -> bool {
    if on_path(ctx, "node") {
        return true;
    }
    err(ctx, "/usr/bin/env: 'node': No such file or directory\n");
    false
}

/// The directory to work in: `-C DIR` / `--dir DIR` / `--prefix DIR`, else the cwd.
fn split_dir(ctx: &Ctx, args: &[String]) -> (String, Vec<String>) {
    let mut dir = ctx.cwd.clone();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-C" | "--dir" | "--prefix" => {
                if let Some(d) = it.next() {
                    dir = path(ctx, d);
                }
            }
            _ => rest.push(a.clone()),
        }
    }
    (dir, rest)
}

async fn npm(ctx: &mut Ctx, version: &str, args: &[String]) -> u8 {
    if !needs_node(ctx) {
        return 127;
    }
    let (dir, args) = split_dir(ctx, args);
    let sub = args.first().map(String::as_str).unwrap_or("");
    let flags: Vec<&str> = args.iter().skip(1).filter(|a| a.starts_with('-')).map(String::as_str).collect();
    let pkgs: Vec<&str> = args.iter().skip(1).filter(|a| !a.starts_with('-')).map(String::as_str).collect();
    match sub {
        "-v" | "--version" => {
            out(ctx, format!("{version}\n"));
            0
        }
        "install" | "i" | "add" if flags.iter().any(|f| *f == "-g" || *f == "--global") => {
            let bin_dir = crate::vm::lookup_dir(ctx, "npm").unwrap_or_else(|| "/usr/bin".into());
            for pkg in &pkgs {
                let Some(installed) = global_package(pkg) else {
                    err(
                        ctx,
                        format!(
                            "npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/{pkg} (the emulator's registry has pnpm only)\n"
                        ),
                    );
                    return 1;
                };
                take_share(ctx, 5).await;
                let (name, v) = installed;
                if let Err(e) = write_file(ctx, &format!("{bin_dir}/{name}"), binary(name, v), 0o755) {
                    err(ctx, format!("npm error {}\n", e.message()));
                    return 243;
                }
            }
            out(ctx, format!("\nadded {} packages in 2s\n", pkgs.len()));
            0
        }
        "install" | "i" | "ci" => {
            let manifest = format!("{dir}/package.json");
            if !exists(ctx, &manifest) {
                err(
                    ctx,
                    format!(
                        "npm error code ENOENT\nnpm error syscall open\nnpm error path {manifest}\nnpm error enoent Could not read package.json\n"
                    ),
                );
                return 254;
            }
            take_share(ctx, 5).await;
            match write_file(
                ctx,
                &format!("{dir}/node_modules/.package-lock.json"),
                Bytes::from_static(b"{}\n"),
                0o644,
            ) {
                Ok(()) => {
                    out(ctx, "\nadded 212 packages, and audited 213 packages in 4s\n");
                    0
                }
                Err(e) => {
                    err(ctx, format!("npm error {}\n", e.message()));
                    1
                }
            }
        }
        _ => {
            err(
                ctx,
                format!("emulator: npm {sub} is not simulated (only install, install -g pnpm, --version)\n"),
            );
            1
        }
    }
}

/// `pnpm`, `pnpm@9`, `pnpm@latest` → the pnpm binary and its version.
fn global_package(spec: &str) -> Option<(&'static str, &'static str)> {
    let (name, wanted) = spec.split_once('@').unwrap_or((spec, "latest"));
    if name != "pnpm" {
        return None;
    }
    let version = match wanted.split('.').next().unwrap_or("") {
        "8" => "8.15.9",
        "9" => "9.15.9",
        "10" | "latest" => "10.20.0",
        _ => return None,
    };
    Some(("pnpm", version))
}

async fn corepack(ctx: &mut Ctx, args: &[String]) -> u8 {
    if !needs_node(ctx) {
        return 127;
    }
    match args.first().map(String::as_str) {
        Some("enable") => {
            let bin_dir = crate::vm::lookup_dir(ctx, "node").unwrap_or_else(|| "/usr/bin".into());
            let wanted: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            for tool in ["pnpm", "yarn"] {
                if wanted.is_empty() || wanted.contains(&tool) {
                    let v = if tool == "pnpm" { "9.15.9" } else { "1.22.22" };
                    if let Err(e) = write_file(ctx, &format!("{bin_dir}/{tool}"), binary(tool, v), 0o755) {
                        err(ctx, format!("Internal Error: {}\n", e.message()));
                        return 1;
                    }
                }
            }
            0
        }
        Some("--version" | "-v") => {
            out(ctx, "0.34.0\n");
            0
        }
        other => {
            err(ctx, format!("emulator: corepack {} is not simulated (only enable)\n", other.unwrap_or("")));
            1
        }
    }
}

async fn pnpm(ctx: &mut Ctx, version: &str, args: &[String]) -> u8 {
    if !needs_node(ctx) {
        return 127;
    }
    let (dir, args) = split_dir(ctx, args);
    let mut sub = args.first().cloned().unwrap_or_default();
    if sub == "run" {
        sub = args.get(1).cloned().unwrap_or_default();
    }
    let flags: Vec<&str> = args.iter().filter(|a| a.starts_with("--")).map(String::as_str).collect();
    match sub.as_str() {
        "-v" | "--version" => {
            out(ctx, format!("{version}\n"));
            0
        }
        "install" | "i" => {
            pnpm_install(
                ctx,
                &dir,
                !flags.contains(&"--no-frozen-lockfile") && flags.contains(&"--frozen-lockfile"),
            )
            .await
        }
        "build" => pnpm_build(ctx, &dir).await,
        "ui:build" => {
            if !is_openclaw(ctx, &dir) {
                return missing_script(ctx, &dir, "ui:build");
            }
            crate::vm::openclaw::build_control_ui(ctx, &dir).await
        }
        "ui:install" => {
            if !is_openclaw(ctx, &dir) {
                return missing_script(ctx, &dir, "ui:install");
            }
            take_share(ctx, 3).await;
            touch_file(ctx, &format!("{dir}/ui/node_modules/.modules.yaml"))
        }
        other => {
            err(
                ctx,
                format!(
                    "emulator: pnpm {other} is not simulated (only install, build, ui:build, ui:install)\n"
                ),
            );
            1
        }
    }
}

fn touch_file(ctx: &Ctx, p: &str) -> u8 {
    match write_file(ctx, p, Bytes::from_static(b"layoutVersion: 5\n"), 0o644) {
        Ok(()) => 0,
        Err(e) => {
            err(ctx, format!("{}\n", e.message()));
            1
        }
    }
}

fn is_openclaw(ctx: &Ctx, dir: &str) -> bool {
    let Some(data) = read(ctx, &format!("{dir}/package.json")) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&data).is_ok_and(|v| v["name"] == "openclaw")
}

fn missing_script(ctx: &Ctx, dir: &str, script: &str) -> u8 {
    if exists(ctx, &format!("{dir}/package.json")) {
        err(ctx, format!(" ERR_PNPM_NO_SCRIPT  Missing script: {script}\n"));
    } else {
        err(ctx, format!(" ERR_PNPM_NO_IMPORTER_MANIFEST_FOUND  No package.json was found in \"{dir}\".\n"));
    }
    1
}

async fn pnpm_install(ctx: &Ctx, dir: &str, frozen: bool) -> u8 {
    if !exists(ctx, &format!("{dir}/package.json")) {
        err(
            ctx,
            format!(
                " ERR_PNPM_NO_IMPORTER_MANIFEST_FOUND  No package.json (or package.yaml, or package.json5) was found in \"{dir}\".\n"
            ),
        );
        return 1;
    }
    let lock_path = format!("{dir}/pnpm-lock.yaml");
    let current = with_fs(ctx, |f| manifest_digest(&manifests(f, dir))).unwrap_or_default();
    let locked =
        read(ctx, &lock_path).map(|l| lockfile_digest(&String::from_utf8_lossy(&l)).map(str::to_string));
    match (&locked, frozen) {
        (None, true) => {
            err(
                ctx,
                " ERR_PNPM_NO_LOCKFILE  Cannot install with \"frozen-lockfile\" because pnpm-lock.yaml is absent\n",
            );
            return 1;
        }
        (Some(Some(d)), true) if *d != current => {
            err(
                ctx,
                " ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\" because pnpm-lock.yaml is not up to date with the package.json files of the workspace\n",
            );
            return 1;
        }
        _ => {}
    }
    let modules = format!("{dir}/node_modules/.modules.yaml");
    let up_to_date =
        exists(ctx, &modules) && locked.as_ref().and_then(|l| l.as_deref()) == Some(current.as_str());
    if up_to_date {
        take_share(ctx, 2).await;
        out(ctx, "Lockfile is up to date, resolution step is skipped\nAlready up to date\n");
        return 0;
    }
    take_share(ctx, 35).await;
    if !frozen && let Err(e) = write_file(ctx, &lock_path, Bytes::from(lockfile(&current)), 0o644) {
        err(ctx, format!("{}\n", e.message()));
        return 1;
    }
    out(
        ctx,
        "Packages: +1187\nProgress: resolved 1187, reused 0, downloaded 1187, added 1187, done\nDone in 21s\n",
    );
    touch_file(ctx, &modules)
}

async fn pnpm_build(ctx: &Ctx, dir: &str) -> u8 {
    if !is_openclaw(ctx, dir) {
        return missing_script(ctx, dir, "build");
    }
    if !exists(ctx, &format!("{dir}/node_modules/.modules.yaml")) {
        err(
            ctx,
            "sh: 1: tsdown: not found\n ELIFECYCLE  Command failed.\n WARN   Local package.json exists, but node_modules missing, did you mean to install?\n",
        );
        return 1;
    }
    take_share(ctx, 17).await;
    for (file, text) in [
        ("dist/entry.js", "export * from \"./index.js\";\n"),
        ("dist/index.js", "// OpenClaw CLI (simulated)\n"),
    ] {
        if let Err(e) = write_file(ctx, &format!("{dir}/{file}"), Bytes::from_static(text.as_bytes()), 0o644)
        {
            err(ctx, format!("{}\n", e.message()));
            return 1;
        }
    }
    out(ctx, "✔ Build complete in 14s\n");
    0
}
