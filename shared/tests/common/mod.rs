//! What every client test needs: an emulator on a random port, a client pointed at it, and
//! the emulator's control API (faults, counters, config) over HTTP.
#![allow(dead_code)]

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use shared::sprites::{CreateSprite, ExecRequest, RetryPolicy, SpritesClient, SpritesConfig, UrlSettings};
use sprites_emulator::{Emulator, EmulatorConfig, OPENCLAW_INSTALL_STEPS};

pub struct Harness {
    pub emulator: Emulator,
    pub client: SpritesClient,
    control: reqwest::Client,
}

/// An emulator with no simulated latency and a client with fast retries.
pub async fn start() -> Harness {
    start_with(EmulatorConfig { speed: 0.0, ..EmulatorConfig::default() }, |_| {}).await
}

pub async fn start_with(config: EmulatorConfig, tune: impl FnOnce(&mut SpritesConfig)) -> Harness {
    let emulator = Emulator::start(config).await.expect("emulator starts");
    let mut client_config = SpritesConfig::new(
        emulator.base_url().parse().expect("emulator URL"),
        SecretString::from(emulator.token().to_string()),
    );
    client_config.retry = RetryPolicy {
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    tune(&mut client_config);
    let client = SpritesClient::new(client_config).expect("client builds");
    let control = shared::tls::http_client_builder().unwrap().build().unwrap();
    Harness { emulator, client, control }
}

impl Harness {
    fn control_url(&self, path: &str) -> String {
        format!("{}/_emulator/{path}", self.emulator.base_url())
    }

    /// Adds a fault (see emulator/README.md) and returns its id.
    pub async fn fault(&self, fault: Value) -> Value {
        let response = self.control.post(self.control_url("faults")).json(&fault).send().await.unwrap();
        assert!(response.status().is_success(), "fault rejected: {}", response.text().await.unwrap());
        response.json::<Value>().await.unwrap()["id"].clone()
    }

    pub async fn clear_faults(&self) {
        let response = self.control.delete(self.control_url("faults")).send().await.unwrap();
        assert!(response.status().is_success());
    }

    pub async fn configure(&self, config: Value) {
        let response = self.control.put(self.control_url("config")).json(&config).send().await.unwrap();
        assert!(response.status().is_success(), "config rejected: {}", response.text().await.unwrap());
    }

    /// Requests the emulator received on one route, faulted ones included.
    pub async fn count(&self, route: &str) -> u64 {
        let counters: Value =
            self.control.get(self.control_url("counters")).send().await.unwrap().json().await.unwrap();
        counters[route].as_u64().unwrap_or(0)
    }

    pub async fn state(&self) -> Value {
        self.control.get(self.control_url("state")).send().await.unwrap().json().await.unwrap()
    }

    /// A public Sprite with the given name.
    pub async fn sprite(&self, name: &str) -> String {
        self.client
            .create_sprite(&CreateSprite {
                name: name.to_string(),
                url_settings: Some(UrlSettings::public()),
                wait_for_capacity: true,
            })
            .await
            .expect("sprite created");
        name.to_string()
    }

    pub fn raw(&self) -> &reqwest::Client {
        &self.control
    }

    /// Installs node 22, pnpm and a built OpenClaw as `sprite-setup.sh` does (the emulator's
    /// Sprites start bare), one exec per step.
    pub async fn install_openclaw(&self, sprite: &str) {
        for argv in OPENCLAW_INSTALL_STEPS {
            let output = self
                .client
                .exec(sprite, &ExecRequest::new(argv.iter().copied()).dir(OPENCLAW_PARENT))
                .await
                .unwrap();
            assert!(output.success(), "{argv:?}: {}", output.stderr_text());
        }
    }

    /// Waits (up to 5 s) until something listens on `port` in the Sprite.
    pub async fn wait_listening(&self, sprite: &str, port: u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let state = self.state().await;
            if state["sprites"][sprite]["listening"].as_array().is_some_and(|l| l.contains(&json!(port))) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "nothing listens on {port} in {sprite}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Where the tests install OpenClaw (as `scripts/sprite-setup.sh` does).
const OPENCLAW_PARENT: &str = "/home/sprite";

pub fn fault_json(route: &str, kind: Value) -> Value {
    json!({ "route": route, "kind": kind })
}
