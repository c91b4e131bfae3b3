//! The composition root: the one place that turns a [`Config`] into what a process holds for
//! its whole life — the store, the clients, the chain, the engine and the API (ARCHITECTURE §2).
//! Every Lambda function, `pool-local`, `poolctl`, the benchmarks and the tests build their
//! process here; a test or a benchmark overrides parts (its own database pool, short engine
//! settings, a recording chain, clients with quick retries) and keeps the rest.

pub mod clients;

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::api::Api;
use crate::chain::{Chain, EventBridgeChain, InProcessChain, sdk_config};
use crate::config::parameter_store::ParameterStore;
use crate::config::{Config, ConfigError, ssm};
use crate::engine::{Engine, EngineSettings, Resources, Webhooks, run_in_process};
use crate::gateway::{GatewayClient, GatewayTimeouts};
use crate::provider::Provider;
use crate::store::{Store, StoreError};
use crate::webhook::WebhookSender;
pub use clients::ClientError;

/// What a process builds once at start-up and hands by reference to every request.
pub struct Process {
    pub config: Config,
    pub engine: Arc<Engine>,
    pub api: Api,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A Lambda sandbox serves one request at a time: two connections cover a request and a
/// lease renewal running beside it. Neon's pooler does the fan-in across sandboxes.
pub const LAMBDA_DB_CONNECTIONS: u32 = 2;

/// Connections of the local main job (every route and sweep in one process).
pub const LOCAL_DB_CONNECTIONS: u32 = 10;

/// The most one request of the Railway, OpenRouter or AgentMail clients may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The most one webhook request may take (the receiver should answer at once and work later).
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The most the migration function's answer to CloudFormation may take.
const MIGRATION_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Wraps the in-process chain in one of the caller's (see [`Steps::InProcessThrough`]).
pub type WrapChain = Box<dyn FnOnce(Arc<dyn Chain>) -> Arc<dyn Chain> + Send>;

/// How the engine's "run step S of instance I" deliveries reach a runner.
pub enum Steps {
    /// As tasks of this process, started by [`Wiring::build`].
    InProcess,
    /// As tasks of this process, through a chain the caller wraps around the in-process one
    /// (the soak's lossy delivery).
    InProcessThrough(WrapChain),
    /// To this chain; whatever receives them is the caller's (EventBridge, a test's recorder).
    Chain(Arc<dyn Chain>),
}

/// The builder of a [`Process`]: every part comes from the configuration unless overridden.
pub struct Wiring {
    config: Config,
    connections: u32,
    store: Option<Store>,
    steps: Steps,
    provider: Option<Arc<dyn Provider>>,
    resources: Option<Resources>,
    gateway_timeouts: GatewayTimeouts,
    settings: Option<EngineSettings>,
    webhooks: Option<Webhooks>,
}

impl Wiring {
    /// Everything from `config`, steps run in this process. From here on, no log line of this
    /// process shows one of the configuration's secrets.
    pub fn new(config: Config) -> Wiring {
        crate::logging::keep_out_of_logs(config.secrets());
        Wiring {
            config,
            connections: LOCAL_DB_CONNECTIONS,
            store: None,
            steps: Steps::InProcess,
            provider: None,
            resources: None,
            gateway_timeouts: GatewayTimeouts::default(),
            settings: None,
            webhooks: None,
        }
    }

