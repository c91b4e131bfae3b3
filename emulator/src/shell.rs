//! The commands exec can run on a Sprite's simulated filesystem, and a small `bash -c` parser
//! (quotes, `$VAR`, `&&`, `||`, `;`, newlines, `>`/`>>`/`2>`/`2>&1`/`<`). Syntax it does not
//! understand (pipes, `$(…)`, backticks, heredocs, `&`) fails with exit 2 instead of pretending
//! to work, so a client relying on it notices.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::fs::{self, Fs, FsError};
use crate::latency;
use crate::state::App;

/// Output chunks are cut to this size so multi-MB output goes out as many frames.
pub const CHUNK: usize = 64 * 1024;

/// What a running command produces, in order.
#[derive(Debug)]
pub enum Event {
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(u8),
    /// The environment restarted under the command: no exit status to report.
    Ended,
}

#[derive(Debug)]
pub enum StdinMsg {
    Data(Bytes),
    Eof,
}

#[derive(Clone)]
pub enum Sink {
    Channel(UnboundedSender<Event>, bool),
    Buffer(Arc<Mutex<Vec<u8>>>),
    Null,
}

impl Sink {
    pub fn stdout(tx: UnboundedSender<Event>) -> Self {
        Sink::Channel(tx, false)
    }
    pub fn stderr(tx: UnboundedSender<Event>) -> Self {
        Sink::Channel(tx, true)
    }

    pub fn write(&self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match self {
            Sink::Channel(tx, is_err) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let chunk = rest.split_to(rest.len().min(CHUNK));
                    // A gone receiver means the client left; the command runs on regardless.
                    let _ = tx.send(if *is_err { Event::Stderr(chunk) } else { Event::Stdout(chunk) });
                }
            }
            Sink::Buffer(buf) => buf.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&data),
            Sink::Null => {}
        }
    }
}

pub enum Input {
    Live(UnboundedReceiver<StdinMsg>),
    Buffered(Option<Bytes>),
    Closed,
}

impl Input {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        match self {
            Input::Live(rx) => loop {
                match rx.recv().await {
                    Some(StdinMsg::Data(b)) if b.is_empty() => continue,
                    Some(StdinMsg::Data(b)) => return Some(b),
                    Some(StdinMsg::Eof) | None => {
                        *self = Input::Closed;
                        return None;
                    }
                }
            },
            Input::Buffered(data) => data.take(),
            Input::Closed => None,
        }
    }

    async fn read_all(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk().await {
            all.extend_from_slice(&chunk);
        }
        all
    }
}

/// `exit N` unwinding out of a script.
#[derive(Debug, Clone, Copy)]
pub struct Exited(pub u8);

type Status = Result<u8, Exited>;
type BoxFut<'a> = Pin<Box<dyn Future<Output = Status> + Send + 'a>>;

pub struct Ctx {
    pub app: App,
    pub sprite: String,
    pub sprite_id: String,
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub stdout: Sink,
    pub stderr: Sink,
    pub stdin: Input,
    pub last_status: u8,
}

