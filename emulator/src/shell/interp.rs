//! The interpreter: lists, `&&`/`||`, pipelines (stages run concurrently, joined by pipes),
//! compound commands (`if`, `for`, `while`/`until`, `case`, `{ }`, `( )`, `[[ ]]`),
//! functions, `set -e`/`pipefail`, and finding what a command name runs.

use std::sync::Arc;

use brush_parser::ast::{
    self, AndOr, AndOrList, BinaryPredicate, CompoundCommand, CompoundList, ExtendedTestExpr, Pipeline,
    SeparatorOperator,
};
use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::builtins::{self, Found};
use super::ctx::{BoxFut, Ctx, Flow, Status};
use super::io::{Input, Sink};
use super::tools::{self, grep::posix_to_regex};
use super::{check, command, expand, parse, redirect, shells};

/// Nesting of scripts and function calls beyond which the emulator refuses to go: every level
/// is a future polled inside its parent's, and a runaway recursion (which would overflow
/// bash's stack too) must not overflow the emulator's.
const MAX_DEPTH: usize = 50;

/// Parses and runs a script in `ctx`. A script bash could not parse is status 2 and runs
/// nothing, as with bash.
pub fn run_script<'a>(ctx: &'a mut Ctx, src: &'a str) -> BoxFut<'a> {
    Box::pin(async move {
        let program = match parse::program(src) {
            Ok(p) => p,
            Err(e) => {
                ctx.err(format!("bash: syntax error: {e}\n"));
                return Ok(2);
            }
        };
        if let Err(what) = check::program(&program) {
            return Err(ctx.unsupported(what));
        }
        if ctx.shell.depth >= MAX_DEPTH {
            ctx.err(format!("bash: emulator: scripts nested more than {MAX_DEPTH} deep\n"));
            return Err(Flow::Exit(2));
        }
        ctx.shell.depth += 1;
        let mut status = Ok(0);
        for list in &program.complete_commands {
            status = compound_list(ctx, list).await;
            if status.is_err() {
                break;
            }
        }
        ctx.shell.depth -= 1;
        status
    })
}

/// Runs a command line already split into words: a function, builtin, file or tool.
pub fn run_argv(ctx: &mut Ctx, argv: Vec<String>) -> BoxFut<'_> {
    Box::pin(async move {
        // A loop of builtins never waits on anything: give the runtime (and a kill) a turn.
        tokio::task::coop::consume_budget().await;
        let name = argv[0].clone();
        match builtins::lookup(ctx, &name) {
            Some(Found::Function) => call_function(ctx, &name, &argv).await,
            Some(Found::Builtin(b)) => b(ctx, &argv[1..]).await,
            Some(Found::File(path)) => shells::run_file(ctx, &path, &argv).await,
            Some(Found::Tool(_, tool)) => Ok(tool(ctx, &argv[1..]).await),
            Some(Found::Unimplemented) => {
                ctx.err(format!("bash: {name}: emulator: this builtin is not implemented\n"));
                Ok(2)
            }
            None if name.contains('/') => {
                ctx.err(format!("bash: {name}: No such file or directory\n"));
                Ok(127)
            }
            None => {
                ctx.err(format!("bash: {name}: command not found\n"));
                Ok(127)
            }
        }
    })
}

async fn call_function(ctx: &mut Ctx, name: &str, argv: &[String]) -> Status {
    let Some(def) = ctx.shell.functions.get(name).cloned() else {
        return Ok(127);
    };
    if ctx.shell.depth >= MAX_DEPTH {
        ctx.err(format!("bash: {name}: maximum function nesting level exceeded ({MAX_DEPTH})\n"));
        return Err(Flow::Exit(1));
    }
    ctx.shell.depth += 1;
    let saved_args = std::mem::replace(&mut ctx.shell.args, argv[1..].to_vec());
    ctx.shell.locals.push(Vec::new());
    let ast::FunctionBody(body, redirects) = &def.body;
    let result = with_redirects(ctx, redirects.as_ref(), body).await;
    ctx.pop_locals();
    ctx.shell.args = saved_args;
    ctx.shell.depth -= 1;
    match result {
        Err(Flow::Return(c)) => Ok(c),
        other => other,
    }
}