    /// Everything from the environment.
    pub fn from_env() -> Result<Wiring, StartError> {
        Ok(Wiring::new(Config::from_env()?))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connections of the store opened on `DATABASE_URL` (not used with [`Wiring::store`]).
    pub fn connections(mut self, connections: u32) -> Wiring {
        self.connections = connections;
        self
    }

    /// A store the caller opened (a test's database, a pooler) instead of `DATABASE_URL`.
    pub fn store(mut self, store: Store) -> Wiring {
        self.store = Some(store);
        self
    }

    pub fn steps(mut self, steps: Steps) -> Wiring {
        self.steps = steps;
        self
    }

    /// A provider built by the caller (clients with quick retries) instead of the configured one.
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Wiring {
        self.provider = Some(provider);
        self
    }

    /// Per-instance resources built by the caller instead of the configured ones.
    pub fn resources(mut self, resources: Resources) -> Wiring {
        self.resources = Some(resources);
        self
    }

    pub fn gateway_timeouts(mut self, timeouts: GatewayTimeouts) -> Wiring {
        self.gateway_timeouts = timeouts;
        self
    }

    /// Engine settings instead of `EngineSettings::from_config` (a test's short waits).
    pub fn settings(mut self, settings: EngineSettings) -> Wiring {
        self.settings = Some(settings);
        self
    }

    /// Webhook delivery with the caller's schedule (a test's short backoff) instead of the one
    /// built from `POOL_WEBHOOK_URL`.
    pub fn webhooks(mut self, webhooks: Webhooks) -> Wiring {
        self.webhooks = Some(webhooks);
        self
    }

    /// The process: the parts built, the engine assembled, and for in-process steps their
    /// runner started (it needs a tokio runtime).
    pub fn build(self) -> Result<Process, StartError> {
        let Wiring {
            config,
            connections,
            store,
            steps,
            provider,
            resources,
            gateway_timeouts,
            settings,
            webhooks,
        } = self;
        let store = match store {
            Some(store) => store,
            None => Store::connect_lazy(config.database_url.expose_secret(), connections)?,
        };
        let (provider, resources) = match (provider, resources) {
            (Some(provider), Some(resources)) => (provider, resources),
            (provider, resources) => {
                let http = clients::http(CLIENT_TIMEOUT)?;
                let provider = match provider {
                    Some(provider) => provider,
                    None => clients::provider(&config, &http)?,
                };
                (provider, resources.unwrap_or_else(|| clients::resources(&config, &http)))
            }
        };
        let gateway = GatewayClient::new(gateway_timeouts).map_err(ClientError::from)?;
        let settings = settings.unwrap_or_else(|| EngineSettings::from_config(&config));
        let (chain, runner): (Arc<dyn Chain>, _) = match steps {
            Steps::Chain(chain) => (chain, None),
            Steps::InProcess => {
                let (chain, rx) = InProcessChain::new();
                (Arc::new(chain), Some(rx))
            }
            Steps::InProcessThrough(wrap) => {
                let (chain, rx) = InProcessChain::new();
                (wrap(Arc::new(chain)), Some(rx))
            }
        };
        let webhooks = match (webhooks, &config.webhook) {
            (Some(webhooks), _) => Some(webhooks),
            (None, Some(hook)) => {
                let http = clients::webhook_http(WEBHOOK_TIMEOUT)?;
                Some(Webhooks::new(WebhookSender::new(http, hook.url.clone(), hook.secret.clone())))
            }
            (None, None) => None,
        };
        let mut engine = Engine::new(store, provider, gateway, chain, settings).with_resources(resources);
        if let Some(webhooks) = webhooks {
            engine = engine.with_webhooks(webhooks);
        }
        let engine = Arc::new(engine);
        if let Some(rx) = runner {
            run_in_process(Arc::downgrade(&engine), rx);
        }
        if config.instance_anthropic_api_key.is_some() {
            tracing::warn!(
                "INSTANCE_ANTHROPIC_API_KEY is set: every agent holds the organisation's Anthropic key \
                 (unset it to leave each agent only its own OpenRouter key)"
            );
        }
        let api = Api::new(engine.clone(), config.api_key.clone());
        Ok(Process { config, engine, api })
    }
}

/// The configuration of a Lambda function: secrets from Parameter Store when
/// `POOL_SECRETS_FROM_SSM=true` (on AWS), else everything from the environment (`cargo lambda
/// watch`). Also the AWS SDK configuration, when loading the secrets needed it.
async fn lambda_config() -> Result<(Config, Option<aws_config::SdkConfig>), ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    if !ssm::enabled(&env) {
        return Ok((Config::from_env()?, None));
    }
    let sdk = sdk_config().await;
    let store = ParameterStore::new(&sdk)
        .map_err(|problem| ConfigError { problems: vec![format!("Parameter Store: {problem}")] })?;
    let config = ssm::config_from_ssm(&store, env).await?;
    Ok((config, Some(sdk)))
}

/// The process of a Lambda function, from its environment. Steps go to the EventBridge bus
/// when `POOL_STEP_EVENT_BUS` is set; without it (`cargo lambda watch`) they run as tasks of
/// this process.
pub async fn for_lambda() -> Result<Process, StartError> {
    let (config, sdk) = lambda_config().await?;
    let wiring = Wiring::new(config).connections(LAMBDA_DB_CONNECTIONS);
    crate::metrics::enable_emf(wiring.config().environment.as_str());
    let steps = match wiring.config().step_event_bus.clone() {
        Some(bus) => {
            let sdk = match sdk {
                Some(sdk) => sdk,
                None => sdk_config().await,
            };
            let client = aws_sdk_eventbridge::Client::new(&sdk);
            Steps::Chain(Arc::new(EventBridgeChain::new(client, bus)))
        }
        None => {
            tracing::warn!("POOL_STEP_EVENT_BUS is not set: steps run inside this process (local use only)");
            Steps::InProcess
        }
    };
    wiring.steps(steps).build()
}

/// The store for migrations: the direct endpoint when there is one, since a
/// transaction-mode pooler cannot hold the migration's session lock.
pub fn migration_store(config: &Config) -> Result<Store, StoreError> {
    let url = config.database_url_direct.as_ref().unwrap_or(&config.database_url);
    Store::connect_lazy(url.expose_secret(), 1)
}

/// Which variable the migrations connect through, for an operator reading an error.
pub fn migration_url_variable(config: &Config) -> &'static str {
    if config.database_url_direct.is_some() { "DATABASE_URL_DIRECT" } else { "DATABASE_URL" }
}

