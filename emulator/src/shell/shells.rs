//! Commands that start a new shell or run another command: `bash`/`sh`, `source`/`.`,
//! executable script files, `env`, `sudo`; and `read`, which reads the shell's own input.

use std::collections::BTreeMap;

use super::ctx::{Ctx, Flow, Opts, Shell, Status, assignment};
use super::io::Input;
use super::setup;
use super::tools::args;

/// Runs `script` as a new bash process would: exported variables and the directory are
/// inherited, nothing it changes comes back.
pub async fn new_shell(ctx: &mut Ctx, script: &str, arg0: String, args: Vec<String>, opts: Opts) -> Status {
    let mut sub = ctx.fork();
    // A new process: no shell variables, functions or options of the caller; the nesting
    // depth carries on, since its future still runs inside the caller's.
    sub.shell = Shell { opts, arg0, args, depth: ctx.shell.depth, ..Shell::default() };
    sub.stdin = std::mem::replace(&mut ctx.stdin, Input::Closed);
    let code = match sub.run_script(script).await {
        Ok(c) | Err(Flow::Exit(c) | Flow::Return(c)) => c,
        Err(Flow::Break(_) | Flow::Continue(_)) => 0,
    };
    ctx.stdin = std::mem::replace(&mut sub.stdin, Input::Closed);
    Ok(code)
}

fn set_opt(opts: &mut Opts, name: &str, on: bool) -> bool {
    match name {
        "errexit" => opts.errexit = on,
        "nounset" => opts.nounset = on,
        "pipefail" => opts.pipefail = on,
        "allexport" => opts.allexport = on,
        _ => return false,
    }
    true
}

/// `bash`/`sh`: `-c SCRIPT [ARG0 ARGS…]`, a script file, or a script on stdin (`-s`, `-`, or
/// no operand), with `-e`, `-u`, `-a`, `-o OPTION` and `-l` (there is no profile to read).
pub async fn bash(ctx: &mut Ctx, args: &[String]) -> Status {
    let mut opts = Opts::default();
    let (mut command, mut from_stdin) = (false, false);
    let mut i = 0;
    while let Some(a) = args.get(i) {
        i += 1;
        match a.as_str() {
            "--" => break,
            "-" => {
                from_stdin = true;
                break;
            }
            "--login" | "--noprofile" | "--norc" => continue,
            long if long.starts_with("--") => return Ok(args::refuse(ctx, "bash", long)),
            flags if flags.len() > 1 && flags.starts_with(['-', '+']) => {
                let on = flags.starts_with('-');
                for c in flags[1..].chars() {
                    let known = match c {
                        'c' => {
                            command = true;
                            true
                        }
                        's' => {
                            from_stdin = true;
                            true
                        }
                        'l' => true,
                        'e' => set_opt(&mut opts, "errexit", on),
                        'u' => set_opt(&mut opts, "nounset", on),
                        'a' => set_opt(&mut opts, "allexport", on),
                        'o' => {
                            let name = args.get(i).cloned().unwrap_or_default();
                            i += 1;
                            set_opt(&mut opts, &name, on)
                        }
                        _ => false,
                    };
                    if !known {
                        return Ok(args::refuse(ctx, "bash", &format!("-{c}")));
                    }
                }
            }
            _ => {
                i -= 1;
                break;
            }
        }
    }
    let rest = &args[i.min(args.len())..];
    if command {
        let Some(script) = rest.first() else {
            ctx.err("bash: -c: option requires an argument\n");
            return Ok(2);
        };
        let arg0 = rest.get(1).cloned().unwrap_or_else(|| "bash".into());
        let params = rest.iter().skip(2).cloned().collect();
        return new_shell(ctx, script, arg0, params, opts).await;
    }
    if from_stdin || rest.is_empty() {
        let script = String::from_utf8_lossy(&ctx.stdin.read_all().await).into_owned();
        return new_shell(ctx, &script, "bash".into(), rest.to_vec(), opts).await;
    }
    let file = &rest[0];
    let path = ctx.path(file);
    let Ok(data) = ctx.fs(|f| f.read(&path)) else {
        ctx.err(format!("bash: {file}: No such file or directory\n"));
        return Ok(127);
    };
    if crate::fs::basename(&path) == "sprite-setup.sh" {
        return Ok(setup::setup_script(ctx, rest.get(1).map(String::as_str)).await);
    }
    let script = String::from_utf8_lossy(&data).into_owned();
    new_shell(ctx, &script, file.clone(), rest[1..].to_vec(), opts).await
}