pub fn default_env() -> BTreeMap<String, String> {
    [
        ("HOME", fs::HOME),
        ("LANG", "C.UTF-8"),
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("SHELL", "/bin/bash"),
        ("USER", "sprite"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Ctx {
    fn out(&self, s: impl Into<Bytes>) {
        self.stdout.write(s.into());
    }
    fn err(&self, s: impl Into<String>) {
        self.stderr.write(Bytes::from(s.into()));
    }

    fn path(&self, p: &str) -> String {
        fs::resolve(&self.cwd, p)
    }

    /// Runs `f` on this Sprite's filesystem. If the Sprite is gone the command is about to be
    /// killed anyway, so it works on a scratch filesystem meanwhile.
    fn fs<T>(&self, f: impl FnOnce(&mut Fs) -> T) -> T {
        let mut world = self.app.world();
        match world.sprite_if(&self.sprite, &self.sprite_id) {
            Some(sprite) => f(&mut sprite.fs),
            None => f(&mut Fs::new()),
        }
    }

    async fn fallback_delay(&self) {
        let speed = self.app.speed();
        latency::simulate(150, speed).await;
    }
}

/// Runs one argv (the exec `cmd` list). `exit N` at the top level just ends with N.
pub async fn run_command(ctx: &mut Ctx, argv: Vec<String>) -> u8 {
    match run_argv(ctx, argv).await {
        Ok(code) | Err(Exited(code)) => code,
    }
}

fn run_argv<'a>(ctx: &'a mut Ctx, argv: Vec<String>) -> BoxFut<'a> {
    Box::pin(async move {
        // Leading NAME=VALUE words: shell variables, or the environment of one command.
        let assigns: Vec<(String, String)> = argv.iter().map_while(|w| assignment(w)).collect();
        let argv = argv[assigns.len()..].to_vec();
        if argv.is_empty() {
            ctx.env.extend(assigns);
            return Ok(0);
        }
        if !assigns.is_empty() {
            let saved = ctx.env.clone();
            ctx.env.extend(assigns);
            let r = dispatch(ctx, argv).await;
            ctx.env = saved;
            return r;
        }
        dispatch(ctx, argv).await
    })
}

fn assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

async fn dispatch(ctx: &mut Ctx, argv: Vec<String>) -> Status {
    let name = argv[0].rsplit('/').next().unwrap_or("").to_string();
    let args = &argv[1..];
    let code = match name.as_str() {
        "true" | ":" => 0,
        "false" => 1,
        "exit" => {
            let code = match args.first() {
                Some(a) => a.parse::<i64>().map(|n| n.rem_euclid(256) as u8).unwrap_or(2),
                None => ctx.last_status,
            };
            return Err(Exited(code));
        }
        "cd" => cd(ctx, args),
        "export" => {
            for a in args {
                if let Some((k, v)) = assignment(a) {
                    ctx.env.insert(k, v);
                }
            }
            0
        }
        "test" => test(ctx, args),
        "[" => {
            if args.last().map(String::as_str) != Some("]") {
                ctx.err("[: missing `]'\n");
                2
            } else {
                test(ctx, &args[..args.len() - 1])
            }
        }
        "cat" => cat(ctx, args).await,
        "echo" => echo(ctx, args),
        "printenv" => printenv(ctx, args),
        "pwd" => {
            ctx.out(format!("{}\n", ctx.cwd));
            0
        }
        "ls" => ls(ctx, args),
        "mkdir" => mkdir(ctx, args),
        "touch" => touch(ctx, args),
        "rm" => rm(ctx, args),
        "chmod" => chmod(ctx, args),
        "sleep" => sleep(ctx, args).await,
        "bash" | "sh" => return shell(ctx, args).await,
        _ => match crate::vm::dispatch(ctx, &argv).await {
            Some(code) => code,
            None => {
                ctx.fallback_delay().await;
                0
            }
        },
    };
    Ok(code)
}

fn cd(ctx: &mut Ctx, args: &[String]) -> u8 {
    let target = match args.first() {
        Some(p) => ctx.path(p),
        None => ctx.env.get("HOME").cloned().unwrap_or_else(|| fs::HOME.into()),
    };
    if ctx.fs(|f| f.get(&target).is_some_and(|n| n.is_dir())) {
        ctx.cwd = target;
        0
    } else {
        ctx.err(format!(
            "bash: cd: {}: No such file or directory\n",
            args.first().map(String::as_str).unwrap_or("")
        ));
        1
    }
}

fn test(ctx: &Ctx, args: &[String]) -> u8 {
    if let Some(first) = args.first()
        && first == "!"
    {
        return match test(ctx, &args[1..]) {
            0 => 1,
            1 => 0,
            n => n,
        };
    }
    let truth = |b: bool| if b { 0 } else { 1 };
    match args {
        [] => 1,
        [s] => truth(!s.is_empty()),
        [op, operand] => {
            let path = ctx.path(operand);
            let node = ctx.fs(|f| f.get(&path).cloned());
            match op.as_str() {
                "-e" | "-r" | "-w" | "-x" => truth(node.is_some()),
                "-f" => truth(node.is_some_and(|n| !n.is_dir())),
                "-d" => truth(node.is_some_and(|n| n.is_dir())),
                "-s" => truth(node.is_some_and(|n| !n.is_dir() && n.size() > 0)),
                "-L" | "-h" => 1,
                "-n" => truth(!operand.is_empty()),
                "-z" => truth(operand.is_empty()),
                _ => {
                    ctx.err(format!("test: {op}: unary operator expected\n"));
                    2
                }
            }
        }
        [a, op, b] => {
            let num = |s: &str| s.trim().parse::<i64>().ok();
            match op.as_str() {
                "=" | "==" => truth(a == b),
                "!=" => truth(a != b),
                "-eq" | "-ne" | "-lt" | "-gt" | "-le" | "-ge" => match (num(a), num(b)) {
                    (Some(x), Some(y)) => truth(match op.as_str() {
                        "-eq" => x == y,
                        "-ne" => x != y,
                        "-lt" => x < y,
                        "-gt" => x > y,
                        "-le" => x <= y,
                        _ => x >= y,
                    }),
                    _ => {
                        ctx.err("test: integer expression expected\n");
                        2
                    }
                },
                _ => {
                    ctx.err(format!("test: {op}: binary operator expected\n"));
                    2
                }
            }
        }
        _ => {
            ctx.err("test: too many arguments\n");
            2
        }
    }
}

async fn cat(ctx: &mut Ctx, args: &[String]) -> u8 {
    let files: Vec<&String> = args.iter().filter(|a| a.as_str() == "-" || !a.starts_with('-')).collect();
    if files.is_empty() {
        while let Some(chunk) = ctx.stdin.next_chunk().await {
            ctx.out(chunk);
        }
        return 0;
    }
    let mut code = 0;
    for f in files {
        if f == "-" {
            while let Some(chunk) = ctx.stdin.next_chunk().await {
                ctx.out(chunk);
            }
            continue;
        }
        let path = ctx.path(f);
        match ctx.fs(|fs| fs.read(&path)) {
            Ok(data) => ctx.out(data),
            Err(e) => {
                ctx.err(format!("cat: {f}: {}\n", errno_text(&e)));
                code = 1;
            }
        }
    }
    code
}

fn errno_text(e: &FsError) -> &'static str {
    match e.code {
        "ENOENT" => "No such file or directory",
        "EISDIR" => "Is a directory",
        "ENOTDIR" => "Not a directory",
        "EEXIST" => "File exists",
        "ENOTEMPTY" => "Directory not empty",
        _ => "Input/output error",
    }
}

