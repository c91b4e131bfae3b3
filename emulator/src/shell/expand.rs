//! Word expansion as bash does it: quotes, `~`, `$NAME` and the `${…}` forms clients use,
//! `$(…)`, field splitting of unquoted expansions and pathname expansion. Forms the emulator
//! does not implement end the shell with exit 2 (see `Ctx::unsupported`).

use std::sync::{Arc, Mutex};

use brush_parser::word::{
    Parameter, ParameterExpr, ParameterTestType, SpecialParameter, TildeExpr, WordPiece,
};

use super::ctx::{BoxFut, Ctx, Flow};
use super::io::Sink;
use super::{glob, parse};

type Res<T = ()> = Result<T, Flow>;

#[derive(Default)]
struct Field {
    text: String,
    /// The same text as a pattern: quoted parts escaped.
    pattern: String,
    glob: bool,
    /// Set by quotes: `""` is an empty field, an empty unquoted expansion is none.
    keep: bool,
}

impl Field {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && !self.keep
    }
}

struct Builder {
    fields: Vec<Field>,
    cur: Field,
    /// Field splitting and pathname expansion (command words); off for assignments,
    /// redirection targets, `case` words and heredocs.
    split: bool,
    ifs: String,
}

impl Builder {
    fn new(ctx: &Ctx, split: bool) -> Self {
        let ifs = ctx.var("IFS").unwrap_or(" \t\n").to_string();
        Builder { fields: Vec::new(), cur: Field::default(), split, ifs }
    }

    fn lit(&mut self, s: &str, quoted: bool) {
        self.cur.text.push_str(s);
        if quoted {
            self.cur.pattern.push_str(&parse::escape_pattern(s));
            self.cur.keep = true;
        } else {
            self.cur.pattern.push_str(s);
            self.cur.glob |= parse::has_glob_chars(s);
        }
    }

    /// The result of an expansion: split on IFS when unquoted in a command word.
    fn expanded(&mut self, s: &str, quoted: bool) {
        if quoted || !self.split {
            return self.lit(s, quoted);
        }
        let mut buf = [0u8; 4];
        for c in s.chars() {
            if self.ifs.contains(c) {
                self.brk();
            } else {
                self.lit(c.encode_utf8(&mut buf), false);
            }
        }
    }

    fn brk(&mut self) {
        let done = std::mem::take(&mut self.cur);
        if !done.is_empty() {
            self.fields.push(done);
        }
    }

    fn finish(mut self) -> Vec<Field> {
        self.brk();
        self.fields
    }
}

/// A command word: zero or more fields.
pub async fn fields(ctx: &mut Ctx, raw: &str) -> Res<Vec<String>> {
    let pieces = parse_word(ctx, raw)?;
    let mut b = Builder::new(ctx, true);
    pieces_into(ctx, &pieces, false, &mut b).await?;
    let mut out = Vec::new();
    for f in b.finish() {
        let matches = if f.glob { glob::expand(ctx, &f.pattern) } else { Vec::new() };
        if matches.is_empty() {
            out.push(f.text);
        } else {
            out.extend(matches);
        }
    }
    Ok(out)
}

/// A word that stays one string: assignment values, redirection targets, `case` words.
pub async fn string(ctx: &mut Ctx, raw: &str) -> Res<String> {
    Ok(joined(ctx, raw).await?.0)
}

/// A `case` pattern or `${X%pattern}`: quoted parts match literally.
pub async fn pattern(ctx: &mut Ctx, raw: &str) -> Res<String> {
    Ok(joined(ctx, raw).await?.1)
}

async fn joined(ctx: &mut Ctx, raw: &str) -> Res<(String, String)> {
    let pieces = parse_word(ctx, raw)?;
    let mut b = Builder::new(ctx, false);
    pieces_into(ctx, &pieces, false, &mut b).await?;
    let fields = b.finish();
    let text = fields.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join(" ");
    let pattern = fields.iter().map(|f| f.pattern.as_str()).collect::<Vec<_>>().join(" ");
    Ok((text, pattern))
}