fn compound_list<'a>(ctx: &'a mut Ctx, list: &'a CompoundList) -> BoxFut<'a> {
    Box::pin(async move {
        let mut status = ctx.last_status;
        for ast::CompoundListItem(and_or_list, sep) in &list.0 {
            if matches!(sep, SeparatorOperator::Async) {
                return Err(ctx.unsupported("background jobs (&)"));
            }
            status = and_or(ctx, and_or_list).await?;
        }
        Ok(status)
    })
}

async fn and_or(ctx: &mut Ctx, list: &AndOrList) -> Status {
    let n = list.additional.len();
    let mut status = pipeline_exempt(ctx, &list.first, n > 0).await?;
    let mut last: Option<&Pipeline> = Some(&list.first).filter(|_| n == 0);
    for (i, item) in list.additional.iter().enumerate() {
        let (run, p) = match item {
            AndOr::And(p) => (status == 0, p),
            AndOr::Or(p) => (status != 0, p),
        };
        if run {
            status = pipeline_exempt(ctx, p, i + 1 < n).await?;
            last = Some(p).filter(|_| i + 1 == n);
        }
    }
    ctx.last_status = status;
    // `set -e` ends the shell only when the last pipeline of the list ran and failed.
    let errexit = ctx.shell.opts.errexit && ctx.shell.errexit_off == 0;
    if status != 0 && errexit && last.is_some_and(|p| !p.bang) {
        return Err(Flow::Exit(status));
    }
    Ok(status)
}

async fn pipeline_exempt(ctx: &mut Ctx, p: &Pipeline, exempt: bool) -> Status {
    let off = u32::from(exempt || p.bang);
    ctx.shell.errexit_off += off;
    let r = pipeline(ctx, p).await;
    ctx.shell.errexit_off -= off;
    let status = r?;
    let status = if p.bang { u8::from(status == 0) } else { status };
    ctx.last_status = status;
    Ok(status)
}

async fn pipeline(ctx: &mut Ctx, p: &Pipeline) -> Status {
    if p.timed.is_some() {
        return Err(ctx.unsupported("time"));
    }
    if let [only] = &p.seq[..] {
        return command(ctx, only).await;
    }
    // Each stage is a subshell; stage i writes into a pipe stage i+1 reads.
    let mut stages = Vec::new();
    let mut next_input = Some(std::mem::replace(&mut ctx.stdin, Input::Closed));
    for (i, cmd) in p.seq.iter().enumerate() {
        let mut sub = ctx.fork();
        sub.stdin = next_input.take().unwrap_or(Input::Closed);
        if i + 1 < p.seq.len() {
            let (tx, rx) = mpsc::unbounded_channel();
            sub.stdout = Sink::Pipe(tx);
            next_input = Some(Input::Live(rx));
        }
        stages.push(async move {
            let code = match command(&mut sub, cmd).await {
                Ok(c) | Err(Flow::Exit(c) | Flow::Return(c)) => c,
                Err(Flow::Break(_) | Flow::Continue(_)) => 0,
            };
            let input = std::mem::replace(&mut sub.stdin, Input::Closed);
            // Dropping the stage closes its pipe: the next stage sees end of input.
            drop(sub);
            (code, input)
        });
    }
    let results = join_all(stages).await;
    let mut results = results.into_iter();
    if let Some((first, input)) = results.next() {
        ctx.stdin = input;
        let codes: Vec<u8> = std::iter::once(first).chain(results.map(|(c, _)| c)).collect();
        let last = *codes.last().unwrap_or(&0);
        let status = if ctx.shell.opts.pipefail {
            codes.iter().rev().copied().find(|c| *c != 0).unwrap_or(0)
        } else {
            last
        };
        return Ok(status);
    }
    Ok(0)
}

