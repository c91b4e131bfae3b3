//! Every SQL statement the pool runs (ARCHITECTURE §2: the only place SQL lives). Queries are
//! checked against the schema at compile time; `.sqlx/` holds the offline data CI builds with.
//!
//! Rules the queries keep (ARCHITECTURE §4): no transaction spans a remote call; results of
//! remote work are written fenced on the lease (or on the expected status for rows at rest), and
//! zero rows touched means someone else moved the row first: the caller drops its result.

mod agents;
mod claim_lifetime;
mod claim_take;
mod claims;
mod events;
mod heartbeats;
mod hibernation;
mod instances;
mod leases;
mod pool_state;
mod records;
mod retention;
mod rollout;
mod settings;
mod sizing;
mod sweeps;
mod webhooks;

use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;

pub use agents::{Agent, AgentsAfter};
pub(crate) use claim_lifetime::ClaimEnd;
pub use claim_lifetime::{Extended, LifetimeTarget};
pub use claim_take::WantedVersion;
pub use claims::{Claim, ClaimStatus, NewClaim};
pub use events::{Event, EventFilter, FeedEvent, PoolEvent};
pub use heartbeats::{HeartbeatTarget, SleepPlan};
pub use hibernation::{Promoted, Running};
pub use instances::Known;
pub use leases::Fence;
pub(crate) use leases::{Answered, Change};
pub(crate) use pool_state::RefillAsk;
pub use pool_state::{Breaker, NewInstance, Refill};
pub(crate) use records::Record;
pub use retention::Pruned;
pub use rollout::VersionCounts;
pub use settings::{SEEDED_BY, StoredSettings};
pub use sizing::SizingRow;
pub use sweeps::SweepFence;
pub use webhooks::{Delivery, OutboxCounts, OutboxRow};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A claim would duplicate a live one: same Idempotency-Key, or the join URL of an
    /// instance already claimed (migrations/20261130183100_claim_dedupe.sql).
    #[error("a live claim already holds this {0}")]
    DuplicateClaim(&'static str),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The server could not be reached or refused us: where it was tried, and why.
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Unreachable { target: String, cause: String },
}

/// A handle on the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Store { pool }
    }

    /// A small lazy pool: a Lambda sandbox serves one request at a time and Neon's pooler does
    /// the fan-in, so a handful of connections is plenty; nothing connects until first use.
    /// Nothing here needs session state, so it works through a transaction-mode pooler
    /// (tests/engine/pgbouncer.rs proves it).
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        use sqlx::Connection as _;
        // A connection idle this long is pinged before use; one used more recently has just
        // proved alive, and a ping is a round trip (a claim acquires three times).
        const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            // A thawed Lambda sandbox may hold sockets the pooler closed long ago: drop idle
            // connections early, and check one that sat idle before use (a failed ping closes
            // it and the pool opens another).
            .idle_timeout(Some(Duration::from_secs(60)))
            .max_lifetime(Some(Duration::from_secs(30 * 60)))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy(url)?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the migrations on a connection of its own, opened first so a server that is
    /// down or refuses us is reported as such (host, port, database and the driver's reason),
    /// not as the pool's "timed out waiting for an open connection".
    pub async fn migrate(&self) -> Result<(), StoreError> {
        use sqlx::Connection as _;
        const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
        let options = self.pool.connect_options();
        let target = format!(
            "{}:{} (database {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("named after the user")
        );
        let connect = sqlx::PgConnection::connect_with(&options);
        let mut connection = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(err)) => return Err(StoreError::Unreachable { target, cause: err.to_string() }),
            Err(_) => {
                let cause = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                return Err(StoreError::Unreachable { target, cause });
            }
        };
        sqlx::migrate!("../migrations").run(&mut connection).await?;
        let _ = connection.close().await;
        Ok(())
    }
}

pub use crate::lifecycle::{Reason, Status, Step};

/// A secret column (a gateway token, an OpenRouter key): decoded straight into a
/// [`SecretString`], so it is never a plain `String` on the way and never printed.
#[derive(Clone)]
pub struct Secret(SecretString);

impl std::ops::Deref for Secret {
    type Target = SecretString;

    fn deref(&self) -> &SecretString {
        &self.0
    }
}

impl From<SecretString> for Secret {
    fn from(secret: SecretString) -> Self {
        Secret(secret)
    }
}

impl sqlx::Type<sqlx::Postgres> for Secret {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Secret {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(Secret(text.into()))
    }
}

/// One instance row, decoded as it is (the enums and secrets by their sqlx types).
#[derive(Clone)]
pub struct Instance {
    pub id: String,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub sprite_name: String,
    pub url: Option<String>,
    pub status: Status,
    pub step: Option<Step>,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub next_run_at: Option<OffsetDateTime>,
    pub hop: i32,
    pub step_started_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub golden_checkpoint_id: Option<String>,
    pub gateway_token: Secret,
    pub agent_name: Option<String>,
    pub instructions: Option<String>,
    pub join_url: Option<String>,
    pub invite_url: Option<String>,
    pub conversation_id: Option<String>,
    pub join_status: Option<String>,
    pub claim_id: Option<uuid::Uuid>,
    pub openclaw_git_ref: String,
    pub heartbeat_failures: i32,
    pub heartbeat_recoveries: i32,
    pub last_heartbeat_at: Option<OffsetDateTime>,
    pub sprite_created_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub ready_at: Option<OffsetDateTime>,
    pub claimed_at: Option<OffsetDateTime>,
    pub status_changed_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub openrouter_key_hash: Option<String>,
    pub openrouter_key: Option<Secret>,
    pub agentmail_inbox_id: Option<String>,
    /// When a key was asked for and its hash not yet recorded (issue 19.7).
    pub openrouter_key_requested_at: Option<OffsetDateTime>,
    /// The client id the inbox is (to be) created with.
    pub agentmail_client_id: Option<String>,
    /// The previous tenant's key and inbox, until a recycle's rotation deleted them.
    pub retired_openrouter_key_hash: Option<String>,
    pub retired_agentmail_inbox_id: Option<String>,
    /// When the claim this instance serves expires (issue 15.4); `None`: it does not.
    pub claim_expires_at: Option<OffsetDateTime>,
    /// The runtime image the instance was built from (Railway); `None` where the provider runs
    /// no image.
    pub runtime_image: Option<String>,
}

/// Leaves out the gateway token and the instructions (user text), so a row can be logged.
impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("id", &self.id)
            .field("sprite_name", &self.sprite_name)
            .field("status", &self.status)
            .field("step", &self.step)
            .field("attempts", &self.attempts)
            .field("lease_owner", &self.lease_owner)
            .field("hop", &self.hop)
            .finish_non_exhaustive()
    }
}

/// Seconds as the float `make_interval` takes.
pub(crate) fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}