/// The body of a heredoc whose delimiter was not quoted.
pub async fn heredoc(ctx: &mut Ctx, body: &str) -> Res<String> {
    let pieces = parse::heredoc(body).map_err(|e| ctx.unsupported(format!("heredoc: {e}")))?;
    let mut b = Builder::new(ctx, false);
    pieces_into(ctx, &pieces, true, &mut b).await?;
    Ok(b.finish().into_iter().map(|f| f.text).collect::<Vec<_>>().join(""))
}

fn parse_word(ctx: &Ctx, raw: &str) -> Res<Vec<WordPiece>> {
    parse::word(raw).map_err(|e| ctx.unsupported(format!("word {raw:?}: {e}")))
}

fn pieces_into<'a>(
    ctx: &'a mut Ctx,
    pieces: &'a [WordPiece],
    quoted: bool,
    b: &'a mut Builder,
) -> BoxFut<'a, Res> {
    Box::pin(async move {
        for piece in pieces {
            match piece {
                WordPiece::Text(s) => b.lit(s, quoted),
                WordPiece::SingleQuotedText(s) => b.lit(s, true),
                WordPiece::AnsiCQuotedText(s) => b.lit(&ansi_c(s), true),
                WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    let inner = parse::strip(inner.clone());
                    // "$@" with no arguments is no field at all, not an empty one.
                    if !(is_all_args(&inner) && ctx.shell.args.is_empty()) {
                        b.cur.keep = true;
                        pieces_into(ctx, &inner, true, b).await?;
                    }
                }
                WordPiece::TildeExpansion(TildeExpr::Home) => {
                    let home = ctx.var("HOME").unwrap_or(crate::fs::HOME).to_string();
                    b.lit(&home, true);
                }
                WordPiece::TildeExpansion(other) => return Err(ctx.unsupported(format!("tilde {other:?}"))),
                WordPiece::ParameterExpansion(expr) => param(ctx, expr, quoted, b).await?,
                WordPiece::CommandSubstitution(src) => {
                    let out = substitute(ctx, src).await?;
                    b.expanded(&out, quoted);
                }
                WordPiece::BackquotedCommandSubstitution(src) => {
                    let src = src.replace("\\$", "$").replace("\\`", "`").replace("\\\\", "\\");
                    let out = substitute(ctx, &src).await?;
                    b.expanded(&out, quoted);
                }
                WordPiece::EscapeSequence(s) => {
                    let c = &s[1..];
                    // Outside quotes a backslash-newline joins lines; elsewhere the char stands.
                    if c != "\n" {
                        b.lit(c, true);
                    }
                }
                WordPiece::ArithmeticExpression(e) => {
                    return Err(ctx.unsupported(format!("arithmetic expansion $(({}))", e.value)));
                }
            }
        }
        Ok(())
    })
}

fn is_all_args(pieces: &[WordPiece]) -> bool {
    matches!(
        pieces,
        [WordPiece::ParameterExpansion(ParameterExpr::Parameter {
            parameter: Parameter::Special(SpecialParameter::AllPositionalParameters { concatenate: false }),
            indirect: false,
        })]
    )
}

/// `$(…)`: the script's stdout with trailing newlines removed; `$?` becomes its status.
async fn substitute(ctx: &mut Ctx, src: &str) -> Res<String> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut sub = ctx.fork();
    sub.stdout = Sink::Buffer(buf.clone());
    sub.stdin = std::mem::replace(&mut ctx.stdin, super::io::Input::Closed);
    let status = match sub.run_script(src).await {
        Ok(c) | Err(Flow::Exit(c) | Flow::Return(c)) => c,
        Err(Flow::Break(_) | Flow::Continue(_)) => 0,
    };
    ctx.stdin = std::mem::replace(&mut sub.stdin, super::io::Input::Closed);
    ctx.last_status = status;
    ctx.shell.subst_status = Some(status);
    let bytes = std::mem::take(&mut *buf.lock().unwrap_or_else(|e| e.into_inner()));
    let mut out = String::from_utf8_lossy(&bytes).into_owned();
    while out.ends_with('\n') {
        out.pop();
    }
    Ok(out)
}

