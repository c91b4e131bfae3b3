//! The in-VM network as programs see it: `ss` lists the sockets simulated programs listen on,
//! `curl` reaches them on 127.0.0.1 (the gateway answers as through the Sprite URL) and
//! fetches the few installer URLs the setup recipes use. Anything else fails the way a Sprite
//! without network would, never with an empty success.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use bytes::Bytes;

use crate::fs::Fs;
use crate::gateway::{self, Host, Layout, Route};
use crate::shell::Ctx;
use crate::state::World;
use crate::vm::{binary, err, out, path, take_share, write_file};

/// `ss -l -t [-n] [-p]` (any order, combined or not): the listening TCP sockets.
pub fn ss(ctx: &Ctx, args: &[String]) -> u8 {
    let mut flags = String::new();
    for a in args {
        match a.strip_prefix('-') {
            Some(f) if !f.starts_with('-') => flags.push_str(f),
            _ => {
                err(ctx, format!("emulator: ss: unsupported argument {a:?} (supported: -l -t -n -p)\n"));
                return 1;
            }
        }
    }
    if let Some(bad) = flags.chars().find(|c| !"ltnp".contains(*c)) {
        err(ctx, format!("emulator: ss: option -{bad} is not simulated (supported: -l -t -n -p)\n"));
        return 1;
    }
    if !flags.contains('l') || !flags.contains('t') {
        err(ctx, "emulator: ss: only listening TCP sockets (-lt) are simulated\n");
        return 1;
    }
    let with_process = flags.contains('p');
    let mut text = format!(
        "{:<6} {:<6} {:<6} {:>25} {:>25}\n",
        "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"
    );
    {
        let mut world = ctx.app.world();
        let Some(sprite) = world.sprite_if(&ctx.sprite, &ctx.sprite_id) else {
            return 1;
        };
        for (port, l) in &sprite.vm.listeners {
            let mut line = format!(
                "{:<6} {:<6} {:<6} {:>25} {:>25}",
                "LISTEN",
                0,
                511,
                format!("{}:{port}", l.addr),
                "0.0.0.0:*"
            );
            if with_process {
                line.push_str(&format!(" users:((\"node\",pid={},fd=21))", l.pid));
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    out(ctx, text);
    0
}

struct Request {
    url: String,
    method: Option<String>,
    headers: Vec<String>,
    data: Option<String>,
    output: Option<String>,
    write_out: Option<String>,
    fail: bool,
    silent: bool,
    show_error: bool,
}

fn parse(args: &[String]) -> Result<Request, String> {
    let mut r = Request {
        url: String::new(),
        method: None,
        headers: Vec::new(),
        data: None,
        output: None,
        write_out: None,
        fail: false,
        silent: false,
        show_error: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("curl: option {a}: requires parameter"));
        match a.as_str() {
            "-o" | "--output" => r.output = Some(value()?),
            "-w" | "--write-out" => r.write_out = Some(value()?),
            "-X" | "--request" => r.method = Some(value()?),
            "-H" | "--header" => r.headers.push(value()?),
            "-d" | "--data" | "--data-raw" | "--data-binary" => r.data = Some(value()?),
            "-m" | "--max-time" | "--connect-timeout" | "--retry" => {
                value()?;
            }
            "--fail" => r.fail = true,
            "--silent" => r.silent = true,
            "--show-error" => r.show_error = true,
            "--location" | "--progress-bar" | "--compressed" | "--proto" => {}
            flag if flag.starts_with("--") => {
                return Err(format!("emulator: curl: option {flag} is not simulated"));
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                for c in flag[1..].chars() {
                    match c {
                        'f' => r.fail = true,
                        's' => r.silent = true,
                        'S' => r.show_error = true,
                        'L' | '#' => {}
                        other => return Err(format!("emulator: curl: option -{other} is not simulated")),
                    }
                }
            }
            url => r.url = url.to_string(),
        }
    }
    if r.url.is_empty() {
        return Err("curl: no URL specified".into());
    }
    Ok(r)
}

pub async fn curl(ctx: &mut Ctx, args: &[String]) -> u8 {
    let req = match parse(args) {
        Ok(r) => r,
        Err(msg) => {
            err(ctx, format!("{msg}\n"));
            return 2;
        }
    };
    let loud = !req.silent || req.show_error;
    let (scheme, rest) = req.url.split_once("://").unwrap_or(("http", req.url.as_str()));
    let (authority, path_part) =
        rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h.to_string(), p.parse::<u16>().ok()),
        _ => (authority.to_string(), None),
    };
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    let (status, body) = if ["127.0.0.1", "localhost", "0.0.0.0", "[::1]"].contains(&host.as_str()) {
        match local(ctx, port, &path_part, &req).await {
            Some(answer) => answer,
            None => {
                if loud {
                    err(
                        ctx,
                        format!(
                            "curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server\n"
                        ),
                    );
                }
                write_out(ctx, &req, 0);
                return 7;
            }
        }
    } else {
        match remote(ctx, &req.url).await {
            Some(body) => (200, body),
            None => {
                if loud {
                    err(
                        ctx,
                        format!("curl: (6) Could not resolve host: {host} (the emulator has no network)\n"),
                    );
                }
                write_out(ctx, &req, 0);
                return 6;
            }
        }
    };
    if req.fail && status >= 400 {
        if loud {
            err(ctx, format!("curl: (22) The requested URL returned error: {status}\n"));
        }
        write_out(ctx, &req, status);
        return 22;
    }
    match req.output.as_deref() {
        Some("/dev/null") => {}
        Some(file) => {
            let target = path(ctx, file);
            if let Err(e) = write_file(ctx, &target, body, 0o644) {
                err(ctx, format!("curl: (23) Failure writing output to destination: {}\n", e.message()));
                return 23;
            }
        }
        None => out(ctx, body),
    }
    write_out(ctx, &req, status);
    0
}

