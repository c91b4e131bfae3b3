//! A whole pool for one test: a fresh database (from `#[sqlx::test]`), an emulator, the
//! Sprites provider and an engine whose steps run in-process, with every wait shortened.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use shared::api::Api;
use shared::chain::Chain;
use shared::config::{Config, PoolEnvironment};
use shared::engine::{Engine, EngineSettings, Resources, Webhooks};
use shared::gateway::{GatewayClient, GatewayTimeouts};
use shared::lifecycle::Actor;
use shared::provider::{
    Provider, RailwayProvider, RailwayProviderSettings, SpritesProvider, SpritesProviderSettings,
};
use shared::railway::{RailwayClient, RailwaySettings};
use shared::resources::{AgentMailClient, AgentMailSettings, OpenRouterClient, OpenRouterSettings};
use shared::store::{Instance, Status, Store};
use shared::wiring::{Steps, Wiring};
use sprites_emulator::EmulatorConfig;
use sqlx::PgPool;

#[path = "../common/mod.rs"]
mod common;
pub use common::{Harness, fault_json};

pub struct Pool {
    pub emulator: Harness,
    pub engine: Arc<Engine>,
    /// The API of the first process, with [`API_KEY`].
    pub api: Api,
    pub store: Store,
    timeouts: GatewayTimeouts,
    backend: Backend,
    resources: bool,
}

pub const ANTHROPIC_KEY: &str = "sk-ant-test-key";

/// Who the tests act as in the audit trail, where a change needs an actor.
pub fn operator() -> Actor {
    Actor::Poolctl(Some("test".into()))
}

pub fn test_settings() -> EngineSettings {
    EngineSettings {
        environment: PoolEnvironment::Dev,
        xmtp_env: "dev".into(),
        openclaw_git_ref: "staging".into(),
        min_idle: 0,
        max_total: 10,
        lease_ttl: Duration::from_secs(10),
        max_attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        hop_limit: 50,
        install_wait: Duration::from_secs(5),
        install_poll: Duration::from_millis(50),
        ready_wait: Duration::from_secs(2),
        ready_poll: Duration::from_millis(20),
        ready_timeout: Duration::from_secs(5),
        claim_wait: Duration::from_secs(5),
        claim_budget: Duration::from_secs(25),
        claim_attempt: Duration::from_secs(10),
        claim_stale: Duration::from_secs(60),
        stuck_timeout: Duration::from_secs(600),
        breaker_threshold: 3,
        breaker_pause: Duration::from_secs(300),
        replenish_batch: 10,
        heartbeat_concurrency: 8,
        heartbeat_timeout: Duration::from_secs(1),
        heartbeat_failure_limit: 3,
        recovery_limit: 3,
        reconcile_grace: Duration::from_secs(3600),
        retention: Duration::from_secs(30 * 24 * 3600),
        prune_batch: 1000,
        redrive_batch: 100,
        retry_after: Duration::from_secs(30),
        sizing: shared::sizing::Tuning::production(),
        sprite_idle_pause: Duration::from_secs(30),
        wake_budget: Duration::from_secs(10),
    }
}

pub fn test_timeouts() -> GatewayTimeouts {
    GatewayTimeouts {
        status: Duration::from_secs(1),
        create: Duration::from_secs(2),
        join: Duration::from_secs(3),
    }
}

/// The compute backend under test; both run on the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sprites,
    Railway,
}

pub struct Options {
    pub emulator: EmulatorConfig,
    pub settings: EngineSettings,
    pub timeouts: GatewayTimeouts,
    /// `None`: steps run in-process as they are delivered.
    pub chain: Option<Arc<dyn Chain>>,
    pub backend: Backend,
    /// An OpenRouter key and an AgentMail inbox per instance (both on the emulator).
    pub resources: bool,
    /// Webhook delivery (a test's receiver and schedule); `None`: no URL configured.
    pub webhooks: Option<Webhooks>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            emulator: EmulatorConfig { speed: 0.0, ..EmulatorConfig::default() },
            settings: test_settings(),
            timeouts: test_timeouts(),
            chain: None,
            backend: Backend::Sprites,
            resources: false,
            webhooks: None,
        }
    }
}