enum Value {
    One(Option<String>),
    Many(Vec<String>, bool),
}

fn lookup(ctx: &mut Ctx, p: &Parameter) -> Res<Value> {
    Ok(match p {
        Parameter::Named(n) => Value::One(ctx.var(n).map(str::to_string)),
        Parameter::Positional(0) => Value::One(Some(ctx.shell.arg0.clone())),
        Parameter::Positional(n) => Value::One(ctx.shell.args.get(*n as usize - 1).cloned()),
        Parameter::Special(SpecialParameter::AllPositionalParameters { concatenate }) => {
            Value::Many(ctx.shell.args.clone(), *concatenate)
        }
        Parameter::Special(SpecialParameter::PositionalParameterCount) => {
            Value::One(Some(ctx.shell.args.len().to_string()))
        }
        Parameter::Special(SpecialParameter::LastExitStatus) => Value::One(Some(ctx.last_status.to_string())),
        Parameter::Special(SpecialParameter::ShellName) => Value::One(Some(ctx.shell.arg0.clone())),
        Parameter::Special(SpecialParameter::ProcessId) => {
            if ctx.shell.pid == 0 {
                ctx.shell.pid = ctx.app.world().pid();
            }
            Value::One(Some(ctx.shell.pid.to_string()))
        }
        other => return Err(ctx.unsupported(format!("parameter {other}"))),
    })
}