fn echo(ctx: &Ctx, args: &[String]) -> u8 {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-n" => newline = false,
            "-e" => escapes = true,
            "-E" => escapes = false,
            "-ne" | "-en" => {
                newline = false;
                escapes = true;
            }
            _ => break,
        }
        i += 1;
    }
    let mut s = args[i..].join(" ");
    if escapes {
        s = s.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\");
    }
    if newline {
        s.push('\n');
    }
    ctx.out(s);
    0
}

fn printenv(ctx: &Ctx, args: &[String]) -> u8 {
    if args.is_empty() {
        let all: String = ctx.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        ctx.out(all);
        return 0;
    }
    let mut code = 0;
    for name in args {
        match ctx.env.get(name) {
            Some(v) => ctx.out(format!("{v}\n")),
            None => code = 1,
        }
    }
    code
}

fn split_flags(args: &[String]) -> (String, Vec<&String>) {
    let mut flags = String::new();
    let mut rest = Vec::new();
    let mut only_operands = false;
    for a in args {
        if !only_operands && a == "--" {
            only_operands = true;
        } else if !only_operands && a.starts_with('-') && a.len() > 1 {
            flags.push_str(&a[1..]);
        } else {
            rest.push(a);
        }
    }
    (flags, rest)
}

fn ls(ctx: &Ctx, args: &[String]) -> u8 {
    let (flags, paths) = split_flags(args);
    let all = flags.contains('a');
    let cwd = ".".to_string();
    let paths = if paths.is_empty() { vec![&cwd] } else { paths };
    let mut code = 0;
    for p in paths {
        let path = ctx.path(p);
        match ctx.fs(|f| f.list(&path, false).map(|e| (e, f.get(&path).unwrap().is_dir()))) {
            Ok((entries, true)) => {
                let names: String = entries
                    .into_iter()
                    .filter(|e| all || !e.name.starts_with('.'))
                    .map(|e| format!("{}\n", e.name))
                    .collect();
                ctx.out(names);
            }
            Ok((_, false)) => ctx.out(format!("{p}\n")),
            Err(_) => {
                ctx.err(format!("ls: cannot access '{p}': No such file or directory\n"));
                code = 2;
            }
        }
    }
    code
}