pub async fn pool(db: PgPool) -> Pool {
    pool_with(db, Options::default()).await
}

pub async fn pool_with(db: PgPool, options: Options) -> Pool {
    pool_on(Store::new(db), options).await
}

/// A pool on a store the test built itself (through a pooler, say) rather than on the test's
/// own connection pool.
pub async fn pool_on(store: Store, options: Options) -> Pool {
    let emulator = common::start_with(options.emulator, |_| {}).await;
    let mut wired = wiring(&emulator, options.backend, options.resources, &options.timeouts)
        .store(store.clone())
        .settings(options.settings)
        .steps(steps(options.chain));
    if let Some(webhooks) = options.webhooks {
        wired = wired.webhooks(webhooks);
    }
    let process = wired.build().expect("the process wires");
    Pool {
        emulator,
        engine: process.engine,
        api: process.api,
        store,
        timeouts: options.timeouts,
        backend: options.backend,
        resources: options.resources,
    }
}

/// The API key of every test process.
pub const API_KEY: &str = "test-pool-key-0123456789";

/// A process's configuration pointed at the emulator.
pub fn test_config(emulator: &Harness, backend: Backend) -> Config {
    let base = emulator.emulator.base_url();
    let emulated = emulator.emulator.config();
    let mut vars = vec![
        ("POOL_API_KEY", API_KEY.to_string()),
        ("DATABASE_URL", "postgres://unused".to_string()),
        ("SPRITE_TOKEN", emulator.emulator.token().to_string()),
        ("SPRITES_API_URL", base.clone()),
        ("INSTANCE_ANTHROPIC_API_KEY", ANTHROPIC_KEY.to_string()),
    ];
    if backend == Backend::Railway {
        vars.extend([
            ("POOL_PROVIDER", "railway".to_string()),
            ("RAILWAY_API_URL", format!("{base}/graphql/v2")),
            ("RAILWAY_API_TOKEN", emulated.railway_token.clone()),
            ("RAILWAY_PROJECT_ID", sprites_emulator::RAILWAY_PROJECT_ID.to_string()),
            ("RAILWAY_ENVIRONMENT_ID", sprites_emulator::RAILWAY_ENVIRONMENT_ID.to_string()),
            ("RAILWAY_RUNTIME_IMAGE", RAILWAY_IMAGE.to_string()),
            ("RAILWAY_PUBLIC_URL_BASE", format!("{base}/_railway")),
        ]);
    }
    Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
        .expect("a valid test configuration")
}

/// A test process as `shared::wiring` builds every process, with the provider and the
/// resources on clients that retry quickly and the gateway on the test's timeouts; the caller
/// adds the store, the engine settings and the chain.
fn wiring(emulator: &Harness, backend: Backend, with_resources: bool, timeouts: &GatewayTimeouts) -> Wiring {
    let provider: Arc<dyn Provider> = match backend {
        Backend::Sprites => Arc::new(sprites_provider(emulator)),
        Backend::Railway => Arc::new(railway_provider_for(emulator)),
    };
    let resources = if with_resources { resources(emulator) } else { Resources::default() };
    Wiring::new(test_config(emulator, backend))
        .provider(provider)
        .resources(resources)
        .gateway_timeouts(timeouts.clone())
}

/// `None`: steps run in-process as they are delivered.
fn steps(chain: Option<Arc<dyn Chain>>) -> Steps {
    chain.map_or(Steps::InProcess, Steps::Chain)
}

fn sprites_provider(emulator: &Harness) -> SpritesProvider {
    SpritesProvider::new(
        emulator.client.clone(),
        SpritesProviderSettings {
            xmtp_env: "dev".into(),
            anthropic_api_key: Some(SecretString::from(ANTHROPIC_KEY)),
            install_detach_limit: Duration::from_secs(1800),
        },
    )
}

