//! Claim requests and how each one ended.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError};

crate::lifecycle::text_enum! {
    pub enum ClaimStatus {
        Pending = "pending",
        Created = "created",
        Joined = "joined",
        WaitingForAcceptance = "waiting_for_acceptance",
        Failed = "failed",
        /// Its lifetime ran out, or its invite was never accepted: the tick recycled its
        /// instance (issue 15.4).
        Expired = "expired",
    }
}

#[derive(Clone)]
pub struct Claim {
    pub id: Uuid,
    pub instance_id: Option<String>,
    pub agent_name: String,
    pub instructions: String,
    pub join_url: Option<String>,
    pub status: ClaimStatus,
    pub attempts: i32,
    pub conversation_id: Option<String>,
    pub invite_url: Option<String>,
    pub error: Option<String>,
    pub created_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// When the claim expires, or expired (issue 15.4); `None`: it never does.
    pub expires_at: Option<OffsetDateTime>,
}

/// Leaves out the instructions (user text).
impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("id", &self.id)
            .field("instance_id", &self.instance_id)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

pub struct NewClaim<'a> {
    pub id: Uuid,
    pub agent_name: &'a str,
    pub instructions: &'a str,
    pub join_url: Option<&'a str>,
    /// The client's Idempotency-Key and the digest of its request (issue 15.5).
    pub idempotency_key: Option<&'a str>,
    pub request_digest: Option<&'a str>,
    /// The request's own lifetime; `None`: the pool's `claimTtlSeconds`, if set.
    pub ttl: Option<std::time::Duration>,
}

/// A live claim found by its Idempotency-Key.
pub struct KeyedClaim {
    pub claim: Claim,
    pub request_digest: Option<String>,
}

/// How long an Idempotency-Key answers for its claim.
const KEY_WINDOW_SECS: f64 = 24.0 * 3600.0;

impl Store {
    pub async fn claim(&self, id: Uuid) -> Result<Option<Claim>, StoreError> {
        let claim = sqlx::query_as!(
            Claim,
            r#"SELECT id, instance_id, agent_name, instructions, join_url, status AS "status: _",
                      attempts, conversation_id, invite_url, error, created_at, finished_at, expires_at
               FROM claims WHERE id = $1"#,
            id,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(claim)
    }

    /// The live claim holding `key`, if made within the last 24 hours. An older one lets go of
    /// its key here, so the key can start a new claim.
    pub(crate) async fn claim_by_key(&self, key: &str) -> Result<Option<KeyedClaim>, StoreError> {
        // One round trip: the statement releases the key of an older claim and, seeing the
        // table as it was before, answers only with a claim inside the window.
        let row = sqlx::query!(
            r#"WITH released AS (
                   UPDATE claims SET idempotency_key = NULL
                   WHERE idempotency_key = $1 AND created_at < now() - make_interval(secs => $2)
               )
               SELECT id, instance_id, agent_name, instructions, join_url, status AS "status: ClaimStatus",
                      attempts, conversation_id, invite_url, error, created_at, finished_at, request_digest,
                      expires_at
               FROM claims
               WHERE idempotency_key = $1 AND status <> 'failed'
                 AND created_at >= now() - make_interval(secs => $2)"#,
            key,
            KEY_WINDOW_SECS,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| KeyedClaim {
            claim: Claim {
                id: r.id,
                instance_id: r.instance_id,
                agent_name: r.agent_name,
                instructions: r.instructions,
                join_url: r.join_url,
                status: r.status,
                attempts: r.attempts,
                conversation_id: r.conversation_id,
                invite_url: r.invite_url,
                error: r.error,
                created_at: r.created_at,
                finished_at: r.finished_at,
                expires_at: r.expires_at,
            },
            request_digest: r.request_digest,
        }))
    }

    /// The claim of the claiming or claimed instance bound to `join_url`.
    pub(crate) async fn live_claim_for_join_url(&self, join_url: &str) -> Result<Option<Claim>, StoreError> {
        let claim = sqlx::query_as!(
            Claim,
            r#"SELECT c.id, c.instance_id, c.agent_name, c.instructions, c.join_url,
                      c.status AS "status: _", c.attempts, c.conversation_id, c.invite_url, c.error,
                      c.created_at, c.finished_at, c.expires_at
               FROM instances i JOIN claims c ON c.id = i.claim_id
               WHERE i.join_url = $1 AND i.status IN ('claiming', 'claimed')"#,
            join_url,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(claim)
    }

    /// Records how the claim ended; only a pending claim can end, and only once.
    pub(crate) async fn finish_claim(
        &self,
        id: Uuid,
        status: ClaimStatus,
        conversation_id: Option<&str>,
        invite_url: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE claims SET status = $2, conversation_id = $3, invite_url = $4, error = $5,
                finished_at = now()
             WHERE id = $1 AND status = 'pending'",
            id,
            status.as_str(),
            conversation_id,
            invite_url,
            error,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Fails pending claims older than `older_than` that no claiming instance is serving any
    /// more (their instance was destroyed or moved on without recording an end).
    pub(crate) async fn fail_orphaned_claims(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<Uuid>, StoreError> {
        let ids = sqlx::query_scalar!(
            "UPDATE claims SET status = 'failed', error = 'the instance serving the claim went away',
                finished_at = now()
             WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM instances i
                               WHERE i.claim_id = claims.id AND i.status = 'claiming')
             RETURNING id",
            super::secs(older_than),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }
}

/// The statement that takes an instance for a claim fails as a whole on the dedupe indexes
/// (nothing is taken): which one says what the claim duplicates.
pub(super) fn duplicate_claim(err: sqlx::Error) -> StoreError {
    let index = err.as_database_error().filter(|e| e.is_unique_violation()).and_then(|e| e.constraint());
    match index {
        Some("claims_idempotency_key") => StoreError::DuplicateClaim("Idempotency-Key"),
        Some("instances_live_join_url") => StoreError::DuplicateClaim("joinUrl"),
        _ => StoreError::Database(err),
    }
}
