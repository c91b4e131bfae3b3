//! Helpers shared by the integration tests: an emulator on a random port, an authed HTTP
//! client, and a raw exec WebSocket client that records every frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, Response};
use serde_json::Value;
pub use sprites_emulator::OPENCLAW_DIR;
use sprites_emulator::{Emulator, EmulatorConfig, OPENCLAW_INSTALL_STEPS};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const OPENCLAW_CONFIG: &str = "/home/sprite/.openclaw/openclaw.json";

/// The least config the gateway starts on (convos-contracts §7): local mode, reload off.
pub fn gateway_config() -> Value {
    serde_json::json!({"gateway": {"mode": "local", "port": 8080, "bind": "lan", "reload": {"mode": "off"}}})
}

/// The gateway service definition the tests use.
pub fn gateway_service() -> Value {
    serde_json::json!({
        "cmd": "node",
        "args": ["openclaw.mjs", "gateway", "--port", "8080", "--bind", "lan"],
        "dir": OPENCLAW_DIR,
        "http_port": 8080,
    })
}

pub struct Env {
    pub emu: Emulator,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

/// Instant latencies; setup script 1 s before speed (so instant too).
pub fn fast() -> EmulatorConfig {
    EmulatorConfig { speed: 0.0, setup_secs: 1.0, ..Default::default() }
}

pub async fn start() -> Env {
    start_with(fast()).await
}

pub async fn start_with(config: EmulatorConfig) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emu = Emulator::start(config).await.expect("emulator starts");
    let http = reqwest::Client::builder().no_proxy().build().expect("http client");
    Env { base: emu.base_url(), token: emu.token().to_string(), emu, http }
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.expect("GET")
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.req(Method::DELETE, path).send().await.expect("DELETE")
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.req(Method::POST, path).json(&body).send().await.expect("POST")
    }

    pub async fn put(&self, path: &str, body: Value) -> Response {
        self.req(Method::PUT, path).json(&body).send().await.expect("PUT")
    }

    /// Unauthenticated control-API call.
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("control call")
    }

    pub async fn add_fault(&self, fault: Value) -> String {
        let resp = self.control(Method::POST, "/_emulator/faults", Some(fault)).await;
        assert_eq!(resp.status(), 201);
        json(resp).await["id"].as_str().unwrap().to_string()
    }

    pub async fn set_config(&self, patch: Value) {
        let resp = self.control(Method::PUT, "/_emulator/config", Some(patch)).await;
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    pub async fn create_sprite(&self, name: &str) -> Value {
        let resp = self.post("/v1/sprites", serde_json::json!({"name": name})).await;
        assert_eq!(resp.status(), 201);
        json(resp).await
    }

    pub async fn create_public_sprite(&self, name: &str) -> Value {
        let resp = self
            .post("/v1/sprites", serde_json::json!({"name": name, "url_settings": {"auth": "public"}}))
            .await;
        assert_eq!(resp.status(), 201);
        json(resp).await
    }

    pub async fn write_file(&self, sprite: &str, path: &str, data: impl Into<reqwest::Body>) {
        let resp = self
            .req(Method::PUT, &format!("/v1/sprites/{sprite}/fs/write"))
            .query(&[("path", path), ("workingDir", "/"), ("mkdirParents", "true")])
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }

    /// None when the file does not exist.
    pub async fn read_file(&self, sprite: &str, path: &str) -> Option<Vec<u8>> {
        let resp = self
            .req(Method::GET, &format!("/v1/sprites/{sprite}/fs/read"))
            .query(&[("path", path), ("workingDir", "/")])
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => Some(resp.bytes().await.unwrap().to_vec()),
            404 => None,
            s => panic!("fs read {path}: {s}"),
        }
    }

    pub async fn put_service(&self, sprite: &str, svc: &str, body: Value) -> Response {
        self.put(&format!("/v1/sprites/{sprite}/services/{svc}"), body).await
    }

    /// Installs node 22, pnpm and a built OpenClaw at [`OPENCLAW_DIR`] the way the setup script
    /// does, one exec per step (no shell syntax needed).
    pub async fn install_openclaw(&self, sprite: &str) {
        for argv in OPENCLAW_INSTALL_STEPS {
            let r = self.exec(sprite, argv).await;
            assert_eq!(r.code(), 0, "{argv:?}: {}", r.err());
        }
    }

    /// Defines the gateway service (`node openclaw.mjs gateway --port 8080 --bind lan`, URL on
    /// 8080) on an installed Sprite, with a config it starts on unless the test wrote one; it
    /// boots on its own time.
    pub async fn put_gateway_service(&self, sprite: &str) {
        if self.read_file(sprite, OPENCLAW_CONFIG).await.is_none() {
            self.write_file(sprite, OPENCLAW_CONFIG, serde_json::to_vec(&gateway_config()).unwrap()).await;
        }
        let resp = self.put_service(sprite, "gateway", gateway_service()).await;
        assert_eq!(resp.status(), 200);
    }

    /// Installs OpenClaw (once), starts the gateway service and waits until it listens.
    pub async fn start_gateway(&self, sprite: &str) {
        if self.read_file(sprite, &format!("{OPENCLAW_DIR}/dist/entry.js")).await.is_none() {
            self.install_openclaw(sprite).await;
        }
        self.put_gateway_service(sprite).await;
        assert!(self.wait_listening(sprite, 8080).await, "the gateway listens on 8080");
    }

    /// Whether something listens on `port` in the Sprite within 5 s.
    pub async fn wait_listening(&self, sprite: &str, port: u16) -> bool {
        eventually(Duration::from_secs(5), || async {
            let state = json(self.get("/_emulator/state").await).await;
            state["sprites"][sprite]["listening"].as_array().is_some_and(|l| l.contains(&Value::from(port)))
        })
        .await
    }

    pub async fn checkpoint(&self, sprite: &str, comment: &str) -> String {
        let resp = self
            .post(&format!("/v1/sprites/{sprite}/checkpoint"), serde_json::json!({"comment": comment}))
            .await;
        assert_eq!(resp.status(), 200);
        let lines = ndjson(resp).await;
        let data = lines.last().unwrap()["data"].as_str().unwrap().to_string();
        data.split_whitespace().find(|w| w.starts_with('v')).unwrap().to_string()
    }

    pub async fn restore(&self, sprite: &str, id: &str) -> Vec<Value> {
        let resp = self.post(&format!("/v1/sprites/{sprite}/checkpoints/{id}/restore"), Value::Null).await;
        assert_eq!(resp.status(), 200);
        ndjson(resp).await
    }

    /// Opens an exec WebSocket; `query` is appended as is (already encoded pairs).
    pub async fn ws(&self, sprite: &str, query: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
        let qs: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
        let url = format!("{}/v1/sprites/{sprite}/exec?{qs}", self.base.replacen("http", "ws", 1));
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("authorization", format!("Bearer {}", self.token).parse().unwrap());
        tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
    }

    /// Runs argv over the WebSocket with no stdin and collects everything up to the exit.
    pub async fn exec(&self, sprite: &str, argv: &[&str]) -> Exec {
        self.exec_with(sprite, argv, &[]).await
    }

    pub async fn exec_with(&self, sprite: &str, argv: &[&str], extra: &[(&str, &str)]) -> Exec {
        let mut query: Vec<(&str, &str)> = argv.iter().map(|a| ("cmd", *a)).collect();
        query.extend_from_slice(extra);
        let mut ws = self.ws(sprite, &query).await.expect("exec websocket");
        let result = collect(&mut ws, true).await;
        let _ = ws.close(None).await;
        result
    }
}