pub const RAILWAY_IMAGE: &str = "ghcr.io/xmtplabs/convos-runtime@sha256:0123456789abcdef";

fn http() -> reqwest::Client {
    shared::tls::http_client_builder().unwrap().build().unwrap()
}

/// The Railway client on the emulator, retrying quickly.
pub fn railway_client(emulator: &Harness) -> RailwayClient {
    let base = emulator.emulator.base_url();
    let mut settings = RailwaySettings::new(
        format!("{base}/graphql/v2").parse().unwrap(),
        SecretString::from(emulator.emulator.config().railway_token.clone()),
        sprites_emulator::RAILWAY_PROJECT_ID.into(),
        sprites_emulator::RAILWAY_ENVIRONMENT_ID.into(),
    );
    settings.public_url_base = Some(format!("{base}/_railway").parse().unwrap());
    // Throttles are waited out on a short clock here (the default starts at 15 s).
    settings.throttle_wait = Duration::from_millis(300);
    settings.retry = shared::railway::RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_server_delay: Duration::from_secs(2),
        ..shared::railway::RetryPolicy::default()
    };
    RailwayClient::new(settings, http())
}

pub fn railway_provider_for(emulator: &Harness) -> RailwayProvider {
    RailwayProvider::new(
        railway_client(emulator),
        http(),
        RailwayProviderSettings {
            image: RAILWAY_IMAGE.into(),
            start_command: shared::provider::POOL_SERVER_START_COMMAND.into(),
            runtime_type: None,
            inbox_keys: Some(shared::provider::InboxKeys::new(
                format!("{}/v0", emulator.emulator.base_url()).parse().unwrap(),
                SecretString::from(emulator.emulator.config().agentmail_key.clone()),
                http(),
            )),
            cpu: 4.0,
            memory_bytes: 4 << 30,
            xmtp_env: "dev".into(),
            pool_environment: "dev".into(),
            anthropic_api_key: Some(SecretString::from(ANTHROPIC_KEY)),
            health_timeout: Duration::from_secs(1),
        },
    )
}

/// OpenRouter and AgentMail on the emulator, retrying quickly.
fn fast_resource_retry() -> shared::resources::RetryPolicy {
    shared::resources::RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_server_delay: Duration::from_secs(2),
        ..shared::resources::RetryPolicy::default()
    }
}

pub fn resources(emulator: &Harness) -> Resources {
    let base = emulator.emulator.base_url();
    let config = emulator.emulator.config();
    Resources {
        openrouter: Some(
            OpenRouterClient::new(
                OpenRouterSettings {
                    api_url: format!("{base}/api/v1").parse().unwrap(),
                    management_key: SecretString::from(config.openrouter_key.clone()),
                    limit_usd: 20.0,
                    limit_reset: Some("monthly".into()),
                },
                http(),
            )
            .with_retry(fast_resource_retry()),
        ),
        agentmail: Some(
            AgentMailClient::new(
                AgentMailSettings {
                    api_url: format!("{base}/v0").parse().unwrap(),
                    api_key: SecretString::from(config.agentmail_key.clone()),
                    domain: None,
                },
                http(),
            )
            .with_retry(fast_resource_retry()),
        ),
    }
}

