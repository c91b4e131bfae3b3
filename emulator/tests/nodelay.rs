//! Accepted sockets have TCP_NODELAY (issue 18, point 5). An exec answers in several small
//! writes (the 101, `session_info`, stdout, the exit frame). Without TCP_NODELAY, Nagle holds a
//! write back while the previous one is unacknowledged, and the client, which has sent data of its
//! own (stdin, the EOF, a request), delays that ACK by up to 40 ms (Linux's minimum delayed ACK).
//! Measured here before the fix (debug build, load average 13 on 2 cores): every WebSocket exec
//! of `cat` with stdin 41–112 ms, every plain-HTTP exec 41–66 ms; after it, about 1.1–2 ms and
//! 0.6–1.3 ms. The clients here disable Nagle on their own side, as the pool's exec client does,
//! so any stall left is the server's.
//!
//! A test binary of its own, unlike the other emulator tests: timings taken while 60 other tests
//! run in parallel in the same process measure those tests, not the sockets (round trips of
//! 100+ ms were seen that way on this machine, with or without the fix).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use sprites_emulator::{Emulator, EmulatorConfig};

struct Env {
    _emu: Emulator,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Env {
    /// An emulator at speed 0 (no simulated latency) with one Sprite, `nd`.
    async fn start() -> Env {
        // reqwest and tokio-tungstenite are built with rustls; it needs a crypto provider even
        // for plain http.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emu =
            Emulator::start(EmulatorConfig { speed: 0.0, ..Default::default() }).await.expect("emulator");
        let http = reqwest::Client::builder().no_proxy().build().expect("http client");
        let env = Env { base: emu.base_url(), token: emu.token().to_string(), _emu: emu, http };
        let created = env.req(Method::POST, "/v1/sprites").json(&serde_json::json!({"name": "nd"})).send();
        assert_eq!(created.await.unwrap().status(), 201);
        env
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.req(Method::GET, path).send().await.expect("GET")
    }

    async fn write_file(&self, sprite: &str, path: &str, data: String) {
        let resp = self
            .req(Method::PUT, &format!("/v1/sprites/{sprite}/fs/write"))
            .query(&[("path", path), ("workingDir", "/"), ("mkdirParents", "true")])
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}

/// Well below the 40 ms delayed-ACK stall (no stalled exec measured under 41 ms), well above a
/// healthy exec (about 1 ms).
const BOUND: Duration = Duration::from_millis(25);
/// Execs timed, each after other traffic.
const EXECS: usize = 6;
/// Tries per exec. On this 2-core machine, shared with other builds (load average 13), the
/// scheduler preempts a busy test for 25-65 ms in about one exec of three, stall or not. A Nagle
/// stall is not random: it hits every exec that follows other traffic, so every try of every exec
/// stays above the bound. So each exec is tried up to `TRIES` times, each try after other traffic,
/// and its fastest try must be under the bound; a preemption on all 8 tries of one exec is
/// unlikely (about 0.3^8).
const TRIES: usize = 8;

/// Other traffic on the emulator before and between execs: REST reads and a file write.
async fn other_traffic(env: &Env, sprite: &str) {
    assert_eq!(env.get(&format!("/v1/sprites/{sprite}")).await.status(), 200);
    env.write_file(sprite, "/home/sprite/traffic.txt", "x".repeat(300)).await;
    assert_eq!(env.get("/v1/sprites").await.status(), 200);
}

/// One exec over the WebSocket the way the pool's client runs one with stdin (Nagle off on its
/// side, stdin and EOF sent at once): `cat` echoes a line. Returns the time from connect to the
/// exit frame.
async fn ws_exec(env: &Env, sprite: &str) -> Duration {
    let url = format!(
        "{}/v1/sprites/{sprite}/exec?cmd=cat&path=cat&stdin=true",
        env.base.replacen("http", "ws", 1)
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {}", env.token).parse().unwrap());
    let started = Instant::now();
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(req, None, true).await.expect("exec upgrade");
    ws.send(Message::Binary(b"\x00hi\n".to_vec().into())).await.unwrap();
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
    drop(ws);
    took
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

/// Times `EXECS` execs, each after other traffic and tried up to `TRIES` times; panics with every
/// measurement unless each exec's fastest try is under `BOUND`.
async fn assert_no_stall<F, Fut>(env: &Env, sprite: &str, what: &str, mut exec: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let mut execs: Vec<Vec<Duration>> = Vec::new();
    for _ in 0..EXECS {
        let mut tries = Vec::new();
        while tries.len() < TRIES && !tries.iter().any(|t| *t < BOUND) {
            other_traffic(env, sprite).await;
            tries.push(exec().await);
        }
        execs.push(tries);
    }
    eprintln!("{what} (tries per exec): {execs:?}");
    for tries in &execs {
        assert!(
            tries.iter().any(|t| *t < BOUND),
            "{what}: every try took {BOUND:?} or more (a Nagle stall?): {execs:?}"
        );
    }
}

/// One test for both kinds of exec, so the two series never run at the same time.
#[tokio::test]
async fn exec_after_other_traffic_has_no_nagle_stall() {
    let env = Env::start().await;
    assert_no_stall(&env, "nd", "websocket exec", || ws_exec(&env, "nd")).await;
    assert_no_stall(&env, "nd", "POST exec", || post_exec(&env, "nd")).await;
}