fn command<'a>(ctx: &'a mut Ctx, cmd: &'a ast::Command) -> BoxFut<'a> {
    Box::pin(async move {
        match cmd {
            ast::Command::Simple(s) => command::simple(ctx, s).await,
            ast::Command::Compound(c, redirects) => with_redirects(ctx, redirects.as_ref(), c).await,
            ast::Command::Function(def) => {
                ctx.shell.functions.insert(def.fname.value.clone(), Arc::new(def.clone()));
                Ok(0)
            }
            ast::Command::ExtendedTest(t, redirects) => {
                let Some(saved) = apply(ctx, redirects.as_ref()).await? else { return Ok(1) };
                let r = match extended_test(ctx, &t.expr).await {
                    Ok(Ok(b)) => Ok(u8::from(!b)),
                    Ok(Err(msg)) => {
                        ctx.err(format!("bash: [[: {msg}\n"));
                        Ok(2)
                    }
                    Err(flow) => Err(flow),
                };
                redirect::restore(ctx, saved);
                r
            }
        }
    })
}

async fn apply(
    ctx: &mut Ctx,
    redirects: Option<&ast::RedirectList>,
) -> Result<Option<redirect::Saved>, Flow> {
    let list: Vec<&ast::IoRedirect> = redirects.iter().flat_map(|r| r.0.iter()).collect();
    redirect::apply(ctx, &list).await
}

async fn with_redirects(ctx: &mut Ctx, redirects: Option<&ast::RedirectList>, c: &CompoundCommand) -> Status {
    let Some(saved) = apply(ctx, redirects).await? else { return Ok(1) };
    let r = compound(ctx, c).await;
    redirect::restore(ctx, saved);
    r
}

/// Runs a loop body; Some(result) when the loop must stop (break, or a flow for an outer one).
fn loop_flow(r: Status, status: &mut u8) -> Option<Status> {
    match r {
        Ok(c) => {
            *status = c;
            None
        }
        // `break` itself succeeds, and it is the last command the loop ran.
        Err(Flow::Break(1)) => Some(Ok(0)),
        Err(Flow::Break(n)) => Some(Err(Flow::Break(n - 1))),
        Err(Flow::Continue(1)) => None,
        Err(Flow::Continue(n)) => Some(Err(Flow::Continue(n - 1))),
        Err(other) => Some(Err(other)),
    }
}

async fn condition(ctx: &mut Ctx, list: &CompoundList) -> Result<bool, Flow> {
    ctx.shell.errexit_off += 1;
    let r = compound_list(ctx, list).await;
    ctx.shell.errexit_off -= 1;
    Ok(r? == 0)
}

