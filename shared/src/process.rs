//! What a process builds once at start-up and hands by reference to every request: settings,
//! the database pool, the engine with its chain, and the API (ARCHITECTURE §2).

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::api::Api;
use crate::chain::{Chain, EventBridgeChain, InProcessChain, sdk_config};
use crate::config::{Config, ConfigError};
use crate::engine::{BuildError, Engine, run_in_process};
use crate::store::{Store, StoreError};

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
    Build(#[from] BuildError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A Lambda sandbox serves one request at a time: two connections cover a request and a
/// lease renewal running beside it. Neon's pooler does the fan-in across sandboxes.
pub const LAMBDA_DB_CONNECTIONS: u32 = 2;

impl Process {
    /// For a Lambda function. Steps go to the EventBridge bus when `POOL_STEP_EVENT_BUS` is
    /// set; without it (`cargo lambda watch`) they run as tasks of this process.
    pub async fn for_lambda() -> Result<Process, StartError> {
        let config = Config::from_env()?;
        crate::metrics::enable_emf(config.environment.as_str());
        let store = Store::connect_lazy(config.database_url.expose_secret(), LAMBDA_DB_CONNECTIONS)?;
        match config.step_event_bus.clone() {
            Some(bus) => {
                let client = aws_sdk_eventbridge::Client::new(&sdk_config().await);
                let chain: Arc<dyn Chain> = Arc::new(EventBridgeChain::new(client, bus));
                Process::assemble(config, store, chain)
            }
            None => {
                tracing::warn!(
                    "POOL_STEP_EVENT_BUS is not set: steps run inside this process (local use only)"
                );
                Process::in_process(config, store)
            }
        }
    }

    /// Steps run as tasks of this process (the local main job, poolctl).
    pub fn in_process(config: Config, store: Store) -> Result<Process, StartError> {
        let (chain, rx) = InProcessChain::new();
        let process = Process::assemble(config, store, Arc::new(chain))?;
        run_in_process(Arc::downgrade(&process.engine), rx);
        Ok(process)
    }

    fn assemble(config: Config, store: Store, chain: Arc<dyn Chain>) -> Result<Process, StartError> {
        let engine = Arc::new(Engine::from_config(&config, store, chain)?);
        let api = Api::new(engine.clone(), config.api_key.clone());
        Ok(Process { config, engine, api })
    }

    /// The store for migrations: the direct endpoint when there is one, since a
    /// transaction-mode pooler cannot hold the migration's session lock.
    pub fn migration_store(config: &Config) -> Result<Store, StoreError> {
        let url = config.database_url_direct.as_ref().unwrap_or(&config.database_url);
        Store::connect_lazy(url.expose_secret(), 1)
    }
}
