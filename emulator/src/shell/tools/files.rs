//! File tools on the Sprite's filesystem: cat, ls, mkdir, touch, rm, cp, mv, tee.

use bytes::Bytes;

use super::super::ctx::{Ctx, errno_text};
use super::args;
use crate::fs::{self, Fs, FsError, Node};

pub async fn cat(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "cat", args, "", "", &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let files = if p.operands.is_empty() { vec!["-".to_string()] } else { p.operands };
    let mut code = 0;
    for f in files {
        if f == "-" {
            while let Some(chunk) = ctx.stdin.next_chunk().await {
                ctx.out(chunk);
            }
            continue;
        }
        let path = ctx.path(&f);
        match ctx.fs(|fs| fs.read(&path)) {
            Ok(data) => ctx.out(data),
            Err(e) => {
                ctx.err(format!("cat: {f}: {}\n", errno_text(&e)));
                code = 1;
            }
        }
    }
    code
}

pub fn ls(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "ls", args, "aA1", "", &[("all", 'a'), ("almost-all", 'A')]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let operands = if p.operands.is_empty() { vec![".".to_string()] } else { p.operands.clone() };
    let many = operands.len() > 1;
    let mut code = 0;
    let mut blocks = Vec::new();
    let mut files = String::new();
    for op in &operands {
        let path = ctx.path(op);
        match ctx.fs(|f| f.get(&path).map(|n| n.is_dir()).map(|d| (d, f.list(&path, false)))) {
            Some((true, Ok(entries))) => {
                let mut names: Vec<String> = entries
                    .into_iter()
                    .map(|e| e.name)
                    .filter(|n| !n.starts_with('.') || p.has('a') || p.has('A'))
                    .collect();
                if p.has('a') {
                    names.splice(0..0, [".".to_string(), "..".to_string()]);
                }
                let mut block = if many { format!("{op}:\n") } else { String::new() };
                for n in names {
                    block.push_str(&n);
                    block.push('\n');
                }
                blocks.push(block);
            }
            Some(_) => files.push_str(&format!("{op}\n")),
            None => {
                ctx.err(format!("ls: cannot access '{op}': No such file or directory\n"));
                code = 2;
            }
        }
    }
    // Like GNU ls: plain files first, then each directory, separated by blank lines.
    let mut all: Vec<String> = Vec::new();
    if !files.is_empty() {
        all.push(files);
    }
    all.extend(blocks);
    ctx.out(all.join("\n"));
    code
}

pub fn mkdir(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "mkdir", args, "p", "m", &[("parents", 'p'), ("mode", 'm')]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mode = match p.value('m').map(|m| u32::from_str_radix(m, 8)) {
        None => 0o755,
        Some(Ok(m)) if m <= 0o7777 => m,
        Some(_) => {
            ctx.err(format!("mkdir: invalid mode '{}'\n", p.value('m').unwrap_or_default()));
            return 1;
        }
    };
    if p.operands.is_empty() {
        ctx.err("mkdir: missing operand\n");
        return 1;
    }
    let mut code = 0;
    for op in &p.operands {
        let path = ctx.path(op);
        let r = ctx.fs(|f| {
            if p.has('p') {
                f.mkdir_all(&path, 0o755)?;
                if p.has('m') {
                    f.chmod(&path, mode)?;
                }
                Ok(())
            } else {
                f.mkdir(&path, mode)
            }
        });
        if let Err(e) = r {
            ctx.err(format!("mkdir: cannot create directory '{op}': {}\n", errno_text(&e)));
            code = 1;
        }
    }
    code
}

pub fn touch(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "touch", args, "", "", &[]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut code = 0;
    for op in &p.operands {
        let path = ctx.path(op);
        if let Err(e) = ctx.fs(|f| f.touch(&path)) {
            ctx.err(format!("touch: cannot touch '{op}': {}\n", errno_text(&e)));
            code = 1;
        }
    }
    code
}

pub fn rm(ctx: &mut Ctx, args: &[String]) -> u8 {
    let long = [("recursive", 'r'), ("force", 'f')];
    let p = match args::parse(ctx, "rm", args, "rRf", "", &long) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let recursive = p.has('r') || p.has('R');
    let force = p.has('f');
    if p.operands.is_empty() && !force {
        ctx.err("rm: missing operand\n");
        return 1;
    }
    let mut code = 0;
    for op in &p.operands {
        let path = ctx.path(op);
        let r = ctx.fs(|f| match f.get(&path) {
            None => Err(FsError { code: "ENOENT", path: path.clone() }),
            Some(n) if n.is_dir() && !recursive => Err(FsError { code: "EISDIR", path: path.clone() }),
            Some(_) => f.remove(&path, true).map(|_| ()),
        });
        match r {
            Ok(()) => {}
            Err(e) if e.code == "ENOENT" && force => {}
            Err(e) => {
                ctx.err(format!("rm: cannot remove '{op}': {}\n", errno_text(&e)));
                code = 1;
            }
        }
    }
    code
}

