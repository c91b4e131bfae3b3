//! `test` and `[`: the expression is parsed by brush-parser's test grammar and evaluated on
//! the Sprite's filesystem. Predicates the emulator cannot answer are refused (status 2).

use brush_parser::ast::{BinaryPredicate, TestExpr, UnaryPredicate};

use super::super::ctx::Ctx;

pub fn test(ctx: &mut Ctx, args: &[String]) -> u8 {
    run(ctx, "test", args)
}

pub fn bracket(ctx: &mut Ctx, args: &[String]) -> u8 {
    match args.split_last() {
        Some((last, inner)) if last == "]" => run(ctx, "[", inner),
        _ => {
            ctx.err("bash: [: missing `]'\n");
            2
        }
    }
}

fn run(ctx: &Ctx, tool: &str, args: &[String]) -> u8 {
    let expr = match brush_parser::test_command::parse(args) {
        Ok(e) => e,
        Err(_) => {
            ctx.err(format!("bash: {tool}: {}: syntax error in expression\n", args.join(" ")));
            return 2;
        }
    };
    match eval(ctx, &expr) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(msg) => {
            ctx.err(format!("bash: {tool}: {msg}\n"));
            2
        }
    }
}

fn eval(ctx: &Ctx, e: &TestExpr) -> Result<bool, String> {
    Ok(match e {
        TestExpr::False => false,
        TestExpr::Literal(s) => !s.is_empty(),
        TestExpr::And(a, b) => eval(ctx, a)? && eval(ctx, b)?,
        TestExpr::Or(a, b) => eval(ctx, a)? || eval(ctx, b)?,
        TestExpr::Not(a) => !eval(ctx, a)?,
        TestExpr::Parenthesized(a) => eval(ctx, a)?,
        TestExpr::UnaryTest(p, s) => unary(ctx, p, s)?,
        TestExpr::BinaryTest(p, a, b) => binary(p, a, b)?,
    })
}

/// A unary predicate; also used by `[[ … ]]`.
pub fn unary(ctx: &Ctx, p: &UnaryPredicate, operand: &str) -> Result<bool, String> {
    let path = ctx.path(operand);
    let node = || ctx.fs(|f| f.get(&path).cloned());
    Ok(match p {
        UnaryPredicate::StringHasZeroLength => operand.is_empty(),
        UnaryPredicate::StringHasNonZeroLength => !operand.is_empty(),
        UnaryPredicate::FileExists => node().is_some(),
        UnaryPredicate::FileExistsAndIsRegularFile => node().is_some_and(|n| !n.is_dir()),
        UnaryPredicate::FileExistsAndIsDir => node().is_some_and(|n| n.is_dir()),
        UnaryPredicate::FileExistsAndIsNotZeroLength => node().is_some_and(|n| !n.is_dir() && n.size() > 0),
        // The exec user owns everything it can see: existing means readable and writable.
        UnaryPredicate::FileExistsAndIsReadable | UnaryPredicate::FileExistsAndIsWritable => node().is_some(),
        UnaryPredicate::FileExistsAndIsExecutable => node().is_some_and(|n| n.mode() & 0o111 != 0),
        // The simulated filesystem has no symlinks, fifos, sockets or devices.
        UnaryPredicate::FileExistsAndIsSymlink
        | UnaryPredicate::FileExistsAndIsFifo
        | UnaryPredicate::FileExistsAndIsSocket
        | UnaryPredicate::FileExistsAndIsBlockSpecialFile
        | UnaryPredicate::FileExistsAndIsCharSpecialFile => false,
        UnaryPredicate::FileExistsAndIsSetuid => node().is_some_and(|n| n.mode() & 0o4000 != 0),
        UnaryPredicate::FileExistsAndIsSetgid => node().is_some_and(|n| n.mode() & 0o2000 != 0),
        UnaryPredicate::FileExistsAndHasStickyBit => node().is_some_and(|n| n.mode() & 0o1000 != 0),
        UnaryPredicate::ShellVariableIsSetAndAssigned => ctx.var(operand).is_some(),
        other => return Err(format!("emulator: unsupported test {other:?}")),
    })
}

/// A binary predicate on strings or integers; also used by `[[ … ]]`.
pub fn binary(p: &BinaryPredicate, a: &str, b: &str) -> Result<bool, String> {
    let num = |s: &str| s.trim().parse::<i64>().map_err(|_| format!("{s}: integer expression expected"));
    Ok(match p {
        BinaryPredicate::StringExactlyMatchesString => a == b,
        BinaryPredicate::StringDoesNotExactlyMatchString => a != b,
        BinaryPredicate::LeftSortsBeforeRight => a < b,
        BinaryPredicate::LeftSortsAfterRight => a > b,
        BinaryPredicate::ArithmeticEqualTo => num(a)? == num(b)?,
        BinaryPredicate::ArithmeticNotEqualTo => num(a)? != num(b)?,
        BinaryPredicate::ArithmeticLessThan => num(a)? < num(b)?,
        BinaryPredicate::ArithmeticLessThanOrEqualTo => num(a)? <= num(b)?,
        BinaryPredicate::ArithmeticGreaterThan => num(a)? > num(b)?,
        BinaryPredicate::ArithmeticGreaterThanOrEqualTo => num(a)? >= num(b)?,
        other => return Err(format!("emulator: unsupported test {other:?}")),
    })
}
