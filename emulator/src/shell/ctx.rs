//! The state one shell runs with: the Sprite it works on, its environment and shell variables,
//! working directory, standard streams, options and functions, and how control unwinds.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use brush_parser::ast;
use bytes::Bytes;

use super::io::{Input, Sink};
use crate::fs::{self, Fs, FsError};
use crate::state::App;

/// How a command ends other than by returning a status: these unwind through the enclosing
/// constructs until the one that handles them (a loop, a function, the shell itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// `exit N`, `set -e`, and errors that end a non-interactive bash (unsupported syntax,
    /// `${X:?}`, an unset variable under `set -u`).
    Exit(u8),
    Return(u8),
    Break(u32),
    Continue(u32),
}

pub type Status = Result<u8, Flow>;
pub type BoxFut<'a, T = Status> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `set` options the emulator honours; any other option is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    pub errexit: bool,
    pub nounset: bool,
    pub pipefail: bool,
    pub allexport: bool,
}

/// A variable's value before `local` (name, value and whether it was exported), put back
/// when the function returns.
pub type Saved = (String, Option<(String, bool)>);

/// Shell-language state that is not the environment. Cloned into subshells and pipeline stages,
/// so what they change does not leak back (as in bash).
#[derive(Clone, Default)]
pub struct Shell {
    /// Variables that are not exported (exported ones live in `Ctx::env`).
    pub vars: BTreeMap<String, String>,
    pub functions: BTreeMap<String, Arc<ast::FunctionDefinition>>,
    pub opts: Opts,
    /// `$0` and `$1…`.
    pub arg0: String,
    pub args: Vec<String>,
    /// Above zero inside an `if`/`while` condition, a `!` pipeline or the left of `&&`/`||`,
    /// where `set -e` does not apply.
    pub errexit_off: u32,
    /// One frame per running function: the previous values of its `local` variables.
    pub locals: Vec<Vec<Saved>>,
    /// `$$`, assigned on first use.
    pub pid: u32,
    /// How many scripts (`eval`, `source`, `bash -c`, `$(…)`) and function calls are running
    /// inside each other; each level costs stack while it is polled.
    pub depth: usize,
    /// The status of the last `$(…)` of the command being expanded.
    pub subst_status: Option<u8>,
}

pub struct Ctx {
    pub app: App,
    pub sprite: String,
    pub sprite_id: String,
    /// The exported environment (what `printenv` shows and commands inherit).
    pub env: BTreeMap<String, String>,
    pub cwd: String,
    pub stdout: Sink,
    pub stderr: Sink,
    pub stdin: Input,
    pub last_status: u8,
    pub shell: Shell,
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

/// The interpreter's entry points, reached through this table so that builtins, tools and
/// word expansion can run nested scripts without the modules importing each other in a cycle.
pub struct Runner {
    pub script: for<'a> fn(&'a mut Ctx, &'a str) -> BoxFut<'a>,
    pub argv: for<'a> fn(&'a mut Ctx, Vec<String>) -> BoxFut<'a>,
}

static RUNNER: OnceLock<Runner> = OnceLock::new();

pub fn install_runner(make: impl FnOnce() -> Runner) {
    RUNNER.get_or_init(make);
}

fn runner() -> &'static Runner {
    // `shell::run_command` installs it before any command runs.
    RUNNER.get().expect("the shell runner is installed by run_command")
}

impl Ctx {
    pub fn out(&self, s: impl Into<Bytes>) {
        self.stdout.write(s.into());
    }
    pub fn err(&self, s: impl Into<String>) {
        self.stderr.write(Bytes::from(s.into()));
    }

    pub fn path(&self, p: &str) -> String {
        fs::resolve(&self.cwd, p)
    }

    /// Runs `f` on this Sprite's filesystem. If the Sprite is gone the command is about to be
    /// killed anyway, so it works on a scratch filesystem meanwhile.
    pub fn fs<T>(&self, f: impl FnOnce(&mut Fs) -> T) -> T {
        let mut world = self.app.world();
        match world.sprite_if(&self.sprite, &self.sprite_id) {
            Some(sprite) => f(&mut sprite.fs),
            None => f(&mut Fs::new()),
        }
    }