/// What the migration function holds: the migration store, and the HTTP client that answers
/// CloudFormation.
pub struct Migrations {
    pub store: Store,
    pub http: reqwest::Client,
}

impl Migrations {
    /// As the migration function starts: the configuration as [`for_lambda`] reads it.
    pub async fn for_lambda() -> Result<Migrations, StartError> {
        let (config, _) = lambda_config().await?;
        crate::logging::keep_out_of_logs(config.secrets());
        let store = migration_store(&config)?;
        let http = clients::http(MIGRATION_HTTP_TIMEOUT)?;
        Ok(Migrations { store, http })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        let base = [("POOL_API_KEY", "key"), ("DATABASE_URL", "postgres://127.0.0.1:1/unused")];
        Config::from_lookup(|name| {
            vars.iter().chain(base.iter()).find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    /// Every provider and resource a configuration can name is built without touching the
    /// network (the store is lazy), with the engine settings it derives.
    #[tokio::test]
    async fn each_configured_provider_wires_without_connecting() {
        let sprites = config(&[("SPRITE_TOKEN", "t"), ("POOL_MIN_IDLE", "4")]);
        let railway = config(&[
            ("POOL_PROVIDER", "railway"),
            ("RAILWAY_API_TOKEN", "t"),
            ("RAILWAY_PROJECT_ID", "p"),
            ("RAILWAY_ENVIRONMENT_ID", "e"),
            ("RAILWAY_RUNTIME_IMAGE", "ghcr.io/xmtplabs/convos-runtime:latest"),
            ("OPENROUTER_MANAGEMENT_KEY", "or"),
            ("AGENTMAIL_API_KEY", "am"),
            ("POOL_MIN_IDLE", "4"),
        ]);
        for config in [sprites, railway] {
            let kind = config.provider.kind();
            let process = Wiring::new(config).build().unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(process.engine.settings().min_idle, 4, "{kind}");
        }
    }
}
