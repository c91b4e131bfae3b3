//! chmod (octal and symbolic), find, and the small tools: basename, dirname, pwd, printenv,
//! sleep.

use std::time::Duration;

use super::super::ctx::{Ctx, errno_text};
use super::super::parse;
use super::args;
use crate::fs;

/// Applies a chmod MODE to `old`: octal, or symbolic clauses like `+x`, `u+rwx,go-w`, `a=r`.
/// None for a mode chmod would call invalid.
pub fn apply_mode(mode: &str, old: u32, is_dir: bool) -> Option<u32> {
    if !mode.is_empty() && mode.chars().all(|c| c.is_digit(8)) {
        return u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777);
    }
    let mut cur = old;
    for clause in mode.split(',') {
        let ops_at = clause.find(['+', '-', '='])?;
        let (who, mut ops) = clause.split_at(ops_at);
        let mut mask = 0u32;
        for w in who.chars() {
            mask |= match w {
                'u' => 0o4700,
                'g' => 0o2070,
                'o' => 0o1007,
                'a' => 0o7777,
                _ => return None,
            };
        }
        // No "who": all, except what the umask (022) masks.
        let umasked = who.is_empty();
        if umasked {
            mask = 0o7777;
        }
        while let Some(op) = ops.chars().next() {
            if !matches!(op, '+' | '-' | '=') {
                return None;
            }
            let perms_end = ops[1..].find(['+', '-', '=']).map_or(ops.len(), |i| i + 1);
            let mut bits = 0u32;
            for p in ops[1..perms_end].chars() {
                bits |= match p {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' if is_dir || cur & 0o111 != 0 => 0o111,
                    'X' => 0,
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return None,
                };
            }
            bits &= mask;
            if umasked {
                bits &= !0o022;
            }
            cur = match op {
                '+' => cur | bits,
                '-' => cur & !bits,
                _ => (cur & !mask) | bits,
            };
            ops = &ops[perms_end..];
        }
    }
    Some(cur)
}

fn looks_like_mode(a: &str) -> bool {
    a.len() > 1 && a.starts_with(['-', '+', '=']) && apply_mode(a, 0, false).is_some()
}

pub fn chmod(ctx: &mut Ctx, args: &[String]) -> u8 {
    // `chmod -x FILE`: a mode may start with '-', so take it out before the options.
    let mode_at = args.iter().position(|a| !a.starts_with('-') || looks_like_mode(a));
    let Some(mode_at) = mode_at else {
        ctx.err("chmod: missing operand\n");
        return 1;
    };
    let mode = args[mode_at].clone();
    let rest: Vec<String> =
        args.iter().enumerate().filter(|(i, _)| *i != mode_at).map(|(_, a)| a.clone()).collect();
    let p = match args::parse(ctx, "chmod", &rest, "R", "", &[("recursive", 'R')]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if apply_mode(&mode, 0o644, false).is_none() {
        ctx.err(format!("chmod: invalid mode: '{mode}'\n"));
        return 1;
    }
    if p.operands.is_empty() {
        ctx.err(format!("chmod: missing operand after '{mode}'\n"));
        return 1;
    }
    let mut code = 0;
    for op in &p.operands {
        let path = ctx.path(op);
        let r = ctx.fs(|f| {
            let mut targets = vec![path.clone()];
            if p.has('R') && f.get(&path).is_some_and(|n| n.is_dir()) {
                targets.extend(f.list(&path, true)?.into_iter().map(|e| e.path));
            }
            for t in targets {
                let node = f.get(&t).ok_or(fs::FsError { code: "ENOENT", path: t.clone() })?;
                let new = apply_mode(&mode, node.mode(), node.is_dir()).unwrap_or(node.mode());
                f.chmod(&t, new)?;
            }
            Ok::<(), fs::FsError>(())
        });
        if let Err(e) = r {
            ctx.err(format!("chmod: cannot access '{op}': {}\n", errno_text(&e)));
            code = 1;
        }
    }
    code
}

/// `find DIR… [-maxdepth N] [-name PAT] [-type f|d] [-print]`, every test ANDed.
pub fn find(ctx: &mut Ctx, args: &[String]) -> u8 {
    let start = args.iter().position(|a| a.starts_with('-')).unwrap_or(args.len());
    let mut roots: Vec<String> = args[..start].to_vec();
    if roots.is_empty() {
        roots.push(".".into());
    }
    let (mut name, mut kind, mut maxdepth) = (None, None, usize::MAX);
    let mut it = args[start..].iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned();
        match a.as_str() {
            "-name" => match value().map(|v| parse::pattern_regex(&v)) {
                Some(Ok(re)) => name = Some(re),
                _ => return args::refuse(ctx, "find", "-name without a valid pattern"),
            },
            "-type" => match value().as_deref() {
                Some("f") => kind = Some(false),
                Some("d") => kind = Some(true),
                other => return args::refuse(ctx, "find", &format!("-type {}", other.unwrap_or(""))),
            },
            "-maxdepth" => match value().and_then(|v| v.parse().ok()) {
                Some(n) => maxdepth = n,
                None => return args::refuse(ctx, "find", "-maxdepth without a number"),
            },
            "-print" => {}
            other => return args::refuse(ctx, "find", other),
        }
    }
    let mut code = 0;
    for root in roots {
        let base = ctx.path(&root);
        let found = ctx.fs(|f| {
            let node = f.get(&base)?;
            let mut out = vec![(root.clone(), node.is_dir(), 0usize)];
            if node.is_dir() {
                walk(f, &base, &root, 1, maxdepth, &mut out);
            }
            Some(out)
        });
        let Some(found) = found else {
            ctx.err(format!("find: '{root}': No such file or directory\n"));
            code = 1;
            continue;
        };
        let mut listing = String::new();
        for (shown, is_dir, _) in found {
            let base_name = if shown == root {
                fs::basename(&ctx.path(&shown)).to_string()
            } else {
                shown.rsplit('/').next().unwrap_or(&shown).to_string()
            };
            if name.as_ref().is_some_and(|re| !re.is_match(&base_name)) || kind.is_some_and(|k| k != is_dir) {
                continue;
            }
            listing.push_str(&shown);
            listing.push('\n');
        }
        ctx.out(listing);
    }
    code
}