/// Runs an executable file: a shell script in a new shell, another interpreter (`#!/usr/bin/env
/// node`) through that command.
pub async fn run_file(ctx: &mut Ctx, path: &str, argv: &[String]) -> Status {
    let node = ctx.fs(|f| f.get(path).cloned());
    let Some(node) = node.filter(|n| !n.is_dir()) else {
        ctx.err(format!("bash: {}: No such file or directory\n", argv[0]));
        return Ok(127);
    };
    if node.mode() & 0o111 == 0 {
        ctx.err(format!("bash: {}: Permission denied\n", argv[0]));
        return Ok(126);
    }
    let data = ctx.fs(|f| f.read(path)).unwrap_or_default();
    let text = String::from_utf8_lossy(&data).into_owned();
    let shebang: Vec<String> = text
        .strip_prefix("#!")
        .and_then(|s| s.lines().next())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut interp: Vec<String> = shebang.clone();
    if interp.first().is_some_and(|i| crate::fs::basename(i) == "env") {
        interp.remove(0);
    }
    let shell = interp.first().is_none_or(|i| matches!(crate::fs::basename(i), "bash" | "sh"));
    if shell {
        // `$0` is the path the script was found at (as typed when it had a slash).
        let arg0 = if argv[0].contains('/') { argv[0].clone() } else { path.to_string() };
        return new_shell(ctx, &text, arg0, argv[1..].to_vec(), Opts::default()).await;
    }
    let mut cmd = interp;
    cmd.push(path.to_string());
    cmd.extend(argv[1..].iter().cloned());
    ctx.run_argv(cmd).await
}

/// `source FILE [ARGS…]` / `. FILE`: runs the file in this shell.
pub async fn source(ctx: &mut Ctx, args: &[String]) -> Status {
    let Some(file) = args.first() else {
        ctx.err("bash: source: filename argument required\n");
        return Ok(2);
    };
    let path = ctx.path(file);
    let data = match ctx.fs(|f| f.read(&path)) {
        Ok(d) => d,
        Err(_) => {
            ctx.err(format!("bash: {file}: No such file or directory\n"));
            return Ok(1);
        }
    };
    let script = String::from_utf8_lossy(&data).into_owned();
    let saved = (args.len() > 1).then(|| std::mem::replace(&mut ctx.shell.args, args[1..].to_vec()));
    let result = match ctx.run_script(&script).await {
        Err(Flow::Return(c)) => Ok(c),
        other => other,
    };
    if let Some(saved) = saved {
        ctx.shell.args = saved;
    }
    result
}

/// Runs `argv` with `env` as its environment, then puts the shell's back.
async fn with_env(ctx: &mut Ctx, env: BTreeMap<String, String>, argv: Vec<String>) -> Status {
    let saved = std::mem::replace(&mut ctx.env, env);
    let result = ctx.run_argv(argv).await;
    ctx.env = saved;
    result
}

