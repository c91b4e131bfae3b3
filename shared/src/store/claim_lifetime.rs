//! What the claim lifetime rules read and write (issue 15.4): claimed instances whose claim
//! expired, joins left waiting for the invite's acceptance, a join the gateway reports accepted
//! after all, and a claim's new expiry.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{ClaimStatus, Secret, Store, StoreError, secs};

/// How a recycle ends the claim its instance served (issue 15.4). The claim's `error` is the
/// recycle's detail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimEnd {
    pub claim_id: Uuid,
    pub status: ClaimStatus,
    /// Only while the claim's expiry has passed: an extension that came first keeps it.
    pub only_if_expired: bool,
}

/// A claimed instance a lifetime rule may end, with the claim it serves.
pub struct LifetimeTarget {
    pub id: String,
    pub claim_id: Uuid,
    pub url: Option<String>,
    pub gateway_token: Secret,
}

/// What extending a claim came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extended {
    /// The claim's new expiry.
    To(OffsetDateTime),
    /// The claim exists but no claiming or claimed instance serves it any more.
    NotLive,
    NotFound,
}

impl Store {
    /// Up to `limit` unleased claimed instances whose claim expired, the longest expired first.
    pub(crate) async fn expired_claims(&self, limit: i64) -> Result<Vec<LifetimeTarget>, StoreError> {
        let targets = sqlx::query_as!(
            LifetimeTarget,
            r#"SELECT id, claim_id AS "claim_id!", url, gateway_token AS "gateway_token: _"
               FROM instances
               WHERE status = 'claimed' AND claim_expires_at <= now() AND claim_id IS NOT NULL
                 AND (lease_expires_at IS NULL OR lease_expires_at < now())
               ORDER BY claim_expires_at LIMIT $1"#,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(targets)
    }

    /// Up to `limit` unleased claimed instances whose join has waited for the invite's
    /// acceptance longer than `timeout`, the oldest first.
    pub(crate) async fn unaccepted_joins(
        &self,
        timeout: Duration,
        limit: i64,
    ) -> Result<Vec<LifetimeTarget>, StoreError> {
        let targets = sqlx::query_as!(
            LifetimeTarget,
            r#"SELECT id, claim_id AS "claim_id!", url, gateway_token AS "gateway_token: _"
               FROM instances
               WHERE status = 'claimed' AND join_status = 'waiting_for_acceptance'
                 AND claimed_at < now() - make_interval(secs => $1) AND claim_id IS NOT NULL
                 AND (lease_expires_at IS NULL OR lease_expires_at < now())
               ORDER BY claimed_at LIMIT $2"#,
            secs(timeout),
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(targets)
    }

    /// The gateway reports the waiting join bound after all: the instance and its claim say
    /// `joined`, in one statement. `false`: the instance moved on meanwhile.
    pub(crate) async fn record_accepted(
        &self,
        id: &str,
        claim_id: Uuid,
        conversation_id: &str,
    ) -> Result<bool, StoreError> {
        let recorded = sqlx::query_scalar!(
            r#"WITH joined AS (
                   UPDATE instances SET join_status = 'joined', conversation_id = $3, updated_at = now()
                   WHERE id = $1 AND claim_id = $2 AND status = 'claimed'
                     AND join_status = 'waiting_for_acceptance'
                   RETURNING id
               ), claim AS (
                   UPDATE claims SET status = 'joined', conversation_id = $3
                   WHERE id = $2 AND status = 'waiting_for_acceptance' AND EXISTS (SELECT 1 FROM joined)
               )
               SELECT EXISTS (SELECT 1 FROM joined) AS "recorded!""#,
            id,
            claim_id,
            conversation_id,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(recorded)
    }

    /// Sets the expiry of a live claim (one a claiming or claimed instance serves) to `ttl`
    /// from now, on the instance and the claim at once.
    pub(crate) async fn extend_claim(&self, claim_id: Uuid, ttl: Duration) -> Result<Extended, StoreError> {
        let row = sqlx::query!(
            r#"WITH serving AS (
                   UPDATE instances SET claim_expires_at = now() + make_interval(secs => $2),
                       updated_at = now()
                   WHERE claim_id = $1 AND status IN ('claiming', 'claimed')
                   RETURNING claim_expires_at
               ), claim AS (
                   UPDATE claims SET expires_at = (SELECT claim_expires_at FROM serving)
                   WHERE id = $1 AND EXISTS (SELECT 1 FROM serving)
                   RETURNING expires_at
               )
               SELECT EXISTS (SELECT 1 FROM claims WHERE id = $1) AS "known!",
                      (SELECT expires_at FROM claim) AS expires_at"#,
            claim_id,
            secs(ttl),
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(match (row.known, row.expires_at) {
            (_, Some(at)) => Extended::To(at),
            (true, None) => Extended::NotLive,
            (false, None) => Extended::NotFound,
        })
    }
}