fn mkdir(ctx: &Ctx, args: &[String]) -> u8 {
    let (flags, paths) = split_flags(args);
    let parents = flags.contains('p');
    let mut code = 0;
    for p in paths {
        let path = ctx.path(p);
        let r = ctx.fs(|f| if parents { f.mkdir_all(&path, 0o755) } else { f.mkdir(&path, 0o755) });
        if let Err(e) = r {
            ctx.err(format!("mkdir: cannot create directory '{p}': {}\n", errno_text(&e)));
            code = 1;
        }
    }
    code
}

fn touch(ctx: &Ctx, args: &[String]) -> u8 {
    let (_, paths) = split_flags(args);
    let mut code = 0;
    for p in paths {
        let path = ctx.path(p);
        if let Err(e) = ctx.fs(|f| f.touch(&path)) {
            ctx.err(format!("touch: cannot touch '{p}': {}\n", errno_text(&e)));
            code = 1;
        }
    }
    code
}

fn rm(ctx: &Ctx, args: &[String]) -> u8 {
    let (flags, paths) = split_flags(args);
    let recursive = flags.contains('r') || flags.contains('R');
    let force = flags.contains('f');
    let mut code = 0;
    for p in paths {
        let path = ctx.path(p);
        let r = ctx.fs(|f| match f.get(&path) {
            None => Err(FsError { code: "ENOENT", path: path.clone() }),
            Some(n) if n.is_dir() && !recursive => Err(FsError { code: "EISDIR", path: path.clone() }),
            Some(_) => f.remove(&path, true).map(|_| ()),
        });
        match r {
            Ok(()) => {}
            Err(e) if e.code == "ENOENT" && force => {}
            Err(e) => {
                ctx.err(format!("rm: cannot remove '{p}': {}\n", errno_text(&e)));
                code = 1;
            }
        }
    }
    code
}

fn chmod(ctx: &Ctx, args: &[String]) -> u8 {
    let (_, rest) = split_flags(args);
    let Some((mode, paths)) = rest.split_first() else {
        ctx.err("chmod: missing operand\n");
        return 1;
    };
    let Ok(mode) = u32::from_str_radix(mode, 8) else {
        ctx.err(format!("chmod: invalid mode: '{mode}'\n"));
        return 1;
    };
    let mut code = 0;
    for p in paths {
        let path = ctx.path(p);
        if let Err(e) = ctx.fs(|f| f.chmod(&path, mode)) {
            ctx.err(format!("chmod: cannot access '{p}': {}\n", errno_text(&e)));
            code = 1;
        }
    }
    code
}

/// `sleep` takes real (unscaled) time: it is what the caller asked for, not a latency.
async fn sleep(ctx: &Ctx, args: &[String]) -> u8 {
    let mut total = 0f64;
    for a in args {
        let (num, mult) = match a.chars().last() {
            Some('s') => (&a[..a.len() - 1], 1.0),
            Some('m') => (&a[..a.len() - 1], 60.0),
            Some('h') => (&a[..a.len() - 1], 3600.0),
            Some('d') => (&a[..a.len() - 1], 86400.0),
            _ => (a.as_str(), 1.0),
        };
        match num.parse::<f64>() {
            Ok(n) if n >= 0.0 && n.is_finite() => total += n * mult,
            _ => {
                ctx.err(format!("sleep: invalid time interval '{a}'\n"));
                return 1;
            }
        }
    }
    if args.is_empty() {
        ctx.err("sleep: missing operand\n");
        return 1;
    }
    tokio::time::sleep(Duration::from_secs_f64(total)).await;
    0
}

