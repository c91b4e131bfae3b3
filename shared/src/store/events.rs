//! The instance history: every status change and every failed step. Each line is written by
//! the statement that makes the change (leases.rs, claiming.rs, the `pool_refill` function).

use time::OffsetDateTime;

use super::{Store, StoreError};

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: i64,
    pub instance_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub from_status: Option<String>,
    pub to_status: String,
    pub step: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}

impl Store {
    /// The newest events first, optionally for one instance.
    pub async fn events(&self, instance_id: Option<&str>, limit: i64) -> Result<Vec<Event>, StoreError> {
        let events = sqlx::query_as!(
            Event,
            "SELECT id, instance_id, at, from_status, to_status, step, reason, detail
             FROM instance_events
             WHERE $1::text IS NULL OR instance_id = $1
             ORDER BY id DESC
             LIMIT $2",
            instance_id,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(events)
    }
}