fn compound<'a>(ctx: &'a mut Ctx, c: &'a CompoundCommand) -> BoxFut<'a> {
    Box::pin(async move {
        match c {
            CompoundCommand::BraceGroup(b) => compound_list(ctx, &b.list).await,
            CompoundCommand::Subshell(s) => {
                let mut sub = ctx.fork();
                sub.stdin = std::mem::replace(&mut ctx.stdin, Input::Closed);
                let code = match compound_list(&mut sub, &s.list).await {
                    Ok(c) | Err(Flow::Exit(c) | Flow::Return(c)) => c,
                    Err(Flow::Break(_) | Flow::Continue(_)) => 0,
                };
                ctx.stdin = std::mem::replace(&mut sub.stdin, Input::Closed);
                Ok(code)
            }
            CompoundCommand::IfClause(i) => {
                if condition(ctx, &i.condition).await? {
                    return compound_list(ctx, &i.then).await;
                }
                for e in i.elses.iter().flatten() {
                    let take = match &e.condition {
                        Some(cond) => condition(ctx, cond).await?,
                        None => true,
                    };
                    if take {
                        return compound_list(ctx, &e.body).await;
                    }
                }
                Ok(0)
            }
            CompoundCommand::ForClause(f) => {
                let values = match &f.values {
                    None => ctx.shell.args.clone(),
                    Some(words) => {
                        let mut all = Vec::new();
                        for w in words {
                            all.extend(expand::fields(ctx, &w.value).await?);
                        }
                        all
                    }
                };
                let mut status = 0;
                for v in values {
                    ctx.set_var(&f.variable_name, v);
                    if let Some(done) = loop_flow(compound_list(ctx, &f.body.list).await, &mut status) {
                        return done;
                    }
                }
                Ok(status)
            }
            CompoundCommand::WhileClause(ast::WhileOrUntilClauseCommand(cond, body, _))
            | CompoundCommand::UntilClause(ast::WhileOrUntilClauseCommand(cond, body, _)) => {
                let until = matches!(c, CompoundCommand::UntilClause(_));
                let mut status = 0;
                while condition(ctx, cond).await? != until {
                    if let Some(done) = loop_flow(compound_list(ctx, &body.list).await, &mut status) {
                        return done;
                    }
                }
                Ok(status)
            }
            CompoundCommand::CaseClause(case) => {
                let value = expand::string(ctx, &case.value.value).await?;
                let mut falling = false;
                let mut status = 0;
                for item in &case.cases {
                    let mut hit = falling;
                    for p in &item.patterns {
                        if hit {
                            break;
                        }
                        let pat = expand::pattern(ctx, &p.value).await?;
                        let re = parse::pattern_regex(&pat)
                            .map_err(|e| ctx.unsupported(format!("pattern {pat:?}: {e}")))?;
                        hit = re.is_match(&value);
                    }
                    if !hit {
                        continue;
                    }
                    if let Some(body) = &item.cmd {
                        status = compound_list(ctx, body).await?;
                    }
                    match item.post_action {
                        ast::CaseItemPostAction::ExitCase => return Ok(status),
                        ast::CaseItemPostAction::UnconditionallyExecuteNextCaseItem => falling = true,
                        ast::CaseItemPostAction::ContinueEvaluatingCases => falling = false,
                    }
                }
                Ok(status)
            }
            CompoundCommand::Arithmetic(a) => {
                Err(ctx.unsupported(format!("arithmetic (({}))", a.expr.value)))
            }
            CompoundCommand::ArithmeticForClause(_) => Err(ctx.unsupported("arithmetic for ((;;))")),
            CompoundCommand::Coprocess(_) => Err(ctx.unsupported("coproc")),
        }
    })
}

/// `[[ … ]]`: Ok(Err(msg)) for an expression bash would reject (status 2).
fn extended_test<'a>(
    ctx: &'a mut Ctx,
    e: &'a ExtendedTestExpr,
) -> BoxFut<'a, Result<Result<bool, String>, Flow>> {
    Box::pin(async move {
        Ok(match e {
            ExtendedTestExpr::And(a, b) => match extended_test(ctx, a).await? {
                Ok(true) => extended_test(ctx, b).await?,
                other => other,
            },
            ExtendedTestExpr::Or(a, b) => match extended_test(ctx, a).await? {
                Ok(false) => extended_test(ctx, b).await?,
                other => other,
            },
            ExtendedTestExpr::Not(a) => extended_test(ctx, a).await?.map(|b| !b),
            ExtendedTestExpr::Parenthesized(a) => extended_test(ctx, a).await?,
            ExtendedTestExpr::UnaryTest(p, w) => {
                let v = expand::string(ctx, &w.value).await?;
                tools::test_unary(ctx, p, &v)
            }
            ExtendedTestExpr::BinaryTest(p, l, r) => {
                let left = expand::string(ctx, &l.value).await?;
                match p {
                    BinaryPredicate::StringExactlyMatchesPattern
                    | BinaryPredicate::StringDoesNotExactlyMatchPattern => {
                        let pat = expand::pattern(ctx, &r.value).await?;
                        let want = matches!(p, BinaryPredicate::StringExactlyMatchesPattern);
                        parse::pattern_regex(&pat).map(|re| re.is_match(&left) == want)
                    }
                    BinaryPredicate::StringMatchesRegex => {
                        let re = expand::string(ctx, &r.value).await?;
                        regex::Regex::new(&posix_to_regex(&re, true))
                            .map(|re| re.is_match(&left))
                            .map_err(|e| e.to_string())
                    }
                    _ => {
                        let right = expand::string(ctx, &r.value).await?;
                        tools::test_binary(p, &left, &right)
                    }
                }
            }
        })
    })
}
