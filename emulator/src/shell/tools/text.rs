//! Text tools: echo, printf, head, tail, wc.

use super::super::ctx::{Ctx, errno_text};
use super::args;

pub fn echo(ctx: &mut Ctx, args: &[String]) -> u8 {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    // Like bash's echo: leading words made only of n/e/E letters are options, anything
    // else (including an unknown letter) is text.
    while let Some(a) = args.get(i) {
        let Some(letters) =
            a.strip_prefix('-').filter(|l| !l.is_empty() && l.chars().all(|c| "neE".contains(c)))
        else {
            break;
        };
        for c in letters.chars() {
            match c {
                'n' => newline = false,
                'e' => escapes = true,
                _ => escapes = false,
            }
        }
        i += 1;
    }
    let mut s = args[i..].join(" ");
    if escapes {
        let (text, stop) = backslash_escapes(&s);
        s = text;
        if stop {
            newline = false;
        }
    }
    if newline {
        s.push('\n');
    }
    ctx.out(s);
    0
}

/// `\n`, `\t`, `\\`, octal `\0NNN` and friends; `\c` stops output (the flag).
fn backslash_escapes(s: &str) -> (String, bool) {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('a') => out.push('\x07'),
            Some('b') => out.push('\x08'),
            Some('e') => out.push('\x1b'),
            Some('f') => out.push('\x0c'),
            Some('v') => out.push('\x0b'),
            Some('\\') => out.push('\\'),
            Some('c') => return (out, true),
            Some('0') => {
                let mut n = 0u32;
                for _ in 0..3 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            n = n * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(n).unwrap_or('\0'));
            }
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    (out, false)
}

/// `printf FORMAT [ARG…]`: `%s %b %d %i %u %x %X %o %c %%` with flags `-0`, width and
/// precision; the format is reused while arguments remain, as in bash.
pub fn printf(ctx: &mut Ctx, args: &[String]) -> u8 {
    let args = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        Some("-v") => return args::refuse(ctx, "printf", "-v"),
        _ => args,
    };
    let Some((format, mut rest)) = args.split_first() else {
        ctx.err("printf: usage: printf format [arguments]\n");
        return 2;
    };
    let (format, _) = backslash_escapes(format);
    let mut out = String::new();
    let mut code = 0;
    loop {
        let before = rest.len();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut spec = String::new();
            while let Some(&f) = chars.peek().filter(|f| "-0+ #".contains(**f)) {
                spec.push(f);
                chars.next();
            }
            let mut width = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                width.push(d);
                chars.next();
            }
            let mut precision = None;
            if chars.peek() == Some(&'.') {
                chars.next();
                let mut p = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    p.push(d);
                    chars.next();
                }
                precision = Some(p.parse::<usize>().unwrap_or(0));
            }
            let conv = chars.next();
            if conv == Some('%') {
                out.push('%');
                continue;
            }
            let arg = rest.first().cloned();
            if arg.is_some() {
                rest = &rest[1..];
            }
            let arg = arg.unwrap_or_default();
            let body = match conv {
                Some('s') => precision.map_or(arg.clone(), |p| arg.chars().take(p).collect()),
                Some('b') => backslash_escapes(&arg).0,
                Some('c') => arg.chars().next().map(String::from).unwrap_or_default(),
                Some(k @ ('d' | 'i' | 'u' | 'x' | 'X' | 'o')) => {
                    let n = if arg.is_empty() { Some(0) } else { arg.trim().parse::<i64>().ok() };
                    let n = n.unwrap_or_else(|| {
                        ctx.err(format!("bash: printf: {arg}: invalid number\n"));
                        code = 1;
                        0
                    });
                    match k {
                        'x' => format!("{n:x}"),
                        'X' => format!("{n:X}"),
                        'o' => format!("{n:o}"),
                        _ => n.to_string(),
                    }
                }
                other => {
                    let what = other.map(|c| format!("%{c}")).unwrap_or_else(|| "%".into());
                    return args::refuse(ctx, "printf", &what);
                }
            };
            let width: usize = width.parse().unwrap_or(0);
            let pad = width.saturating_sub(body.chars().count());
            if spec.contains('-') {
                out.push_str(&body);
                out.push_str(&" ".repeat(pad));
            } else if spec.contains('0') && matches!(conv, Some('d' | 'i' | 'u' | 'x' | 'X' | 'o')) {
                let (sign, digits) = body.strip_prefix('-').map_or(("", body.as_str()), |d| ("-", d));
                out.push_str(sign);
                out.push_str(&"0".repeat(pad));
                out.push_str(digits);
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(&body);
            }
        }
        if rest.is_empty() || rest.len() == before {
            break;
        }
    }
    ctx.out(out);
    code
}

