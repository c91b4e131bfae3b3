//! Refuses, before anything runs, the constructs of a parsed script the interpreter does not
//! implement, so an unsupported script fails as a whole (as on a bash syntax error) rather than
//! half-way. Words are checked when they are expanded (expand.rs).

use brush_parser::ast::{
    AndOr, AndOrList, Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, Pipeline, Program, RedirectList, SeparatorOperator,
};

type Res = Result<(), String>;

pub fn program(p: &Program) -> Res {
    p.complete_commands.iter().try_for_each(list)
}

fn list(l: &CompoundList) -> Res {
    for item in &l.0 {
        if matches!(item.1, SeparatorOperator::Async) {
            return Err("background jobs (&)".into());
        }
        and_or(&item.0)?;
    }
    Ok(())
}

fn and_or(a: &AndOrList) -> Res {
    pipeline(&a.first)?;
    a.additional.iter().try_for_each(|x| match x {
        AndOr::And(p) | AndOr::Or(p) => pipeline(p),
    })
}

fn pipeline(p: &Pipeline) -> Res {
    if p.timed.is_some() {
        return Err("time".into());
    }
    p.seq.iter().try_for_each(command)
}

fn command(c: &Command) -> Res {
    match c {
        Command::Simple(s) => {
            let items =
                s.prefix.iter().flat_map(|p| p.0.iter()).chain(s.suffix.iter().flat_map(|x| x.0.iter()));
            for item in items {
                match item {
                    CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
                        return Err("process substitution".into());
                    }
                    CommandPrefixOrSuffixItem::IoRedirect(r) => redirect(r)?,
                    _ => {}
                }
            }
            Ok(())
        }
        Command::Compound(cc, r) => {
            compound(cc)?;
            redirects(r.as_ref())
        }
        Command::Function(f) => {
            compound(&f.body.0)?;
            redirects(f.body.1.as_ref())
        }
        Command::ExtendedTest(_, r) => redirects(r.as_ref()),
    }
}

fn compound(c: &CompoundCommand) -> Res {
    match c {
        CompoundCommand::BraceGroup(b) => list(&b.list),
        CompoundCommand::Subshell(s) => list(&s.list),
        CompoundCommand::ForClause(f) => list(&f.body.list),
        CompoundCommand::WhileClause(w) | CompoundCommand::UntilClause(w) => {
            list(&w.0)?;
            list(&w.1.list)
        }
        CompoundCommand::IfClause(i) => {
            list(&i.condition)?;
            list(&i.then)?;
            for e in i.elses.iter().flatten() {
                if let Some(cond) = &e.condition {
                    list(cond)?;
                }
                list(&e.body)?;
            }
            Ok(())
        }
        CompoundCommand::CaseClause(c) => c.cases.iter().filter_map(|i| i.cmd.as_ref()).try_for_each(list),
        CompoundCommand::Arithmetic(a) => Err(format!("arithmetic (({}))", a.expr.value)),
        CompoundCommand::ArithmeticForClause(_) => Err("arithmetic for ((;;))".into()),
        CompoundCommand::Coprocess(_) => Err("coproc".into()),
    }
}

fn redirects(r: Option<&RedirectList>) -> Res {
    r.iter().flat_map(|l| l.0.iter()).try_for_each(redirect)
}

fn redirect(r: &IoRedirect) -> Res {
    let fd = match r {
        IoRedirect::File(fd, kind, target) => {
            if matches!(target, IoFileRedirectTarget::ProcessSubstitution(..)) {
                return Err("process substitution".into());
            }
            if matches!(kind, IoFileRedirectKind::ReadAndWrite) {
                return Err("redirection ReadAndWrite".into());
            }
            *fd
        }
        IoRedirect::HereDocument(fd, _) | IoRedirect::HereString(fd, _) => fd.filter(|f| *f != 0),
        IoRedirect::OutputAndError(..) => None,
    };
    match fd {
        Some(n) if !(0..=2).contains(&n) => Err(format!("redirecting fd {n}")),
        _ => Ok(()),
    }
}