/// `env [-i] [-u NAME] [NAME=VALUE…] [COMMAND ARGS…]`.
pub async fn env(ctx: &mut Ctx, args: &[String]) -> Status {
    let mut env = ctx.env.clone();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-i" | "--ignore-environment" | "-" => env.clear(),
            "-u" => {
                i += 1;
                if let Some(n) = args.get(i) {
                    env.remove(n);
                }
            }
            "--" => {
                i += 1;
                break;
            }
            flag if flag.starts_with('-') => return Ok(args::refuse(ctx, "env", flag)),
            _ => break,
        }
        i += 1;
    }
    while let Some((k, v)) = args.get(i).and_then(|a| assignment(a)) {
        env.insert(k.to_string(), v.to_string());
        i += 1;
    }
    if i >= args.len() {
        let all: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        ctx.out(all);
        return Ok(0);
    }
    with_env(ctx, env, args[i..].to_vec()).await
}

/// `sudo [-E] [-H] [-n] [NAME=VALUE…] COMMAND…`: the Sprite user may do anything, so this runs
/// the command with sudo's environment (only with `-E` the caller's whole environment).
pub async fn sudo(ctx: &mut Ctx, args: &[String]) -> Status {
    let mut keep = false;
    let mut i = 0;
    while let Some(a) = args.get(i).filter(|a| a.starts_with('-')) {
        i += 1;
        if a == "--" {
            break;
        }
        for c in a[1..].chars() {
            match c {
                'E' => keep = true,
                'H' | 'n' => {}
                other => return Ok(args::refuse(ctx, "sudo", &format!("-{other}"))),
            }
        }
    }
    let mut env = if keep {
        ctx.env.clone()
    } else {
        // Ubuntu's sudoers: env_reset, secure_path, and HOME set to the target user's.
        let mut e: BTreeMap<String, String> = ctx
            .env
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "LANG" | "TERM"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in [
            ("HOME", "/root"),
            ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/snap/bin"),
            ("SHELL", "/bin/bash"),
            ("USER", "root"),
            ("LOGNAME", "root"),
        ] {
            e.insert(k.into(), v.into());
        }
        e
    };
    while let Some((k, v)) = args.get(i).and_then(|a| assignment(a)) {
        env.insert(k.to_string(), v.to_string());
        i += 1;
    }
    if i >= args.len() {
        ctx.err("usage: sudo [-E] [-H] [-n] [VAR=value] command\n");
        return Ok(1);
    }
    with_env(ctx, env, args[i..].to_vec()).await
}

/// `read [-r] [NAME…]`: one line of input split on IFS; status 1 at end of input.
pub async fn read(ctx: &mut Ctx, args: &[String]) -> Status {
    let p = match args::parse(ctx, "read", args, "rs", "p", &[]) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let raw = p.has('r');
    let mut line = String::new();
    let mut complete = false;
    while let Some((bytes, newline)) = ctx.stdin.read_line().await {
        let part = String::from_utf8_lossy(&bytes).into_owned();
        complete = newline;
        // Without -r a trailing backslash continues the line.
        if !raw && newline && part.ends_with('\\') && !part.ends_with("\\\\") {
            line.push_str(&part[..part.len() - 1]);
            continue;
        }
        line.push_str(&part);
        break;
    }
    if !raw {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.extend(chars.next());
            } else {
                out.push(c);
            }
        }
        line = out;
    }
    let names: Vec<String> = if p.operands.is_empty() { vec!["REPLY".into()] } else { p.operands.clone() };
    let ifs = ctx.var("IFS").unwrap_or(" \t\n").to_string();
    let is_ifs = |c: char| ifs.contains(c);
    let mut rest = if p.operands.is_empty() { line.as_str() } else { line.trim_start_matches(is_ifs) };
    for (i, name) in names.iter().enumerate() {
        let value = if i + 1 == names.len() {
            let v = if p.operands.is_empty() { rest } else { rest.trim_end_matches(is_ifs) };
            v.to_string()
        } else {
            match rest.find(is_ifs).filter(|_| !ifs.is_empty()) {
                Some(at) => {
                    let v = rest[..at].to_string();
                    rest = rest[at..].trim_start_matches(is_ifs);
                    v
                }
                None => std::mem::take(&mut rest).to_string(),
            }
        };
        ctx.set_var(name, value);
    }
    Ok(if complete { 0 } else { 1 })
}