/// Pre-order walk, children in name order, as printed paths joined onto `shown`.
fn walk(f: &fs::Fs, real: &str, shown: &str, depth: usize, max: usize, out: &mut Vec<(String, bool, usize)>) {
    if depth > max {
        return;
    }
    let Ok(entries) = f.list(real, false) else { return };
    for e in entries {
        let child =
            if shown.ends_with('/') { format!("{shown}{}", e.name) } else { format!("{shown}/{}", e.name) };
        out.push((child.clone(), e.is_dir, depth));
        if e.is_dir {
            walk(f, &e.path, &child, depth + 1, max, out);
        }
    }
}

pub fn basename(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "basename", args, "", "", &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(path) = p.operands.first() else {
        ctx.err("basename: missing operand\n");
        return 1;
    };
    let trimmed = path.trim_end_matches('/');
    let mut base =
        if trimmed.is_empty() && !path.is_empty() { "/" } else { trimmed.rsplit('/').next().unwrap_or("") }
            .to_string();
    if let Some(suffix) = p.operands.get(1)
        && base != *suffix
        && let Some(stripped) = base.strip_suffix(suffix.as_str())
    {
        base = stripped.to_string();
    }
    ctx.out(format!("{base}\n"));
    0
}

pub fn dirname(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "dirname", args, "", "", &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.operands.is_empty() {
        ctx.err("dirname: missing operand\n");
        return 1;
    }
    let mut out = String::new();
    for path in &p.operands {
        let trimmed = path.trim_end_matches('/');
        let dir = match trimmed.rfind('/') {
            _ if trimmed.is_empty() && path.starts_with('/') => "/",
            Some(i) => match trimmed[..i].trim_end_matches('/') {
                "" => "/",
                d => d,
            },
            None => ".",
        };
        out.push_str(dir);
        out.push('\n');
    }
    ctx.out(out);
    0
}

pub fn pwd(ctx: &mut Ctx, args: &[String]) -> u8 {
    if let Err(code) = args::parse(ctx, "pwd", args, "LP", "", &[]) {
        return code;
    }
    ctx.out(format!("{}\n", ctx.cwd));
    0
}

pub fn printenv(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "printenv", args, "", "", &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if p.operands.is_empty() {
        let all: String = ctx.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        ctx.out(all);
        return 0;
    }
    let mut code = 0;
    for name in &p.operands {
        match ctx.env.get(name) {
            Some(v) => ctx.out(format!("{v}\n")),
            None => code = 1,
        }
    }
    code
}

/// `sleep` takes real (unscaled) time: it is what the caller asked for, not a latency.
pub async fn sleep(ctx: &mut Ctx, args: &[String]) -> u8 {
    if args.is_empty() {
        ctx.err("sleep: missing operand\n");
        return 1;
    }
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
    tokio::time::sleep(Duration::from_secs_f64(total)).await;
    0
}
