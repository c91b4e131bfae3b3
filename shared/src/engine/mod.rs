//! The pool engine: provisioning and recycling as durable steps, claims, and the sweeps
//! (ARCHITECTURE §3–§6). It never builds HTTP responses; the api maps its results.

mod claim_dedupe;
mod claim_lifetime;
mod claim_request;
mod claim_result;
mod claiming;
mod destroying;
mod heartbeat;
mod hibernation;
mod in_process;
mod inspect;
mod lease;
mod naming;
mod outcome;
mod pool;
mod provisioning;
mod reconcile;
mod recycling;
mod resources;
mod rollout;
mod settings;
mod sizing;
mod steps;
mod tick;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use secrecy::SecretString;

use crate::chain::Chain;
use crate::config::{Config, PoolEnvironment};
use crate::gateway::GatewayClient;
use crate::provider::Provider;
use crate::store::{Store, StoreError};
use lease::Leases;
use naming::PoolNames;

pub use claim_lifetime::{ExtendError, LifetimeReport};
pub use claiming::{ClaimError, ClaimOutcome, ClaimRequest, ClaimResult, Idempotency, Invalid};
pub use heartbeat::HeartbeatReport;
pub use in_process::run_in_process;
pub use inspect::DrainAllReport;
pub use naming::Unrecognised;
pub use pool::{ActionError, PoolStatus, ReplenishReport};
pub use reconcile::ReconcileReport;
pub use resources::{ResourceSweep, Resources};
pub use rollout::{RolloutReport, RolloutStatus};
pub use settings::SettingsError;
pub use sizing::{AdaptiveFigures, SizingReport, SizingStatus};
pub use tick::{ObserveReport, TickReport};
pub use webhooks::{WebhookReport, Webhooks};

/// Every knob of the engine. `from_config` gives production values; tests shorten them.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub environment: PoolEnvironment,
    pub xmtp_env: String,
    pub openclaw_git_ref: String,
    pub min_idle: u32,
    pub max_total: u32,
    /// How long a lease lasts unless renewed; a running step renews it every third of this,
    /// so it bounds how long a dead worker's step waits before another takes it over.
    pub lease_ttl: Duration,
    /// Failed attempts of one step before the instance is given up (destroyed).
    pub max_attempts: i32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Chained deliveries in a row before the tick takes over (AWS stops recursion at 16).
    pub hop_limit: i32,
    /// How long one install run waits for the setup script before looking again later.
    pub install_wait: Duration,
    pub install_poll: Duration,
    /// How long one await_ready run polls the gateway before handing back.
    pub ready_wait: Duration,
    pub ready_poll: Duration,
    /// How long a gateway may take to answer after (re)start before the step fails.
    pub ready_timeout: Duration,
    /// How long a claim with a join URL waits before answering 202.
    pub claim_wait: Duration,
    /// The most a claim request may take, retries included: API Gateway cuts requests at
    /// 30 s, and an answer cut off there would leave the caller guessing.
    pub claim_budget: Duration,
    /// The most one attempt may wait for its gateway: a hung gateway on the first instance
    /// leaves time for a second attempt on another within `claim_budget`.
    pub claim_attempt: Duration,
    /// An unleased `claiming` instance older than this is released to recycling.
    pub claim_stale: Duration,
    /// A `provisioning` instance older than this is destroyed.
    pub stuck_timeout: Duration,
    pub breaker_threshold: i32,
    pub breaker_pause: Duration,
    /// Most instances one replenish pass starts creating (the pace limit).
    pub replenish_batch: u32,
    pub heartbeat_concurrency: usize,
    pub heartbeat_timeout: Duration,
    /// Failed pings before a wake-up is tried.
    pub heartbeat_failure_limit: i32,
    /// Wake-ups tried before the instance is given up.
    pub recovery_limit: i32,
    /// A Sprite named by this pool that no row knows is deleted once it is older than this.
    pub reconcile_grace: Duration,
    /// Most due steps one tick re-drives.
    pub redrive_batch: i64,
    /// Finished claims and history lines older than this are pruned, at most `prune_batch` of
    /// each per tick, so a large backlog is worked off without one long statement.
    pub retention: Duration,
    pub prune_batch: i64,
    /// How long after a claim the 503 tells the caller to come back.
    pub retry_after: Duration,
    /// Adaptive sizing's EWMA window, safety factor, cooldown and lead time prior.
    pub sizing: crate::sizing::Tuning,
    /// How long a Sprite stays running after its last request (reference §8: ~30 s). The pool
    /// counts an idle instance it touched more recently as running, and one it touched longer
    /// ago as asleep: it is verified before it is handed out (hibernation.rs).
    pub sprite_idle_pause: Duration,
    /// The most a health check of a sleeping instance waits for it to wake and its gateway to
    /// boot again (a cold wake restarts services).
    pub wake_budget: Duration,
}

