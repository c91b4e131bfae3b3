//! Exec over WebSocket and plain HTTP, the session registry, and kill.
//!
//! A command runs in its own task, fed by channels, so the socket going away does not stop
//! it: the supervisor notices the dropped receiver and gives the command
//! `max_run_after_disconnect` more before killing it (dropping its future, so whatever it had
//! not done yet never happens).

mod params;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use crate::admission::{Quirk, admit, bearer_ok};
use crate::clock::unix_ms;
use crate::latency;
use crate::respond;
use crate::shell::{self, Ctx, Event, Input, Sink, StdinMsg};
use crate::state::{App, KillReason, Session};

pub use params::{ExecParams, parse_params};

/// A started command as its transport sees it.
pub struct Running {
    pub session_id: u64,
    pub command: String,
    pub created: i64,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub stdin: Option<mpsc::UnboundedSender<StdinMsg>>,
}

pub enum StdinSpec {
    Live,
    Body(Bytes),
    None,
}

/// Registers the session and spawns the command. None if the Sprite is gone.
pub fn start(app: &App, sprite_name: &str, params: ExecParams, stdin: StdinSpec) -> Option<Running> {
    let command = params.argv.join(" ");
    let (kill_tx, kill_rx) = watch::channel(None);
    let now = time::OffsetDateTime::now_utc();
    let (sprite_id, session_id) = {
        let mut world = app.world();
        let sid = world.pid() as u64;
        let sprite = world.sprites.get_mut(sprite_name)?;
        sprite.touch();
        // The chaos switch "down until the next exec" models a gateway an exec wakes up.
        if sprite.gateway.down && sprite.gateway.until_exec {
            sprite.gateway = Default::default();
        }
        sprite.sessions.insert(
            sid,
            Session {
                id: sid,
                command: command.clone(),
                workdir: params.dir.clone(),
                created: now,
                tty: params.tty,
                last_activity: now,
                attached: true,
                kill: kill_tx,
            },
        );
        (sprite.id.clone(), sid)
    };
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    // The command writes to `cmd_tx`; `relay` passes everything on to the client in order.
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    tokio::spawn(relay(app.clone(), sprite_name.to_string(), sprite_id.clone(), cmd_rx, out_tx.clone()));
    let (input, stdin_tx) = match stdin {
        StdinSpec::Live => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Input::Live(rx), Some(tx))
        }
        StdinSpec::Body(b) => (Input::Buffered(Some(b)), None),
        StdinSpec::None => (Input::Closed, None),
    };
    let ctx = Ctx {
        app: app.clone(),
        sprite: sprite_name.to_string(),
        sprite_id,
        env: params.env.clone(),
        cwd: params.dir.clone(),
        stdout: Sink::stdout(cmd_tx.clone()),
        stderr: Sink::stderr(cmd_tx.clone()),
        stdin: input,
        last_status: 0,
        shell: Default::default(),
    };
    let channels = Channels { cmd: cmd_tx, client: out_tx };
    tokio::spawn(supervise(ctx, params.argv, session_id, kill_rx, channels, params.max_run_after_disconnect));
    Some(Running { session_id, command, created: now.unix_timestamp(), events: out_rx, stdin: stdin_tx })
}

/// Where a command's events go: `cmd` through the relay (so the exit follows the last output),
/// `client` only to notice the client going away.
struct Channels {
    cmd: mpsc::UnboundedSender<Event>,
    client: mpsc::UnboundedSender<Event>,
}

/// Passes the command's events on to the client. Once the client has gone, output is still
/// activity: a detached session goes warm about 30 s after its last output (reference §3.7).
async fn relay(
    app: App,
    sprite: String,
    sprite_id: String,
    mut from: mpsc::UnboundedReceiver<Event>,
    to: mpsc::UnboundedSender<Event>,
) {
    while let Some(event) = from.recv().await {
        if to.is_closed()
            && matches!(event, Event::Stdout(_) | Event::Stderr(_))
            && let Some(s) = app.world().sprite_if(&sprite, &sprite_id)
        {
            s.touch();
        }
        let _ = to.send(event);
    }
}

enum Outcome {
    Exited(u8),
    Killed(KillReason),
    Abandoned,
}

