//! getopt-style option parsing for the tools, refusing any option a tool does not implement:
//! an ignored flag would make a command look like it did something it did not.

use super::super::ctx::Ctx;

pub struct Parsed {
    /// Options in the order given, with their value for those that take one.
    opts: Vec<(char, Option<String>)>,
    pub operands: Vec<String>,
}

impl Parsed {
    pub fn has(&self, c: char) -> bool {
        self.opts.iter().any(|(o, _)| *o == c)
    }

    /// The last value given for `c`.
    pub fn value(&self, c: char) -> Option<&str> {
        self.opts.iter().rev().find(|(o, _)| *o == c).and_then(|(_, v)| v.as_deref())
    }

    pub fn values(&self, c: char) -> impl Iterator<Item = &str> {
        self.opts.iter().filter(move |(o, _)| *o == c).filter_map(|(_, v)| v.as_deref())
    }
}

/// Parses `args` like GNU getopt (options may follow operands; `--` ends them). `flags` are
/// the single-letter options without a value, `valued` those with one; `long` maps the long
/// options accepted to their letter. Anything else prints why and gives Err(2).
pub fn parse(
    ctx: &Ctx,
    tool: &str,
    args: &[String],
    flags: &str,
    valued: &str,
    long: &[(&str, char)],
) -> Result<Parsed, u8> {
    let mut p = Parsed { opts: Vec::new(), operands: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            p.operands.extend(it.cloned());
            break;
        }
        if let Some(name) = a.strip_prefix("--") {
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            let Some(&(_, c)) = long.iter().find(|(l, _)| *l == name) else {
                return Err(refuse(ctx, tool, a));
            };
            let value = if valued.contains(c) {
                match inline.or_else(|| it.next().cloned()) {
                    Some(v) => Some(v),
                    None => return Err(missing(ctx, tool, a)),
                }
            } else {
                None
            };
            p.opts.push((c, value));
            continue;
        }
        if a.len() < 2 || !a.starts_with('-') {
            p.operands.push(a.clone());
            continue;
        }
        for (i, c) in a.char_indices().skip(1) {
            if flags.contains(c) {
                p.opts.push((c, None));
            } else if valued.contains(c) {
                let rest = &a[i + c.len_utf8()..];
                let value = if !rest.is_empty() { Some(rest.to_string()) } else { it.next().cloned() };
                match value {
                    Some(v) => p.opts.push((c, Some(v))),
                    None => return Err(missing(ctx, tool, &format!("-{c}"))),
                }
                break;
            } else {
                return Err(refuse(ctx, tool, &format!("-{c}")));
            }
        }
    }
    Ok(p)
}

/// The message and status for an option the emulator does not implement.
pub fn refuse(ctx: &Ctx, tool: &str, opt: &str) -> u8 {
    ctx.err(format!("{tool}: emulator: unsupported option '{opt}'\n"));
    2
}

fn missing(ctx: &Ctx, tool: &str, opt: &str) -> u8 {
    ctx.err(format!("{tool}: option requires an argument -- '{}'\n", opt.trim_start_matches('-')));
    2
}
