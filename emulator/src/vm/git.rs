//! `git clone|fetch|checkout|rev-parse` for the repositories in `repos` (the emulator has no
//! network: any other URL fails as an unreachable host would).

use bytes::Bytes;

use crate::shell::Ctx;
use crate::vm::repos::{self, Repo};
use crate::vm::{err, exists, out, read, take_share, with_fs, write_file};

pub async fn git(ctx: &mut Ctx, version: &str, args: &[String]) -> u8 {
    let mut dir = ctx.cwd.clone();
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-C" => {
                let Some(d) = args.get(i + 1) else {
                    err(ctx, "error: switch `C' requires a value\n");
                    return 129;
                };
                dir = crate::fs::resolve(&dir, d);
                i += 2;
            }
            "-c" => i += 2,
            "--version" => {
                out(ctx, format!("git version {version}\n"));
                return 0;
            }
            _ => break,
        }
    }
    let rest = &args[i.min(args.len())..];
    match rest.first().map(String::as_str) {
        Some("clone") => clone(ctx, &dir, &rest[1..]).await,
        Some("fetch") => fetch(ctx, &dir, &rest[1..]).await,
        Some("checkout") => checkout(ctx, &dir, &rest[1..]).await,
        Some("rev-parse") => rev_parse(ctx, &dir, &rest[1..]),
        Some(other) => {
            err(ctx, format!("emulator: git {other} is not simulated (clone, fetch, checkout, rev-parse)\n"));
            1
        }
        None => {
            err(ctx, "usage: git [-C <path>] <command> [<args>]\n");
            1
        }
    }
}

/// Splits `--depth N`, `--branch REF`/`-b REF`, quiet flags from the operands.
struct Opts {
    branch: Option<String>,
    force: bool,
    operands: Vec<String>,
}

fn opts(ctx: &Ctx, args: &[String]) -> Result<Opts, u8> {
    let mut o = Opts { branch: None, force: false, operands: Vec::new() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--depth" => {
                it.next();
            }
            "--branch" | "-b" => o.branch = it.next().cloned(),
            "-f" | "--force" => o.force = true,
            "-q" | "--quiet" | "--single-branch" | "--no-tags" | "--progress" | "--detach" => {}
            a if a.starts_with("--depth=") => {}
            a if a.starts_with("--branch=") => o.branch = Some(a["--branch=".len()..].to_string()),
            a if a.starts_with('-') => {
                err(ctx, format!("emulator: git option {a} is not simulated\n"));
                return Err(129);
            }
            a => o.operands.push(a.to_string()),
        }
    }
    Ok(o)
}

fn unreachable(ctx: &Ctx, url: &str) -> u8 {
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or(url);
    err(
        ctx,
        format!(
            "fatal: unable to access '{url}': Could not resolve host: {host} (the emulator knows only {})\n",
            repos::REPOS.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ),
    );
    128
}

