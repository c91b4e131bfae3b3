//! A Sprite's process and socket tables: which simulated programs run (service processes, a
//! gateway) and which TCP ports they listen on. The URL proxy, `ps`, `ss` and a local `curl`
//! read them, so they answer from what really runs. Exec sessions are processes too (listed
//! from the session registry).

use std::time::Instant;

use crate::shell::Ctx;
use crate::state::App;
use crate::vm::table::{Listener, Proc, current_service};
use crate::vm::{err, out};

/// Registers a process for as long as it lives: dropping the guard (the program returned or
/// its task was dropped) removes it and every port it listened on.
pub struct ProcGuard {
    app: App,
    sprite: String,
    sprite_id: String,
    pub pid: u32,
}

impl ProcGuard {
    /// A new process with a fresh pid; None when the Sprite is gone.
    pub fn spawn(ctx: &Ctx, args: &str, rss_kb: u64) -> Option<ProcGuard> {
        let pid = ctx.app.world().pid();
        Self::adopt(ctx, pid, args, rss_kb)
    }

    /// Registers the process `pid` (a service's, whose pid the service state already shows).
    pub fn adopt(ctx: &Ctx, pid: u32, args: &str, rss_kb: u64) -> Option<ProcGuard> {
        let mut world = ctx.app.world();
        let sprite = world.sprite_if(&ctx.sprite, &ctx.sprite_id)?;
        let service = current_service();
        let started = Instant::now();
        sprite.vm.procs.insert(pid, Proc { service, args: args.to_string(), started, rss_kb });
        let (app, name, id) = (ctx.app.clone(), ctx.sprite.clone(), ctx.sprite_id.clone());
        Some(ProcGuard { app, sprite: name, sprite_id: id, pid })
    }

    /// Binds `port` for this process; Err(owner pid) when something else holds it.
    pub fn listen(
        &self,
        port: u16,
        addr: &str,
        pool_key: Option<String>,
        root: &str,
    ) -> Result<(), Option<u32>> {
        let mut world = self.app.world();
        let Some(sprite) = world.sprite_if(&self.sprite, &self.sprite_id) else {
            return Err(None);
        };
        if let Some(l) = sprite.vm.listeners.get(&port) {
            return Err(Some(l.pid));
        }
        if !sprite.vm.procs.contains_key(&self.pid) {
            // Its service was stopped meanwhile: the process is already gone.
            return Err(None);
        }
        let service = current_service();
        let listener =
            Listener { pid: self.pid, service, addr: addr.to_string(), pool_key, root: root.to_string() };
        sprite.vm.listeners.insert(port, listener);
        Ok(())
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let mut world = self.app.world();
        if let Some(sprite) = world.sprite_if(&self.sprite, &self.sprite_id) {
            sprite.vm.procs.remove(&self.pid);
            sprite.vm.listeners.retain(|_, l| l.pid != self.pid);
        }
    }
}

/// `[[dd-]hh:]mm:ss`, as procps prints ELAPSED.
fn etime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m:02}:{s:02}"),
        (0, _) => format!("{h:02}:{m:02}:{s:02}"),
        _ => format!("{d}-{h:02}:{m:02}:{s:02}"),
    }
}

struct Row {
    pid: u32,
    secs: u64,
    rss_kb: u64,
    args: String,
}

fn rows(ctx: &Ctx) -> Vec<Row> {
    let mut world = ctx.app.world();
    let Some(sprite) = world.sprite_if(&ctx.sprite, &ctx.sprite_id) else {
        return Vec::new();
    };
    let now = time::OffsetDateTime::now_utc();
    let mut rows: Vec<Row> = sprite
        .sessions
        .values()
        .map(|s| Row {
            pid: s.id as u32,
            secs: (now - s.created).whole_seconds().max(0) as u64,
            rss_kb: 3_600,
            args: s.command.clone(),
        })
        .collect();
    rows.extend(sprite.vm.procs.iter().map(|(pid, p)| Row {
        pid: *pid,
        secs: p.started.elapsed().as_secs(),
        rss_kb: p.rss_kb,
        args: p.args.clone(),
    }));
    rows.sort_by_key(|r| r.pid);
    rows
}

/// `ps -e -o LIST` / `ps -eo LIST` / `ps aux`-free subset: every process, chosen columns.
pub fn ps(ctx: &Ctx, args: &[String]) -> u8 {
    let mut all = false;
    let mut columns: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-e" | "-A" => all = true,
            "-o" => match it.next() {
                Some(list) => columns.extend(list.split(',').map(str::to_string)),
                None => {
                    err(ctx, "error: list of format specifiers must follow -o\n");
                    return 1;
                }
            },
            "-eo" | "-Ao" => {
                all = true;
                match it.next() {
                    Some(list) => columns.extend(list.split(',').map(str::to_string)),
                    None => {
                        err(ctx, "error: list of format specifiers must follow -o\n");
                        return 1;
                    }
                }
            }
            other => {
                err(ctx, format!("emulator: ps: unsupported option {other:?} (supported: -e, -o LIST)\n"));
                return 1;
            }
        }
    }
    if !all || columns.is_empty() {
        err(ctx, "emulator: ps: only `ps -e -o LIST` is supported\n");
        return 1;
    }
    let mut header = Vec::new();
    for c in &columns {
        header.push(match c.as_str() {
            "pid" => format!("{:>7}", "PID"),
            "ppid" => format!("{:>7}", "PPID"),
            "etime" => format!("{:>11}", "ELAPSED"),
            "rss" => format!("{:>5}", "RSS"),
            "user" => format!("{:<8}", "USER"),
            "args" | "cmd" | "command" => "COMMAND".to_string(),
            "comm" => "COMMAND".to_string(),
            other => {
                err(ctx, format!("error: unknown user-defined format specifier \"{other}\"\n"));
                return 1;
            }
        });
    }
    let mut text = header.join(" ").trim_end().to_string();
    text.push('\n');
    for r in rows(ctx) {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "pid" => format!("{:>7}", r.pid),
                "ppid" => format!("{:>7}", 1),
                "etime" => format!("{:>11}", etime(r.secs)),
                "rss" => format!("{:>5}", r.rss_kb),
                "user" => format!("{:<8}", "sprite"),
                "comm" => {
                    r.args.split_whitespace().next().unwrap_or("").rsplit('/').next().unwrap_or("").into()
                }
                _ => r.args.clone(),
            })
            .collect();
        text.push_str(cells.join(" ").trim_end());
        text.push('\n');
    }
    out(ctx, text);
    0
}

#[cfg(test)]
mod tests {
    use super::etime;

    #[test]
    fn elapsed_like_procps() {
        assert_eq!(etime(5), "00:05");
        assert_eq!(etime(3725), "01:02:05");
        assert_eq!(etime(90061), "1-01:01:01");
    }
}
