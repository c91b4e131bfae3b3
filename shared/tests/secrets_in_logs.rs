//! Issue 14.4: no secret in any log line, at any level, from any crate. Whole lifecycles at
//! `RUST_LOG=trace` on the emulator, through the layers every process logs with (JSON and
//! readable), every line captured: the API over HTTP with its key, provisioning with an
//! OpenRouter key and an AgentMail inbox per instance, a claim by creating and one by joining
//! (the Sprites exec and fs WebSockets, the gateways with their tokens), the heartbeat, a
//! recycle that rotates the resources, a destroy, reconcile; on Sprites and on Railway.
//!
//! Its own test binary: the subscriber is global, so it sees every thread of the process.

#[allow(dead_code, unused_imports)]
#[path = "engine/harness.rs"]
mod harness;
mod log_capture;

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use axum::ServiceExt;
use axum::extract::Request;
use regex::Regex;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use shared::logging::{json_layer, readable_layer};
use sqlx::PgPool;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use harness::{ANTHROPIC_KEY, API_KEY, Backend, Options, Pool, eventually, pool_with};
use log_capture::Capture;

/// (JSON lines, readable lines), both at trace, installed once for the whole binary.
static CAPTURES: LazyLock<(Capture, Capture)> = LazyLock::new(|| {
    let (json, readable) = (Capture::default(), Capture::default());
    tracing_subscriber::registry()
        .with(json_layer(EnvFilter::new("trace"), json.writer()))
        .with(readable_layer(EnvFilter::new("trace"), readable.writer()))
        .try_init()
        .expect("the only subscriber of this binary");
    (json, readable)
});

