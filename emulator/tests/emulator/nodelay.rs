//! Accepted sockets have TCP_NODELAY (issue 18, point 5). An exec answers in several small
//! writes (the 101, `session_info`, stdout, the exit frame). Without TCP_NODELAY, Nagle holds a
//! write back while the previous one is unacknowledged, and the client, which has sent data of its
//! own (the stdin EOF, a request), delays that ACK by up to 40 ms (Linux's minimum delayed ACK). So
//! an exec whose output follows a pause, or a plain-HTTP exec streaming its frames, took 40–55 ms
//! more than it should. Measured here before the fix (debug build, load average 13 on 2 cores):
//! every POST exec 41–66 ms, every WebSocket exec 43–83 ms beyond its command's pause; after it,
//! typically 0.6–1 ms and 2–8 ms. The clients here disable Nagle on their own side, as the pool's
//! exec client does, so any stall left is the server's.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{Env, start};

/// Well below the 40 ms delayed-ACK stall (no stalled exec measured under 41 ms), well above a
/// healthy exec. On a loaded 2-core machine a scheduling hiccup can still push one exec past it
/// (seen up to 41 ms at load 13), so a series is repeated when one exec exceeds it, up to `SERIES`
/// times: a Nagle stall slows every exec of every series, so it can never pass, while random
/// hiccups hit a whole series of `EXECS` execs rarely (about one series in three at load 13).
const BOUND: Duration = Duration::from_millis(25);
const EXECS: usize = 6;
const SERIES: usize = 5;

/// Other traffic on the emulator before and between execs: REST reads and a file write.
async fn other_traffic(env: &Env, sprite: &str) {
    assert_eq!(env.get(&format!("/v1/sprites/{sprite}")).await.status(), 200);
    env.write_file(sprite, "/home/sprite/traffic.txt", "x".repeat(300)).await;
    assert_eq!(env.get("/v1/sprites").await.status(), 200);
}

/// How long the WebSocket exec's command waits before it prints: its output then goes out on an
/// idle connection, and the exit frame follows it at once (the write Nagle would hold back).
const PAUSE: Duration = Duration::from_millis(50);

/// One exec over the WebSocket the way the pool's client runs it (Nagle off on its side, EOF
/// sent at once); returns the time from connect to the exit frame, less the command's pause.
async fn ws_exec(env: &Env, sprite: &str) -> Duration {
    let script = format!("sleep {}; echo hi", PAUSE.as_secs_f64());
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("cmd", "bash"), ("cmd", "-c"), ("cmd", script.as_str()), ("path", "bash")])
        .finish();
    let url = format!("{}/v1/sprites/{sprite}/exec?{query}", env.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", env.token).parse().unwrap());
    let started = Instant::now();
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(req, None, true).await.expect("exec upgrade");
    ws.send(Message::Binary(vec![4u8].into())).await.unwrap();
    let mut stdout = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.first() == Some(&1) => stdout.extend_from_slice(&b[1..]),
            Some(Ok(Message::Binary(b))) if b.first() == Some(&3) => {
                assert_eq!(&b[..], &[3, 0], "exit 0");
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("exec ended before its exit frame: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert_eq!(stdout, b"hi\n");
    assert!(took >= PAUSE, "the command slept {PAUSE:?}, the exec took {took:?}");
    drop(ws);
    took - PAUSE
}

/// One plain-HTTP `POST …/exec` on a kept-alive connection; the frames come as separate chunks.
async fn post_exec(env: &Env, sprite: &str) -> Duration {
    let started = Instant::now();
    let resp = env
        .req(Method::POST, &format!("/v1/sprites/{sprite}/exec"))
        .query(&[("cmd", "echo"), ("cmd", "hi"), ("path", "echo")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let took = started.elapsed();
    assert_eq!(&body[..], b"\x01hi\n\x03\x00");
    took
}

/// Runs series of `EXECS` execs, each after other traffic, until one series has every exec under
/// `BOUND`; panics with every measurement otherwise.
async fn assert_no_stall<F, Fut>(env: &Env, sprite: &str, what: &str, mut exec: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut series = Vec::new();
    for _ in 0..SERIES {
        let mut took = Vec::new();
        for _ in 0..EXECS {
            other_traffic(env, sprite).await;
            took.push(exec().await);
        }
        let clean = took.iter().all(|t| *t < BOUND);
        series.push(took);
        if clean {
            eprintln!("{what}: {series:?}");
            return;
        }
    }
    panic!("{what}: an exec took {BOUND:?} or more in every series (Nagle stall?): {series:?}");
}

#[tokio::test]
async fn websocket_exec_after_other_traffic_has_no_nagle_stall() {
    let env = start().await;
    env.create_sprite("nd").await;
    assert_no_stall(&env, "nd", "websocket exec", || ws_exec(&env, "nd")).await;
}

#[tokio::test]
async fn http_exec_after_other_traffic_has_no_nagle_stall() {
    let env = start().await;
    env.create_sprite("nd").await;
    assert_no_stall(&env, "nd", "POST exec", || post_exec(&env, "nd")).await;
}