async fn supervise(
    mut ctx: Ctx,
    argv: Vec<String>,
    session_id: u64,
    mut kill_rx: watch::Receiver<Option<KillReason>>,
    channels: Channels,
    max_run: Option<Duration>,
) {
    let Channels { cmd: out_tx, client } = channels;
    let app = ctx.app.clone();
    let (sprite, sprite_id) = (ctx.sprite.clone(), ctx.sprite_id.clone());
    let dir_ok = ctx.fs_is_dir(&ctx.cwd.clone());
    let outcome = {
        let run = async {
            if !dir_ok {
                let msg = format!("exec: chdir {}: no such file or directory\n", ctx.cwd);
                ctx.stderr.write(Bytes::from(msg));
                return 1;
            }
            shell::run_command(&mut ctx, argv).await
        };
        tokio::pin!(run);
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        let mut deadline: Option<Instant> = None;
        let mut detached = false;
        loop {
            tokio::select! {
                code = &mut run => break Outcome::Exited(code),
                changed = kill_rx.changed() => {
                    match (changed, *kill_rx.borrow()) {
                        (_, Some(reason)) => break Outcome::Killed(reason),
                        (Err(_), None) => break Outcome::Killed(KillReason::Restart),
                        (Ok(()), None) => {}
                    }
                }
                _ = client.closed(), if !detached => {
                    detached = true;
                    detach(&app, &sprite, &sprite_id, session_id);
                    if let Some(d) = max_run {
                        deadline = Some(Instant::now() + d);
                    }
                }
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    break Outcome::Abandoned;
                }
            }
        }
    };
    {
        let mut world = app.world();
        if let Some(s) = world.sprite_if(&sprite, &sprite_id) {
            s.sessions.remove(&session_id);
        }
    }
    let _ = match outcome {
        Outcome::Exited(code) | Outcome::Killed(KillReason::Signal(code)) => out_tx.send(Event::Exit(code)),
        Outcome::Killed(KillReason::Restart) => out_tx.send(Event::Ended),
        Outcome::Abandoned => Ok(()),
    };
}

/// The client went away: the session no longer keeps the Sprite running, and the idle pause
/// counts from this last activity (reference §3.7).
fn detach(app: &App, sprite: &str, sprite_id: &str, session_id: u64) {
    let mut world = app.world();
    if let Some(s) = world.sprite_if(sprite, sprite_id) {
        s.touch();
        if let Some(session) = s.sessions.get_mut(&session_id) {
            session.attached = false;
        }
    }
}

