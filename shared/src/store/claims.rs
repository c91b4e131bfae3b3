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
}

impl Store {
    pub async fn claim(&self, id: Uuid) -> Result<Option<Claim>, StoreError> {
        let claim = sqlx::query_as!(
            Claim,
            r#"SELECT id, instance_id, agent_name, instructions, join_url, status AS "status: _",
                      attempts, conversation_id, invite_url, error, created_at, finished_at
               FROM claims WHERE id = $1"#,
            id,
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