/// Input for head/tail/wc: the named files in turn, or stdin. Err after a message.
async fn inputs(ctx: &mut Ctx, tool: &str, operands: &[String]) -> Vec<Result<(String, Vec<u8>), ()>> {
    if operands.is_empty() {
        return vec![Ok(("-".into(), ctx.stdin.read_all().await))];
    }
    let mut all = Vec::new();
    for op in operands {
        if op == "-" {
            all.push(Ok(("-".into(), ctx.stdin.read_all().await)));
            continue;
        }
        let path = ctx.path(op);
        match ctx.fs(|f| f.read(&path)) {
            Ok(data) => all.push(Ok((op.clone(), data.to_vec()))),
            Err(e) => {
                ctx.err(format!("{tool}: cannot open '{op}' for reading: {}\n", errno_text(&e)));
                all.push(Err(()));
            }
        }
    }
    all
}

/// `-5` is the old spelling of `-n 5`.
fn numeric_shorthand(args: &[String]) -> Vec<String> {
    args.iter()
        .flat_map(|a| match a.strip_prefix('-') {
            Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
                vec!["-n".to_string(), n.to_string()]
            }
            _ => vec![a.clone()],
        })
        .collect()
}

/// head and tail: `-n N` lines (tail also `-n +N`, from line N) or `-c N` bytes.
pub async fn head_tail(ctx: &mut Ctx, tool: &str, args: &[String]) -> u8 {
    let args = numeric_shorthand(args);
    let long = [("lines", 'n'), ("bytes", 'c'), ("quiet", 'q'), ("silent", 'q')];
    let p = match args::parse(ctx, tool, &args, "q", "nc", &long) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (bytes, spec) = match (p.value('c'), p.value('n')) {
        (Some(c), _) => (true, c.to_string()),
        (None, Some(n)) => (false, n.to_string()),
        (None, None) => (false, "10".to_string()),
    };
    let from_start = tool == "tail" && spec.starts_with('+');
    let Ok(count) = spec.trim_start_matches('+').parse::<usize>() else {
        ctx.err(format!("{tool}: invalid number of {}: '{spec}'\n", if bytes { "bytes" } else { "lines" }));
        return 1;
    };
    let many = p.operands.len() > 1 && !p.has('q');
    let mut code = 0;
    for (i, input) in inputs(ctx, tool, &p.operands).await.into_iter().enumerate() {
        let Ok((name, data)) = input else {
            code = 1;
            continue;
        };
        if many {
            ctx.out(format!("{}==> {name} <==\n", if i > 0 { "\n" } else { "" }));
        }
        // Cut points: every byte, or just after every newline.
        let ends: Vec<usize> = if bytes {
            (1..=data.len()).collect()
        } else {
            let mut e: Vec<usize> =
                data.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
            if data.last().is_some_and(|b| *b != b'\n') {
                e.push(data.len());
            }
            e
        };
        let slice = match (tool, from_start) {
            ("head", _) if count == 0 => &data[..0],
            ("head", _) => &data[..ends.get(count - 1).copied().unwrap_or(data.len())],
            (_, true) => {
                let skip = count.saturating_sub(1);
                &data[if skip == 0 { 0 } else { ends.get(skip - 1).copied().unwrap_or(data.len()) }..]
            }
            _ => {
                let n = ends.len();
                &data[if count >= n { 0 } else { ends[n - count - 1] }..]
            }
        };
        ctx.out(slice.to_vec());
    }
    code
}

/// `wc -l`, `-w` or `-c` (one count per input; no option at all is not implemented).
pub async fn wc(ctx: &mut Ctx, args: &[String]) -> u8 {
    let long = [("lines", 'l'), ("words", 'w'), ("bytes", 'c')];
    let p = match args::parse(ctx, "wc", args, "lwc", "", &long) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let which: Vec<char> = ['l', 'w', 'c'].into_iter().filter(|c| p.has(*c)).collect();
    let [kind] = which[..] else {
        return args::refuse(ctx, "wc", "(exactly one of -l, -w, -c is implemented)");
    };
    let mut code = 0;
    let mut counts = Vec::new();
    for input in inputs(ctx, "wc", &p.operands).await {
        let Ok((name, data)) = input else {
            code = 1;
            continue;
        };
        let n = match kind {
            'l' => data.iter().filter(|b| **b == b'\n').count(),
            'w' => String::from_utf8_lossy(&data).split_whitespace().count(),
            _ => data.len(),
        };
        counts.push((n, name));
    }
    let total: usize = counts.iter().map(|(n, _)| n).sum();
    let many = p.operands.len() > 1;
    // With several inputs GNU wc right-aligns the counts to the width of the total.
    let width = if many { total.to_string().len() } else { 0 };
    let mut out = String::new();
    for (n, name) in &counts {
        if p.operands.is_empty() {
            out.push_str(&format!("{n}\n"));
        } else {
            out.push_str(&format!("{n:>width$} {name}\n"));
        }
    }
    if many {
        out.push_str(&format!("{total} total\n"));
    }
    ctx.out(out);
    code
}