fn write_out(ctx: &Ctx, req: &Request, status: u16) {
    if let Some(fmt) = &req.write_out {
        let text = fmt.replace("%{http_code}", &format!("{status:03}")).replace("\\n", "\n");
        out(ctx, text);
    }
}

/// The Sprite's own gateway, as a local client reaches it.
struct LocalHost {
    name: String,
    id: String,
    layout: Layout,
}

impl Host for LocalHost {
    fn files<'w>(&self, world: &'w mut World) -> Option<&'w mut Fs> {
        world.sprite_if(&self.name, &self.id).map(|s| &mut s.fs)
    }

    fn layout(&self) -> &Layout {
        &self.layout
    }
}

/// A request to a port in this Sprite: None when nothing listens there.
async fn local(ctx: &Ctx, port: u16, path_part: &str, req: &Request) -> Option<(u16, Bytes)> {
    let (key, root) = {
        let mut world = ctx.app.world();
        let sprite = world.sprite_if(&ctx.sprite, &ctx.sprite_id)?;
        let listener = sprite.vm.listener(port)?;
        (listener.pool_key.clone(), listener.root.clone())
    };
    let mut layout = Layout::sprite();
    layout.control_ui = Some(gateway::control_ui::control_ui_index(&root));
    let host = LocalHost { name: ctx.sprite.clone(), id: ctx.sprite_id.clone(), layout };
    let method =
        req.method.clone().unwrap_or_else(|| if req.data.is_some() { "POST".into() } else { "GET".into() });
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let mut headers = HeaderMap::new();
    for h in &req.headers {
        if let Some((k, v)) = h.split_once(':')
            && let (Ok(k), Ok(v)) =
                (HeaderName::from_bytes(k.trim().as_bytes()), HeaderValue::from_str(v.trim()))
        {
            headers.insert(k, v);
        }
    }
    let body = Bytes::from(req.data.clone().unwrap_or_default());
    let route = Route::of(path_part.split('?').next().unwrap_or("/"));
    let resp = gateway::serve(&ctx.app, &host, route, key.as_deref(), &method, &headers, &body).await;
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap_or_default();
    Some((status, bytes))
}

/// The installer URLs the setup recipes fetch, as the emulator renders them.
async fn remote(ctx: &Ctx, url: &str) -> Option<Bytes> {
    if let Some(rest) = url.strip_prefix("https://deb.nodesource.com/setup_") {
        let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if major.is_empty() || rest[major.len()..] != *".x" {
            return None;
        }
        take_share(ctx, 1).await;
        return Some(Bytes::from(nodesource_script(&major)));
    }
    match url {
        "https://bun.sh/install" => {
            take_share(ctx, 1).await;
            Some(Bytes::from_static(BUN_SCRIPT.as_bytes()))
        }
        BUN_BINARY_URL => {
            take_share(ctx, 4).await;
            Some(binary("bun", "1.3.3"))
        }
        _ => None,
    }
}

const BUN_BINARY_URL: &str = "https://github.com/oven-sh/bun/releases/latest/download/bun-linux-x64";

/// The effect of bun.sh/install (the real one downloads a zip and unzips it).
const BUN_SCRIPT: &str = r#"#!/usr/bin/env bash
# bun.sh/install, as the sprites emulator renders it: the same result, fewer steps.
mkdir -p "$HOME/.bun/bin"
curl --fail --location --silent --output "$HOME/.bun/bin/bun" https://github.com/oven-sh/bun/releases/latest/download/bun-linux-x64
chmod 755 "$HOME/.bun/bin/bun"
echo "bun was installed successfully to ~/.bun/bin/bun"
"#;

/// The effect of NodeSource's setup_NN.x: its apt repository, then an index update.
fn nodesource_script(major: &str) -> String {
    format!(
        "#!/bin/bash\n\
         # deb.nodesource.com/setup_{major}.x, as the sprites emulator renders it.\n\
         apt-get update -qq\n\
         mkdir -p /usr/share/keyrings /etc/apt/sources.list.d\n\
         touch /usr/share/keyrings/nodesource.gpg\n\
         echo \"deb [signed-by=/usr/share/keyrings/nodesource.gpg] https://deb.nodesource.com/node_{major}.x nodistro main\" > /etc/apt/sources.list.d/nodesource.list\n\
         apt-get update -qq\n\
         echo \"Repository configured successfully.\"\n"
    )
}