async fn clone(ctx: &Ctx, cwd: &str, args: &[String]) -> u8 {
    let o = match opts(ctx, args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let Some(url) = o.operands.first() else {
        err(ctx, "fatal: You must specify a repository to clone.\n");
        return 129;
    };
    let Some(repo) = repos::find(url) else {
        return unreachable(ctx, url);
    };
    let default_dir = repo.name.rsplit('/').next().unwrap_or(repo.name).to_string();
    let target = o.operands.get(1).cloned().unwrap_or(default_dir);
    let dest = crate::fs::resolve(cwd, &target);
    let occupied =
        with_fs(ctx, |f| f.get(&dest).is_some() && f.list(&dest, false).map_or(true, |e| !e.is_empty()))
            .unwrap_or(false);
    if occupied {
        err(
            ctx,
            format!("fatal: destination path '{target}' already exists and is not an empty directory.\n"),
        );
        return 128;
    }
    let branch = o.branch.unwrap_or_else(|| repo.default_branch().to_string());
    let Some((_, commit)) = repo.branches.iter().find(|(b, _)| *b == branch) else {
        err(
            ctx,
            format!(
                "Cloning into '{target}'...\nwarning: Could not find remote branch {branch} to clone.\nfatal: Remote branch {branch} not found in upstream origin\n"
            ),
        );
        return 128;
    };
    err(ctx, format!("Cloning into '{target}'...\n"));
    take_share(ctx, 10).await;
    write_tree(ctx, repo, &dest, url, commit)
}

fn write_tree(ctx: &Ctx, repo: &Repo, dest: &str, url: &str, commit: &str) -> u8 {
    match with_fs(ctx, |f| repo.write_tree(f, dest, url, commit)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => {
            err(ctx, format!("fatal: could not create work tree dir '{dest}': {}\n", e.message()));
            128
        }
        None => 128,
    }
}

/// The repository `dir` is a clone of, with its origin URL.
fn open(ctx: &Ctx, dir: &str) -> Result<(&'static Repo, String), u8> {
    let Some(config) = read(ctx, &format!("{dir}/.git/config")) else {
        err(ctx, "fatal: not a git repository (or any of the parent directories): .git\n");
        return Err(128);
    };
    let text = String::from_utf8_lossy(&config).into_owned();
    let url = text.lines().find_map(|l| l.trim().strip_prefix("url = ")).unwrap_or("").to_string();
    match repos::find(&url) {
        Some(repo) => Ok((repo, url)),
        None => Err(unreachable(ctx, &url)),
    }
}

async fn fetch(ctx: &Ctx, dir: &str, args: &[String]) -> u8 {
    let o = match opts(ctx, args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let (repo, _) = match open(ctx, dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if o.operands.first().is_some_and(|r| r != "origin") {
        err(ctx, format!("emulator: git fetch: only the remote `origin` exists, not {}\n", o.operands[0]));
        return 128;
    }
    let reference = o.operands.get(1).cloned().unwrap_or_else(|| repo.default_branch().to_string());
    let Some(commit) = repo.resolve(&reference) else {
        err(ctx, format!("fatal: couldn't find remote ref {reference}\n"));
        return 128;
    };
    take_share(ctx, 3).await;
    let head = Bytes::from(format!("{commit}\t\t'{reference}' of {}\n", repo.name));
    match write_file(ctx, &format!("{dir}/.git/FETCH_HEAD"), head, 0o644) {
        Ok(()) => 0,
        Err(e) => {
            err(ctx, format!("error: {}\n", e.message()));
            128
        }
    }
}

async fn checkout(ctx: &Ctx, dir: &str, args: &[String]) -> u8 {
    let o = match opts(ctx, args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let (repo, url) = match open(ctx, dir) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Some(reference) = o.operands.first() else {
        err(ctx, "emulator: git checkout needs a commit, branch or FETCH_HEAD\n");
        return 1;
    };
    let commit = if reference == "FETCH_HEAD" {
        match read(ctx, &format!("{dir}/.git/FETCH_HEAD")) {
            Some(d) => String::from_utf8_lossy(&d).split_whitespace().next().unwrap_or("").to_string(),
            None => {
                err(ctx, "error: pathspec 'FETCH_HEAD' did not match any file(s) known to git\n");
                return 1;
            }
        }
    } else {
        match repo.resolve(reference) {
            Some(c) => c,
            None => {
                err(ctx, format!("error: pathspec '{reference}' did not match any file(s) known to git\n"));
                return 1;
            }
        }
    };
    take_share(ctx, 1).await;
    // Tracked files come back as committed (an edited manifest included); builds stay.
    let code = write_tree(ctx, repo, dir, &url, &commit);
    if code == 0 {
        err(ctx, format!("HEAD is now at {}\n", &commit[..7.min(commit.len())]));
    }
    let _ = o.force;
    code
}

fn rev_parse(ctx: &Ctx, dir: &str, args: &[String]) -> u8 {
    if args.first().map(String::as_str) != Some("HEAD") {
        err(ctx, "emulator: git rev-parse: only HEAD is simulated\n");
        return 128;
    }
    if !exists(ctx, &format!("{dir}/.git/HEAD")) {
        err(ctx, "fatal: not a git repository (or any of the parent directories): .git\n");
        return 128;
    }
    let head = read(ctx, &format!("{dir}/.git/HEAD")).unwrap_or_default();
    out(ctx, head);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_repositories_only() {
        assert!(repos::find("https://github.com/xmtplabs/openclaw.git").is_some());
        assert!(repos::find("https://github.com/xmtplabs/openclaw").is_some());
        assert!(repos::find("https://github.com/someone/else").is_none());
        let oc = repos::find("https://github.com/xmtplabs/openclaw").unwrap();
        assert!(oc.resolve("staging").is_some());
        assert!(oc.resolve("abc1234").is_some());
        assert!(oc.resolve("no-such-branch").is_none());
    }
}
