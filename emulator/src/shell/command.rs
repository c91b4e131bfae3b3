//! One simple command: expand its words, apply its redirections and assignments, run it.

use brush_parser::ast::{
    Assignment, AssignmentName, AssignmentValue, CommandPrefixOrSuffixItem, IoRedirect, SimpleCommand,
};

use super::ctx::{Ctx, Status};
use super::{expand, redirect};

pub async fn simple(ctx: &mut Ctx, cmd: &SimpleCommand) -> Status {
    let mut assigns: Vec<&Assignment> = Vec::new();
    let mut redirects: Vec<&IoRedirect> = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    let prefix = cmd.prefix.iter().flat_map(|p| p.0.iter());
    let suffix = cmd.suffix.iter().flat_map(|s| s.0.iter());
    for item in prefix {
        match item {
            CommandPrefixOrSuffixItem::AssignmentWord(a, _) => assigns.push(a),
            CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
            CommandPrefixOrSuffixItem::Word(w) => words.push(&w.value),
            CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
                return Err(ctx.unsupported("process substitution"));
            }
        }
    }
    if let Some(w) = &cmd.word_or_name {
        words.push(&w.value);
    }
    for item in suffix {
        match item {
            CommandPrefixOrSuffixItem::IoRedirect(r) => redirects.push(r),
            // After the command name `A=b` is an ordinary argument (`export A=b`).
            CommandPrefixOrSuffixItem::Word(w) | CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                words.push(&w.value)
            }
            CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
                return Err(ctx.unsupported("process substitution"));
            }
        }
    }

    // `$?` after a command of only assignments is that of its last `$(…)`, else 0.
    ctx.shell.subst_status = None;
    let mut argv = Vec::new();
    for w in words {
        argv.extend(expand::fields(ctx, w).await?);
    }
    let Some(saved) = redirect::apply(ctx, &redirects).await? else {
        return Ok(1);
    };
    let mut values = Vec::new();
    for a in &assigns {
        let name = match &a.name {
            AssignmentName::VariableName(n) => n.clone(),
            AssignmentName::ArrayElementName(n, _) => {
                redirect::restore(ctx, saved);
                return Err(ctx.unsupported(format!("array element assignment to {n}")));
            }
        };
        let value = match &a.value {
            AssignmentValue::Scalar(w) => match expand::string(ctx, &w.value).await {
                Ok(v) => v,
                Err(flow) => {
                    redirect::restore(ctx, saved);
                    return Err(flow);
                }
            },
            AssignmentValue::Array(_) => {
                redirect::restore(ctx, saved);
                return Err(ctx.unsupported(format!("array assignment to {name}")));
            }
        };
        let value = if a.append { format!("{}{value}", ctx.var(&name).unwrap_or("")) } else { value };
        values.push((name, value));
    }

    // `exec >log 2>&1`: the redirections stay for the rest of the shell.
    if argv.len() == 1 && argv[0] == "exec" {
        drop(saved);
        return Ok(0);
    }
    let result = if argv.is_empty() {
        for (name, value) in values {
            ctx.set_var(&name, value);
        }
        Ok(ctx.shell.subst_status.unwrap_or(0))
    } else if values.is_empty() {
        ctx.run_argv(argv).await
    } else {
        // `NAME=VALUE cmd`: exported to that one command only; what the command itself
        // sets (`IFS= read -r line`) stays.
        let mut before = Vec::new();
        for (name, value) in values {
            before.push((name.clone(), ctx.env.get(&name).cloned(), ctx.shell.vars.remove(&name)));
            ctx.env.insert(name, value);
        }
        let r = ctx.run_argv(argv).await;
        for (name, env, var) in before {
            ctx.env.remove(&name);
            if let Some(v) = env {
                ctx.env.insert(name.clone(), v);
            }
            if let Some(v) = var {
                ctx.shell.vars.insert(name, v);
            }
        }
        r
    };
    redirect::restore(ctx, saved);
    result
}