impl Ctx {
    fn fs_is_dir(&self, path: &str) -> bool {
        let mut world = self.app.world();
        world
            .sprite_if(&self.sprite, &self.sprite_id)
            .is_some_and(|s| s.fs.get(path).is_some_and(|n| n.is_dir()))
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /v1/sprites/{name}/exec`: a WebSocket exec, or the session list without an upgrade.
pub async fn exec_get(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if !is_upgrade(&headers) {
        if let Err(resp) = admit(&app, "exec.sessions", Some(&name), authorized).await {
            return resp;
        }
        return list_sessions(&app, &name);
    }
    let quirk = match admit(&app, "exec", Some(&name), authorized).await {
        Ok(q) => q,
        Err(resp) => return resp,
    };
    let params = match parse_params(query.as_deref()) {
        Ok(p) => p,
        Err(msg) => return respond::text(StatusCode::BAD_REQUEST, msg),
    };
    if params.session_params.contains(&"id") {
        return respond::text(
            StatusCode::BAD_REQUEST,
            "emulator: attaching to sessions is not supported".into(),
        );
    }
    if !app.world().sprites.contains_key(&name) {
        return respond::sprite_not_found();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    ws.max_message_size(16 << 20).on_upgrade(move |socket| async move {
        let tty = params.tty;
        let stdin = if params.stdin { StdinSpec::Live } else { StdinSpec::None };
        match start(&app, &name, params, stdin) {
            Some(running) => ws_session(socket, app, running, quirk, tty).await,
            None => close(socket, 1011, "sprite not found").await,
        }
    })
}

fn list_sessions(app: &App, name: &str) -> Response {
    let world = app.world();
    let Some(sprite) = world.sprites.get(name) else {
        return respond::sprite_not_found();
    };
    let sessions: Vec<_> = sprite.sessions.values().map(Session::to_json).collect();
    respond::json(StatusCode::OK, json!({"count": sessions.len(), "sessions": sessions}))
}

fn frame(id: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(id);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
    drain(&mut socket).await;
}

/// Reads until the peer's close (so its close reply is flushed) or a short timeout.
async fn drain(socket: &mut WebSocket) {
    let _ = timeout(Duration::from_secs(2), async { while let Some(Ok(_)) = socket.recv().await {} }).await;
}

async fn ws_session(mut socket: WebSocket, app: App, mut running: Running, quirk: Option<Quirk>, tty: bool) {
    let info = json!({
        "type": "session_info",
        "session_id": running.session_id.to_string(),
        "command": running.command,
        "created": running.created,
        "cols": 0,
        "rows": 0,
        "is_owner": true,
        "tty": tty,
    });
    if socket.send(Message::Text(info.to_string().into())).await.is_err() {
        return;
    }
    let text_frames = quirk == Some(Quirk::TextFrames);
    let port_note = |kind: &str| {
        Message::Text(
            json!({"type": kind, "port": 8080, "address": "127.0.0.1", "pid": running.session_id})
                .to_string()
                .into(),
        )
    };
    let mut notes = 0u32;
    loop {
        tokio::select! {
            ev = running.events.recv() => {
                let msg = match ev {
                    Some(Event::Stdout(b)) => if tty { Message::Binary(b) } else { frame(1, &b) },
                    Some(Event::Stderr(b)) => if tty { Message::Binary(b) } else { frame(2, &b) },
                    Some(Event::Exit(code)) => {
                        if text_frames && socket.send(port_note("port_closed")).await.is_err() {
                            return;
                        }
                        finish(socket, &app, code, quirk, tty).await;
                        return;
                    }
                    Some(Event::Ended) | None => {
                        close(socket, 1001, "sprite restarted").await;
                        return;
                    }
                };
                if text_frames {
                    let kind = if notes.is_multiple_of(2) { "port_opened" } else { "port_closed" };
                    notes += 1;
                    if socket.send(port_note(kind)).await.is_err() {
                        return;
                    }
                }
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let Some(tx) = &running.stdin {
                        if tty {
                            let _ = tx.send(StdinMsg::Data(b));
                        } else {
                            match b.first() {
                                Some(0) => { let _ = tx.send(StdinMsg::Data(b.slice(1..))); }
                                Some(4) => { let _ = tx.send(StdinMsg::Eof); }
                                _ => {}
                            }
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Exit frame, then hold the socket open 5 s × speed like the real server (clients are
/// expected to close first), then Close(1000).
async fn finish(mut socket: WebSocket, app: &App, code: u8, quirk: Option<Quirk>, tty: bool) {
    let exit = match quirk {
        Some(Quirk::CloseWithoutExit) => {
            close(socket, 1000, "").await;
            return;
        }
        Some(Quirk::EmptyExitPayload) if code == 0 && !tty => Message::Binary(vec![3u8].into()),
        _ if tty => Message::Text(json!({"type": "exit", "exit_code": code}).to_string().into()),
        _ => Message::Binary(vec![3u8, code].into()),
    };
    if socket.send(exit).await.is_err() {
        return;
    }
    let hold = latency::scaled(5000, app.speed());
    let client_closed = timeout(hold, async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok();
    if client_closed {
        drain(&mut socket).await;
    } else {
        close(socket, 1000, "").await;
    }
}

/// `POST /v1/sprites/{name}/exec`: the same frames, concatenated in a streamed body.
pub async fn exec_post(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "exec.http", Some(&name), authorized).await {
        return resp;
    }
    let params = match parse_params(query.as_deref()) {
        Ok(p) => p,
        Err(msg) => return respond::text(StatusCode::BAD_REQUEST, msg),
    };
    if let Some(p) = params.session_params.first() {
        return respond::text(
            StatusCode::BAD_REQUEST,
            format!("parameter {p} is not supported for HTTP exec"),
        );
    }
    let stdin = if params.stdin { StdinSpec::Body(body) } else { StdinSpec::None };
    let Some(running) = start(&app, &name, params, stdin) else {
        return respond::sprite_not_found();
    };
    let stream = futures_util::stream::unfold(Some(running.events), |rx| async move {
        let mut rx = rx?;
        let chunk = match rx.recv().await? {
            Event::Stdout(b) => [&[1u8][..], &b].concat(),
            Event::Stderr(b) => [&[2u8][..], &b].concat(),
            Event::Exit(code) => return Some((Ok::<_, std::io::Error>(Bytes::from(vec![3, code])), None)),
            Event::Ended => return None,
        };
        Some((Ok(Bytes::from(chunk)), Some(rx)))
    });
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream))
        .into_response()
}

/// Exit code for a signal name (128 + n).
fn signal_code(name: &str) -> Option<u8> {
    let n = match name.trim_start_matches("SIG") {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => 9,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        other => other.parse::<u8>().ok().filter(|n| (1..=64).contains(n))?,
    };
    Some(128 + n)
}

/// `POST /v1/sprites/{name}/exec/{id}/kill?signal=SIGTERM`.
pub async fn kill(
    State(app): State<App>,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let authorized = bearer_ok(&headers, &app.0.token);
    if let Err(resp) = admit(&app, "exec.kill", Some(&name), authorized).await {
        return resp;
    }
    let signal = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "signal")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| "SIGTERM".into());
    let Some(code) = signal_code(&signal) else {
        return respond::text(StatusCode::BAD_REQUEST, format!("invalid signal: {signal}"));
    };
    {
        let world = app.world();
        let Some(sprite) = world.sprites.get(&name) else {
            return respond::sprite_not_found();
        };
        let session = id.parse::<u64>().ok().and_then(|n| sprite.sessions.get(&n));
        let Some(session) = session else {
            return respond::text(StatusCode::NOT_FOUND, format!("session not found: {id}"));
        };
        let _ = session.kill.send(Some(KillReason::Signal(code)));
    }
    let sig = format!("SIG{}", signal.trim_start_matches("SIG"));
    respond::ndjson(&[
        json!({"type": "signal", "message": format!("sent {sig} to process {id}"), "signal": sig, "pid": id.parse::<u64>().unwrap_or(0)}),
        json!({"type": "exited", "message": format!("process {id} exited")}),
        json!({"type": "complete", "exit_code": code, "timestamp": unix_ms()}),
    ])
}