/// `bash`/`sh`: `-c SCRIPT`, a script on stdin, or a script file (the setup script is
/// recognised by name; other existing files succeed like any unknown command).
async fn shell(ctx: &mut Ctx, args: &[String]) -> Status {
    let mut i = 0;
    let mut command_mode = false;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if a == "-o" || a == "+o" {
            i += 2;
            continue;
        }
        if a.starts_with("--") {
            i += 1;
            continue;
        }
        if (a.starts_with('-') || a.starts_with('+')) && a.len() > 1 {
            command_mode |= a.starts_with('-') && a.contains('c');
            i += 1;
            continue;
        }
        break;
    }
    let rest = &args[i.min(args.len())..];
    if command_mode {
        let Some(script) = rest.first() else {
            ctx.err("bash: -c: option requires an argument\n");
            return Ok(2);
        };
        return Ok(subshell(ctx, script).await);
    }
    let Some(file) = rest.first() else {
        let script = ctx.stdin.read_all().await;
        return Ok(subshell(ctx, &String::from_utf8_lossy(&script)).await);
    };
    let path = ctx.path(file);
    let exists = ctx.fs(|f| f.get(&path).is_some_and(|n| !n.is_dir()));
    if !exists {
        ctx.err(format!("bash: {file}: No such file or directory\n"));
        return Ok(127);
    }
    if fs::basename(&path) == "sprite-setup.sh" {
        return Ok(setup_script(ctx, rest.get(1).map(String::as_str)).await);
    }
    let script = ctx.fs(|f| f.read(&path)).unwrap_or_default();
    Ok(subshell(ctx, &String::from_utf8_lossy(&script)).await)
}

/// A nested shell: its `cd`, variables and `exit` do not leak into the caller.
async fn subshell(ctx: &mut Ctx, script: &str) -> u8 {
    let saved = (ctx.env.clone(), ctx.cwd.clone());
    let code = match run_script(ctx, script).await {
        Ok(c) | Err(Exited(c)) => c,
    };
    (ctx.env, ctx.cwd) = saved;
    code
}

const SETUP_STEPS: &[&str] = &[
    "updating system packages",
    "installing Node.js",
    "cloning OpenClaw",
    "building OpenClaw",
    "installing the Convos CLI",
];

/// The stand-in for the real install: progress lines over `setup_ms × speed`, then the
/// marker. Killing the task mid-way means the marker never appears.
async fn setup_script(ctx: &mut Ctx, marker: Option<&str>) -> u8 {
    let (setup_ms, speed) = {
        let w = ctx.app.world();
        (w.config.setup_ms, w.config.speed)
    };
    let step = latency::scaled(setup_ms, speed) / SETUP_STEPS.len() as u32;
    for (i, what) in SETUP_STEPS.iter().enumerate() {
        ctx.out(format!("[sprite-setup] {}/{} {what}...\n", i + 1, SETUP_STEPS.len()));
        if !step.is_zero() {
            tokio::time::sleep(step).await;
        }
    }
    let result = ctx.fs(|f| {
        f.mkdir_all(&format!("{}/.openclaw/workspace", fs::HOME), 0o755)?;
        if let Some(m) = marker {
            let path = fs::resolve(&ctx.cwd, m);
            f.write(&path, Bytes::from_static(b"ok\n"), Some(0o644), true)?;
        }
        Ok::<(), FsError>(())
    });
    match result {
        Ok(()) => {
            ctx.out("[sprite-setup] done\n");
            0
        }
        Err(e) => {
            ctx.err(format!("sprite-setup: cannot write marker: {}\n", e.message()));
            1
        }
    }
}

// ---- the `bash -c` language ----

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
    Home,
}

#[derive(Debug, Clone, PartialEq)]
enum Redir {
    Out { fd: u8, append: bool },
    ErrToOut,
    OutToErr,
    In,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Vec<Part>),
    Redir(Redir),
    And,
    Or,
    Semi,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Connector {
    Always,
    IfOk,
    IfFailed,
}