    /// Parses and runs `src` in this shell (as `eval` and `source` do).
    pub fn run_script<'a>(&'a mut self, src: &'a str) -> BoxFut<'a> {
        (runner().script)(self, src)
    }

    /// Runs one command line already split into words (functions, builtins, tools, files).
    pub fn run_argv(&mut self, argv: Vec<String>) -> BoxFut<'_> {
        (runner().argv)(self, argv)
    }

    /// A copy for a subshell, pipeline stage or `$(…)`: same variables, functions and
    /// directory, no input (the caller hands one over).
    pub fn fork(&self) -> Ctx {
        Ctx {
            app: self.app.clone(),
            sprite: self.sprite.clone(),
            sprite_id: self.sprite_id.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            stdout: self.stdout.clone(),
            stderr: self.stderr.clone(),
            stdin: Input::Closed,
            last_status: self.last_status,
            shell: Shell { locals: Vec::new(), ..self.shell.clone() },
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).or_else(|| self.shell.vars.get(name)).map(String::as_str)
    }

    /// Assigns a shell variable; it stays exported if it was, and is exported under `set -a`.
    pub fn set_var(&mut self, name: &str, value: String) {
        if self.env.contains_key(name) || self.shell.opts.allexport {
            self.shell.vars.remove(name);
            self.env.insert(name.to_string(), value);
        } else {
            self.shell.vars.insert(name.to_string(), value);
        }
    }

    pub fn export(&mut self, name: &str, value: Option<String>) {
        let value = value.or_else(|| self.shell.vars.remove(name)).or_else(|| self.env.get(name).cloned());
        self.shell.vars.remove(name);
        self.env.insert(name.to_string(), value.unwrap_or_default());
    }

    pub fn unset_var(&mut self, name: &str) {
        self.shell.vars.remove(name);
        self.env.remove(name);
    }

    /// `local NAME`: remembers the current value so the function's return restores it.
    pub fn make_local(&mut self, name: &str) -> bool {
        let old = match (self.env.get(name), self.shell.vars.get(name)) {
            (Some(v), _) => Some((v.clone(), true)),
            (None, Some(v)) => Some((v.clone(), false)),
            (None, None) => None,
        };
        match self.shell.locals.last_mut() {
            Some(frame) => {
                if !frame.iter().any(|(n, _)| n == name) {
                    frame.push((name.to_string(), old));
                }
                true
            }
            None => false,
        }
    }

    pub fn pop_locals(&mut self) {
        if let Some(frame) = self.shell.locals.pop() {
            for (name, old) in frame.into_iter().rev() {
                self.shell.vars.remove(&name);
                self.env.remove(&name);
                match old {
                    Some((v, true)) => {
                        self.env.insert(name, v);
                    }
                    Some((v, false)) => {
                        self.shell.vars.insert(name, v);
                    }
                    None => {}
                }
            }
        }
    }

    /// Prints why the emulator cannot run something and ends the shell with status 2, the way
    /// bash ends on a syntax error: never pretend it worked.
    pub fn unsupported(&self, what: impl std::fmt::Display) -> Flow {
        self.err(format!("bash: emulator: unsupported shell syntax: {what}\n"));
        Flow::Exit(2)
    }
}

pub fn errno_text(e: &FsError) -> &'static str {
    match e.code {
        "ENOENT" => "No such file or directory",
        "EISDIR" => "Is a directory",
        "ENOTDIR" => "Not a directory",
        "EEXIST" => "File exists",
        "ENOTEMPTY" => "Directory not empty",
        "EINVAL" => "Invalid argument",
        _ => "Input/output error",
    }
}

/// `NAME=VALUE` split, if `word` is one.
pub fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    valid_name(name).then_some((name, value))
}

pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
