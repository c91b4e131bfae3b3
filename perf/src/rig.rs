//! What every scenario stands on: a database of its own on the Postgres server the tests use,
//! an emulator, and engines built with the settings the scenario chooses.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use shared::chain::Chain;
use shared::config::{Config, PoolEnvironment};
use shared::engine::{Engine, EngineSettings};
use shared::gateway::GatewayTimeouts;
use shared::provider::{SpritesProvider, SpritesProviderSettings};
use shared::sprites::{RetryPolicy, SpritesClient, SpritesConfig};
use shared::store::Store;
use shared::wiring::{Process, Steps, Wiring};
use sprites_emulator::{Emulator, EmulatorConfig};
use sqlx::Connection;

/// The server to create scratch databases on: `DATABASE_URL`, else the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A fresh, migrated database named `perf_<label>_<random>`; dropped by `ScratchDb::drop_db`.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
    server: String,
}

impl ScratchDb {
    pub async fn create(label: &str) -> Result<ScratchDb, String> {
        let server = server_url();
        let name = format!("perf_{label}_{}", uuid::Uuid::new_v4().simple()).to_lowercase();
        let mut admin = sqlx::PgConnection::connect(&server).await.map_err(|e| format!("postgres: {e}"))?;
        // The name is ours (letters, digits, underscores), never user text.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("create database: {e}"))?;
        let url = url_with_database(&server, &name)?;
        let store = Store::connect_lazy(&url, 1).map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| format!("migrations: {e}"))?;
        Ok(ScratchDb { name, url, server })
    }

    pub fn store(&self, connections: u32) -> Store {
        Store::connect_lazy(&self.url, connections).expect("a valid database URL")
    }

    pub async fn drop_db(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.server).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await;
        }
    }
}