#[derive(Debug, Default)]
struct Simple {
    words: Vec<Vec<Part>>,
    redirs: Vec<(Redir, Option<Vec<Part>>)>,
}

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut word: Vec<Part> = Vec::new();
    let mut lit = String::new();
    let mut in_word = false;
    let mut i = 0;

    fn flush_lit(word: &mut Vec<Part>, lit: &mut String) {
        if !lit.is_empty() {
            word.push(Part::Lit(std::mem::take(lit)));
        }
    }
    fn end_word(toks: &mut Vec<Tok>, word: &mut Vec<Part>, lit: &mut String, in_word: &mut bool) {
        flush_lit(word, lit);
        if *in_word {
            toks.push(Tok::Word(std::mem::take(word)));
        }
        *in_word = false;
    }
    // `$NAME`, `${NAME}`, `$?`; returns chars consumed after the `$`, or None for a literal `$`.
    fn var(chars: &[char], i: usize) -> Result<Option<(String, usize)>, String> {
        match chars.get(i) {
            Some('(') => Err("$(...)".into()),
            Some('{') => {
                let end = chars[i..].iter().position(|&c| c == '}').ok_or("unterminated ${")?;
                Ok(Some((chars[i + 1..i + end].iter().collect(), end + 1)))
            }
            Some('?') => Ok(Some(("?".into(), 1))),
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let n = chars[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').count();
                Ok(Some((chars[i..i + n].iter().collect(), n)))
            }
            _ => Ok(None),
        }
    }

    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => {
                end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                i += 1;
            }
            '\n' | ';' => {
                end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                if chars.get(i + 1) == Some(&';') && c == ';' {
                    return Err(";;".into());
                }
                toks.push(Tok::Semi);
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '&' => {
                if chars.get(i + 1) == Some(&'&') {
                    end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                    toks.push(Tok::And);
                    i += 2;
                } else if chars.get(i + 1) == Some(&'>') {
                    end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                    toks.push(Tok::Redir(Redir::Out { fd: 1, append: false }));
                    toks.push(Tok::Redir(Redir::ErrToOut));
                    i += 2;
                } else {
                    return Err("background jobs (&)".into());
                }
            }
            '|' => {
                if chars.get(i + 1) == Some(&'|') {
                    end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                    toks.push(Tok::Or);
                    i += 2;
                } else {
                    return Err("pipes (|)".into());
                }
            }
            '>' => {
                // `2>` / `1>`: a bare single digit right before the `>` names the fd.
                let fd = if in_word && word.is_empty() && (lit == "1" || lit == "2") {
                    let fd = if lit == "2" { 2 } else { 1 };
                    lit.clear();
                    in_word = false;
                    fd
                } else {
                    end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                    1
                };
                i += 1;
                let append = chars.get(i) == Some(&'>');
                if append {
                    i += 1;
                }
                if fd == 2 && chars.get(i) == Some(&'&') && chars.get(i + 1) == Some(&'1') {
                    toks.push(Tok::Redir(Redir::ErrToOut));
                    i += 2;
                } else if fd == 1 && chars.get(i) == Some(&'&') && chars.get(i + 1) == Some(&'2') {
                    toks.push(Tok::Redir(Redir::OutToErr));
                    i += 2;
                } else {
                    toks.push(Tok::Redir(Redir::Out { fd, append }));
                }
            }
            '<' => {
                if chars.get(i + 1) == Some(&'<') {
                    return Err("heredocs (<<)".into());
                }
                end_word(&mut toks, &mut word, &mut lit, &mut in_word);
                toks.push(Tok::Redir(Redir::In));
                i += 1;
            }
            '`' => return Err("backticks".into()),
            '(' | ')' => return Err("subshells ( )".into()),
            '\'' => {
                in_word = true;
                let end =
                    chars[i + 1..].iter().position(|&c| c == '\'').ok_or("unterminated single quote")?;
                lit.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err("unterminated double quote".into());
                    };
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            match chars.get(i + 1) {
                                Some(&n @ ('"' | '\\' | '$' | '`')) => lit.push(n),
                                Some('\n') => {}
                                Some(&n) => {
                                    lit.push('\\');
                                    lit.push(n);
                                }
                                None => return Err("unterminated double quote".into()),
                            }
                            i += 2;
                        }
                        '`' => return Err("backticks".into()),
                        '$' => match var(&chars, i + 1)? {
                            Some((name, n)) => {
                                flush_lit(&mut word, &mut lit);
                                word.push(Part::Var(name));
                                i += 1 + n;
                            }
                            None => {
                                lit.push('$');
                                i += 1;
                            }
                        },
                        c => {
                            lit.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some('\n') => {}
                    Some(&n) => {
                        in_word = true;
                        lit.push(n);
                    }
                    None => {}
                }
                i += 2;
            }
            '$' => {
                in_word = true;
                match var(&chars, i + 1)? {
                    Some((name, n)) => {
                        flush_lit(&mut word, &mut lit);
                        word.push(Part::Var(name));
                        i += 1 + n;
                    }
                    None => {
                        lit.push('$');
                        i += 1;
                    }
                }
            }
            '~' if !in_word && matches!(chars.get(i + 1), None | Some('/' | ' ' | '\t' | '\n' | ';')) => {
                in_word = true;
                word.push(Part::Home);
                i += 1;
            }
            c => {
                in_word = true;
                lit.push(c);
                i += 1;
            }
        }
    }
    end_word(&mut toks, &mut word, &mut lit, &mut in_word);
    Ok(toks)
}

