//! The webhook outbox (issue 16.5). Rows are written by triggers in the transaction of the event
//! they announce (migrations/20261130182000_webhook_outbox.sql); here the delivery sweep takes
//! them under a lease, one subject's rows strictly in order, and records how each attempt went.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Store, StoreError, secs};

/// A row taken for delivery: the body exactly as stored, so every attempt signs the same bytes.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub event_type: String,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// One row as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: i64,
    /// An instance id, or `pool` for the breaker.
    pub subject: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// pending | delivered | failed (given up).
    pub status: String,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// When the next attempt is due; only while pending.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// Pending and given-up rows in all, for the API's summary.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: i64,
    pub failed: i64,
}

impl Store {
    /// Records whether this pool has a webhook URL; the triggers write to the outbox only while
    /// it does. Writes only on a change, so a pass that finds it as it was costs no row lock.
    pub async fn set_webhooks_enabled(&self, enabled: bool) -> Result<(), StoreError> {
        sqlx::query!(
            "UPDATE pool_state SET webhooks_enabled = $1 WHERE id AND webhooks_enabled <> $1",
            enabled
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn webhooks_enabled(&self) -> Result<bool, StoreError> {
        let enabled = sqlx::query_scalar!("SELECT webhooks_enabled FROM pool_state WHERE id")
            .fetch_one(&self.pool)
            .await?;
        Ok(enabled)
    }

    /// Takes up to `limit` due rows for `owner` for `ttl`: only the oldest pending row of each
    /// subject (a later event never overtakes an earlier one, delivered or given up first), and
    /// none another worker holds a live lease on. A worker that dies holding rows lets them go
    /// when the lease runs out; they are then sent again (at least once).
    pub(crate) async fn take_webhooks(
        &self,
        owner: &str,
        ttl: Duration,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let rows = sqlx::query_as!(
            OutboxRow,
            r#"WITH due AS (
                   SELECT o.id FROM webhook_outbox o
                   WHERE o.status = 'pending' AND o.next_attempt_at <= now()
                     AND (o.lease_expires_at IS NULL OR o.lease_expires_at < now())
                     AND NOT EXISTS (
                         SELECT 1 FROM webhook_outbox e
                         WHERE e.status = 'pending' AND e.subject = o.subject AND e.id < o.id)
                   ORDER BY o.id
                   LIMIT $3
                   FOR UPDATE SKIP LOCKED
               )
               UPDATE webhook_outbox o SET
                   lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2),
                   attempts = o.attempts + 1, last_attempt_at = now()
               FROM due
               WHERE o.id = due.id AND o.status = 'pending'
                 AND (o.lease_expires_at IS NULL OR o.lease_expires_at < now())
               RETURNING o.id, o.event_type, o.payload::text AS "payload!", o.attempts"#,
            owner,
            secs(ttl),
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The receiver took the row. `false`: the lease was lost meanwhile (another worker may be
    /// sending it again; at least once).
    pub(crate) async fn webhook_delivered(&self, id: i64, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE webhook_outbox SET status = 'delivered', delivered_at = now(), last_error = NULL,
                 lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2",
            id,
            owner,
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An attempt failed: again after `delay`, but never past `window` after the event, and
    /// given up once that has passed. Returns the row's status (`None`: the lease was lost).
    pub(crate) async fn webhook_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        delay: Duration,
        window: Duration,
    ) -> Result<Option<String>, StoreError> {
        let status = sqlx::query_scalar!(
            "UPDATE webhook_outbox SET
                 status = CASE WHEN now() >= created_at + make_interval(secs => $5)
                               THEN 'failed' ELSE 'pending' END,
                 next_attempt_at = LEAST(now() + make_interval(secs => $4),
                                         created_at + make_interval(secs => $5)),
                 last_error = $3, lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2
             RETURNING status",
            id,
            owner,
            error,
            secs(delay),
            secs(window),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(status)
    }

    /// The newest rows first.
    pub async fn webhook_deliveries(&self, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query_as!(
            Delivery,
            r#"SELECT id, subject, event_type, status, attempts, created_at, last_attempt_at,
                      CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,
                      delivered_at, last_error
               FROM webhook_outbox ORDER BY id DESC LIMIT $1"#,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn webhook_counts(&self) -> Result<OutboxCounts, StoreError> {
        let row = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE status = 'pending') AS "pending!",
                      count(*) FILTER (WHERE status = 'failed') AS "failed!"
               FROM webhook_outbox WHERE status <> 'delivered'"#
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxCounts { pending: row.pending, failed: row.failed })
    }
}
