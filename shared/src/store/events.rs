//! The instance history: every status change and every failed step.

use sqlx::PgConnection;
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

/// What one history line says; `from` is `None` for a new instance.
pub(crate) struct Entry<'a> {
    pub instance_id: &'a str,
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub step: Option<&'a str>,
    pub reason: &'a str,
    pub detail: Option<&'a str>,
}

pub(crate) async fn append(conn: &mut PgConnection, entry: Entry<'_>) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO instance_events (instance_id, from_status, to_status, step, reason, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
        entry.instance_id,
        entry.from,
        entry.to,
        entry.step,
        entry.reason,
        entry.detail,
    )
    .execute(conn)
    .await?;
    Ok(())
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