fn parse(toks: Vec<Tok>) -> Result<Vec<(Connector, Simple)>, String> {
    let mut list = Vec::new();
    let mut cur = Simple::default();
    let mut connector = Connector::Always;
    let mut it = toks.into_iter().peekable();
    while let Some(tok) = it.next() {
        match tok {
            Tok::Word(w) => cur.words.push(w),
            Tok::Redir(r @ (Redir::ErrToOut | Redir::OutToErr)) => cur.redirs.push((r, None)),
            Tok::Redir(r) => match it.next() {
                Some(Tok::Word(target)) => cur.redirs.push((r, Some(target))),
                _ => return Err("redirection without a target".into()),
            },
            Tok::And | Tok::Or | Tok::Semi => {
                let empty = cur.words.is_empty() && cur.redirs.is_empty();
                if empty && tok != Tok::Semi {
                    return Err("syntax error near && or ||".into());
                }
                if !empty {
                    list.push((connector, std::mem::take(&mut cur)));
                }
                connector = match tok {
                    Tok::And => Connector::IfOk,
                    Tok::Or => Connector::IfFailed,
                    _ => Connector::Always,
                };
            }
        }
    }
    if !cur.words.is_empty() || !cur.redirs.is_empty() {
        list.push((connector, cur));
    } else if connector != Connector::Always {
        return Err("command expected after && or ||".into());
    }
    Ok(list)
}

fn expand(ctx: &Ctx, word: &[Part]) -> String {
    let mut s = String::new();
    for part in word {
        match part {
            Part::Lit(l) => s.push_str(l),
            Part::Var(name) if name == "?" => s.push_str(&ctx.last_status.to_string()),
            Part::Var(name) => s.push_str(ctx.env.get(name).map(String::as_str).unwrap_or("")),
            Part::Home => s.push_str(ctx.env.get("HOME").map(String::as_str).unwrap_or(fs::HOME)),
        }
    }
    s
}

fn run_script<'a>(ctx: &'a mut Ctx, script: &'a str) -> BoxFut<'a> {
    Box::pin(async move {
        let list = match tokenize(script).and_then(parse) {
            Ok(list) => list,
            Err(what) => {
                ctx.err(format!("emulator: unsupported shell syntax: {what}\n"));
                return Ok(2);
            }
        };
        let mut status = ctx.last_status;
        for (connector, simple) in list {
            let run = match connector {
                Connector::Always => true,
                Connector::IfOk => status == 0,
                Connector::IfFailed => status != 0,
            };
            if run {
                status = run_simple(ctx, simple).await?;
                ctx.last_status = status;
            }
        }
        Ok(status)
    })
}

/// Output redirected to a file is collected and written when the command ends.
struct Capture {
    path: String,
    buf: Arc<Mutex<Vec<u8>>>,
}