fn name_of(p: &Parameter) -> String {
    match p {
        Parameter::Named(n) => n.clone(),
        Parameter::Positional(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// The value as one string (`$*` joined), None when unset; `set -u` makes unset fatal.
fn single(ctx: &mut Ctx, p: &Parameter, strict: bool) -> Res<Option<String>> {
    let v = match lookup(ctx, p)? {
        Value::One(v) => v,
        Value::Many(all, _) => return Ok(Some(all.join(" "))),
    };
    if v.is_none() && strict && ctx.shell.opts.nounset {
        // bash 5 ends a non-interactive shell with 127 here.
        ctx.err(format!("bash: {}: unbound variable\n", name_of(p)));
        return Err(Flow::Exit(127));
    }
    Ok(v)
}

fn test_hits(v: &Option<String>, t: &ParameterTestType) -> bool {
    match t {
        ParameterTestType::UnsetOrNull => v.as_deref().is_none_or(str::is_empty),
        ParameterTestType::Unset => v.is_none(),
    }
}

async fn sub_word(ctx: &mut Ctx, raw: &Option<String>, quoted: bool, b: &mut Builder) -> Res {
    let Some(raw) = raw else { return Ok(()) };
    let pieces = parse_word(ctx, raw)?;
    pieces_into(ctx, &pieces, quoted, b).await
}

async fn param(ctx: &mut Ctx, expr: &ParameterExpr, quoted: bool, b: &mut Builder) -> Res {
    match expr {
        ParameterExpr::Parameter { parameter, indirect: false } => match lookup(ctx, parameter)? {
            Value::Many(all, false) => {
                for (i, v) in all.iter().enumerate() {
                    if i > 0 {
                        b.brk();
                        // Each "$@" element is a field of its own, even an empty one.
                        b.cur.keep = quoted;
                    }
                    b.expanded(v, quoted);
                }
            }
            Value::Many(all, true) => b.expanded(&all.join(" "), quoted),
            Value::One(_) => {
                if let Some(v) = single(ctx, parameter, true)? {
                    b.expanded(&v, quoted);
                }
            }
        },
        ParameterExpr::UseDefaultValues { parameter, indirect: false, test_type, default_value } => {
            match single(ctx, parameter, false)? {
                v if test_hits(&v, test_type) => sub_word(ctx, default_value, quoted, b).await?,
                v => b.expanded(&v.unwrap_or_default(), quoted),
            }
        }
        ParameterExpr::AssignDefaultValues { parameter, indirect: false, test_type, default_value } => {
            let mut v = single(ctx, parameter, false)?;
            if test_hits(&v, test_type) {
                let Parameter::Named(name) = parameter else {
                    ctx.err(format!("bash: ${}: cannot assign in this way\n", name_of(parameter)));
                    return Err(Flow::Exit(1));
                };
                let value = match default_value {
                    Some(raw) => string(ctx, raw).await?,
                    None => String::new(),
                };
                ctx.set_var(name, value.clone());
                v = Some(value);
            }
            b.expanded(&v.unwrap_or_default(), quoted);
        }
        ParameterExpr::IndicateErrorIfNullOrUnset {
            parameter,
            indirect: false,
            test_type,
            error_message,
        } => {
            let v = single(ctx, parameter, false)?;
            if test_hits(&v, test_type) {
                let msg = match error_message {
                    Some(raw) => string(ctx, raw).await?,
                    None if matches!(test_type, ParameterTestType::Unset) => "parameter not set".into(),
                    None => "parameter null or not set".into(),
                };
                ctx.err(format!("bash: {}: {msg}\n", name_of(parameter)));
                return Err(Flow::Exit(127));
            }
            b.expanded(&v.unwrap_or_default(), quoted);
        }
        ParameterExpr::UseAlternativeValue { parameter, indirect: false, test_type, alternative_value } => {
            let v = single(ctx, parameter, false)?;
            if !test_hits(&v, test_type) {
                sub_word(ctx, alternative_value, quoted, b).await?;
            }
        }
        ParameterExpr::ParameterLength { parameter, indirect: false } => {
            let n = match lookup(ctx, parameter)? {
                Value::Many(all, _) => all.len(),
                Value::One(_) => single(ctx, parameter, true)?.unwrap_or_default().chars().count(),
            };
            b.expanded(&n.to_string(), quoted);
        }
        ParameterExpr::RemoveSmallestSuffixPattern { parameter, indirect: false, pattern: pat }
        | ParameterExpr::RemoveLargestSuffixPattern { parameter, indirect: false, pattern: pat }
        | ParameterExpr::RemoveSmallestPrefixPattern { parameter, indirect: false, pattern: pat }
        | ParameterExpr::RemoveLargestPrefixPattern { parameter, indirect: false, pattern: pat } => {
            let v = single(ctx, parameter, true)?.unwrap_or_default();
            let pat = match pat {
                Some(raw) => pattern(ctx, raw).await?,
                None => String::new(),
            };
            let re =
                parse::pattern_regex(&pat).map_err(|e| ctx.unsupported(format!("pattern {pat:?}: {e}")))?;
            let cuts: Vec<usize> = v.char_indices().map(|(i, _)| i).chain([v.len()]).collect();
            let result = match expr {
                ParameterExpr::RemoveSmallestSuffixPattern { .. } => {
                    cuts.iter().rev().find(|&&i| re.is_match(&v[i..])).map(|&i| v[..i].to_string())
                }
                ParameterExpr::RemoveLargestSuffixPattern { .. } => {
                    cuts.iter().find(|&&i| re.is_match(&v[i..])).map(|&i| v[..i].to_string())
                }
                ParameterExpr::RemoveSmallestPrefixPattern { .. } => {
                    cuts.iter().find(|&&i| re.is_match(&v[..i])).map(|&i| v[i..].to_string())
                }
                _ => cuts.iter().rev().find(|&&i| re.is_match(&v[..i])).map(|&i| v[i..].to_string()),
            };
            b.expanded(&result.unwrap_or(v), quoted);
        }
        other => return Err(ctx.unsupported(format!("parameter expansion {other:?}"))),
    }
    Ok(())
}

/// `$'…'`: the backslash escapes bash's ANSI-C quoting knows.
fn ansi_c(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('e' | 'E') => out.push('\x1b'),
            Some('a') => out.push('\x07'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}
