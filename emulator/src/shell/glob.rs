//! Pathname expansion (`*.json`, `dir/*/package.json`) against the Sprite's filesystem.

use super::ctx::Ctx;
use super::parse;

/// The paths `pattern` matches, sorted, spelled the way the pattern was (relative stays
/// relative). Hidden entries match only a component that starts with a literal `.`, as in bash.
pub fn expand(ctx: &Ctx, pattern: &str) -> Vec<String> {
    let absolute = pattern.starts_with('/');
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    // (path on the Sprite, path as printed)
    let mut found: Vec<(String, String)> =
        vec![(if absolute { "/".to_string() } else { ctx.cwd.clone() }, String::new())];
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        let mut next = Vec::new();
        for (real, shown) in &found {
            let join = |name: &str| {
                let real = crate::fs::resolve(real, name);
                let shown = match (shown.as_str(), absolute) {
                    ("", true) => format!("/{name}"),
                    ("", false) => name.to_string(),
                    (s, _) => format!("{s}/{name}"),
                };
                (real, shown)
            };
            if parse::has_glob_chars(part) {
                let Ok(re) = parse::pattern_regex(part) else { continue };
                let hidden_ok = part.starts_with('.');
                let names: Vec<String> = ctx.fs(|f| {
                    f.list(real, false)
                        .map(|entries| entries.into_iter().map(|e| e.name).collect())
                        .unwrap_or_default()
                });
                for name in names {
                    if (hidden_ok || !name.starts_with('.')) && re.is_match(&name) {
                        next.push(join(&name));
                    }
                }
            } else {
                next.push(join(&unescape(part)));
            }
        }
        // Every component but the last must be a directory; the last must exist.
        next.retain(|(real, _)| ctx.fs(|f| f.get(real).is_some_and(|n| i == last || n.is_dir())));
        found = next;
    }
    let mut shown: Vec<String> = found.into_iter().map(|(_, s)| s).collect();
    if pattern.ends_with('/') {
        for s in &mut shown {
            s.push('/');
        }
    }
    shown.sort();
    shown
}

/// A pattern with its backslash escapes removed: the literal text it stands for.
pub fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}