/// Copies `src` (a file, or a whole tree) to `dst`; `keep_mode` keeps an existing target
/// file's mode, as cp does without `-p`.
fn copy_tree(f: &mut Fs, src: &str, dst: &str, keep_mode: bool) -> Result<(), FsError> {
    let prefix = format!("{src}/");
    let nodes: Vec<(String, Node)> = f
        .nodes()
        .filter(|(p, _)| p.as_str() == src || p.starts_with(&prefix))
        .map(|(p, n)| (p.clone(), n.clone()))
        .collect();
    for (path, node) in nodes {
        let target = format!("{dst}{}", &path[src.len()..]);
        match node {
            Node::Dir { mode, .. } => {
                if f.get(&target).is_none() {
                    f.mkdir(&target, mode)?;
                }
            }
            Node::File { data, mode, .. } => {
                let mode = match f.get(&target) {
                    Some(existing) if keep_mode && !existing.is_dir() => existing.mode(),
                    _ => mode,
                };
                f.write(&target, data, Some(mode), false)?;
            }
        }
    }
    Ok(())
}

/// The target of `cp`/`mv`: into `dst` when it is a directory.
fn target(f: &Fs, src: &str, dst: &str) -> String {
    match f.get(dst) {
        Some(n) if n.is_dir() => fs::resolve(dst, fs::basename(src)),
        _ => dst.to_string(),
    }
}

pub fn cp(ctx: &mut Ctx, args: &[String]) -> u8 {
    let long = [("recursive", 'r'), ("force", 'f'), ("archive", 'a')];
    let p = match args::parse(ctx, "cp", args, "rRfpa", "", &long) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let recursive = p.has('r') || p.has('R') || p.has('a');
    let keep_mode = !(p.has('p') || p.has('a'));
    transfer(ctx, "cp", &p.operands, |ctx, op, src, dst| {
        let is_dir = ctx.fs(|f| f.get(src).is_some_and(|n| n.is_dir()));
        if is_dir && !recursive {
            ctx.err(format!("cp: -r not specified; omitting directory '{op}'\n"));
            return Ok(false);
        }
        ctx.fs(|f| copy_tree(f, src, dst, keep_mode)).map(|_| true)
    })
}

pub fn mv(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "mv", args, "f", "", &[("force", 'f')]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    transfer(ctx, "mv", &p.operands, |ctx, _, src, dst| {
        ctx.fs(|f| {
            if let Some(n) = f.get(dst)
                && n.is_dir()
            {
                f.remove(dst, false)?;
            }
            copy_tree(f, src, dst, false)?;
            f.remove(src, true).map(|_| true)
        })
    })
}

/// The shared shape of cp and mv: SOURCE… DEST, each source checked and reported alike.
fn transfer(
    ctx: &mut Ctx,
    tool: &str,
    operands: &[String],
    mut each: impl FnMut(&mut Ctx, &str, &str, &str) -> Result<bool, FsError>,
) -> u8 {
    let Some((dest, sources)) = operands.split_last().filter(|(_, s)| !s.is_empty()) else {
        ctx.err(format!("{tool}: missing file operand\n"));
        return 1;
    };
    let dst_path = ctx.path(dest);
    let dst_is_dir = ctx.fs(|f| f.get(&dst_path).is_some_and(|n| n.is_dir()));
    if sources.len() > 1 && !dst_is_dir {
        ctx.err(format!("{tool}: target '{dest}': Not a directory\n"));
        return 1;
    }
    let mut code = 0;
    for op in sources {
        let src = ctx.path(op);
        if ctx.fs(|f| f.get(&src).is_none()) {
            ctx.err(format!("{tool}: cannot stat '{op}': No such file or directory\n"));
            code = 1;
            continue;
        }
        let dst = ctx.fs(|f| target(f, &src, &dst_path));
        if dst == src || dst.starts_with(&format!("{src}/")) {
            ctx.err(format!("{tool}: cannot copy '{op}' into itself\n"));
            code = 1;
            continue;
        }
        match each(ctx, op, &src, &dst) {
            Ok(true) => {}
            Ok(false) => code = 1,
            Err(e) => {
                ctx.err(format!("{tool}: cannot create '{dest}': {}\n", errno_text(&e)));
                code = 1;
            }
        }
    }
    code
}

pub async fn tee(ctx: &mut Ctx, args: &[String]) -> u8 {
    let p = match args::parse(ctx, "tee", args, "a", "", &[("append", 'a')]) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut code = 0;
    let mut paths = Vec::new();
    for op in &p.operands {
        let path = ctx.path(op);
        let opened =
            ctx.fs(
                |f| {
                    if p.has('a') { f.append(&path, b"") } else { f.write(&path, Bytes::new(), None, false) }
                },
            );
        match opened {
            Ok(()) => paths.push(path),
            Err(e) => {
                ctx.err(format!("tee: {op}: {}\n", errno_text(&e)));
                code = 1;
            }
        }
    }
    while let Some(chunk) = ctx.stdin.next_chunk().await {
        for path in &paths {
            let _ = ctx.fs(|f| f.append(path, &chunk));
        }
        ctx.out(chunk);
    }
    code
}
