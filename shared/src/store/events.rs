//! The audit trail (issue 16.2): an instance's history lines (every status change, failed step,
//! wake and resource rotation; each written by the statement that makes the change: leases.rs,
//! claim_take.rs, the `pool_refill` function) and the pool's own events (settings, breaker,
//! drains, orphan deletions). Both tables number from one sequence, so the feed is one list
//! ordered by id and a cursor is an id.

use time::OffsetDateTime;

use super::{Status, Store, StoreError};
use crate::lifecycle::{Actor, EventKind};

/// One line of an instance's history.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: i64,
    pub instance_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: String,
    pub actor: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub step: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}

/// One event of the pool as a whole: its `detail` is the kind's own JSON (for settings, each
/// changed field with its old and new value).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolEvent {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: String,
    pub actor: String,
    pub detail: serde_json::Value,
}

/// A line of the feed: an instance's (it has `instanceId`) or the pool's.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum FeedEvent {
    Instance(Event),
    Pool(PoolEvent),
}

impl FeedEvent {
    pub fn id(&self) -> i64 {
        match self {
            FeedEvent::Instance(event) => event.id,
            FeedEvent::Pool(event) => event.id,
        }
    }
}

/// Which events a feed page holds; every field narrows it, `None` does not.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub instance_id: Option<String>,
    pub kinds: Option<Vec<EventKind>>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Events older than this id (the previous page's `nextCursor`).
    pub before: Option<i64>,
}

impl Store {
    /// The newest history lines first, optionally for one instance.
    pub async fn events(&self, instance_id: Option<&str>, limit: i64) -> Result<Vec<Event>, StoreError> {
        let events = sqlx::query_as!(
            Event,
            "SELECT id, instance_id, at, kind, actor, from_status, to_status, step, reason, detail
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

    /// The pool's own events, newest first, optionally of one kind.
    pub async fn pool_events(
        &self,
        kind: Option<EventKind>,
        limit: i64,
    ) -> Result<Vec<PoolEvent>, StoreError> {
        let events = sqlx::query_as!(
            PoolEvent,
            "SELECT id, at, kind, actor, detail FROM pool_events
             WHERE $1::text IS NULL OR kind = $1
             ORDER BY id DESC
             LIMIT $2",
            kind.map(EventKind::as_str),
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(events)
    }

    /// The newest events of both kinds matching `filter`, at most `limit`, newest first. Each
    /// table's part is read newest first and cut at `limit`, so a page costs two short scans.
    pub async fn feed(&self, filter: &EventFilter, limit: i64) -> Result<Vec<FeedEvent>, StoreError> {
        let kinds: Option<Vec<&str>> = filter.kinds.as_ref().map(|k| k.iter().map(|k| k.as_str()).collect());
        let rows = sqlx::query!(
            r#"SELECT id AS "id!", instance_id, at AS "at!", kind AS "kind!", actor AS "actor!",
                      from_status, to_status, step, reason, detail, document
               FROM (
                   (SELECT id, instance_id, at, kind, actor, from_status, to_status, step,
                           reason, detail, NULL::jsonb AS document
                    FROM instance_events
                    WHERE ($1::text IS NULL OR instance_id = $1)
                      AND ($2::text[] IS NULL OR kind = ANY($2))
                      AND ($3::timestamptz IS NULL OR at >= $3)
                      AND ($4::timestamptz IS NULL OR at < $4)
                      AND ($5::bigint IS NULL OR id < $5)
                    ORDER BY id DESC LIMIT $6)
                   UNION ALL
                   (SELECT id, NULL, at, kind, actor, NULL, NULL, NULL, NULL, NULL, detail
                    FROM pool_events
                    WHERE $1::text IS NULL
                      AND ($2::text[] IS NULL OR kind = ANY($2))
                      AND ($3::timestamptz IS NULL OR at >= $3)
                      AND ($4::timestamptz IS NULL OR at < $4)
                      AND ($5::bigint IS NULL OR id < $5)
                    ORDER BY id DESC LIMIT $6)
               ) AS feed
               ORDER BY id DESC
               LIMIT $6"#,
            filter.instance_id,
            kinds as Option<Vec<&str>>,
            filter.since,
            filter.until,
            filter.before,
            limit,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| match row.instance_id {
                Some(instance_id) => FeedEvent::Instance(Event {
                    id: row.id,
                    instance_id,
                    at: row.at,
                    kind: row.kind,
                    actor: row.actor,
                    from_status: row.from_status,
                    to_status: row.to_status.unwrap_or_default(),
                    step: row.step,
                    reason: row.reason.unwrap_or_default(),
                    detail: row.detail,
                }),
                None => FeedEvent::Pool(PoolEvent {
                    id: row.id,
                    at: row.at,
                    kind: row.kind,
                    actor: row.actor,
                    detail: row.document.unwrap_or_default(),
                }),
            })
            .collect())
    }

    /// A line in the history of `id` (in `status`) that moves nothing: a wake, a resource
    /// rotation.
    pub(crate) async fn note(
        &self,
        (id, status): (&str, Status),
        actor: &Actor,
        (kind, reason): (EventKind, &str),
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO instance_events (instance_id, from_status, to_status, reason, detail, actor, kind)
             VALUES ($1, $2, $2, $3, $4, $5, $6)",
            id,
            status.as_str(),
            reason,
            detail,
            actor.to_string(),
            kind.as_str(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A pool-wide event of `kind` by `actor`, with its own JSON `detail`.
    pub(crate) async fn pool_event(
        &self,
        kind: EventKind,
        actor: &Actor,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query!(
            "INSERT INTO pool_events (kind, actor, detail) VALUES ($1, $2, $3)",
            kind.as_str(),
            actor.to_string(),
            detail,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
