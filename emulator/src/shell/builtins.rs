//! Shell builtins: the commands that change the shell itself (variables, options, directory,
//! control flow) and so cannot be ordinary tools; plus how a command name is found.

use super::ctx::{BoxFut, Ctx, Flow, Status, assignment, valid_name};
use super::shells;
use super::tools::{self, Tool, args};

pub type Builtin = for<'a> fn(&'a mut Ctx, &'a [String]) -> BoxFut<'a>;

macro_rules! builtin {
    ($f:path) => {{
        fn entry<'a>(ctx: &'a mut Ctx, args: &'a [String]) -> BoxFut<'a> {
            Box::pin($f(ctx, args))
        }
        entry as Builtin
    }};
    (sync $f:path) => {{
        fn entry<'a>(ctx: &'a mut Ctx, args: &'a [String]) -> BoxFut<'a> {
            Box::pin(async move { $f(ctx, args) })
        }
        entry as Builtin
    }};
}

fn table() -> &'static [(&'static str, Builtin)] {
    static TABLE: std::sync::OnceLock<Vec<(&str, Builtin)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        vec![
            (":", builtin!(sync colon)),
            (".", builtin!(shells::source)),
            ("bash", builtin!(shells::bash)),
            ("break", builtin!(sync break_)),
            ("cd", builtin!(sync cd)),
            ("command", builtin!(command)),
            ("continue", builtin!(sync continue_)),
            ("env", builtin!(shells::env)),
            ("eval", builtin!(eval)),
            ("exec", builtin!(exec)),
            ("exit", builtin!(sync exit)),
            ("export", builtin!(sync export)),
            ("local", builtin!(sync local)),
            ("read", builtin!(shells::read)),
            ("return", builtin!(sync return_)),
            ("set", builtin!(sync set)),
            ("sh", builtin!(shells::bash)),
            ("shift", builtin!(sync shift)),
            ("source", builtin!(shells::source)),
            ("sudo", builtin!(shells::sudo)),
            ("unset", builtin!(sync unset)),
        ]
    })
}

/// Builtins bash has that the emulator does not implement: refused, not "not found".
const UNIMPLEMENTED: &[&str] = &[
    "alias", "bg", "declare", "disown", "fg", "getopts", "hash", "jobs", "let", "popd", "pushd", "readonly",
    "shopt", "trap", "type", "typeset", "ulimit", "umask", "wait",
];

pub enum Found {
    Function,
    Builtin(Builtin),
    /// An executable file on the Sprite (a script a client wrote, such as a wrapper).
    File(String),
    Tool(String, Tool),
    Unimplemented,
}

const BIN_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// How bash would find `name`: functions, builtins, then PATH (files the client wrote on the
/// Sprite first, since /usr/local/bin comes first, then the simulated system commands).
pub fn lookup(ctx: &Ctx, name: &str) -> Option<Found> {
    if name.contains('/') {
        let path = ctx.path(name);
        if ctx.fs(|f| f.get(&path).is_some_and(|n| !n.is_dir())) {
            return Some(Found::File(path));
        }
        // `/usr/bin/env`, `/bin/bash`: the simulated system commands at their usual places.
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
        if !BIN_DIRS.contains(&dir) {
            return None;
        }
        return lookup(ctx, base).filter(|f| !matches!(f, Found::Function | Found::File(_)));
    }
    if ctx.shell.functions.contains_key(name) {
        return Some(Found::Function);
    }
    if let Some((_, b)) = table().iter().find(|(n, _)| *n == name) {
        return Some(Found::Builtin(*b));
    }
    if UNIMPLEMENTED.contains(&name) {
        return Some(Found::Unimplemented);
    }
    let path_var = ctx.var("PATH").unwrap_or_default().to_string();
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = crate::fs::resolve(&ctx.cwd, &format!("{dir}/{name}"));
        if ctx.fs(|f| f.get(&candidate).is_some_and(|n| !n.is_dir() && n.mode() & 0o111 != 0)) {
            return Some(Found::File(candidate));
        }
    }
    tools::find(name).map(|(dir, t)| Found::Tool(format!("{dir}/{name}"), t))
}

fn colon(_: &mut Ctx, _: &[String]) -> Status {
    Ok(0)
}

fn number(ctx: &Ctx, what: &str, arg: Option<&String>, default: u8) -> Result<i64, Flow> {
    match arg {
        None => Ok(default as i64),
        Some(a) => a.parse::<i64>().map_err(|_| {
            ctx.err(format!("bash: {what}: {a}: numeric argument required\n"));
            Flow::Exit(2)
        }),
    }
}

fn exit(ctx: &mut Ctx, args: &[String]) -> Status {
    let n = number(ctx, "exit", args.first(), ctx.last_status)?;
    Err(Flow::Exit(n.rem_euclid(256) as u8))
}

fn return_(ctx: &mut Ctx, args: &[String]) -> Status {
    let n = number(ctx, "return", args.first(), ctx.last_status)?;
    Err(Flow::Return(n.rem_euclid(256) as u8))
}

fn break_(ctx: &mut Ctx, args: &[String]) -> Status {
    Err(Flow::Break(number(ctx, "break", args.first(), 1)?.max(1) as u32))
}

fn continue_(ctx: &mut Ctx, args: &[String]) -> Status {
    Err(Flow::Continue(number(ctx, "continue", args.first(), 1)?.max(1) as u32))
}

