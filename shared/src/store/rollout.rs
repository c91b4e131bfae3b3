//! What a rollout reads (engine/rollout.rs): how many instances are built from the desired
//! version, and which idle ones are not. Everything is derived from the rows, so a rollout
//! needs no state of its own and a crash mid-way loses nothing.

use super::{Store, StoreError};

/// The pool counted against one version. Destroying instances are on their way out and count
/// nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCounts {
    pub total: i64,
    /// Instances (in any status but destroying) built from the version.
    pub current: i64,
    pub idle: i64,
    pub current_idle: i64,
    /// Current instances still on their way to idle: replacements already started.
    pub current_provisioning: i64,
}

impl VersionCounts {
    pub fn stale(&self) -> i64 {
        self.total - self.current
    }

    pub fn stale_idle(&self) -> i64 {
        self.idle - self.current_idle
    }
}

impl Store {
    pub async fn version_counts(&self, version: &str) -> Result<VersionCounts, StoreError> {
        let row = sqlx::query!(
            r#"SELECT count(*) AS "total!",
                      count(*) FILTER (WHERE build_version = $1) AS "current!",
                      count(*) FILTER (WHERE status = 'idle') AS "idle!",
                      count(*) FILTER (WHERE status = 'idle' AND build_version = $1) AS "current_idle!",
                      count(*) FILTER (WHERE status = 'provisioning' AND build_version = $1)
                          AS "current_provisioning!"
               FROM instances WHERE status <> 'destroying'"#,
            version
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(VersionCounts {
            total: row.total,
            current: row.current,
            idle: row.idle,
            current_idle: row.current_idle,
            current_provisioning: row.current_provisioning,
        })
    }

    /// Up to `limit` idle instances not built from `version`, oldest first.
    pub async fn stale_idle_ids(&self, version: &str, limit: i64) -> Result<Vec<String>, StoreError> {
        let ids = sqlx::query_scalar!(
            r#"SELECT id FROM instances
               WHERE status = 'idle' AND build_version <> $1
               ORDER BY ready_at, id LIMIT $2"#,
            version,
            limit
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids)
    }

    /// The version an instance was built from ('' for one older than versions).
    pub async fn build_version(&self, id: &str) -> Result<Option<String>, StoreError> {
        let version = sqlx::query_scalar!(r#"SELECT build_version FROM instances WHERE id = $1"#, id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(version)
    }
}