fn url_with_database(server: &str, database: &str) -> Result<String, String> {
    let mut url = url::Url::parse(server).map_err(|e| format!("DATABASE_URL: {e}"))?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// Engine settings for measuring: the production values with the waits a bench cannot sit
/// through shortened, and no pace limit on creation unless a scenario sets one.
pub fn bench_settings() -> EngineSettings {
    EngineSettings {
        environment: PoolEnvironment::Dev,
        xmtp_env: "dev".into(),
        openclaw_git_ref: "staging".into(),
        min_idle: 0,
        max_total: 2000,
        lease_ttl: Duration::from_secs(10),
        max_attempts: 5,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(2),
        hop_limit: 12,
        install_wait: Duration::from_secs(5),
        install_poll: Duration::from_millis(100),
        ready_wait: Duration::from_secs(5),
        ready_poll: Duration::from_millis(50),
        ready_timeout: Duration::from_secs(60),
        claim_wait: Duration::from_secs(5),
        claim_budget: Duration::from_secs(25),
        claim_attempt: Duration::from_secs(10),
        claim_stale: Duration::from_secs(30),
        stuck_timeout: Duration::from_secs(600),
        breaker_threshold: 1000,
        breaker_pause: Duration::from_secs(5),
        replenish_batch: 2000,
        heartbeat_concurrency: 16,
        heartbeat_timeout: Duration::from_secs(5),
        heartbeat_failure_limit: 3,
        recovery_limit: 3,
        reconcile_grace: Duration::from_secs(3600),
        retention: Duration::from_secs(30 * 24 * 3600),
        prune_batch: 1000,
        redrive_batch: 500,
        retry_after: Duration::from_secs(30),
        sizing: shared::sizing::Tuning::production(),
        sprite_idle_pause: Duration::from_secs(30),
        wake_budget: Duration::from_secs(60),
    }
}

/// A Sprites client on the emulator with quick retries.
pub fn sprites_client(emulator: &Emulator) -> SpritesClient {
    let mut config = SpritesConfig::new(
        emulator.base_url().parse().expect("emulator URL"),
        SecretString::from(emulator.token().to_string()),
    );
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    SpritesClient::new(config).expect("sprites client")
}

/// The organisation's model key every measured process is configured with (the soak looks
/// for it in its logs).
pub const ANTHROPIC_KEY: &str = "sk-ant-perf";

/// The key every benchmark's API process is configured with.
pub const API_KEY: &str = "bench-pool-key";

/// The configuration of a process on the emulator at `url`, with the pool size of `settings`.
pub fn emulator_config(url: &str, token: &str, settings: &EngineSettings) -> Config {
    config_with(&[
        ("POOL_API_KEY", API_KEY.to_string()),
        ("SPRITE_TOKEN", token.to_string()),
        ("SPRITES_API_URL", url.to_string()),
        ("INSTANCE_ANTHROPIC_API_KEY", ANTHROPIC_KEY.to_string()),
        ("POOL_MIN_IDLE", settings.min_idle.to_string()),
        ("POOL_MAX_TOTAL", settings.max_total.to_string()),
    ])
}

/// A process wired as production wires it (`shared::wiring`), on the Sprites API behind
/// `client` (quick retries), with the store, engine settings and gateway timeouts the scenario
/// chose. Steps run in-process unless the caller picks other `Steps`.
pub fn wiring(
    config: Config,
    client: SpritesClient,
    store: &Store,
    settings: EngineSettings,
    timeouts: GatewayTimeouts,
) -> Wiring {
    let provider = SpritesProvider::new(
        client,
        SpritesProviderSettings {
            xmtp_env: config.instance_xmtp_env.clone(),
            anthropic_api_key: config.instance_anthropic_api_key.clone(),
            install_detach_limit: Duration::from_secs(1800),
        },
    );
    Wiring::new(config)
        .store(store.clone())
        .provider(Arc::new(provider))
        .settings(settings)
        .gateway_timeouts(timeouts)
}

/// A process on the emulator. With `chain` None, steps run as tasks of this process as they
/// are delivered (the local main job's arrangement).
pub fn process(
    emulator: &Emulator,
    store: &Store,
    settings: EngineSettings,
    timeouts: GatewayTimeouts,
    chain: Option<Arc<dyn Chain>>,
) -> Process {
    let config = emulator_config(&emulator.base_url(), emulator.token(), &settings);
    let wiring = wiring(config, sprites_client(emulator), store, settings, timeouts);
    let steps = chain.map_or(Steps::InProcess, Steps::Chain);
    wiring.steps(steps).build().expect("the process wires")
}

/// The engine of [`process`], for scenarios without an HTTP API.
pub fn engine(
    emulator: &Emulator,
    store: &Store,
    settings: EngineSettings,
    timeouts: GatewayTimeouts,
    chain: Option<Arc<dyn Chain>>,
) -> Arc<Engine> {
    process(emulator, store, settings, timeouts, chain).engine
}

/// An emulator with no latency at all (speed 0) unless the scenario says otherwise.
pub async fn emulator(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

// ---- Added with the benchmarks; usable by any scenario.

/// A configuration as a production process would read it from its environment, with the
/// values a scenario chooses (`vars`); everything else takes its production default.
pub fn config_with(vars: &[(&str, String)]) -> Config {
    let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone());
    Config::from_lookup(|name| {
        lookup(name).or_else(|| match name {
            "POOL_API_KEY" => Some("perf-key".into()),
            "DATABASE_URL" => Some(server_url()),
            "SPRITE_TOKEN" => Some("emulator-token".into()),
            _ => None,
        })
    })
    .expect("a valid configuration")
}

/// The engine settings a production process derives from its configuration
/// (`EngineSettings::from_config`: production waits, polls, backoff, replenish pace and
/// heartbeat concurrency), with the pool size the scenario wants.
pub fn production_settings(min_idle: u32, max_total: u32) -> EngineSettings {
    EngineSettings::from_config(&config_with(&[
        ("POOL_MIN_IDLE", min_idle.to_string()),
        ("POOL_MAX_TOTAL", max_total.to_string()),
    ]))
}

/// The HTTP API of one process (`pool_local::serve`, the local main job's server) on a free
/// port of 127.0.0.1.
pub struct ApiServer {
    pub base_url: String,
    pub process: Arc<Process>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn serve_api(process: Process) -> Result<ApiServer, String> {
    let process = Arc::new(process);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(pool_local::serve(process.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Ok(ApiServer { base_url: format!("http://{addr}"), process, stop, task })
}

impl ApiServer {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// The emulator's control API (`/_emulator/...`, see emulator/README.md) over HTTP.
#[derive(Clone)]
pub struct EmulatorControl {
    http: reqwest::Client,
    base: String,
}

impl EmulatorControl {
    pub fn new(emulator: &Emulator) -> EmulatorControl {
        let http = shared::tls::http_client_builder().expect("TLS config").build().expect("HTTP client");
        EmulatorControl { http, base: format!("{}/_emulator", emulator.base_url()) }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<serde_json::Value, String> {
        let response = request.send().await.map_err(|e| format!("emulator control: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("emulator control: {e}"))?;
        if !status.is_success() {
            return Err(format!("emulator control answered {status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// `PUT /_emulator/config` with a partial config; answers the whole config.
    pub async fn configure(&self, patch: serde_json::Value) -> Result<serde_json::Value, String> {
        self.send(self.http.put(format!("{}/config", self.base)).json(&patch)).await
    }

    pub async fn config(&self) -> Result<serde_json::Value, String> {
        self.send(self.http.get(format!("{}/config", self.base))).await
    }

    /// Adds a fault; answers its id.
    pub async fn fault(&self, fault: serde_json::Value) -> Result<String, String> {
        let answer = self.send(self.http.post(format!("{}/faults", self.base)).json(&fault)).await?;
        Ok(answer["id"].as_str().unwrap_or_default().to_string())
    }

    pub async fn clear_faults(&self) -> Result<(), String> {
        self.send(self.http.delete(format!("{}/faults", self.base))).await.map(|_| ())
    }

    /// Every Sprite's power state and running time, and the account's totals.
    pub async fn lifecycle(&self) -> Result<serde_json::Value, String> {
        self.send(self.http.get(format!("{}/lifecycle", self.base))).await
    }

    /// Requests received per route since the start (faulted ones included).
    pub async fn counters(&self) -> Result<std::collections::BTreeMap<String, u64>, String> {
        let value = self.send(self.http.get(format!("{}/counters", self.base))).await?;
        serde_json::from_value(value).map_err(|e| format!("counters: {e}"))
    }
}

/// Waits until exactly `n` instances are idle and nothing is in flight (no provisioning,
/// claiming, recycling or destroying); fails after `timeout`.
pub async fn settled_idle(store: &Store, n: i64, timeout: Duration) -> Result<(), String> {
    use shared::store::Status;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let counts = store.counts().await.map_err(|e| e.to_string())?;
        let idle = counts.iter().find(|(s, _)| *s == Status::Idle).map_or(0, |(_, c)| *c);
        let busy: i64 = counts
            .iter()
            .filter(|(s, _)| !matches!(s, Status::Idle | Status::Claimed | Status::Crashed))
            .map(|(_, c)| *c)
            .sum();
        if idle == n && busy == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{n} idle instances not reached in {timeout:?}: {counts:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Sprites client on an emulator known only by its URL and token (a process other than the
/// one running it), with quick retries and the given request timeout, so a hung call fails
/// within a step instead of holding it for the production 30 s.
pub fn sprites_client_at(
    base_url: &str,
    token: &str,
    request_timeout: Duration,
) -> Result<SpritesClient, String> {
    let url = base_url.parse().map_err(|e| format!("emulator URL {base_url}: {e}"))?;
    let mut config = SpritesConfig::new(url, SecretString::from(token.to_string()));
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    config.request_timeout = request_timeout;
    config.create_timeout = request_timeout * 2;
    config.stream_timeout = request_timeout * 4;
    config.ws_handshake_timeout = request_timeout * 2;
    SpritesClient::new(config).map_err(|e| format!("sprites client: {e}"))
}
