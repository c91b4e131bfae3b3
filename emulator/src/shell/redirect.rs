//! Redirections: `<`, `>`, `>>`, `>|`, `2>&1`, `>&2`, `&>`, `&>>`, heredocs and `<<<`, on
//! fds 0–2 (others are refused). A redirection applies for one command and is then undone.

use std::sync::Arc;

use brush_parser::ast::{IoFileRedirectKind, IoFileRedirectTarget, IoRedirect};
use bytes::Bytes;

use super::ctx::{Ctx, Flow, errno_text};
use super::expand;
use super::io::{FileSink, Input, Sink};

/// The streams as they were before the redirections.
pub struct Saved {
    stdout: Sink,
    stderr: Sink,
    stdin: Option<Input>,
}

pub fn restore(ctx: &mut Ctx, saved: Saved) {
    ctx.stdout = saved.stdout;
    ctx.stderr = saved.stderr;
    if let Some(input) = saved.stdin {
        ctx.stdin = input;
    }
}

/// Applies `redirects` in order. Ok(None) when one failed (bash's message printed, nothing
/// left applied): the command does not run and its status is 1.
pub async fn apply(ctx: &mut Ctx, redirects: &[&IoRedirect]) -> Result<Option<Saved>, Flow> {
    let mut saved = Saved { stdout: ctx.stdout.clone(), stderr: ctx.stderr.clone(), stdin: None };
    for r in redirects {
        match one(ctx, r, &mut saved).await {
            Ok(true) => {}
            Ok(false) => {
                restore(ctx, saved);
                return Ok(None);
            }
            Err(flow) => {
                restore(ctx, saved);
                return Err(flow);
            }
        }
    }
    Ok(Some(saved))
}

fn set_input(ctx: &mut Ctx, saved: &mut Saved, data: Bytes) {
    let old = std::mem::replace(&mut ctx.stdin, Input::Buffered(Some(data)));
    saved.stdin.get_or_insert(old);
}

fn set_output(ctx: &mut Ctx, fd: i32, sink: Sink) {
    if fd == 2 {
        ctx.stderr = sink;
    } else {
        ctx.stdout = sink;
    }
}

/// Opens `target` for writing (truncating unless `append`); None after bash's message.
fn open(ctx: &Ctx, target: &str, append: bool) -> Option<Sink> {
    match target {
        "/dev/null" => return Some(Sink::Null),
        "/dev/stdout" => return Some(ctx.stdout.clone()),
        "/dev/stderr" => return Some(ctx.stderr.clone()),
        _ => {}
    }
    let path = ctx.path(target);
    let opened =
        ctx.fs(|f| if append { f.append(&path, b"") } else { f.write(&path, Bytes::new(), None, false) });
    if let Err(e) = opened {
        ctx.err(format!("bash: {target}: {}\n", errno_text(&e)));
        return None;
    }
    Some(Sink::File(Arc::new(FileSink {
        app: ctx.app.clone(),
        sprite: ctx.sprite.clone(),
        sprite_id: ctx.sprite_id.clone(),
        path,
    })))
}

async fn one(ctx: &mut Ctx, r: &IoRedirect, saved: &mut Saved) -> Result<bool, Flow> {
    let fd_ok = |fd: i32| (0..=2).contains(&fd);
    match r {
        IoRedirect::File(fd, kind, target) => {
            let target = match target {
                IoFileRedirectTarget::Filename(w) | IoFileRedirectTarget::Duplicate(w) => {
                    expand::string(ctx, &w.value).await?
                }
                IoFileRedirectTarget::Fd(n) => n.to_string(),
                IoFileRedirectTarget::ProcessSubstitution(..) => {
                    return Err(ctx.unsupported("process substitution"));
                }
            };
            match kind {
                IoFileRedirectKind::Read => {
                    if fd.unwrap_or(0) != 0 {
                        return Err(ctx.unsupported(format!("redirecting fd {}", fd.unwrap_or(0))));
                    }
                    let path = ctx.path(&target);
                    if target == "/dev/null" {
                        set_input(ctx, saved, Bytes::new());
                        return Ok(true);
                    }
                    match ctx.fs(|f| f.read(&path)) {
                        Ok(data) => set_input(ctx, saved, data),
                        Err(e) => {
                            ctx.err(format!("bash: {target}: {}\n", errno_text(&e)));
                            return Ok(false);
                        }
                    }
                }
                IoFileRedirectKind::Write | IoFileRedirectKind::Clobber | IoFileRedirectKind::Append => {
                    let fd = fd.unwrap_or(1);
                    if !(1..=2).contains(&fd) {
                        return Err(ctx.unsupported(format!("redirecting fd {fd}")));
                    }
                    let Some(sink) = open(ctx, &target, matches!(kind, IoFileRedirectKind::Append)) else {
                        return Ok(false);
                    };
                    set_output(ctx, fd, sink);
                }
                IoFileRedirectKind::DuplicateOutput => {
                    let fd = fd.unwrap_or(1);
                    let sink = match target.as_str() {
                        "1" => ctx.stdout.clone(),
                        "2" => ctx.stderr.clone(),
                        "-" => Sink::Null,
                        other => return Err(ctx.unsupported(format!("duplicating to fd {other}"))),
                    };
                    if !fd_ok(fd) || fd == 0 {
                        return Err(ctx.unsupported(format!("redirecting fd {fd}")));
                    }
                    set_output(ctx, fd, sink);
                }
                IoFileRedirectKind::DuplicateInput if fd.unwrap_or(0) == 0 && target == "0" => {}
                other => return Err(ctx.unsupported(format!("redirection {other:?}"))),
            }
        }
        IoRedirect::OutputAndError(word, append) => {
            let target = expand::string(ctx, &word.value).await?;
            let Some(sink) = open(ctx, &target, *append) else {
                return Ok(false);
            };
            ctx.stdout = sink.clone();
            ctx.stderr = sink;
        }
        IoRedirect::HereDocument(fd, doc) => {
            if fd.unwrap_or(0) != 0 {
                return Err(ctx.unsupported(format!("heredoc on fd {}", fd.unwrap_or(0))));
            }
            let body = if doc.requires_expansion {
                expand::heredoc(ctx, &doc.doc.value).await?
            } else {
                doc.doc.value.clone()
            };
            set_input(ctx, saved, Bytes::from(body));
        }
        IoRedirect::HereString(fd, word) => {
            if fd.unwrap_or(0) != 0 {
                return Err(ctx.unsupported(format!("here-string on fd {}", fd.unwrap_or(0))));
            }
            let mut body = expand::string(ctx, &word.value).await?;
            body.push('\n');
            set_input(ctx, saved, Bytes::from(body));
        }
    }
    Ok(true)
}