fn cd(ctx: &mut Ctx, args: &[String]) -> Status {
    let p = match args::parse(ctx, "cd", args, "LP", "", &[]) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let dash = p.operands.first().is_some_and(|o| o == "-");
    let target = match p.operands.first().map(String::as_str) {
        Some("-") => ctx.var("OLDPWD").unwrap_or("").to_string(),
        Some(dir) => dir.to_string(),
        None => ctx.var("HOME").unwrap_or(crate::fs::HOME).to_string(),
    };
    let path = ctx.path(&target);
    match ctx.fs(|f| f.get(&path).map(|n| n.is_dir())) {
        Some(true) => {
            let old = std::mem::replace(&mut ctx.cwd, path.clone());
            ctx.set_var("OLDPWD", old);
            // `cd -` says where it went.
            if dash {
                ctx.out(format!("{path}\n"));
            }
            ctx.set_var("PWD", path);
            Ok(0)
        }
        Some(false) => {
            ctx.err(format!("bash: cd: {target}: Not a directory\n"));
            Ok(1)
        }
        None => {
            ctx.err(format!("bash: cd: {target}: No such file or directory\n"));
            Ok(1)
        }
    }
}

fn export(ctx: &mut Ctx, args: &[String]) -> Status {
    let p = match args::parse(ctx, "export", args, "p", "", &[]) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if p.operands.is_empty() {
        let all: String = ctx.env.iter().map(|(k, v)| format!("declare -x {k}={v:?}\n")).collect();
        ctx.out(all);
        return Ok(0);
    }
    let mut code = 0;
    for a in &p.operands {
        match assignment(a) {
            Some((k, v)) => ctx.export(k, Some(v.to_string())),
            None if valid_name(a) => ctx.export(a, None),
            None => {
                ctx.err(format!("bash: export: `{a}': not a valid identifier\n"));
                code = 1;
            }
        }
    }
    Ok(code)
}

fn unset(ctx: &mut Ctx, args: &[String]) -> Status {
    let p = match args::parse(ctx, "unset", args, "vf", "", &[]) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    for name in &p.operands {
        if p.has('f') {
            ctx.shell.functions.remove(name);
        } else {
            ctx.unset_var(name);
        }
    }
    Ok(0)
}

fn local(ctx: &mut Ctx, args: &[String]) -> Status {
    for a in args {
        let (name, value) = match assignment(a) {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        if !ctx.make_local(name) {
            ctx.err("bash: local: can only be used in a function\n");
            return Ok(1);
        }
        ctx.set_var(name, value.unwrap_or_default());
    }
    Ok(0)
}

fn shift(ctx: &mut Ctx, args: &[String]) -> Status {
    let n = number(ctx, "shift", args.first(), 1)?.max(0) as usize;
    if n > ctx.shell.args.len() {
        return Ok(1);
    }
    ctx.shell.args.drain(..n);
    Ok(0)
}

/// `set -e/-u/-a`, `-o errexit|nounset|pipefail|allexport`, `+…` to turn off, `set -- ARGS`.
fn set(ctx: &mut Ctx, args: &[String]) -> Status {
    if args.is_empty() {
        let mut all: Vec<String> =
            ctx.env.iter().chain(ctx.shell.vars.iter()).map(|(k, v)| format!("{k}={v}\n")).collect();
        all.sort();
        ctx.out(all.concat());
        return Ok(0);
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" || a == "-" {
            ctx.shell.args = it.cloned().collect();
            return Ok(0);
        }
        let on = a.starts_with('-');
        if !on && !a.starts_with('+') {
            ctx.shell.args = std::iter::once(a).chain(it).cloned().collect();
            return Ok(0);
        }
        for c in a[1..].chars() {
            let name = match c {
                'e' => "errexit",
                'u' => "nounset",
                'a' => "allexport",
                'o' => match it.next() {
                    Some(n) => n.as_str(),
                    None => return Err(ctx.unsupported("set -o without an option name")),
                },
                other => return Err(ctx.unsupported(format!("set {}{other}", if on { '-' } else { '+' }))),
            };
            let opts = &mut ctx.shell.opts;
            match name {
                "errexit" => opts.errexit = on,
                "nounset" => opts.nounset = on,
                "pipefail" => opts.pipefail = on,
                "allexport" => opts.allexport = on,
                other => return Err(ctx.unsupported(format!("set -o {other}"))),
            }
        }
    }
    Ok(0)
}

async fn eval(ctx: &mut Ctx, args: &[String]) -> Status {
    let src = args.join(" ");
    ctx.run_script(&src).await
}

/// `exec CMD…` runs CMD and the shell ends with its status (there is no process to replace).
async fn exec(ctx: &mut Ctx, args: &[String]) -> Status {
    if args.is_empty() {
        // Only redirections (handled where they are applied, see command.rs), or nothing.
        return Ok(0);
    }
    let code = ctx.run_argv(args.to_vec()).await?;
    Err(Flow::Exit(code))
}

/// `command -v NAME…` says where each is; `command NAME ARGS` runs it.
async fn command(ctx: &mut Ctx, args: &[String]) -> Status {
    match args.first().map(String::as_str) {
        Some("-v") => {
            let mut code = 0;
            for name in &args[1..] {
                match lookup(ctx, name) {
                    Some(Found::File(p) | Found::Tool(p, _)) => ctx.out(format!("{p}\n")),
                    Some(_) => ctx.out(format!("{name}\n")),
                    None => code = 1,
                }
            }
            Ok(code)
        }
        Some(flag) if flag.starts_with('-') => Ok(args::refuse(ctx, "command", flag)),
        Some(_) => ctx.run_argv(args.to_vec()).await,
        None => Ok(0),
    }
}