pub async fn json(resp: Response) -> Value {
    resp.json().await.expect("JSON body")
}

pub async fn ndjson(resp: Response) -> Vec<Value> {
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect()
}

/// Everything one exec socket delivered.
#[derive(Debug, Default)]
pub struct Exec {
    pub session_info: Option<Value>,
    /// Text frames other than the first `session_info`.
    pub texts: Vec<Value>,
    /// Raw binary frames in arrival order (stream id byte included).
    pub frames: Vec<Vec<u8>>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit frame's payload (may be empty), if one arrived.
    pub exit_payload: Option<Vec<u8>>,
    /// The close code the server sent, if it closed.
    pub close_code: Option<u16>,
}

impl Exec {
    pub fn code(&self) -> u8 {
        let payload = self.exit_payload.as_ref().expect("an exit frame");
        payload.first().copied().unwrap_or(0)
    }
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Reads frames until the exit frame (when `stop_at_exit`), a close, or 10 s of silence.
pub async fn collect(ws: &mut Ws, stop_at_exit: bool) -> Exec {
    let mut r = Exec::default();
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => break,
            Err(_) => panic!("exec socket silent for 10 s: {r:?}"),
        };
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("text frames are JSON");
                if r.session_info.is_none() && r.frames.is_empty() && r.texts.is_empty() {
                    r.session_info = Some(v);
                } else {
                    r.texts.push(v);
                }
            }
            Message::Binary(b) => {
                let b = b.to_vec();
                match b.first() {
                    Some(1) => r.stdout.extend_from_slice(&b[1..]),
                    Some(2) => r.stderr.extend_from_slice(&b[1..]),
                    Some(3) => r.exit_payload = Some(b[1..].to_vec()),
                    _ => {}
                }
                r.frames.push(b);
                if stop_at_exit && r.exit_payload.is_some() {
                    break;
                }
            }
            Message::Close(frame) => {
                r.close_code = Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                break;
            }
            _ => {}
        }
    }
    r
}

pub async fn send_stdin(ws: &mut Ws, data: &[u8]) {
    let mut frame = vec![0u8];
    frame.extend_from_slice(data);
    ws.send(Message::Binary(frame.into())).await.unwrap();
}

pub async fn send_eof(ws: &mut Ws) {
    ws.send(Message::Binary(vec![4u8].into())).await.unwrap();
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