impl EngineSettings {
    pub fn from_config(config: &Config) -> Self {
        EngineSettings {
            environment: config.environment,
            xmtp_env: config.instance_xmtp_env.clone(),
            openclaw_git_ref: config.openclaw_git_ref.clone(),
            min_idle: config.min_idle,
            max_total: config.max_total,
            lease_ttl: Duration::from_secs(60),
            max_attempts: 5,
            backoff_base: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(300),
            hop_limit: 12,
            install_wait: Duration::from_secs(240),
            install_poll: Duration::from_secs(20),
            ready_wait: Duration::from_secs(20),
            ready_poll: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(300),
            claim_wait: Duration::from_secs(20),
            claim_budget: Duration::from_secs(25),
            claim_attempt: Duration::from_secs(10),
            claim_stale: Duration::from_secs(300),
            stuck_timeout: config.stuck_timeout,
            breaker_threshold: 3,
            breaker_pause: Duration::from_secs(300),
            replenish_batch: config.replenish_batch,
            heartbeat_concurrency: config.heartbeat_concurrency as usize,
            heartbeat_timeout: Duration::from_secs(5),
            heartbeat_failure_limit: 3,
            recovery_limit: 3,
            reconcile_grace: Duration::from_secs(600),
            redrive_batch: 100,
            retention: config.retention,
            prune_batch: 1000,
            retry_after: Duration::from_secs(30),
            sizing: crate::sizing::Tuning::production(),
            sprite_idle_pause: Duration::from_secs(30),
            wake_budget: Duration::from_secs(60),
        }
    }

    /// Exponential backoff with equal jitter after `attempts` failures.
    fn backoff(&self, attempts: i32) -> Duration {
        crate::backoff::equal_jitter(self.backoff_base, self.backoff_cap, attempts.max(0) as u32)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A move the lifecycle table does not allow: a bug, refused before anything was written.
    #[error(transparent)]
    Refused(#[from] crate::lifecycle::Refused),
}

pub struct Engine {
    store: Store,
    provider: Arc<dyn Provider>,
    gateway: GatewayClient,
    /// Every lease on an instance or a sweep, and with them the only way to the chain.
    leases: Leases,
    settings: EngineSettings,
    resources: Resources,
    /// Read from the store on first use (naming.rs): the pool id never changes.
    names: tokio::sync::OnceCell<PoolNames>,
    /// Where events are announced, when `POOL_WEBHOOK_URL` is set (webhooks.rs).
    webhooks: Option<Webhooks>,
}

impl Engine {
    pub fn new(
        store: Store,
        provider: Arc<dyn Provider>,
        gateway: GatewayClient,
        chain: Arc<dyn Chain>,
        settings: EngineSettings,
    ) -> Self {
        let leases = Leases::new(store.clone(), chain, settings.lease_ttl, settings.hop_limit);
        Engine {
            store,
            provider,
            gateway,
            leases,
            settings,
            resources: Resources::default(),
            names: tokio::sync::OnceCell::new(),
            webhooks: None,
        }
    }

    /// Gives every instance its own OpenRouter key and AgentMail inbox, as configured.
    pub fn with_resources(mut self, resources: Resources) -> Self {
        self.resources = resources;
        self
    }

    /// Gives up the leases this process holds, for a clean stop: the steps they cover are due
    /// again at once for the next process.
    pub async fn release_leases(&self) -> Result<u64, EngineError> {
        let released = self.leases.release_all().await?;
        if released > 0 {
            tracing::info!(released, "leases released for the next process");
        }
        Ok(released)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}

/// Lowercase letters and digits: valid in a Sprite name, unambiguous in a log.
fn random_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// A fresh gateway token: 32 random bytes, hex.
fn new_gateway_token() -> SecretString {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into()
}
