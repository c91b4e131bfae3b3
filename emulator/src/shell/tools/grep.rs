//! grep and sed (substitutions), with POSIX basic and extended regexes mapped onto the regex
//! crate's syntax.

use bytes::Bytes;
use regex::bytes::{Regex, RegexBuilder};

use super::super::ctx::{Ctx, errno_text};
use super::args;

/// A POSIX regex (basic unless `extended`) in the regex crate's syntax. In a basic regex
/// `\(`, `\)`, `\{`, `\}`, `\+`, `\?`, `\|` are the operators and the bare characters are
/// literal; inside brackets a backslash is literal in POSIX but an escape for the crate.
pub fn posix_to_regex(re: &str, extended: bool) -> String {
    let chars: Vec<char> = re.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '[' => {
                let mut j = i + 1;
                out.push('[');
                if chars.get(j) == Some(&'^') {
                    out.push('^');
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    out.push_str("\\]");
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '[' && matches!(chars.get(j + 1), Some(':' | '.' | '=')) {
                        let close = chars[j + 2..].iter().position(|&c| c == ']').map(|p| j + 2 + p);
                        if let Some(end) = close {
                            out.extend(&chars[j..=end]);
                            j = end + 1;
                            continue;
                        }
                    }
                    if matches!(chars[j], '\\' | '[' | '&' | '~') {
                        out.push('\\');
                    }
                    out.push(chars[j]);
                    j += 1;
                }
                out.push(']');
                i = j + 1;
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                let n = chars[i + 1];
                i += 2;
                match n {
                    '(' | ')' | '{' | '}' | '+' | '?' | '|' if !extended => out.push(n),
                    n if n.is_ascii_alphanumeric() || "<>".contains(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    n => out.push_str(&regex::escape(&n.to_string())),
                }
                continue;
            }
            '(' | ')' | '{' | '}' | '+' | '?' | '|' if !extended => {
                out.push_str(&regex::escape(&c.to_string()))
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

fn build(ctx: &Ctx, tool: &str, pattern: &str, icase: bool) -> Result<Regex, u8> {
    RegexBuilder::new(pattern).case_insensitive(icase).build().map_err(|e| {
        ctx.err(format!("{tool}: emulator: cannot use regex {pattern:?}: {e}\n"));
        2
    })
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|b| *b == b'\n').take(if data.is_empty() { 0 } else { usize::MAX })
}

pub async fn grep(ctx: &mut Ctx, args: &[String]) -> u8 {
    let long = [("quiet", 'q'), ("silent", 'q'), ("invert-match", 'v'), ("count", 'c'), ("regexp", 'e')];
    let p = match args::parse(ctx, "grep", args, "qvEFcnixsl", "e", &long) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut operands = p.operands.clone();
    let patterns: Vec<String> = if p.has('e') {
        p.values('e').map(str::to_string).collect()
    } else if operands.is_empty() {
        ctx.err("Usage: grep [OPTION]... PATTERNS [FILE]...\n");
        return 2;
    } else {
        operands.remove(0).split('\n').map(str::to_string).collect()
    };
    let alternatives: Vec<String> = patterns
        .iter()
        .map(|pat| if p.has('F') { regex::escape(pat) } else { posix_to_regex(pat, p.has('E')) })
        .map(|re| if p.has('x') { format!("^(?:{re})$") } else { format!("(?:{re})") })
        .collect();
    let re = match build(ctx, "grep", &alternatives.join("|"), p.has('i')) {
        Ok(re) => re,
        Err(code) => return code,
    };
    let files = if operands.is_empty() { vec!["-".to_string()] } else { operands };
    let named = files.len() > 1;
    let (mut any, mut error) = (false, false);
    for f in &files {
        let data = if f == "-" {
            ctx.stdin.read_all().await.into()
        } else {
            let path = ctx.path(f);
            match ctx.fs(|fs| fs.read(&path)) {
                Ok(d) => d,
                Err(e) => {
                    if !p.has('s') {
                        ctx.err(format!("grep: {f}: {}\n", errno_text(&e)));
                    }
                    error = true;
                    continue;
                }
            }
        };
        let mut out = Vec::new();
        let mut count = 0;
        for (n, line) in lines(&data).enumerate() {
            if re.is_match(line) == p.has('v') {
                continue;
            }
            count += 1;
            any = true;
            if p.has('q') {
                return 0;
            }
            if p.has('c') || p.has('l') {
                continue;
            }
            if named {
                out.extend_from_slice(format!("{f}:").as_bytes());
            }
            if p.has('n') {
                out.extend_from_slice(format!("{}:", n + 1).as_bytes());
            }
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if p.has('l') {
            if count > 0 {
                out.extend_from_slice(
                    format!("{}\n", if f == "-" { "(standard input)" } else { f }).as_bytes(),
                );
            }
        } else if p.has('c') {
            let prefix = if named { format!("{f}:") } else { String::new() };
            out.extend_from_slice(format!("{prefix}{count}\n").as_bytes());
        }
        ctx.out(out);
    }
    if error && !(any && p.has('q')) {
        2
    } else if any {
        0
    } else {
        1
    }
}

/// One `s/RE/REPLACEMENT/FLAGS` command.
struct Subst {
    re: Regex,
    /// In the regex crate's replacement syntax (`${1}`, `$$`).
    with: String,
    global: bool,
    nth: usize,
}

fn parse_script(ctx: &Ctx, script: &str, extended: bool, out: &mut Vec<Subst>) -> Result<(), u8> {
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let bad = |what: &str| {
        ctx.err(format!("sed: emulator: only s/…/…/ substitutions are implemented, not {what:?}\n"));
        2
    };
    while i < chars.len() {
        if chars[i].is_whitespace() || chars[i] == ';' {
            i += 1;
            continue;
        }
        if chars[i] != 's' || i + 1 >= chars.len() {
            return Err(bad(&chars[i..].iter().collect::<String>()));
        }
        let delim = chars[i + 1];
        i += 2;
        // The three parts; `\delim` stands for the delimiter itself.
        let mut parts = [String::new(), String::new()];
        for part in &mut parts {
            loop {
                match chars.get(i) {
                    None => return Err(bad(script)),
                    Some(&c) if c == delim => {
                        i += 1;
                        break;
                    }
                    Some('\\') if chars.get(i + 1) == Some(&delim) => {
                        part.push('\\');
                        part.push(delim);
                        i += 2;
                    }
                    Some('\\') if i + 1 < chars.len() => {
                        part.push('\\');
                        part.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        part.push(c);
                        i += 1;
                    }
                }
            }
        }
        let (mut global, mut icase, mut nth) = (false, false, 1usize);
        while let Some(&f) = chars.get(i).filter(|c| !matches!(c, ';' | '\n' | '}')) {
            match f {
                'g' => global = true,
                'i' | 'I' => icase = true,
                d if d.is_ascii_digit() => nth = d.to_digit(10).unwrap_or(1) as usize,
                ' ' | '\t' => {}
                other => return Err(bad(&format!("s///{other}"))),
            }
            i += 1;
        }
        let re = build(ctx, "sed", &posix_to_regex(&parts[0], extended), icase)?;
        out.push(Subst { re, with: replacement(&parts[1]), global, nth: nth.max(1) });
    }
    Ok(())
}

/// sed's replacement (`&`, `\1`…`\9`, `\n`, `\&`) in the regex crate's syntax.
fn replacement(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("${0}"),
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => out.push_str(&format!("${{{d}}}")),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('$') => out.push_str("$$"),
                Some(o) => out.push(o),
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

fn apply(substs: &[Subst], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let ends_nl = data.ends_with(b"\n");
    let all: Vec<&[u8]> = lines(data).collect();
    let count = all.len();
    for (n, line) in all.into_iter().enumerate() {
        let mut cur = line.to_vec();
        for s in substs {
            let mut next = Vec::new();
            let mut last = 0;
            for (k, caps) in s.re.captures_iter(&cur).enumerate() {
                let m = caps.get(0).expect("group 0 always matches");
                if k + 1 < s.nth || (!s.global && k + 1 > s.nth) {
                    continue;
                }
                next.extend_from_slice(&cur[last..m.start()]);
                caps.expand(s.with.as_bytes(), &mut next);
                last = m.end();
            }
            next.extend_from_slice(&cur[last..]);
            cur = next;
        }
        out.extend_from_slice(&cur);
        if n + 1 < count || ends_nl {
            out.push(b'\n');
        }
    }
    out
}

/// `sed [-E|-r] [-i] [-e] SCRIPT [FILE…]`, where the script is `s` commands only.
pub async fn sed(ctx: &mut Ctx, args: &[String]) -> u8 {
    let long = [("in-place", 'i'), ("regexp-extended", 'E'), ("expression", 'e')];
    let p = match args::parse(ctx, "sed", args, "iEr", "e", &long) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut operands = p.operands.clone();
    let scripts: Vec<String> = if p.has('e') {
        p.values('e').map(str::to_string).collect()
    } else if operands.is_empty() {
        ctx.err("Usage: sed [OPTION]... {script-only-if-no-other-script} [input-file]...\n");
        return 1;
    } else {
        vec![operands.remove(0)]
    };
    let extended = p.has('E') || p.has('r');
    let mut substs = Vec::new();
    for s in &scripts {
        if let Err(code) = parse_script(ctx, s, extended, &mut substs) {
            return code;
        }
    }
    if p.has('i') && operands.is_empty() {
        ctx.err("sed: no input files\n");
        return 1;
    }
    if operands.is_empty() {
        let data = ctx.stdin.read_all().await;
        ctx.out(apply(&substs, &data));
        return 0;
    }
    let mut code = 0;
    for f in &operands {
        let data = if f == "-" && !p.has('i') {
            Bytes::from(ctx.stdin.read_all().await)
        } else {
            let path = ctx.path(f);
            match ctx.fs(|fs| fs.read(&path)) {
                Ok(d) => d,
                Err(e) => {
                    ctx.err(format!("sed: can't read {f}: {}\n", errno_text(&e)));
                    code = 2;
                    continue;
                }
            }
        };
        let edited = apply(&substs, &data);
        if p.has('i') {
            let path = ctx.path(f);
            if let Err(e) = ctx.fs(|fs| fs.write(&path, Bytes::from(edited), None, false)) {
                ctx.err(format!("sed: couldn't edit {f}: {}\n", errno_text(&e)));
                code = 4;
            }
        } else {
            ctx.out(edited);
        }
    }
    code
}