/// Polls `check` until it returns `Some`, or fails the test after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Pool {
    /// Another process on the same database and Sprites org.
    pub fn other_process(&self, settings: EngineSettings, chain: Option<Arc<dyn Chain>>) -> Arc<Engine> {
        self.build_engine(&self.store, settings, chain)
    }

    /// Another process on this pool's store whose configuration lacks the resource settings
    /// (an operator's poolctl without OPENROUTER_MANAGEMENT_KEY or AGENTMAIL_API_KEY).
    pub fn process_without_resources(&self, settings: EngineSettings) -> Arc<Engine> {
        wiring(&self.emulator, self.backend, false, &self.timeouts)
            .store(self.store.clone())
            .settings(settings)
            .steps(steps(None))
            .build()
            .expect("the process wires")
            .engine
    }

    /// Another process on the same Sprites org with its own store (its own connection pool),
    /// its steps run in-process.
    pub fn process_on(&self, store: &Store, settings: EngineSettings) -> Arc<Engine> {
        self.build_engine(store, settings, None)
    }

    fn build_engine(
        &self,
        store: &Store,
        settings: EngineSettings,
        chain: Option<Arc<dyn Chain>>,
    ) -> Arc<Engine> {
        wiring(&self.emulator, self.backend, self.resources, &self.timeouts)
            .store(store.clone())
            .settings(settings)
            .steps(steps(chain))
            .build()
            .expect("the process wires")
            .engine
    }

    /// The Sprites provider of this pool's processes, for a test that calls it directly.
    pub fn sprites_provider(&self) -> SpritesProvider {
        sprites_provider(&self.emulator)
    }

    /// A gateway client on the test's timeouts, for a test that calls a gateway directly.
    pub fn gateway(&self) -> GatewayClient {
        GatewayClient::new(self.timeouts.clone()).expect("gateway client")
    }

    pub async fn count(&self, status: Status) -> i64 {
        let counts = self.store.counts().await.unwrap();
        counts.into_iter().find(|(s, _)| *s == status).map(|(_, n)| n).unwrap_or(0)
    }

    pub async fn in_status(&self, status: Status) -> Vec<Instance> {
        self.store.instances().await.unwrap().into_iter().filter(|i| i.status == status).collect()
    }

    /// Waits until exactly `n` instances are idle and nothing else is in flight.
    pub async fn settled_idle(&self, n: i64) -> Vec<Instance> {
        eventually(&format!("{n} idle instances"), Duration::from_secs(30), || async {
            let all = self.store.instances().await.unwrap();
            let idle = all.iter().filter(|i| i.status == Status::Idle).count() as i64;
            (idle == n && all.iter().all(|i| i.step.is_none())).then_some(())
        })
        .await;
        self.in_status(Status::Idle).await
    }

    /// Provisions `n` idle instances.
    pub async fn provision(&self, n: usize) -> Vec<Instance> {
        let refill = self.engine.add_instances(n as u32, &operator()).await.unwrap();
        assert_eq!(refill.created.len(), n, "{refill:?}");
        self.settled_idle(n as i64).await
    }

    pub async fn instance(&self, id: &str) -> Option<Instance> {
        self.store.instance(id).await.unwrap()
    }

    pub async fn read_file(&self, sprite: &str, path: &str) -> Option<Vec<u8>> {
        self.emulator.client.read_file(sprite, path).await.unwrap().map(|b| b.to_vec())
    }

    pub async fn sprite_names(&self) -> Vec<String> {
        let state = self.emulator.state().await;
        let mut names: Vec<String> = state["sprites"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["name"].as_str().map(String::from)).collect())
            .or_else(|| state["sprites"].as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Switches a Sprite's gateway off (until the next exec on it when `until_exec`).
    pub async fn gateway_down(&self, sprite: &str, until_exec: bool) {
        let url = format!("{}/_emulator/sprites/{sprite}/gateway", self.emulator.emulator.base_url());
        let body = serde_json::json!({"down": true, "until_exec": until_exec});
        let response = self.emulator.raw().post(url).json(&body).send().await.unwrap();
        assert!(response.status().is_success());
    }

    /// The Sprite dies outside the pool's control.
    pub async fn kill_sprite(&self, sprite: &str) {
        let url = format!("{}/_emulator/sprites/{sprite}/kill", self.emulator.emulator.base_url());
        let response = self.emulator.raw().post(url).send().await.unwrap();
        assert!(response.status().is_success());
    }

    /// GET /convos/status on the instance with this token: the HTTP status and the body.
    pub async fn gateway_status(&self, instance: &Instance, token: &SecretString) -> (u16, Value) {
        let url = format!("{}/convos/status", instance.url.as_deref().unwrap());
        let response = self
            .emulator
            .raw()
            .get(url)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}