/// The pool's API on a real HTTP server, as `pool-local` serves it.
async fn serve(pool: &Pool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = ServiceExt::<Request>::into_make_service(pool.api.router(None));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(API_KEY);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// The secrets of the pool's configuration (the emulator's credentials) and, as they are
/// made, every instance's gateway token and OpenRouter key.
struct Secrets(BTreeSet<String>);

impl Secrets {
    fn of(pool: &Pool) -> Secrets {
        let config = pool.emulator.emulator.config();
        let configured: [&str; 6] = [
            API_KEY,
            ANTHROPIC_KEY,
            pool.emulator.emulator.token(),
            &config.railway_token,
            &config.openrouter_key,
            &config.agentmail_key,
        ];
        Secrets(configured.iter().map(|s| s.to_string()).collect())
    }

    async fn add_instances(&mut self, pool: &Pool) {
        for instance in pool.store.instances().await.unwrap() {
            self.0.insert(instance.gateway_token.expose_secret().to_string());
            self.0.extend(instance.openrouter_key.map(|k| k.expose_secret().to_string()));
        }
    }

    /// Fails naming the secret and the first line that holds it. Keys made by the emulator
    /// (OpenRouter, inbox-scoped AgentMail) are also found by their shape.
    fn assert_absent_from(&self, captures: &[&Capture]) {
        let shapes = Regex::new(r"sk-or-v1-[0-9a-f]{16}|am_[0-9a-f]{32}").unwrap();
        for capture in captures {
            let text = capture.text();
            for line in text.lines() {
                for secret in &self.0 {
                    assert!(
                        !line.contains(secret.as_str()),
                        "a secret ({}…) is logged: {line}",
                        &secret[..4]
                    );
                }
                assert!(!shapes.is_match(line), "a per-instance key is logged: {line}");
            }
        }
    }
}

/// Both layers wrote the lifecycle's lines, the WebSocket and HTTP clients' among them.
fn assert_captured(json: &Capture, readable: &Capture) {
    let (json, readable) = (json.text(), readable.text());
    assert!(readable.lines().count() > 100, "the readable layer wrote little: {readable}");
    for target in ["tungstenite", "hyper_util", "shared"] {
        assert!(json.contains(&format!(r#""target":"{target}"#)), "nothing from {target}");
    }
    // Issue 14.2: a process given the organisation's model key says so once, at start-up.
    assert!(
        json.lines()
            .any(|l| l.contains(r#""level":"WARN""#) && l.contains("INSTANCE_ANTHROPIC_API_KEY is set")),
        "no start-up warning about the shared model key"
    );
}

async fn join_url_claim(client: &Client) -> String {
    let body = json!({
        "agentName": "joiner",
        "instructions": "hi",
        "joinUrl": sprites_emulator::mint_invite_url("dev"),
    });
    let (status, answer) = client.post("/api/pool/claim", body).await;
    assert!(status == 200 || status == 202, "{status} {answer}");
    if status == 202 {
        let url = answer["statusUrl"].as_str().unwrap().to_string();
        eventually("the join to finish", Duration::from_secs(20), || async {
            let (_, done) = client.get(&url).await;
            (done["status"] == "joined").then_some(())
        })
        .await;
    }
    answer["instanceId"].as_str().unwrap().to_string()
}

#[sqlx::test(migrations = "../migrations")]
async fn a_sprites_lifecycle_at_trace_logs_no_secret(db: PgPool) {
    let (json, readable) = &*CAPTURES;
    let pool = pool_with(db, Options { resources: true, ..Options::default() }).await;
    let client = Client {
        http: shared::tls::http_client_builder().unwrap().build().unwrap(),
        base: serve(&pool).await,
    };
    let mut secrets = Secrets::of(&pool);

    let (status, answer) = client.post("/api/pool/replenish", json!({"count": 3})).await;
    assert_eq!(status, 200, "{answer}");
    pool.settled_idle(3).await;
    secrets.add_instances(&pool).await;

    let (status, created) =
        client.post("/api/pool/claim", json!({"agentName": "maker", "instructions": "hi"})).await;
    assert_eq!(status, 200, "{created}");
    let created = created["instanceId"].as_str().unwrap().to_string();
    let joined = join_url_claim(&client).await;
    pool.engine.heartbeat().await.unwrap();
    let (status, _) = client.get(&format!("/api/pool/debug/{created}")).await;
    assert_eq!(status, 200);

    // The recycle rotates the token, the OpenRouter key and the inbox.
    let (status, answer) = client.delete(&format!("/api/pool/instances/{created}")).await;
    assert_eq!(status, 202, "{answer}");
    pool.settled_idle(2).await;
    secrets.add_instances(&pool).await;
    let (status, answer) = client.delete(&format!("/api/pool/crashed/{joined}")).await;
    assert_eq!(status, 202, "{answer}");
    eventually("the destroyed row to go", Duration::from_secs(20), || async {
        pool.instance(&joined).await.is_none().then_some(())
    })
    .await;
    let (status, _) = client.post("/api/pool/reconcile", json!({})).await;
    assert_eq!(status, 200);
    pool.engine.tick().await.unwrap();

    assert_captured(json, readable);
    secrets.assert_absent_from(&[json, readable]);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_railway_lifecycle_at_trace_logs_no_secret(db: PgPool) {
    let (json, readable) = &*CAPTURES;
    let options = Options { backend: Backend::Railway, resources: true, ..Options::default() };
    let pool = pool_with(db, options).await;
    let client = Client {
        http: shared::tls::http_client_builder().unwrap().build().unwrap(),
        base: serve(&pool).await,
    };
    let mut secrets = Secrets::of(&pool);

    let (status, answer) = client.post("/api/pool/replenish", json!({"count": 2})).await;
    assert_eq!(status, 200, "{answer}");
    let idle = pool.settled_idle(2).await;
    secrets.add_instances(&pool).await;
    let (status, created) =
        client.post("/api/pool/claim", json!({"agentName": "maker", "instructions": "hi"})).await;
    assert_eq!(status, 200, "{created}");
    pool.engine.heartbeat().await.unwrap();
    for instance in &idle {
        let (status, answer) = client.delete(&format!("/api/pool/crashed/{}", instance.id)).await;
        assert_eq!(status, 202, "{answer}");
    }
    eventually("every row to go", Duration::from_secs(20), || async {
        pool.store.instances().await.unwrap().is_empty().then_some(())
    })
    .await;
    pool.engine.tick().await.unwrap();

    secrets.assert_absent_from(&[json, readable]);
}
