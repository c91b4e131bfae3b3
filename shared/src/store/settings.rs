//! The settings row (migrations/20261130183000_pool_settings.sql) and the pool events that
//! record each change. Reading seeds the row from the environment the first time; a change is a
//! compare-and-set on `revision`, written with its event in one statement.

use sqlx::types::Json;
use time::OffsetDateTime;

use super::{Store, StoreError};
use crate::settings::{Changes, PoolSettings};

/// The settings as stored, with who last changed them.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSettings {
    pub settings: PoolSettings,
    pub revision: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub updated_by: String,
}

/// Who seeded the row: the environment of whichever process read it first.
pub const SEEDED_BY: &str = "environment";

impl Store {
    /// The stored settings; on the very first read, `seed` (the environment's) is stored and
    /// recorded as the first change.
    pub async fn settings(&self, seed: &PoolSettings) -> Result<StoredSettings, StoreError> {
        let seed = Json(seed);
        // A statement sees the table as it was when it began, so exactly one of the two
        // branches yields the row: the seed when this statement inserted it, else the stored one.
        let row = sqlx::query!(
            r#"WITH seeded AS (
                   INSERT INTO pool_settings (document, updated_by)
                   SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM pool_settings)
                   ON CONFLICT (id) DO NOTHING
                   RETURNING document, revision, updated_at, updated_by
               ), logged AS (
                   INSERT INTO pool_events (kind, actor, detail)
                   SELECT 'settings', $2, jsonb_build_object('seeded', seeded.document) FROM seeded
               )
               SELECT document AS "document!: Json<PoolSettings>", revision AS "revision!",
                      updated_at AS "updated_at!", updated_by AS "updated_by!"
               FROM seeded
               UNION ALL
               SELECT document, revision, updated_at, updated_by FROM pool_settings
               LIMIT 1"#,
            seed as _,
            SEEDED_BY,
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(StoredSettings {
                settings: row.document.0,
                revision: row.revision,
                updated_at: row.updated_at,
                updated_by: row.updated_by,
            }),
            // Two first reads at once: the other one's insert won; it is committed now.
            None => Box::pin(self.settings(seed.0)).await,
        }
    }

    /// Stores `next` if the row is still at `revision`, with an event naming `actor` and
    /// `changes`. `None`: someone changed the settings meanwhile (read them again).
    pub async fn change_settings(
        &self,
        revision: i64,
        next: &PoolSettings,
        changes: &Changes,
        actor: &str,
    ) -> Result<Option<StoredSettings>, StoreError> {
        let row = sqlx::query!(
            r#"WITH updated AS (
                   UPDATE pool_settings
                   SET document = $1, revision = revision + 1, updated_at = now(), updated_by = $3
                   WHERE id AND revision = $2
                   RETURNING document, revision, updated_at, updated_by
               ), logged AS (
                   INSERT INTO pool_events (kind, actor, detail)
                   SELECT 'settings', $3, $4 FROM updated
               )
               SELECT document AS "document!: Json<PoolSettings>", revision AS "revision!",
                      updated_at AS "updated_at!", updated_by AS "updated_by!"
               FROM updated"#,
            Json(next) as _,
            revision,
            actor,
            Json(changes) as _,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| StoredSettings {
            settings: row.document.0,
            revision: row.revision,
            updated_at: row.updated_at,
            updated_by: row.updated_by,
        }))
    }
}
