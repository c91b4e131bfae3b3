//! Every SQL statement the pool runs (ARCHITECTURE §2: the only place SQL lives). Queries are
//! checked against the schema at compile time; `.sqlx/` holds the offline data CI builds with.
//!
//! Rules the queries keep (ARCHITECTURE §4): no transaction spans a remote call; results of
//! remote work are written fenced on the lease (or on the expected status for rows at rest), and
//! zero rows touched means someone else moved the row first: the caller drops its result.

mod claiming;
mod claims;
mod events;
mod heartbeats;
mod instances;
mod pool_state;
mod resources;
mod sweeps;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::OffsetDateTime;

pub(crate) use claiming::Answered;
pub use claims::{Claim, ClaimStatus, NewClaim};
pub use events::Event;
pub use heartbeats::HeartbeatTarget;
pub(crate) use instances::Move;
pub use instances::{Fence, Known};
pub(crate) use pool_state::RefillAsk;
pub use pool_state::{Breaker, NewInstance, Refill};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value in the database this build does not know (a newer build wrote it, or a hand edit).
    #[error("unexpected value in column {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
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

    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations").run(&self.pool).await?;
        Ok(())
    }
}

/// An enum stored as text: its variants, their spellings, parsing and display, in one place.
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = ();

            fn from_str(value: &str) -> Result<Self, ()> {
                $name::ALL.iter().copied().find(|v| v.as_str() == value).ok_or(())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum! {
    /// Where an instance is in its life (ARCHITECTURE §3).
    pub enum Status {
        Provisioning = "provisioning",
        Idle = "idle",
        Claiming = "claiming",
        Claimed = "claimed",
        Recycling = "recycling",
        Destroying = "destroying",
        Crashed = "crashed",
    }
}

text_enum! {
    /// The durable steps (ARCHITECTURE §4). Each is idempotent: running it twice, or after a
    /// process died halfway through it, ends in the same place as running it once.
    pub enum Step {
        Create = "create",
        Install = "install",
        Configure = "configure",
        StartGateway = "start_gateway",
        AwaitReady = "await_ready",
        VerifyClean = "verify_clean",
        Checkpoint = "checkpoint",
        Restore = "restore",
        RotateToken = "rotate_token",
        /// The API process creating a conversation holds this; met by anyone else it means that
        /// process died mid-call, so the instance may be half-bound.
        ClaimCreate = "claim_create",
        ClaimJoin = "claim_join",
        Destroy = "destroy",
        /// The instance's own OpenRouter key and AgentMail inbox, when configured.
        Resources = "resources",
        /// A recycle's new key and inbox, the previous tenant's deleted (issue 14.3).
        RotateResources = "rotate_resources",
    }
}

/// One instance row.
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
    pub gateway_token: secrecy::SecretString,
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
    pub openrouter_key: Option<secrecy::SecretString>,
    pub agentmail_inbox_id: Option<String>,
    /// When a key was asked for and its hash not yet recorded (issue 19.7).
    pub openrouter_key_requested_at: Option<OffsetDateTime>,
    /// The client id the inbox is (to be) created with.
    pub agentmail_client_id: Option<String>,
    /// The previous tenant's key and inbox, until a recycle's rotation deleted them.
    pub retired_openrouter_key_hash: Option<String>,
    pub retired_agentmail_inbox_id: Option<String>,
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

/// The row as the database returns it; [`Instance`] is the same with its enums parsed.
pub(crate) struct InstanceRow {
    id: String,
    provider: String,
    provider_ref: Option<String>,
    sprite_name: String,
    url: Option<String>,
    status: String,
    step: Option<String>,
    attempts: i32,
    lease_owner: Option<String>,
    lease_expires_at: Option<OffsetDateTime>,
    next_run_at: Option<OffsetDateTime>,
    hop: i32,
    step_started_at: Option<OffsetDateTime>,
    last_error: Option<String>,
    golden_checkpoint_id: Option<String>,
    gateway_token: String,
    agent_name: Option<String>,
    instructions: Option<String>,
    join_url: Option<String>,
    invite_url: Option<String>,
    conversation_id: Option<String>,
    join_status: Option<String>,
    claim_id: Option<uuid::Uuid>,
    openclaw_git_ref: String,
    heartbeat_failures: i32,
    heartbeat_recoveries: i32,
    last_heartbeat_at: Option<OffsetDateTime>,
    sprite_created_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    ready_at: Option<OffsetDateTime>,
    claimed_at: Option<OffsetDateTime>,
    status_changed_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    openrouter_key_hash: Option<String>,
    openrouter_key: Option<String>,
    agentmail_inbox_id: Option<String>,
    openrouter_key_requested_at: Option<OffsetDateTime>,
    agentmail_client_id: Option<String>,
    retired_openrouter_key_hash: Option<String>,
    retired_agentmail_inbox_id: Option<String>,
}

pub(crate) fn parse_status(value: &str) -> Result<Status, StoreError> {
    value.parse().map_err(|_| StoreError::Corrupt { column: "status", value: value.to_string() })
}

pub(crate) fn parse_step(value: Option<&str>) -> Result<Option<Step>, StoreError> {
    value
        .map(|v| v.parse().map_err(|_| StoreError::Corrupt { column: "step", value: v.to_string() }))
        .transpose()
}

impl TryFrom<InstanceRow> for Instance {
    type Error = StoreError;

    fn try_from(row: InstanceRow) -> Result<Self, StoreError> {
        Ok(Instance {
            status: parse_status(&row.status)?,
            step: parse_step(row.step.as_deref())?,
            id: row.id,
            provider: row.provider,
            provider_ref: row.provider_ref,
            sprite_name: row.sprite_name,
            url: row.url,
            attempts: row.attempts,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at,
            next_run_at: row.next_run_at,
            hop: row.hop,
            step_started_at: row.step_started_at,
            last_error: row.last_error,
            golden_checkpoint_id: row.golden_checkpoint_id,
            gateway_token: row.gateway_token.into(),
            agent_name: row.agent_name,
            instructions: row.instructions,
            join_url: row.join_url,
            invite_url: row.invite_url,
            conversation_id: row.conversation_id,
            join_status: row.join_status,
            claim_id: row.claim_id,
            openclaw_git_ref: row.openclaw_git_ref,
            heartbeat_failures: row.heartbeat_failures,
            heartbeat_recoveries: row.heartbeat_recoveries,
            last_heartbeat_at: row.last_heartbeat_at,
            sprite_created_at: row.sprite_created_at,
            created_at: row.created_at,
            ready_at: row.ready_at,
            claimed_at: row.claimed_at,
            status_changed_at: row.status_changed_at,
            updated_at: row.updated_at,
            openrouter_key_hash: row.openrouter_key_hash,
            openrouter_key: row.openrouter_key.map(Into::into),
            agentmail_inbox_id: row.agentmail_inbox_id,
            openrouter_key_requested_at: row.openrouter_key_requested_at,
            agentmail_client_id: row.agentmail_client_id,
            retired_openrouter_key_hash: row.retired_openrouter_key_hash,
            retired_agentmail_inbox_id: row.retired_agentmail_inbox_id,
        })
    }
}

/// Seconds as the float `make_interval` takes.
pub(crate) fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}
