//! The soak's command line and the settings it runs the pool with.

use std::path::PathBuf;
use std::time::Duration;

use shared::engine::EngineSettings;
use shared::gateway::GatewayTimeouts;

use crate::rig;

/// The Sprites API request timeout in the soak: short, so a hung call fails within a step.
pub(super) const SPRITES_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the chaos lasts, in minutes.
    #[arg(long, conflicts_with = "seconds")]
    pub minutes: Option<f64>,
    /// How long the chaos lasts, in seconds (default 300).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// POOL_MIN_IDLE.
    #[arg(long, default_value_t = 5)]
    pub min_idle: u32,
    /// Concurrent clients claiming, recycling and destroying.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the JSON report and the logs go.
    #[arg(long, default_value = "artifacts/soak")]
    pub json_dir: PathBuf,
    /// The longest the pool may take to settle once the chaos stopped.
    #[arg(long, default_value_t = 75)]
    pub settle_secs: u64,
    /// Fraction of step deliveries lost (in the API process and in the worker).
    #[arg(long, default_value_t = 0.15)]
    pub drop_rate: f64,
    /// The worker is killed every MIN..MAX seconds.
    #[arg(long, default_value_t = 4)]
    pub kill_min_secs: u64,
    #[arg(long, default_value_t = 12)]
    pub kill_max_secs: u64,
    /// Mean time between chaos actions, in ms.
    #[arg(long, default_value_t = 1200)]
    pub chaos_ms: u64,
    /// Kill the worker wherever it is, in the middle of a sweep pass too (by default it
    /// finishes its sweep passes first; steps are killed wherever they are either way).
    #[arg(long)]
    pub kill_anywhere: bool,
    /// Keep the scratch database (its name is printed).
    #[arg(long)]
    pub keep_db: bool,
    /// Seconds of the Railway round that follows (0 skips it): throttled volume creation,
    /// generic errors, edge pages and lost answers on the emulated Railway.
    #[arg(long, default_value_t = 20)]
    pub railway_secs: u64,
    /// The pool's `hotIdle` setting (issue 17): below min idle, so idle instances sleep.
    #[arg(long, default_value_t = 2)]
    pub hot_idle: u32,
    /// The pool's `maxRunning` setting.
    #[arg(long, default_value_t = 14)]
    pub max_running: u32,
    /// The emulated account's limit of running Sprites (both pools count against it).
    #[arg(long, default_value_t = 20)]
    pub running_limit: u32,
}

/// How long an emulated Sprite runs after its last request (production: ~30 s): short, so
/// idle instances sleep and wake many times within the run.
pub const IDLE_PAUSE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub database_url: String,
    #[arg(long)]
    pub emulator_url: String,
    #[arg(long)]
    pub emulator_token: String,
    #[arg(long)]
    pub min_idle: u32,
    #[arg(long)]
    pub max_total: u32,
    #[arg(long)]
    pub drop_rate: f64,
    #[arg(long)]
    pub seed: u64,
    #[arg(long, default_value_t = 1000)]
    pub tick_ms: u64,
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    #[arg(long, default_value_t = 3000)]
    pub reconcile_ms: u64,
}

/// Production shapes, soak timings: leases short enough that a killed worker's steps are
/// taken over within seconds, waits short enough that instances cycle in a minute's run.
pub fn soak_settings(min_idle: u32, max_total: u32) -> EngineSettings {
    EngineSettings {
        min_idle,
        max_total,
        // Longer than a whole claim (`claim_budget`): the claim path holds its lease without
        // renewing it, so a shorter lease lets the tick take a slow but live claim for an
        // interrupted one (docs/performance.md, Soak, finding 2).
        lease_ttl: Duration::from_secs(6),
        max_attempts: 4,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
        hop_limit: 12,
        install_wait: Duration::from_secs(2),
        install_poll: Duration::from_millis(200),
        ready_wait: Duration::from_secs(1),
        ready_poll: Duration::from_millis(50),
        ready_timeout: Duration::from_secs(8),
        claim_wait: Duration::from_secs(3),
        claim_budget: Duration::from_secs(5),
        claim_attempt: Duration::from_secs(3),
        claim_stale: Duration::from_secs(15),
        stuck_timeout: Duration::from_secs(60),
        breaker_threshold: 3,
        breaker_pause: Duration::from_secs(3),
        replenish_batch: 5,
        heartbeat_concurrency: 16,
        heartbeat_timeout: Duration::from_secs(1),
        heartbeat_failure_limit: 2,
        recovery_limit: 2,
        reconcile_grace: Duration::from_secs(5),
        retention: Duration::from_secs(30 * 24 * 3600),
        prune_batch: 1000,
        redrive_batch: 200,
        retry_after: Duration::from_secs(1),
        sprite_idle_pause: IDLE_PAUSE,
        wake_budget: Duration::from_secs(5),
        ..rig::bench_settings()
    }
}

pub fn gateway_timeouts() -> GatewayTimeouts {
    GatewayTimeouts {
        status: Duration::from_secs(1),
        create: Duration::from_secs(2),
        join: Duration::from_secs(3),
    }
}

pub(super) fn max_total(args: &SoakArgs) -> u32 {
    args.min_idle * 3 + args.clients as u32 * 2
}