async fn run_simple(ctx: &mut Ctx, simple: Simple) -> Status {
    let argv: Vec<String> = simple.words.iter().map(|w| expand(ctx, w)).collect();
    let saved_out = ctx.stdout.clone();
    let saved_err = ctx.stderr.clone();
    let mut saved_in: Option<Input> = None;
    let mut captures: Vec<Capture> = Vec::new();
    let mut failed = None;

    for (redir, target) in &simple.redirs {
        let target = target.as_ref().map(|t| expand(ctx, t)).unwrap_or_default();
        match redir {
            Redir::ErrToOut => ctx.stderr = ctx.stdout.clone(),
            Redir::OutToErr => ctx.stdout = ctx.stderr.clone(),
            Redir::Out { fd, append } => {
                let sink = if target == "/dev/null" {
                    Sink::Null
                } else {
                    let path = ctx.path(&target);
                    let prep = ctx.fs(|f| {
                        if *append { f.append(&path, b"") } else { f.write(&path, Bytes::new(), None, false) }
                    });
                    if let Err(e) = prep {
                        failed = Some(format!("bash: {target}: {}\n", errno_text(&e)));
                        break;
                    }
                    let buf = Arc::new(Mutex::new(Vec::new()));
                    captures.push(Capture { path, buf: buf.clone() });
                    Sink::Buffer(buf)
                };
                if *fd == 2 {
                    ctx.stderr = sink;
                } else {
                    ctx.stdout = sink;
                }
            }
            Redir::In => {
                let path = ctx.path(&target);
                match ctx.fs(|f| f.read(&path)) {
                    Ok(data) => {
                        let old = std::mem::replace(&mut ctx.stdin, Input::Buffered(Some(data)));
                        saved_in.get_or_insert(old);
                    }
                    Err(e) => {
                        failed = Some(format!("bash: {target}: {}\n", errno_text(&e)));
                        break;
                    }
                }
            }
        }
    }

    let result = match failed {
        Some(msg) => {
            saved_err.write(Bytes::from(msg));
            Ok(1)
        }
        None if argv.is_empty() => Ok(0),
        None => run_argv(ctx, argv).await,
    };

    ctx.stdout = saved_out;
    ctx.stderr = saved_err;
    if let Some(input) = saved_in {
        ctx.stdin = input;
    }
    for cap in captures {
        let data = std::mem::take(&mut *cap.buf.lock().unwrap_or_else(|e| e.into_inner()));
        let _ = ctx.fs(|f| f.append(&cap.path, &data));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<Vec<String>> {
        let list = tokenize(src).and_then(parse).unwrap();
        list.into_iter()
            .map(|(_, s)| {
                s.words
                    .iter()
                    .map(|w| {
                        w.iter()
                            .map(|p| match p {
                                Part::Lit(l) => l.clone(),
                                Part::Var(v) => format!("<{v}>"),
                                Part::Home => "<~>".into(),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn quoting_and_operators() {
        assert_eq!(
            words("mkdir -p a && touch 'a/b c' ; echo \"x $HOME y\""),
            vec![vec!["mkdir", "-p", "a"], vec!["touch", "a/b c"], vec!["echo", "x <HOME> y"],]
        );
        assert_eq!(words("echo ''"), vec![vec!["echo", ""]]);
        assert_eq!(words("echo a\\ b ~/x"), vec![vec!["echo", "a b", "<~>/x"]]);
        assert_eq!(words("true\nfalse # c"), vec![vec!["true"], vec!["false"]]);
    }

    #[test]
    fn unsupported_syntax_is_an_error() {
        for bad in ["a | b", "echo $(x)", "echo `x`", "cat <<EOF", "sleep 1 &", "echo 'x"] {
            assert!(tokenize(bad).and_then(parse).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirections_parse() {
        let list = tokenize("echo hi > f 2>&1").and_then(parse).unwrap();
        assert_eq!(list[0].1.redirs.len(), 2);
        let list = tokenize("echo oops >&2").and_then(parse).unwrap();
        assert_eq!(list[0].1.redirs[0].0, Redir::OutToErr);
        let list = tokenize("echo hi 2>/dev/null").and_then(parse).unwrap();
        assert_eq!(list[0].1.redirs[0].0, Redir::Out { fd: 2, append: false });
    }
}
